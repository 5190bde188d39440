"""The keypoints of one image (:class:`Features`) and how they are stored."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logoid.core.atomic import write_bytes_atomic

FEATURES_VERSION = 1
DESC_DIM = 128

#: Variant flags of reference features (stored with every descriptor in the index).
VARIANT_NORMAL = 0
VARIANT_INVERTED = 1

#: RootSIFT of the contrast-inverted image at the same keypoint is ``desc[:, INVERTED_ORDER]``: the gradients flip,
#: so does the keypoint's orientation, and the 4x4 grid of cells turns by 180 degrees while the orientation bins
#: (relative to it) stay. DoG extrema and their responses keep their places, so the inverted variant of a
#: reference is exactly its grey keypoints with this permutation (checked on cached references: distance 0).
INVERTED_ORDER = np.arange(DESC_DIM).reshape(4, 4, 8)[::-1, ::-1, :].reshape(-1)


@dataclass
class Features:
    """Keypoints of one image: ``xy`` in original pixels, ``desc`` RootSIFT (unit L2 norm)."""

    xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (n, 2) float32, original px
    desc: np.ndarray = field(default_factory=lambda: np.zeros((0, DESC_DIM), np.float32))  # (n, 128) float32
    size: tuple[int, int] = (0, 0)  # (width, height) of the original image
    scale: float = 1.0  # working px per original px used for extraction (of the whole-image level)
    kp_scale: np.ndarray | None = None  # (n,) float32 working px per original px of each keypoint's level; None = scale

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def subset(self, keep: np.ndarray) -> Features:
        """These features restricted to ``keep`` (boolean mask or indices)."""
        ks = None if self.kp_scale is None else self.kp_scale[keep]
        return Features(self.xy[keep], self.desc[keep], self.size, self.scale, ks)

    def level_scale(self, idx: np.ndarray) -> float:
        """The working scale of keypoints ``idx`` (their median level scale; ``scale`` for one-level features)."""
        if self.kp_scale is None or len(idx) == 0:
            return self.scale
        return float(np.median(self.kp_scale[idx]))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {"xy": self.xy, "desc": self.desc, "size": np.asarray(self.size, np.int64),
                                  "scale": np.float64(self.scale), "version": np.int64(FEATURES_VERSION)}
        if self.kp_scale is not None:
            arrays["kp_scale"] = self.kp_scale
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        z = np.load(io.BytesIO(data))
        w, h = (int(v) for v in z["size"])
        ks = z["kp_scale"].astype(np.float32) if "kp_scale" in z.files else None
        return cls(z["xy"].astype(np.float32), z["desc"].astype(np.float32), (w, h), float(z["scale"]), ks)

    def to_npz(self, path: str | Path) -> None:
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def from_npz(cls, path: str | Path) -> Features:
        return cls.from_bytes(Path(path).read_bytes())


def concat(parts: list[Features]) -> Features:
    """One-level features joined (same image, size and scale)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    return Features(np.concatenate([p.xy for p in parts]), np.concatenate([p.desc for p in parts]), parts[0].size,
                    parts[0].scale)


__all__ = ["DESC_DIM", "FEATURES_VERSION", "Features", "INVERTED_ORDER", "VARIANT_INVERTED", "VARIANT_NORMAL", "concat"]
