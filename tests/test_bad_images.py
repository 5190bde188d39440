"""Bad and odd image files, generated here: each is answered right, or refused in one line naming the file and why.

The corpus is made in tmp_path (no binary fixtures). Files that hold a usable picture of a catalog logo must be
identified as that band by a tiny identification (fake ``tiny-test`` model, global + local channels); files that
hold no picture must be refused by ``logoid query`` with exit code 1 and exactly one line on stderr.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from synth import background, paste, photo_of, text_logo
from synth import photo as as_photo

from logoid.catalog import Catalog
from logoid.cli import cli
from logoid.core.imageio import DEFAULT_MAX_PIXELS, load_image, scan_images
from logoid.core.paths import Home
from logoid.identify import Identifier, IdentifyConfig

BANDS = {"Mayhem": ("MAYHEM", 1), "Deftones": ("DEFTONES", 2), "Korn": ("KORN", 3)}
CH = ("global", "local")
READ_HINT = "use JPEG, PNG, WebP, BMP, GIF or TIFF"
REEXPORT = "re-download or re-export the image"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-images")
    for band, (text, seed) in BANDS.items():
        p = root / f"{band}.png"
        text_logo(text, seed=seed).save(p)
        assert run("--home", root / "home", "add-band", "--name", band, "--image", p).exit_code == 0
    res = run("--home", root / "home", "build-index", "--model", "tiny-test", "--variants", "3")
    assert res.exit_code == 0, res.output
    return root / "home"


@pytest.fixture(scope="module")
def identifier(home):
    h = Home.resolve(home)
    return Identifier(h, Catalog.open(h), config=IdentifyConfig(channels=CH))


QUAD = ((150, 180), (560, 150), (590, 330), (170, 360))  # where the logo lies in the 800x600 photo


@pytest.fixture(scope="module")
def photo():
    """An 800x600 photo of the Deftones logo printed in perspective on a cluttered background."""
    return photo_of(text_logo("DEFTONES", seed=2), quad=QUAD)


@pytest.fixture(scope="module")
def big_photo():
    """The same scene shot at 3200x2400 (4x), with its own full-resolution clutter and noise."""
    logo = text_logo("DEFTONES", seed=2).resize((1680, 640), Image.Resampling.BICUBIC)
    return as_photo(paste(background((3200, 2400), seed=0), logo, np.asarray(QUAD) * 4)[0])


# ---- files that hold a picture: the right answer --------------------------------------------------------------
def _png_named_jpg(photo, d):
    photo.save(d / "really-a-png.jpg", format="PNG")
    return d / "really-a-png.jpg"


def _cmyk_jpeg(photo, d):
    photo.convert("CMYK").save(d / "cmyk.jpg", quality=92)
    return d / "cmyk.jpg"


def _png_16bit(photo, d):
    arr = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(arr).save(d / "grey16.png")
    assert Image.open(d / "grey16.png").mode.startswith("I;16")
    return d / "grey16.png"


def _palette_with_transparency(photo, d):
    pal = photo.quantize(63)
    arr = np.asarray(pal).copy()
    arr[:30, :] = arr[-30:, :] = 63  # a see-through frame: palette index 63 is the transparent one
    out = Image.fromarray(arr, "P")
    out.putpalette(pal.getpalette()[: 63 * 3] + [255, 0, 255])
    out.save(d / "palette.png", transparency=63)
    return d / "palette.png"


def _grey_alpha(photo, d):
    la = photo.convert("LA")
    alpha = np.full((photo.height, photo.width), 255, np.uint8)
    alpha[:, :40] = 0  # a transparent strip at the left edge
    la.putalpha(Image.fromarray(alpha))
    la.save(d / "la.png")
    return d / "la.png"


def _exif_rotated(photo, d):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise; viewers turn it clockwise
    photo.transpose(Image.Transpose.ROTATE_90).save(d / "rotated.jpg", exif=exif, quality=92)
    return d / "rotated.jpg"


def _progressive(photo, d):
    photo.save(d / "progressive.jpg", progressive=True, quality=92)
    return d / "progressive.jpg"


def _animated_gif(photo, d):
    blank = Image.new("RGB", photo.size, (128, 128, 128))
    photo.save(d / "anim.gif", save_all=True, append_images=[blank], duration=100, loop=0)
    assert Image.open(d / "anim.gif").n_frames == 2
    return d / "anim.gif"


def _multipage_tiff(photo, d):
    blank = Image.new("RGB", photo.size, (128, 128, 128))
    photo.save(d / "pages.tiff", save_all=True, append_images=[blank])
    assert Image.open(d / "pages.tiff").n_frames == 2
    return d / "pages.tiff"


def _webp(photo, d):
    photo.save(d / "photo.webp", quality=92)
    return d / "photo.webp"


def _mpo(photo, d):
    # a phone's JPEG with a second picture in it (MPO); the first is the photo
    photo.save(d / "phone.jpg", format="MPO", save_all=True, append_images=[photo.resize((160, 120))])
    assert Image.open(d / "phone.jpg").format == "MPO"
    return d / "phone.jpg"


def _bmp(photo, d):
    photo.save(d / "photo.bmp")
    return d / "photo.bmp"


def _grey_jpeg_upper_suffix(photo, d):
    photo.convert("L").save(d / "GREY.JPG", quality=92)
    return d / "GREY.JPG"


def _big_jpeg(big_photo, d):
    big_photo.save(d / "big.jpg", quality=90)  # decoded at a quarter of its size
    return d / "big.jpg"


READABLE = {
    "png named .jpg": _png_named_jpg, "CMYK JPEG": _cmyk_jpeg, "16-bit PNG": _png_16bit,
    "palette PNG with transparency": _palette_with_transparency, "grey + alpha (LA) PNG": _grey_alpha,
    "EXIF-rotated JPEG": _exif_rotated, "progressive JPEG": _progressive, "animated GIF": _animated_gif,
    "multi-page TIFF": _multipage_tiff, "WebP": _webp, "BMP": _bmp, "MPO (phone JPEG with two pictures)": _mpo,
    "grey JPEG, upper-case suffix": _grey_jpeg_upper_suffix,
}


@pytest.mark.parametrize("kind", [*READABLE, "3200x2400 JPEG"])
def test_odd_but_readable_images_are_answered_right(kind, identifier, photo, big_photo, tmp_path):
    path = _big_jpeg(big_photo, tmp_path) if kind == "3200x2400 JPEG" else READABLE[kind](photo, tmp_path)
    ans = identifier.identify(path)
    assert ans.accepted and ans.best is not None and ans.best.name == "Deftones", kind


def test_outlines_stay_in_the_files_own_pixels(identifier, photo, big_photo, tmp_path):
    """A rotated file is answered upright; a big one, decoded at a quarter of its size, in its own pixels."""
    rotated = identifier.identify(_exif_rotated(photo, tmp_path)).best.polygon
    assert np.abs(np.asarray(rotated) - QUAD).max() < 2
    big = _big_jpeg(big_photo, tmp_path)
    assert identifier.decode_size() == (800, 320) and load_image(big, min_size=(800, 320)).size == (800, 600)
    outline = identifier.identify(big).best.polygon
    assert np.abs(np.asarray(outline) / 4 - QUAD).max() < 2


def test_blank_and_one_pixel_images_are_unknown(identifier, tmp_path):
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (300, 200), (255, 0, 0, 0)).save(clear)
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (0, 0, 0)).save(dot)
    for p in (clear, dot):
        ans = identifier.identify(p)
        assert not ans.accepted and ans.label is None, p
        assert all(c.inliers == 0 for c in ans.candidates)  # nothing to verify on a blank or 1-pixel image


# ---- files that hold no picture: one line naming the file and why ---------------------------------------------
def _png_header(w: int, h: int) -> bytes:
    """A tiny PNG that declares w x h pixels (a decompression bomb's header, with almost no data behind it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _truncated(photo, d, name, **save):
    p = d / name
    photo.save(p, **save)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


REFUSED = {
    # kind: (make(photo, folder) -> path, reason and hint after "error: PATH: ")
    "zero bytes": (lambda ph, d: _write(d / "zero.jpg", b""), f"empty file (0 bytes) ({REEXPORT})"),
    "text file named .jpg": (lambda ph, d: _write(d / "notes.jpg", b"shopping list: strings, picks\n"),
                             f"a text file, not an image ({READ_HINT})"),
    "HTML page named .png": (lambda ph, d: _write(d / "logo.png", b"<!DOCTYPE html>\n<html><body>404</body></html>"),
                             "an HTML page, not an image (save the image itself, not the web page)"),
    "SVG": (lambda ph, d: _write(d / "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'),
            "SVG is not supported: convert it to PNG"),
    "SVG named .png": (lambda ph, d: _write(d / "vector.png", b'<?xml version="1.0"?>\n<svg width="8" height="8"/>'),
                       "SVG is not supported: convert it to PNG"),
    "PDF named .jpg": (lambda ph, d: _write(d / "scan.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
                       "a PDF, not an image: export its page as PNG"),
    "HEIC": (lambda ph, d: _write(d / "phone.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64),
             "HEIC is not supported: convert it to JPEG"),
    "random bytes named .png": (lambda ph, d: _write(d / "noise.png", bytes(range(256)) * 8),
                                f"not an image or an unsupported format ({READ_HINT})"),
    "decompression bomb": (lambda ph, d: _write(d / "bomb.png", _png_header(40_000, 40_000)),
                           f"40000x40000 is over the pixel limit of {DEFAULT_MAX_PIXELS:,} (raise the limit with the "
                           "environment variable LOGOID_MAX_PIXELS if the file is trusted)"),
    "folder named x.jpg": (lambda ph, d: _mkdir(d / "x.jpg"),
                           "a folder, not an image (pass an image file, or use `logoid batch` for folders)"),
    "symlink loop": (lambda ph, d: _loop(d), "symlink loop (fix or remove the link)"),
    "dangling symlink": (lambda ph, d: _link(d / "gone.jpg", d / "dangling.jpg"),
                         "broken symlink: its target gone.jpg does not exist (fix or remove the link)"),
    "missing file": (lambda ph, d: d / "never-there.jpg", "no such file (check the path)"),
    "named pipe": (lambda ph, d: _fifo(d / "pipe.jpg"),
                   "not a regular file (a device, pipe or socket) (pass an image file)"),
}
TRUNCATED = {"truncated JPEG": ("cut.jpg", {"quality": 92}), "truncated PNG": ("cut.png", {}),
             "truncated 4000x3000 JPEG (decoded smaller)": ("cut-big.jpg", {"quality": 90})}


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


def _mkdir(p):
    p.mkdir()
    return p


def _link(target, p):
    os.symlink(target.name, p)
    return p


def _loop(d):
    os.symlink("loop-b.jpg", d / "loop-a.jpg")
    os.symlink("loop-a.jpg", d / "loop-b.jpg")
    return d / "loop-a.jpg"


def _fifo(p):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    os.mkfifo(p)
    return p


def _refusal(home, path) -> tuple[int, str, str]:
    res = run("--home", home, "query", path, "--channels", ",".join(CH))
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("kind", list(REFUSED))
def test_files_without_a_picture_are_refused_in_one_line(kind, home, photo, tmp_path):
    make, why = REFUSED[kind]
    path = make(photo, tmp_path)
    assert _refusal(home, path) == (1, "", f"error: {path}: {why}\n")


@pytest.mark.parametrize("kind", list(TRUNCATED))
def test_truncated_files_are_refused_in_one_line(kind, home, photo, tmp_path):
    name, save = TRUNCATED[kind]
    big = photo.resize((4000, 3000)) if "4000" in kind else photo
    path = _truncated(big, tmp_path, name, **save)
    rc, out, err = _refusal(home, path)
    assert (rc, out, err.count("\n")) == (1, "", 1)
    assert err.startswith(f"error: {path}: corrupt or truncated image (") and err.endswith(f") ({REEXPORT})\n")


def test_a_readable_odd_file_through_the_cli(home, photo, tmp_path):
    res = run("--home", home, "query", _png_16bit(photo, tmp_path), "--channels", ",".join(CH))
    assert res.exit_code == 0 and res.stdout.startswith(f"{tmp_path / 'grey16.png'}: Deftones  (score ")


def test_a_folder_lists_every_path_it_passes_over(photo, tmp_path):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    photo.save(d / "sub" / "ok.jpg")
    _png_named_jpg(photo, d)
    _write(d / "notes.txt", b"hello")
    _write(d / "logo.svg", b"<svg/>")
    _write(d / "README", b"hi")
    _write(d / ".DS_Store", b"\x00")  # hidden: neither read nor listed
    _mkdir(d / "x.jpg")
    _write(d / "x.jpg" / "inside.png", b"")  # a folder named like an image is still scanned
    _loop(d)
    _link(d / "gone.jpg", d / "dangling.jpg")
    os.symlink("..", d / "sub" / "up")  # a link back to a folder being scanned
    os.symlink("sub", d / "sub-link")  # the same folder under another name
    files, skipped = scan_images(d)
    assert files == [d / "really-a-png.jpg", d / "sub" / "ok.jpg", d / "x.jpg" / "inside.png"]
    assert skipped == [
        (d / "README", "not an image (no file suffix)"),
        (d / "dangling.jpg", "broken symlink: its target gone.jpg does not exist"),
        (d / "logo.svg", "SVG is not supported: convert it to PNG"),
        (d / "loop-a.jpg", "symlink loop"),
        (d / "loop-b.jpg", "symlink loop"),
        (d / "notes.txt", "not an image (.txt)"),
        (d / "sub" / "up", "symlink loop"),
        (d / "sub-link", "a folder already scanned under another name"),
        (d / "x.jpg", "a folder named like an image: not read as one (its files are scanned)"),
    ]
