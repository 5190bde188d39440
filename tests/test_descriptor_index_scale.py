"""Descriptor index for large catalogs: structure by size, fast-scan PQ + SQ8 re-ranking, add/remove, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from logoid.core.errors import ConfigError
from logoid.engine.local import Features
from logoid.index.descriptors import DescriptorConfig, DescriptorIndex

faiss = pytest.importorskip("faiss")

SMALL = DescriptorConfig(nlist=16, nprobe=8, exact_below=1000, flip_inverted=False)  # IVF from 1,000 descriptors, 16 lists


def _rootsift_like(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """Non-negative unit-norm vectors near random centres (clustered, like SIFT descriptors)."""
    d = np.maximum(centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.06, (n, 128)), 0).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _items(seed: int = 0, images: int = 12, per: int = 250, first_id: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.random((40, 128))
    return [(first_id + i, [Features(rng.random((per, 2)).astype(np.float32) * 100, _rootsift_like(rng, centres, per),
                                     (100, 100)) for _ in range(2)]) for i in range(images)]


@pytest.fixture(scope="module")
def items():
    return _items()


@pytest.fixture(scope="module")
def queries(items):
    rng = np.random.default_rng(9)
    q = np.concatenate([items[i][1][0].desc[:40] for i in (1, 5, 8)])
    q = np.maximum(q + rng.normal(0, 0.02, q.shape).astype(np.float32), 0)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def built(items):
    return DescriptorIndex.build(items, SMALL)


def _recall(a: DescriptorIndex, exact: DescriptorIndex, q: np.ndarray) -> float:
    """Share of queries whose first of k=8 neighbours (what the ratio test uses) is the exact nearest."""
    return float((a.search(q, 8)[1][:, 0] == exact.search(q, 1)[1][:, 0]).all(axis=1).mean())


def test_structure_by_size_is_what_the_config_says(items, built):
    cfg = DescriptorConfig()
    assert cfg.choose(49_999) == "Flat"
    assert cfg.choose(456_691) == "IVF2048_HNSW32,PQ64x4fs,Refine(SQ8)"  # 1k references
    assert cfg.choose(4_566_910) == "IVF8192_HNSW32,PQ64x4fs,Refine(SQ8)"  # 10k references
    assert DescriptorConfig(codes="SQ8", quantizer="flat").choose(10**6) == "IVF4096,SQ8"
    assert DescriptorConfig(ivf=False).choose(10**7) == "Flat"
    assert SMALL.choose(6000) == built.structure() == "IVF16_HNSW32,PQ64x4fs,Refine(SQ8)"
    ivf = faiss.extract_index_ivf(built._index)
    assert isinstance(built._index, faiss.IndexIVFPQFastScan) and not ivf.by_residual and ivf.nprobe == 8
    assert faiss.downcast_index(ivf.quantizer).hnsw.efSearch == 16  # max(ef_search 16, nprobe 8)
    small = DescriptorIndex.build(items[:2], SMALL)  # 1,000 descriptors: IVF; fewer: exact
    assert small.structure().startswith("IVF")
    assert DescriptorIndex.build(items[:1], SMALL).structure() == "Flat"


def test_config_rejects_unknown_structures():
    for bad in ({"codes": "HNSW"}, {"quantizer": "lsh"}, {"refine": -1}, {"codes": "PQ8x3"}):
        with pytest.raises(ConfigError):
            DescriptorConfig(**bad)


def test_refined_search_has_exact_recall_and_true_distances(items, queries, built):
    exact = DescriptorIndex.build(items, DescriptorConfig(ivf=False, flip_inverted=False))
    raw = DescriptorIndex.build(items, DescriptorConfig(nlist=16, nprobe=8, exact_below=1000, refine=0,
                                                            flip_inverted=False))
    assert _recall(built, exact, queries) >= 0.9
    assert _recall(built, exact, queries) > _recall(raw, exact, queries)
    D, own = built.search(queries, 8)
    assert (np.diff(D, axis=1) >= 0).all()  # re-ranked: nearest first
    De, own_e = exact.search(queries, 1)
    same = (own[:, 0] == own_e[:, 0]).all(axis=1)
    np.testing.assert_allclose(D[same, 0], De[same, 0], atol=2e-3)  # SQ8 distances are nearly the true ones


def test_add_then_remove_leaves_search_as_before(items, queries):
    idx = DescriptorIndex.build(items, SMALL)
    before = idx.search(queries, 8)
    n = idx.ntotal
    twin = [(777, [Features(f.xy, f.desc.copy(), f.size) for f in items[5][1]])]  # a copy of image 5: a hit
    assert idx.add_many(twin) == 500 and idx.ntotal == n + 500
    assert (idx.search(queries, 8)[1][..., 0] == 777).any()
    assert idx.remove([777]) == 500 and idx.ntotal == n and not idx.contains(777)
    after = idx.search(queries, 8)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert idx.add(3, items[3][1]) == 500 and idx.ntotal == n  # re-adding replaces, never duplicates
    assert idx.add_many([(900, items[0][1]), (900, items[1][1])]) == 1000 and idx.ntotal == n + 500  # one batch


def test_batched_adds_equal_single_adds(items, queries):
    a = DescriptorIndex.build(items, SMALL)
    b = DescriptorIndex(config=DescriptorConfig.from_dict({**SMALL.to_dict(), "ivf": True}))
    b.train(np.concatenate([f.desc for _, fs in items for f in fs]))
    for i, fs in items:
        b.add(i, fs)
    np.testing.assert_array_equal(a.search(queries, 8)[1], b.search(queries, 8)[1])


def test_save_load_roundtrip_and_removal_after_load(tmp_path, items, queries, built):
    built.save(tmp_path / "d")
    meta = json.loads((tmp_path / "d.json").read_text())
    assert meta["structure"] == "IVF16_HNSW32,PQ64x4fs,Refine(SQ8)" and meta["config"]["codes"] == "PQ64x4fs"
    back = DescriptorIndex.load(tmp_path / "d")
    assert back.structure() == built.structure() and back.ntotal == built.ntotal
    for got, want in zip(back.search(queries, 8), built.search(queries, 8), strict=True):
        np.testing.assert_array_equal(got, want)
    owners = back.search(queries, 3, restrict=[2, 8])[1][..., 0]
    assert set(np.unique(owners)) <= {2, 8, -1} and (owners[:, 0] == 8).sum() >= 30
    assert back.remove([8]) == 500
    back.save(tmp_path / "e")  # the removed image's codes are not written
    codes = json.loads((tmp_path / "e.json").read_text())["files"]["codes"]
    assert len(np.load(tmp_path / codes)) == back.ntotal
    again = DescriptorIndex.load(tmp_path / "e")
    assert not (again.search(queries, 8)[1][..., 0] == 8).any()


def test_index_saved_before_codes_existed_still_loads(tmp_path, items, queries):
    old = DescriptorIndex.build(items, DescriptorConfig(ivf=True, nlist=16, nprobe=8, quantizer="flat", codes="Flat",
                                                            flip_inverted=False))
    old.save(tmp_path / "old")
    side = tmp_path / "old.json"
    meta = json.loads(side.read_text())
    meta.pop("structure")
    files = meta.pop("files")  # the previous release wrote unversioned old.faiss / old.npz (schema 1)
    (tmp_path / files["faiss"]).rename(tmp_path / "old.faiss")
    refs, xy = np.load(tmp_path / files["refs"]), np.load(tmp_path / files["xy"])
    np.savez(tmp_path / "old.npz", keys=refs[:, :2], offsets=np.concatenate([[0], np.cumsum(refs[:, 4])]), xy=xy,
             sizes=refs[:, 2:4])
    meta["schema_version"] = 1
    meta["config"] = {"ivf": True, "exact_below": 50000, "nlist": 16, "nprobe": 8, "pq_m": 0,
                      "train_sample": 200000, "seed": 0}  # the sidecar of the previous release
    side.write_text(json.dumps(meta))
    back = DescriptorIndex.load(tmp_path / "old")
    assert back.config.codes == "Flat" and back.config.quantizer == "flat" and not back.config.refines()
    assert back.structure() == "IVF16,Flat"
    np.testing.assert_array_equal(back.search(queries, 4)[1], old.search(queries, 4)[1])


def test_training_sample_grows_with_the_list_count(monkeypatch, items):
    cfg = DescriptorConfig(train_sample=100, train_per_list=40, nlist=64, flip_inverted=False)
    assert cfg.train_size(10**6) == 40 * 64  # not the 100 asked: k-means wants ~39 a list
    assert cfg.train_size(1000) == 1000  # never more than there are
    assert DescriptorConfig(train_sample=5000, nlist=64).train_size(10**6) == 5000
    import logoid.index.descriptors as mod

    seen = []
    real_sample = mod.sample_rows

    def spy(parts, size, seed):
        seen.append(size)
        return real_sample(parts, size, seed)

    monkeypatch.setattr(mod, "sample_rows", spy)
    built = DescriptorIndex.build(items, DescriptorConfig(nlist=16, nprobe=8, exact_below=1000, train_sample=100,
                                                          refine=0, flip_inverted=False))
    assert seen == [16 * 40] and built.ntotal == sum(len(f) for _, fs in items for f in fs)


@pytest.mark.parametrize("first_id", [0, 1 << 30])  # small catalog ids (a dense lookup table) and huge ones (sorted)
def test_code_store_gathers_by_owner_and_sq8_distances_match_decoding(first_id):
    from logoid.index.descriptor_structure import SQ8, CodeStore

    rng = np.random.default_rng(3)
    x = rng.random((300, 128)).astype(np.float32)
    store = CodeStore(SQ8.train(x))
    ids = [(first_id + 5, 0), (first_id + 5, 1), (first_id, 0)]
    for n, key in enumerate(ids):
        store.put(key, x[100 * n:100 * (n + 1)])
    img, var = np.array([first_id + 5, first_id, first_id + 5]), np.array([1, 0, 0])
    kp = np.array([7, 99, 0])
    got = store.gather(img, var, kp)
    np.testing.assert_array_equal(got, store.sq.encode(x[[107, 299, 0]]))
    q = rng.random((3, 128)).astype(np.float32)
    want = ((store.sq.decode(got)[:, None, :] - q[None]) ** 2).sum(-1).T  # (3 queries, 3 codes)
    np.testing.assert_allclose(store.sq.distances(q, np.broadcast_to(got, (3, 3, 128))), want, rtol=1e-4, atol=1e-4)
    store.drop((first_id, 0))
    with pytest.raises(KeyError):
        store.gather(img, var, kp)
    np.testing.assert_array_equal(store.gather(img[[0]], var[[0]], kp[[0]]), got[[0]])
    with pytest.raises(KeyError):
        store.gather(np.array([first_id + 99]), np.array([0]), np.array([0]))
