"""Big photos decoded straight to the working size: the size chosen, and every coordinate back in the photo's px."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from synth import background, paste, text_logo
from synth import photo as as_photo

from logoid.core.imageio import geometry, load_image, resize_scaled
from logoid.engine.local import ExtractConfig, extract, finest_side
from logoid.engine.ocr import OcrConfig, TextLine, TextReader


def _jpeg(tmp_path, size, name="p.jpg", **save):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (size[1] // 50 + 1, size[0] // 50 + 1, 3), dtype=np.uint8)
    p = tmp_path / name
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(p, quality=90, **save)
    return p


def test_jpeg_is_decoded_at_the_smallest_dct_scale_that_keeps_both_sides(tmp_path):
    p = _jpeg(tmp_path, (4000, 3000))
    assert load_image(p, min_size=(1920, 320)).size == (2000, 1500)  # 1/2
    assert load_image(p, min_size=(800, 320)).size == (1000, 750)  # 1/4
    assert load_image(p, min_size=(400, 320)).size == (500, 375)  # 1/8, the most JPEG allows
    assert load_image(p, min_size=(1001, 320)).size == (2000, 1500)  # never below: 1/4 would be 1000
    assert load_image(p, min_size=(800, 1000)).size == (2000, 1500)  # the short side counts too
    img = load_image(p, min_size=(800, 320))
    geo = geometry(img)
    assert geo.reduced and geo.original_size == (4000, 3000) and geo.factor == (4.0, 4.0)


def test_small_photo_is_decoded_as_before(tmp_path):
    p = _jpeg(tmp_path, (1200, 900))
    full, asked = load_image(p), load_image(p, min_size=(800, 320))
    assert asked.size == (1200, 900) and not geometry(asked).reduced
    assert np.array_equal(np.asarray(full), np.asarray(asked))


def test_other_formats_shrink_by_a_whole_factor_after_decoding(tmp_path):
    p = tmp_path / "p.png"
    Image.open(_jpeg(tmp_path, (3000, 2000))).save(p)
    img = load_image(p, min_size=(1000, 320))
    assert img.size == (1000, 667) and geometry(img).factor == pytest.approx((3.0, 3.0))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "16-bit PNG"])
def test_geometry_maps_decoded_pixels_to_the_upright_photo(fmt, orientation, tmp_path):
    # A bright square in an odd-sized photo (partial blocks at the edges), stored turned by each EXIF orientation;
    # JPEG shrinks while decoding, an 8-bit PNG right after, a 16-bit one once it is RGB.
    arr = np.zeros((757, 1003), np.uint8)
    arr[40:64, 88:112] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / ("m.jpg" if fmt == "JPEG" else "m.png")
    img = Image.fromarray(arr.astype(np.uint16) * 257) if fmt == "16-bit PNG" else Image.fromarray(arr).convert("RGB")
    img.save(p, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))

    def centre(img):
        a = np.asarray(img.convert("L"), np.float64)
        ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
        return np.array([(xs * a).sum(), (ys * a).sum()]) / a.sum()

    full = load_image(p)
    small = load_image(p, min_size=(120, 60))
    assert max(small.size) < 200 and geometry(small).original_size == full.size
    # Both shrink by 8 here; the square's edges on multiples of 8 keep PNG's box average exact.
    assert np.abs(geometry(small).to_original(centre(small))[0] - centre(full)).max() < 0.05


def test_resizing_a_reduced_decode_gives_the_full_decodes_working_image(tmp_path):
    p = _jpeg(tmp_path, (4000, 3000))
    full, small = load_image(p), load_image(p, min_size=(800, 320))
    a = np.asarray(resize_scaled(full.convert("L"), 0.2), np.float32)
    b = np.asarray(resize_scaled(small.convert("L"), 0.2, geometry(small)), np.float32)
    assert a.shape == b.shape == (600, 800) and np.abs(a - b).mean() < 0.5


def test_keypoints_of_a_reduced_decode_are_in_the_photos_pixels(tmp_path):
    quad = np.array(((150, 180), (560, 150), (590, 330), (170, 360)), np.float64) * 4
    logo = text_logo("DEFTONES", seed=2).resize((1680, 640), Image.Resampling.BICUBIC)
    p = tmp_path / "big.jpg"
    as_photo(paste(background((3200, 2400), seed=0), logo, quad)[0]).save(p, quality=90)
    cfg = ExtractConfig()
    full, small = load_image(p), load_image(p, min_size=(finest_side(cfg), 320))
    assert small.size == (800, 600)
    a, b = extract(full, cfg), extract(small, cfg)
    assert (a.size, a.scale) == (b.size, b.scale) == ((3200, 2400), 0.25)
    # The same keypoints, at the same places: each of the reduced decode's has one of the full decode's near it.
    d = np.linalg.norm(b.xy[:, None, :] - a.xy[None, :, :], axis=2).min(axis=1)
    assert np.median(d) < 0.5 and abs(len(a) - len(b)) < 0.1 * len(a)


def test_finer_levels_are_read_from_a_reduced_decode_too(tmp_path):
    p = _jpeg(tmp_path, (6400, 4800))
    cfg = ExtractConfig(tile_levels=1)
    assert finest_side(cfg) == 1600
    small = load_image(p, min_size=(finest_side(cfg), 320))
    assert small.size == (1600, 1200)
    f = extract(small, cfg)
    assert f.size == (6400, 4800) and set(np.unique(f.kp_scale).round(4)) == {0.125, 0.25}
    assert f.xy[:, 0].max() > 3200 and f.xy[:, 1].max() > 2400  # spread over the whole photo, in its px


def test_text_boxes_and_regions_are_in_the_photos_pixels(tmp_path):
    """A reader given a reduced decode takes regions and gives boxes in the photo's px."""
    arr = np.full((3000, 4000, 3), 230, np.uint8)
    arr[1200:1400, 2000:2800] = 20  # the "lettering"
    p = tmp_path / "sign.jpg"
    Image.fromarray(arr).save(p, quality=95)
    small = load_image(p, min_size=(960, 320))
    assert small.size == (1000, 750)

    def fake_engine(work, use_cls=False):  # reads one line wherever the dark block is
        ys, xs = np.nonzero(work.min(axis=2) < 100)
        if not len(xs):
            return [], None
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        return [([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "SIGN", 0.99)], None

    reader = TextReader(OcrConfig(try_inverted=False))
    reader._engine = fake_engine
    lines = reader.read(small)
    assert [ln.text for ln in lines] == ["SIGN"] and isinstance(lines[0], TextLine)
    assert np.abs(lines[0].box - [[2000, 1200], [2800, 1200], [2800, 1400], [2000, 1400]]).max() < 6
    # A region given in the photo's px is cut from the right place of the decoded image.
    region = [[1900, 1100], [2900, 1100], [2900, 1500], [1900, 1500]]
    lines = reader.read(small, regions=[region])
    assert len(lines) == 1 and np.abs(lines[0].box - [[2000, 1200], [2800, 1200], [2800, 1400], [2000, 1400]]).max() < 6
