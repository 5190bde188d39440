"""Colour-opponent keypoints (``ExtractConfig.ref_chroma_keypoints`` / ``query_chroma_keypoints``): a print whose
colours differ from the shirt in hue but hardly in lightness is found, grey logos gain nothing, and homes built
before the setting keep their features."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from synth import background, homography, text_logo

from logoid.core.errors import ConfigError
from logoid.engine.local import ExtractConfig, extract, extract_reference
from logoid.identify.match import LocalConfig, match_local
from logoid.index.descriptors import DescriptorIndex

cv2 = pytest.importorskip("cv2")

BASE = dict(ref_long_side=400, query_long_side=640, ref_max_keypoints=800, query_max_keypoints=2000)
QUAD = [(150, 180), (560, 150), (590, 330), (170, 360)]
# Teal ink on an orange shirt, the same grey to within one level (0.299 R + 0.587 G + 0.114 B): invisible to grey SIFT.
INK, SHIRT = (60, 170, 190), (230, 120, 30)


def _cfg(chroma: int) -> ExtractConfig:
    return ExtractConfig(**BASE, ref_chroma_keypoints=chroma // 2, query_chroma_keypoints=chroma)


def _in_colours(logo: Image.Image, ink=INK, paper=SHIRT) -> Image.Image:
    t = (np.asarray(logo.convert("L"), np.float32) / 255)[..., None]
    return Image.fromarray((t * np.float32(paper) + (1 - t) * np.float32(ink)).round().astype(np.uint8))


def _colour_photo(logo: Image.Image, quad=QUAD, seed: int = 0) -> Image.Image:
    bg = np.repeat(background(seed=seed)[..., None], 3, axis=2)
    H = homography(logo.size, quad)
    size = (bg.shape[1], bg.shape[0])
    warped = cv2.warpPerspective(np.asarray(logo), H, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full(logo.size[::-1], 255, np.uint8), H, size, flags=cv2.INTER_NEAREST) > 0
    bg[mask] = warped[mask]
    return Image.fromarray(bg)


LOGOS = {11: _in_colours(text_logo("MAYHEM", seed=1)), 22: _in_colours(text_logo("DEFTONES", (460, 140), 58, 2)),
         33: text_logo("KORN", (300, 200), 90, 3)}


def _index(cfg: ExtractConfig) -> DescriptorIndex:
    return DescriptorIndex.build(((i, extract_reference(img, cfg)) for i, img in LOGOS.items()), feature_config=cfg)


def test_isoluminant_print_is_found_only_with_chroma_keypoints():
    grey = np.asarray(LOGOS[11].convert("L"), np.int16)
    assert int(grey.max()) - int(grey.min()) < 8  # nothing for grey SIFT to see
    photo = _colour_photo(LOGOS[11])
    off = match_local(extract(photo, _cfg(0), "query"), _index(_cfg(0)), LocalConfig(_cfg(0)))
    assert not any(r.image_id == 11 for r in off)
    on = match_local(extract(photo, _cfg(600), "query"), _index(_cfg(600)), LocalConfig(_cfg(600)))
    assert on and on[0].image_id == 11 and on[0].inliers >= 10
    assert np.linalg.norm(on[0].polygon - np.float64(QUAD), axis=1).max() < 8


def test_grey_logos_and_inverted_variants_get_no_chroma_keypoints():
    korn = LOGOS[33]
    for a, b in zip(extract_reference(korn, _cfg(600)), extract_reference(korn, _cfg(0)), strict=True):
        np.testing.assert_array_equal(a.desc, b.desc)
    # Colour logo: the normal variant gains keypoints (after the grey ones), the inverted one is unchanged.
    (n_on, i_on), (n_off, i_off) = extract_reference(LOGOS[22], _cfg(600)), extract_reference(LOGOS[22], _cfg(0))
    assert len(n_on) > len(n_off)
    np.testing.assert_array_equal(i_on.desc, i_off.desc)
    # Photos likewise: a grey photo reads the same, chroma keypoints are capped per channel and lie in the photo.
    grey_photo = Image.fromarray(background(seed=3)).convert("RGB")
    np.testing.assert_array_equal(extract(grey_photo, _cfg(600), "query").desc, extract(grey_photo, _cfg(0), "query").desc)
    photo = _colour_photo(LOGOS[22], seed=4)
    base, more = extract(photo, _cfg(0), "query"), extract(photo, ExtractConfig(**BASE, query_chroma_keypoints=7))
    assert len(base) < len(more) <= len(base) + 14
    assert (more.xy >= -1).all() and (more.xy < np.array(photo.size)).all()


def test_setting_off_keeps_old_hashes_and_old_sidecars_keep_it_off():
    assert ExtractConfig(ref_small_side=0, ref_chroma_keypoints=0).ref_hash() == "a1309bdfb97dabe5"
    assert ExtractConfig(ref_chroma_keypoints=300).ref_hash() != ExtractConfig(ref_chroma_keypoints=0).ref_hash()
    q0 = ExtractConfig(query_chroma_keypoints=0)
    assert ExtractConfig(query_chroma_keypoints=500).query_hash() != q0.query_hash()
    assert ExtractConfig(query_chroma_keypoints=500).ref_hash() == q0.ref_hash()  # photos' setting: references stay
    # The chroma read size counts only while chroma keypoints are on.
    assert ExtractConfig(query_chroma_keypoints=0, query_chroma_long_side=800).query_hash() == q0.query_hash()
    on = ExtractConfig(query_chroma_keypoints=500)
    assert ExtractConfig(query_chroma_keypoints=500, query_chroma_long_side=800).query_hash() != on.query_hash()
    old = ExtractConfig().to_dict()
    del old["ref_chroma_keypoints"], old["query_chroma_keypoints"]
    back = ExtractConfig.from_dict(old)
    assert back.ref_chroma_keypoints == 0 and back.query_chroma_keypoints == 0
    with pytest.raises(ConfigError):
        ExtractConfig(query_chroma_keypoints=-1)


def test_repeats_are_near_in_place_and_in_descriptor_or_its_inverse():
    from logoid.engine.local import INVERTED_ORDER, Features
    from logoid.engine.local.extract import _new_only

    rng = np.random.default_rng(0)

    def unit(n):
        d = rng.random((n, 128)).astype(np.float32)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    grey = Features(rng.uniform(0, 300, (500, 2)).astype(np.float32), unit(500), (300, 300))
    # Chroma keypoints: 0-99 repeat a grey one (same descriptor), 100-199 repeat its inverse, 200-299 sit on a grey
    # keypoint with an unrelated descriptor, 300-399 lie anywhere with descriptors of other grey keypoints.
    xy = np.concatenate([grey.xy[:300] + rng.uniform(-1, 1, (300, 2)), rng.uniform(-5, 305, (100, 2))])
    desc = np.concatenate([grey.desc[:100], grey.desc[100:200][:, INVERTED_ORDER], unit(100), grey.desc[300:400]])
    chroma = Features(xy.astype(np.float32), desc, (300, 300))
    kept = _new_only(chroma, grey, 1.5, 0.25)
    np.testing.assert_array_equal(kept.xy, chroma.xy[200:])  # the repeats go, the rest stay
    assert len(_new_only(chroma, grey, 0.01, 0.25)) == 400  # the repeats sit up to 1.4 px away
    assert len(_new_only(chroma, grey, 1.5, 0.0)) == 200  # (the copies and inverses here are exact)
    assert len(_new_only(chroma, Features(size=(300, 300)), 3.0, 0.25)) == 400


def test_chroma_dedup_drops_repeats_of_grey_keypoints_and_keeps_isoluminant_prints():
    dedup = ExtractConfig(**BASE, ref_chroma_keypoints=300, query_chroma_keypoints=600, chroma_dedup_px=3)
    # Red text on white: a* sees the same edges as grey (opposite polarity), so most of its keypoints repeat the
    # grey ones.
    red = _in_colours(text_logo("DEFTONES", (460, 140), 58, 2), ink=(200, 20, 20), paper=(255, 255, 255))
    grey_only = extract(red, _cfg(0), "ref")
    full = extract(red, ExtractConfig(**BASE, ref_chroma_keypoints=300, chroma_dedup_px=0), "ref")
    kept = extract(red, dedup, "ref")
    assert len(grey_only) <= len(kept) < len(full)
    np.testing.assert_array_equal(kept.desc[:len(grey_only)], grey_only.desc)  # grey keypoints all stay
    assert len(kept) - len(grey_only) < 0.5 * (len(full) - len(grey_only))
    # A print grey SIFT cannot see keeps its chroma keypoints, and is still found.
    photo = _colour_photo(LOGOS[11])
    on = match_local(extract(photo, dedup, "query"), _index(dedup), LocalConfig(dedup))
    assert on and on[0].image_id == 11 and on[0].inliers >= 10


def test_chroma_dedup_off_keeps_hashes_and_old_sidecars():
    # The hashes of homes built before the setting existed (75 / 1000 chroma keypoints, no dedup).
    on = ExtractConfig(ref_chroma_keypoints=75, query_chroma_keypoints=1000, query_chroma_long_side=400,
                       chroma_dedup_px=0)
    assert (on.ref_hash(), on.query_hash()) == ("5ec1c91acddb3adb", "c499bccc754d53e1")
    d = ExtractConfig(ref_chroma_keypoints=75, query_chroma_keypoints=1000, query_chroma_long_side=400,
                      chroma_dedup_px=2)
    assert d.ref_hash() != on.ref_hash() and d.query_hash() != on.query_hash()
    old = d.to_dict()
    del old["chroma_dedup_px"]
    assert ExtractConfig.from_dict(old).chroma_dedup_px == 0
    with pytest.raises(ConfigError):
        ExtractConfig(chroma_dedup_px=-1)
