"""The global vector index: exact search, id ranges, add/remove, approximate recall, store commits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from logoid.errors import IndexMismatchError, IndexMissingError
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
