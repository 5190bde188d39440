"""The roster catalog of issue 24: the 276 threadless-dev designs among many DISTINCT logo-like references.

References, in this order (image ids in separate ranges, so a hit's kind is read off its id):

- the 276 enrolled threadless-dev designs (ids < 10k: the photos' right answers),
- the 1,206 real band logos of ../shared/data/band-logos (``BAND_ID0 + i``),
- simple-icons brand logos rendered as the demo does (``bench.local.catalog.ICON_ID0 + i``, up to 3,000),
- generated band-like logos (``bench._logos``: names from the roster generator in 216 fonts and band-logo styles,
  ``GEN_ID0 + i``) for the rest.

A catalog of ``n`` references takes the first ``n`` of that order. Beyond the distinct references that exist
(``distinct()``), ``reused`` references repeat the generated logos' descriptor sets under new ids
(``REUSE_ID0 + j``): they measure memory and speed, not accuracy (the ratio test meets exact twins).

Reference features are extracted once, in parallel processes, into the local benches' feature cache
(``bench/work/local-cache/refs``, keyed on the file's sha256 and the extraction settings), and read back lazily:
:class:`LazyItems` is a re-iterable of ``(image_id, [normal, inverted])`` that loads each reference's features as
it is reached, so a 50k-reference catalog (~19 GB of float descriptors) never sits in memory at once.

    python -m bench.local.roster extract --n 50000 [--workers 2]   # fill the cache (resumable, a bar with ETA)
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench._common import DATA, WORK
from bench.local import sweep
from bench.local.catalog import ICON_DIR, ICON_ID0, MAX_REAL_ICONS, icon_slugs
from logoid.engine.local import FeatureCache, Features
from logoid.identify.match import LocalConfig

BAND_ID0 = 3_000_000
GEN_ID0 = 4_000_000
REUSE_ID0 = 10_000_000
GEN_DIR = WORK / "roster-logos"
REF_CACHE = sweep.CACHE / "refs"


@dataclass(frozen=True)
class Ref:
    """One reference of the catalog: its id, its image file and its sha256 (the feature cache's key)."""

    image_id: int
    path: Path
    sha256: str
    kind: str  # design | band | icon | generated


def _band_logos(data: Path) -> list[Path]:
    root = data / "band-logos"
    with open(root / "manifest.csv", newline="") as f:
        return [root / r["image"] for r in csv.DictReader(f)]


def _generated(n: int) -> list[Path]:
    if n <= 0:
        return []
    from bench._logos import generate

    rows = generate(n, GEN_DIR)
    return [GEN_DIR / r["file"] for r in rows[:n]]


def _icons(n: int) -> list[tuple[int, Path]]:
    from logoid.demo.icons import render_to

    out = []
    for i, slug in enumerate(icon_slugs(min(n, MAX_REAL_ICONS))):
        try:
            out.append((ICON_ID0 + i, render_to(slug, ICON_DIR)))
        except Exception as e:  # noqa: BLE001 - an icon resvg cannot render is skipped and said so
            print(f"skipping icon {slug}: {e}", file=sys.stderr)
    return out


def catalog(n: int, data: Path = DATA) -> list[Ref]:
    """The first ``n`` distinct references (designs, band logos, icons, generated logos), or all that exist."""
    from logoid.core.imageio import file_hash

    designs_dir = data / "threadless-dev"
    rows = sweep.manifest(designs_dir)
    refs: list[tuple[int, Path, str]] = [(int(r["id"]), designs_dir / r["design"], "design") for r in rows
                                         if r["role"] == "enrolled"]
    refs += [(BAND_ID0 + i, p, "band") for i, p in enumerate(_band_logos(data))]
    if len(refs) < n:
        refs += [(i, p, "icon") for i, p in _icons(n - len(refs))]
    if len(refs) < n:
        refs += [(GEN_ID0 + i, p, "generated") for i, p in enumerate(_generated(n - len(refs)))]
    return [Ref(i, p, file_hash(p), kind) for i, p, kind in refs[:n]]


def _extract_one(args: tuple[str, str, dict, str]) -> int:
    """Worker: extract one reference into the cache (a hit is skipped); returns its keypoint count."""
    import cv2

    from logoid.core.imageio import load_image
    from logoid.engine.local import ExtractConfig

    cv2.setNumThreads(1)
    path, sha, cfg_d, cache_dir = args
    cfg = ExtractConfig.from_dict(cfg_d)
    feats = FeatureCache(cache_dir).get_reference(sha, lambda: load_image(path), cfg)
    return sum(len(f) for f in feats)


def extract_all(refs: list[Ref], cfg: LocalConfig, workers: int = 2, progress=None) -> int:
    """Extract every reference not yet in the cache, ``workers`` processes side by side; the descriptor count."""
    cache = FeatureCache(REF_CACHE)
    todo = [r for r in refs if cache.lookup_reference(r.sha256, cfg.extract) is None]
    if not todo:
        return 0
    jobs = [(str(r.path), r.sha256, cfg.extract.to_dict(), str(REF_CACHE)) for r in todo]
    bar = progress(total=len(jobs)) if progress else None
    total = 0
    if workers <= 1:
        for j in jobs:
            total += _extract_one(j)
            if bar:
                bar.update(1)
    else:
        # spawned, not forked: a fork of a process running threads (OpenCV's, torch's, a test runner's) can hang
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for kp in pool.map(_extract_one, jobs, chunksize=16):
                total += kp
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    return total


class LazyItems:
    """``(image_id, [normal, inverted])`` of a catalog, each reference's features read from the cache when reached.

    ``reused``: after the distinct references, this many more that repeat the generated logos' features (in order,
    cycling) under ids ``REUSE_ID0 + j``. Iterating twice gives the same sequence.
    """

    def __init__(self, refs: list[Ref], cfg: LocalConfig, reused: int = 0):
        self.refs, self.cfg, self.reused = refs, cfg, reused
        self.sources = [r for r in refs if r.kind == "generated"] or refs
        if reused and not self.sources:
            raise ValueError("reused references need generated ones to repeat")

    def __len__(self) -> int:
        return len(self.refs) + self.reused

    def _load(self, ref: Ref) -> list[Features]:
        got = FeatureCache(REF_CACHE).lookup_reference(ref.sha256, self.cfg.extract)
        if got is None:
            raise RuntimeError(f"{ref.path}: features not cached; run `python -m bench.local.roster extract` first")
        return got[: 2 if self.cfg.extract.enrol_inverted else 1]

    def __iter__(self) -> Iterator[tuple[int, list[Features]]]:
        for ref in self.refs:
            yield ref.image_id, self._load(ref)
        for j in range(self.reused):
            yield REUSE_ID0 + j, self._load(self.sources[j % len(self.sources)])


# ---- measuring a catalog size ------------------------------------------------------------------------------
INDEX_DIR = WORK / "roster-index"
LAYOUTS = ("ram", "mmap", "norefine")  # re-ranking codes and coordinates in RAM; memory-mapped; no re-ranking


def index_path(n: int, cfg: LocalConfig, tag: str = "flipped") -> Path:
    return INDEX_DIR / f"{tag}-{n}refs-{cfg.extract.ref_hash()}" / "descriptors"


def build(n: int, cfg: LocalConfig, distinct: int, config=None, tag: str = "flipped", data: Path = DATA,
          refs: list[Ref] | None = None) -> dict:
    """Build (or reuse) the descriptor index of an ``n``-reference catalog: its first ``min(n, distinct)`` distinct
    references, the rest reused generated ones (``refs``: these references instead, under their own ``tag``).
    Returns the build facts (kept beside the index)."""
    import json
    import time

    from bench._common import peak_rss_mb
    from logoid.index.descriptors import DescriptorIndex

    path = index_path(n, cfg, tag)
    facts = path.with_name("build.json")
    if facts.exists():
        return json.loads(facts.read_text())
    if n > distinct and config is None:  # reused references: copied from the distinct index (minutes, not hours)
        return assemble(n, cfg, distinct, tag, data)
    refs = refs if refs is not None else catalog(min(n, distinct), data)
    items = LazyItems(refs, cfg, reused=max(0, n - len(refs)))
    t = time.perf_counter()
    dindex = DescriptorIndex.build(items, config=config, feature_config=cfg.extract)
    build_s = time.perf_counter() - t
    path.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    dindex.save(path)
    out = {"refs": n, "distinct": len(refs), "reused": items.reused, "descriptors": dindex.ntotal,
           "structure": dindex.structure(), "inverted": "flipped" if dindex.flip_inverted else "stored",
           "build_s": build_s, "save_s": time.perf_counter() - t,
           "build_peak_rss_mb": peak_rss_mb(),
           "disk_mb": sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file()) / 2**20,
           "kinds": {k: sum(r.kind == k for r in refs) for k in ("design", "band", "icon", "generated")}}
    facts.write_text(json.dumps(out, indent=1))
    return out


