"""Simulated "photo of merch": a logo printed on woven fabric, folded, lit, photographed and JPEG-compressed."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from logoid.core.atomic import write_bytes_atomic

# Shirt colours (RGB); a dark ink goes on a light shirt and a light ink on a dark one, as printers do.
LIGHT_SHIRTS = ((236, 236, 232), (196, 197, 202), (186, 206, 228), (226, 212, 182))
DARK_SHIRTS = ((24, 24, 27), (30, 38, 68), (112, 22, 28), (44, 58, 42))
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Smooth random field in [-1, 1] of size HxW (bicubic upsampling of a coarse grid)."""
    small = rng.uniform(-1, 1, (max(2, cells * h // w), cells)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _fabric(rng: np.random.Generator, w: int, h: int, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A woven fabric in ``colour`` and its weave relief (for the ink to follow)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(2.6, 3.6)
    weave = np.sin(2 * math.pi * xx / period) * np.sin(2 * math.pi * yy / period)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8)
    relief = 0.035 * weave + 0.03 * grain + 0.04 * _smooth_noise(rng, w, h, 12)
    fabric = np.array(colour, dtype=np.float32) * (1 + relief)[..., None]
    return fabric, relief


def _ink_layer(logo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The logo's ink colours and coverage (alpha): whatever differs from its background."""
    border = np.concatenate([logo[0], logo[-1], logo[:, 0], logo[:, -1]])
    bg = np.median(border, axis=0)
    alpha = (np.abs(logo - bg).max(axis=2) / 255.0 * 3).clip(0, 1).astype(np.float32)
    return logo, cv2.GaussianBlur(alpha, (0, 0), 0.6)


def _place(rng: np.random.Generator, logo_w: int, logo_h: int, w: int, h: int) -> np.ndarray:
    """Homography putting the logo mid-chest, rotated a little and seen slightly from the side."""
    side = rng.uniform(0.38, 0.5) * w
    s = side / max(logo_w, logo_h)
    cx, cy = w / 2 + rng.uniform(-0.08, 0.08) * w, h / 2 + rng.uniform(-0.08, 0.06) * h
    angle = math.radians(rng.uniform(-10, 10))
    half = np.array([[-logo_w, -logo_h], [logo_w, -logo_h], [logo_w, logo_h], [-logo_w, logo_h]], np.float32) * s / 2
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], np.float32)
    dst = half @ rot.T + np.array([cx, cy], np.float32) + rng.uniform(-0.06, 0.06, (4, 2)).astype(np.float32) * side
    src = np.array([[0, 0], [logo_w, 0], [logo_w, logo_h], [0, logo_h]], np.float32)
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _folds(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remap grids (x, y) that displace the image along soft folds, and the folds' shading."""
    height = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(3):  # a few long diagonal folds, plus softer wrinkles
        theta = rng.uniform(0, math.pi)
        freq = rng.uniform(1.0, 2.5) * 2 * math.pi / w
        height += np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * freq + rng.uniform(0, 2 * math.pi))
    height += 0.8 * _smooth_noise(rng, w, h, 6)
    gy, gx = np.gradient(height)
    steepest = max(float(np.abs(gx).max()), float(np.abs(gy).max()), 1e-6)
    disp = rng.uniform(8, 16) / steepest  # the steepest fold shifts the print by 8-16 px
    light = rng.uniform(0, 2 * math.pi)
    shade = 1 + 0.3 * (gx * math.cos(light) + gy * math.sin(light)) / steepest
    return xx + gx * disp, yy + gy * disp, shade.astype(np.float32)


def make_demo_photo(logo_img: Image.Image, out_path: str | os.PathLike, seed: int = 0,
                    size: tuple[int, int] = (640, 480), quality: int = 82) -> Path:
    """Write a simulated phone photo of ``logo_img`` printed on a shirt to ``out_path`` (JPEG); same seed, same bytes."""
    rng = np.random.default_rng(seed)
    w, h = size
    logo = np.asarray(logo_img.convert("RGB"), dtype=np.float32)
    ink, alpha = _ink_layer(logo)
    ink_luma = float((ink.reshape(-1, 3) @ _GREY)[alpha.ravel() > 0.5].mean()) if (alpha > 0.5).any() else 0.0
    shirts = LIGHT_SHIRTS if ink_luma < 140 else DARK_SHIRTS
    fabric, relief = _fabric(rng, w, h, shirts[int(rng.integers(len(shirts)))])
    hom = _place(rng, logo.shape[1], logo.shape[0], w, h)
    ink_w = cv2.warpPerspective(ink, hom, (w, h), flags=cv2.INTER_LINEAR)
    a_w = cv2.warpPerspective(alpha, hom, (w, h), flags=cv2.INTER_LINEAR)[..., None] * rng.uniform(0.85, 0.97)
    # Plastisol ink sits on the weave: it takes the fabric's relief, a little weaker.
    img: np.ndarray = fabric * (1 - a_w) + ink_w * (1 + 0.6 * relief)[..., None] * a_w
    mx, my, shade = _folds(rng, w, h)
    img = cv2.remap(img, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # Light: fold shading, a broad gradient across the frame, and lens vignetting.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    grad = ((xx - w / 2) * math.cos(theta) + (yy - h / 2) * math.sin(theta)) / max(w, h)
    vignette = 1 - 0.35 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2)
    img *= (shade * (rng.uniform(0.85, 1.05) + rng.uniform(0.2, 0.4) * grad) * vignette)[..., None]
    img *= rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))  # lens softness
    img += rng.normal(0, rng.uniform(2.5, 5.0), img.shape).astype(np.float32)  # sensor noise
    out = Image.fromarray(img.round().clip(0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    out_path = Path(out_path)
    write_bytes_atomic(out_path, buf.getvalue())
    return out_path


def make_unknown_photo(out_path: str | os.PathLike, seed: int = 0, slug: str | None = None) -> Path:
    """Like :func:`make_demo_photo`, with an icon that is NOT in the demo catalog (default: Arch Linux)."""
    from .icons import DEMO_SLUGS, UNKNOWN_SLUGS, render_icon

    slug = slug or UNKNOWN_SLUGS[0]
    if slug in DEMO_SLUGS:
        from logoid.core.errors import ConfigError

        raise ConfigError(f"{slug!r} is in the demo catalog", f"use one of {', '.join(UNKNOWN_SLUGS)}")
    return make_demo_photo(render_icon(slug), out_path, seed=seed)
