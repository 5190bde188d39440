"""Local features: RootSIFT keypoints and descriptors for geometric matching of logos.

Images are resized to a fixed working size before SIFT (small photos are upscaled: SIFT finds few
stable keypoints on a 380 px photo of a shirt), but keypoint coordinates are returned in the
ORIGINAL image's pixels, so homographies and polygons mean something to the caller.

SIFT descriptors are not invariant to contrast inversion, so a reference is also enrolled as its
inverted grey image (a black-on-white logo printed white-on-black on a shirt).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from logoid._atomic import write_bytes_atomic
from logoid.errors import ConfigError

if TYPE_CHECKING:
    import cv2

FEATURES_VERSION = 1
DESC_DIM = 128

#: Variant flags of reference features (stored with every descriptor in the index).
VARIANT_NORMAL = 0
VARIANT_INVERTED = 1

# Fields that change extracted features; the cache key hashes only these.
_EXTRACT_FIELDS = (
    "ref_long_side", "query_long_side", "upscale", "ref_max_keypoints", "query_max_keypoints",
    "sift_octave_layers", "sift_contrast_threshold", "sift_edge_threshold", "sift_sigma", "min_side",
)


@dataclass
class LocalConfig:
    """Settings of the local-features channel: extraction, matching and geometric verification."""

    ref_long_side: int = 400  # references are resized so their long side is this many px before SIFT
    query_long_side: int = 800  # photos likewise; upscaling small photos roughly doubles verified matches
    upscale: bool = True  # also enlarge images smaller than the working size (not only shrink big ones)
    ref_max_keypoints: int = 1000  # strongest (by response) keypoints kept per reference image and variant
    query_max_keypoints: int = 4000  # strongest keypoints kept per photo (a logo may be a small part of it)
    sift_octave_layers: int = 3  # SIFT layers per octave (OpenCV default)
    sift_contrast_threshold: float = 0.04  # SIFT DoG contrast threshold; lower finds more, weaker keypoints
    sift_edge_threshold: float = 10.0  # SIFT edge-response rejection
    sift_sigma: float = 1.6  # SIFT base blur
    min_side: int = 16  # images whose short side is below this (in original px) give no features
    enrol_inverted: bool = True  # also enrol references as their inverted grey image
    ratio: float = 0.95  # Lowe ratio: best distance / best distance to ANOTHER reference image
    neighbours: int = 8  # k of the k-NN search; the second-best other-image neighbour is sought among these
    shortlist: int = 20  # most-voted (image, variant) candidates sent to geometric verification
    min_votes: int = 4  # candidates with fewer ratio-test matches are not verified (a homography needs 4)
    min_inliers: int = 5  # fewer distinct inliers is no match (the calibrated threshold decides the rest)
    similarity_fallback: bool = True  # if the homography is implausible, try a 4-dof similarity fit
    ransac_threshold: float = 6.0  # max reprojection error, in px of the query at its working size
    ransac_max_iters: int = 2000  # RANSAC iteration cap
    ransac_confidence: float = 0.995  # RANSAC confidence
    ransac_method: str = "magsac"  # "magsac" (cv2.USAC_MAGSAC) or "ransac" (cv2.RANSAC)
    min_scale: float = 0.02  # smallest allowed linear scale of the reference in the query (working px)
    max_scale: float = 20.0  # largest allowed linear scale
    max_anisotropy: float = 8.0  # largest ratio of the two singular values of the affine part (extreme shear)
    min_area_frac: float = 0.0005  # projected reference area / photo area must be at least this
    max_area_frac: float = 4.0  # ... and at most this (a logo may be cropped by the photo edge)
    max_logos: int = 10  # find_all stops after this many logos

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.ransac_method not in ("magsac", "ransac"):
            raise ConfigError(f"ransac_method must be 'magsac' or 'ransac', got {self.ransac_method!r}")
        if min(self.ref_long_side, self.query_long_side, self.ref_max_keypoints, self.query_max_keypoints) < 1:
            raise ConfigError("working sizes and keypoint caps must be positive")
        if self.neighbours < 2:
            raise ConfigError(f"neighbours must be at least 2, got {self.neighbours}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LocalConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def extract_hash(self) -> str:
        """Short hash of the fields that change extracted features (cache key, index sidecar)."""
        sub = {k: getattr(self, k) for k in _EXTRACT_FIELDS}
        return hashlib.sha256(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Features:
    """Keypoints of one image: ``xy`` in original pixels, ``desc`` RootSIFT (unit L2 norm)."""

    xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (n, 2) float32, original px
    desc: np.ndarray = field(default_factory=lambda: np.zeros((0, DESC_DIM), np.float32))  # (n, 128) float32
    size: tuple[int, int] = (0, 0)  # (width, height) of the original image
    scale: float = 1.0  # working px per original px used for extraction

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def subset(self, keep: np.ndarray) -> Features:
        """These features restricted to ``keep`` (boolean mask or indices)."""
        return Features(self.xy[keep], self.desc[keep], self.size, self.scale)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, xy=self.xy, desc=self.desc, size=np.asarray(self.size, np.int64),
                 scale=np.float64(self.scale), version=np.int64(FEATURES_VERSION))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        z = np.load(io.BytesIO(data))
        w, h = (int(v) for v in z["size"])
        return cls(z["xy"].astype(np.float32), z["desc"].astype(np.float32), (w, h), float(z["scale"]))

    def to_npz(self, path: str | Path) -> None:
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def from_npz(cls, path: str | Path) -> Features:
        return cls.from_bytes(Path(path).read_bytes())


def _sift(cfg: LocalConfig) -> cv2.SIFT:
    import cv2

    return cv2.SIFT.create(
        nfeatures=0,
        nOctaveLayers=cfg.sift_octave_layers,
        contrastThreshold=cfg.sift_contrast_threshold,
        edgeThreshold=cfg.sift_edge_threshold,
        sigma=cfg.sift_sigma,
    )


def _working_grey(img: Image.Image, long_side: int, upscale: bool) -> tuple[np.ndarray, float]:
    """Grey uint8 array at the working size, and the scale (working px per original px)."""
    w, h = img.size
    scale = long_side / max(w, h)
    if scale > 1.0 and not upscale:
        scale = 1.0
    grey = img.convert("L")
    if abs(scale - 1.0) > 1e-6:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = grey.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.uint8), scale


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman 2012): L1-normalise, square root; the result has unit L2 norm."""
    desc = np.asarray(desc, dtype=np.float32)
    l1 = desc.sum(axis=1, keepdims=True)
    return np.sqrt(desc / np.maximum(l1, 1e-7)).astype(np.float32)


