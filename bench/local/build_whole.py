"""A whole `build-index` of N distinct references, stage by stage, extrapolated to the 180k roster.

    python -m bench build-whole [--refs 10000] [--no-write]

The catalog is the roster's first N distinct references (``bench.local.roster.catalog``: the threadless-dev designs,
band-logos, simple-icons, then generated logos), one band each, added to a fresh home as ``logoid add-band`` adds them
(validated and copied). ``build_index`` then runs as ``logoid build-index`` runs it, with its defaults (20 variants,
the precision ``auto`` picks here with the frozen tower, local features in a process per core, FAISS), from empty
caches, and each stage's wall time is noted: embedding, local features, the gallery calibration, the global vector
index, the descriptor index, the names and the commit. The raw forward pass of the same tower, precision and batch
runs for as many images before and after the build: the embedding stage's share of it.

180k: the stages that grow linearly with the catalog (embedding, features, calibration, names, the rest) × 180k / N,
plus the two index structures as the straight 180k build measured them (the latest record of ``python -m bench
local-scale roster-e2e --straight``): their structure at 180k (IVF-PQ, 32k descriptor lists) is not the one N
references get, so they do not scale from N. The same structures scaled linearly from N are shown beside.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import WORK, fmt, table
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL

ROSTER = 180_000
#: Stages whose time grows linearly with the catalog (the calibration's queries are capped, its gallery is not; the
#: commit writes every index file). Records before "commit" was a stage of its own counted it in "names".
LINEAR = ("embedding", "local features", "calibration", "names", "commit", "other")
STRUCTURES = ("global index", "descriptor index")


class _Stages:
    """Wall time of each stage: the build's bars (embedding, local features) and the wrapped steps after them."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.marks: dict[str, list[tuple[float, int]]] = {}

    def progress(self, desc: str, total: int, unit: str):
        stages, t0 = self, time.perf_counter()
        marks = self.marks.setdefault(desc, [])

        class _Bar:
            def update(self, n: int = 1) -> None:
                marks.append((time.perf_counter(), (marks[-1][1] if marks else 0) + n))

            def close(self) -> None:
                stages.seconds[desc] = stages.seconds.get(desc, 0.0) + time.perf_counter() - t0

        return _Bar()

    @contextlib.contextmanager
    def timed(self, owner, attr: str, name: str):
        """``owner.attr`` timed as stage ``name`` while the block runs; put back as it was (a classmethod stays one)."""
        original, stored = getattr(owner, attr), inspect.getattr_static(owner, attr)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

        setattr(owner, attr, wrapper)
        try:
            yield
        finally:
            setattr(owner, attr, stored)


def make_home(n: int, root: Path):
    """A fresh home at ``root`` with the roster's first ``n`` distinct references, one band each; (home, catalog
    seconds, references refused)."""
    from bench.local import roster
    from logoid.catalog import Catalog
    from logoid.core.errors import LogoidError
    from logoid.core.paths import Home

    refs = roster.catalog(n)
    shutil.rmtree(root, ignore_errors=True)
    home = Home(root).ensure()
    refused = []
    t = time.perf_counter()
    with Catalog.open(home) as cat, cat.transaction():
        for r in refs:
            band = cat.add_band(f"roster {r.image_id}")
            try:
                cat.add_image("band", band.id, r.path)
            except LogoidError as e:
                refused.append((str(r.path), str(e)))
    return home, time.perf_counter() - t, refused, {k: sum(1 for r in refs if r.kind == k)
                                                    for k in ("design", "band", "icon", "generated")}


