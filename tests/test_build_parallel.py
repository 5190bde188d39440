"""Building at scale: the image tower's precision (chosen, recorded, kept apart in the cache), the embedding stage's
batches across references, and local features extracted by worker processes: the same index as a serial build,
none of it held in memory, and a parallel build killed (SIGKILL) mid-way resumed with nothing lost or redone."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from synth import text_logo

from logoid.augment import AugmentConfig, make_variants, variant_arrays
from logoid.build import embedding as embedding_stage
from logoid.build import features as feature_stage
from logoid.build.precision import build_precision, frozen_by_default
from logoid.build.steps import BuildOptions, BuildReport, add_images, build_index
from logoid.catalog import Catalog
from logoid.cli import cli
from logoid.core.errors import ConfigError
from logoid.core.imageio import load_image
from logoid.core.paths import Home
from logoid.engine import create_embedder
from logoid.engine import embedder as embedder_mod
from logoid.engine.embedder import cpu_native_bf16, resolve_precision
from logoid.engine.local import FeatureCache
from logoid.identify.match import LocalConfig
from logoid.index.store import IndexStore

N_IMAGES, VARIANTS, KILL_AT = 10, 2, 3  # 10 images to extract: enough for the pool (POOL_MIN_IMAGES)
AUG = AugmentConfig(n_variants=VARIANTS)


@pytest.fixture(scope="module")
def embedder():
    return create_embedder("tiny-test")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A home whose catalog has N_IMAGES text logos (nothing built)."""
    root = tmp_path_factory.mktemp("parallel")
    home = Home(root / "template")
    home.ensure()
    with Catalog.open(home) as cat:
        for i in range(N_IMAGES):
            p = root / f"logo{i}.png"
            text_logo(f"QX{i}RZ"[: 3 + i % 3], seed=40 + i).save(p)
            cat.add_image("band", cat.add_band(f"Band {i}").id, p)
    return home.root


def _home(template, dst) -> Home:
    shutil.copytree(template, dst)
    return Home(dst)


def _build(home: Home, embedder, **opts) -> BuildReport:
    with Catalog.open(home) as cat:
        return build_index(home, cat, embedder, BuildOptions(augment=AUG, with_names=False, **opts))


