"""The global vector index: exact search, id ranges, add/remove, approximate recall, store commits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from logoid.core.errors import IndexMismatchError, IndexMissingError
from logoid.index.store import SIDECAR, IndexStore
from logoid.index.vectors import VARIANT_SLOTS, IndexConfig, VectorIndex, decode_ids, encode_ids


def _unit(rng, n, d=32):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ids_round_trip():
    ids = encode_ids(np.array([0, 5, 123456]), np.array([0, 19, 1023]))
    img, var = decode_ids(ids)
    assert img.tolist() == [0, 5, 123456] and var.tolist() == [0, 19, 1023]


def test_flat_search_is_exact_cosine():
    rng = np.random.default_rng(0)
    x = _unit(rng, 200)
    ids = encode_ids(np.arange(200) // 10, np.arange(200) % 10)
    idx = VectorIndex.build(x, ids)
    q = _unit(rng, 5)
    sims, got = idx.search(q, 3)
    truth = q @ x.T
    order = np.argsort(-truth, axis=1)[:, :3]
    assert np.array_equal(got, ids[order])
    assert np.allclose(sims, np.take_along_axis(truth, order, 1), atol=1e-5)


def test_remove_images_removes_every_variant_only():
    rng = np.random.default_rng(1)
    x = _unit(rng, 60)
    ids = encode_ids(np.repeat([1, 2, 3], 20), np.tile(np.arange(20), 3))
    idx = VectorIndex.build(x, ids)
    assert idx.remove_images([2]) == 20
    left = decode_ids(idx.ids())[0]
    assert sorted(set(left.tolist())) == [1, 3] and idx.ntotal == 40
    _, got = idx.search(x[25], 1)  # a removed vector now finds something else
    assert decode_ids(got)[0][0, 0] != 2


def test_ivf_recall_against_exact():
    rng = np.random.default_rng(2)
    centres = _unit(rng, 300)
    x = centres[rng.integers(0, 300, 6000)] + 0.05 * rng.standard_normal((6000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(6000, dtype=np.int64)
    exact = VectorIndex.build(x, ids)
    approx = VectorIndex.build(x, ids, IndexConfig(factory="IVF64,Flat", nprobe=8))
    q = x[rng.choice(6000, 200, replace=False)] + 0.02 * rng.standard_normal((200, 32)).astype(np.float32)
    _, e = exact.search(q, 1)
    _, a = approx.search(q, 1)
    assert (e[:, 0] == a[:, 0]).mean() >= 0.95


def test_store_commit_is_atomic_and_sweeps_old_generations(tmp_path):
    rng = np.random.default_rng(3)
    store = IndexStore(root=tmp_path)
    store.vectors = VectorIndex.build(_unit(rng, 10), encode_ids(np.arange(10), np.zeros(10)))
    store.meta["model"] = {"model": "m", "weights_sha256": "abc", "embed_dim": 32}
    store.commit()
    first = json.loads((tmp_path / SIDECAR).read_text())["files"]["vectors"]
    store.vectors.remove_images([0])
    store.commit()
    meta = json.loads((tmp_path / SIDECAR).read_text())
    assert meta["files"]["vectors"] != first and not (tmp_path / first).exists()
    assert IndexStore.load(tmp_path).vectors.ntotal == 9
    assert meta["generation"] == 2


def test_store_refuses_other_model_and_missing_index(tmp_path):
    with pytest.raises(IndexMissingError, match="build-index"):
        IndexStore.load(tmp_path / "none")
    store = IndexStore(root=tmp_path)
    store.vectors = VectorIndex.build(np.eye(4, dtype=np.float32), np.arange(4))
    store.meta["model"] = {"model": "a", "weights_sha256": "111", "embed_dim": 4}
    store.commit()
    with pytest.raises(IndexMismatchError, match="rebuild"):
        IndexStore.load(tmp_path).check_model({"model": "b", "weights_sha256": "222", "embed_dim": 4})
    IndexStore.load(tmp_path).check_model({"model": "a", "weights_sha256": "111", "embed_dim": 4})


def test_variant_slots_cover_default_variants():
    assert VARIANT_SLOTS >= 20


# ---- approximate structures, add/remove without rebuild, mmap, structure choice ---------------------
def _clustered(seed, n_centres=1000, views=20, d=64, noise=0.3):
    """Seeded vectors clustered like embeddings: ``views`` noisy views per centre, ids = (centre, view)."""
    rng = np.random.default_rng(seed)
    c = _unit(rng, n_centres, d)
    x = np.repeat(c, views, 0) + (noise / np.sqrt(d)) * rng.standard_normal((n_centres * views, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nq = min(300, n_centres)
    q = c[:nq] + (noise / np.sqrt(d)) * rng.standard_normal((nq, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = encode_ids(np.repeat(np.arange(n_centres), views), np.tile(np.arange(views), n_centres))
    return x, ids, q


@pytest.fixture(scope="module")
def clustered():
    return _clustered(10, n_centres=600)


@pytest.fixture(autouse=True, scope="module")
def _one_faiss_thread():
    import faiss  # OpenMP threads spin-wait on a busy machine: one thread keeps these tests fast

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _recall10(a, e):
    return np.mean([len(set(r) & set(t)) / 10 for r, t in zip(a, e, strict=True)])


@pytest.mark.parametrize("factory, bound", [("IVF256,Flat", 0.95), ("IVF256_HNSW32,SQ8", 0.9),
                                            ("IVF256_HNSW32,PQ16x4", 0.9)])
def test_approximate_recall_at_10_against_flat(clustered, factory, bound):
    x, ids, q = clustered
    _, exact = VectorIndex.build(x, ids).search(q, 10)
    approx = VectorIndex.build(x, ids, IndexConfig(factory=factory, nprobe=16))
    assert approx.is_ivf and approx.config.factory == factory
    _, got = approx.search(q, 10)
    assert _recall10(got, exact) >= bound


def test_ivf_add_remove_without_rebuild(clustered):
    x, ids, _ = clustered
    idx = VectorIndex.build(x, ids, IndexConfig(factory="IVF256_HNSW32,Flat", nprobe=16))
    inner = idx.faiss_index
    assert idx.remove_images([3, 4]) == 40 and idx.ntotal == len(ids) - 40
    _, got = idx.search(x[60:100], 1)  # the removed images' own vectors now find other images
    assert not np.isin(decode_ids(got[:, 0])[0], [3, 4]).any()
    _, kept = idx.search(x[200:400], 1)  # FAISS's IDMap over IVF would corrupt these after a removal
    assert (kept[:, 0] == ids[200:400]).mean() >= 0.95
    idx.add(x[60:100], ids[60:100])
    _, back = idx.search(x[60:100], 1)
    assert (back[:, 0] == ids[60:100]).mean() >= 0.95
    assert idx.faiss_index is inner  # changed in place, not rebuilt
    assert sorted(idx.ids().tolist()) == sorted(ids.tolist())
    assert np.allclose(idx.reconstruct_image(3), x[60:80], atol=2e-3)


def test_pq_refine_reranks_by_exact_vectors(clustered):
    x, ids, q = clustered
    cfg = IndexConfig(factory="IVF256,PQ8x4", nprobe=32)
    plain = VectorIndex.build(x, ids, IndexConfig.from_dict({**cfg.to_dict(), "refine": 0}))
    refined = VectorIndex.build(x, ids, IndexConfig.from_dict({**cfg.to_dict(), "refine": 8}))
    sims, got = refined.search(q, 5)
    vecs = {int(i): v for i, v in zip(ids, x, strict=True)}
    assert np.allclose(sims[:, 0], [q[j] @ vecs[int(i)] for j, i in enumerate(got[:, 0])], atol=2e-3)
    truth = VectorIndex.build(x, ids).search(q, 1)[1][:, 0]
    assert (got[:, 0] == truth).mean() > (plain.search(q, 1)[1][:, 0] == truth).mean()


@pytest.mark.parametrize("factory", [None, "IVF64_HNSW32,SQ8"])
def test_mmap_load_gives_identical_results_and_stays_changeable(tmp_path, factory):
    x, ids, q = _clustered(11, n_centres=200)
    idx = VectorIndex.build(x, ids, IndexConfig(factory=factory, nprobe=8))
    idx.save(tmp_path / "v.faiss")
    mm = VectorIndex.load(tmp_path / "v.faiss", idx.config, mmap=True)
    s1, i1 = idx.search(q, 10)
    s2, i2 = mm.search(q, 10)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    assert mm.remove_images([0]) == 20  # re-read in RAM first: mmapped FAISS data is read-only
    mm.save(tmp_path / "w.faiss")
    assert VectorIndex.load(tmp_path / "w.faiss", idx.config).ntotal == len(ids) - 20


def test_store_loads_ivf_index_with_its_config(tmp_path, clustered):
    x, ids, q = clustered
    store = IndexStore(root=tmp_path)
    store.vectors = VectorIndex.build(x, ids, IndexConfig(factory="IVF256,Flat", nprobe=7))
    store.meta["model"] = {"model": "m", "weights_sha256": "abc", "embed_dim": 64}
    store.commit()
    again = IndexStore.load(tmp_path).vectors
    assert again.is_ivf and again.config.nprobe == 7 and again.ntotal == len(ids)
    assert np.array_equal(again.search(q, 5)[1], store.vectors.search(q, 5)[1])


def test_choose_factory_by_size_and_budget():
    cfg = IndexConfig(memory_budget_mb=None)
    assert cfg.choose_factory(50_000, 512) == "Flat"
    assert cfg.choose_factory(3_600_000, 512) == "IVF4096_HNSW32,Flat"
    assert IndexConfig(memory_budget_mb=8000).choose_factory(3_600_000, 512) == "IVF4096_HNSW32,Flat"
    small = IndexConfig(memory_budget_mb=1024).choose_factory(3_600_000, 512)
    assert small.startswith("IVF") and small.endswith(",PQ64")
    assert IndexConfig(memory_budget_mb=100).choose_factory(800_000, 512) != "Flat"  # budget beats size
    assert IndexConfig(factory="HNSW32,Flat").choose_factory(10, 512) == "HNSW32,Flat"
    assert IndexConfig(nlist=1024, memory_budget_mb=None).choose_factory(2_000_000, 512) == "IVF1024_HNSW32,Flat"
    assert IndexConfig.from_dict({"nprobe": 5, "unknown_key": 1}).nprobe == 5


def test_search_params_are_applied(clustered):
    import faiss

    x, ids, _ = clustered
    idx = VectorIndex.build(x, ids, IndexConfig(factory="IVF256_HNSW32,Flat", nprobe=12, ef_search=80))
    ivf = faiss.extract_index_ivf(idx.faiss_index)
    assert ivf.nprobe == 12 and faiss.downcast_index(ivf.quantizer).hnsw.efSearch == 80


def test_index_that_cannot_remove_says_so():
    from logoid.core.errors import ConfigError

    x, ids, _ = _clustered(12, n_centres=50)
    idx = VectorIndex.build(x, ids, IndexConfig(factory="HNSW32,Flat"))
    with pytest.raises(ConfigError, match="cannot remove"):
        idx.remove_images([1])


def test_ivf_pq_with_every_image_removed_answers_empty_slots():
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(400, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    image_ids = np.repeat(np.arange(100), 4)
    idx = VectorIndex.build(vecs, encode_ids(image_ids, np.tile(np.arange(4), 100)),
                            IndexConfig(factory="IVF4,PQ4", refine=8))
    assert idx.remove_images(range(100)) == 400 and idx.ntotal == 0
    sims, ids = idx.search(vecs[:2], 5)
    assert ids.shape == (2, 1) and (ids == -1).all() and (sims < -1e30).all()
