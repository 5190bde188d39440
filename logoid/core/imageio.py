"""Robust image decoding shared by the catalog, augment and engine stages.

Every image logoid touches goes through :func:`load_image`, so bad files fail the same way
everywhere: an :class:`~logoid.core.errors.ImageError` naming the file and the fix. A folder is listed by
:func:`scan_images`, which names every path it passes over and why.

A photo only has to be as sharp as the channels that read it: ``load_image(path, min_size=(long, short))``
decodes a big photo straight to a smaller size (JPEG DCT scaling, else PIL's ``reduce``) that keeps at least
those sides, so a 24-megapixel photo costs about what a 1-megapixel one does. Such an image carries a
:class:`Geometry` (``geometry(img)``) that maps its pixels to the full-size photo's, so keypoints, outlines and
text boxes are still reported in the photo's own pixels.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from logoid.core.errors import ImageError

#: Default pixel limit (width × height). ~90 MP: a 12k × 7.5k photo still loads, a bomb does not.
DEFAULT_MAX_PIXELS = 90_000_000
ENV_MAX_PIXELS = "LOGOID_MAX_PIXELS"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
                           | ({".avif"} if features.check("avif") else set()))

_CONVERT = "convert it to PNG or JPEG"
#: Image formats logoid cannot read, by suffix: the reason a file is passed over, with its fix.
UNSUPPORTED_SUFFIXES = {
    ".svg": "SVG is not supported: convert it to PNG", ".svgz": "SVG is not supported: convert it to PNG",
    ".heic": "HEIC is not supported: convert it to JPEG", ".heif": "HEIF is not supported: convert it to JPEG",
    ".avif": f"AVIF is not supported by this Pillow build: {_CONVERT}",
    ".pdf": "a PDF, not an image: export its page as PNG", ".psd": f"Photoshop files are not supported: {_CONVERT}",
    **{s: f"camera RAW files are not supported: {_CONVERT}"
       for s in (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf")},
}
_READ_HINT = "use JPEG, PNG, WebP, BMP, GIF or TIFF"
_LIMIT_HINT = f"raise the limit with the environment variable {ENV_MAX_PIXELS} if the file is trusted"
_GEOMETRY_KEY = "logoid.geometry"


def max_pixels() -> int:
    return int(os.environ.get(ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS))


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (the image store and caches key on it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- where a decoded image's pixels lie in the photo ----------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Where the pixels of an image decoded below full size lie in the full-size, upright photo."""

    size: tuple[int, int]  # the decoded image's (width, height): the geometry holds only for an image of this size
    original_size: tuple[int, int]  # the full-size upright photo's (width, height)
    box: tuple[float, float, float, float]  # the photo's extent in decoded px (x0, y0, x1, y1; may end mid-pixel)

    @property
    def reduced(self) -> bool:
        return self.original_size != self.size or self.box != (0.0, 0.0, *map(float, self.size))

    @property
    def factor(self) -> tuple[float, float]:
        """Original px per decoded px along x and y."""
        x0, y0, x1, y1 = self.box
        return self.original_size[0] / (x1 - x0), self.original_size[1] / (y1 - y0)

    def to_original(self, xy) -> np.ndarray:
        """Points (n, 2) in decoded px → the photo's px (pixel centres map to pixel centres)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        f, o = np.asarray(self.factor), np.asarray(self.box[:2])
        return ((xy + 0.5 - o) * f - 0.5).astype(np.float32)

    def to_decoded(self, xy) -> np.ndarray:
        """Points (n, 2) in the photo's px → decoded px."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        f, o = np.asarray(self.factor), np.asarray(self.box[:2])
        return ((xy + 0.5) / f + o - 0.5).astype(np.float32)


def geometry(img: Image.Image) -> Geometry:
    """How ``img``'s pixels map to its photo's: recorded by :func:`load_image` on a reduced decode; an image of
    another size (a crop, a resize of it) or any other image maps one to one."""
    geo = img.info.get(_GEOMETRY_KEY)
    if isinstance(geo, Geometry) and geo.size == img.size:
        return geo
    w, h = img.size
    return Geometry((w, h), (w, h), (0.0, 0.0, float(w), float(h)))