def assemble(n: int, cfg: LocalConfig, distinct: int, tag: str = "flipped", data: Path = DATA) -> dict:
    """The ``n``-reference index from the ``distinct`` one (built first if need be): the reused references
    (``REUSE_ID0 + j``, the generated logos' descriptor sets in turn) added to its trained FAISS index, with their
    SQ8 codes: kept on disk (9.2 GB at 180k) and mapped by the ``norefine`` layout, the whole search never reads them
    and a restricted search (the global shortlist's extra candidates) reads only the asked references' (exact).

    A straight build would also train its quantiser on the larger catalog, with about twice the lists, each half as
    long (``DescriptorConfig.auto_nlist``): here the lists stay the distinct index's, so the latency measured is the
    slower side, and training (k-means over ~1.3M descriptors into 32k lists, tens of minutes here) is skipped. Its
    time is extrapolated from the distinct build's rate (``build_s``, flagged); ``assemble_s`` is what the adds took.
    (FAISS's ``merge_from`` would copy the lists without re-encoding, but on fast-scan lists it corrupts memory
    when a list's length is a multiple of 1,024: ``BlockInvertedLists::add_entries`` in FAISS 1.15.)"""
    import json
    import time

    from bench._common import peak_rss_mb
    from logoid.index.descriptors import DescriptorIndex

    base_facts = build(distinct, cfg, distinct, tag=tag, data=data)
    if not base_facts["kinds"]["generated"]:
        raise SystemExit(f"--distinct {distinct} has no generated references to reuse: raise --distinct")
    t = time.perf_counter()
    dindex = DescriptorIndex.load(index_path(distinct, cfg, tag), mmap=False)
    refs = catalog(distinct, data)
    items = LazyItems(refs, cfg, reused=n - distinct)
    dindex.add_many(_reused_only(items))
    assemble_s = time.perf_counter() - t
    path = index_path(n, cfg, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    dindex.save(path)
    rate = base_facts["descriptors"] / base_facts["build_s"]
    out = {**base_facts, "refs": n, "reused": items.reused, "descriptors": dindex.ntotal,
           "structure": dindex.structure(), "build_s": dindex.ntotal / rate, "build_s_extrapolated": True,
           "assemble_s": assemble_s, "save_s": time.perf_counter() - t, "build_peak_rss_mb": peak_rss_mb(),
           "disk_mb": sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file()) / 2**20}
    path.with_name("build.json").write_text(json.dumps(out, indent=1))
    return out


