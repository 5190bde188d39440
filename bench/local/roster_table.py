"""Issue 24's table on BENCHMARKS.md: the roster at 1k, 10k, 50k and 180k references, one machine, from the records.

No bench of its own: ``python -m bench publish`` assembles it from the latest records of one machine (the one with
the most recent whole query at 180k):

- per photo and memory: ``local-scale roster-e2e`` (every channel in one warm process; 180k built straight),
- disk: the descriptor and global index files of those runs,
- build time: ``build-whole`` (a whole ``build-index`` of 10k distinct references, measured), its stages that grow
  with the catalog scaled to each size plus the index structures as the roster bench built them for that size,
- accuracy among 50k distinct distractors: ``roster-fused`` (threadless-dev fused) and ``roster-prints``
  (band-logo prints), against the same photos among their own references alone.
"""

from __future__ import annotations

from bench._common import fmt, table
from bench.local.build_whole import LINEAR, ROSTER, STRUCTURES
from bench.record import machine_id

SIZES = (1_000, 10_000, 50_000, ROSTER)
ANCHOR = "local-roster-table"


def _newest(records: list[dict], name: str, machine: dict) -> list[dict]:
    return sorted((r for r in records if r["subject"] in ("local", "build") and r["name"] == name
                   and machine_id(r["machine"]) == machine_id(machine)), key=lambda r: r["date"], reverse=True)


def e2e_row(records: list[dict], machine: dict, n: int) -> tuple[dict, dict] | None:
    """The newest whole-query run of ``n`` references (at 180k, one built straight): (its row, its record)."""
    for rec in _newest(records, "roster-e2e", machine):
        row = rec["numbers"].get(str(n))
        if row and (n < ROSTER or "--straight" in rec["command"]):
            return row, rec
    return None


def _hours(seconds: float) -> str:
    return fmt(seconds / 3600, 1 if seconds >= 3600 else 2)


def _build_h(whole: dict | None, n: int, row: dict) -> str:
    """The whole build's hours at ``n``: measured at the build's size; elsewhere its linear stages scaled, plus the
    index structures as the roster bench built them for ``n`` where it did, else the build's own scaled."""
    if whole is None:
        return "–"
    w = whole["numbers"]
    sec, refs = w["seconds"], w["refs"]
    if n == refs:
        return f"**{_hours(w['total_s'])}** (measured)"
    linear = sum(sec.get(k, 0.0) for k in LINEAR) * n / refs
    d, g = row.get("descriptor_index_build") or {}, row.get("global_index") or {}
    if d.get("build_s") and g.get("build_s") and not d.get("build_s_extrapolated"):
        return f"≈ {_hours(linear + d['build_s'] + g['build_s'])}"
    return f"≈ {_hours(linear + sum(sec[k] for k in STRUCTURES) * n / refs)}"


def _disk_gb(row: dict) -> str:
    d, g = row.get("descriptor_index_build") or {}, row.get("global_index") or {}
    if not d.get("disk_mb") or not g.get("disk_mb"):
        return "–"
    return fmt((d["disk_mb"] + g["disk_mb"]) / 1024, 1)


def _accuracy(records: list[dict], machine: dict) -> str:
    """Fused threadless-dev and band-logo prints at 50k distinct distractors against their own references alone."""
    out = []
    fused = _newest(records, "roster-fused", machine)
    if fused:
        res = fused[0]["numbers"]
        rows = {int(k): r for k, r in res.items() if k.isdigit()}  # "n@u": another extras setting
        if 50_000 in rows and min(rows) < 1_000:
            a, b = (rows[k]["subsets"]["global+local+text"]["after"] for k in (min(rows), 50_000))
            out.append("threadless-dev fused top-1 / AUROC " + " / ".join(fmt(b[k]) for k in ("top1", "auroc"))
                       + " (alone " + " / ".join(fmt(a[k]) for k in ("top1", "auroc")) + ")")
    prints = _newest(records, "roster-prints", machine)
    if prints:
        runs = [r for k, r in prints[0]["numbers"].items() if k != "_meta" and "prints" in r]
        alone = [r for r in runs if r["distinct"] == r["kinds"]["band"]]
        big = [r for r in runs if r["refs"] == 50_000]
        if alone and big:
            def top1(r: dict) -> float:
                return r["prints"].get("names_read", r["prints"])["top1"]

            out.append(f"band-logo prints top-1 {fmt(top1(big[0]))} (alone {fmt(top1(alone[0]))})")
    return "; ".join(out) or "–"


def render(records: list[dict]) -> list[str]:
    """The section's lines, or none before a straight 180k whole-query run exists."""
    big = sorted((r for r in records if r["subject"] == "local" and r["name"] == "roster-e2e"
                  and str(ROSTER) in r["numbers"] and "--straight" in r["command"]), key=lambda r: r["date"])
    if not big:
        return []
    machine = big[-1]["machine"]
    whole = next(iter(_newest(records, "whole", machine)), None)
    rows = []
    for n in SIZES:
        got = e2e_row(records, machine, n)
        row, rec = got if got else ({}, None)
        m = row.get("mem_timed") or {}
        rows.append([f"{n:,}" + (" (50k distinct + 130k reused)" if n > 50_000 else ""), _structure(row),
                     _build_h(whole, n, row),
                     _disk_gb(row) if row else "–",
                     f"{fmt(m['VmRSS'], 0)} ({fmt(m['RssAnon'], 0)} + {fmt(m['RssFile'], 0)})" if m else "–",
                     f"{fmt(row['p50_s'])} / {fmt(row['p90_s'])}" if row else "–",
                     f"{row['correct']}/{row['timed']} right" if row else "–",
                     rec["date"][:10] if rec else "–"])
    rows[SIZES.index(50_000)][6] += "; " + _accuracy(records, machine)
    label = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
    return [f'#### <a id="{ANCHOR}"></a>The roster at 1k-180k references (issue 24: targets 6 GB, 1.0 s, '
            'accuracy within 0.01 / 0.02 at 50k)',
            f"{label}; a whole query (every channel, one warm process: `python -m bench local-scale roster-e2e`, "
            "the 180k index built straight); build = `python -m bench build-whole` (measured at its size; elsewhere "
            "its stages that grow with the catalog scaled, plus the index structures as the roster bench built them); "
            "accuracy at 50k = `roster-fused` and `roster-prints`. Resident MB = anonymous + "
            "file-backed; disk = descriptor and global index files.", "",
            table(["references", "descriptor index", "build (h)", "disk (GB)", "resident MB", "p50 / p90 s", "accuracy",
                   "run"], rows)]


def _structure(row: dict) -> str:
    """The descriptor index's lists and whether it re-ranks (SQ8 codes, memory-mapped, within
    ``DescriptorConfig.rerank_budget_mb``; beyond it the fast-scan PQ scores alone)."""
    spec = row.get("descriptor_index") or ""
    if not spec:
        return "–"
    return spec.split("_")[0] + (", SQ8 re-rank" if "Refine" in spec else ", no re-rank")
