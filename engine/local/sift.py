"""SIFT on one grey array: the strongest keypoints as RootSIFT :class:`Features` in original pixels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import ExtractConfig
from .features import Features

if TYPE_CHECKING:
    import cv2


def _sift(cfg: ExtractConfig) -> cv2.SIFT:
    import cv2

    return cv2.SIFT.create(
        nfeatures=0,
        nOctaveLayers=cfg.sift_octave_layers,
        contrastThreshold=cfg.sift_contrast_threshold,
        edgeThreshold=cfg.sift_edge_threshold,
        sigma=cfg.sift_sigma,
    )


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman 2012): L1-normalise, square root; the result has unit L2 norm."""
    desc = np.asarray(desc, dtype=np.float32)
    l1 = desc.sum(axis=1, keepdims=True)
    return np.sqrt(desc / np.maximum(l1, 1e-7)).astype(np.float32)


def detect(grey: np.ndarray, scale: float, size: tuple[int, int], max_kp: int, cfg: ExtractConfig) -> Features:
    """The ``max_kp`` strongest keypoints of ``grey`` (an image of ``size`` read at ``scale`` working px per px)."""
    empty = Features(size=size, scale=scale)
    # A solid image has no gradients; skipping SIFT also avoids its cost on blank frames.
    if grey.size == 0 or int(grey.max()) - int(grey.min()) < 8:
        return empty
    kps, desc = _sift(cfg).detectAndCompute(grey, None)
    if desc is None or len(kps) == 0:
        return empty
    resp = np.array([k.response for k in kps], dtype=np.float32)
    keep = np.argsort(-resp, kind="stable")[:max_kp]
    xy = np.array([kps[i].pt for i in keep], dtype=np.float32).reshape(-1, 2)
    # Coordinates back to original pixels: pixel centres map as (x + 0.5) / s - 0.5.
    xy = ((xy + 0.5) / scale - 0.5).astype(np.float32)
    return Features(xy, root_sift(desc[keep]), size, scale)


__all__ = ["detect", "root_sift"]
