"""Local channel end to end at 1k and 10k references: decode + SIFT + descriptor search + verification per photo.

Run through ``python -m bench local-scale e2e`` (see there). Catalog: the 276 threadless-dev designs, then
simple-icons (real, up to 3,000), then synthetic references: noisy copies of the icons' descriptors
(:func:`bench.local.catalog.synthetic_items`), never of the designs, so a design's ratio test only meets distinct
images.

Per index variant: build time, memory, search and verification time of every photo, accuracy of the local
channel alone (threshold on split=calib, reported on split=test, as ``bench.local.sweep.evaluate``), recall@1
against exact search on 300 photo descriptors. End to end = per photo, decode + extraction (timed fresh on
the first ``timed`` test photos) + its search + its verification; accuracy uses the same features from the
sweep's query cache (checked identical on the timed photos).
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import fmt, peak_rss_mb, table
from bench.local import catalog as ls
from bench.local import sweep
from logoid.engine.local import Features, extract
from logoid.identify.match import LocalConfig, verify_search
from logoid.index.descriptors import DescriptorConfig, DescriptorIndex

SIGMA = 0.027  # noise of synthetic copies: their median distance to the source descriptor ≈ 0.26, the median
# distance of a real icon descriptor to the nearest descriptor of ANOTHER real image (measured on the 1k catalog)
SPECS = {
    "exact": DescriptorConfig(ivf=False),
    # IVF-Flat visiting 256 of 2,048 lists: recall@1 ~0.99 at 1k references for 1/8 of exact search's time
    # (exact takes ~25 min of one core for the 464 photos at 1k)
    "nearexact": DescriptorConfig(ivf=True, quantizer="flat", codes="Flat", refine=0, nprobe=256),
    "default": DescriptorConfig(),  # by size: IVF{4√n}_HNSW32,PQ64x4fs + SQ8 re-ranking, nprobe 16
    "prev": DescriptorConfig(ivf=True, quantizer="flat", codes="Flat", refine=0),  # the default until now
    "sq8": DescriptorConfig(ivf=True, codes="SQ8", refine=0),
    "nprobe8": DescriptorConfig(nprobe=8),
    "nprobe32": DescriptorConfig(nprobe=32),
}
MAX_EXACT = 1_000_000  # exact search (and float IVF) above this many descriptors would take hours for 464 photos


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t0) -> tuple[float, float]:
    return time.perf_counter() - t0[0], time.process_time() - t0[1]


def timed_extraction(data: Path, rows: list[dict], qf: list[Features], cfg: LocalConfig, n: int,
                     check: bool = True) -> dict:
    """Decode + extraction (wall, cpu) of the first ``n`` test photos; checks they equal the cached features."""
    from logoid.core.imageio import load_image

    out = {}
    for i, r in enumerate(rows):
        if r["split"] != "test" or len(out) >= n:
            continue
        t0 = _clock()
        f = extract(load_image(data / r["photo"]), cfg.extract, "query")
        out[i] = _since(t0)
        if check and not np.array_equal(f.desc, qf[i].desc):
            raise RuntimeError(f"photo {r['id']}: fresh features differ from the cached ones")
    return out


def recall_sample(qf: list[Features], rows: list[dict], n: int = 300) -> np.ndarray:
    test = [f.desc for r, f in zip(rows, qf, strict=True) if r["split"] == "test" and len(f)][:10]
    q = np.concatenate(test)
    return q[np.random.default_rng(0).choice(len(q), n, replace=False)]


def exact_nearest(sample: np.ndarray, feats_iter) -> np.ndarray:
    """Squared distance of each sample row to its exact nearest reference descriptor (streamed over items)."""
    best = np.full(len(sample), np.inf, np.float32)
    s2 = (sample**2).sum(1)
    for _, feats in feats_iter:
        for f in feats:
            if len(f):
                d = s2[:, None] + (f.desc**2).sum(1)[None] - 2 * sample @ f.desc.T
                best = np.minimum(best, d.min(1))
    return np.maximum(best, 0)


def true_dist(sample: np.ndarray, owners: np.ndarray, real: dict, sources: list, merge: int) -> np.ndarray:
    """True squared distance of each sample row to its returned neighbour (owners (n, 3))."""
    out = np.full(len(sample), np.inf, np.float32)
    for i, (img, var, kp) in enumerate(owners):
        if img < 0:
            continue
        if img >= ls.SYNTH_ID0:
            j = int(img) - ls.SYNTH_ID0
            feats = next(ls.synthetic_items(sources, j + 1, SIGMA, start=j, merge=merge))[1]
        else:
            feats = real[int(img)]
        out[i] = ((feats[var].desc[kp] - sample[i]) ** 2).sum()
    return out


def run_variant(name: str, n_refs: int, real: list, n_synth: int, rows: list, qf: list, cfg: LocalConfig,
                ext: dict, sample: np.ndarray, d_exact, merge: int, data: Path | None = None,
                also: list[tuple[int, ...]] = (), keep: Path | None = None) -> dict:
    config = SPECS[name]
    sources = [it for it in real if it[0] >= ls.ICON_ID0]
    saved = None
    if keep is not None and config.ivf is not False:  # a build kept from an earlier run of these settings
        saved = keep / f"{name}-{n_refs}refs-{n_synth}synth-m{merge}-{cfg.extract.ref_hash()}"
        if saved.with_name(saved.name + ".json").exists():
            return _reuse(saved, name, n_refs, n_synth, rows, qf, cfg, ext, data, also)
    t0 = _clock()
    if config.ivf is False:
        dindex = DescriptorIndex(config=config, feature_config=cfg.extract.to_dict())
    else:
        n = _count(real, sources, n_synth, merge)
        dindex = DescriptorIndex(config=DescriptorConfig.from_dict({**config.to_dict(), "ivf": True}),
                                 feature_config=cfg.extract.to_dict())
        from logoid.index.descriptor_structure import sample_rows

        dindex.train(sample_rows([f.desc for _, fs in real for f in fs], config.train_size(int(n)), config.seed),
                     n_expected=int(n))
    dindex.add_many(real)
    dindex.add_many(ls.synthetic_items(sources, n_synth, SIGMA, merge=merge))
    build = _since(t0)
    res = {"refs": n_refs, "synthetic_refs": n_synth, "descriptors": dindex.ntotal, "index": dindex.structure(),
           "nprobe": dindex.config.nprobe if dindex.config.ivf else "", "build_s": build[0],
           "index_mb": dindex.memory_bytes() / 2**20}
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        dindex.save(saved)
        Path(str(saved) + ".build.json").write_text(json.dumps(res))
    print(name, n_refs, res, file=sys.stderr, flush=True)
    k = max(2, cfg.match.neighbours)
    searched, t_search = None, {}
    if name == "exact":  # 464 exact searches take ~25 min at 1k: cached; time a few photos
        searched = sweep.cached_search(dindex, qf, cfg, tag=f"-exact-{n_refs}refs-{dindex.ntotal}")
        for i in list(ext)[:3]:
            t0 = _clock()
            dindex.search(qf[i].desc, k=k)
            t_search[i] = _since(t0)
    results, t_verify = [], {}
    for i, f in enumerate(qf):
        if searched is None:
            t0 = _clock()
            D, own = dindex.search(f.desc, k=k)
            t_search[i] = _since(t0)
        else:
            D, own = searched[i]
        t0 = _clock()
        results.append(verify_search(f, dindex, D, own, cfg) if len(f) else [])
        t_verify[i] = _since(t0)
    ev = sweep.evaluate(rows, results, "score")
    recs = ev.pop("records")
    got = dindex.search(sample, k=k)[1][:, 0]
    real_by_id = {int(i): fs for i, fs in real}
    d_got = true_dist(sample, got, real_by_id, sources, merge)
    timed = [i for i in ext if i in t_search]
    e2e = [tuple(ext[i][c] + t_search[i][c] + t_verify[i][c] for c in (0, 1)) for i in timed]
    res.update({
        "recall_at_1": float(np.mean(d_got <= d_exact() * (1 + 1e-4) + 1e-6)),
        "median_search_s": statistics.median(t_search[i][0] for i in timed),
        "median_search_cpu_s": statistics.median(t_search[i][1] for i in timed),
        "median_verify_s": statistics.median(t_verify[i][0] for i in timed),
        "median_e2e_s": statistics.median(x[0] for x in e2e), "median_e2e_cpu_s": statistics.median(x[1] for x in e2e),
        "p90_e2e_s": float(np.percentile([x[0] for x in e2e], 90)), "timed_photos": len(timed),
        "test": ev["test"], "calib": ev["calib"], "threshold": ev["threshold"],
        "distractor_top": sum(1 for r in recs if r["top"] is not None and r["top"] >= ls.ICON_ID0),
        "peak_rss_mb": peak_rss_mb()})
    print(name, n_refs, {k: v for k, v in res.items()}, file=sys.stderr, flush=True)
    if also and dindex.config.ivf:
        res["also"] = [_rerun(dindex, rows, qf, cfg, data, ext, *a) for a in also]
        for r in res["also"]:
            print(name, n_refs, r, file=sys.stderr, flush=True)
    return res


def _reuse(saved: Path, name: str, n_refs: int, n_synth: int, rows: list, qf: list, cfg: LocalConfig, ext: dict,
           data: Path | None, also: list[tuple[int, ...]]) -> dict:
    """Only the ``also`` searches, on a build kept by an earlier run (``--keep``): e.g. the multi-thread timings
    again on an idle machine, without the hour of building."""
    dindex = DescriptorIndex.load(saved)
    res = {**json.loads(Path(str(saved) + ".build.json").read_text()), "reused_build": True}
    res["also"] = [_rerun(dindex, rows, qf, cfg, data, ext, *a) for a in also]
    for r in res["also"]:
        print(name, n_refs, r, file=sys.stderr, flush=True)
    return res


def _rerun(dindex, rows: list, qf: list, cfg: LocalConfig, data: Path, ext: dict, nprobe: int, threads: int,
           ef: int | None = None, settings: dict | None = None) -> dict:
    """The same built index searched with another nprobe, thread count (FAISS, OpenCV: SIFT and the verification
    pool) and HNSW efSearch (None = the config's): accuracy and per-photo timings. ``settings``: ``refine`` (SQ8
    re-ranking candidates per neighbour) and LocalConfig fields (e.g. ``ransac_max_iters``) for this row only."""
    import cv2
    import faiss

    settings = dict(settings or {})
    unknown = set(settings) - {"refine"} - set(cfg.flat())
    if unknown:
        raise ValueError(f"--also: unknown settings {sorted(unknown)} (refine or LocalConfig fields)")
    before = (dindex.config.nprobe, dindex.config.ef_search, dindex.config.refine)
    dindex.config.nprobe = nprobe
    if ef is not None:
        dindex.config.ef_search = ef
    if "refine" in settings:
        dindex.config.refine = int(settings["refine"])
    row_cfg = cfg.override(**{k: v for k, v in settings.items() if k != "refine"})
    if row_cfg.extract.ref_hash() != cfg.extract.ref_hash() or row_cfg.extract.query_hash() != cfg.extract.query_hash():
        raise ValueError(f"--also settings {settings} change feature extraction; only search / verification settings")
    cfg = row_cfg
    dindex.set_search_params()
    faiss.omp_set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        ext_t = timed_extraction(data, rows, qf, cfg, len(ext), check=False) if threads != 1 else ext
        k = max(2, cfg.match.neighbours)
        results, t_search, t_verify = [], {}, {}
        for i, f in enumerate(qf):
            t0 = _clock()
            D, own = dindex.search(f.desc, k=k)
            t_search[i] = _since(t0)
            t0 = _clock()
            results.append(verify_search(f, dindex, D, own, cfg) if len(f) else [])
            t_verify[i] = _since(t0)
    finally:
        faiss.omp_set_num_threads(1)
        cv2.setNumThreads(1)
        # what set_search_params gave the HNSW quantiser (an IVF index with a flat quantiser has none)
        hnsw = dindex.config.ivf and "HNSW" in dindex.structure()
        ef_used = max(dindex.config.ef_search, dindex.config.nprobe) if hnsw else ""
        dindex.config.nprobe, dindex.config.ef_search, dindex.config.refine = before  # next row: the build's
        dindex.set_search_params()
    ev = sweep.evaluate(rows, results, "score")
    ev.pop("records")
    timed = [i for i in ext_t if i in t_search]
    e2e = [ext_t[i][0] + t_search[i][0] + t_verify[i][0] for i in timed]
    return {"nprobe": nprobe, "threads": threads, "ef_search": ef_used, "settings": settings,
            "median_extract_s": statistics.median(ext_t[i][0] for i in timed),
            "median_search_s": statistics.median(t_search[i][0] for i in timed),
            "median_verify_s": statistics.median(t_verify[i][0] for i in timed),
            "median_e2e_s": statistics.median(e2e), "p90_e2e_s": float(np.percentile(e2e, 90)),
            "test": ev["test"], "calib": ev["calib"]}


def _count(real: list, sources: list, n_synth: int, merge: int) -> int:
    """Descriptors of a catalog: the real items and ``n_synth`` synthetic ones joining ``merge`` icons each."""
    per_icon = [sum(len(f) for f in fs) for _, fs in sources]
    synth = sum(per_icon[(j * merge + t) % len(per_icon)] for j in range(n_synth) for t in range(merge))
    return sum(len(f) for _, fs in real for f in fs) + synth


def run_e2e(data: Path, sizes: list[int], names: list[str], cfg: LocalConfig, timed: int = 40, merge: int = 5,
            progress=None, also: list[tuple[int, ...]] = (), keep: Path | None = None) -> dict:
    """Every (size, index variant); ``also``: (nprobe, threads, efSearch or None, settings) searches of each IVF build, timed and
    scored too. ``keep``: a folder where IVF builds are saved, and where a saved one is reused (``also`` rows only)."""
    rows = sweep.manifest(data)
    qf = sweep.query_features(data, rows, cfg)
    ext = timed_extraction(data, rows, qf, cfg, timed)
    sample = recall_sample(qf, rows)
    out: dict = {"_meta": {"timed": len(ext), "median_extract_s": statistics.median(e[0] for e in ext.values()),
                           "median_extract_cpu_s": statistics.median(e[1] for e in ext.values()),
                           "query_descriptors_median": statistics.median(len(f) for f in qf), "sigma": SIGMA,
                           "merge": merge}}
    for n_refs in sorted(sizes):
        real, n_synth = ls.catalog_items(data, rows, cfg, n_refs, progress)
        sources = [it for it in real if it[0] >= ls.ICON_ID0]
        # computed on first use: a kept build that is reused needs no exact neighbours
        d_exact = functools.cache(lambda real=real, sources=sources, n_synth=n_synth: np.minimum(
            exact_nearest(sample, real), exact_nearest(sample, ls.synthetic_items(sources, n_synth, SIGMA, merge=merge))))
        n_desc = _count(real, sources, n_synth, merge)
        for name in names:
            if n_desc > MAX_EXACT and (SPECS[name].ivf is False or SPECS[name].codes == "Flat"):  # hours
                continue
            out[f"{n_refs} {name}"] = run_variant(name, n_refs, real, n_synth, rows, qf, cfg, ext, sample, d_exact,
                                                  merge, data, also, keep)
    out["_meta"]["load_avg"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def merge(results: list[dict]) -> dict:
    """One result of several runs (e.g. one per catalog size): rows in order, the first run's timing facts,
    every run's load average."""
    out: dict = {"_meta": dict(results[0]["_meta"])}
    out["_meta"]["load_avg"] = [" / ".join(" ".join(r["_meta"]["load_avg"]) for r in results)]
    rows = [(k, v) for r in results for k, v in r.items() if k != "_meta"]
    for k, v in sorted(rows, key=lambda kv: kv[1]["refs"]):  # stable: a run's own order within one size
        if v.get("reused_build") and k in out:  # a later run's searches of the same kept build: its rows join
            out[k] = {**out[k], "also": out[k].get("also", []) + v.get("also", [])}
        else:
            out[k] = v
    out["_meta"]["merge"] = max(r["_meta"].get("merge", 1) for r in results)
    return out


