"""Deterministic variants of a reference image: how a logo or cover may look when printed and photographed.

Parameters are drawn like torchvision's ``RandomPerspective``, ``RandomAffine``, ``ColorJitter`` and
``RandomInvert`` (same ranges and meaning), from a NumPy generator seeded by hash(seed, image
sha256, variant index), so variant *i* of an image is the same in any process and any call order.
They are applied as ONE homography (OpenCV) and ONE 3×4 colour matrix: a single resampling keeps
thin strokes sharp, and it is ~10× faster than chaining the torchvision ops on small images.

Black-and-white images first get their LIGHT or DARK pixels (or both) recoloured with a flat
colour or a gradient / cloudy texture, so a white-on-black logo printed on a red shirt, or in
yellow ink, still matches its reference.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from logoid.core.errors import ConfigError

from .config import AugmentConfig

_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32)
_YIQ_INV = np.linalg.inv(_YIQ).astype(np.float32)


def variant_rng(seed: int, key: str, index: int) -> np.random.Generator:
    """The generator of variant ``index`` of image ``key``: independent of any other variant or call."""
    digest = hashlib.sha256(f"logoid-augment:{seed}:{key}:{index}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def resize_long_side(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWx3 array so its long side is ``size`` (area filter down, cubic up)."""
    h, w = arr.shape[:2]
    s = size / max(h, w)
    if s == 1:
        return arr
    new = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(arr, new, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def border_colour(arr: np.ndarray) -> np.ndarray:
    """Median colour of the image border: the background that geometric warps replicate."""
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return np.median(border, axis=0).astype(np.float32)


# ---- black-and-white recolouring -------------------------------------------------------------------
def _random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.25, 1.0), rng.uniform(0.15, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _paint(rng: np.random.Generator, shape: tuple[int, int], p_texture: float) -> np.ndarray:
    """A float paint in [0, 1]: a flat colour (1x1x3), or an HxWx3 linear gradient or soft cloudy texture."""
    h, w = shape
    if rng.random() >= p_texture:
        return _random_colour(rng).reshape(1, 1, 3)
    if rng.random() < 0.5:
        # A linear gradient is exactly the bilinear upsampling of its 2x2 corners.
        a, b = _random_colour(rng), _random_colour(rng)
        theta = rng.uniform(0, 2 * math.pi)
        corners = np.array([[0, math.cos(theta)], [math.sin(theta), math.cos(theta) + math.sin(theta)]])
        corners = (corners - corners.min()) / max(float(np.ptp(corners)), 1e-6)
        small = (a * (1 - corners[..., None]) + b * corners[..., None]).astype(np.float32)
    else:
        cells = int(rng.integers(2, 6))
        small = np.clip(_random_colour(rng) + rng.normal(0, 0.18, (cells, cells, 3)), 0, 1).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _luma(paint: np.ndarray) -> float:
    return float(paint[::8, ::8].reshape(-1, 3).mean(axis=0) @ _GREY)


def light_map(arr: np.ndarray, float64: bool = False) -> np.ndarray:
    """HxW float32 map of a black-and-white float32 image: 0 where the ink is dark, 1 where it is light (``float64``:
    in float64, as :attr:`AugmentConfig.bw_float64`; every step after it then runs in float64 too)."""
    lum = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    small = lum[::4, ::4]  # percentiles of a subsample: same answer, 16x less sorting
    lo, hi = np.percentile(small, [1, 99])
    if float64:
        return ((lum - lo) / max(float(hi - lo), 1.0)).clip(0, 1)
    t = lum - np.float32(lo)
    t /= np.float32(max(float(hi - lo), 1.0))
    return np.clip(t, 0, 1, out=t)


def recolour_bw(t: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Paint a light map ``t`` (HxW, 1 = light): its light and/or dark pixels in new colours, or kept white/black."""
    u = rng.random()
    p_l, p_d, p_b = cfg.p_bw_light, cfg.p_bw_dark, cfg.p_bw_both
    light = u < p_l or p_l + p_d <= u < p_l + p_d + p_b
    dark = p_l <= u < p_l + p_d + p_b
    shape = t.shape
    white, black = np.ones((1, 1, 3), np.float32), np.zeros((1, 1, 3), np.float32)
    light_p, dark_p = white, black
    if light or dark:
        for _ in range(8):  # keep the logo readable: the two paints must differ enough in brightness
            light_p = _paint(rng, shape, cfg.p_texture) if light else white
            dark_p = _paint(rng, shape, cfg.p_texture) if dark else black
            if abs(_luma(light_p) - _luma(dark_p)) >= 0.35:
                break
        else:
            light_p, dark_p = white, black
    light_p, dark_p = light_p * np.float32(255.0), dark_p * np.float32(255.0)
    if light_p.size == 3 and dark_p.size == 3:
        # Flat paints: dark + t * (light - dark) is a 3x2 colour map of the light map, one C pass.
        return cv2.transform(t[..., None], np.stack([light_p.ravel() - dark_p.ravel(), dark_p.ravel()], axis=1))
    # The same products and sums as broadcasting t[..., None], at half the time (numpy's inner loop over 3 is slow).
    t3 = np.repeat(t, 3).reshape(*t.shape, 3)
    return t3 * (light_p - dark_p) + dark_p


# ---- geometry and colour ---------------------------------------------------------------------------
def _homography(rng: np.random.Generator, w: int, h: int, cfg: AugmentConfig) -> np.ndarray:
    """RandomAffine (about the centre) followed by RandomPerspective, as one 3×3 matrix."""
    angle = math.radians(rng.uniform(-cfg.degrees, cfg.degrees))
    scale = rng.uniform(cfg.scale_min, cfg.scale_max)
    shx, shy = (math.radians(rng.uniform(-cfg.shear, cfg.shear)) for _ in range(2))
    tx, ty = rng.uniform(-cfg.translate, cfg.translate) * w, rng.uniform(-cfg.translate, cfg.translate) * h
    cx, cy = w / 2, h / 2
    rot = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    shear = np.array([[1, math.tan(shx), 0], [math.tan(shy), 1, 0], [0, 0, 1]])
    affine = (np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]]) @ rot @ shear
              @ np.diag([scale, scale, 1]) @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]]))
    if rng.random() >= cfg.p_perspective:
        return affine
    dx, dy = cfg.perspective * w / 2, cfg.perspective * h / 2
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    sign = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)  # corners move inward, as in RandomPerspective
    dst = src + sign * rng.uniform(0, 1, (4, 2)).astype(np.float32) * np.array([dx, dy], np.float32)
    return cv2.getPerspectiveTransform(src, dst) @ affine


def _colour_matrix(rng: np.random.Generator, mean_grey: float, cfg: AugmentConfig) -> np.ndarray:
    """ColorJitter (hue, saturation, contrast, brightness) folded into one 3×4 affine colour map."""
    b = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    s = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    theta = rng.uniform(-cfg.hue, cfg.hue) * 2 * math.pi
    hue = _YIQ_INV @ np.array([[1, 0, 0], [0, math.cos(theta), -math.sin(theta)],
                               [0, math.sin(theta), math.cos(theta)]], np.float32) @ _YIQ
    sat = s * np.eye(3, dtype=np.float32) + (1 - s) * np.outer(np.ones(3), _GREY)
    m = b * c * (sat @ hue)
    offset = np.full((3, 1), b * (1 - c) * mean_grey)
    return np.hstack([m, offset]).astype(np.float32)


def _fill(arr: np.ndarray) -> tuple[float, ...]:
    """The border value of :func:`_warp` for ``arr`` (the same for every variant of an image)."""
    return tuple(float(v) for v in border_colour(arr if arr.ndim == 3 else arr[..., None]))


def _warp(arr: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, fill: tuple[float, ...]) -> np.ndarray:
    h, w = arr.shape[:2]
    return cv2.warpPerspective(arr, _homography(rng, w, h, cfg), (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _variant(base: np.ndarray, scheme: str, rng: np.random.Generator, cfg: AugmentConfig,
             fill: tuple[float, ...]) -> np.ndarray:
    """One augmented float image; ``base`` is the resized RGB image, or its light map for the bw scheme, and
    ``fill`` its :func:`_fill`."""
    # bw: warp the one-channel light map, then paint: the shirt colour / texture fills the whole frame
    # (no warped rectangle edge), and one channel is a third of the warping work.
    arr = _warp(base, rng, cfg, fill)
    if scheme == "bw":
        arr = recolour_bw(arr, rng, cfg)
    if rng.random() < cfg.p_invert:
        arr = 255.0 - arr
    arr = cv2.transform(arr, _colour_matrix(rng, float(arr[::4, ::4].reshape(-1, 3).mean(axis=0) @ _GREY), cfg))
    if rng.random() < cfg.p_blur:
        arr = cv2.GaussianBlur(arr, (0, 0), rng.uniform(0.3, max(cfg.blur_sigma, 0.31)))
    if cfg.noise_sigma > 0:
        # Luma noise from uniform bytes (same std as the Gaussian it stands for): 5x cheaper than
        # standard_normal over three channels, and phone noise after JPEG is mostly luma anyway.
        sigma = rng.uniform(0, cfg.noise_sigma)
        noise = rng.integers(0, 256, arr.shape[:2], dtype=np.uint8).astype(np.float32)
        noise -= np.float32(127.5)
        noise *= np.float32(sigma * math.sqrt(12) / 256)
        # The same sums as adding noise[..., None]; numpy's broadcast over 3 channels runs 2x slower.
        np.add(arr, np.repeat(noise, 3).reshape(arr.shape), out=arr)
    return arr


def make_variants(img: Image.Image, scheme: str, cfg: AugmentConfig | None = None, key: str = "") -> list[Image.Image]:
    """``cfg.n_variants`` RGB images (long side ``cfg.size``): variant 0 is the original, the rest augmented.

    ``scheme`` is ``'color'`` or ``'bw'`` (the catalog's image scheme); ``key`` is the image's sha256,
    which with ``cfg.seed`` fixes every variant.
    """
    return [Image.fromarray(a) for a in variant_arrays(img, scheme, cfg, key)]


def variant_arrays(img: Image.Image, scheme: str, cfg: AugmentConfig | None = None, key: str = "",
                   indices: Sequence[int] | None = None) -> list[np.ndarray]:
    """The variants of :func:`make_variants` as RGB uint8 arrays (no PIL round trip), only those of ``indices``
    (default all): each variant's generator is its own, so a subset is the same arrays as in the whole set."""
    cfg = cfg or AugmentConfig()
    if scheme not in ("color", "bw"):
        raise ConfigError(f"unknown colour scheme {scheme!r}", "use 'color' or 'bw'")
    indices = range(cfg.n_variants) if indices is None else indices
    base8 = resize_long_side(np.asarray(img.convert("RGB")), cfg.size)
    base = None
    fill: tuple[float, ...] = ()
    out = []
    for i in indices:
        if i == 0:
            out.append(base8)
            continue
        if base is None:  # the same for every variant: compute once
            base = base8.astype(np.float32)
            if scheme == "bw":
                base = light_map(base, cfg.bw_float64)
            fill = _fill(base)
        out.append(_to_uint8(_variant(base, scheme, variant_rng(cfg.seed, key, i), cfg, fill)))
    return out


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    arr += np.float32(0.5)  # round half up; astype truncates
    np.clip(arr, 0, 255, out=arr)
    return arr.astype(np.uint8)
