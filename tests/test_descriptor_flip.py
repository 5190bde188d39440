"""Inverted prints found by flipping the photo's descriptors instead of storing every reference's inverted variant.

A reference's inverted variant is its grey keypoints' RootSIFT with the 4x4 cell grid turned by 180 degrees
(``INVERTED_ORDER``); ``DescriptorConfig.flip_inverted`` stores the normal variant only and searches each photo
descriptor twice. These tests check the premise on real SIFT and that the search answers exactly as an index
holding both variants does, at half the descriptors; older indexes (both stored) keep their behaviour.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from synth import text_logo

from logoid.engine.local import INVERTED_ORDER, ExtractConfig, Features, extract_reference
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.descriptors import DescriptorIndex

faiss = pytest.importorskip("faiss")

REFS, PER = 120, 40


def test_an_inverted_reference_is_its_normal_grey_keypoints_flipped():
    cfg = ExtractConfig(ref_chroma_keypoints=0, ref_small_side=0)  # grey keypoints only: every one has a twin
    normal, inverted = extract_reference(text_logo("DEFTONES", (460, 140), 58, 2), cfg)
    assert len(normal) == len(inverted) > 50
    d = ((inverted.desc[:, None, :] - normal.desc[None, :, INVERTED_ORDER]) ** 2).sum(-1)
    twin = d.argmin(axis=1)
    assert np.sqrt(d.min(axis=1)).max() < 1e-5  # the same descriptor, bit for bit up to float rounding
    np.testing.assert_allclose(inverted.xy, normal.xy[twin], atol=1e-3)  # at the same place
    assert len(set(twin.tolist())) == len(normal)  # one to one
    unflipped = np.sqrt(((inverted.desc - normal.desc[twin]) ** 2).sum(-1))
    assert np.median(unflipped) > 0.3  # without the flip they are other descriptors: storing both was not a no-op


def _items(seed: int = 0) -> list[tuple[int, list[Features]]]:
    """References whose inverted variant is what extraction makes: the normal's keypoints, descriptors flipped."""
    rng = np.random.default_rng(seed)
    centres = rng.random((30, 128))
    out = []
    for r in range(REFS):
        d = np.maximum(centres[rng.integers(0, 30, PER)] + rng.normal(0, 0.06, (PER, 128)), 0)
        d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        xy = (rng.random((PER, 2)) * 300).astype(np.float32)
        out.append((r, [Features(xy, d, (300, 200)), Features(xy, d[:, INVERTED_ORDER].copy(), (300, 200))]))
    return out


def _queries(items, n=300, seed=1, noise=0.03) -> np.ndarray:
    """Noisy copies of stored descriptors, half of them of inverted variants (an inverted print's keypoints)."""
    rng = np.random.default_rng(seed)
    src = [items[i][1][v].desc[j] for i, v, j in zip(rng.integers(0, len(items), n), rng.integers(0, 2, n),
                                                     rng.integers(0, PER, n), strict=True)]
    q = np.maximum(np.stack(src) + rng.normal(0, noise, (n, 128)), 0)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_flipped_search_answers_exactly_as_both_variants_stored():
    items = _items()
    stored = DescriptorIndex.build(items, DescriptorConfig(ivf=False, flip_inverted=False))
    flipped = DescriptorIndex.build(items, DescriptorConfig(ivf=False))
    assert flipped.flip_inverted and not stored.flip_inverted
    assert flipped.ntotal * 2 == stored.ntotal == REFS * PER * 2
    q = _queries(items)
    for k in (2, 8):
        (Ds, Os), (Df, Of) = stored.search(q, k), flipped.search(q, k)
        np.testing.assert_allclose(Df, Ds, atol=1e-5)
        np.testing.assert_array_equal(Of, Os)  # the same (image, variant, keypoint) at every rank
    assert (Of[:, 0, 1] == 1).sum() > 100  # inverted-variant hits are really among them
    restrict = [3, 50, 77]
    np.testing.assert_array_equal(flipped.search(q, 8, restrict)[1], stored.search(q, 8, restrict)[1])
    np.testing.assert_array_equal(flipped.ref_xy(5, 1), stored.ref_xy(5, 1))
    assert flipped.ref_size(5, 1) == stored.ref_size(5, 1)


def test_ivf_flipped_search_finds_what_the_stored_index_finds():
    """IVF with SQ8 re-ranking, every list probed: the exact nearest reference keypoint of queries close to one
    (with noisier queries both indexes miss a few near ties, ~5 %, their quantisers trained on different rows)."""
    items = _items(seed=3)
    cfg = dict(nlist=16, nprobe=16, exact_below=1000)
    stored = DescriptorIndex.build(items, DescriptorConfig(**cfg, flip_inverted=False))
    flipped = DescriptorIndex.build(items, DescriptorConfig(**cfg))
    assert flipped.structure() == stored.structure() == "IVF16_HNSW32,PQ64x4fs,Refine(SQ8)"
    q = _queries(items, seed=4, noise=0.01)
    exact = DescriptorIndex.build(items, DescriptorConfig(ivf=False, flip_inverted=False)).search(q, 1)[1][:, 0]
    assert (exact[:, 1] == 1).sum() > 100
    for idx in (stored, flipped):
        assert (idx.search(q, 8)[1][:, 0] == exact).all(axis=1).mean() >= 0.99


def test_an_index_saved_before_the_flip_keeps_both_variants(tmp_path):
    items = _items(seed=5)[:20]
    old = DescriptorIndex.build(items, DescriptorConfig(ivf=False, flip_inverted=False))
    old.save(tmp_path / "d")
    side = tmp_path / "d.json"
    meta = json.loads(side.read_text())
    meta["config"].pop("flip_inverted")  # as written before the field existed
    side.write_text(json.dumps(meta))
    back = DescriptorIndex.load(tmp_path / "d")
    assert not back.flip_inverted and back.ntotal == old.ntotal
    q = _queries(items[:20], n=50)
    np.testing.assert_array_equal(back.search(q, 4)[1], old.search(q, 4)[1])
    back.add(99, items[0][1])  # an add to an old index still stores both variants
    assert back.ntotal == old.ntotal + 2 * PER
    fresh = DescriptorIndex.build(items, DescriptorConfig(ivf=False))
    fresh.save(tmp_path / "f")
    assert DescriptorIndex.load(tmp_path / "f").flip_inverted


def test_no_inverted_enrolment_means_no_inverted_hits():
    items = [(i, fs[:1]) for i, fs in _items(seed=6)]
    idx = DescriptorIndex.build(items, DescriptorConfig(ivf=False), feature_config=ExtractConfig(enrol_inverted=False))
    assert not idx.flip_inverted
    assert (idx.search(_queries(_items(seed=6)), 8)[1][..., 1] <= 0).all()
