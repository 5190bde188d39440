"""The roster bench's catalog plumbing (bench/local/roster.py): cached parallel extraction and lazy items."""

from __future__ import annotations

import numpy as np
import pytest

from bench._logos import logo
from bench.local import roster
from logoid.core.imageio import file_hash
from logoid.identify.match import LocalConfig


@pytest.fixture()
def refs(tmp_path, monkeypatch):
    monkeypatch.setattr(roster, "REF_CACHE", tmp_path / "cache")
    out = []
    for i, (name, kind) in enumerate([("Iron Grave", "band"), ("Frost Oath", "generated"), ("Ash Throne", "generated")]):
        p = tmp_path / f"{i}.png"
        logo(name, seed=i).save(p)
        out.append(roster.Ref(roster.GEN_ID0 + i if kind == "generated" else roster.BAND_ID0 + i, p, file_hash(p), kind))
    return out


def test_extract_all_fills_the_cache_once(refs):
    cfg = LocalConfig()
    first = roster.extract_all(refs, cfg, workers=2)
    assert first > 0
    assert roster.extract_all(refs, cfg, workers=2) == 0  # every reference cached: nothing extracted again


def test_lazy_items_reuse_generated_features_under_new_ids(refs):
    cfg = LocalConfig()
    roster.extract_all(refs, cfg, workers=1)
    items = roster.LazyItems(refs, cfg, reused=3)
    got = list(items)
    assert len(items) == len(got) == 6
    assert [i for i, _ in got] == [r.image_id for r in refs] + [roster.REUSE_ID0 + j for j in range(3)]
    # reused copies cycle over the GENERATED references only (refs 1, 2, 1), normal + inverted each
    for (_, copy), src in zip(got[3:], [got[1], got[2], got[1]], strict=True):
        assert len(copy) == 2
        assert all(np.array_equal(a.desc, b.desc) for a, b in zip(copy, src[1], strict=True))
    again = list(items)  # re-iterable: the same sequence twice (the streaming index build reads it twice)
    assert [i for i, _ in again] == [i for i, _ in got]


def test_lazy_items_name_the_missing_cache(refs):
    with pytest.raises(RuntimeError, match="roster extract"):
        list(roster.LazyItems(refs, LocalConfig()))


def test_roster_global_index_keeps_the_designs_vectors_under_their_roster_ids(tmp_path, monkeypatch):
    from bench.local import roster_e2e
    from logoid.index.vectors import IndexConfig, VectorIndex, decode_ids, encode_ids

    monkeypatch.setattr(roster_e2e, "GLOBAL_DIR", tmp_path)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3 * 4, 512)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    home = VectorIndex.build(vecs, encode_ids(np.repeat([7, 8, 9], 4), np.tile(np.arange(4), 3)))  # home image ids
    row_of_image = {7: 101, 8: 103, 9: 104}  # home image id -> the design's roster id
    ids = [101, 103, 104] + [roster.BAND_ID0 + j for j in range(50)]
    facts = roster_e2e.build_global(len(ids), ids, home, row_of_image, IndexConfig(), "m@1")
    assert facts["vectors"] == 12 + 50 * 20 and facts["synthetic"] == 1000
    got = VectorIndex.load(roster_e2e.global_path(len(ids), "m@1"), IndexConfig())
    sims, found = got.search(vecs[[5]], 1)  # design 8's variant 1, now roster id 103
    assert found[0, 0] == encode_ids(103, 1) and sims[0, 0] > 0.999
    image_ids, _ = decode_ids(got.ids())
    assert set(image_ids) == set(ids)  # every reference has its 20 views (designs: their own 4)
    assert roster_e2e.build_global(len(ids), ids, home, {}, IndexConfig(), "m@1") == facts  # cached
