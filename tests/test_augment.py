"""Augment: determinism, variant count, black-and-white recolouring, config round trip, sheets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from logoid.augment import AugmentConfig, contact_sheet, make_variants, preview
from logoid.core.errors import ConfigError

SMALL = AugmentConfig(n_variants=6, size=64)


def _bw_logo() -> Image.Image:
    """White strokes on black, like most band logos."""
    img = Image.new("RGB", (80, 60), (0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rectangle((10, 20, 70, 30), fill=(255, 255, 255))
    d.ellipse((30, 5, 50, 55), outline=(255, 255, 255), width=4)
    return img


def _colour_logo() -> Image.Image:
    img = Image.new("RGB", (60, 80), (240, 240, 230))
    ImageDraw.Draw(img).polygon([(10, 70), (30, 10), (50, 70)], fill=(200, 40, 30))
    return img


def _bytes(images):
    return [np.asarray(i).tobytes() for i in images]


def test_variant_count_size_and_original_first():
    out = make_variants(_colour_logo(), "color", SMALL, key="abc")
    assert len(out) == 6
    assert all(v.mode == "RGB" and max(v.size) == 64 for v in out)
    assert out[0].size == (48, 64)  # aspect kept
    ref = np.asarray(_colour_logo().resize((48, 64), Image.Resampling.BOX), dtype=float)
    assert np.abs(np.asarray(out[0], dtype=float) - ref).mean() < 12  # variant 0 is the (resized) original
    assert len({b for b in _bytes(out)}) == 6  # all different


@pytest.mark.parametrize("scheme", ["color", "bw"])
def test_same_key_and_seed_identical_different_key_differs(scheme):
    img = _bw_logo() if scheme == "bw" else _colour_logo()
    a = make_variants(img, scheme, SMALL, key="k1")
    b = make_variants(img, scheme, SMALL, key="k1")
    c = make_variants(img, scheme, SMALL, key="k2")
    d = make_variants(img, scheme, AugmentConfig.from_dict({**SMALL.to_dict(), "seed": 1}), key="k1")
    assert _bytes(a) == _bytes(b)
    assert _bytes(a)[1:] != _bytes(c)[1:] and _bytes(a)[1:] != _bytes(d)[1:]
    assert _bytes(a)[0] == _bytes(c)[0]  # the original does not depend on the key


def test_variant_i_independent_of_n_variants():
    few = make_variants(_colour_logo(), "color", SMALL, key="k")
    many = make_variants(_colour_logo(), "color", AugmentConfig(n_variants=9, size=64), key="k")
    assert _bytes(few) == _bytes(many)[:6]


def test_deterministic_across_processes():
    code = ("import numpy as np, hashlib; from PIL import Image, ImageDraw; from logoid.augment import *;"
            "img = Image.new('RGB', (40, 30), (0, 0, 0)); ImageDraw.Draw(img).rectangle((5, 5, 30, 20), fill=(255,)*3);"
            "v = make_variants(img, 'bw', AugmentConfig(n_variants=4, size=32), key='x');"
            "print(hashlib.sha256(b''.join(np.asarray(i).tobytes() for i in v)).hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1


def test_bw_scheme_recolours_light_pixels():
    cfg = AugmentConfig(n_variants=12, size=64, p_bw_light=1.0, p_bw_dark=0.0, p_bw_both=0.0, p_invert=0.0,
                        p_texture=0.0, saturation=0.0, hue=0.0, brightness=0.0, contrast=0.0, noise_sigma=0,
                        p_blur=0.0, degrees=0, translate=0, shear=0, scale_min=1, scale_max=1, p_perspective=0)
    out = make_variants(_bw_logo(), "bw", cfg, key="k")
    base = np.asarray(out[0]).astype(int)
    coloured = 0
    light, dark = base.mean(axis=2) > 200, base.mean(axis=2) < 20
    for v in out[1:]:
        arr = np.asarray(v).astype(int)
        ink = arr[light].mean(axis=0)
        assert arr[dark].max() < 40  # dark pixels stay dark
        coloured += (ink.max() - ink.min()) > 25 or ink.mean() < 200  # light pixels got a colour
    assert coloured >= 9


def test_bw_scheme_dark_recolour_changes_background():
    cfg = AugmentConfig(n_variants=8, size=64, p_bw_light=0.0, p_bw_dark=1.0, p_bw_both=0.0, p_invert=0.0,
                        p_texture=0.0, noise_sigma=0, p_blur=0)
    out = make_variants(_bw_logo(), "bw", cfg, key="k")
    corners = [np.asarray(v)[0, 0].astype(int) for v in out[1:]]
    assert sum(c.sum() > 60 for c in corners) >= 5  # black background became a (shirt) colour


def test_geometric_fill_replicates_background_not_black():
    cfg = AugmentConfig(n_variants=6, size=64, scale_min=0.6, scale_max=0.6, p_invert=0.0, brightness=0,
                        contrast=0, saturation=0, hue=0, noise_sigma=0, p_blur=0)
    for v in make_variants(_colour_logo(), "color", cfg, key="k")[1:]:
        assert np.asarray(v)[0, 0].min() > 200  # light background, never black corners


def test_config_roundtrip_hash_and_validation():
    cfg = AugmentConfig(seed=3)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.config_hash() == AugmentConfig(seed=3).config_hash() != AugmentConfig().config_hash()
    with pytest.raises(ConfigError):
        AugmentConfig(n_variants=0)
    with pytest.raises(ConfigError):
        AugmentConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError):
        make_variants(_colour_logo(), "sepia", SMALL, key="k")


def test_float32_light_maps_are_new_configs_and_saved_ones_keep_float64_and_their_hash():
    """Light maps in float32 (the default): the black-and-white variants move by a few levels, colour ones not at
    all; a config saved before the key existed made float64 ones, and keeps its hash, so its cached vectors."""
    saved = {k: v for k, v in AugmentConfig().to_dict().items() if k != "bw_float64"}
    old = AugmentConfig.from_dict(saved)
    assert old.bw_float64 and not AugmentConfig().bw_float64
    assert old.config_hash() == "2e36eb3f6787c1f1"  # AugmentConfig().config_hash() before float32 light maps
    assert AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig() != old
    assert AugmentConfig().config_hash() != old.config_hash()
    new_cfg, old_cfg = AugmentConfig(n_variants=8, size=64), AugmentConfig(n_variants=8, size=64, bw_float64=True)
    assert _bytes(make_variants(_colour_logo(), "color", new_cfg, "k")) == \
        _bytes(make_variants(_colour_logo(), "color", old_cfg, "k"))
    new = [np.asarray(v, np.int16) for v in make_variants(_bw_logo(), "bw", new_cfg, "k")]
    old_v = [np.asarray(v, np.int16) for v in make_variants(_bw_logo(), "bw", old_cfg, "k")]
    assert np.array_equal(new[0], old_v[0])  # the original
    assert max(int(np.abs(a - b).max()) for a, b in zip(new, old_v, strict=True)) <= 8
    assert any(not np.array_equal(a, b) for a, b in zip(new, old_v, strict=True))  # the flag is used


def test_contact_sheet_and_preview(tmp_path):
    imgs = make_variants(_colour_logo(), "color", SMALL, key="k")
    sheet = contact_sheet(imgs, cols=4, cell=40, labels=[str(i) for i in range(6)])
    assert sheet.size == (4 * 44 + 4, 2 * (44 + 14) + 4)
    src = tmp_path / "logo.png"
    _bw_logo().save(src)
    out = preview(src, SMALL, tmp_path / "sheet.png")
    assert Image.open(out).size[0] > 0
    with pytest.raises(ConfigError):
        contact_sheet([])
