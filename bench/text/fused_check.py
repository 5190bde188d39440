"""threadless-dev, fused with and without the text channel, side by side from one evidence run.

    python -m bench text-fused [--limit N] [--no-write]    # writes bench/work/text_threadless.json, records the run

The threadless-dev protocol (its README): gallery = designs of the enrolled rows, queries = every photo,
calibrate on split=calib, report on split=test. Each photo's evidence is gathered once with all three channels
(cached in bench/work/threadless_text_evidence.pkl) and scored as global+local and as global+local+text, before
calibration (default rule) and after (`logoid calibrate`'s fit: fusion model, rejection rule, and the text-only
threshold applied to answers that only the text channel supports).
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

from bench._common import DATA, WORK
from bench._designs import home_path, setup_home
from bench.record import add_no_write, save_record
from bench.text.report import fused_markdown, fused_summary
from logoid import DEFAULT_MODEL

RESULTS = WORK
SUBSETS = [("global", "local"), ("global", "local", "text")]
METRICS = ("top1", "top5", "auroc", "fpr_at_95tpr", "open_set_accuracy", "confident_wrong_rate")


def _score(ident, cat, calib, test, subset) -> dict:
    from logoid.eval.metrics import evaluate
    from logoid.eval.run import apply_calibration, fit, fusion_scorer, text_only_flags, to_results, with_rule_scores

    before = to_results(ident, test, cat, subset)
    flags = text_only_flags(ident, test, subset)
    before = with_rule_scores(before, ident.rule, ident.threshold, flags, ident.text_only_threshold)
    out = {"before": {k: evaluate(before, None)[k] for k in METRICS},
           "before_text_only_answers": sum(flags),
           "before_text_only_accepted": sum(f and r.accepted for f, r in zip(flags, before, strict=True))}
    model, cal = fit(ident, calib, cat, channels=subset)
    scorer = fusion_scorer(model)
    flags = text_only_flags(ident, test, subset, scorer)
    after = apply_calibration(to_results(ident, test, cat, subset, scorer=scorer), cal, flags)
    out["after"] = {k: evaluate(after, None)[k] for k in METRICS}
    out["rule"], out["threshold"], out["text_only"] = cal.rule, cal.threshold, cal.text_only
    out["after_text_only_answers"] = sum(flags)
    out["after_text_only_accepted"] = sum(f and r.accepted for f, r in zip(flags, after, strict=True))
    return out


def run(data: Path, model: str, limit: int | None) -> dict:
    from logoid.eval.manifest import LabelledQuery
    from logoid.eval.run import collect
    from logoid.identify import Identifier

    home, cat, embedder, rows, key_of, _, build_s = setup_home(data, home_path(model), model)
    queries = [LabelledQuery(data / r["photo"], key_of.get(r["id"]) if r["role"] == "enrolled" else None, r["split"])
               for r in rows][: limit or None]
    ident = Identifier(home, cat, embedder=embedder)
    cache = RESULTS / f"threadless_text_evidence{'_' + str(limit) if limit else ''}.pkl"
    t = time.perf_counter()
    if cache.exists():
        collected = pickle.loads(cache.read_bytes())
    else:
        collected = collect(ident, queries)
        cache.write_bytes(pickle.dumps(collected))
    collect_s = time.perf_counter() - t
    calib = [c for c in collected if c.query.split == "calib"]
    test = [c for c in collected if c.query.split == "test"]
    res = {"queries": len(collected), "n_calib": len(calib), "n_test": len(test), "build_s": build_s,
           "collect_s": collect_s, "subsets": {}}
    for subset in SUBSETS:
        res["subsets"]["+".join(subset)] = _score(ident, cat, calib, test, subset)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--limit", type=int, default=None, help="query only the first N photos (smoke runs)")
    add_no_write(ap)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    res = run(a.data, a.model, a.limit)
    out = RESULTS / "text_threadless.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    md = fused_markdown(res)
    print(md)
    if not a.no_write:
        save_record("text", "fused", res, md, summary=fused_summary(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
