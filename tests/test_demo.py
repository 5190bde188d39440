"""Demo: real simple-icons logos render, enrol, and make a deterministic photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from logoid.catalog import Catalog
from logoid.core.errors import ConfigError
from logoid.demo import DEMO_SLUGS, UNKNOWN_SLUGS, build_demo_catalog, make_demo_photo, make_unknown_photo, render_icon


def test_icons_render_non_empty_in_brand_colour():
    img = render_icon("spotify", size=64)
    arr = np.asarray(img).astype(int)
    assert img.size == (64, 64)
    assert (arr[0, 0] == 255).all()  # white margin
    ink = arr[(arr.sum(axis=2) < 600)]
    assert len(ink) > 300
    assert ink.mean(axis=0)[1] > ink.mean(axis=0)[0] + 60  # Spotify green (#1ED760)


def test_demo_lists_are_distinct():
    assert len(DEMO_SLUGS) == len(set(DEMO_SLUGS)) == 24
    assert not set(UNKNOWN_SLUGS) & set(DEMO_SLUGS)


def test_build_demo_catalog(tmp_path):
    with Catalog.open(tmp_path / "home") as cat:
        bands = build_demo_catalog(cat, tmp_path / "work", n=3)
        assert [b.external_ids for b in bands] == [{"si": s} for s in DEMO_SLUGS[:3]]
        assert all(b.genre == "demo" and b.country is None for b in bands)
        assert cat.counts()["images"] == 3
        build_demo_catalog(cat, tmp_path / "work", n=3)  # idempotent
        assert cat.counts()["bands"] == 3 and cat.counts()["images"] == 3
        assert cat.find_band("si:apple").name == "Apple"


def test_demo_photo_deterministic_and_looks_like_a_print(tmp_path):
    logo = render_icon("adidas", size=96)
    a = make_demo_photo(logo, tmp_path / "a.jpg", seed=5, size=(160, 120))
    b = make_demo_photo(logo, tmp_path / "b.jpg", seed=5, size=(160, 120))
    c = make_demo_photo(logo, tmp_path / "c.jpg", seed=6, size=(160, 120))
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    arr = np.asarray(Image.open(a).convert("L")).astype(float)
    centre, edge = arr[40:80, 55:105], np.concatenate([arr[:10].ravel(), arr[-10:].ravel()])
    assert edge.mean() - np.percentile(centre, 10) > 60  # black ink printed on a light shirt, mid-frame
    assert arr.std() > 5  # not a flat image


def test_unknown_photo_refuses_known_icon(tmp_path):
    assert make_unknown_photo(tmp_path / "u.jpg", seed=0).exists()
    with pytest.raises(ConfigError):
        make_unknown_photo(tmp_path / "k.jpg", slug=DEMO_SLUGS[0])
