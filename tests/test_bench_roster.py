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
