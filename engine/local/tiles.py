"""Multi-scale tiled reading of a photo: finer levels cut into overlapping tiles (``ExtractConfig.tile_*``)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from logoid.core.imageio import geometry, resize_scaled

from .config import ExtractConfig
from .features import Features
from .sift import detect


def tile_scales(size: tuple[int, int], base_scale: float, cfg: ExtractConfig) -> list[float]:
    """Scales (working px per original px) of the extra tiled levels for a photo of ``size``."""
    out: list[float] = []
    s = base_scale
    for _ in range(cfg.tile_levels):
        nxt = min(2.0 * s, cfg.tile_max_upscale)
        if nxt < cfg.tile_min_step * s:  # a level barely finer than the last one adds cost, not keypoints
            break
        out.append(nxt)
        s = nxt
    return out


def finest_side(cfg: ExtractConfig) -> int:
    """The longest side, in working px, a photo is read at with ``cfg`` (its finest tiled level, or the whole photo):
    a photo decoded down to no less than this gives the same keypoints' worth of detail."""
    return cfg.query_long_side * 2 ** cfg.tile_levels  # each level twice the last (capped lower by tile_max_upscale)


def _tile_grid(n: int, tile: int) -> list[tuple[int, int, int, int]]:
    """1-D tiles over ``n`` px: (start, end, core_start, core_end); cores partition [0, n)."""
    if n <= tile:
        return [(0, n, 0, n)]
    k = math.ceil((n - tile) / (tile / 2)) + 1
    starts = [round(i * (n - tile) / (k - 1)) for i in range(k)]
    out = []
    for i, a in enumerate(starts):
        lo = 0 if i == 0 else (a + starts[i - 1] + tile) // 2
        hi = n if i == k - 1 else (starts[i + 1] + a + tile) // 2
        out.append((a, a + tile, lo, hi))
    return out


def tile_windows(feats: Features, cfg: ExtractConfig) -> list[tuple[float, float, float, float]]:
    """Tiles (x0, y0, x1, y1 in original px) of every finer level ``feats`` was read at; [] for one-level features.

    A level cut into a single tile covers the whole photo and gives no window.
    """
    if feats.kp_scale is None:
        return []
    out: list[tuple[float, float, float, float]] = []
    for s in np.unique(feats.kp_scale):
        s = float(s)
        if abs(s - feats.scale) < 1e-6:
            continue
        w, h = (max(1, round(v * s)) for v in feats.size)
        xs, ys = _tile_grid(w, cfg.tile_size), _tile_grid(h, cfg.tile_size)
        if len(xs) * len(ys) < 2:
            continue
        out += [(x0 / s, y0 / s, x1 / s, y1 / s) for x0, x1, _, _ in xs for y0, y1, _, _ in ys]
    return out


def add_tiled_levels(base: Features, img: Image.Image, base_scale: float, cfg: ExtractConfig, invert: bool
                     ) -> Features:
    """``base`` (the whole photo at ``base_scale``) with the keypoints of every tiled level of :func:`tile_scales`."""
    parts_xy, parts_desc, parts_s = [base.xy], [base.desc], [np.full(len(base), base_scale, np.float32)]
    geo, grey_full = geometry(img), img.convert("L")
    for s in tile_scales(base.size, base_scale, cfg):
        w, h = (max(1, round(v * s)) for v in base.size)
        arr = np.asarray(resize_scaled(grey_full, s, geo) if geo.reduced else grey_full.resize(
            (w, h), Image.Resampling.BICUBIC if s > 1 else Image.Resampling.LANCZOS), dtype=np.uint8)
        if invert:
            arr = 255 - arr
        for x0, x1, cx0, cx1 in _tile_grid(w, cfg.tile_size):
            for y0, y1, cy0, cy1 in _tile_grid(h, cfg.tile_size):
                f = detect(arr[y0:y1, x0:x1], 1.0, (x1 - x0, y1 - y0), cfg.tile_max_keypoints, cfg)
                if not len(f):
                    continue
                # Each tile keeps the keypoints of its core only, so overlaps give no duplicates.
                gx, gy = f.xy[:, 0] + x0, f.xy[:, 1] + y0
                keep = (gx >= cx0) & (gx < cx1) & (gy >= cy0) & (gy < cy1)
                xy = np.column_stack([gx[keep], gy[keep]])
                parts_xy.append(((xy + 0.5) / s - 0.5).astype(np.float32))
                parts_desc.append(f.desc[keep])
                parts_s.append(np.full(int(keep.sum()), s, np.float32))
    if len(parts_xy) == 1:
        return base
    return Features(np.concatenate(parts_xy), np.concatenate(parts_desc), base.size, base_scale,
                    np.concatenate(parts_s))


__all__ = ["add_tiled_levels", "finest_side", "tile_scales", "tile_windows"]
