"""Defects a review found in the IVF/fast-scan descriptor index, each a test (fixed since).

Tiny synthetic data (tests/test_descriptor_index_scale.py's clustered unit vectors); no shared data.
"""

from __future__ import annotations

import numpy as np
import pytest

from logoid.core.errors import ConfigError, IndexMismatchError
from logoid.engine.local import Features
from logoid.index.descriptors import DescriptorConfig, DescriptorIndex

faiss = pytest.importorskip("faiss")

SMALL = DescriptorConfig(nlist=16, nprobe=16, exact_below=1000, flip_inverted=False)  # IVF16 fast-scan + SQ8 re-ranking; every list probed


def _rootsift_like(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    d = np.maximum(centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.06, (n, 128)), 0).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _items(seed: int = 0, images: int = 12, per: int = 250):
    rng = np.random.default_rng(seed)
    centres = rng.random((40, 128))
    return [(i, [Features(rng.random((per, 2)).astype(np.float32) * 100, _rootsift_like(rng, centres, per), (100, 100))
                 for _ in range(2)]) for i in range(images)]


@pytest.fixture(scope="module")
def items():
    return _items()


def _top1_share(idx: DescriptorIndex, q: np.ndarray, image_id: int) -> float:
    return float((idx.search(q, 8)[1][:, 0, 0] == image_id).mean())


# ---- 1. fast-scan lists: an add after a remove corrupts the new codes ------------------------------------------
# BlockInvertedLists.resize() (used by remove_ids) keeps the removed entries' nibbles in the list's last block, and
# IndexIVFFastScan's add packs new codes into those slots assuming zeros ("Assumes allocated entries are 0 on
# input", pq4_fast_scan.h), so the new codes are OR-ed with stale ones.

def test_readding_an_image_keeps_it_findable(items):
    idx = DescriptorIndex.build(items, SMALL)
    q = items[5][1][0].desc[:60]
    assert _top1_share(idx, q, 5) > 0.95  # exact copies: found first
    idx.add(5, items[5][1])  # replace image 5 by the same features: remove + add, as `logoid add` does
    assert _top1_share(idx, q, 5) > 0.95


def test_image_added_after_remove_is_findable(items):
    idx = DescriptorIndex.build(items, SMALL)
    assert idx.remove([3]) == 500
    idx.add(700, [Features(f.xy, f.desc.copy(), f.size) for f in items[3][1]])  # a new image in the freed slots
    assert _top1_share(idx, items[3][1][0].desc[:60], 700) > 0.95


def test_image_added_after_remove_save_load_is_findable(tmp_path, items):
    idx = DescriptorIndex.build(items, SMALL)
    idx.remove([3])  # `logoid remove`: the stale nibbles are saved with the lists
    idx.save(tmp_path / "d")
    back = DescriptorIndex.load(tmp_path / "d")
    back.add(700, [Features(f.xy, f.desc.copy(), f.size) for f in items[3][1]])  # a later `logoid add`
    assert _top1_share(back, items[3][1][0].desc[:60], 700) > 0.95


# ---- 2. save(): no commit point between the .faiss and the .npz/.json files --------------------------------------

@pytest.mark.parametrize("config", [DescriptorConfig(ivf=False, flip_inverted=False), SMALL], ids=["flat", "ivf"])
def test_crash_between_faiss_and_npz_writes_is_detected_or_harmless(tmp_path, items, config, monkeypatch):
    idx = DescriptorIndex.build(items, config)
    idx.save(tmp_path / "d")  # generation A
    idx.remove([3])
    idx.add(903, items[3][1])  # generation B: same descriptor count, other owner
    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "save", crash)  # the per-reference table, written after the .faiss and .xy.npy
    with pytest.raises(OSError):
        idx.save(tmp_path / "d")  # .faiss replaced, .npz and .json still generation A
    monkeypatch.undo()
    try:
        back = DescriptorIndex.load(tmp_path / "d")
    except IndexMismatchError:
        return  # detected: fine
    try:
        owners = back.search(items[3][1][0].desc[:40], 8)[1][..., 0]
    except KeyError as e:
        pytest.fail(f"loaded a .faiss of one save with the .npz of another; search failed: KeyError {e}")
    assert set(np.unique(owners)) - {-1} <= set(back.image_ids()), "hits owned by images the index does not list"


# ---- 3. add_many(): an error part-way leaves earlier images registered but not in FAISS ------------------------

def test_add_many_error_leaves_no_half_added_image(tmp_path, items):
    idx = DescriptorIndex.build(items[:4], DescriptorConfig(ivf=False, flip_inverted=False))
    bad = Features(np.zeros((10, 2), np.float32), np.zeros((10, 64), np.float32), (100, 100))  # wrong dimension
    with pytest.raises(ConfigError):
        idx.add_many([(100, items[5][1]), (101, [bad])])
    found = bool((idx.search(items[5][1][0].desc[:20], 1)[1][:, 0, 0] == 100).any())
    assert idx.contains(100) == found, "image 100 is listed but none of its descriptors is in FAISS"
    idx.save(tmp_path / "d")
    DescriptorIndex.load(tmp_path / "d")  # IndexMismatchError: 500 keypoints listed that FAISS lacks


# ---- 4. config: PQ code sizes FAISS cannot build pass validation ----------------------------------------------

@pytest.mark.parametrize("codes", ["PQ7", "PQ0", "PQ3x4fs"])
def test_config_rejects_pq_sizes_that_do_not_divide_128(codes):
    with pytest.raises(ConfigError):
        DescriptorConfig(codes=codes)
