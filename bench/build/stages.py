"""The build's embedding and local-feature stages on N generated logos, extrapolated to 180k references.

    python -m bench build [--n 200] [--variants 20] [--fewer 10,5] [--workers 1,2] [--pairs 3] [--no-write]

Measures the raw forward pass (fp32, bf16; batch sizes), the embedding stage at fp32 and bf16 (rate and share of
the raw pass) with its worker processes augmenting (the default) and with the reader thread (``--workers 1``) side
by side, the same in the build's precision between two raw passes ``--pairs`` times (the paired shares), the
fp32-vs-bf16 cosine of every variant, the same again with the image tower traced and frozen by TorchScript (raw
passes of both towers side by side, the stage, its paired shares, each variant's cosine to the eager tower's), and
the feature stage at each worker count; records the
run and regenerates BENCHMARKS.md (``--no-write``: prints only). A few hundred logos take a few minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import WORK, fmt, read_manifest, table
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL

ROSTER = 180_000
PRECISIONS = ("fp32", "bf16")


def logos(n: int, folder: Path) -> list[Path]:
    """The first ``n`` generated logos of ``folder`` (generated there first when it holds fewer)."""
    manifest = folder / "manifest.csv"
    rows = read_manifest(manifest) if manifest.exists() else []
    if len(rows) < n:
        from bench._logos import generate

        rows = generate(n, folder)
    return [folder / r["file"] for r in rows[:n]]


def catalog_of(paths: list[Path], root: Path):
    """A fresh home at ``root`` with one band per logo; returns (home, its reference images in catalog order)."""
    from logoid.catalog import Catalog
    from logoid.core.paths import Home

    shutil.rmtree(root, ignore_errors=True)
    home = Home(root).ensure()
    with Catalog.open(home) as cat:
        with cat.transaction():
            for i, p in enumerate(paths):
                cat.add_image("band", cat.add_band(f"roster {i:06d}").id, p)
        refs = cat.images()
    return home, refs


class _Report:
    """The counters the stages fill in (a BuildReport without the rest)."""

    def __init__(self):
        self.embedded = self.cached = self.features_extracted = self.features_cached = 0
        self.skipped: list = []
        self.warnings: list = []


def raw_forward(embedder, inputs: np.ndarray, batch_sizes: list[int], images: int, precisions=PRECISIONS) -> dict:
    """Per precision and batch size: (img/s, img per CPU-second of this process) of ``embed_inputs`` on ready
    inputs, the better of two passes over ``images`` inputs."""
    out: dict = {}
    for precision in precisions:
        for b in batch_sizes:
            batch = np.ascontiguousarray(np.resize(inputs, (b, *inputs.shape[1:])))
            embedder.embed_inputs(batch, precision)  # warm-up: oneDNN picks its kernels for the shape
            best = (0.0, 0.0)
            for _ in range(2):
                t, c = time.perf_counter(), time.process_time()
                for _ in range(max(1, images // b)):
                    embedder.embed_inputs(batch, precision)
                n = max(1, images // b) * b
                best = max(best, (n / (time.perf_counter() - t), n / (time.process_time() - c)))
            out.setdefault(precision, {})[b] = best
            print(f"raw {precision} batch {b}: {best[0]:.1f} img/s ({best[1]:.1f} per CPU-s)", file=sys.stderr)
    return out


class _Clock:
    """A progress bar that notes when each reference was done: (seconds, variants done so far)."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []

    def update(self, n: int) -> None:
        self.marks.append((time.perf_counter(), (self.marks[-1][1] if self.marks else 0) + n))


def embedding_stage(embedder, refs, cache_dir: Path, aug_cfg, precision: str, batch: int, workers: int | None = None
                    ) -> tuple[tuple[float, float, float], np.ndarray]:
    """((variants/s, variants per CPU-second of this process, steady variants/s), vectors) of the build's embedding
    stage on ``refs``, from an empty cache; ``workers`` as ``embed_stage`` takes it (None: the default, processes on
    every core). The time includes starting the processes (the CPU-seconds do not count theirs); the steady rate
    starts when the first reference is done, after the processes' start and the first chunk."""
    from logoid.build.embedding import embed_stage

    shutil.rmtree(cache_dir, ignore_errors=True)
    rep, clock = _Report(), _Clock()
    t, c = time.perf_counter(), time.process_time()
    got = embed_stage(refs, embedder, cache_dir, aug_cfg, rep, precision=precision, batch_size=batch, workers=workers,
                      bar=clock)
    end = time.perf_counter()
    t0, n0 = clock.marks[0]
    rate = (rep.embedded / (end - t), rep.embedded / (time.process_time() - c), (rep.embedded - n0) / (end - t0))
    how = "reader thread" if workers == 1 else "worker processes"
    print(f"embedding stage {precision}, {how}: {rate[0]:.1f} variant/s ({rate[1]:.1f} per CPU-s, steady "
          f"{rate[2]:.1f})", file=sys.stderr)
    return rate, got.vectors


