"""Bad and unusual image files: one clear error naming the file, or a correct RGB image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from logoid.core.errors import ImageError
from logoid.core.imageio import is_black_and_white, load_image


def test_missing_empty_and_non_image(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file") as e:
        load_image(empty)
    assert str(empty) in str(e.value)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)


def test_symlink_loop_and_broken_link_say_so(tmp_path):
    (tmp_path / "a.jpg").symlink_to("b.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "a.jpg")
    assert e.value.reason == "symlink loop"  # not "no such file": the file is there, the link goes round
    (tmp_path / "c.jpg").symlink_to("gone.jpg")
    with pytest.raises(ImageError) as e:
        load_image(tmp_path / "c.jpg")
    assert e.value.reason == "broken symlink: its target gone.jpg does not exist"


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.new("RGB", (200, 200), (10, 200, 30)).save(p, quality=90)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(p)


def test_decompression_bomb_and_override(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (2000, 2000)).save(p)
    with pytest.raises(ImageError, match="pixel limit") as e:
        load_image(p, max_pixels_=1_000_000)
    assert "LOGOID_MAX_PIXELS" in str(e.value) and "--max-pixels" not in str(e.value)  # no such flag
    assert load_image(p, max_pixels_=5_000_000).size == (2000, 2000)


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(p, exif=exif)
    assert load_image(p).size == (20, 40)


def test_cmyk_16bit_grey_and_palette(tmp_path):
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(cmyk)
    r, g, b = load_image(cmyk).getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60  # CMYK red stays red
    grey16 = tmp_path / "g16.png"
    arr = np.linspace(0, 65535, 100, dtype=np.uint16).reshape(10, 10)
    Image.fromarray(arr).save(grey16)
    out = np.asarray(load_image(grey16))
    assert out.shape == (10, 10, 3) and out.max() == 255 and out.min() == 0  # full range, not clipped at 255
    pal = tmp_path / "p.gif"
    Image.new("P", (10, 10), 3).save(pal)
    assert load_image(pal).mode == "RGB"


def test_transparent_logo_gets_plain_contrasting_background(tmp_path):
    # A dark logo on a transparent background whose hidden pixels are noise.
    rng = np.random.default_rng(0)
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 255, (50, 50, 3))
    rgba[20:30, 10:40] = (20, 20, 20, 255)
    p = tmp_path / "logo.png"
    Image.fromarray(rgba, "RGBA").save(p)
    out = np.asarray(load_image(p))
    assert (out[0, 0] == 255).all() and (out[49, 49] == 255).all()  # background white, no noise
    assert (out[25, 25] == 20).all()
    # A light logo goes onto black so it stays visible.
    rgba[20:30, 10:40] = (250, 250, 250, 255)
    Image.fromarray(rgba, "RGBA").save(p)
    out = np.asarray(load_image(p))
    assert (out[0, 0] == 0).all() and (out[25, 25] == 250).all()


def test_black_and_white_detection():
    bw = Image.new("RGB", (30, 30), "white")
    bw.paste((0, 0, 0), (5, 5, 20, 20))
    assert is_black_and_white(bw)
    colour = bw.copy()
    colour.paste((200, 30, 30), (0, 0, 30, 10))
    assert not is_black_and_white(colour)
