"""A photo answered completely among the roster: every channel, one warm process, up to 180k references (issue 24).

The roster benches time the local channel alone. A 180k home's query also embeds the photo and searches millions of
global vectors, reads its text and matches it against 180k names, verifies the global shortlist's extra candidates,
and holds the models. Here ``Identifier.identify`` answers threadless-dev photos with each part at the roster's size:

- **descriptors**: the roster's index of ``n`` references (``bench.local.roster``: beyond 50k distinct ones, the
  generated logos' descriptor sets again under new ids, their SQ8 codes on disk), loaded as a home loads it
  (``DescriptorIndex.load``: memory-mapped; codes over ``DescriptorConfig.rerank_budget_mb``: no re-ranking);
- **global vectors**: ``n`` × 20 variants in the structure a home of that size builds (``IndexConfig`` by size:
  IVF-PQ64 re-ranked from a float16 file beyond its 1.5 GB budget): the designs' own vectors from the threadless-dev
  home, and 20 synthetic views for every other reference (``bench._embeddings``: 512-d, between-reference
  cosine 0.55 ± 0.09 like the default model's on band logos). Embedding 3.6M real variants would take ~9 h here;
- **names**: the home's, plus every other reference's (band-logos bands, icon slugs, generated band names; reused
  references get further generated names);
- **models**: the home's image tower and OCR, loaded as ``logoid query`` loads them.

The identifier maps roster ids to entities (a design's to its band in the home, any other to ``band:<roster id>``),
so every channel answers in one id space. ``n = 276`` is the threadless-dev home itself, untouched: the baseline.
Each size runs in a fresh process (its memory is its own): two warm-up photos (split=calib), then the first
``timed`` test photos, default threads. Memory from /proc/self/status after the timed photos. Answers are scored
against the manifest (an enrolled design's band, or unknown) and compared with the home's photo by photo; beyond
50k distinct references the reused ones are exact twins of generated logos, so accuracy there is indicative only.

    python -m bench accuracy --precision fp32                    # the threadless-dev home (once)
    python -m bench local-scale roster-e2e [--refs 276 --refs 180000] [--timed 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import DATA, WORK
from bench.local import roster, sweep
from logoid.identify.match import LocalConfig

GLOBAL_DIR = WORK / "roster-global"
VARIANTS = 20


def _home(model: str):
    from bench._designs import home_path
    from logoid.catalog import Catalog
    from logoid.core.paths import Home

    home = Home(home_path(model))
    if not (home.index_dir / "logoid-index.json").exists():
        raise SystemExit(f"{home.root}: no threadless-dev home; run `python -m bench accuracy --precision fp32` first")
    return home, Catalog.open(home)


def reference_names(refs: list, n: int, data: Path = DATA) -> dict[int, str]:
    """Every roster reference's name but the designs': the distinct ones' own, then generated names for the reused."""
    from bench._logos import roster_names
    from bench.local.roster_fused import distractor_names

    names = distractor_names(refs, data)
    reused = n - len(refs)
    if reused > 0:
        gen = sum(r.kind == "generated" for r in refs)
        more = roster_names(gen + reused, data=data)[gen:]
        names.update({roster.REUSE_ID0 + j: more[j] for j in range(reused)})
    return names


def reference_ids(refs: list, n: int) -> list[int]:
    return [r.image_id for r in refs] + [roster.REUSE_ID0 + j for j in range(n - len(refs))]


def global_path(n: int, model_id: str) -> Path:
    return GLOBAL_DIR / f"{n}refs-{model_id.replace('/', '_').replace('@', '-')}" / "vectors.faiss"


