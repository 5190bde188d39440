"""Sweep local-channel settings on threadless-dev with cached features and searches (settings chosen on calib).

Reference features and query features are cached under ``bench/work/local-cache`` keyed by their
extraction settings; each query's k-NN search is done once per (reference, query) setting and reused by
every matching / verification setting of the sweep. Reports top-1, AUROC and open-set accuracy (threshold
chosen on ``split=calib``) of the local channel alone, for calib and test.

    python -m bench local-sweep --set query_tiles=2 --sweep ratio=0.9,0.95 --out sweep.json [--no-write]
    python -m bench local-sweep --from sweep.json [more.json ...] [--notes TEXT]   # one record of saved sweeps

A run is recorded (one table of its rows) and BENCHMARKS.md regenerated; ``--no-write`` only prints. ``--from``
records one table of several saved runs (their ``--out`` files) instead, e.g. one ``--set`` each.

``--shrink 0.7`` reads every photo shrunk to 70 % first (bicubic, as a tile of a multi-logo mosaic is): the
recall of small, blurred prints.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import DATA, WORK, fmt, read_manifest, table
from bench.record import add_no_write, save_record
from logoid.core.imageio import file_hash, load_image
from logoid.engine.local import FeatureCache, Features, extract
from logoid.identify.match import LocalConfig, verify_search
from logoid.index.descriptors import DescriptorIndex

CACHE = WORK / "local-cache"


def parse_value(v: str):
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def manifest(data: Path) -> list[dict]:
    return read_manifest(data)


def build_refs_items(data: Path, rows: list[dict], cfg: LocalConfig) -> list[tuple[int, list[Features]]]:
    """(design id, [normal, inverted]) reference features of every enrolled design (cached)."""
    cache = FeatureCache(CACHE / "refs")

    def feats(path: Path):
        return cache.get_reference(file_hash(path), lambda: load_image(path), cfg.extract)

    return [(int(r["id"]), feats(data / r["design"])[: 2 if cfg.extract.enrol_inverted else 1])
            for r in rows if r["role"] == "enrolled"]


def build_refs(data: Path, rows: list[dict], cfg: LocalConfig, extra=()) -> DescriptorIndex:
    """The descriptor index of the enrolled designs (+ ``extra`` items); without extras it is cached on disk."""
    saved = CACHE / "index" / f"{cfg.extract.ref_hash()}-{cfg.extract.enrol_inverted}"
    if not extra and saved.with_name(saved.name + ".json").exists():
        return DescriptorIndex.load(saved)
    dindex = DescriptorIndex.build(build_refs_items(data, rows, cfg) + list(extra), feature_config=cfg.extract)
    if not extra:
        saved.parent.mkdir(parents=True, exist_ok=True)
        dindex.save(saved)
    return dindex


def _shrink_tag(shrink: float) -> str:
    return "" if shrink == 1.0 else f"-shrink{shrink:g}"


def query_features(data: Path, rows: list[dict], cfg: LocalConfig, shrink: float = 1.0) -> list[Features]:
    from PIL import Image

    d = CACHE / "queries" / (cfg.extract.query_hash() + _shrink_tag(shrink))
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for r in rows:
        p = d / f"{r['id']}.npz"
        if p.exists():
            out.append(Features.from_npz(p))
            continue
        img = load_image(data / r["photo"])
        if shrink != 1.0:
            img = img.resize((max(1, round(img.width * shrink)), max(1, round(img.height * shrink))),
                             Image.Resampling.BICUBIC)
        f = extract(img, cfg.extract, "query")
        f.to_npz(p)
        out.append(f)
    return out


def cached_search(dindex: DescriptorIndex, qf: list[Features], cfg: LocalConfig, tag: str = "") -> list:
    """k-NN of every query's descriptors, cached on disk per (reference, query, k) settings."""
    from logoid.index.descriptors import KP_BITS, OWNER_SHIFT, decode_ids

    ext = cfg.extract
    key = f"{ext.ref_hash()}-{ext.query_hash()}-{cfg.match.neighbours}-{ext.enrol_inverted}{tag}"
    p = CACHE / "search" / f"{key}.npz"
    if p.exists():
        z = np.load(p)
        off, D, ids = z["off"], z["D"], z["ids"]  # each z[...] reads the whole array again: read once
        return [(D[a:b].copy(), np.stack(decode_ids(ids[a:b]), axis=-1)) for a, b in zip(off[:-1], off[1:], strict=True)]
    out = [dindex.search(f.desc, k=max(2, cfg.match.neighbours)) for f in qf]
    ids = [np.where(o[..., 0] < 0, -1, (o[..., 0] << OWNER_SHIFT) | (o[..., 1] << KP_BITS) | o[..., 2]) for _, o in out]
    p.parent.mkdir(parents=True, exist_ok=True)
    off = np.concatenate([[0], np.cumsum([len(d) for d, _ in out])])
    np.savez(p, D=np.concatenate([d for d, _ in out]), ids=np.concatenate(ids), off=off)
    return out


