"""The tables of the text bench's result (numbers from the JSON, never typed by hand), and its record.

``python -m bench text`` records its run (``--no-write``: it doesn't); ``python -m bench text --publish-only`` records
the last result again without running.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench._common import ROOT, fmt, table


def _row(what: str, value, target: str = "") -> list:
    return [what, value if isinstance(value, str) else fmt(value), target]


def body(d: dict) -> str:
    c, ro = d["clean"], d["roster"]
    p = d.get("prints")
    n = d["n_logos"]
    rows = [
        _row(f"text-only top-1 among {n:,} names, clean logos", c["top1_invert-if-little"], "≥ 0.80"),
        _row(f"text-only top-1 with the {ro['names']:,}-name roster as distractors, clean logos", ro["top1_clean"],
             "≥ 0.70"),
    ]
    if p:
        rows += [
            _row(f"text-only top-1 among {n:,} names, simulated prints on photos", p["top1"]),
            _row("  of which light ink on dark garments / dark ink on light garments",
                 f"{fmt(p['top1_light_ink'])} (n={p['n_light_ink']}) / {fmt(p['top1_dark_ink'])} "
                 f"(n={p['n_dark_ink']})"),
            _row("text-only top-1 with the roster as distractors, prints", ro["top1_prints"]),
            _row(f"prints, known vs unknown bands ({p['reject_n_catalog']} in the catalog, {p['reject_n_unknown']} "
                 "held out): AUROC of the text score", p["reject_auroc"]),
        ]
    rows += [
        _row("name matching latency p50 / p99 at the roster", f"{fmt(ro['match_ms_p50'], 1)} / "
             f"{fmt(ro['match_ms_p99'], 1)} ms", "p50 ≤ 20 ms"),
        _row("name index build time / memory at the roster", f"{fmt(ro['build_s'], 1)} s / "
             f"{fmt(ro['index_rss_mb'], 0)} MB"),
        _row("OCR median / p90 per clean logo (512 px)", f"{fmt(c['ocr_s_median_invert-if-little'], 2)} / "
             f"{fmt(c['ocr_s_p90_invert-if-little'], 2)} s"),
    ]
    tm = d.get("timing")
    if tm:
        rows.append(_row(f"OCR + name match per photo, end to end ({tm['n']} prints, 1024 px, roster): median / p90",
                         f"{fmt(tm['total_s_median'], 2)} / {fmt(tm['total_s_p90'], 2)} s (OCR alone "
                         f"{fmt(tm['ocr_s_median'], 2)} s; {tm['threads']} thread, load average "
                         f"{tm['loadavg_1min'][0]}–{tm['loadavg_1min'][1]} on 2 cores)", "≤ 0.5 s"))
    if p:
        rows.append(_row("OCR per print in the cached run (plain + inverted when little is read): median / p90",
                         f"{fmt(p['ocr_s_median'], 2)} / {fmt(p['ocr_s_p90'], 2)} s"))
    rows.append(_row("clean logos read exactly", f"{c['exact_read']} of {n:,}"))
    parts = [
        f"band-logos, all {n:,} logos, text channel alone (OCR + name matching, no image channels). Clean = the "
        "512-px logo files as they are. Prints = simulated, not photographed: each logo printed on the shirt of a "
        "person in a threadless-dev photo (where that shirt's own print was located by homography, 265 photos; the "
        "old print inpainted away), light ink on dark garments and dark ink on light ones as merch is printed, "
        "with perspective, fabric shading, blur, noise and JPEG, photo enlarged to 1024 px "
        f"(bench/_prints.py, seed {d['seed']}). Roster = {ro['real_names']:,} real names (the {n:,} bands, "
        f"plus {ro['real_extra']:,} artist names and album titles from albums-dev) and {ro['generated']:,} "
        f"generated band-like names (1–3 words of the real names, seeded); {ro['names']:,} index entries with "
        "aliases (\"The X\" → \"X\"). OCR ran on one thread (ONNX Runtime intra-op threads = 1) on a shared machine.",
        table(["what", "measured", "target"], rows),
    ]
    if p:
        thr_rows = []
        for key, label in (("at_default", "default rule (text similarity 0.85)"),
                           ("at_open_set_accuracy", "calibrated, objective open-set accuracy"),
                           ("at_max_false_accept", "calibrated, objective false accepts ≤ 5%")):
            a = p[key]
            thr_rows.append([label, a["threshold"], a["sim_at_threshold"], a["right_accepted_known"],
                             a["wrong_accepted_known"], a["false_accept_unknown"], a["open_set_accuracy"]])
        parts += [
            "Rejection on the prints: text-only threshold chosen on a seeded half of the prints by "
            "`calibrate_text_only` (what `logoid calibrate` stores for text-only answers), reported on the other "
            f"half ({p['reject_n_test']} prints). Score = the default rule's text-only score (monotone in the name "
            "similarity).",
            table(["threshold", "score", "= similarity", "right band accepted", "wrong band accepted",
                   "unknown band accepted (false accept)", "open-set accuracy"], thr_rows),
        ]
    th = d.get("threadless")
    if th and th.get("queries", 0) > 100:
        parts.append(fused_markdown(th))
    modes = [[m, c[f"top1_{m}"], f"{fmt(c[f'ocr_s_median_{m}'], 2)} s"] for m in ("plain", "invert-if-little", "union")]
    curve = [[x["cutoff"], x["correct_accepted"], x["wrong_accepted_known"], x["unknown_band_false_match"],
              x["no_text_false_match"]] for x in c["cutoff_curve"]]
    parts += [
        "Clean logos, reading the inverted image too:",
        table(["strategy", f"top-1 ({n:,} names)", "OCR median"], modes),
        "Clean logos, similarity cut-off (unknown band = the best other band's match, as if its band were not in "
        "the index; no-text = 60 synthetic images):",
        table(["cut-off", "right band accepted", "wrong band accepted", "unknown band matched", "no-text matched"],
              curve),
    ]
    return "\n\n".join(parts)


def fused_markdown(th: dict) -> str:
    """threadless-dev scored with and without the text channel (``python -m bench text-fused``'s result)."""
    heads = ["channels", "calibrated", "top-1", "top-5", "AUROC", "FPR@95TPR", "open-set acc", "confident wrong",
             "text-only answers (accepted)"]
    trows = []
    for name, x in th["subsets"].items():
        for when in ("before", "after"):
            m = x[when]
            cal = "no (default rule)" if when == "before" else f"yes ({x['rule']})"
            trows.append([name, cal, m["top1"], m["top5"], m["auroc"], m["fpr_at_95tpr"], m["open_set_accuracy"],
                          m["confident_wrong_rate"], f"{x[when + '_text_only_answers']} "
                          f"({x[when + '_text_only_accepted']})"])
    t_only = th["subsets"].get("global+local+text", {}).get("text_only") or {}
    return (f"threadless-dev (split=test, {th['n_test']} photos; calibrated on split=calib, {th['n_calib']}), one "
            "evidence run scored with and without the text channel (`python -m bench text-fused`). The designs have no "
            "names (catalog names are \"threadless <id>\"), so text can only add noise here; it must not make any "
            f"metric worse. Text-only threshold after calibration: {fmt(t_only.get('threshold'))} "
            f"({t_only.get('source', 'n/a')}: {t_only.get('n', 0)} text-only calibration answers, "
            f"{t_only.get('n_right', 0)} right).\n\n" + table(heads, trows))


def fused_summary(th: dict) -> str:
    """The key numbers of a text-fused run, for the current-numbers page."""
    def trio(name: str) -> str:
        m = th["subsets"].get(name, {}).get("after", {})
        return " / ".join(fmt(m.get(k)) for k in ("top1", "auroc", "open_set_accuracy"))

    return (f"threadless-dev test ({th['n_test']} photos), calibrated, top-1 / AUROC / open-set: global+local "
            f"{trio('global+local')}, global+local+text **{trio('global+local+text')}**")


def summary(d: dict) -> str:
    """The key numbers, for the current-numbers page."""
    c, ro, p, tm = d["clean"], d["roster"], d.get("prints"), d.get("timing")
    out = [f"text-only top-1 among {d['n_logos']:,} names: clean logos **{fmt(c['top1_invert-if-little'])}**"
           + (f", simulated prints {fmt(p['top1'])}" if p else ""),
           f"with the {ro['names']:,}-name roster {fmt(ro['top1_clean'])}"
           + (f" / {fmt(ro['top1_prints'])}" if "top1_prints" in ro else "")]
    if p:
        out.append(f"prints, known vs unknown AUROC {fmt(p['reject_auroc'])}")
    out.append(f"name match p50 / p99 {fmt(ro['match_ms_p50'], 1)} / {fmt(ro['match_ms_p99'], 1)} ms")
    if tm:
        out.append(f"OCR + match per photo median {fmt(tm['total_s_median'], 2)} s")
    return "; ".join(out)


def publish(d: dict, path: Path) -> None:
    """Record a result and regenerate BENCHMARKS.md."""
    from bench.record import save_record

    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    text = f"(measured {when}, result file `{rel}`)\n\n" + body(d)
    print(text)
    save_record("text", "band-logos", d, text, summary=summary(d))
