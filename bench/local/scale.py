"""Local channel at scale: distractor references beside threadless-dev, and the descriptor index at 1k–100k images.

``distractors``: simple-icons brand logos (CC0, rendered with resvg as the demo does) enrolled beside the
276 threadless-dev designs; every photo queried through the local channel alone (top-1, AUROC, open-set
accuracy at the threshold chosen on split=calib; a distractor on top is a wrong answer).

``index``: descriptor-index build time, memory, query latency and recall against exact search, for IVF
variants (list counts, code formats, flat or HNSW coarse quantiser, nprobe). 1k references are real
(designs + icons); larger catalogs repeat their codes under new ids (said so in the report), since
extracting and encoding 100k real references does not fit this machine.

    python -m bench local-scale distractors --n 1000 --n 3000 [--no-write]
    python -m bench local-scale index [--refs 1000 --refs 10000] [--nlist 4096 --nlist 16384]
        [--index PQ32 --index HNSW:PQ64x4fs --index Flat] [--nprobe 8 --nprobe 16] [--queries 8] [--no-write]

``e2e``: the local channel end to end (decode, SIFT, search, verification) per photo and its accuracy at
1k references (real) and 10k (designs + 3,000 real icons + synthetic noisy copies of icons), for
DescriptorIndex configurations named in ``bench.local.e2e.SPECS`` (exact, default, prev, sq8, nprobe8, nprobe32).

    python -m bench local-scale e2e [--refs 1000 --refs 10000] [--index exact --index prev --index default]
        [--timed 40] [--no-write]
    python -m bench local-scale e2e --from RUN.json [RUN.json ...] [--notes NOTES.md]   # one record of saved runs

``roster``: the local channel at 276 (the designs alone) to 180k references of DISTINCT logo-like references
(``bench.local.roster``: designs, real band-logos, simple-icons, generated band logos; beyond ``--distinct`` the
generated ones' descriptor sets reused under new ids), each index queried in a fresh process per layout (codes in
RAM, memory-mapped, no re-ranking): build time, disk, resident / anonymous / file-backed memory, p50/p90 per photo
end to end on 2 threads, accuracy where every reference is distinct. Fill the feature cache first:

    python -m bench.local.roster extract --n 50000
    python -m bench local-scale roster [--refs 276 --refs 1000 --refs 10000 --refs 50000 --refs 180000]
        [--layout ram --layout mmap --layout norefine] [--timed 40] [--no-write]
    python -m bench local-scale roster --layout ram --min-votes 4 --min-votes 3 --min-votes 2   # roster-votes
    python -m bench.local.roster_prints && \
        python -m bench local-scale roster --prints --refs 10000 --refs 50000 --layout ram   # roster-prints
    python -m bench local-scale roster-fused [--refs 276 --refs 50000] [--extras-until 20 --extras-until 0]
        # every channel fused (bench.local.roster_fused)
    python -m bench local-scale roster-e2e [--refs 276 --refs 180000] [--straight]   # a whole query (roster_e2e)

``milvus``: the same roster's descriptors in Milvus Lite beside the FAISS index, per-photo latency and memory
(``bench.local.roster_milvus``):

    python -m bench local-scale milvus [--refs 1000 --refs 10000] [--milvus-index auto --milvus-index IVF_SQ8]
        [--timed 10] [--milvus-server] [--no-write]

Every run is recorded (bench/results/local/) and BENCHMARKS.md regenerated; ``--no-write`` only prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import DATA, WORK, fmt, peak_rss_mb, table
from bench.local import sweep
from bench.local.catalog import ICON_ID0, icon_features, icon_slugs
from bench.record import add_no_write, save_record
from logoid.engine.local import extract
from logoid.identify.match import LocalConfig, verify_search


def run_distractors(data: Path, sizes: list[int], cfg: LocalConfig, progress=None) -> dict:
    rows = sweep.manifest(data)
    qf = sweep.query_features(data, rows, cfg)
    icons = icon_features(icon_slugs(max(sizes)), cfg, progress)
    res = {}
    for n in sizes:
        t = time.perf_counter()
        dindex = sweep.build_refs(data, rows, cfg, extra=icons[:n])
        build_s = time.perf_counter() - t
        times, results = [], []
        for f in qf:
            t = time.perf_counter()
            D, own = dindex.search(f.desc, k=max(2, cfg.match.neighbours))
            results.append(verify_search(f, dindex, D, own, cfg) if len(f) else [])
            times.append(time.perf_counter() - t)
        ev = sweep.evaluate(rows, results, "score")
        recs = ev.pop("records")
        res[n] = {**ev, "descriptors": dindex.ntotal, "ivf": bool(dindex.config.ivf), "build_s": build_s,
                  "median_match_s": statistics.median(times),
                  "distractor_top": sum(1 for r in recs if r["top"] is not None and r["top"] >= ICON_ID0)}
        print(n, {k: v for k, v in res[n].items()}, file=sys.stderr)
    return res


def distractors_markdown(res: dict) -> str:
    rows = []
    for n, r in res.items():
        rows.append([n, r["descriptors"], "IVF" if r["ivf"] else "exact", r["test"]["top1"], r["test"]["auroc"],
                     r["test"]["open_set"], r["calib"]["top1"], r["distractor_top"], r["median_match_s"]])
    return ("Local channel alone on threadless-dev (split=test; threshold on split=calib) with simple-icons brand "
            "logos enrolled as extra references beside the 276 designs (rendered 384 px, normal + inverted). "
            "`distractor on top`: photos (all splits, known and unknown) whose best verified reference is an "
            "icon. Match time = descriptor search + verification, features precomputed.\n\n" + table(
                ["distractors", "descriptors", "index", "top-1", "AUROC", "open-set acc", "calib top-1",
                 "distractor on top", "median match s"], rows))


# ---- index scale ---------------------------------------------------------------------------------
def run_index(data: Path, sizes: list[int], cfg: LocalConfig, specs: list[str], nprobes: list[int],
              n_queries: int = 10, n_exact: int = 3, nlists: tuple[int, ...] = (4096,), progress=None) -> dict:
    """Latency, memory and recall of descriptor-index variants at ``sizes`` reference images.

    The first 1,000 images are real (designs, then icons; normal + inverted). Larger catalogs repeat
    those images' codes under new ids: the lists grow as a real catalog's would, without encoding
    100M descriptors on this machine (the repeats are exact duplicates, so only the index is measured).
    The variants of one list count share one coarse quantiser (k-means); ``specs`` are code formats
    (``PQ32``: 32 bytes of 8-bit PQ; ``PQ64x4fs``: 32 bytes of 4-bit PQ scanned with SIMD fast-scan; ``Flat``),
    optionally prefixed ``HNSW:`` for an HNSW graph over the centroids instead of a flat scan of them.
    """
    import faiss

    rows = sweep.manifest(data)
    items = sweep.build_refs_items(data, rows, cfg)
    items += icon_features(icon_slugs(max(0, 1000 - len(items))), cfg, progress)
    items = items[:1000]
    base = np.ascontiguousarray(np.concatenate([f.desc for _, feats in items for f in feats if len(f)]))
    qrows = [r for r in rows if r["split"] == "test"][:n_queries]
    queries = [f for f in (extract(_load(data / r["photo"]), cfg.extract, "query") for r in qrows) if len(f)]
    q_all = np.concatenate([f.desc for f in queries])
    sample = q_all[np.random.default_rng(0).choice(len(q_all), min(300, len(q_all)), replace=False)]
    t = time.perf_counter()
    exact = faiss.IndexFlatL2(128)
    exact.add(base)
    flat_build_s = time.perf_counter() - t
    d_exact = exact.search(sample, 1)[0][:, 0]
    out: dict = {"_meta": {"query_descriptors_median": statistics.median(len(f) for f in queries),
                           "n_queries": len(queries), "n_exact": min(n_exact, len(queries))}}
    flat_lat = [_timed(lambda q=q: exact.search(q.desc, cfg.match.neighbours)) for q in queries[:n_exact]]
    out["1000 Flat (exact)"] = {"refs": len(items), "descriptors": len(base), "kind": "Flat (exact)", "nprobe": "",
                                "build_s": flat_build_s, "index_mb": base.nbytes / 2**20,
                                "median_search_s": statistics.median(flat_lat), "recall_at_1": 1.0}
    print(out["1000 Flat (exact)"], file=sys.stderr)
    rng = np.random.default_rng(0)
    train = np.ascontiguousarray(base[rng.choice(len(base), min(len(base), 100_000), replace=False)])
    for nl in nlists:
        out.update(_ivf_variants(base, train, len(items), sizes, cfg, specs, nprobes, nl, queries, sample, d_exact))
    return out


def _ivf_variants(base, train, n_items, sizes, cfg, specs, nprobes, nlist, queries, sample, d_exact) -> dict:
    """Every (code format, quantiser, nprobe) variant of IVF``nlist`` at every size (see :func:`run_index`)."""
    import faiss

    out = {}
    t = time.perf_counter()
    quantizer = faiss.IndexFlatL2(128)
    km = faiss.Clustering(128, nlist)
    km.niter, km.seed = 10, 0
    km.train(train, quantizer)
    hnsw = faiss.IndexHNSWFlat(128, 32)
    hnsw.add(faiss.vector_to_array(quantizer.codes).view(np.float32).reshape(nlist, 128))
    hnsw.hnsw.efSearch = 128
    assign = hnsw.assign(base, 1).reshape(-1)  # list of every base descriptor, computed once (HNSW: fast, ~exact)
    coarse_s = time.perf_counter() - t
    print(f"coarse quantiser {coarse_s:.0f} s", file=sys.stderr)
    for spec in dict.fromkeys(s.removeprefix("HNSW:") for s in specs):  # one code table per format
        m, nbits, fast = _parse_pq(spec)
        t = time.perf_counter()
        if spec == "Flat":
            ivf = faiss.IndexIVFFlat(quantizer, 128, nlist)
        else:
            ivf = faiss.IndexIVFPQ(quantizer, 128, nlist, m, nbits)
            ivf.train(train)  # the quantiser is trained: this trains the PQ only
        codes = np.empty((len(base), ivf.sa_code_size()), np.uint8)
        ivf.encode_vectors(len(base), faiss.swig_ptr(base), faiss.swig_ptr(assign), faiss.swig_ptr(codes), True)
        encode_s = time.perf_counter() - t
        have = 0
        for n in sorted(sizes):
            t = time.perf_counter()
            while have < n:  # one more copy of the 1,000 images' codes, under new ids
                copy = have // n_items
                ivf.add_sa_codes(codes, np.arange(len(base), dtype=np.int64) + copy * len(base))
                have += n_items
            search_idx = faiss.IndexIVFPQFastScan(ivf) if fast else ivf
            add_s = time.perf_counter() - t
            for qname in ("", "HNSW:"):
                if qname + spec not in specs:
                    continue
                search_idx.quantizer = hnsw if qname else quantizer
                for nprobe in nprobes:
                    params = faiss.SearchParametersIVF()
                    params.nprobe = nprobe
                    if qname:
                        qp = faiss.SearchParametersHNSW()
                        qp.efSearch = max(2 * nprobe, 32)
                        params.quantizer_params = qp
                    lat = [_timed(lambda q=q, ix=search_idx, p=params: ix.search(q.desc, cfg.match.neighbours, params=p))
                           for q in queries]
                    _, got = search_idx.search(sample, 1, params=params)
                    # a returned id is a copy of base[id % len(base)]: its true distance against the exact nearest
                    d_got = ((base[got[:, 0] % len(base)] - sample) ** 2).sum(axis=1)
                    key = f"{n} IVF{nlist} {qname}{spec} nprobe {nprobe}"
                    out[key] = {"refs": have, "descriptors": int(search_idx.ntotal),
                                "kind": f"IVF{nlist}{'_HNSW32' if qname else ''},{spec}", "nprobe": nprobe,
                                "build_s": coarse_s + encode_s + add_s,
                                "index_mb": search_idx.ntotal * (ivf.code_size + 8) / 2**20,
                                "median_search_s": statistics.median(lat),
                                "recall_at_1": float(np.mean(d_got <= d_exact * (1 + 1e-4) + 1e-6)),
                                "peak_rss_mb": peak_rss_mb()}
                    print(key, out[key], file=sys.stderr)
            search_idx.quantizer = quantizer
    return out


def _parse_pq(spec: str) -> tuple[int, int, bool]:
    """``PQ32`` -> (32, 8, False); ``PQ64x4fs`` -> (64, 4, True); ``Flat`` (float32 vectors) -> (0, 0, False)."""
    if spec == "Flat":
        return 0, 0, False
    body = spec.removeprefix("PQ")
    fast = body.endswith("fs")
    body = body.removesuffix("fs")
    m, _, nbits = body.partition("x")
    return int(m), int(nbits or 8), fast


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _load(path: Path):
    from logoid.core.imageio import load_image

    return load_image(path)


def index_markdown(res: dict) -> str:
    meta = res["_meta"]
    rows = [[r["refs"], r["descriptors"], r["kind"], r["nprobe"], fmt(r["build_s"], 1), fmt(r["index_mb"], 0),
             r["median_search_s"], r["recall_at_1"]] for k, r in res.items() if k != "_meta"]
    return (f"Descriptor index alone (FAISS, 1 thread). The first 1,000 reference images are real (276 "
            "threadless designs + 724 simple-icons, normal + inverted RootSIFT); larger catalogs repeat those "
            "images' codes under new ids (synthetic: list lengths grow as a real catalog's would, the vectors "
            "are duplicates). Search = k=8 neighbours of every descriptor of one real photo, median over "
            f"{meta['n_queries']} test photos (median {meta['query_descriptors_median']} descriptors each; exact "
            f"row: {meta['n_exact']} photos); recall@1 = share of 300 sampled photo descriptors whose returned "
            "neighbour is as close as the exact nearest one. The IVF rows of one list count share one coarse "
            "quantiser (k-means, 10 iterations on 100k descriptors); HNSW32 = an HNSW graph over "
            "those centroids (efSearch max(2·nprobe, 32)) instead of scanning all of them. PQ32 = 32 bytes of "
            "8-bit PQ; PQ64x4fs = 32 bytes of 4-bit PQ scanned with SIMD fast-scan; Flat = float32 vectors (512 bytes, "
            "DescriptorConfig's pq_m=0). Base descriptors are assigned to lists through the HNSW graph "
            "(efSearch 128). Build s = quantiser + "
            "encoding + adding (the exact row: adding). Index MB = codes + ids.\n\n"
            + table(["references", "descriptors", "index", "nprobe", "build s", "index MB", "median search s",
                     "recall@1 vs exact"], rows))


def _also_row(spec: str) -> tuple:
    """``NPROBE:THREADS[:EF][:KEY=VALUE...]`` -> (nprobe, threads, ef or None, {key: number})."""
    parts = spec.split(":")
    plain = [p for p in parts if "=" not in p]
    if len(plain) not in (2, 3) or any("=" not in p for p in parts[len(plain):]):
        raise SystemExit(f"--also {spec!r}: expected NPROBE:THREADS[:EF][:KEY=VALUE...]")
    settings = {}
    for p in parts[len(plain):]:
        k, v = p.split("=", 1)
        settings[k] = float(v) if "." in v else int(v)
    return int(plain[0]), int(plain[1]), int(plain[2]) if len(plain) == 3 else None, settings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["distractors", "index", "e2e", "roster", "roster-fused", "roster-e2e", "milvus"])
    ap.add_argument("--data", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--n", type=int, action="append", default=None, help="distractor counts (default 1000, 3000)")
    ap.add_argument("--refs", type=int, action="append", default=None,
                    help="index sizes (default 1000, 10000)")
    ap.add_argument("--index", action="append", default=None,
                    help="IVF code formats, e.g. PQ32, PQ64x4fs, HNSW:PQ64x4fs (default PQ32 and HNSW:PQ64x4fs)")
    ap.add_argument("--nprobe", type=int, action="append", default=None, help="IVF lists visited (default 16)")
    ap.add_argument("--queries", type=int, default=10, help="test photos timed per index variant")
    ap.add_argument("--nlist", type=int, action="append", default=None, help="IVF lists (default 4096)")
    ap.add_argument("--merge", type=int, default=5, help="e2e: icons joined into one synthetic reference")
    ap.add_argument("--also", action="append", default=[], metavar="NPROBE:THREADS[:EF][:KEY=VALUE...]",
                    help="e2e: also search each IVF build with this nprobe, thread count, optionally HNSW efSearch and "
                         "search / verification settings: refine or LocalConfig fields (e.g. 8:1, 16:2:32, "
                         "16:2:refine=2, 16:2:16:ransac_max_iters=2000)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="e2e: save IVF builds here; a build already there is reused and only the --also rows run")
    ap.add_argument("--timed", type=int, default=40, help="e2e, roster: test photos timed end to end")
    ap.add_argument("--layout", action="append", default=None, choices=["ram", "mmap", "norefine"],
                    help="roster: descriptor-index layouts to query (default all three)")
    ap.add_argument("--min-votes", type=int, action="append", default=None,
                    help="roster: score accuracy with each of these MatchConfig.min_votes (a record of its own)")
    ap.add_argument("--extras-until", type=int, action="append", default=None,
                    help="roster-fused: each of these MatchConfig.extras_until_inliers side by side (0 = the global "
                         "shortlist's images always searched; default: the default alone)")
    ap.add_argument("--prints", action="store_true",
                    help="roster: also the band-logo prints, against the band logos alone and each catalog holding "
                         "them (a record of its own, roster-prints)")
    ap.add_argument("--distinct", type=int, default=50_000,
                    help="roster: distinct references available; larger catalogs reuse generated ones under new ids")
    ap.add_argument("--straight", action="store_true",
                    help="roster-e2e: build catalogs beyond --distinct straight (their own IVF lists, as build-index "
                         "would) instead of assembling them from the distinct index's lists")
    ap.add_argument("--milvus-index", action="append", default=None, choices=["auto", "IVF_FLAT", "IVF_SQ8", "HNSW"],
                    help="milvus: Milvus Lite index types beside FAISS (default auto: what build-index makes)")
    ap.add_argument("--milvus-server", action="store_true",
                    help="milvus: a Milvus standalone server started for the run (PyPI `milvus`, installed by make "
                         "install) instead of Milvus Lite files (a record of its own, milvus-server)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/work/local_scale_<what>.json)")
    ap.add_argument("--from", dest="saved", type=Path, nargs="+", default=None,
                    help="e2e: record one table of these saved result JSON files (--out of runs of one size each) "
                         "instead of running")
    ap.add_argument("--notes", type=Path, default=None, help="with --from: a file whose text goes under the table")
    add_no_write(ap)
    args = ap.parse_args(argv)
    import cv2
    import faiss
    from tqdm import tqdm

    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = LocalConfig()
    bar = lambda it: tqdm(it, leave=False, file=sys.stderr)  # noqa: E731
    from bench.local import e2e

    if args.what == "e2e" and args.saved:
        res = e2e.merge([json.loads(p.read_text()) for p in args.saved])
        md, notes = e2e.e2e_markdown(res), (args.notes.read_text().strip() if args.notes else "")
        print(md + (f"\n\n{notes}" if notes else ""))
        if not args.no_write:
            _record("e2e", res, md, e2e.summary(res), notes)
        return 0
    if args.what == "milvus":
        from bench.local import roster_milvus

        res = roster_milvus.run(args.refs or [1000, 10000], args.milvus_index or ["auto"], args.timed,
                                server=args.milvus_server)
        md, summary = roster_milvus.markdown(res), roster_milvus.summary(res)
    elif args.what == "roster-fused":
        from bench.local import roster_fused

        res = roster_fused.run(args.refs or [276, 50_000], data=args.data.parent, extras_until=args.extras_until)
        md, summary = roster_fused.markdown(res), roster_fused.summary(res)
    elif args.what == "roster-e2e":
        from bench.local import roster_e2e

        res = roster_e2e.run(args.refs or [276, 180_000], args.timed, distinct=args.distinct, data=args.data.parent,
                             straight=args.straight)
        md, summary = roster_e2e.markdown(res), roster_e2e.summary(res)
    elif args.what == "roster":
        from bench.local import roster

        res = roster.run(args.refs or [276, 1000, 10000, 50000], args.layout or ["ram", "mmap", "norefine"],
                         args.distinct, args.timed, nprobes=args.nprobe, votes=args.min_votes, prints=args.prints)
        if args.prints:
            from bench.local import roster_prints

            md, summary = roster_prints.markdown(res), roster_prints.summary(res)
        elif args.min_votes:
            md, summary = roster.votes_markdown(res), roster.votes_summary(res)
        else:
            md, summary = roster.markdown(res), roster.summary(res)
    elif args.what == "e2e":
        res = e2e.run_e2e(args.data, args.refs or [1000, 10000], args.index or ["exact", "prev", "default"],
                          cfg, args.timed, args.merge, bar,
                          [_also_row(a) for a in args.also], args.keep)
        md, summary = e2e.e2e_markdown(res), e2e.summary(res)
    elif args.what == "distractors":
        res = run_distractors(args.data, args.n or [1000, 3000], cfg, bar)
        md, summary = distractors_markdown(res), distractors_summary(res)
    else:
        res = run_index(args.data, args.refs or [1000, 10000], cfg, args.index or ["PQ32", "HNSW:PQ64x4fs"],
                        args.nprobe or [16], n_queries=args.queries, nlists=args.nlist or [4096], progress=bar)
        md, summary = index_markdown(res), index_summary(res)
    print(md)
    out = args.out or WORK / f"local_scale_{args.what}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    if not args.no_write:  # a roster run that varies the IVF lists visited is a record of its own
        name = args.what if args.what != "roster" else \
            "roster-prints" if args.prints else "roster-votes" if args.min_votes else \
            "roster-nprobe" if args.nprobe else "roster"
        name = "milvus-server" if args.what == "milvus" and args.milvus_server else name
        _record(name, res, md, summary)
    return 0


def _record(what: str, res: dict, md: str, summary: str, notes: str = "") -> None:
    save_record("local", what, json.loads(json.dumps(res, default=str)), md, summary=summary, notes=notes)


def distractors_summary(res: dict) -> str:
    """The key numbers, for the current-numbers page."""
    return "test top-1 / AUROC / open-set: " + "; ".join(
        f"{n} icons {fmt(r['test']['top1'])} / {fmt(r['test']['auroc'])} / {fmt(r['test']['open_set'])} (a distractor "
        f"on top for {r['distractor_top']} photos)" for n, r in res.items())


def index_summary(res: dict) -> str:
    """The key numbers, for the current-numbers page: the fastest variant at the largest size, and its recall."""
    rows = [r for k, r in res.items() if k != "_meta"]
    top = max(r["refs"] for r in rows)
    fast = min((r for r in rows if r["refs"] == top), key=lambda r: r["median_search_s"])
    return (f"{top} references ({fast['descriptors']} descriptors): fastest {fast['kind']} nprobe {fast['nprobe']}, "
            f"median search {fmt(fast['median_search_s'])} s per photo, recall@1 {fmt(fast['recall_at_1'])}, "
            f"{fmt(fast['index_mb'], 0)} MB; {len(rows)} variants in the table")


if __name__ == "__main__":
    raise SystemExit(main())
