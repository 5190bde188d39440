"""The Milvus backend (Milvus Lite in a temp file) against the FAISS one: same top-k, add/remove, commit, CLI."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from logoid.core.errors import ConfigError
from logoid.index.milvus import MilvusConfig, MilvusUnavailableError, MilvusVectorIndex, import_pymilvus
from logoid.index.store import SIDECAR, IndexStore
from logoid.index.vectors import VARIANT_SLOTS, VectorIndex, encode_ids

HAVE_MILVUS = all(importlib.util.find_spec(m) is not None for m in ("pymilvus", "milvus_lite"))
needs_milvus = pytest.mark.skipif(not HAVE_MILVUS, reason="pymilvus / milvus-lite not installed "
                                                          "(pip install 'logoid[milvus]')")

N_IMAGES, VARIANTS, DIM = 120, 6, 48


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data():
    """Clustered vectors (an image's variants lie near one centre) with the image*1024+variant ids."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(N_IMAGES, DIM))
    x = _unit(np.repeat(centres, VARIANTS, axis=0) + 0.4 * rng.normal(size=(N_IMAGES * VARIANTS, DIM)))
    ids = encode_ids(np.repeat(np.arange(N_IMAGES) + 1, VARIANTS), np.tile(np.arange(VARIANTS), N_IMAGES))
    queries = _unit(centres[:25] + 0.5 * rng.normal(size=(25, DIM)))
    return x, ids, queries


@pytest.fixture
def lite(tmp_path):
    return MilvusConfig(uri=str(tmp_path / "milvus.db"))


def _same(a, b, tol=1e-5):
    (sa, ia), (sb, ib) = a, b
    assert np.array_equal(ia, ib)
    assert np.abs(sa - sb).max() < tol


@needs_milvus
def test_same_topk_as_faiss(data, lite):
    x, ids, q = data
    faiss_idx = VectorIndex.build(x, ids)
    mil = MilvusVectorIndex.build(x, ids, lite, lite.collection_for(1))
    assert mil.ntotal == faiss_idx.ntotal == len(ids)
    for k in (1, 10, 100):
        _same(mil.search(q, k), faiss_idx.search(q, k))
    assert np.array_equal(mil.ids(), np.sort(faiss_idx.ids()))
    assert np.allclose(mil.reconstruct_image(5), faiss_idx.reconstruct_image(5), atol=1e-6)


@needs_milvus
def test_remove_and_readd_round_trip(data, lite):
    x, ids, q = data
    faiss_idx = VectorIndex.build(x, ids)
    mil = MilvusVectorIndex.build(x, ids, lite, lite.collection_for(1))
    before = mil.search(q, 30)
    gone = [3, 4]  # images whose variants are the nearest neighbours of queries 2 and 3
    assert mil.remove_images(gone) == faiss_idx.remove_images(gone) == 2 * VARIANTS
    assert mil.ntotal == len(ids) - 2 * VARIANTS and mil.reconstruct_image(3).shape == (0, DIM)
    kept = ids[(ids // VARIANT_SLOTS != 3) & (ids // VARIANT_SLOTS != 4)]
    assert np.array_equal(mil.ids(), np.sort(kept))  # exactly those variants went, nothing else
    after = mil.search(q, 30)
    _same(after, faiss_idx.search(q, 30))
    assert not np.isin(after[1], ids[np.isin(ids // VARIANT_SLOTS, gone)]).any()
    back = np.isin(ids // VARIANT_SLOTS, gone)
    mil.add(x[back], ids[back])
    _same(mil.search(q, 30), before)  # staged rows merged with Milvus' answer
    mil.apply_pending()
    assert not mil.dirty and mil.ntotal == len(ids)
    _same(mil.search(q, 30), before)  # and the same once written into the collection


@needs_milvus
def test_readd_replaces_instead_of_duplicating(data, lite):
    x, ids, q = data
    mil = MilvusVectorIndex.build(x, ids, lite, lite.collection_for(1))
    mil.add(x[:VARIANTS][::-1].copy(), ids[:VARIANTS])  # same ids, other vectors
    assert mil.ntotal == len(ids)
    mil.apply_pending()
    assert mil.ntotal == len(ids)
    assert np.allclose(mil.reconstruct_image(1), x[:VARIANTS][::-1], atol=1e-6)


@needs_milvus
def test_store_commit_is_atomic_through_the_pending_log(data, tmp_path):
    x, ids, q = data
    root = tmp_path / "index"
    cfg = MilvusConfig()  # default: milvus.db inside the home (root's parent)
    store = IndexStore(root=root)
    store.vectors = MilvusVectorIndex.build(x, ids, cfg, cfg.collection_for(1), home=tmp_path)
    store.commit()
    assert (tmp_path / "milvus.db").exists()
    meta = json.loads((root / SIDECAR).read_text())
    assert meta["backend"]["kind"] == "milvus" and meta["backend"]["uri"] == "milvus.db"
    assert "vectors" not in meta["files"]
    expect = store.vectors.search(q, 20)

    # A commit that dies after its sidecar rename but before applying its log: readers still see it.
    store = IndexStore.load(root)
    store.vectors.remove_images([1, 2])
    staged = store.vectors.search(q, 20)
    pending = root / "milvus-pending-crash.npz"
    store.vectors.save_pending(pending)
    meta["files"]["milvus_pending"] = pending.name
    (root / SIDECAR).write_text(json.dumps(meta))
    reader = IndexStore.load(root)
    assert reader.vectors.ntotal == len(ids) - 2 * VARIANTS
    _same(reader.vectors.search(q, 20), staged)

    # The next commit applies it, drops the log, and the collection alone now answers the same.
    reader.vectors.add(x[:2 * VARIANTS], ids[:2 * VARIANTS])
    reader.commit()
    meta = json.loads((root / SIDECAR).read_text())
    assert "milvus_pending" not in meta["files"] and not pending.exists()
    fresh = IndexStore.load(root)
    assert not fresh.vectors.dirty
    _same(fresh.vectors.search(q, 20), expect)


@needs_milvus
def test_rebuild_drops_old_generations_and_switching_to_faiss_drops_all(data, tmp_path):
    from logoid.index.milvus import connect

    x, ids, _ = data
    root = tmp_path / "index"
    cfg = MilvusConfig()
    for gen in (1, 2):
        store = IndexStore(root=root, meta=IndexStore.load_meta_only(root) if gen > 1 else {})
        store.vectors = MilvusVectorIndex.build(x, ids, cfg, cfg.collection_for(gen), home=tmp_path)
        store.commit()
    client = connect(str(tmp_path / "milvus.db"))
    assert client.list_collections() == [f"{cfg.prefix}_g00002"]
    store = IndexStore(root=root, meta=IndexStore.load_meta_only(root))
    store.vectors = VectorIndex.build(x, ids)
    store.commit()
    assert client.list_collections() == []
    assert IndexStore.load(root).backend == "faiss"


def test_sidecar_without_backend_is_faiss(data, tmp_path):
    x, ids, q = data
    store = IndexStore(root=tmp_path)
    store.vectors = VectorIndex.build(x, ids)
    store.commit()
    meta = json.loads((tmp_path / SIDECAR).read_text())
    assert meta["backend"] == {"kind": "faiss"}
    del meta["backend"]  # as written before backends existed
    (tmp_path / SIDECAR).write_text(json.dumps(meta))
    loaded = IndexStore.load(tmp_path)
    assert loaded.backend == "faiss" and isinstance(loaded.vectors, VectorIndex) and loaded.vectors.ntotal == len(ids)


def test_missing_pymilvus_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # makes `import pymilvus` raise ImportError
    with pytest.raises(MilvusUnavailableError) as e:
        import_pymilvus()
    assert "logoid[milvus]" in str(e.value)


def test_config_chooses_index_and_checks_lite_file(tmp_path):
    assert MilvusConfig(uri="x.db").chosen_index() == "FLAT"
    server = MilvusConfig(uri="http://localhost:19530")
    assert server.chosen_index() == "HNSW" and server.search_params(500)["params"]["ef"] == 500
    assert MilvusConfig(uri="x.db").resolved_uri(tmp_path) == str(tmp_path / "x.db")
    with pytest.raises(ConfigError):
        MilvusConfig(uri="x.sqlite").resolved_uri(tmp_path)
    with pytest.raises(ConfigError):
        MilvusConfig(index_type="DISKANN").chosen_index()


# ---- the CLI end to end, Milvus next to FAISS ----------------------------------------------------------

FAST = ["--model", "tiny-test", "--variants", "3"]
CH = ["--channels", "global,local"]


def _run(home, *args, ok=True):
    from click.testing import CliRunner

    from logoid.cli import cli

    res = CliRunner().invoke(cli, ["--home", str(home), *[str(a) for a in args]], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def _answer(home, photo) -> tuple[str, float, list]:
    ans = json.loads(_run(home, "query", photo, *CH, "--json").stdout)
    return ans["answer"], ans["score"], [(c["name"], c["features"]["cos"]) for c in ans["candidates"]]


@needs_milvus
def test_cli_milvus_backend_answers_like_faiss(tmp_path):
    from synth import faiss_and_milvus_homes

    logos, photos, homes, outs = faiss_and_milvus_homes(tmp_path, _run, FAST)
    assert all(out["backend"]["kind"] == backend and out["vectors"] == 9 for backend, out in outs.items())
    assert (homes["milvus"] / "milvus.db").exists() and not (homes["faiss"] / "milvus.db").exists()

    def everyone():
        return {b: (_answer(homes["faiss"], photos[b]), _answer(homes["milvus"], photos[b])) for b in ("Deftones", "Slayer")}

    def check(expect_slayer: bool):
        for band, (f, m) in everyone().items():
            assert f[0] == m[0] and abs(f[1] - m[1]) < 1e-4, (band, f, m)
            assert [n for n, _ in f[2]] == [n for n, _ in m[2]]
            assert np.allclose([c for _, c in f[2]], [c for _, c in m[2]], atol=1e-4)
            if band != "Slayer" or expect_slayer:
                assert m[0] == band

    check(expect_slayer=False)
    for home in homes.values():  # no backend flag: each command follows its home's sidecar
        added = json.loads(_run(home, "add-band", "--name", "Slayer", "--image", logos["Slayer"], "--json").stdout)
        assert added["vectors_added"] == 3
    check(expect_slayer=True)
    for home in homes.values():
        _run(home, "remove-band", "Slayer")
    check(expect_slayer=False)
    meta = json.loads((homes["milvus"] / "index" / SIDECAR).read_text())
    assert meta["backend"]["kind"] == "milvus" and meta["counts"]["vectors"] == 9
    # A rebuild without --backend keeps Milvus; --uri without milvus is a usage error.
    again = json.loads(_run(homes["milvus"], "build-index", *FAST, "--json").stdout)
    assert again["backend"]["kind"] == "milvus" and again["backend"]["collection"] != meta["backend"]["collection"]
    assert _run(homes["faiss"], "build-index", *FAST, "--backend", "faiss", "--uri", "x.db", ok=False).exit_code == 2


@needs_milvus
def test_milvus_failure_after_the_commit_keeps_catalog_and_index_in_step(tmp_path, monkeypatch):
    from synth import photo_of, text_logo

    home = tmp_path / "home"
    for band, (text, seed) in {"Mayhem": ("MAYHEM", 1), "Korn": ("KORN", 3)}.items():
        logo = tmp_path / f"{band}.png"
        text_logo(text, seed=seed).save(logo)
        _run(home, "add-band", "--name", band, "--image", logo)
    _run(home, "build-index", *FAST, "--backend", "milvus")

    def boom(self):
        raise RuntimeError("simulated Milvus outage while applying the pending log")

    monkeypatch.setattr(MilvusVectorIndex, "apply_pending", boom)
    logo, photo = tmp_path / "Deftones.png", tmp_path / "Deftones.jpg"
    text_logo("DEFTONES", seed=2).save(logo)
    photo_of(text_logo("DEFTONES", seed=2)).save(photo)
    res = _run(home, "add-band", "--name", "Deftones", "--image", logo)
    assert "deferred" in res.stderr  # a warning, not a rolled-back catalog under a committed index
    names = [b["name"] for b in json.loads(_run(home, "catalog", "list", "--json").stdout)]
    assert "Deftones" in names
    meta = json.loads((home / "index" / SIDECAR).read_text())
    assert meta["files"].get("milvus_pending")  # the log stays named until a later commit applies it
    monkeypatch.undo()
    assert _answer(home, photo)[0] == "Deftones"  # readers merge the pending log