def feature_stage(refs, cache_dir: Path, workers: int) -> float:
    """img/s of the build's local-feature stage on ``refs`` with ``workers`` processes, from an empty cache."""
    from logoid.build.features import feature_stage as stage
    from logoid.build.features import new_index_variants
    from logoid.engine.local import FeatureCache
    from logoid.identify.match import LocalConfig

    shutil.rmtree(cache_dir, ignore_errors=True)
    rep = _Report()
    cfg = LocalConfig().extract
    t = time.perf_counter()
    stage(refs, cfg, FeatureCache(cache_dir), rep, workers=workers, variants=new_index_variants(cfg))
    dt = time.perf_counter() - t
    print(f"feature stage, {workers} workers: {len(refs) / dt:.2f} img/s", file=sys.stderr)
    return len(refs) / dt


def paired(embedder, refs, cache_dir: Path, aug_cfg, inputs: np.ndarray, precision: str, batch: int, pairs: int,
           ways: tuple = (("processes", None), ("reader thread", 1))) -> dict:
    """The stage's share of the raw pass measured ``pairs`` times, each stage run between two raw passes of its
    precision and batch (this machine's raw pass moves by a third from one minute to the next): per way of
    augmenting, every (stage, raw before, raw after, steady stage) and the medians of stage / the better raw beside
    it, whole and steady."""
    images = 12 * batch
    out: dict = {how: [] for how, _ in ways}
    before = raw_forward(embedder, inputs, [batch], images, (precision,))[precision][batch][0]
    for _ in range(pairs):
        for how, workers in ways:
            rate = embedding_stage(embedder, refs, cache_dir, aug_cfg, precision, batch, workers)[0]
            after = raw_forward(embedder, inputs, [batch], images, (precision,))[precision][batch][0]
            out[how].append((rate[0], before, after, rate[2]))
            before = after
    return {how: {"runs": runs, "median_share": float(np.median([r / max(a, b) for r, a, b, _ in runs])),
                  "median_steady_share": float(np.median([s / max(a, b) for _, a, b, s in runs]))}
            for how, runs in out.items()}