def e2e_markdown(res: dict) -> str:
    meta = res["_meta"]
    rows = []
    for key, r in res.items():
        if key == "_meta" or r.get("reused_build"):
            continue
        rows.append([r["refs"], r["synthetic_refs"], r["descriptors"], r["index"], r["nprobe"], fmt(r["build_s"], 0),
                     fmt(r["index_mb"], 0), fmt(r["peak_rss_mb"], 0), r["median_search_s"], r["median_search_cpu_s"],
                     r["median_verify_s"], r["median_e2e_s"], r["median_e2e_cpu_s"], r["recall_at_1"],
                     r["test"]["top1"], r["test"]["auroc"], r["test"]["open_set"], r["distractor_top"]])
    return (
        "Local channel alone on threadless-dev photos, one thread (FAISS, OpenCV, BLAS). Catalog = the 276 "
        "enrolled designs + simple-icons brand logos (real, rendered 384 px) up to 3,276 references; beyond that "
        f"**synthetic** references: synthetic reference j joins {meta.get('merge', 1)} icons (icons "
        f"{meta.get('merge', 1)}·j … {meta.get('merge', 1)}·j+{meta.get('merge', 1) - 1} mod 3,000: their keypoints "
        "side by side; icons have ~60 keypoints a variant, designs ~660, so joined icons give the catalog about "
        "the descriptor count of the real 1k mix, ×10) with every RootSIFT descriptor moved by Gaussian "
        f"noise (σ {meta['sigma']} per dimension, clipped at 0, renormalised: median distance to its source 0.26 "
        "≈ the median distance of a real icon descriptor to the nearest descriptor of another real image). The designs are never copied, so their ratio test meets only distinct "
        "images. Normal + inverted variants for all. Accuracy: split=test, threshold on split=calib "
        "(bench.local.sweep.evaluate, score = inliers × inlier_ratio^0.5); `distractor on top` = photos (all splits) "
        "whose best verified reference is an icon or a synthetic one. Timing per photo: decode + SIFT "
        f"(LocalConfig defaults, query long side 800; fresh, on the first {meta['timed']} test photos: median "
        f"{meta['median_extract_s']:.3f} s wall, {meta['median_extract_cpu_s']:.3f} s CPU) + descriptor search "
        "(k=8) + verification (verify_search); `e2e` = median over those photos of the sum; CPU = process time "
        "(what an idle core would take; the machine was shared, load average at the end "
        f"{' '.join(meta['load_avg'])} on 2 cores). Exact search over 457k descriptors takes ~3.2 s a photo (25 min "
        "for the 464 photos on one core), so the reference row is near-exact instead: `IVF2048,Flat` visiting 256 "
        "lists (its recall@1 in the table); `IVF2048,Flat` nprobe 16 = the default before this change. "
        "Synthetic catalogs above 1M descriptors get no float-vector rows (hours per run). "
        f"Photos' median descriptors: {meta['query_descriptors_median']}. Recall@1 = share of 300 photo "
        "descriptors whose first returned neighbour is as close as the exact nearest. Index MB = FAISS index "
        "+ re-ranking codes + keypoint coordinates; peak RSS of the whole run so far.\n\n"
        + table(["refs", "synthetic", "descriptors", "index", "nprobe", "build s (wall)", "index MB", "peak RSS MB",
                 "search s (wall)", "search CPU s", "verify s (wall)", "e2e s (wall)", "e2e CPU s", "recall@1 vs exact", "top-1",
                 "AUROC", "open-set acc", "distractor on top"], rows) + _also_markdown(res))