def build_global(n: int, ids: list[int], home_vectors, row_of_image: dict[int, int], config, model_id: str) -> dict:
    """The global index of ``n`` references × 20 variants (see the module's docstring); cached with its facts."""
    from bench import _embeddings as emb
    from bench._common import peak_rss_mb
    from logoid.index.vectors import VectorIndex, decode_ids, encode_ids

    path = global_path(n, model_id)
    facts_path = path.with_name("build.json")
    if facts_path.exists():
        return json.loads(facts_path.read_text())
    t = time.perf_counter()
    vecs, vids = home_vectors.vectors_and_ids()
    image_ids, variants = decode_ids(vids)
    design_ids = encode_ids(np.array([row_of_image[int(i)] for i in image_ids]), variants)
    designs = {row_of_image[int(i)] for i in image_ids}
    others = np.array([i for i in ids if i not in designs], np.int64)
    cent = emb.centres(len(others))
    total = len(vecs) + VARIANTS * len(others)
    # training sample: the designs' vectors and the views of evenly spread references, config.train_sample in all
    step = max(1, len(others) * VARIANTS // max(1, config.train_sample - len(vecs)))
    picked = np.arange(0, len(others), step)
    train = np.concatenate([vecs] + [emb.views(cent[picked], s, min(s + 4096, len(picked)))
                                     for s in range(0, len(picked), 4096)])
    vindex = VectorIndex.create(vecs.shape[1], total, train, config)
    del train
    vindex.add(vecs, design_ids)
    for first in range(0, len(others), 4096):
        stop = min(first + 4096, len(others))
        vindex.add(emb.views(cent, first, stop),
                   encode_ids(np.repeat(others[first:stop], VARIANTS), np.tile(np.arange(VARIANTS), stop - first)))
    build_s = time.perf_counter() - t
    path.parent.mkdir(parents=True, exist_ok=True)
    vindex.save(path)
    facts = {"vectors": vindex.ntotal, "synthetic": int(len(others) * VARIANTS),
             "factory": config.choose_factory(total, vecs.shape[1]), "build_s": build_s,
             "disk_mb": sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file()) / 2**20,
             "build_peak_rss_mb": peak_rss_mb()}
    facts_path.write_text(json.dumps(facts, indent=1))
    return facts


def descriptor_tag(n: int, distinct: int, straight: bool) -> str:
    """The roster index a size uses: ``straight`` builds beyond ``distinct`` with their own lists, as
    ``build-index`` would (``bench.local.roster.build`` with a config), instead of assembling them from the distinct
    index's (fewer, longer lists: the slower side)."""
    return "straight" if straight and n > distinct else "flipped"


def prepare(n: int, model: str, distinct: int = 50_000, data: Path = DATA, straight: bool = False) -> dict:
    """Everything a size needs on disk (roster descriptor index, global index); their build facts."""
    if n <= 276:
        return {}
    from bench.local.roster_fused import design_maps
    from logoid.index.store import IndexStore
    from logoid.index.vectors import IndexConfig

    cfg = LocalConfig()
    home, cat = _home(model)
    from logoid.index.descriptor_structure import DescriptorConfig

    tag = descriptor_tag(n, distinct, straight)
    desc_facts = roster.build(n, cfg, distinct, config=DescriptorConfig() if tag == "straight" else None, tag=tag,
                              data=data)
    store = IndexStore.load(home.index_dir)
    _, row_of_image = design_maps(cat, sweep.manifest(data / "threadless-dev"))
    refs = roster.catalog(min(n, distinct), data)
    glob = build_global(n, reference_ids(refs, n), store.vectors, row_of_image,
                        IndexConfig.from_dict(store.meta.get("index_config") or {}), store.meta["model"]["model_id"])
    return {"descriptor_index_build": desc_facts, "global_index": glob}