def run(n: int, variants: int, fewer: list[int], workers: list[int], batch_sizes: list[int], folder: Path,
        model: str = DEFAULT_MODEL, augment_size: int | None = None, pairs: int = 3) -> dict:
    from logoid.augment import AugmentConfig, variant_arrays
    from logoid.core.imageio import load_image
    from logoid.engine import create_embedder
    from logoid.engine.embedder import cpu_native_bf16

    work = WORK / "build-bench"
    home, refs = catalog_of(logos(n, folder), work / "home")
    embedder = create_embedder(model)
    aug = AugmentConfig(n_variants=variants, **({"size": augment_size} if augment_size else {}))
    sample = [embedder.image_input(a) for r in refs[:4] for a in variant_arrays(load_image(r.path), r.scheme, aug,
                                                                                  r.sha256)]
    inputs = np.stack(sample)
    embedder.vectors_id("fp32")  # the weights' hash: read once, before anything is timed
    raw_images = 12 * max(batch_sizes)
    raw = raw_forward(embedder, inputs, batch_sizes, raw_images)
    stage, reader, vectors = {}, {}, {}
    for precision in PRECISIONS:
        b = max(raw[precision], key=lambda k, p=precision: raw[p][k][0])
        stage[precision], vectors[precision] = embedding_stage(embedder, refs, work / f"cache-{precision}", aug,
                                                               precision, b)
        reader[precision], again_vectors = embedding_stage(embedder, refs, work / f"cache-{precision}", aug,
                                                           precision, b, workers=1)
        if not np.array_equal(again_vectors, vectors[precision]):
            raise AssertionError(f"{precision}: the reader thread and the worker processes gave different vectors")
    again = raw_forward(embedder, inputs, batch_sizes, raw_images)  # the raw pass after the stages: the best of both
    for precision in PRECISIONS:
        for b, v in again[precision].items():
            raw[precision][b] = (max(raw[precision][b][0], v[0]), max(raw[precision][b][1], v[1]))
    cos = np.sum(vectors["fp32"] * vectors["bf16"], axis=1)
    best_raw = {p: max(r[0] for r in raw[p].values()) for p in PRECISIONS}
    best_raw_cpu = {p: max(r[1] for r in raw[p].values()) for p in PRECISIONS}
    build_precision = "bf16" if cpu_native_bf16() else "fp32"  # what `build-index --precision auto` picks here
    b = max(raw[build_precision], key=lambda k: raw[build_precision][k][0])
    pair = paired(embedder, refs, work / "cache-paired", aug, inputs, build_precision, b, pairs) if pairs else {}
    frozen = _frozen(embedder, refs, work, aug, inputs, batch_sizes, raw_images, build_precision, pairs,
                     vectors[build_precision], vectors["fp32"])
    features = {w: feature_stage(refs, work / f"features-{w}", w) for w in workers}
    feat_rate = max(features.values())
    extrapolated = {}
    for v in [variants, *fewer]:
        embed_h = ROSTER * v / stage[build_precision][0] / 3600
        extrapolated[v] = {"embedding_h": embed_h, "features_h": ROSTER / feat_rate / 3600,
                           "total_h": embed_h + ROSTER / feat_rate / 3600}
    return {
        "n": len(refs), "variants": variants, "augment_size": aug.size, "model": model,
        "torch_threads": _torch_threads(),
        "cpu_native_bf16": cpu_native_bf16(), "build_precision": build_precision,
        "raw_img_s": {p: {str(b): r[0] for b, r in raw[p].items()} for p in PRECISIONS},
        "raw_img_per_cpu_s": {p: {str(b): r[1] for b, r in raw[p].items()} for p in PRECISIONS},
        "raw_best_img_s": best_raw,
        "raw_best_batch": {p: max(raw[p], key=lambda k, p=p: raw[p][k][0]) for p in PRECISIONS},
        "stage_img_s": {p: stage[p][0] for p in PRECISIONS},
        "stage_img_per_cpu_s": {p: stage[p][1] for p in PRECISIONS},
        "stage_share_of_raw": {p: stage[p][0] / best_raw[p] for p in PRECISIONS},
        "stage_steady_img_s": {p: stage[p][2] for p in PRECISIONS},
        "stage_steady_share_of_raw": {p: stage[p][2] / best_raw[p] for p in PRECISIONS},
        "stage_workers": _stage_workers(),
        "paired_precision": build_precision, "paired": pair,
        "reader_stage_img_s": {p: reader[p][0] for p in PRECISIONS},
        "reader_stage_share_of_raw": {p: reader[p][0] / best_raw[p] for p in PRECISIONS},
        "stage_cpu_share_of_raw": {p: stage[p][1] / best_raw_cpu[p] for p in PRECISIONS},
        "stage_bf16_share_of_raw_bf16": stage["bf16"][0] / best_raw["bf16"],
        "cos_fp32_bf16": {"min": float(cos.min()), "p1": float(np.percentile(cos, 1)), "mean": float(cos.mean())},
        "features_img_s": {str(w): r for w, r in features.items()},
        "feature_variants": _feature_variants(),
        "extrapolated_180k": {str(v): e for v, e in extrapolated.items()},
        "frozen": dict(frozen, extrapolated_180k={
            str(v): {"embedding_h": ROSTER * v / frozen["stage_img_s"] / 3600,
                     "total_h": ROSTER * v / frozen["stage_img_s"] / 3600 + ROSTER / feat_rate / 3600}
            for v in [variants, *fewer]}),
    }


def _frozen(embedder, refs, work: Path, aug, inputs: np.ndarray, batch_sizes: list[int], raw_images: int,
            precision: str, pairs: int, eager_vectors: np.ndarray, fp32_vectors: np.ndarray) -> dict:
    """The same in ``precision`` with the image tower traced and frozen (``build-index --frozen-tower``): the raw pass
    of both towers side by side, the stage (worker processes) at the frozen tower's best batch, its paired shares,
    and each variant's cosine to the eager tower's vector."""
    from logoid.engine.embedder import FROZEN

    frozen = precision + FROZEN
    both = (precision, frozen)
    raw = raw_forward(embedder, inputs, batch_sizes, raw_images, both)
    again = raw_forward(embedder, inputs, batch_sizes, raw_images, both)
    raw = {p: {b: max(raw[p][b][0], again[p][b][0]) for b in batch_sizes} for p in both}
    b = max(raw[frozen], key=lambda k: raw[frozen][k])
    rate, vecs = embedding_stage(embedder, refs, work / "cache-frozen", aug, frozen, b)
    cos, cos32 = np.sum(vecs * eager_vectors, axis=1), np.sum(vecs * fp32_vectors, axis=1)
    pair = (paired(embedder, refs, work / "cache-frozen-paired", aug, inputs, frozen, b, pairs,
                   (("processes", None),)) if pairs else {})
    best = max(raw[frozen].values())
    return {"precision": frozen, "raw_img_s": {p: {str(k): v for k, v in raw[p].items()} for p in both},
            "raw_best_batch": b, "stage_img_s": rate[0], "stage_steady_img_s": rate[2],
            "stage_share_of_raw": rate[0] / best, "stage_steady_share_of_raw": rate[2] / best,
            "raw_speedup": best / max(raw[precision].values()), "paired": pair,
            "cos_vs_eager": {"min": float(cos.min()), "p1": float(np.percentile(cos, 1)), "mean": float(cos.mean())},
            "cos_vs_fp32": {"min": float(cos32.min()), "p1": float(np.percentile(cos32, 1)),
                            "mean": float(cos32.mean())}}