def _also_markdown(res: dict) -> str:
    """The same builds searched with other nprobe / thread counts (``--also``), if any."""
    rows = [[r["refs"], r["index"], a["nprobe"], a.get("ef_search", ""), a["threads"],
             " ".join(f"{k}={v}" for k, v in a.get("settings", {}).items()) or "defaults", a["median_extract_s"],
             a["median_search_s"], a["median_verify_s"], a["median_e2e_s"], a["p90_e2e_s"], a["test"]["top1"],
             a["test"]["auroc"], a["test"]["open_set"], a["calib"]["top1"], a["calib"]["auroc"], a["calib"]["open_set"]]
            for key, r in res.items() if key != "_meta" for a in r.get("also", [])]
    if not rows:
        return ""
    return ("\n\nThe same builds searched again with another nprobe and thread count (FAISS and OpenCV threads; "
            "decode + extraction re-timed on the same photos when the thread count differs; wall times; efSearch of the HNSW "
            "quantiser):\n\n"
            + table(["refs", "index", "nprobe", "efSearch", "threads", "settings", "extract s", "search s", "verify s",
                     "e2e s", "p90 e2e s", "top-1", "AUROC", "open-set acc", "calib top-1", "calib AUROC",
                     "calib open-set"], rows))


def summary(res: dict) -> str:
    """The key numbers, for the current-numbers page: the default index at the largest catalog, one thread and
    (when measured with ``--also``) more threads."""
    rows = [(k, r) for k, r in res.items() if k != "_meta"]
    if not rows:
        return ""
    top = max(r["refs"] for _, r in rows)
    key, r = next(((k, r) for k, r in rows if r["refs"] == top and k.endswith(" default")), rows[-1])
    parts = [f"{top} references ({r['index']}, nprobe {r['nprobe']})"]
    if "median_e2e_s" in r:
        parts.append(f"**{fmt(r['median_e2e_s'])} s** median per photo end to end on 1 thread (search "
                     f"{fmt(r['median_search_s'])}, verify {fmt(r['median_verify_s'])})")
    parts += [f"{fmt(a['median_e2e_s'])} s on {a['threads']} threads, nprobe {a['nprobe']} (extract "
              f"{fmt(a['median_extract_s'])}, search {fmt(a['median_search_s'])}, verify {fmt(a['median_verify_s'])})"
              for a in r.get("also", [])[:2]]
    if "test" in r:
        t = r["test"]
        parts.append(f"test top-1 {fmt(t['top1'])}, AUROC {fmt(t['auroc'])}, open-set {fmt(t['open_set'])}")
    if "index_mb" in r:
        parts.append(f"index {fmt(r['index_mb'], 0)} MB")
    return "; ".join(parts)


__all__ = ["run_e2e", "e2e_markdown", "merge", "summary", "SPECS", "SIGMA"]
