"""Robust image decoding shared by the catalog, augment and engine stages.

Every image logoid touches goes through :func:`load_image`, so bad files fail the same way
everywhere: an :class:`~logoid.errors.ImageError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from logoid.core.errors import ImageError

#: Default pixel limit (width × height). ~90 MP: a 12k × 7.5k photo still loads, a bomb does not.
DEFAULT_MAX_PIXELS = 90_000_000
ENV_MAX_PIXELS = "LOGOID_MAX_PIXELS"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


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
    if img.mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB")


def load_image(path: str | os.PathLike, *, max_pixels_: int | None = None) -> Image.Image:
    """Decode ``path`` to an upright RGB image, or raise :class:`ImageError` saying why and what to do."""
    path = Path(path)
    limit = max_pixels_ if max_pixels_ is not None else max_pixels()
    if not path.exists():
        raise ImageError(path, "no such file", "check the path")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image", "pass an image file, or use `logoid batch` for folders")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)", "re-download or re-export the image")
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        # Our own check below reads the header size first and names the flag; PIL's guard is off meanwhile.
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as img:
            w, h = img.size
            if w * h > limit:
                raise ImageError(
                    path,
                    f"{w}x{h} is over the pixel limit of {limit:,}",
                    f"raise it with --max-pixels or {ENV_MAX_PIXELS} if the file is trusted",
                )
            img.load()
            upright: Image.Image = ImageOps.exif_transpose(img) or img
            out = _to_rgb(upright)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"decompression bomb guard: {e}", f"raise --max-pixels / {ENV_MAX_PIXELS}") from e
    except UnidentifiedImageError as e:
        raise ImageError(path, "not an image or an unsupported format",
                         "use JPEG, PNG, WebP, BMP, GIF or TIFF") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, f"corrupt or truncated image ({e})", "re-download or re-export the image") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if out.width < 1 or out.height < 1:
        raise ImageError(path, "image has no pixels", "use another image")
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


def iter_image_files(folder: str | os.PathLike) -> list[Path]:
    """Every file under ``folder`` (recursive, sorted) that looks like an image by its suffix."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p) and not p.name.startswith("."))