def _reused_only(items: LazyItems) -> Iterator[tuple[int, list[Features]]]:
    """The reused references of ``items`` alone (after its distinct ones)."""
    for j in range(items.reused):
        yield REUSE_ID0 + j, items._load(items.sources[j % len(items.sources)])


def _status_mb() -> dict:
    """Resident memory of this process from /proc/self/status: total, anonymous, file-backed, peak (MiB)."""
    got = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            got[key] = int(rest.split()[0]) / 1024
    return got


def query(path: Path, layout: str, accuracy: bool, timed: int, threads: int, data: Path = DATA,
          nprobe: int | None = None, votes: list[int] | None = None, prints: bool = False) -> dict:
    """Load the index at ``path`` with ``layout``, answer the threadless-dev photos through the local channel alone
    (accuracy: every photo, from cached query features; timing: the first ``timed`` test photos end to end,
    decode + SIFT + search + verification, ``threads`` threads); memory of this process after it all. ``votes``:
    also the accuracy with each of these ``MatchConfig.min_votes`` (the same searches, verified again). ``prints``:
    also the band-logo prints (``bench.local.roster_prints``; the catalog must hold every band logo)."""
    import time

    import cv2
    import faiss

    from logoid.identify.match import verify_search
    from logoid.index.descriptors import DescriptorIndex

    cfg = LocalConfig()
    mem0 = _status_mb()
    t = time.perf_counter()
    dindex = DescriptorIndex.load(path, mmap=layout != "ram", refine=0 if layout == "norefine" else None)
    if nprobe:  # IVF lists visited per descriptor (a query-time setting)
        dindex.config.nprobe = nprobe
        dindex.set_search_params()
    load_s = time.perf_counter() - t
    mem_loaded = _status_mb()
    faiss.omp_set_num_threads(threads)
    cv2.setNumThreads(threads)
    designs = data / "threadless-dev"
    rows = sweep.manifest(designs)
    k = max(2, cfg.match.neighbours)
    out: dict = {"layout": layout, "nprobe": dindex.config.nprobe, "threads": threads, "load_s": load_s,
                 "mem_before_load": mem0,
                 "mem_loaded": mem_loaded}
    if timed:
        stages, _ = time_photos(dindex, [r for r in rows if r["split"] == "test"][:timed], designs, cfg)
        out.update(stages)
    out["mem_timed"] = _status_mb()
    if accuracy:  # (the 464 photos' cached features alone are ~1 GB: memory is read before, in mem_timed)
        qf = sweep.query_features(designs, rows, cfg)
        searches = [dindex.search(f.desc, k=k) for f in qf]

        def scored(c: LocalConfig) -> dict:
            results = [verify_search(f, dindex, D, own, c) if len(f) else [] for f, (D, own) in zip(qf, searches,
                                                                                                   strict=True)]
            ev = sweep.evaluate(rows, results, "score")
            recs = ev.pop("records")
            return {"test": ev["test"], "calib": ev["calib"], "threshold": ev["threshold"],
                    "distractor_top": sum(1 for x in recs if x["top"] is not None and x["top"] >= 10_000),
                    "top_kinds": _kinds(recs)}

        out.update(scored(cfg))
        if votes:
            out["votes"] = [{"min_votes": v, **scored(cfg.override(min_votes=v))} for v in votes]
    if prints:
        from bench.local import roster_prints

        out["prints"] = roster_prints.score(dindex, cfg, data, votes, refs=_refs_of(path, data))
    out["mem_after"] = _status_mb()
    return out


