"""Benchmark the local-features channel alone on threadless-dev (or any set with the same manifest).

Protocol (the data set's README): gallery = designs of ``role=enrolled`` rows; queries = every photo;
report on ``split=test``: top-1 / top-5 of known queries, AUROC and FPR@95%TPR of known-vs-unknown
by the best inlier count, open-set accuracy at the threshold that maximises it on ``split=calib``.

    nice python -m bench local --data ../shared/data/threadless-dev [--out local.json] [--no-write]

The run is recorded (bench/results/local/) and BENCHMARKS.md regenerated; ``--no-write`` only prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import DATA, fmt, read_manifest, table
from bench.record import add_no_write, save_record
from logoid.core.imageio import file_hash, load_image
from logoid.engine.local import FeatureCache, extract, extract_reference
from logoid.identify.match import LocalConfig, match_local
from logoid.index.descriptors import DescriptorIndex


def _metrics(rows: list[dict], split: str, threshold: float | None) -> dict:
    from sklearn.metrics import roc_auc_score

    sel = [r for r in rows if r["split"] == split]
    known = [r for r in sel if r["known"]]
    out = {"queries": len(sel), "known": len(known), "unknown": len(sel) - len(known)}
    if known:
        out["top1"] = float(np.mean([r["ranked"][:1] == [r["id"]] for r in known]))
        out["top5"] = float(np.mean([r["id"] in r["ranked"][:5] for r in known]))
    labels = np.array([r["known"] for r in sel], int)
    scores = np.array([r["score"] for r in sel], float)
    if 0 < labels.sum() < len(labels):
        out["auroc"] = float(roc_auc_score(labels, scores))
        t95 = np.quantile(scores[labels == 1], 0.05)  # 95% of known queries score at least this
        out["fpr_at_95tpr"] = float(np.mean(scores[labels == 0] >= t95))
    if threshold is not None:
        out["threshold"] = threshold
        out["open_set_acc"] = _open_set_acc(sel, threshold)
    return out


def _open_set_acc(rows: list[dict], t: float) -> float:
    ok = [(r["score"] >= t and r["ranked"][:1] == [r["id"]]) if r["known"] else r["score"] < t for r in rows]
    return float(np.mean(ok)) if ok else 0.0


def _choose_threshold(rows: list[dict]) -> float:
    calib = [r for r in rows if r["split"] == "calib"]
    cands = sorted({float(r["score"]) for r in calib} | {float("inf")})
    return max(cands, key=lambda t: (_open_set_acc(calib, t), -t))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--out", type=Path, default=None, help="write metrics (and per-query results) as JSON here")
    ap.add_argument("--limit", type=int, default=0, help="only the first N queries (quick checks)")
    ap.add_argument("--cache", type=Path, default=None, help="reuse reference features from this folder")
    ap.add_argument("--threads", type=int, default=1, help="FAISS / OpenCV threads")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a LocalConfig field, e.g. --set enrol_inverted=false --set ratio=0.85")
    add_no_write(ap)
    args = ap.parse_args(argv)

    import cv2
    import faiss

    faiss.omp_set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    overrides = {}
    for item in args.set:
        k, _, v = item.partition("=")
        overrides[k] = json.loads(v.lower() if v.lower() in ("true", "false") else v) if v[:1] not in "\"'" else v
    cfg = LocalConfig.of(**overrides)

    manifest = read_manifest(args.data)
    t0 = time.perf_counter()
    gallery = [r for r in manifest if r["role"] == "enrolled"]
    cache = FeatureCache(args.cache) if args.cache else None

    def ref_feats(path: Path):
        if cache is None:
            return extract_reference(load_image(path), cfg.extract)
        return cache.get_reference(file_hash(path), lambda: load_image(path), cfg.extract)

    dindex = DescriptorIndex.build(((int(r["id"]), ref_feats(args.data / r["design"])) for r in gallery),
                                   feature_config=cfg.extract)
    build_s = time.perf_counter() - t0

    queries = manifest[: args.limit] if args.limit else manifest
    rows, times = [], []
    for i, r in enumerate(queries):
        img = load_image(args.data / r["photo"])
        t = time.perf_counter()
        res = match_local(extract(img, cfg.extract, "query"), dindex, cfg)
        times.append(time.perf_counter() - t)
        rows.append({"id": int(r["id"]), "split": r["split"], "known": r["role"] == "enrolled",
                     "ranked": [v.image_id for v in res[:5]], "score": res[0].score if res else 0.0,
                     "variant": res[0].variant if res else None})
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(queries)} queries, median {statistics.median(times):.3f} s", file=sys.stderr)

    t = _choose_threshold(rows)
    report = {
        "config": cfg.to_dict(),
        "gallery_images": len(gallery),
        "descriptors": dindex.ntotal,
        "build_s": round(build_s, 1),
        "median_s_per_query": round(statistics.median(times), 3),
        "p90_s_per_query": round(float(np.quantile(times, 0.9)), 3),
        "calib": _metrics(rows, "calib", t),
        "test": _metrics(rows, "test", t),
        "inverted_wins": sum(1 for r in rows if r["variant"] == 1),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps({**report, "queries": rows}, indent=1))
    if not args.no_write:
        report["set"] = overrides
        report["limit"] = args.limit or None
        save_record("local", "channel", report, markdown(report), summary=summary(report))
    return 0


def markdown(r: dict) -> str:
    """The calib and test rows of one run, and what the run was."""
    heads = ["split", "queries (known / unknown)", "top-1", "top-5", "AUROC", "FPR@95TPR", "open-set acc"]
    rows = [[s, f"{m['queries']} ({m['known']} / {m['unknown']})", m.get("top1"), m.get("top5"), m.get("auroc"),
             m.get("fpr_at_95tpr"), m.get("open_set_acc")] for s, m in (("calib", r["calib"]), ("test", r["test"]))]
    setting = ", ".join(f"{k}={v}" for k, v in (r.get("set") or {}).items()) or "LocalConfig defaults"
    return (f"Local channel alone ({setting}; score = best inlier count, threshold {fmt(r['test'].get('threshold'))} "
            f"chosen on split=calib): {r['gallery_images']} designs, {r['descriptors']} descriptors, index built in "
            f"{fmt(r['build_s'], 1)} s; extraction + matching per photo median {fmt(r['median_s_per_query'])} s, p90 "
            f"{fmt(r['p90_s_per_query'])} s"
            + (f"; only the first {r['limit']} photos" if r.get("limit") else "") + ".\n\n" + table(heads, rows))


def summary(r: dict) -> str:
    """The key numbers, for the current-numbers page."""
    t = r["test"]
    return (f"test top-1 / AUROC / open-set **{fmt(t.get('top1'))} / {fmt(t.get('auroc'))} / "
            f"{fmt(t.get('open_set_acc'))}**, FPR@95TPR {fmt(t.get('fpr_at_95tpr'))}; extraction + matching per photo "
            f"median {fmt(r['median_s_per_query'])} s")


if __name__ == "__main__":
    raise SystemExit(main())
