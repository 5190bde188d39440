"""References also enrolled as a small, blurred copy (``ExtractConfig.ref_small_side``): a print that is small in the
photo is found with more inliers, the copy's keypoints are in the reference's own pixels, and homes built before the
setting existed keep their features."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from synth import background, paste, text_logo
from synth import photo as to_photo

from logoid.core.errors import ConfigError
from logoid.engine.local import ExtractConfig, extract, extract_reference
from logoid.identify.match import LocalConfig, match_local
from logoid.index.descriptors import DescriptorIndex

pytest.importorskip("cv2")

BASE = dict(ref_long_side=400, query_long_side=640, ref_max_keypoints=800, query_max_keypoints=2000)
MAYHEM = text_logo("MAYHEM", (420, 160), 72, 1)
REFS = {11: MAYHEM, 22: text_logo("DEFTONES", (460, 140), 58, 2), 33: text_logo("KORN", (300, 200), 90, 3)}


def _cfg(small: int) -> ExtractConfig:
    return ExtractConfig(**BASE, ref_small_side=small)


def _index(cfg: ExtractConfig, refs=REFS) -> DescriptorIndex:
    return DescriptorIndex.build(((i, extract_reference(img, cfg)) for i, img in refs.items()), feature_config=cfg)


def _small_print(width: float, seed: int = 0) -> tuple[Image.Image, list[tuple[float, float]]]:
    """MAYHEM printed ``width`` px wide in a 400×300 photo (slightly skewed)."""
    h = width * MAYHEM.height / MAYHEM.width
    x, y = 120 + 10 * seed, 100
    quad = [(x, y), (x + width, y + 3), (x + width - 2, y + h + 2), (x + 1, y + h)]
    arr, _ = paste(background((400, 300), seed=seed), MAYHEM, quad)
    return to_photo(arr), quad


def test_small_copy_adds_keypoints_in_reference_pixels():
    sharp = extract(MAYHEM, _cfg(0), "ref")
    normal, inverted = extract_reference(MAYHEM, _cfg(70))
    assert len(normal) > len(sharp) and len(inverted) > len(extract(MAYHEM, _cfg(0), "ref", invert=True))
    np.testing.assert_array_equal(normal.desc[: len(sharp)], sharp.desc)  # the sharp copy's keypoints come first
    extra = normal.subset(np.arange(len(sharp), len(normal)))
    assert extra.xy.min() > -1 and (extra.xy.max(axis=0) < np.array(MAYHEM.size)).all()
    # The blurred copy's keypoints alone locate a small print: their coordinates are the reference's own pixels
    # (a reference 3× the working size, so a copy read in the wrong pixels would put the outline far off).
    big = MAYHEM.resize((1260, 480), Image.Resampling.LANCZOS)
    n_sharp = len(extract(big, _cfg(0), "ref"))
    big_normal = extract_reference(big, _cfg(70))[0]
    extra = big_normal.subset(np.arange(n_sharp, len(big_normal)))
    photo, quad = _small_print(90)
    only = DescriptorIndex.build([(11, [extra])], feature_config=_cfg(70))
    res = match_local(extract(photo, _cfg(70), "query"), only, LocalConfig(_cfg(70)))
    assert res and res[0].image_id == 11 and res[0].inliers >= 8
    err = res[0].polygon - np.float64(quad)
    # Coarse keypoints: the centre is exact, a corner far from them is extrapolated (within 11 % of the print width).
    assert np.linalg.norm(err.mean(axis=0)) < 3 and np.linalg.norm(err, axis=1).max() < 10


def test_small_print_gets_more_inliers_with_the_small_copy():
    idx = {s: _index(_cfg(s)) for s in (0, 70)}
    for width, seed in ((55, 0), (60, 1), (70, 2)):
        photo, _ = _small_print(width, seed)
        got = {}
        for s, di in idx.items():
            res = match_local(extract(photo, _cfg(s), "query"), di, LocalConfig(_cfg(s)))
            assert res and res[0].image_id == 11
            got[s] = res[0].inliers
        assert got[70] > got[0], (width, got)


def test_images_smaller_than_the_copy_or_blank_get_no_copy():
    tiny = MAYHEM.resize((60, 23))
    assert [len(f) for f in extract_reference(tiny, _cfg(70))] == [len(f) for f in extract_reference(tiny, _cfg(0))]
    assert [len(f) for f in extract_reference(Image.new("RGB", (300, 200), "white"), _cfg(70))] == [0, 0]


def test_setting_off_keeps_old_feature_hash_and_old_sidecars_keep_it_off():
    # The hash the default configuration had before the setting existed: caches and homes built then stay valid.
    assert ExtractConfig(ref_small_side=0, ref_chroma_keypoints=0).ref_hash() == "a1309bdfb97dabe5"
    assert ExtractConfig(ref_small_side=70).ref_hash() != ExtractConfig(ref_small_side=0).ref_hash()
    old = ExtractConfig().to_dict()
    del old["ref_small_side"]
    assert ExtractConfig.from_dict(old).ref_small_side == 0
    assert ExtractConfig.from_dict(ExtractConfig().to_dict()) == ExtractConfig()
    with pytest.raises(ConfigError):
        ExtractConfig(ref_small_side=-1)



def test_palette_reference_gets_a_blurred_copy_like_its_rgb_version():
    # PIL resizes palette images by nearest neighbour; the small copy must be blurred like any other.
    pal = MAYHEM.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    got, want = extract_reference(pal, _cfg(50))[0], extract_reference(pal.convert("RGB"), _cfg(50))[0]
    np.testing.assert_array_equal(got.desc, want.desc)