def _refs_of(path: Path, data: Path = DATA) -> list[Ref]:
    """The references of a roster index (:func:`index_path`: ``<tag>-<n>refs-<hash>/descriptors``)."""
    from bench.local import roster_prints

    tag, n = path.parent.name.split("-")[:2]
    if tag == roster_prints.BANDS_TAG:
        return [r for r in catalog(276 + len(roster_prints.band_rows(data)), data) if r.kind == "band"]
    return catalog(int(n.removesuffix("refs")), data)


def time_photos(dindex, rows: list[dict], designs: Path, cfg: LocalConfig) -> tuple[dict, list[int | None]]:
    """Each photo of ``rows`` end to end through the local channel (decode + SIFT + search + verification): the
    stages' medians and the sum's p50/p90 (s), and each photo's top answer (None: nothing verified)."""
    import statistics
    import time

    import numpy as np

    from logoid.core.imageio import load_image
    from logoid.engine.local import extract
    from logoid.identify.match import verify_search

    times, tops = [], []
    for r in rows:
        t0 = time.perf_counter()
        f = extract(load_image(designs / r["photo"]), cfg.extract, "query")
        t1 = time.perf_counter()
        D, own = dindex.search(f.desc, k=max(2, cfg.match.neighbours))
        t2 = time.perf_counter()
        res = verify_search(f, dindex, D, own, cfg)
        t3 = time.perf_counter()
        times.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
        tops.append(res[0].image_id if res else None)
    cols = list(zip(*times, strict=True))
    return ({"timed": len(times), "extract_s": statistics.median(cols[0]), "search_s": statistics.median(cols[1]),
             "verify_s": statistics.median(cols[2]), "e2e_p50_s": statistics.median(cols[3]),
             "e2e_p90_s": float(np.percentile(cols[3], 90))}, tops)