def _detect(grey: np.ndarray, scale: float, size: tuple[int, int], max_kp: int, cfg: LocalConfig) -> Features:
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


def extract(img: Image.Image, cfg: LocalConfig | None = None, role: str = "query", *, invert: bool = False) -> Features:
    """RootSIFT features of ``img`` at the working size of ``role`` ('ref' or 'query').

    A blank, solid or tiny image gives empty features (``len == 0``); this never raises on content.
    """
    cfg = cfg or LocalConfig()
    if role not in ("ref", "query"):
        raise ConfigError(f"role must be 'ref' or 'query', got {role!r}")
    size = (int(img.width), int(img.height))
    if min(size) < cfg.min_side:
        return Features(size=size)
    long_side = cfg.ref_long_side if role == "ref" else cfg.query_long_side
    max_kp = cfg.ref_max_keypoints if role == "ref" else cfg.query_max_keypoints
    grey, scale = _working_grey(img, long_side, cfg.upscale)
    if invert:
        grey = 255 - grey
    return _detect(grey, scale, size, max_kp, cfg)


def extract_reference(img: Image.Image, cfg: LocalConfig | None = None) -> list[Features]:
    """Features of a reference image: ``[normal]`` or ``[normal, inverted]`` (index = variant flag)."""
    cfg = cfg or LocalConfig()
    out = [extract(img, cfg, "ref")]
    if cfg.enrol_inverted:
        out.append(extract(img, cfg, "ref", invert=True))
    return out


class FeatureCache:
    """Reference features on disk, one ``.npz`` per (image sha256, extraction config, variant)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _path(self, sha256: str, cfg: LocalConfig, variant: int) -> Path:
        return self.dir / cfg.extract_hash() / sha256[:2] / f"{sha256}-{variant}.npz"

    def get(self, sha256: str, cfg: LocalConfig, variant: int = VARIANT_NORMAL) -> Features | None:
        p = self._path(sha256, cfg, variant)
        if not p.exists():
            return None
        try:
            return Features.from_npz(p)
        except (OSError, ValueError, KeyError):
            # A corrupt entry is a cache miss; the caller re-extracts and overwrites it.
            return None

    def put(self, sha256: str, cfg: LocalConfig, feats: Features, variant: int = VARIANT_NORMAL) -> None:
        feats.to_npz(self._path(sha256, cfg, variant))

    def get_reference(self, sha256: str, img_loader, cfg: LocalConfig) -> list[Features]:
        """Cached :func:`extract_reference`; ``img_loader()`` is called only on a miss."""
        n = 2 if cfg.enrol_inverted else 1
        got = [g for g in (self.get(sha256, cfg, v) for v in range(n)) if g is not None]
        if len(got) == n:
            return got
        feats = extract_reference(img_loader(), cfg)
        for v, f in enumerate(feats):
            self.put(sha256, cfg, f, v)
        return feats


__all__ = [
    "LocalConfig", "Features", "FeatureCache", "extract", "extract_reference", "root_sift",
    "VARIANT_NORMAL", "VARIANT_INVERTED",
]