def _index_files(home: Home) -> dict[str, bytes]:
    """Every file of the index by its name (the random token of a save's file names blanked), the sidecars without
    the build's time; not the readers' pins."""
    out = {}
    for p in sorted((home.root / "index").rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            data = p.read_bytes()
            if p.suffix == ".json":
                meta = json.loads(data)
                for k in ("built_at", "updated_at"):
                    meta.pop(k, None)
                data = _TOKEN.sub(b".TOKEN.", json.dumps(meta, sort_keys=True).encode())
            out[_TOKEN.sub(b".TOKEN.", str(p.relative_to(home.root)).encode()).decode()] = data
    return out


_TOKEN = re.compile(rb"\.[0-9a-f]{8}\.")


# ---- precision ------------------------------------------------------------------------------------------------------

def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_native_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n") is True
    assert cpu_native_bf16("flags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n") is True
    assert cpu_native_bf16("Features\t: fp asimd bf16 i8mm\n") is True  # Arm
    assert cpu_native_bf16("flags\t\t: fpu sse2 avx2 avx512f avx512bw\n") is False  # AVX-512 without BF16
    assert cpu_native_bf16("") is False


def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it(monkeypatch):
    monkeypatch.setattr(embedder_mod, "cpu_native_bf16", lambda cpuinfo=None: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(embedder_mod, "cpu_native_bf16", lambda cpuinfo=None: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="auto, fp32, bf16"):
        resolve_precision("int8", "cpu")


def test_bf16_vectors_are_bf16_and_close_to_fp32(embedder, template):
    imgs = [load_image(p) for p in sorted(template.parent.glob("logo*.png"))[:4]]
    batch = np.stack([embedder.image_input(im) for im in imgs])
    fp32, bf16 = embedder.embed_inputs(batch, "fp32"), embedder.embed_inputs(batch, "bf16")
    assert fp32.dtype == bf16.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(fp32, bf16)  # the tower really ran in bf16
    assert np.sum(fp32 * bf16, axis=1).min() > 0.99


def test_the_build_records_its_precision_and_keeps_each_in_its_own_cache(embedder, template, tmp_path):
    home = _home(template, tmp_path / "home")
    first = _build(home, embedder, precision="bf16", with_local=False)
    assert (first.embedded, first.cached) == (N_IMAGES * VARIANTS, 0)
    assert IndexStore.load_meta_only(home.index_dir)["model"]["precision"] == "bf16"
    bf16_vectors = IndexStore.load(home.index_dir).require_vectors().vectors_and_ids()[0]
    # fp32 finds none of the bf16 vectors in the cache: two precisions never mix
    again = _build(home, embedder, precision="fp32", with_local=False)
    assert (again.embedded, again.cached) == (N_IMAGES * VARIANTS, 0)
    store = IndexStore.load(home.index_dir)
    assert store.meta["model"]["precision"] == "fp32"
    assert not np.array_equal(store.require_vectors().vectors_and_ids()[0], bf16_vectors)
    assert {p.name for p in (home.cache_dir / "embeddings").glob("*.sqlite")} == {
        f"{embedder.model_id}_bf16.sqlite", f"{embedder.model_id}.sqlite"}  # the cache's file name for "+bf16"
    third = _build(home, embedder, precision="bf16", with_local=False)
    assert (third.embedded, third.cached) == (0, N_IMAGES * VARIANTS)


def test_the_frozen_tower_gives_the_eager_vectors_in_fp32_and_close_ones_in_bf16(embedder, template, monkeypatch):
    """TorchScript's traced and frozen tower (``--frozen-tower``): fp32 the same vectors to rounding, bf16 its own
    (traced in fp32, run under autocast), each kind in a cache of its own. Traced under bf16 autocast, the folded
    weights would be rounded to bf16 (a drift tiny-test, with no batch norms, cannot show): tracing checks it is not."""
    import torch

    trace = torch.jit.trace

    def fp32_trace(*a, **k):
        assert not torch.is_autocast_cpu_enabled()
        return trace(*a, **k)

    monkeypatch.setattr(torch.jit, "trace", fp32_trace)
    monkeypatch.setattr(embedder, "_frozen", {})
    imgs = [load_image(p) for p in sorted(template.parent.glob("logo*.png"))[:4]]
    batch = np.stack([embedder.image_input(im) for im in imgs])
    for precision in ("fp32", "bf16"):
        eager, frozen = embedder.embed_inputs(batch, precision), embedder.embed_inputs(batch, precision + "+frozen")
        again = embedder.embed_inputs(batch, f"{precision}+frozen")
        assert frozen.dtype == np.float32 and np.array_equal(frozen, again)
        if precision == "fp32":
            np.testing.assert_allclose(frozen, eager, atol=1e-5)
        else:
            fp32 = embedder.embed_inputs(batch, "fp32")
            assert np.sum(fp32 * frozen, axis=1).min() > 0.99
        assert embedder.vectors_id(precision + "+frozen") not in {embedder.vectors_id("fp32"),
                                                                   embedder.vectors_id("bf16")}
    assert resolve_precision("auto+frozen", "cpu") == ("bf16" if cpu_native_bf16() else "fp32") + "+frozen"


def test_a_frozen_build_records_it_and_adds_images_alike(embedder, template, tmp_path, monkeypatch):
    home = _home(template, tmp_path / "home")
    rep = _build(home, embedder, precision="fp32+frozen", with_local=False)
    assert rep.embedded == N_IMAGES * VARIANTS
    assert IndexStore.load_meta_only(home.index_dir)["model"]["precision"] == "fp32+frozen"
    assert f"{embedder.model_id}_fp32_frozen.sqlite" in {p.name for p in (home.cache_dir / "embeddings").glob("*")}
    used = []
    embed = embedder.embed_inputs
    monkeypatch.setattr(embedder, "embed_inputs", lambda batch, precision: used.append(precision) or
                        embed(batch, precision))
    extra = tmp_path / "extra.png"
    text_logo("ZYXW", seed=99).save(extra)
    with Catalog.open(home) as cat:
        image = cat.add_image("band", cat.add_band("Extra").id, extra)
        store, added = add_images(home, cat, embedder, [image])
    assert added.embedded == VARIANTS and set(used) == {"fp32+frozen"}


def test_a_tower_torchscript_cannot_trace_says_what_to_do(embedder, monkeypatch):
    import torch

    from logoid.core.errors import ModelError

    def fail(*a, **k):
        raise RuntimeError("Tracer cannot infer type of output")

    monkeypatch.setattr(torch.jit, "trace", fail)
    monkeypatch.setattr(embedder, "_frozen", {})  # nothing traced before by another test
    batch = np.zeros((2, embedder.input_side, embedder.input_side, 3), np.float32)
    with pytest.raises(ModelError, match="cannot be frozen") as err:
        embedder.embed_inputs(batch, "fp32+frozen")
    assert "--eager-tower" in err.value.hint


def test_a_new_index_is_built_in_auto_precision_with_the_frozen_tower_and_a_home_keeps_its_own(template, tmp_path):
    """build-index's default: the home's index's precision and tower (every vector from the cache), else auto with
    the frozen tower on a CPU; a flag that changes them says before it starts that everything is embedded again."""
    home = _home(template, tmp_path / "home")
    new = resolve_precision("auto+frozen", "cpu")
    assert new == ("bf16" if cpu_native_bf16() else "fp32") + "+frozen"

    def build(*flags: str):
        res = CliRunner().invoke(cli, ["--home", str(home.root), "build-index", "--model", "tiny-test", "--variants",
                                       str(VARIANTS), "--no-local", "--no-names", "--workers", "1", *flags])
        assert res.exit_code == 0, res.output
        return res

    assert "embedded again" not in build().output
    assert IndexStore.load_meta_only(home.index_dir)["model"]["precision"] == new
    again = build("--json")
    assert (json.loads(again.stdout)["embedded"], json.loads(again.stdout)["cached"]) == (0, N_IMAGES * VARIANTS)
    eager = build("--eager-tower")
    assert f"built in {new}" in eager.output and "leave out --eager-tower to keep it" in eager.output
    assert IndexStore.load_meta_only(home.index_dir)["model"]["precision"] == new.removesuffix("+frozen")
    # from now on the home keeps the eager tower, and --precision alone keeps the tower too
    assert build_precision(home, "cpu") == new.removesuffix("+frozen")
    assert build_precision(home, "cpu", "fp32") == "fp32"
    assert build_precision(home, "cpu", None, True) == new
    # an index older than the record was built in fp32, eager: kept; one in fp16 (a GPU's) gets the default on a CPU
    meta_path = next(p for p in home.index_dir.glob("*.json") if "model" in json.loads(p.read_text()))
    for recorded, kept in ((None, "fp32"), ("fp16", "auto+frozen"), ("fp16+frozen", "auto+frozen")):
        meta = json.loads(meta_path.read_text())
        meta["model"].pop("precision", None)
        if recorded:
            meta["model"]["precision"] = recorded
        meta_path.write_text(json.dumps(meta))
        assert build_precision(home, "cpu") == kept
    assert build_precision(Home(tmp_path / "empty"), "cpu") == "auto+frozen"
    assert build_precision(Home(tmp_path / "empty"), "cuda") == "auto"
    # the fp16 home on a CPU gets the default tower, so it is probed; one whose precision runs here is not
    assert frozen_by_default(home, "cpu") and not frozen_by_default(home, "cpu", False)
    assert frozen_by_default(Home(tmp_path / "empty"), "cpu") and not frozen_by_default(Home(tmp_path / "e"), "cuda")
    warned = build("--precision", "fp32")  # the fp16 index cannot be kept on a CPU: the warning says why
    assert "built in fp16+frozen" in warned.output and "fp16+frozen does not run on cpu" in warned.output
    assert not frozen_by_default(home, "cpu")  # its fp32 runs here: kept, never probed


def test_a_tower_that_does_not_trace_builds_eager_by_default_and_fails_when_asked_frozen(template, tmp_path,
                                                                                         monkeypatch):
    """The frozen tower is the default for a new index, not a requirement: a model TorchScript cannot trace builds
    with the eager tower and says so; asked for with --frozen-tower, it stops with the fix."""
    import torch

    def fail(*a, **k):
        raise RuntimeError("Tracer cannot infer type of output\n(a page of TorchScript's reasons)")

    monkeypatch.setattr(torch.jit, "trace", fail)
    args = ["build-index", "--model", "tiny-test", "--variants", str(VARIANTS), "--no-local", "--no-names",
            "--workers", "1"]
    home = _home(template, tmp_path / "home")
    res = CliRunner().invoke(cli, ["--home", str(home.root), *args])
    assert res.exit_code == 0, res.output
    assert "cannot be frozen by TorchScript: Tracer cannot infer type of output; building with the eager tower " \
        "instead (--eager-tower skips this check)" in res.output and "a page" not in res.output
    assert IndexStore.load_meta_only(home.index_dir)["model"]["precision"] == resolve_precision("auto", "cpu")
    with Catalog.open(home) as cat:  # the Python API alike, its warning in the report
        fresh = Home(tmp_path / "api")
        rep = build_index(fresh, cat, create_embedder("tiny-test"), BuildOptions(augment=AUG, with_names=False,
                                                                                 with_local=False))
    assert any("building with the eager tower" in w for w in rep.warnings)
    asked = CliRunner().invoke(cli, ["--home", str(_home(template, tmp_path / "asked").root), *args, "--frozen-tower"])
    assert asked.exit_code != 0 and "cannot be frozen" in asked.output and "--eager-tower" in asked.output
    assert "Traceback" not in asked.output


def test_a_default_build_traces_the_frozen_tower_once(template, tmp_path, monkeypatch):
    """The check that the tower traces (a new index's default) traces it at the embedding stage's input shape: the
    build reuses it, whichever way it is called."""
    import torch

    calls = []
    trace = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: calls.append(tuple(a[1].shape)) or trace(*a, **k))
    home = _home(template, tmp_path / "cli")
    res = CliRunner().invoke(cli, ["--home", str(home.root), "build-index", "--model", "tiny-test", "--variants",
                                   str(VARIANTS), "--no-local", "--no-names", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert len(calls) == 1 and calls[0][0] == embedding_stage.CPU_BATCH
    with Catalog.open(home) as cat:
        build_index(Home(tmp_path / "api"), cat, create_embedder("tiny-test"),
                    BuildOptions(augment=AUG, with_names=False, with_local=False))
    assert len(calls) == 2


# ---- embedding stage ------------------------------------------------------------------------------------------------

def test_model_inputs_are_the_preprocessed_floats(embedder, template):
    """image_input (numpy, no torch) gives the very floats preprocess gives, for arrays and PIL images alike."""
    img = load_image(sorted(template.parent.glob("logo*.png"))[0])
    arrays = variant_arrays(img, "bw", AugmentConfig(n_variants=3), "k")
    others = [img.convert("L"), img.convert("P"), img.convert("RGBA"), img.resize((20, 50))]
    side = embedder.input_side
    every_byte = ((np.arange(side * side * 3).reshape(side, side, 3) * 7 + np.arange(3)) % 256).astype(np.uint8)
    assert all(len(np.unique(every_byte[..., c])) == 256 for c in range(3))  # each value in each channel
    for im in [*arrays, *make_variants(img, "bw", AugmentConfig(n_variants=3), "k"), *others, every_byte]:
        want = embedder.preprocess(im if isinstance(im, Image.Image) else Image.fromarray(im)).permute(1, 2, 0).numpy()
        assert np.array_equal(embedder.image_input(im), want)
    strided = np.zeros((side, side, 6), np.float32)[..., ::2]  # an ``out`` OpenCV cannot write in place
    assert np.array_equal(embedder.image_input(every_byte, out=strided), embedder.image_input(every_byte))


def test_variant_arrays_are_make_variants_and_any_subset_of_them():
    img = text_logo("RAZOR", seed=3)
    cfg = AugmentConfig(n_variants=6, size=64)
    every = variant_arrays(img, "color", cfg, "k")
    assert [np.asarray(v).tolist() for v in make_variants(img, "color", cfg, "k")] == [a.tolist() for a in every]
    some = variant_arrays(img, "color", cfg, "k", indices=[4, 0, 2])
    assert [a.tolist() for a in some] == [every[i].tolist() for i in (4, 0, 2)]


def test_an_images_vectors_do_not_depend_on_what_shares_its_batch(embedder, template, tmp_path):
    """Batches span references and are always full (the last one padded): image 3's vectors are the same embedded
    among all ten or alone, as a resumed build embeds it."""
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    whole = embedding_stage.embed_stage(refs, embedder, tmp_path / "a", AUG, BuildReport(), batch_size=4)
    alone = embedding_stage.embed_stage(refs[3:4], embedder, tmp_path / "b", AUG, BuildReport(), batch_size=4)
    assert np.array_equal(whole.ids[6:8], alone.ids)
    assert np.array_equal(whole.vectors[6:8], alone.vectors)
    direct = embedder.embed_images(make_variants(load_image(refs[3].path), refs[3].scheme, AUG, refs[3].sha256))
    np.testing.assert_allclose(alone.vectors, direct, atol=1e-5)  # the same images through embed_images


def test_the_stage_counts_cached_and_fresh_variants_and_skips_an_unreadable_image(embedder, template, tmp_path):
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    rep = BuildReport()
    embedding_stage.embed_stage(refs[:4], embedder, tmp_path, AUG, rep)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    bad = dataclasses.replace(refs[5], id=999, sha256="0" * 64, path=broken)
    errors = []
    rep = BuildReport()
    got = embedding_stage.embed_stage([*refs[:6], bad], embedder, tmp_path, AUG, rep,
                                      on_error=lambda ref, e: errors.append(ref.path))
    assert (rep.cached, rep.embedded) == (4 * VARIANTS, 2 * VARIANTS)
    assert [r.id for r in got.refs] == [r.id for r in refs[:6]] and errors == [broken]
    assert got.vectors.shape == (6 * VARIANTS, embedder.dim)


def _my_chunks() -> list:
    return list(embedding_stage._SHM_DIR.glob(embedding_stage._chunk_name(0)[:-1] + "*"))


def _stage(embedder, refs, cache, **kw):
    rep, errors = BuildReport(), []
    got = embedding_stage.embed_stage(refs, embedder, cache, kw.pop("aug", AUG), rep, batch_size=4,
                                      on_error=lambda ref, e: errors.append(ref.path), **kw)
    return got, rep, errors


@pytest.mark.parametrize("overlap", [False, True])
def test_augmenting_processes_give_the_reader_threads_vectors(embedder, template, tmp_path, monkeypatch, overlap):
    """Worker processes augment into shared memory a chunk at a time (here 8 rows, so references straddle chunks;
    on a GPU the next chunk is augmented while the model runs): the very vectors the reader thread gives."""
    pools = []
    start = embedding_stage._start_pool
    monkeypatch.setattr(embedding_stage, "_start_pool", lambda n: pools.append(n) or start(n))
    monkeypatch.setattr(embedding_stage, "CHUNK_ROWS", 6)  # rounded up to two batches of 4
    monkeypatch.setattr(embedding_stage, "_overlap", lambda device: overlap)
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    aug = AugmentConfig(n_variants=5)
    thread, _, _ = _stage(embedder, refs, tmp_path / "thread", aug=aug, workers=1)
    assert pools == []
    procs, rep, _ = _stage(embedder, refs, tmp_path / "procs", aug=aug, workers=2)
    assert pools == [2] and (rep.embedded, rep.cached) == (N_IMAGES * 5, 0)
    assert np.array_equal(procs.ids, thread.ids) and np.array_equal(procs.vectors, thread.vectors)
    assert not _my_chunks()  # all unlinked


def _record_tasks(monkeypatch) -> list:
    """The augmenting pool's tasks as they are sent, (shared chunk, parts) each; the real pool runs them."""
    tasks: list = []
    start = embedding_stage._start_pool

    class Recording:
        def __init__(self, n):
            self.pool = start(n)

        def submit(self, fn, shm_name, shape, parts, *rest):
            tasks.append((shm_name, parts))
            return self.pool.submit(fn, shm_name, shape, parts, *rest)

        def shutdown(self, **k):
            self.pool.shutdown(**k)

    monkeypatch.setattr(embedding_stage, "_start_pool", Recording)
    return tasks


def test_each_process_gets_one_run_of_a_chunks_rows(embedder, template, tmp_path, monkeypatch):
    """A chunk's rows go to the processes as one task each, runs of consecutive rows of (near) equal length: a
    reference is decoded once in a task, and twice in a chunk only where it straddles two runs."""
    tasks = _record_tasks(monkeypatch)
    monkeypatch.setattr(embedding_stage, "CHUNK_ROWS", 16)
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    aug = AugmentConfig(n_variants=5)
    got, _, _ = _stage(embedder, refs, tmp_path / "procs", aug=aug, workers=3)
    runs = []  # per task: its rows in order, and the references of its parts
    for _, parts in tasks:
        rows = [r for part in parts for r in part[0]]
        shas = [part[3] for part in parts]
        assert rows == list(range(rows[0], rows[0] + len(rows))) and len(set(shas)) == len(shas)
        runs.append(rows)
    # 50 variants in chunks of 16 rows: three tasks of 5, 5, 6 rows per full chunk, then 2 rows as two tasks of 1
    assert [len(r) for r in runs] == [5, 5, 6] * 3 + [1, 1]
    assert sum(len(p[4]) for _, parts in tasks for p in parts) == N_IMAGES * 5
    want, _, _ = _stage(embedder, refs, tmp_path / "thread", aug=aug, workers=1)
    assert np.array_equal(got.vectors, want.vectors)


@pytest.mark.parametrize("overlap", [False, True])
def test_augmenting_processes_skip_an_unreadable_image_and_keep_the_rest(embedder, template, tmp_path, monkeypatch,
                                                                         overlap):
    """The unreadable image's 5 variants straddle two chunks of 8 rows (15 rows before it): the first chunk's task
    tells, the rest of its variants are never augmented on a CPU (on CUDA the next chunk was sent before the first's
    results were read), and the other images' vectors are the reader thread's."""
    tasks = _record_tasks(monkeypatch)
    monkeypatch.setattr(embedding_stage, "CHUNK_ROWS", 8)
    monkeypatch.setattr(embedding_stage, "_overlap", lambda device: overlap)
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    bad = dataclasses.replace(refs[3], id=999, sha256="0" * 64, path=broken)
    mixed = [*refs[:3], bad, *refs[3:]]
    aug = AugmentConfig(n_variants=5)
    got, rep, errors = _stage(embedder, mixed, tmp_path / "procs", aug=aug, workers=2)
    assert errors == [broken] and [r.id for r in got.refs] == [r.id for r in refs]
    assert rep.embedded == N_IMAGES * 5
    tried = [p[0] for _, parts in tasks for p in parts if p[3] == bad.sha256]  # its rows in each chunk it was sent in
    assert tried == ([[7], [0, 1, 2, 3]] if overlap else [[7]])
    want, _, _ = _stage(embedder, refs, tmp_path / "thread", aug=aug, workers=1)
    assert np.array_equal(got.vectors, want.vectors) and np.array_equal(got.ids, want.ids)
    assert not _my_chunks()


@pytest.mark.parametrize("when", ["result", "submit"])
def test_a_dead_augmenting_process_stops_the_stage_with_what_to_do(embedder, template, tmp_path, monkeypatch, when):
    """Whether the pool tells when the chunk's results are read or already when a chunk is sent (on CUDA a process
    can die while the model runs the chunk before)."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from logoid.core.errors import LogoidError

    class Broken:
        def submit(self, *a, **k):
            if when == "submit":
                raise BrokenProcessPool("killed")
            f = Future()
            f.set_exception(BrokenProcessPool("killed"))
            return f

        def shutdown(self, **k):
            pass

    monkeypatch.setattr(embedding_stage, "_start_pool", lambda n: Broken())
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    with pytest.raises(LogoidError, match="died") as err:
        _stage(embedder, refs, tmp_path, workers=2)
    assert "--workers 1" in err.value.hint
    assert not _my_chunks()  # the shared memory is gone with the stage


def test_without_shared_memory_the_reader_thread_augments(embedder, template, tmp_path, monkeypatch):
    def no_shm(*a, **k):
        raise OSError(28, "No space left on device")

    pools = []
    monkeypatch.setattr(embedding_stage, "SharedMemory", no_shm)
    monkeypatch.setattr(embedding_stage, "_start_pool", lambda n: pools.append(n))
    with Catalog.open(Home(template)) as cat:
        refs = cat.images()
    got, rep, errors = _stage(embedder, refs, tmp_path / "a", workers=2)
    assert (pools, errors, rep.embedded) == ([], [], N_IMAGES * VARIANTS)
    want, _, _ = _stage(embedder, refs, tmp_path / "b", workers=1)
    assert np.array_equal(got.vectors, want.vectors)


def test_a_stage_removes_the_shared_chunks_of_a_killed_build(tmp_path):
    """Only a dead process's chunks, and only in this pid namespace (a container sharing /dev/shm sees other
    pids)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(done.stdout), os.getppid()
    ns = embedding_stage._pid_namespace()
    names = {pid: f"{embedding_stage.SHM_PREFIX}{ns}-{pid}-0" for pid in (dead, alive, os.getpid())}
    foreign = f"{embedding_stage.SHM_PREFIX}1{ns}-{dead}-0"  # another namespace's, whose pids mean nothing here
    for name in [*names.values(), foreign, "other"]:
        (tmp_path / name).write_bytes(b"x")
    assert embedding_stage.remove_stale_chunks(tmp_path) == [names[dead]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["other", foreign, names[alive], names[os.getpid()]])


# ---- local features -------------------------------------------------------------------------------------------------

def test_parallel_features_give_the_same_index_as_a_serial_build(embedder, template, tmp_path, monkeypatch):
    pools = []
    start = feature_stage._start_pool
    monkeypatch.setattr(feature_stage, "_start_pool", lambda n: pools.append(n) or start(n))
    serial = _home(template, tmp_path / "serial")
    parallel = _home(template, tmp_path / "parallel")
    one = _build(serial, embedder, workers=1, precision="fp32")
    assert pools == []
    two = _build(parallel, embedder, workers=2, precision="fp32")
    assert pools == [2]  # the workers did the extracting
    assert one.features_extracted == two.features_extracted == N_IMAGES
    assert (one.warnings, one.skipped) == (two.warnings, two.skipped)
    cfg = LocalConfig().extract
    files = sorted(p.relative_to(serial.cache_dir) for p in (serial.cache_dir / "features").rglob("*.npz"))
    # the normal variant only: the new index finds inverted prints by flipping photo descriptors
    assert len(files) == N_IMAGES and all(f.name.endswith("-0.npz") for f in files)
    assert files == sorted(p.relative_to(parallel.cache_dir) for p in (parallel.cache_dir / "features").rglob("*.npz"))
    for f in files:  # the same keypoints and descriptors, byte for byte
        assert (serial.cache_dir / f).read_bytes() == (parallel.cache_dir / f).read_bytes(), f
    assert _index_files(serial) == _index_files(parallel)
    assert FeatureCache(serial.cache_dir / "features").keypoint_count(
        Catalog.open(serial).images()[0].sha256, cfg, 1) is not None


@pytest.mark.parametrize("flips", [True, False])
def test_an_added_image_gets_the_variants_its_index_stores(embedder, template, tmp_path, flips):
    """A new descriptor index keeps a reference's normal variant only (it flips photo descriptors to find inverted
    prints), so the inverted one is never extracted; an index built before the flip stores both, and an image added
    to it gets both, as before."""
    import shutil as sh

    from logoid.build.steps import add_images
    from logoid.engine.local import extract_reference
    from logoid.index.descriptor_structure import DescriptorConfig
    from logoid.index.descriptors import DescriptorIndex

    home = _home(template, tmp_path / "home")
    _build(home, embedder, workers=1, precision="fp32")
    cfg = LocalConfig().extract
    store = IndexStore.load(home.index_dir)
    with Catalog.open(home) as cat:
        refs = cat.images()
        if not flips:  # the index as a build before the flip made it: both variants of every reference stored
            store.descriptors = DescriptorIndex.build(
                ((r.id, extract_reference(load_image(r.path), cfg, 2)) for r in refs[:-1]),
                DescriptorConfig(ivf=False, flip_inverted=False), feature_config=cfg)
        else:
            store.descriptors.remove([refs[-1].id])
        assert store.descriptors.flip_inverted == flips
        sh.rmtree(home.cache_dir / "features")
        before = store.descriptors.ntotal
        store, report = add_images(home, cat, embedder, [refs[-1]], store=store)
    files = sorted(p.name for p in (home.cache_dir / "features").rglob("*.npz"))
    want = [f"{refs[-1].sha256}-0.npz"] + ([] if flips else [f"{refs[-1].sha256}-1.npz"])
    assert (files, report.features_extracted) == (want, 1)
    feats = FeatureCache(home.cache_dir / "features").lookup_reference(refs[-1].sha256, cfg, 1 if flips else 2)
    assert store.descriptors.ntotal - before == sum(len(f) for f in feats)
    assert store.descriptors.contains(refs[-1].id)


def test_the_descriptor_index_reads_the_features_from_the_cache(embedder, template, tmp_path, monkeypatch):
    """Nothing holds every reference's features: the index gets an iterable that reads them from the cache each
    time it is walked."""
    from logoid.index.descriptors import DescriptorIndex

    given = []
    build = DescriptorIndex.build.__func__
    monkeypatch.setattr(DescriptorIndex, "build",
                        classmethod(lambda cls, items, **kw: given.append(items) or build(cls, items, **kw)))
    home = _home(template, tmp_path / "home")
    _build(home, embedder, workers=1, precision="fp32")
    (items,) = given
    assert isinstance(items, feature_stage.CachedFeatures) and len(items) == N_IMAGES
    first, second = list(items), list(items)
    assert [i for i, _ in first] == [r.id for r in Catalog.open(home).images()]
    assert all(len(a[1]) == 1 and a[1][0].desc is not b[1][0].desc for a, b in zip(first, second, strict=True))
    cache = FeatureCache(home.cache_dir / "features")
    ref = Catalog.open(home).images()[2]
    want = cache.lookup_reference(ref.sha256, LocalConfig().extract, 1)  # the normal variant: the index flips
    assert np.array_equal(first[2][1][0].desc, want[0].desc) and np.array_equal(first[2][1][0].xy, want[0].xy)


def _killed_parallel_build(home: Home, step: str) -> None:
    env = {**os.environ, "LOGOID_FAULT": f"{step}@{KILL_AT}", "LOGOID_HOME": str(home.root)}
    res = subprocess.run([sys.executable, "-m", "logoid", "build-index", "--model", "tiny-test", "--variants",
                          str(VARIANTS), "--no-names", "--workers", "2", "--precision", "fp32"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -9, res.stderr  # SIGKILLed at the fault point


def _cli_build(home: Home, *args: str) -> dict:
    res = CliRunner().invoke(cli, ["--home", str(home.root), "build-index", "--model", "tiny-test", "--variants",
                                   str(VARIANTS), "--no-names", "--precision", "fp32", *args, "--json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_a_killed_parallel_build_resumes_with_nothing_lost_or_redone(embedder, template, tmp_path):
    whole = _home(template, tmp_path / "whole")
    _cli_build(whole, "--workers", "1")
    home = _home(template, tmp_path / "killed")
    _killed_parallel_build(home, "build-image-features")
    assert not IndexStore.exists(home.index_dir)
    # The workers ran ahead of the kill point: whatever they finished is whole on disk (each file renamed into
    # place), and it is exactly what the resumed build finds; the rest it extracts, each image once.
    cfg = LocalConfig().extract
    cache = FeatureCache(home.cache_dir / "features")
    with Catalog.open(home) as cat:
        done = sum(cache.keypoint_count(r.sha256, cfg, 1) is not None for r in cat.images())
    assert KILL_AT <= done <= N_IMAGES
    report = _cli_build(home, "--workers", "2")
    assert (report["embedded"], report["cached"]) == (0, N_IMAGES * VARIANTS)
    assert (report["features_cached"], report["features_extracted"]) == (done, N_IMAGES - done)
    assert (report["images"], report["skipped"]) == (N_IMAGES, [])
    assert _index_files(home) == _index_files(whole)
    assert not [p for p in (home.cache_dir / "features").rglob(".*.tmp")]


def test_a_build_killed_while_embedding_with_processes_resumes_with_nothing_lost_or_redone(embedder, template,
                                                                                            tmp_path):
    """Killed (SIGKILL) after the KILL_AT-th image's vectors were committed, with worker processes augmenting (on a
    CPU they wait while the model runs, as here): the rerun embeds only the rest, and its index is the one a build
    with the reader thread (--workers 1) writes."""
    whole = _home(template, tmp_path / "whole")
    _cli_build(whole, "--workers", "1")
    home = _home(template, tmp_path / "killed")
    _killed_parallel_build(home, "build-image-embedded")
    assert not IndexStore.exists(home.index_dir)
    report = _cli_build(home, "--workers", "2")
    assert (report["embedded"], report["cached"]) == ((N_IMAGES - KILL_AT) * VARIANTS, KILL_AT * VARIANTS)
    assert (report["features_extracted"], report["images"], report["skipped"]) == (N_IMAGES, N_IMAGES, [])
    assert _index_files(home) == _index_files(whole)
    mine = f"{embedding_stage.SHM_PREFIX}{embedding_stage._pid_namespace()}-"
    stale = [p for p in embedding_stage._SHM_DIR.glob(mine + "*")
             if not embedding_stage._alive(int(p.name[len(mine):].split("-")[0]))]
    assert stale == []  # the killed build's shared chunks are gone (its resource tracker's or the rerun's doing)


def test_a_home_built_with_float64_light_maps_keeps_them(embedder, template, tmp_path):
    """An index built before float32 light maps (its sidecar's augment config has no ``bw_float64``) is rebuilt with
    float64 ones, every vector from the cache, by the CLI and the Python API alike; a new home gets float32."""
    home = _home(template, tmp_path / "old")
    with Catalog.open(home) as cat:
        build_index(home, cat, embedder, BuildOptions(augment=AugmentConfig(n_variants=VARIANTS, bw_float64=True),
                                                      with_names=False, with_local=False, precision="fp32"))
    meta_path = next(p for p in home.index_dir.glob("*.json") if "augment" in json.loads(p.read_text()))
    meta = json.loads(meta_path.read_text())
    del meta["augment"]["bw_float64"]  # as the sidecar of an index built before
    meta_path.write_text(json.dumps(meta))
    again = _cli_build(home, "--workers", "1", "--no-local")
    assert (again["embedded"], again["cached"]) == (0, N_IMAGES * VARIANTS)
    assert IndexStore.load_meta_only(home.index_dir)["augment"]["bw_float64"] is True
    with Catalog.open(home) as cat:
        build_index(home, cat, embedder, BuildOptions(with_names=False, with_local=False))
    assert IndexStore.load_meta_only(home.index_dir)["augment"]["bw_float64"] is True
    new = _home(template, tmp_path / "new")
    _cli_build(new, "--workers", "1", "--no-local")
    assert IndexStore.load_meta_only(new.index_dir)["augment"]["bw_float64"] is False


def test_a_home_keeps_the_variant_size_it_was_built_with(template, tmp_path):
    """Variants are made at 224 px now (320 before): a home built at 320 is rebuilt at 320, every vector from the cache;
    --augment-size chooses, and a new home gets 224."""
    old = _home(template, tmp_path / "old")
    first = _cli_build(old, "--workers", "1", "--augment-size", "320")
    assert first["embedded"] == N_IMAGES * VARIANTS
    again = _cli_build(old, "--workers", "1")
    assert (again["embedded"], again["cached"]) == (0, N_IMAGES * VARIANTS)
    assert IndexStore.load_meta_only(old.index_dir)["augment"]["size"] == 320
    with Catalog.open(old) as cat:  # the Python API keeps it too
        build_index(old, cat, create_embedder("tiny-test"), BuildOptions(with_names=False, with_local=False))
    assert IndexStore.load_meta_only(old.index_dir)["augment"]["size"] == 320
    moved = _cli_build(old, "--workers", "1", "--augment-size", "224")
    assert moved["embedded"] == N_IMAGES * VARIANTS
    new = _home(template, tmp_path / "new")
    _cli_build(new, "--workers", "1")
    assert IndexStore.load_meta_only(new.index_dir)["augment"]["size"] == AugmentConfig().size == 224


def test_dropping_references_moves_the_kept_rows_up_in_place():
    vectors = np.arange(24, dtype=np.float32).reshape(6, 4)
    ids = np.arange(6, dtype=np.int64)
    got = embedding_stage.Embedded(["a", "b", "c"], vectors, ids, per_ref=2).keep([False, True, True])
    assert got.refs == ["b", "c"] and np.shares_memory(got.vectors, vectors)
    assert got.vectors.tolist() == np.arange(8, 24).reshape(4, 4).tolist() and got.ids.tolist() == [2, 3, 4, 5]


def test_gallery_calibration_groups_rows_by_entity_as_before():
    """Entities' rows handed over as views of the vectors where they are one run: the same calibration as the
    rows gathered one by one."""
    from types import SimpleNamespace

    from logoid.build.steps import gallery_calibration
    from logoid.index.vectors import decode_ids, encode_ids
    from logoid.scoring.rules import leave_one_out_impostors

    rng = np.random.default_rng(0)
    images = [SimpleNamespace(id=i, entity_type="band", entity_id=e) for i, e in enumerate([1, 2, 1, 3, 4, 4], 1)]
    ids = encode_ids(np.repeat([i.id for i in images], 5), np.tile(np.arange(5), len(images)))
    centres = rng.normal(size=(5, 16)).astype(np.float32)
    vectors = centres[np.repeat([i.entity_id for i in images], 5)] + rng.normal(0, 0.3, (30, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    got = gallery_calibration(SimpleNamespace(images=lambda: images), vectors, ids)
    owner = {i.id: f"band:{i.entity_id}" for i in images}
    groups: dict[str, list[int]] = {}
    for row, iid in enumerate(decode_ids(ids)[0]):
        groups.setdefault(owner[int(iid)], []).append(row)
    want = leave_one_out_impostors({k: vectors[v] for k, v in groups.items()}, objective="balanced_accuracy")
    assert got["calibration"]["global"] == want.to_dict()