def _kind(i: int | None) -> str:
    """What kind of reference an image id is (None: nothing verified)."""
    if i is None:
        return "none"
    return ("design" if i < ICON_ID0 else "icon" if i < BAND_ID0 else "band" if i < GEN_ID0 else "generated"
            if i < REUSE_ID0 else "reused")


def _kinds(recs: list[dict]) -> dict:
    """How many photos (all splits) have each kind of reference on top."""
    out: dict = {}
    for x in recs:
        out[_kind(x["top"])] = out.get(_kind(x["top"]), 0) + 1
    return out


def run(sizes: list[int], layouts: list[str], distinct: int = 50_000, timed: int = 40, threads: int = 2,
        data: Path = DATA, nprobes: list[int] | None = None, votes: list[int] | None = None,
        prints: bool = False) -> dict:
    """Every size: build (or reuse) its index, then each layout queried in a fresh process (so its memory is the
    query's alone). Accuracy only where every reference is distinct. ``prints``: first the band logos alone, then
    every size that holds them all, also answer the band-logo prints (``bench.local.roster_prints``)."""
    import json
    import subprocess
    import tempfile

    from bench.local import roster_prints

    cfg = LocalConfig()
    out: dict = {"_meta": {"distinct": distinct, "timed": timed, "threads": threads}}
    bands = len(roster_prints.band_rows(data))
    todo: list[tuple[str, dict, Path, list[str]]] = []
    if prints:
        roster_prints.make_all(cfg, data, threads)
        facts = roster_prints.build_bands(cfg, data)
        todo.append(("bands", facts, index_path(bands, cfg, roster_prints.BANDS_TAG), ["ram"]))
    for n in sizes:
        facts = build(n, cfg, distinct, data=data)
        todo.append((str(n), facts, index_path(n, cfg),
                     layouts if not facts["reused"] else [x for x in layouts if x == "norefine"]))
    for name, facts, path, kept in todo:
        print(name, facts, file=sys.stderr, flush=True)
        for layout, nprobe in [(x, p) for x in kept for p in (nprobes or [0])]:
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                cmd = [sys.executable, "-m", "bench.local.roster", "query", str(path), "--layout", layout,
                       "--timed", str(timed if name != "bands" else 0), "--threads", str(threads),
                       "--nprobe", str(nprobe), "--out", tmp.name, *(a for v in votes or [] for a in ("--min-votes", str(v)))]
                if facts["reused"] == 0 and name != "bands":
                    cmd.append("--accuracy")
                if prints and (name == "bands" or (facts["reused"] == 0 and facts["kinds"]["band"] == bands)):
                    cmd.append("--prints")
                subprocess.run(cmd, check=True)
                got = json.loads(Path(tmp.name).read_text())
            print(name, layout, {k: v for k, v in got.items() if not k.startswith("mem")}, got["mem_after"],
                  file=sys.stderr, flush=True)
            out[f"{name} {layout}" + (f" nprobe{nprobe}" if nprobe else "")] = {**facts, **got}
    out["_meta"]["load_avg"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def runs(res: dict) -> list[dict]:
    """The measured rows of a run's result (every entry but ``_meta``), in order."""
    return [r for k, r in res.items() if k != "_meta"]


def markdown(res: dict) -> str:
    from bench._common import fmt, table

    meta = res["_meta"]
    rows = []
    for r in runs(res):
        m = r["mem_timed"]
        t = r.get("test") or {}
        rows.append([r["refs"], r["distinct"], r["reused"], r["descriptors"], r["structure"], r.get("inverted", "stored"),
                     r["layout"], r.get("nprobe", 16),
                     fmt(r["build_s"], 0) + (" (extrapolated)" if r.get("build_s_extrapolated") else ""),
                     fmt(r["disk_mb"], 0), fmt(m["VmRSS"], 0), fmt(m["RssAnon"], 0),
                     fmt(m["RssFile"], 0), fmt(m["VmHWM"], 0), r["e2e_p50_s"], r["e2e_p90_s"], r["extract_s"],
                     r["search_s"], r["verify_s"], fmt(t.get("top1")), fmt(t.get("auroc")), fmt(t.get("open_set")),
                     r.get("distractor_top", "")])
    return (
        "Local channel alone on threadless-dev photos against catalogs of DISTINCT references (bench/local/roster.py):"
        " the 276 enrolled designs, then the 1,206 real band-logos, 3,000 simple-icons and generated band-like logos "
        "(bench/_logos.py); rows with `reused` > 0 repeat the generated logos' descriptor sets under new ids (memory "
        "and speed only: no accuracy), their FAISS lists copied from the distinct index (`assemble`: same lists and codes"
        " as a straight build, with the distinct index's list count; build time extrapolated from its rate; SQ8 "
        "copies kept on disk, for the exact search over a few references). Default "
        "extraction and index settings; `inverted variant`: `stored` = normal + inverted descriptors in the index, "
        "`flipped` = normal only, each photo descriptor searched contrast-flipped too. Each layout is"
        " queried in a fresh process: `ram` = re-ranking codes and keypoint coordinates in anonymous memory; `mmap` = "
        "both memory-mapped from the index files; `norefine` = mmap, and no SQ8 re-ranking (fast-scan PQ distances "
        f"only). Timing: the first {meta['timed']} test photos, decode + SIFT + search + verification on "
        f"{meta['threads']} threads (p50/p90 of the sum; stage columns are medians); load average at the end "
        f"{' '.join(meta.get('load_avg', []))}. Memory: the query process after the timed photos (before the "
        "accuracy pass, whose 464 cached photo features alone take ~1 GB), from /proc/self/status: resident (VmRSS) = anonymous (RssAnon) + file-backed (RssFile, "
        "pages of mapped files in RAM: the OS may drop them), and its peak (VmHWM). Accuracy: split=test, "
        "threshold on split=calib; `distractor on top` = photos (all splits) whose best verified reference is not a "
        "design.\n\n"
        + table(["refs", "distinct", "reused", "descriptors", "index", "inverted variant", "layout", "nprobe", "build s",
                 "disk MB", "resident MB", "anon MB", "file MB", "peak MB", "p50 s", "p90 s", "extract s", "search s", "verify s", "top-1",
                 "AUROC", "open-set", "distractor on top"], rows))


def votes_markdown(res: dict) -> str:
    """A run with ``--min-votes``: the accuracy at each value, from the same searches of each size."""
    from bench._common import fmt, table

    rows = [[r["refs"], r["layout"], v["min_votes"], fmt(v["test"]["top1"]), fmt(v["test"]["auroc"]),
             fmt(v["test"]["open_set"]), fmt(v["calib"]["top1"]), fmt(v["calib"]["auroc"]), fmt(v["calib"]["open_set"]),
             v["distractor_top"]] for r in runs(res) for v in r.get("votes", [])]
    return ("Local channel alone on threadless-dev photos against the roster's catalogs of distinct references (as in "
            "the roster table), each size searched once and verified with each `MatchConfig.min_votes`: the ratio-test"
            " votes an (image, variant) needs to be verified at all. Its tentative matches are then every soft match "
            "(`candidate_ratio`), so a candidate with 3 votes can still verify on 10+ matches. Threshold chosen on "
            "split=calib; `distractor on top` = photos (all splits) whose best verified reference is not a design.\n\n"
            + table(["refs", "layout", "min_votes", "test top-1", "test AUROC", "test open-set", "calib top-1",
                     "calib AUROC", "calib open-set", "distractor on top"], rows))


def votes_summary(res: dict) -> str:
    from bench._common import fmt

    return "; ".join(f"{r['refs']} refs min_votes {v['min_votes']}: test top-1 {fmt(v['test']['top1'])} AUROC "
                     f"{fmt(v['test']['auroc'])}, calib top-1 {fmt(v['calib']['top1'])}"
                     for r in runs(res) for v in r.get("votes", []))


def summary(res: dict) -> str:
    from bench._common import fmt

    rows = runs(res)
    if len({r.get("nprobe", 16) for r in rows}) > 1:  # a run over the IVF lists visited
        return "; ".join(f"{r['refs']} refs {r['layout']} nprobe {r['nprobe']}: p50 {fmt(r['e2e_p50_s'])} s"
                         + (f", test top-1 {fmt(r['test']['top1'])} AUROC {fmt(r['test']['auroc'])}"
                            if r.get("test") else "") for r in rows)
    parts = []
    for r in runs(res):
        if r["layout"] != "norefine":
            continue
        t = r.get("test")
        acc = f", test top-1 {fmt(t['top1'])} AUROC {fmt(t['auroc'])}" if t else ""
        parts.append(f"{r['refs']} refs: p50 {fmt(r['e2e_p50_s'])} s, resident {fmt(r['mem_timed']['VmRSS'], 0)} MB "
                     f"(anon {fmt(r['mem_timed']['RssAnon'], 0)}){acc}")
    ram = {r["refs"]: r for r in runs(res) if r["layout"] == "ram" and r.get("test")}
    with_codes = "; with SQ8 re-ranking in RAM: " + ", ".join(
        f"{n} refs top-1 {fmt(r['test']['top1'])} AUROC {fmt(r['test']['auroc'])}" for n, r in ram.items()) if ram else ""
    return ("no re-ranking (fast-scan PQ only, coordinates memory-mapped): " + "; ".join(parts) + with_codes) if parts \
        else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fill the feature cache of the roster catalog (issue 24); query a built "
                                             "index (run in a fresh process by `python -m bench local-scale roster`).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query")
    q.add_argument("index", type=Path)
    q.add_argument("--layout", choices=LAYOUTS, default="ram")
    q.add_argument("--accuracy", action="store_true")
    q.add_argument("--timed", type=int, default=40)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--nprobe", type=int, default=0, help="IVF lists visited (0: the index's own)")
    q.add_argument("--min-votes", type=int, action="append", default=None,
                   help="with --accuracy or --prints: also score with this MatchConfig.min_votes (repeatable)")
    q.add_argument("--prints", action="store_true", help="also answer the band-logo prints (bench.local.roster_prints)")
    q.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("extract")
    e.add_argument("--n", type=int, default=50_000, help="distinct references (designs, band logos, icons, generated)")
    e.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    e.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args(argv)
    if a.cmd == "query":
        import json

        a.out.write_text(json.dumps(query(a.index, a.layout, a.accuracy, a.timed, a.threads, nprobe=a.nprobe or None,
                                          votes=a.min_votes, prints=a.prints),
                                    indent=1))
        return 0
    from tqdm import tqdm

    refs = catalog(a.n, a.data)
    print(f"{len(refs)} references ({', '.join(f'{k} {sum(r.kind == k for r in refs)}' for k in ('design', 'band', 'icon', 'generated'))})",
          file=sys.stderr)
    n = extract_all(refs, LocalConfig(), a.workers,
                    progress=lambda total: tqdm(total=total, desc="reference features", unit="img", file=sys.stderr))
    print(f"extracted {n} descriptors", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
