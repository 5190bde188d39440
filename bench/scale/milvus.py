"""FAISS vs Milvus Lite for the global vectors, side by side in one run, on the same synthetic vectors.

    OMP_NUM_THREADS=1 python -m bench milvus [--n 20000] [--dim 512] [--no-write]

Vectors are clustered like real embeddings (n/20 centres × 20 noisy variants, L2-normalised), ids
``image*1024+variant``. Measured: start-up (import pymilvus + open the Lite file), build (create, insert,
index, load), query p50/p99 one photo at a time at k=10 and k=400 (what identify asks for), a batch of 100
queries, an add + remove of one image (staged, then applied), and the top-10 agreement with FAISS.
Results go to bench/work/milvus_compare.json; the run is recorded and BENCHMARKS.md regenerated (``--no-write``: not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import WORK, fmt, table
from bench.record import add_no_write, save_record
from logoid.index.vectors import VectorIndex, encode_ids

RESULTS = WORK


def synthetic(n: int, dim: int, variants: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = n // variants
    centres = rng.normal(size=(images, dim)).astype(np.float32)
    x = np.repeat(centres, variants, axis=0) + 0.6 * rng.normal(size=(images * variants, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = encode_ids(np.repeat(np.arange(images) + 1, variants), np.tile(np.arange(variants), images))
    q = centres[rng.choice(images, 200)] + 0.8 * rng.normal(size=(200, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), ids, q.astype(np.float32)


def latencies(index, queries: np.ndarray, k: int) -> dict:
    index.search(queries[:5], k)  # warm-up
    ts = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        ts.append(time.perf_counter() - t)
    return {"p50_ms": 1000 * statistics.median(ts), "p99_ms": 1000 * float(np.percentile(ts, 99))}


def measure(name: str, build, x, ids, q) -> dict:
    t = time.perf_counter()
    index = build()
    out: dict = {"backend": name, "build_s": time.perf_counter() - t}
    for k in (10, 400):
        out[f"k{k}"] = latencies(index, q, k)
    t = time.perf_counter()
    index.search(q[:100], 10)
    out["batch100_ms"] = 1000 * (time.perf_counter() - t)
    image = int(ids[-1] // 1024)
    t = time.perf_counter()
    index.remove_images([image])
    index.add(x[-20:], ids[-20:])
    if hasattr(index, "apply_pending"):
        index.apply_pending()
    out["update_ms"] = 1000 * (time.perf_counter() - t)
    out["_top10"] = index.search(q, 10)[1]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="vectors")
    ap.add_argument("--dim", type=int, default=512)
    add_no_write(ap)
    args = ap.parse_args(argv)
    x, ids, q = synthetic(args.n, args.dim)

    faiss_res = measure("FAISS (Flat, in process)", lambda: VectorIndex.build(x, ids), x, ids, q)

    tmp = Path(tempfile.mkdtemp(prefix="logoid-milvus-bench-"))
    try:
        t = time.perf_counter()
        import pymilvus  # noqa: F401

        from logoid.index.milvus import MilvusConfig, MilvusVectorIndex, connect

        t_import = time.perf_counter() - t
        cfg = MilvusConfig(uri=str(tmp / "milvus.db"))
        t = time.perf_counter()
        connect(cfg.uri)
        t_open = time.perf_counter() - t
        mil_res = measure("Milvus Lite (FLAT)", lambda: MilvusVectorIndex.build(x, ids, cfg, cfg.collection_for(1)),
                          x, ids, q)
        t = time.perf_counter()
        MilvusVectorIndex.open(cfg, cfg.collection_for(1), args.dim)
        mil_res["reopen_s"] = time.perf_counter() - t
        mil_res["startup_s"] = t_import + t_open
        versions = f"pymilvus {pymilvus.__version__}, milvus-lite {__import__('milvus_lite').__version__}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(faiss_res.pop("_top10"), mil_res.pop("_top10"),
                                                                         strict=True)]))
    res = {"n": args.n, "dim": args.dim, "versions": versions, "top10_agreement": agree,
           "faiss": faiss_res, "milvus_lite": mil_res}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "milvus_compare.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    if not args.no_write:
        rows = [[r["backend"], r["build_s"], r["k10"]["p50_ms"], r["k10"]["p99_ms"], r["k400"]["p50_ms"],
                 r["k400"]["p99_ms"], r["batch100_ms"], r["update_ms"]] for r in (faiss_res, mil_res)]
        body = (f"{args.n:,} synthetic {args.dim}-d vectors ({args.n // 20:,} centres × 20 noisy variants), "
                f"{versions}, OMP_NUM_THREADS=1; machine load average at the end {os.getloadavg()[0]:.1f} "
                f"(shared cores: the p99 columns are mostly other processes).\n\n"
                + table(["backend", "build s", "k=10 p50 ms", "k=10 p99 ms", "k=400 p50 ms", "k=400 p99 ms",
                         "100 queries batched ms", "remove+add one image ms"], rows)
                + f"\n\nMilvus Lite start-up: import pymilvus + open the file {mil_res['startup_s']:.2f} s; re-open an "
                  f"existing collection {mil_res['reopen_s']:.2f} s. Top-10 agreement with FAISS: {agree:.3f} (both exact)."
                  "\nMilvus Lite (3.x) is an in-process gRPC server written in Python (FLAT is a numpy scan), and every "
                  "call goes through pymilvus' request/response layer; Milvus pays where it is a server shared by "
                  "many machines, and on one machine FAISS stays the default (README, \"Scaling out: Milvus\").")
        save_record("scale", "milvus", res, body, summary=summary(res))
    return 0


def summary(res: dict) -> str:
    """The key numbers, for the current-numbers page."""
    f, m = res["faiss"], res["milvus_lite"]
    return (f"{res['n']:,} vectors, k=10 p50: FAISS {fmt(f['k10']['p50_ms'])} ms, Milvus Lite {fmt(m['k10']['p50_ms'])} "
            f"ms; build {fmt(f['build_s'])} s vs {fmt(m['build_s'])} s; top-10 agreement {fmt(res['top10_agreement'])}")


if __name__ == "__main__":
    raise SystemExit(main())
