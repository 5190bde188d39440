"""Accuracy on ../shared/data/threadless-dev: every channel alone and fused, before and after calibration.

Protocol (the data's README): gallery = designs of `enrolled` rows; queries = every photo (known =
enrolled, unknown = unknown rows); calibrate on split=calib, report on split=test. Evidence for each
photo is gathered once with all channels; channel subsets and fusions are scored from it.

    python -m bench accuracy [--data ../shared/data/threadless-dev] [--model NAME] [--limit N] [--precision P]
                             [--frozen-tower] [--light-map float32|float64] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench._common import DATA, WORK, fmt, table
from bench._designs import evidence_path, home_path, save_evidence, setup_home, subset_metrics
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL

SUBSETS = [("global",), ("local",), ("text",), ("global", "local"), ("global", "local", "text")]


def run(data: Path, model: str = DEFAULT_MODEL, limit: int | None = None, progress=None, variants: int | None = None,
        precision: str = "fp32", augment_size: int | None = None, bw_float64: bool | None = None) -> dict:
    from logoid.augment import AugmentConfig
    from logoid.eval.manifest import LabelledQuery
    from logoid.eval.run import collect
    from logoid.identify import Identifier

    home_dir = home_path(model)
    from tqdm import tqdm

    stage_bar = (lambda desc, total, unit: tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
                 ) if progress else None  # build_index opens one bar per stage
    home, cat, embedder, rows, key_of, build_report, build_s = setup_home(data, home_dir, model, progress=stage_bar,
                                                                          variants=variants, precision=precision,
                                                                          augment_size=augment_size,
                                                                          bw_float64=bw_float64)
    queries = [LabelledQuery(data / r["photo"], key_of.get(r["id"]) if r["role"] == "enrolled" else None, r["split"])
               for r in rows]
    if limit:
        queries = queries[:limit]
    ident = Identifier(home, cat, embedder=embedder)
    t = time.perf_counter()
    collected = collect(ident, queries, progress=progress)
    collect_s = time.perf_counter() - t
    save_evidence(collected, evidence_path(model))
    calib = [c for c in collected if c.query.split == "calib"]
    test = [c for c in collected if c.query.split == "test"]
    out = {"build": build_report.to_dict(), "build_seconds": build_s, "queries": len(collected),
           "variants": variants or 20, "precision": home_index_precision(home),
           "augment_size": augment_size or AugmentConfig().size,
           "bw_light_map": home_light_map(home),
           "collect_seconds": collect_s}
    out["median_query_s"] = {
        ch: statistics.median(c.evidence.timings.get(ch, 0.0) for c in collected) for ch in ("global", "local", "text")
    }
    out["subsets"] = subset_metrics(ident, cat, calib, test, SUBSETS)
    return out


def markdown(res: dict) -> str:
    heads = ["channels", "calibrated", "top-1", "top-5", "AUROC", "FPR@95TPR", "open-set acc", "confident wrong"]
    rows = []
    for name, d in res["subsets"].items():
        for when in ("before", "after"):
            m = d[when]
            if "error" in m:
                rows.append([name, when, m["error"], "", "", "", "", ""])
                continue
            rows.append([name, "no (default rule)" if when == "before" else f"yes ({d['calibration'].get('rule')})",
                         m.get("top1"), m.get("top5"), m.get("auroc"), m.get("fpr_at_95tpr"),
                         m.get("open_set_accuracy"), m.get("confident_wrong_rate")])
    rule_rows = []
    for name, d in res["subsets"].items():
        for rule, r in (d.get("calibration") or {}).get("per_rule", {}).items():
            rule_rows.append([name, rule, r.get("auroc"), r.get("threshold"), r.get("value")])
    ms = res["median_query_s"]
    return "\n\n".join([
        f"threadless-dev, split=test ({sum(1 for _ in [0])} run): {res['queries']} photos queried; index built in "
        f"{fmt(res['build_seconds'], 1)} s ({res['build']['vectors']} vectors, {res['build']['descriptors']} "
        f"descriptors). Median per-photo time: global {fmt(ms['global'])} s, local {fmt(ms['local'])} s, "
        f"text {fmt(ms['text'])} s. Index vectors in {res.get('precision') or 'fp32'}, black-and-white variants' "
        f"light maps in {res.get('bw_light_map', 'float64')}.",
        table(heads, rows),
        "Rejection rules on the calib split (AUROC of each, threshold and open-set accuracy at it):",
        table(["channels", "rule", "AUROC", "threshold", "calib open-set acc"], rule_rows),
    ])


def save_json(res: dict, name: str = "threadless.json") -> Path:
    out = WORK / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    return out


def summary(res: dict) -> str:
    """The key numbers, for the current-numbers page."""
    def trio(name: str, when: str) -> str:
        m = res["subsets"].get(name, {}).get(when, {})
        return " / ".join(fmt(m.get(k)) for k in ("top1", "auroc", "open_set_accuracy"))

    fused = res["subsets"].get("global+local+text", {})
    rule = (fused.get("calibration") or {}).get("rule", "n/a")
    ms = res["median_query_s"]
    return (f"global+local+text, calibrated ({rule}), test top-1 / AUROC / open-set: **{trio('global+local+text', 'after')}**"
            f" (default rule {trio('global+local+text', 'before')}); local alone calibrated {trio('local', 'after')}; "
            f"{res['queries']} photos; median per photo global {fmt(ms['global'])} s, local {fmt(ms['local'])} s, text "
            f"{fmt(ms['text'])} s")


def report(res: dict, model: str, write: bool = True) -> None:
    """Print the tables; ``write``: record the run and regenerate BENCHMARKS.md."""
    md = markdown(res)
    print(md)
    if write:
        # A run with other than 20 variants says so in its title (the same record name: the lead's comparison runs).
        variants = f", {res['variants']} variants" if res.get("variants", 20) != 20 else ""
        size = f", variants at {res['augment_size']} px" if res.get("augment_size", 320) != 320 else ""
        save_record("accuracy", "designs", res, md, summary=summary(res),
                    title=f"Accuracy on threadless-dev ({model}{variants}{size})")


def home_light_map(home) -> str:
    """The dtype of the black-and-white light maps the home's index variants were made with (AugmentConfig.bw_float64;
    float64 in sidecars from before the key)."""
    from logoid.augment import AugmentConfig
    from logoid.index.store import IndexStore

    return "float64" if AugmentConfig.from_dict(IndexStore.load_meta_only(home.index_dir)["augment"]).bw_float64 \
        else "float32"


def home_index_precision(home) -> str | None:
    """The precision the home's index vectors were made in (its sidecar)."""
    from logoid.index.store import IndexStore

    return (IndexStore.load_meta_only(home.index_dir).get("model") or {}).get("precision")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--limit", type=int, default=None, help="query only the first N photos (smoke runs)")
    ap.add_argument("--variants", type=int, default=None,
                    help="augmented variants per design, original included (default: the build's, 20)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32",
                    help="image tower arithmetic while building the index (build-index --precision)")
    ap.add_argument("--frozen-tower", action="store_true",
                    help="the image tower traced and frozen by TorchScript (build-index --frozen-tower)")
    ap.add_argument("--augment-size", type=int, default=None,
                    help="long side of the augmented variants in px (default AugmentConfig.size)")
    ap.add_argument("--light-map", choices=["float32", "float64"], default=None,
                    help="black-and-white variants' light map (AugmentConfig.bw_float64; default: the home's index's)")
    add_no_write(ap)
    a = ap.parse_args(argv)
    from tqdm import tqdm

    res = run(a.data, a.model, limit=a.limit, progress=lambda it: tqdm(it, leave=False, file=sys.stderr),
              variants=a.variants, precision=a.precision + ("+frozen" if a.frozen_tower else ""),
              augment_size=a.augment_size, bw_float64=None if a.light_map is None else a.light_map == "float64")
    save_json(res)
    report(res, a.model, write=not a.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