SCORES = {
    "inliers": lambda v: v.inliers,
    "score": lambda v: v.score,  # what verify ranks by (VerifyConfig.inlier_ratio_weight)
    # a-contrario flavour: inliers discounted by how many tentative matches RANSAC had to choose from
    "inl-2log": lambda v: v.inliers - 2.0 * np.log(v.inliers / max(v.inlier_ratio, 1e-6)),
    "inl-4log": lambda v: v.inliers - 4.0 * np.log(v.inliers / max(v.inlier_ratio, 1e-6)),
    "inl*sqrt_ratio": lambda v: v.inliers * np.sqrt(v.inlier_ratio),
}


def evaluate(rows: list[dict], results: list[list], score: str = "inliers") -> dict:
    from sklearn.metrics import roc_auc_score

    fn = SCORES[score]
    recs = []
    for r, res in zip(rows, results, strict=True):
        known = r["role"] == "enrolled"
        res = sorted(res, key=lambda v: -fn(v))
        recs.append({"id": int(r["id"]), "split": r["split"], "known": known,
                     "top": res[0].image_id if res else None, "score": float(fn(res[0])) if res else -1e9,
                     "truth_inliers": next((v.inliers for v in res if v.image_id == int(r["id"])), 0)})

    def osa(sel, t):
        return float(np.mean([(x["score"] >= t and x["top"] == x["id"]) if x["known"] else x["score"] < t
                              for x in sel]))

    calib = [x for x in recs if x["split"] == "calib"]
    cands = sorted({x["score"] for x in calib} | {1e12})
    thr = max(cands, key=lambda t: (osa(calib, t), -t))
    out = {"threshold": thr}
    for split in ("calib", "test"):
        sel = [x for x in recs if x["split"] == split]
        known = [x for x in sel if x["known"]]
        y = np.array([x["known"] for x in sel], int)
        s = np.array([x["score"] for x in sel], float)
        out[split] = {"top1": float(np.mean([x["top"] == x["id"] for x in known])),
                      "auroc": float(roc_auc_score(y, s)), "open_set": osa(sel, thr)}
    out["records"] = recs
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--sweep", action="append", default=[], metavar="FIELD=V1,V2",
                    help="matching/verification fields to sweep (extraction fields are fixed by --set)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--shrink", type=float, default=1.0,
                    help="read the photos shrunk by this factor first (0.7: a tile of a 2x2 mosaic)")
    ap.add_argument("--score", action="append", default=None, choices=sorted(SCORES),
                    help="local score(s) to rank and reject by (default inliers)")
    ap.add_argument("--from", dest="saved", type=Path, nargs="+", default=None,
                    help="record one table of these saved sweep JSON files (--out of earlier runs) instead of running")
    ap.add_argument("--notes", default="", help="a paragraph under the recorded table")
    ap.add_argument("--defaults", default=None,
                    help="with --from: the LocalConfig defaults the rows' unnamed settings had when they ran")
    add_no_write(ap)
    args = ap.parse_args(argv)
    if args.saved:
        rows = [d for path in args.saved for d in json.loads(path.read_text())]
        print(record_rows(rows, args.notes, args.defaults or "those of the saved runs' commit", write=not args.no_write))
        return 0
    args.score = args.score or ["inliers"]
    import cv2
    import faiss

    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)
    over = {k: parse_value(v) for k, _, v in (s.partition("=") for s in args.set)}
    base = LocalConfig.of(**over)
    rows = manifest(args.data)
    t = time.perf_counter()
    dindex = build_refs(args.data, rows, base)
    print(f"refs: {dindex.ntotal} descriptors in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    t = time.perf_counter()
    if not 0.05 <= args.shrink <= 1.0:
        ap.error("--shrink must be in [0.05, 1]")
    qf = query_features(args.data, rows, base, args.shrink)
    print(f"queries: median {statistics.median(len(f) for f in qf)} keypoints, {time.perf_counter() - t:.1f} s",
          file=sys.stderr)
    t = time.perf_counter()
    searched = cached_search(dindex, qf, base, _shrink_tag(args.shrink))
    search_s = time.perf_counter() - t
    print(f"search: {search_s:.1f} s", file=sys.stderr)
    grid = [[(k, parse_value(x)) for x in vs.split(",")] for k, _, vs in (s.partition("=") for s in args.sweep)]
    report = []
    if args.shrink != 1.0:
        over["photos shrunk to"] = args.shrink
    for combo in itertools.product(*grid) if grid else [()]:
        cfg = base.override(**dict(combo))
        t = time.perf_counter()
        results = []
        for f, (D, own) in zip(qf, searched, strict=True):
            results.append(verify_search(f, dindex, D, own, cfg) if len(f) else [])
        verify_s = round(time.perf_counter() - t, 1)
        for score in args.score:
            ev = evaluate(rows, results, score)
            tag = {**dict(combo), "score": score}
            print(json.dumps({"set": over, "sweep": tag, "calib": ev["calib"], "test": ev["test"],
                              "threshold": ev["threshold"], "verify_s": verify_s}))
            report.append({"set": over, "sweep": tag, **ev, "search_s": search_s})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    print(record_rows(report, args.notes, write=not args.no_write))
    return 0


def record_rows(results: list[dict], notes: str = "", defaults: str = "those of the commit measured",
                write: bool = True) -> str:
    """One table of sweep results (the rows a run makes, or its --out file), in the order given; ``write``: record it
    and regenerate BENCHMARKS.md. Returns the table."""
    rows, numbers = [], []
    for d in results:
        setting = ", ".join(f"{k}={v}" for k, v in {**d["set"], **d["sweep"]}.items()) or "defaults"
        c, t = d["calib"], d["test"]
        rows.append([setting, c["top1"], c["auroc"], c["open_set"], t["top1"], t["auroc"], t["open_set"]])
        numbers.append({"setting": setting, "calib": c, "test": t, "threshold": d.get("threshold")})
    md = ("Local channel alone on threadless-dev; threshold for open-set accuracy chosen on split=calib; settings "
          "chosen on calib. Rows are cumulative where the setting says so (a row's unnamed settings are the "
          f"LocalConfig defaults: {defaults}). "
          "`candidate_ratio`: once a reference is shortlisted by ratio-test votes, its tentative matches are all "
          "photo keypoints whose nearest keypoint of that reference (among the k=8 neighbours) is within "
          "d1 / candidate_ratio. `score`: what ranks and rejects (inliers; inl*sqrt_ratio = inliers × "
          "sqrt(inliers / tentative matches); inl-2log = inliers − 2·log(tentative)).\n\n"
          + table(["setting", "calib top-1", "calib AUROC", "calib open-set", "test top-1", "test AUROC",
                   "test open-set"], rows))
    if write:
        save_record("local", "sweep", {"defaults": defaults, "rows": numbers}, md, notes=notes, summary=summary(rows))
    return md + (f"\n\n{notes}" if notes else "")


def summary(rows: list[list]) -> str:
    """The key numbers, for the current-numbers page: calib and test top-1 / AUROC of (up to 6) settings."""
    return "calib top-1 / AUROC and test top-1 / AUROC: " + "; ".join(
        f"{r[0]} {fmt(r[1])} / {fmt(r[2])} and {fmt(r[4])} / {fmt(r[5])}" for r in rows[:6]) + \
        (f"; {len(rows) - 6} more settings in the table" if len(rows) > 6 else "")


if __name__ == "__main__":
    raise SystemExit(main())
