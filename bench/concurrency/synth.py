"""Synthetic text logos and photos of them (a logo pasted in perspective into clutter), for the concurrency bench.

The tests draw theirs with these too (tests/synth.py re-exports them), so the bench and the crash tests run one
workload."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


def text_logo(text: str, size: tuple[int, int] = (420, 160), font_size: int = 72, seed: int = 0) -> Image.Image:
    """Black-on-white text logo with a few shapes (gives SIFT corners and blobs)."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    d.text((size[0] // 2, size[1] // 2), text, font=font, fill=0, anchor="mm", stroke_width=2, stroke_fill=0)
    for _ in range(6):
        x, y = rng.integers(0, size[0] - 30), rng.integers(0, size[1] // 5)
        r = int(rng.integers(6, 14))
        d.ellipse([x, y, x + r, y + r], fill=0) if rng.random() < 0.5 else d.rectangle([x, y, x + r, y + r], fill=0)
    # Corner ornaments placed by the seed, so two logos share no identical geometry.
    ox = int(rng.integers(5, size[0] // 3))
    d.polygon([(ox, size[1] - 10), (ox + 30, size[1] - 40), (ox + 60, size[1] - 10)], fill=0)
    rx = int(rng.integers(size[0] // 2, size[0] - 50))
    d.rectangle([rx, size[1] - 30, rx + 45, size[1] - 12], outline=0, width=4)
    return img.convert("RGB")


def background(size=(800, 600), seed=0) -> np.ndarray:
    """A cluttered grey scene: random ellipses and rectangles plus sensor noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", size, 128)
    d = ImageDraw.Draw(img)
    for _ in range(25):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        w, h = rng.integers(10, 80, 2)
        fill = int(rng.integers(60, 200))
        d.ellipse([x, y, x + w, y + h], fill=fill) if rng.random() < 0.5 else d.rectangle([x, y, x + w, y + h], fill=fill)
    arr = np.asarray(img, np.float32) + rng.normal(0, 4, (size[1], size[0]))
    return np.clip(arr, 0, 255).astype(np.uint8)


def homography(src_size, quad) -> np.ndarray:
    w, h = src_size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    return cv2.getPerspectiveTransform(src, np.float32(quad))


def paste(bg: np.ndarray, logo: Image.Image, quad) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``logo`` (its whole rectangle, as printed on a patch) onto ``bg``; returns image and H."""
    H = homography(logo.size, quad)
    grey = np.asarray(logo.convert("L"))
    size = (bg.shape[1], bg.shape[0])
    warped = cv2.warpPerspective(grey, H, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full_like(grey, 255), H, size, flags=cv2.INTER_NEAREST) > 0
    out = bg.copy()
    out[mask] = warped[mask]
    return out, H


def photo(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr).convert("RGB")


def photo_of(logo: Image.Image, quad=((150, 180), (560, 150), (590, 330), (170, 360)), seed: int = 0) -> Image.Image:
    """A photo with ``logo`` printed in perspective on a cluttered background."""
    arr, _ = paste(background(seed=seed), logo, quad)
    return photo(arr)