def _stage_workers() -> int:
    from logoid.build.features import default_workers

    return default_workers()


def _feature_variants() -> int:
    from logoid.build.features import new_index_variants
    from logoid.identify.match import LocalConfig

    return new_index_variants(LocalConfig().extract)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def render(res: dict) -> str:
    reader = "reader_stage_img_s" in res
    workers = f" ({res['stage_workers']} processes augmenting)" if reader else ""
    raw = table(["precision", *[f"raw, batch {b}" for b in res["raw_img_s"]["fp32"]], f"embedding stage{workers}",
                 "stage / best raw", *(["reader thread (--workers 1)", "its share"] if reader else
                                       ["same, per CPU-second"])],
                [[p, *res["raw_img_s"][p].values(), res["stage_img_s"][p], res["stage_share_of_raw"][p],
                  *([res["reader_stage_img_s"][p], res["reader_stage_share_of_raw"][p]] if reader else
                    [res["stage_cpu_share_of_raw"][p]])] for p in PRECISIONS])
    feats = table(["feature workers", "img/s"], [[w, r] for w, r in res["features_img_s"].items()])
    what = {1: "the normal variant of each reference (what a new index stores)",
            2: "normal and inverted variants"}.get(res.get("feature_variants", 2), "")
    ext = table(["variants", "embedding (h)", "local features (h)", "total (h)"],
                [[v, e["embedding_h"], e["features_h"], e["total_h"]] for v, e in res["extrapolated_180k"].items()])
    c = res["cos_fp32_bf16"]
    pair = ""
    if res.get("paired"):
        steady = all(len(r) == 4 for v in res["paired"].values() for r in v["runs"])  # records before: no steady rate
        rows = [[how, i + 1, r[0], r[1], r[2], r[0] / max(r[1], r[2]),
                 *([r[3], r[3] / max(r[1], r[2])] if steady else [])]
                for how, v in res["paired"].items() for i, r in enumerate(v["runs"])]
        med = ", ".join(f"{how} **{fmt(v['median_share'], 3)}**"
                        + (f" (steady {fmt(v['median_steady_share'], 3)})" if steady else "")
                        for how, v in res["paired"].items())
        pair = (f"\n\nThe stage in {res['paired_precision']} between two raw passes of its batch, each way of "
                f"augmenting in turn (median share of the better raw beside it: {med}"
                + ("; steady: from the first reference done, after the processes' start and first chunk" if steady
                   else "") + "):\n\n"
                + table(["augmenting", "run", "stage", "raw before", "raw after", "share",
                         *(["steady stage", "steady share"] if steady else [])], rows))
    if "stage_steady_img_s" in res:
        raw += ("\n\nThe stage's steady rate (from the first reference done, after the processes' start and first "
                "chunk): " + ", ".join(f"{p} {fmt(res['stage_steady_img_s'][p], 1)} img/s "
                                       f"({fmt(res['stage_steady_share_of_raw'][p], 3)} of the best raw)"
                                       for p in PRECISIONS) + ".")
    if res.get("frozen"):
        pair += "\n\n" + _render_frozen(res["frozen"], res["build_precision"])
    return (f"{res['n']} generated logos × {res['variants']} variants at {res.get('augment_size', 320)} px, "
            f"{res['model']}, torch {res['torch_threads']} "
            f"threads, img/s:\n\n{raw}\n\nfp32 vs bf16 vector of each variant: cosine min {fmt(c['min'], 5)}, "
            f"1st percentile {fmt(c['p1'], 5)}, mean {fmt(c['mean'], 5)}.{pair}\n\nLocal features, {what}:\n\n"
            f"{feats}\n\n"
            f"180,000 references, embedding in {res['build_precision']} (what `--precision auto` picks here), "
            f"features at the best worker count (index structures not included):\n\n{ext}")


