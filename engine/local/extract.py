"""Reading an image into RootSIFT :class:`Features`: grey, inverted, colour-opponent and small-copy keypoints."""

from __future__ import annotations

import numpy as np
from PIL import Image

from logoid.core.errors import ConfigError
from logoid.core.imageio import geometry, resize_scaled
from logoid.core.pool import submit

from .config import ExtractConfig
from .features import INVERTED_ORDER, Features, concat
from .sift import detect
from .tiles import add_tiled_levels


def _working_scale(img: Image.Image, long_side: int, upscale: bool) -> float:
    scale = long_side / max(geometry(img).original_size)
    return 1.0 if scale > 1.0 and not upscale else scale


def _working_grey(img: Image.Image, long_side: int, upscale: bool) -> tuple[np.ndarray, float]:
    """Grey uint8 array at the working size, and the scale (working px per original px)."""
    scale = _working_scale(img, long_side, upscale)
    return np.asarray(resize_scaled(img.convert("L"), scale, geometry(img)), dtype=np.uint8), scale


def _chroma_features(img: Image.Image, scale: float, max_kp: int, cfg: ExtractConfig) -> list[Features]:
    """Keypoints of the CIELAB a* and b* channels of ``img`` at ``scale`` (none for a grey image)."""
    import cv2

    if img.mode in ("L", "1", "I", "I;16", "F") or max_kp <= 0:
        return []
    geo = geometry(img)
    rgb = np.asarray(resize_scaled(img.convert("RGB"), scale, geo), dtype=np.uint8)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    return [detect(np.ascontiguousarray(lab[:, :, c]), scale, geo.original_size, max_kp, cfg) for c in (1, 2)]


def _new_only(feats: Features, grey: Features, radius: float, max_dist: float) -> Features:
    """``feats`` without the keypoints that repeat one of ``grey``: within ``radius`` (original px) of it, with a
    descriptor within ``max_dist`` of its descriptor or of its contrast-inverted one."""
    if not len(feats) or not len(grey):
        return feats
    # Bucket the grey keypoints into cells of side ``radius``: one within ``radius`` of a keypoint lies in the 3x3
    # cells around that keypoint's own, so each keypoint is compared with a few, not all of them.
    cell = np.floor(grey.xy / radius).astype(np.int64)
    order = np.lexsort((cell[:, 1], cell[:, 0]))
    keys = cell[order, 0] * (1 << 32) + cell[order, 1]
    own = np.floor(feats.xy / radius).astype(np.int64)
    repeat = np.zeros(len(feats), dtype=bool)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            k = (own[:, 0] + dx) * (1 << 32) + own[:, 1] + dy
            lo, hi = np.searchsorted(keys, k, "left"), np.searchsorted(keys, k, "right")
            counts = hi - lo
            if not counts.any():
                continue
            # Every (keypoint, grey keypoint in that cell) pair, flattened.
            kp = np.repeat(np.arange(len(feats)), counts)
            g = order[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))]
            d = grey.xy[g] - feats.xy[kp]
            close = (d * d).sum(axis=1) <= radius * radius
            kp, g = kp[close], g[close]
            same = np.linalg.norm(grey.desc[g] - feats.desc[kp], axis=1)
            flipped = np.linalg.norm(grey.desc[g][:, INVERTED_ORDER] - feats.desc[kp], axis=1)
            repeat[kp[np.minimum(same, flipped) <= max_dist]] = True
    return feats.subset(~repeat)


def extract(img: Image.Image, cfg: ExtractConfig | None = None, role: str = "query", *,
            invert: bool = False) -> Features:
    """RootSIFT features of ``img`` at the working size of ``role`` ('ref' or 'query').

    A blank, solid or tiny image gives empty features (``len == 0``); this never raises on content.
    """
    cfg = cfg or ExtractConfig()
    if role not in ("ref", "query"):
        raise ConfigError(f"role must be 'ref' or 'query', got {role!r}")
    size = geometry(img).original_size  # a photo decoded below full size still reports its own px
    if min(size) < cfg.min_side:
        return Features(size=size)
    long_side = cfg.ref_long_side if role == "ref" else cfg.query_long_side
    max_kp = cfg.ref_max_keypoints if role == "ref" else cfg.query_max_keypoints
    grey, scale = _working_grey(img, long_side, cfg.upscale)
    if invert:
        grey = 255 - grey
    chroma_kp = cfg.ref_chroma_keypoints if role == "ref" else cfg.query_chroma_keypoints
    pending = None
    if chroma_kp and not invert:  # the chroma channels' SIFT runs beside the grey one when OpenCV may use 2 threads
        c_scale = scale if role == "ref" else min(scale, _working_scale(img, cfg.query_chroma_long_side, cfg.upscale))
        pending = submit(_chroma_features, img, c_scale, chroma_kp, cfg)
    feats = detect(grey, scale, size, max_kp, cfg)
    if pending is not None:
        chroma = pending.result()
        if cfg.chroma_dedup_px > 0 and len(feats):
            chroma = [_new_only(c, feats, cfg.chroma_dedup_px / scale, cfg.chroma_dedup_desc) for c in chroma]
        feats = concat([feats, *chroma])
    if role == "query" and cfg.tile_levels > 0:
        feats = add_tiled_levels(feats, img, scale, cfg, invert)
    return feats


def reference_variants(cfg: ExtractConfig, flips: bool = False) -> int:
    """Variants of a reference to extract: 2 (normal, inverted) with ``cfg.enrol_inverted``, else 1; 1 also when the
    descriptor index ``flips`` (finds inverted prints by flipping photo descriptors: it keeps the normal variant only,
    and extracting the inverted one would be half the work for nothing)."""
    return 2 if cfg.enrol_inverted and not flips else 1


def extract_reference(img: Image.Image, cfg: ExtractConfig | None = None, variants: int | None = None
                      ) -> list[Features]:
    """Features of a reference image: ``[normal]`` or ``[normal, inverted]`` (index = variant flag). ``variants``:
    how many of those (1 or 2; default :func:`reference_variants`)."""
    cfg = cfg or ExtractConfig()
    inverts = (False, True)[: variants or reference_variants(cfg)]
    sharp = [extract(img, cfg, "ref", invert=inv) for inv in inverts]
    big = _small_copy(img, cfg, sharp[0].scale)
    if big is None:
        return sharp
    sx, sy = img.width / big.width, img.height / big.height
    out = []
    for inv, feats in zip(inverts, sharp, strict=True):
        blurred = extract(big, cfg, "ref", invert=inv)
        xy = ((blurred.xy + 0.5) * np.array([sx, sy], np.float32) - 0.5).astype(np.float32)
        out.append(Features(np.concatenate([feats.xy, xy]), np.concatenate([feats.desc, blurred.desc]), feats.size,
                            feats.scale))
    return out


def _small_copy(img: Image.Image, cfg: ExtractConfig, scale: float) -> Image.Image | None:
    """The reference shrunk to ``ref_small_side`` px and enlarged back to its working size (``scale``); None = no copy."""
    w, h = img.size
    f = cfg.ref_small_side / max(w, h, 1)
    if cfg.ref_small_side <= 0 or min(w, h) < cfg.min_side or f >= 1.0:
        return None
    if img.mode not in ("L", "RGB"):  # PIL resizes palette and 1-bit images by nearest neighbour: no blur
        img = img.convert("RGB")
    small = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
    return small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)


__all__ = ["extract", "extract_reference", "reference_variants"]
