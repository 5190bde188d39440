"""Known-vs-unknown ROC points on saved threadless-dev evidence: default rule vs calibrated fusion.

FPR@95TPR is one point of the ROC curve; on a test split of ~140 known photos one photo moves TPR by 0.7 %,
so this reads the curve at several TPRs and lists what the queries at its low end look like (inliers,
inlier ratio, score under each rule). Reads ``bench/work/threadless-home-<model>-evidence.pkl``, which
``python -m bench accuracy`` saves; no photo is queried again.

    python -m bench roc-points [--model NAME] [--channels global,local] [--no-write]
"""

from __future__ import annotations

import argparse
import math
import sys

from bench._common import fmt, table
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL

TPRS = (0.90, 0.93, 0.94, 0.95, 0.96)


def _scores(results):
    import numpy as np

    known = np.array([r.label is not None for r in results], dtype=bool)
    score = np.array([r.top1_score if r.ranked else -math.inf for r in results], dtype=np.float64)
    return score, known


def _inliers(result) -> int:
    f = result.features[0] if result.features else {}
    return int(round(math.expm1(f.get("log_inliers", 0.0))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--channels", default="global,local")
    ap.add_argument("--tail", type=int, default=10, help="list this many lowest known and highest unknown queries")
    add_no_write(ap)
    args = ap.parse_args(argv)

    import numpy as np

    from bench._designs import load_evidence
    from logoid.eval.run import apply_calibration, fit, fusion_scorer, to_results
    from logoid.scoring.stats import auroc, fpr_at_tpr

    try:
        ident, cat, calib, test = load_evidence(args.model)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ch = tuple(args.channels.split(","))

    default = to_results(ident, test, cat, ch)
    model, cal = fit(ident, calib, cat, channels=ch)
    fused = apply_calibration(to_results(ident, test, cat, ch, scorer=fusion_scorer(model)), cal)
    rows_roc, per_rule = [], {}
    for name, res in (("default rule", default), (f"calibrated fusion ({cal.rule}, C={model.C:g})", fused)):
        s, known = _scores(res)
        per_rule[name] = s
        rows_roc.append([name, auroc(s[known], s[~known]), *[fpr_at_tpr(s[known], s[~known], t) for t in TPRS]])
    s_def, s_fus = per_rule.values()
    known = np.array([r.label is not None for r in default], dtype=bool)
    right = np.array([r.label is not None and bool(r.ranked) and r.top1 == r.label for r in default], dtype=bool)

    def tail_rows(idx):
        return [["known, right" if right[i] else ("known, wrong" if known[i] else "unknown"), _inliers(fused[i]),
                 fmt((fused[i].features[0] if fused[i].features else {}).get("inlier_ratio", 0.0)),
                 s_def[i], s_fus[i]] for i in idx]

    k_idx, u_idx = np.flatnonzero(known), np.flatnonzero(~known)
    low_known = k_idx[np.argsort(s_fus[k_idx], kind="stable")][: args.tail]
    high_unknown = u_idx[np.argsort(-s_fus[u_idx], kind="stable")][: args.tail]
    heads = ["query", "inliers (top candidate)", "inlier ratio", "default score", "fused score"]
    n_k, n_u = int(known.sum()), int((~known).sum())
    md = (f"Channels {'+'.join(ch)} on the evidence saved by the last threadless-dev accuracy run (no photo queried "
          f"again), split=test: {n_k} known, {n_u} unknown photos (one known photo = {100 / n_k:.1f} % TPR, one "
          f"unknown = {100 / n_u:.1f} % FPR). Fusion fitted and calibrated on split=calib as in `python -m bench accuracy`.\n\n"
          + table(["scores", "AUROC", *[f"FPR@{round(t * 100)}TPR" for t in TPRS]], rows_roc)
          + f"\n\nLowest-scoring known photos under the calibrated fusion ({args.tail}):\n\n"
          + table(heads, tail_rows(low_known))
          + f"\n\nHighest-scoring unknown photos under the calibrated fusion ({args.tail}):\n\n"
          + table(heads, tail_rows(high_unknown)))
    print(md)
    if not args.no_write:
        numbers = {"channels": list(ch), "n_known": n_k, "n_unknown": n_u, "tprs": list(TPRS),
                   "rows": {r[0]: {"auroc": r[1], **{f"fpr_at_{round(t * 100)}tpr": v for t, v in zip(TPRS, r[2:],
                                                                                                     strict=True)}}
                            for r in rows_roc}}
        save_record("accuracy", "roc-points", numbers, md, summary=summary(numbers))
    return 0


def summary(numbers: dict) -> str:
    """The key numbers, for the current-numbers page: AUROC and FPR at 95 and 96 % TPR of each rule."""
    return (f"{'+'.join(numbers['channels'])}, test ({numbers['n_known']} known, {numbers['n_unknown']} unknown): "
            + "; ".join(f"{name} AUROC {fmt(r['auroc'])}, FPR@95TPR {fmt(r['fpr_at_95tpr'])}, FPR@96TPR "
                        f"{fmt(r['fpr_at_96tpr'])}" for name, r in numbers["rows"].items()))


if __name__ == "__main__":
    raise SystemExit(main())