def query(n: int, model: str, timed: int, distinct: int = 50_000, data: Path = DATA, straight: bool = False) -> dict:
    """Answer the photos among ``n`` references in this process (see the module's docstring)."""
    import copy

    from bench.local.roster_fused import WithDistractors, design_maps
    from logoid.identify import Identifier
    from logoid.index.descriptors import DescriptorIndex
    from logoid.index.names import NameIndex
    from logoid.index.store import IndexStore
    from logoid.index.vectors import IndexConfig, VectorIndex

    mem0 = roster._status_mb()
    home, cat = _home(model)
    designs = data / "threadless-dev"
    rows = sweep.manifest(designs)
    key_of_row, _ = design_maps(cat, rows)
    t = time.perf_counter()
    facts: dict = {"refs": n}
    if n <= 276:
        ident = Identifier(home, cat)
        store = ident.store
    else:
        cfg = LocalConfig()
        base = IndexStore.load(home.index_dir)
        refs = roster.catalog(min(n, distinct), data)
        names = reference_names(refs, n, data)
        store = IndexStore(root=base.root, meta=base.meta, _pins=base._pins)
        config = IndexConfig.from_dict(base.meta.get("index_config") or {})
        store.vectors = VectorIndex.load(global_path(n, base.meta["model"]["model_id"]), config)
        dindex = DescriptorIndex.load(roster.index_path(n, cfg, descriptor_tag(n, distinct, straight)))
        dindex.check_features(cfg.extract)
        store.descriptors = dindex
        text = copy.deepcopy(base.names) if base.names is not None else NameIndex()
        text.add([(f"band:{i}", name) for i, name in names.items()])
        store.names = text
        ident = Identifier(home, WithDistractors(cat, names), store=store)
        entity = {i: f"band:{i}" for i in names}
        entity.update(key_of_row)
        ident._entity_of_image = entity
    _ = store.descriptors, store.names  # loaded now, not in the first photo
    facts.update(load_s=time.perf_counter() - t, vectors=store.vectors.ntotal,
                 descriptors=store.descriptors.ntotal, descriptor_index=store.descriptors.structure(),
                 names=len(store.names))
    mem_loaded = roster._status_mb()
    calib = [r for r in rows if r["split"] == "calib"][:2]
    test = [r for r in rows if r["split"] == "test"][:timed]
    for r in calib:  # warm-up: the models load on first use
        ident.identify(designs / r["photo"])
    mem_warm = roster._status_mb()
    walls, stages, answers = [], {}, []
    for r in test:
        t = time.perf_counter()
        a = ident.identify(designs / r["photo"])
        walls.append(time.perf_counter() - t)
        for k, v in a.timings.items():
            stages.setdefault(k, []).append(v)
        truth = key_of_row.get(int(r["id"])) if r["role"] == "enrolled" else None
        answers.append({"photo": r["photo"], "truth": truth, "label": a.label,
                        "best": a.best.entity_key if a.best else None})
    return {**facts, "timed": len(walls), "p50_s": statistics.median(walls),
            "p90_s": float(np.percentile(walls, 90)), "stages": {k: statistics.median(v) for k, v in stages.items()},
            "correct": sum(x["truth"] == x["label"] for x in answers), "answers": answers,
            "mem_before_load": mem0, "mem_loaded": mem_loaded, "mem_warm": mem_warm, "mem_timed": roster._status_mb()}