def resize_scaled(img: Image.Image, scale: float, geo: Geometry | None = None) -> Image.Image:
    """``img`` at ``scale`` px per px of its photo, as if the photo had been decoded at full size: bicubic when
    that enlarges the pixels at hand, Lanczos when it shrinks them; a reduced decode is resized over the photo's
    extent (``geo``, default ``geometry(img)``), so the result has the size and pixel grid of the full-size one."""
    geo = geo if geo is not None else geometry(img)
    if not geo.reduced:
        if abs(scale - 1.0) <= 1e-6:
            return img
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        return img.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    w, h = geo.original_size
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    enlarge = scale * geo.factor[0] > 1
    return img.resize(size, Image.Resampling.BICUBIC if enlarge else Image.Resampling.LANCZOS, box=geo.box)


def _reduction(size: tuple[int, int], min_size: tuple[int, int] | None, *, powers_of_two: bool) -> int:
    """The largest factor an image of ``size`` can be shrunk by and keep (long side, short side) ≥ ``min_size``."""
    if not min_size:
        return 1
    need_long, need_short = max(1, int(min_size[0])), max(1, int(min_size[1]))
    r = max(1, min(max(size) // need_long, min(size) // need_short))
    if powers_of_two:  # JPEG's DCT scaling: 1/2, 1/4, 1/8
        r = max(p for p in (1, 2, 4, 8) if p <= r)
    return r


def _upright_box(stored: tuple[int, int], box: tuple[float, float, float, float], orientation: int
                 ) -> tuple[float, float, float, float]:
    """``box`` in a (w, h) = ``stored`` image, after exif_transpose turns that image by ``orientation`` (2: flip
    left-right, 3: turn 180°, 4: flip top-bottom, 5: transpose, 6: turn 90° clockwise, 7: transverse, 8: turn 90°
    anticlockwise)."""
    w, h = stored
    x0, y0, x1, y1 = box
    move = {2: lambda x, y: (w - x, y), 3: lambda x, y: (w - x, h - y), 4: lambda x, y: (x, h - y),
            5: lambda x, y: (y, x), 6: lambda x, y: (h - y, x), 7: lambda x, y: (h - y, w - x),
            8: lambda x, y: (y, w - x)}.get(orientation)
    if move is None:
        return box
    (ax, ay), (bx, by) = move(x0, y0), move(x1, y1)
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


# ---- why a path cannot be read ----------------------------------------------------------------------------------
def _unreadable(path: Path) -> tuple[str, str | None] | None:
    """(reason, hint) when ``path`` is no regular file logoid can open, else None. Never opens it."""
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop", "fix or remove the link"
        if path.is_symlink():
            return f"broken symlink: its target {os.readlink(path)} does not exist", "fix or remove the link"
        if e.errno in (errno.EACCES, errno.EPERM):
            return "no permission to read it", "check the file's permissions"
        return "no such file", "check the path"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not an image", "pass an image file, or use `logoid batch` for folders"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or socket)", "pass an image file"
    if not os.access(path, os.R_OK):
        return "no permission to read it", "check the file's permissions"
    return None


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(2048)


def _sniff_head(head: bytes, suffix: str) -> tuple[str, str | None]:
    """Why a file Pillow cannot identify is not an image, from its first bytes (and its suffix)."""
    low = head.lstrip().lower()
    if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
        return UNSUPPORTED_SUFFIXES[".svg"], None
    if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low[:512]:
        return "an HTML page, not an image", "save the image itself, not the web page"
    if head.startswith(b"%PDF"):
        return UNSUPPORTED_SUFFIXES[".pdf"], None
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypmsf1"):
        return UNSUPPORTED_SUFFIXES[".heic"], None
    if suffix.lower() in UNSUPPORTED_SUFFIXES:
        return UNSUPPORTED_SUFFIXES[suffix.lower()], None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return "a text file, not an image", _READ_HINT
    return "not an image or an unsupported format", _READ_HINT


# ---- decoding ---------------------------------------------------------------------------------------------------
def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite a transparent image onto a plain background that contrasts with its content.

    A transparent logo's hidden pixels are often black noise; dropping alpha would show it.
    Light artwork goes on black, dark artwork on white, so the logo stays visible.
    """
    rgba = img.convert("RGBA")
    arr = np.asarray(rgba, dtype=np.float32)
    alpha = arr[..., 3] / 255.0
    if alpha.min() >= 0.999:
        return rgba.convert("RGB")
    visible = alpha > 0.5
    luma = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]
    lum = luma[visible].mean() if visible.any() else 0.0
    bg = (0, 0, 0) if lum > 160 else (255, 255, 255)
    base = Image.new("RGBA", rgba.size, bg + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit greyscale: scale by the actual range, not by clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        return _flatten_alpha(img)
    return img.convert("RGB")


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except (TypeError, ValueError):
        return 1


def _decode(img: Image.Image, min_size: tuple[int, int] | None) -> tuple[Image.Image, Geometry | None]:
    """Decode an opened image upright to RGB, shrunk toward ``min_size``; its geometry when shrunk."""
    stored, orientation = img.size, _orientation(img)
    box: tuple[float, float, float, float] | None = None
    r = _reduction(stored, min_size, powers_of_two=True) if img.format in ("JPEG", "MPO") else 1
    if r > 1:  # JPEG: decode at 1/r straight from the DCT coefficients
        drafted = img.draft(img.mode, (stored[0] // r, stored[1] // r))
        if drafted is not None and drafted[1][2] < stored[0]:
            box = drafted[1]
    img.load()
    r = 1 if box is not None else _reduction(stored, min_size, powers_of_two=False)
    if r > 1:
        box = (0.0, 0.0, stored[0] / r, stored[1] / r)
        if img.mode in ("RGB", "L") and "transparency" not in img.info:
            img, r = img.reduce(r), 1  # shrink before the copies below; other modes once they are RGB
    decoded = img.size
    ImageOps.exif_transpose(img, in_place=True)
    out = _to_rgb(img)
    upright = stored[::-1] if orientation in (5, 6, 7, 8) else stored
    if r > 1:  # shrunk upright, so its blocks start at the upright photo's top left
        out = out.reduce(r)
        return out, Geometry(out.size, upright, (0.0, 0.0, upright[0] / r, upright[1] / r))
    if box is None:
        return out, None
    x0, y0, x1, y1 = (float(v) for v in box)
    return out, Geometry(out.size, upright, _upright_box(decoded, (x0, y0, x1, y1), orientation))


def load_image(path: str | os.PathLike, *, max_pixels_: int | None = None,
               min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``path`` to an upright RGB image, or raise :class:`ImageError` saying why and what to do.

    ``min_size`` = (long side, short side): a bigger photo is decoded smaller, never below either side (JPEG at
    1/2, 1/4 or 1/8 of its size straight from the file, other formats shrunk after decoding by a whole factor);
    ``geometry(img)`` maps the result's pixels to the photo's. None decodes at full size.
    """
    path = Path(path)
    why = _unreadable(path)
    if why is not None:
        raise ImageError(path, *why)
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)", "re-download or re-export the image")
    return _load(path, path, max_pixels_, min_size, lambda: _sniff_head(_head(path), path.suffix))


def load_image_bytes(data: bytes, name: str = "<upload>", *, max_pixels_: int | None = None,
                     min_size: tuple[int, int] | None = None) -> Image.Image:
    """:func:`load_image` for an image held in memory (an upload): nothing is written to disk; ``name`` (the
    uploaded file's name) is what errors say."""
    if not data:
        raise ImageError(name, "empty file (0 bytes)", "re-download or re-export the image")
    return _load(io.BytesIO(data), name, max_pixels_, min_size,
                 lambda: _sniff_head(data[:2048], Path(name).suffix))


def _load(source, name, max_pixels_: int | None, min_size, sniff) -> Image.Image:
    limit = max_pixels_ if max_pixels_ is not None else max_pixels()
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        # Our own check below reads the header size first and names the setting; PIL's guard is off meanwhile.
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(source) as img:
            w, h = img.size
            if w * h > limit:
                raise ImageError(name, f"{w}x{h} is over the pixel limit of {limit:,}", _LIMIT_HINT, kind="too_large")
            out, geo = _decode(img, min_size)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(name, f"decompression bomb guard: {e}", _LIMIT_HINT, kind="too_large") from e
    except UnidentifiedImageError as e:
        raise ImageError(name, *sniff(), kind="not_image") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(name, f"corrupt or truncated image ({e})", "re-download or re-export the image") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if out.width < 1 or out.height < 1:
        raise ImageError(name, "image has no pixels", "use another image")
    if geo is not None:
        out.info[_GEOMETRY_KEY] = geo
    return out


def is_black_and_white(img: Image.Image, *, sat_thresh: float = 0.12, frac: float = 0.985) -> bool:
    """True when (almost) every pixel is grey: a black-and-white logo rather than a colour one."""
    small = img.convert("RGB").copy()
    small.thumbnail((128, 128))
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
    sat, val = hsv[..., 1], hsv[..., 2]
    # Very dark pixels have meaningless saturation; count them as grey.
    grey = (sat < sat_thresh) | (val < 0.15)
    return float(grey.mean()) >= frac


# ---- folders ----------------------------------------------------------------------------------------------------
def _passed_over(path: Path) -> str | None:
    """Why a folder entry is not an image to read (None: it is one, by its name and kind)."""
    why = _unreadable(path)
    if why is not None:
        return why[0]
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return None
    if suffix in UNSUPPORTED_SUFFIXES:
        return UNSUPPORTED_SUFFIXES[suffix]
    return f"not an image ({suffix})" if suffix else "not an image (no file suffix)"


def scan_images(folder: str | os.PathLike) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The images under ``folder`` (recursive, sorted; by their suffix) and every other path it passes over with
    the reason: ``(files, [(path, reason), ...])``.

    Links to folders are followed once (a link back into a folder being scanned is a "symlink loop"). A folder
    named like an image is scanned like any folder and also listed ("a folder named like an image..."). Names that start
    with "." are hidden, as in ``ls``: neither read nor listed. Files are judged by their name and kind only;
    :func:`load_image` finds what is wrong inside one.
    """
    folder = Path(folder)
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    scanned: set[tuple[int, int]] = set()

    def walk(d: Path, inside: frozenset) -> None:
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            skipped.append((d, f"cannot list this folder ({e.strerror or e})"))
            return
        for p in entries:
            if p.name.startswith("."):
                continue
            try:
                st = p.stat()
            except OSError:
                st = None
            if st is None or not stat.S_ISDIR(st.st_mode):
                reason = _passed_over(p)
                if reason is None:
                    files.append(p)
                else:
                    skipped.append((p, reason))
                continue
            key = (st.st_dev, st.st_ino)
            if key in inside:
                skipped.append((p, "symlink loop"))
            elif key in scanned:
                skipped.append((p, "a folder already scanned under another name"))
            else:
                if is_image_path(p) or p.suffix.lower() in UNSUPPORTED_SUFFIXES:
                    skipped.append((p, "a folder named like an image: not read as one (its files are scanned)"))
                scanned.add(key)
                walk(p, inside | {key})

    why = _unreadable(folder)
    if why is not None and why[0] != "a folder, not an image":
        raise ImageError(folder, *why)
    if why is None:
        raise ImageError(folder, "a file, not a folder", "pass a folder of images")
    root = folder.stat()
    scanned.add((root.st_dev, root.st_ino))
    walk(folder, frozenset(scanned))
    return sorted(files), sorted(skipped)


def iter_image_files(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder`` (recursive, sorted), by its suffix; :func:`scan_images` also says what
    else it passed over."""
    return scan_images(folder)[0]
