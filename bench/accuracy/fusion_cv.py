"""Fusion settings on saved threadless-dev evidence: default rule vs logistic fusion (C by grouped CV on calib).

Reads the evidence that ``python -m bench accuracy`` saved (``bench/work/threadless-home-<model>-evidence.pkl``),
so no photo is queried again. For each feature set, C is chosen by grouped cross-validation on
split=calib (groups = design, so a design's photo never helps score itself), then fitted on all of
calib and reported on split=test with the calibrated rejection rule.

    python -m bench fusion-cv [--model NAME] [--channels global,local] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys

from bench._common import WORK, fmt, table
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--channels", default="global,local")
    add_no_write(ap)
    args = ap.parse_args(argv)

    from bench._designs import load_evidence
    from logoid.eval.fusion import choose_c, fit_fusion
    from logoid.eval.metrics import evaluate
    from logoid.eval.run import apply_calibration, fusion_scorer, to_results
    from logoid.scoring.fusion import FEATURES
    from logoid.scoring.rules import calibrate

    ident, cat, calib, test = load_evidence(args.model)
    ch = tuple(args.channels.split(","))
    out = {}
    base_c = to_results(ident, calib, cat, ch)
    base_t = to_results(ident, test, cat, ch)
    m = evaluate(base_t, ident.threshold)
    out["default rule"] = {k: m.get(k) for k in ("top1", "auroc", "open_set_accuracy")}
    sets = {"all": list(FEATURES), "+coverage": [*FEATURES, "inlier_coverage"],
            "no-ranks": [f for f in FEATURES if not f.startswith("rank")],
            "local-core": ["cos", "log_inliers", "inlier_ratio", "local_margin"]}
    for name, feats in sets.items():
        feats = [f for f in feats if any(f in (r.features[0] if r.features else {}) for r in base_c)] or feats
        for C in ("cv", 1.0):
            c_val = choose_c(base_c, feats) if C == "cv" else C
            model = fit_fusion(base_c, feats, C=c_val)
            fused_c = to_results(ident, calib, cat, ch, scorer=fusion_scorer(model))
            cal = calibrate(fused_c, objective="open_set_accuracy", rules=["max_score", "margin", "ratio"])
            fused_t = apply_calibration(to_results(ident, test, cat, ch, scorer=fusion_scorer(model)), cal)
            mt = evaluate(fused_t, cal.threshold)
            out[f"LR {name} C={C}" + (f" ({c_val:g})" if C == "cv" else "")] = {
                **{k: mt.get(k) for k in ("top1", "auroc", "open_set_accuracy")}, "rule": cal.rule}
            print(json.dumps({name: out[list(out)[-1]]}), file=sys.stderr)
    for k, v in out.items():
        print(f"{k:40s} " + " ".join(f"{kk}={vv:.3f}" if isinstance(vv, float) else f"{kk}={vv}" for kk, vv in v.items()))
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "fusion_cv.json").write_text(json.dumps(out, indent=1))
    md = (f"Channels {'+'.join(ch)} on the evidence saved by the last threadless-dev accuracy run (no photo queried "
          "again), split=test. LR = class-balanced logistic regression fitted on split=calib candidates, then the "
          "rejection rule and threshold calibrated on calib; `C=cv`: regularisation chosen by 5-fold cross-"
          "validation on calib grouped by design (best CV AUROC, then top-1), from 0.003–1.\n\n"
          + table(["fusion", "top-1", "AUROC", "open-set acc", "rule"],
                  [[k, v.get("top1"), v.get("auroc"), v.get("open_set_accuracy"), v.get("rule", "max_score")]
                   for k, v in out.items()]))
    print(md)
    if not args.no_write:
        save_record("accuracy", "fusion-cv", {"channels": list(ch), "fusions": out}, md, summary=summary(out, ch))
    return 0


def summary(out: dict, ch: tuple) -> str:
    """The key numbers, for the current-numbers page: the default rule and the fusion on all features."""
    def trio(v: dict) -> str:
        return " / ".join(fmt(v.get(k)) for k in ("top1", "auroc", "open_set_accuracy"))

    keep = [k for k in out if k == "default rule" or k.startswith("LR all ")]
    return f"{'+'.join(ch)}, test top-1 / AUROC / open-set: " + "; ".join(f"{k} {trio(out[k])}" for k in keep)


if __name__ == "__main__":
    raise SystemExit(main())