def _render_frozen(f: dict, precision: str) -> str:
    batches = list(f["raw_img_s"][precision])
    raw = table(["tower", *[f"raw, batch {b}" for b in batches]],
                [[p, *f["raw_img_s"][p].values()] for p in f["raw_img_s"]])
    pair = f["paired"].get("processes")
    c = f["cos_vs_eager"]
    ext = ", ".join(f"{v} variants {fmt(e['total_h'], 1)} h" for v, e in f["extrapolated_180k"].items())
    return (f"The image tower traced and frozen by TorchScript (`build-index --frozen-tower`), {f['precision']}, "
            f"img/s:\n\n{raw}\n\nRaw pass {fmt(f['raw_speedup'], 2)}× the eager tower's best; the stage (worker "
            f"processes, batch {f['raw_best_batch']}) {fmt(f['stage_img_s'], 1)} img/s, "
            f"{fmt(f['stage_share_of_raw'], 3)} of the frozen raw pass "
            f"(steady {fmt(f['stage_steady_share_of_raw'], 3)})"
            + (f", paired median {fmt(pair['median_share'], 3)} (steady {fmt(pair['median_steady_share'], 3)})"
               if pair else "")
            + f"; each variant's cosine to the eager tower's vector in the same precision: min {fmt(c['min'], 5)}, "
            f"1st percentile {fmt(c['p1'], 5)}, mean {fmt(c['mean'], 5)}; to the eager fp32 vector: min "
            f"{fmt(f['cos_vs_fp32']['min'], 5)}, 1st percentile {fmt(f['cos_vs_fp32']['p1'], 5)}, mean "
            f"{fmt(f['cos_vs_fp32']['mean'], 5)}. 180,000 references: {ext}.")


def summary(res: dict) -> str:
    e = res["extrapolated_180k"]
    v = [k for k in e if k != str(res["variants"])]
    few = f"; {v[-1]} variants {fmt(e[v[-1]]['total_h'], 1)} h" if v else ""
    reader = (f", reader thread {fmt(100 * res['reader_stage_share_of_raw']['bf16'], 0)} %"
              if "reader_stage_share_of_raw" in res else "")
    if res.get("paired"):
        reader += "; paired medians " + ", ".join(f"{how} {fmt(v['median_share'], 2)}"
                                                  for how, v in res["paired"].items())
    if res.get("frozen"):
        f = res["frozen"]
        few += (f"; frozen tower: raw {fmt(f['raw_speedup'], 2)}×, stage {fmt(f['stage_img_s'], 1)} img/s, "
                f"180k × {res['variants']} **{fmt(f['extrapolated_180k'][str(res['variants'])]['total_h'], 1)} h**")
    return (f"embedding stage bf16 **{fmt(res['stage_img_s']['bf16'], 1)} img/s** "
            f"({fmt(100 * res['stage_bf16_share_of_raw_bf16'], 0)} % of raw bf16{reader}; fp32 "
            f"{fmt(res['stage_img_s']['fp32'], 1)}); features {fmt(max(res['features_img_s'].values()), 1)} img/s; "
            f"180k refs × {res['variants']} variants **{fmt(e[str(res['variants'])]['total_h'], 1)} h**{few}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="generated logos in the catalog")
    ap.add_argument("--variants", type=int, default=20)
    ap.add_argument("--fewer", type=_ints, default=[10, 5], help="other variant counts to extrapolate to")
    ap.add_argument("--workers", type=_ints, default=sorted({1, len(os.sched_getaffinity(0))}),
                    help="feature-stage worker counts to measure (default: 1 and the cores)")
    ap.add_argument("--batch-sizes", type=_ints, default=[4, 8, 16, 32])
    ap.add_argument("--logos", type=Path, default=WORK / "roster-logos", help="folder of generated logos")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--augment-size", type=int, default=None, help="variants' long side in px (default AugmentConfig's)")
    ap.add_argument("--pairs", type=int, default=3,
                    help="times the stage runs between two raw passes, each way of augmenting (0: none)")
    add_no_write(ap)
    a = ap.parse_args(argv)
    res = run(a.n, a.variants, a.fewer, a.workers, a.batch_sizes, a.logos, a.model, a.augment_size, a.pairs)
    body = render(res)
    print(body)
    if not a.no_write:
        save_record("build", "stages", res, body, summary=summary(res),
                    notes="Rates on a CPU shared with other work are lower bounds; the stage share compares "
                          "two measurements of the same run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