def run(sizes: list[int], timed: int = 40, model: str | None = None, distinct: int = 50_000,
        data: Path = DATA, straight: bool = False) -> dict:
    """Every size prepared here first (builds), then each answered in a fresh process, one after another."""
    import subprocess
    import tempfile

    from logoid import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    out: dict = {"_meta": {"timed": timed, "model": model, "distinct": distinct, "straight": straight}}
    built = {n: prepare(n, model, distinct, data, straight) for n in sizes}
    for n in sizes:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            subprocess.run([sys.executable, "-m", "bench.local.roster_e2e", "query", "--refs", str(n), "--timed",
                            str(timed), "--model", model, "--distinct", str(distinct), "--data", str(data),
                            "--out", tmp.name, *(["--straight"] if straight else [])], check=True)
            got = json.loads(Path(tmp.name).read_text())
        print(n, {k: v for k, v in got.items() if k != "answers"}, file=sys.stderr, flush=True)
        out[str(n)] = {**built[n], **got}
    out["_meta"]["load_avg"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def _same_as_home(res: dict, r: dict) -> str:
    home = res.get("276")
    if not home or r is home:
        return ""
    return f"{sum(a['label'] == b['label'] for a, b in zip(home['answers'], r['answers'], strict=True))}/{r['timed']}"


def markdown(res: dict) -> str:
    from bench._common import fmt, table

    meta = res["_meta"]
    rows = []
    for key, r in res.items():
        if key == "_meta":
            continue
        m, st, g, d = r["mem_timed"], r["stages"], r.get("global_index") or {}, r.get("descriptor_index_build") or {}
        built = ("" if not d else f"{fmt(d['build_s'] / 60, 0)} min" + (
            " (extrapolated; assembled)" if d.get("build_s_extrapolated") else " (straight)"))
        rows.append([f"{r['refs']:,}", f"{r['vectors']:,}" + (f" ({g['factory']})" if g else ""),
                     f"{r['descriptors'] / 1e6:.1f}M ({r['descriptor_index']})", built, f"{r['names']:,}",
                     fmt(m["VmRSS"], 0), fmt(m["RssAnon"], 0), fmt(m["RssFile"], 0), fmt(m["VmHWM"], 0),
                     fmt(r["p50_s"]), fmt(r["p90_s"]), fmt(st.get("decode")), fmt(st.get("global")),
                     fmt(st.get("local")), fmt(st.get("text")), f"{r['correct']}/{r['timed']}", _same_as_home(res, r)])
    return ("Every channel among the roster, `Identifier.identify` in one warm process (bench/local/roster_e2e.py): "
            "descriptors from the roster's index (beyond 50k distinct references, generated logos' descriptor sets "
            "reused under new ids, SQ8 codes on disk, loaded as a home loads it; `assembled` = added to the 50k "
            "index's IVF lists, `straight` = built with lists of their own, as build-index would), global vectors at 20 variants a "
            "reference in the structure a home of that size builds (the designs' real vectors, synthetic views for "
            "the rest), the names of every reference, the home's image tower and OCR. `276` is the threadless-dev home"
            f" itself. The first {meta['timed']} test photos after two warm-up photos, default threads; p50/p90 of "
            "the wall time per photo, stage columns medians (local includes the photo's SIFT). Memory from "
            "/proc/self/status after the timed photos: resident = anonymous + file-backed (pages of mapped files), "
            f"peak = VmHWM. Load average at the end {' '.join(meta.get('load_avg', []))}. `right` = answers equal "
            "to the manifest's (an enrolled design's band, or unknown); `same as 276` = photos answered as the home "
            "answers them.\n\n"
            + table(["refs", "global vectors", "descriptors", "descriptor build", "names", "resident MB", "anon MB", "file MB",
                     "peak MB", "p50 s", "p90 s", "decode s", "global s", "local s", "text s", "right",
                     "same as 276"], rows))


def summary(res: dict) -> str:
    from bench._common import fmt

    return "; ".join(f"{int(k):,} refs: p50 {fmt(r['p50_s'])} s (p90 {fmt(r['p90_s'])}), resident "
                     f"{fmt(r['mem_timed']['VmRSS'], 0)} MB (anon {fmt(r['mem_timed']['RssAnon'], 0)}), right "
                     f"{r['correct']}/{r['timed']}" for k, r in res.items() if k != "_meta")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Answer threadless-dev photos among n roster references in this process "
                                             "(run in a fresh process by `python -m bench local-scale roster-e2e`).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query")
    q.add_argument("--refs", type=int, required=True)
    q.add_argument("--timed", type=int, default=40)
    q.add_argument("--model", required=True)
    q.add_argument("--distinct", type=int, default=50_000)
    q.add_argument("--data", type=Path, default=DATA)
    q.add_argument("--straight", action="store_true", help="beyond --distinct, the straight-built roster index")
    q.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.write_text(json.dumps(query(a.refs, a.model, a.timed, a.distinct, a.data, a.straight), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