def raw_pass(embedder, home, precision: str, batch: int, images: int) -> float:
    """img/s of ``embed_inputs`` on ready inputs (the home's first references' variants), ``images`` of them."""
    from logoid.augment import AugmentConfig, variant_arrays
    from logoid.catalog import Catalog
    from logoid.core.imageio import load_image

    with Catalog.open(home) as cat:
        refs = cat.images()[:4]
    aug = AugmentConfig()
    inputs = np.stack([embedder.image_input(a) for r in refs
                       for a in variant_arrays(load_image(r.path), r.scheme, aug, r.sha256)])
    batch_in = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))
    embedder.embed_inputs(batch_in, precision)  # warm-up (and the frozen tower's trace)
    t = time.perf_counter()
    for _ in range(max(1, images // batch)):
        embedder.embed_inputs(batch_in, precision)
    return max(1, images // batch) * batch / (time.perf_counter() - t)


def _du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def _straight_180k() -> dict | None:
    """The index structures' build seconds at 180k from this machine's latest straight roster-e2e record, or None."""
    from bench.local.roster_table import e2e_row
    from bench.record import load_records, machine_info

    got = e2e_row(load_records(), machine_info(), ROSTER)
    d, g = (got[0].get("descriptor_index_build"), got[0].get("global_index")) if got else (None, None)
    if not (d and g):
        return None
    rec = got[1]
    return {"record": rec["path"].stem, "date": rec["date"], "machine": rec["machine"].get("cpu", ""),
            "global index": g["build_s"], "descriptor index": d["build_s"], "descriptors": d["descriptors"]}


def run(n: int, model: str = DEFAULT_MODEL) -> dict:
    import logoid.build.steps as steps
    from logoid.augment import AugmentConfig
    from logoid.build.embedding import batch_size_for
    from logoid.build.precision import build_precision
    from logoid.build.steps import BuildOptions, build_index
    from logoid.catalog import Catalog
    from logoid.engine import create_embedder
    from logoid.engine.embedder import resolve_precision
    from logoid.index import store as store_mod
    from logoid.index.descriptors import DescriptorIndex
    from logoid.index.vectors import VectorIndex

    work = WORK / "build-whole"
    home, catalog_s, refused, kinds = make_home(n, work / "home")
    print(f"catalog: {n} references added in {catalog_s:.0f} s ({len(refused)} refused)", file=sys.stderr)
    embedder = create_embedder(model)
    stages = _Stages()
    # what the build picks (the frozen tower traces here; the record says what the build used)
    precision = resolve_precision(build_precision(home, embedder.device), embedder.device)
    batch = batch_size_for(embedder.device)
    images = n * AugmentConfig().n_variants // 10  # a tenth of the stage's variants, before and after
    before = raw_pass(embedder, home, precision, batch, images)
    print(f"raw {precision} batch {batch}: {before:.1f} img/s", file=sys.stderr)
    with Catalog.open(home) as cat, contextlib.ExitStack() as stack:
        stack.enter_context(stages.timed(VectorIndex, "build", "global index"))
        stack.enter_context(stages.timed(DescriptorIndex, "build", "descriptor index"))
        stack.enter_context(stages.timed(steps, "gallery_calibration", "calibration"))
        stack.enter_context(stages.timed(steps, "_new_names_index", "names"))
        stack.enter_context(stages.timed(store_mod.IndexStore, "commit", "commit"))
        t = time.perf_counter()
        report = build_index(home, cat, embedder, BuildOptions(), progress=stages.progress)
        total = time.perf_counter() - t
    after = raw_pass(embedder, home, precision, batch, images)
    print(f"raw after: {after:.1f} img/s; build {total:.0f} s", file=sys.stderr)
    built = store_mod.IndexStore.load_meta_only(home.index_dir)["model"]["precision"]
    seconds = {k: stages.seconds.get(k, 0.0) for k in (*LINEAR[:-1], *STRUCTURES)}
    seconds["other"] = total - sum(seconds.values())
    marks = stages.marks.get("embedding", [])
    emb_s = seconds["embedding"]
    steady = ((marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])) if len(marks) > 1 else None
    straight = _straight_180k()
    return {
        "refs": n, "kinds": kinds, "refused": refused, "model": model, "catalog_s": catalog_s,
        "precision": built, "batch": batch, "report": {k: v for k, v in report.to_dict().items()
                                                       if k in ("images", "vectors", "embedded", "descriptors",
                                                                "features_extracted", "names")},
        "seconds": seconds, "total_s": total,
        "embedding_img_s": report.embedded / emb_s, "embedding_steady_img_s": steady,
        "raw_img_s": {"before": before, "after": after},
        "stage_share_of_raw": report.embedded / emb_s / ((before + after) / 2),
        "features_img_s": report.features_extracted / seconds["local features"],
        "peak_rss_mb": {"build": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                        "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024},
        "disk_mb": {"index": _du_mb(home.index_dir), "caches": _du_mb(home.cache_dir)},
        "extrapolated_180k": extrapolate(seconds, n, straight),
    }


def extrapolate(seconds: dict, n: int, straight: dict | None) -> dict:
    """180k from the stage seconds of an ``n``-reference build: the linear stages scaled; the index structures
    scaled too (``total_linear_h``) and as the straight 180k build measured them (``total_h``; its save is left out:
    the commit, scaled, writes the files)."""
    scale = ROSTER / n
    linear = sum(seconds.get(k, 0.0) for k in LINEAR)
    measured = sum(straight[k] for k in STRUCTURES) if straight else None
    return {"linear_h": linear * scale / 3600,
            "structures_linear_h": sum(seconds[k] for k in STRUCTURES) * scale / 3600,
            "structures_measured_h": measured / 3600 if straight else None,
            "total_h": (linear * scale + measured) / 3600 if straight else None,
            "total_linear_h": sum(seconds.values()) * scale / 3600,
            "straight": straight}


def render(res: dict) -> str:
    n, scale = res["refs"], ROSTER / res["refs"]
    s, e = res["seconds"], res["extrapolated_180k"]
    straight = e["straight"] or {}
    rows = [[k, s[k], 1000 * s[k] / n, s[k] * scale / 3600,
             (straight[k] / 3600 if k in straight else "scales linearly")]
            for k in (*LINEAR[:3], *STRUCTURES, *LINEAR[3:]) if k in s]
    rows.append(["**whole build**", res["total_s"], 1000 * res["total_s"] / n, e["total_linear_h"],
                 f"**{fmt(e['total_h'], 2)}**" if e["total_h"] is not None else "–"])
    r = res["report"]
    kinds = ", ".join(f"{v:,} {k}s" for k, v in res["kinds"].items() if v)
    src = (f" of {straight['date'][:10]} (record {straight['record']}, {straight['descriptors']:,} descriptors)"
           if straight else "")
    return (f"{n:,} distinct references ({kinds}) × 20 variants, {res['model']} in {res['precision']} (batch "
            f"{res['batch']}), {r['images']:,} indexed: {r['vectors']:,} vectors, {r['descriptors']:,} descriptors. "
            f"Wall seconds of each stage:\n\n"
            + table(["stage", "seconds", "ms per reference", "180k, scaled linearly (h)",
                     "180k, structures as measured (h)"], rows)
            + (f"\n\nThe structures as measured: the straight 180k build{src}." if straight else "")
            + f"\n\nEmbedding stage {fmt(res['embedding_img_s'], 1)} img/s (steady "
            f"{fmt(res['embedding_steady_img_s'], 1)}), **{fmt(res['stage_share_of_raw'], 3)}** of the raw forward "
            f"pass beside it ({fmt(res['raw_img_s']['before'], 1)} img/s before the build, "
            f"{fmt(res['raw_img_s']['after'], 1)} after, each over a tenth of the stage's images); local features "
            f"{fmt(res['features_img_s'], 1)} img/s. Peak resident memory: the build's process "
            f"{fmt(res['peak_rss_mb']['build'], 0)} MB, its largest worker {fmt(res['peak_rss_mb']['workers'], 0)} MB. "
            f"On disk: index {fmt(res['disk_mb']['index'], 0)} MB, caches {fmt(res['disk_mb']['caches'], 0)} MB. "
            f"Adding the references to the catalog (not part of the build) took {fmt(res['catalog_s'], 0)} s"
            + (f"; {len(res['refused'])} were refused" if res["refused"] else "") + ".")


def summary(res: dict) -> str:
    e = res["extrapolated_180k"]
    whole = f"**{fmt(e['total_h'], 1)} h**" if e["total_h"] is not None else f"{fmt(e['total_linear_h'], 1)} h (linear)"
    return (f"{res['refs']:,} references built in {fmt(res['total_s'] / 60, 1)} min (embedding "
            f"{fmt(res['embedding_img_s'], 1)} img/s, {fmt(res['stage_share_of_raw'], 2)} of the raw pass beside it); "
            f"180k: {whole}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", type=int, default=10_000, help="distinct references in the catalog")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    add_no_write(ap)
    a = ap.parse_args(argv)
    res = run(a.refs, a.model)
    body = render(res)
    print(body)
    if not a.no_write:
        save_record("build", "whole", res, body, summary=summary(res),
                    notes="One run on a quiet machine; the index structures at 180k come from the straight build's "
                          "record, named in the table.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
