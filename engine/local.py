"""Local features: RootSIFT keypoints and descriptors for geometric matching of logos.

Images are resized to a fixed working size before SIFT (small photos are upscaled: SIFT finds few
stable keypoints on a 380 px photo of a shirt), but keypoint coordinates are returned in the
ORIGINAL image's pixels, so homographies and polygons mean something to the caller.

SIFT descriptors are not invariant to contrast inversion, so a reference is also enrolled as its
inverted grey image (a black-on-white logo printed white-on-black on a shirt). Each variant also holds
the keypoints of a small, blurred copy of the reference (``ref_small_side``): what a print that is a
small part of a photo looks like to SIFT.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from logoid.core.atomic import write_bytes_atomic
from logoid.core.errors import ConfigError
from logoid.core.pool import submit

if TYPE_CHECKING:
    import cv2

FEATURES_VERSION = 1
DESC_DIM = 128

#: Variant flags of reference features (stored with every descriptor in the index).
VARIANT_NORMAL = 0
VARIANT_INVERTED = 1

# Fields that change extracted features. The reference-feature cache and the descriptor index are keyed on
# the shared + reference fields only, so changing how photos are read never invalidates enrolled features.
_SHARED_FIELDS = ("upscale", "sift_octave_layers", "sift_contrast_threshold", "sift_edge_threshold", "sift_sigma",
                  "min_side")
_REF_FIELDS = _SHARED_FIELDS + ("ref_long_side", "ref_max_keypoints", "ref_small_side", "ref_chroma_keypoints",
                                 "chroma_dedup_px", "chroma_dedup_desc")
_QUERY_FIELDS = _SHARED_FIELDS + ("query_long_side", "query_max_keypoints", "tile_levels", "all_tile_levels",
                                  "tile_max_upscale", "tile_size", "tile_max_keypoints", "tile_min_step",
                                  "query_chroma_keypoints", "query_chroma_long_side", "chroma_dedup_px",
                                  "chroma_dedup_desc")


# Reference fields left out of the hash while they have this value (they were added later; leaving them out keeps
# the feature caches and homes built before them valid).
_HASH_ABSENT = {"ref_small_side": 0, "ref_chroma_keypoints": 0, "query_chroma_keypoints": 0, "chroma_dedup_px": 0}
# Fields that only matter while another field is on (left out of the hash while it is off).
# (Among the fields being hashed: the dedup counts in the reference hash only while references get chroma keypoints.)
_HASH_UNLESS = {"query_chroma_long_side": ("query_chroma_keypoints",), "chroma_dedup_desc": ("chroma_dedup_px",),
                "chroma_dedup_px": ("ref_chroma_keypoints", "query_chroma_keypoints")}

# Values that reproduce what logoid did before a field existed (applied by from_dict to older sidecars).
_LEGACY = {"tile_min_step": 1.4, "tile_shortlist": 0, "ref_small_side": 0, "ref_chroma_keypoints": 0,
           "query_chroma_keypoints": 0, "chroma_dedup_px": 0}


@dataclass
class LocalConfig:
    """Settings of the local-features channel: extraction, matching and geometric verification."""

    ref_long_side: int = 400  # references are resized so their long side is this many px before SIFT
    query_long_side: int = 800  # photos likewise; upscaling small photos roughly doubles verified matches
    upscale: bool = True  # also enlarge images smaller than the working size (not only shrink big ones)
    ref_max_keypoints: int = 1000  # strongest (by response) keypoints kept per reference image, variant and copy
    # Also read each reference as a small print would be: shrunk so its long side is this many px, enlarged back to
    # ref_long_side, its keypoints added to the variant's own (same coordinates). A print that is a small part of a
    # photo reaches SIFT blurred; the sharp reference alone shares few keypoints with it. 0 = off. On threadless-dev
    # calib (photos as they are and shrunk to 70 %), 50 lifted local top-1 0.904 -> 0.926 and 0.830 -> 0.911 for
    # 22 % more reference descriptors (BENCHMARKS.md, "small copies of the references")
    ref_small_side: int = 50
    query_max_keypoints: int = 4000  # strongest keypoints kept per photo (a logo may be a small part of it)
    # Colour-opponent keypoints: SIFT also reads the CIELAB a* (green-red) and b* (blue-yellow) channels and keeps
    # this many keypoints of each beside the grey ones. A print whose colours differ from the shirt in hue more than
    # in lightness (yellow on orange, pale blue on light blue) is nearly invisible in grey. References get them in
    # the normal variant only (a colour print keeps its colours); grey logos have flat chroma and get none. 0 = off.
    # threadless-dev local channel, chosen on calib (BENCHMARKS.md, "colour-opponent keypoints"): calib top-1
    # 0.926 -> 0.956, AUROC 0.968 -> 0.982 (test 0.922 -> 0.957, 0.957 -> 0.972) for +10 % reference descriptors;
    # 150 per channel scored the same on calib for +17 %.
    ref_chroma_keypoints: int = 75
    query_chroma_keypoints: int = 1000
    # Photos' chroma channels are read at most this long (never larger than the grey working size). JPEG keeps
    # chroma at half resolution, and SIFT on the 800 px working size doubles the photo's extraction time
    # (median 0.17 -> 0.36 s; 0.21 s at 400 px) for one more calib photo found.
    query_chroma_long_side: int = 400
    # A chroma keypoint that repeats a grey one is dropped: within this many px (of the grey working image) of a
    # kept grey keypoint, with a RootSIFT descriptor within chroma_dedup_desc of its descriptor or of its
    # contrast-inverted one. For a one-colour logo the a*/b* edges are the grey edges (same or opposite polarity):
    # on 80 simple-icons, 82 % of the chroma keypoints lie within 2 px of a grey one, and 90 % of those are such
    # repeats (distance < 0.11; the rest > 0.6). Repeats add index size and search time, not evidence: 2 px
    # removes 72 % of the icons' chroma keypoints (2 % of threadless-dev's, whose colours carry their own edges)
    # and, chosen on calib, scored no worse (local calib top-1 0.948 -> 0.956, AUROC 0.982 -> 0.988; position
    # alone, without the descriptor test, cost 2 points of test top-1). 0 = keep every chroma keypoint.
    chroma_dedup_px: float = 2.0
    chroma_dedup_desc: float = 0.25
    sift_octave_layers: int = 3  # SIFT layers per octave (OpenCV default)
    # SIFT DoG contrast threshold; lower finds more, weaker keypoints. A print photographed on a shirt has less
    # contrast than its artwork: 0.02 instead of OpenCV's 0.04 lifted threadless-dev local top-1 0.887 -> 0.902
    # (calib + test pooled; 0.01 gave the same top-1 at the 4,000-keypoint cap, more of them weak)
    sift_contrast_threshold: float = 0.02
    sift_edge_threshold: float = 10.0  # SIFT edge-response rejection
    sift_sigma: float = 1.6  # SIFT base blur
    min_side: int = 16  # images whose short side is below this (in original px) give no features
    # Multi-scale tiled photo extraction: a logo that is a small part of a big photo (a patch on a jacket, one
    # record of a wall) shrinks below SIFT's reach at the whole-photo working size. Each extra level reads the
    # photo at twice the previous scale, cut into overlapping tiles; small photos get no extra level.
    tile_levels: int = 0  # extra finer levels for every photo (0 = whole photo only)
    all_tile_levels: int = 2  # extra finer levels when looking for EVERY logo in a photo (`--all`: jackets, walls)
    tile_max_upscale: float = 2.5  # no level enlarges the original photo more than this
    # A level capped by tile_max_upscale is kept when at least this much finer than the last: an 800 px photo is
    # read at 1×, 2× and 2.5× (1.4 kept 1× and 2×), for prints shrunk to 60 % in a 2×2 mosaic; that last level
    # about doubles the keypoints and time of such a photo (BENCHMARKS.md, multi-logo mosaics)
    tile_min_step: float = 1.25
    tile_size: int = 800  # tile side in working px of its level (tiles overlap by half)
    tile_max_keypoints: int = 1500  # strongest keypoints kept per tile
    # find_all on a tiled photo also votes inside each tile window of the finer levels: a logo filling one window
    # of a busy photo wins few votes against chance votes from the whole photo, and its matches elsewhere dilute
    # its inlier ratio. This many most-voted candidates per window are verified on the window's matches only.
    tile_shortlist: int = 3
    enrol_inverted: bool = True  # also enrol references as their inverted grey image
    ratio: float = 0.95  # Lowe ratio: best distance / best distance to ANOTHER reference image
    neighbours: int = 8  # k of the k-NN search; the second-best other-image neighbour is sought among these
    # Once a candidate is picked by votes, its tentative matches are every query keypoint whose nearest keypoint
    # of that candidate (among the k neighbours) is within d1 / candidate_ratio; 0 = ratio-test matches only.
    candidate_ratio: float = 0.7  # chosen on threadless-dev calib (0.9 / 0.8 / 0.7 / 0.6 tried)
    shortlist: int = 50  # most-voted (image, variant) candidates sent to geometric verification
    min_votes: int = 4  # candidates with fewer ratio-test matches are not verified (a homography needs 4)
    # Verified candidates are ranked by inliers × inlier_ratio^w: 8 inliers among 12 tentative matches are
    # stronger evidence than 8 among 400 (chance finds a few inliers in any large set). 0 = raw inliers.
    inlier_ratio_weight: float = 0.5
    min_inliers: int = 5  # fewer distinct inliers is no match (the calibrated threshold decides the rest)
    similarity_fallback: bool = True  # if the homography is implausible, try a 4-dof similarity fit
    ransac_threshold: float = 6.0  # max reprojection error, in px of the query at its working size
    # RANSAC iteration cap (both fits). 1000, was 2000: the same calib accuracy on the 276 designs and the same
    # accuracy on every metric at 10k references, verification -25 % (BENCHMARKS.md, "verification cost").
    ransac_max_iters: int = 1000
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
        if min(self.tile_levels, self.all_tile_levels, self.tile_shortlist) < 0 or self.tile_size < 64 \
                or self.tile_max_keypoints < 1 or not 1.0 < self.tile_min_step <= 2.0:
            raise ConfigError("tile levels and tile_shortlist must be >= 0, tile_size >= 64, tile_max_keypoints >= 1 "
                              "and tile_min_step in (1, 2]")
        if min(self.ref_chroma_keypoints, self.query_chroma_keypoints) < 0 or self.query_chroma_long_side < 16:
            raise ConfigError("ref_chroma_keypoints and query_chroma_keypoints must be >= 0 (0 = off) and "
                              "query_chroma_long_side >= 16")
        if self.chroma_dedup_px < 0 or self.chroma_dedup_desc < 0:
            raise ConfigError("chroma_dedup_px (0 = off) and chroma_dedup_desc must be >= 0, got "
                              f"{self.chroma_dedup_px} and {self.chroma_dedup_desc}")
        if self.ref_small_side < 0:
            raise ConfigError(f"ref_small_side must be >= 0 (0 = off), got {self.ref_small_side}")
        if not 0.0 <= self.candidate_ratio <= 1.0:
            raise ConfigError(f"candidate_ratio must be in [0, 1], got {self.candidate_ratio}")
        if self.neighbours < 2:
            raise ConfigError(f"neighbours must be at least 2, got {self.neighbours}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LocalConfig:
        """From a stored dict; fields a sidecar written before they existed keep the behaviour it was built with."""
        legacy = {k: v for k, v in _LEGACY.items() if d and k not in d}
        return cls(**{**legacy, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__}})

    def _hash(self, fields: tuple[str, ...]) -> str:
        def on(k: str) -> bool:
            return k not in _HASH_UNLESS or any(on(d) and getattr(self, d) for d in _HASH_UNLESS[k] if d in fields)

        sub = {k: getattr(self, k) for k in fields if _HASH_ABSENT.get(k, object()) != getattr(self, k) and on(k)}
        return hashlib.sha256(json.dumps(sub, sort_keys=True).encode()).hexdigest()[:16]

    def ref_hash(self) -> str:
        """Short hash of the fields that change REFERENCE features (feature cache key, index compatibility)."""
        return self._hash(_REF_FIELDS)

    def query_hash(self) -> str:
        """Short hash of the fields that change photo (query) features."""
        return self._hash(_QUERY_FIELDS)

    def extract_hash(self) -> str:
        """Alias of :meth:`ref_hash` (what an enrolled reference's features depend on)."""
        return self.ref_hash()


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


def _sift(cfg: LocalConfig) -> cv2.SIFT:
    import cv2

    return cv2.SIFT.create(
        nfeatures=0,
        nOctaveLayers=cfg.sift_octave_layers,
        contrastThreshold=cfg.sift_contrast_threshold,
        edgeThreshold=cfg.sift_edge_threshold,
        sigma=cfg.sift_sigma,
    )


def _working_scale(img: Image.Image, long_side: int, upscale: bool) -> float:
    scale = long_side / max(img.size)
    return 1.0 if scale > 1.0 and not upscale else scale


def _resized(img: Image.Image, scale: float) -> Image.Image:
    if abs(scale - 1.0) <= 1e-6:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)


def _working_grey(img: Image.Image, long_side: int, upscale: bool) -> tuple[np.ndarray, float]:
    """Grey uint8 array at the working size, and the scale (working px per original px)."""
    scale = _working_scale(img, long_side, upscale)
    return np.asarray(_resized(img.convert("L"), scale), dtype=np.uint8), scale


def _chroma_features(img: Image.Image, scale: float, max_kp: int, cfg: LocalConfig) -> list[Features]:
    """Keypoints of the CIELAB a* and b* channels of ``img`` at ``scale`` (none for a grey image)."""
    import cv2

    if img.mode in ("L", "1", "I", "I;16", "F") or max_kp <= 0:
        return []
    rgb = np.asarray(_resized(img.convert("RGB"), scale), dtype=np.uint8)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    return [_detect(np.ascontiguousarray(lab[:, :, c]), scale, img.size, max_kp, cfg) for c in (1, 2)]


# RootSIFT of the contrast-inverted image at the same keypoint: gradients flip, so does the keypoint's orientation,
# and the 4x4 grid of cells turns by 180 degrees while the orientation bins (relative to it) stay.
_FLIP = np.arange(DESC_DIM).reshape(4, 4, 8)[::-1, ::-1, :].reshape(-1)


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
            flipped = np.linalg.norm(grey.desc[g][:, _FLIP] - feats.desc[kp], axis=1)
            repeat[kp[np.minimum(same, flipped) <= max_dist]] = True
    return feats.subset(~repeat)


def _concat(parts: list[Features]) -> Features:
    """One-level features joined (same image, size and scale)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    return Features(np.concatenate([p.xy for p in parts]), np.concatenate([p.desc for p in parts]), parts[0].size,
                    parts[0].scale)


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
    chroma_kp = cfg.ref_chroma_keypoints if role == "ref" else cfg.query_chroma_keypoints
    pending = None
    if chroma_kp and not invert:  # the chroma channels' SIFT runs beside the grey one when OpenCV may use 2 threads
        c_scale = scale if role == "ref" else min(scale, _working_scale(img, cfg.query_chroma_long_side, cfg.upscale))
        pending = submit(_chroma_features, img, c_scale, chroma_kp, cfg)
    feats = _detect(grey, scale, size, max_kp, cfg)
    if pending is not None:
        chroma = pending.result()
        if cfg.chroma_dedup_px > 0 and len(feats):
            chroma = [_new_only(c, feats, cfg.chroma_dedup_px / scale, cfg.chroma_dedup_desc) for c in chroma]
        feats = _concat([feats, *chroma])
    if role == "query" and cfg.tile_levels > 0:
        feats = _add_tiled_levels(feats, img, scale, cfg, invert)
    return feats


def tile_scales(size: tuple[int, int], base_scale: float, cfg: LocalConfig) -> list[float]:
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


def tile_windows(feats: Features, cfg: LocalConfig) -> list[tuple[float, float, float, float]]:
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


def _add_tiled_levels(base: Features, img: Image.Image, base_scale: float, cfg: LocalConfig, invert: bool
                      ) -> Features:
    parts_xy, parts_desc, parts_s = [base.xy], [base.desc], [np.full(len(base), base_scale, np.float32)]
    grey_full = img.convert("L")
    for s in tile_scales(base.size, base_scale, cfg):
        w, h = (max(1, round(v * s)) for v in base.size)
        resample = Image.Resampling.BICUBIC if s > 1 else Image.Resampling.LANCZOS
        arr = np.asarray(grey_full.resize((w, h), resample), dtype=np.uint8)
        if invert:
            arr = 255 - arr
        for x0, x1, cx0, cx1 in _tile_grid(w, cfg.tile_size):
            for y0, y1, cy0, cy1 in _tile_grid(h, cfg.tile_size):
                f = _detect(arr[y0:y1, x0:x1], 1.0, (x1 - x0, y1 - y0), cfg.tile_max_keypoints, cfg)
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


def extract_reference(img: Image.Image, cfg: LocalConfig | None = None) -> list[Features]:
    """Features of a reference image: ``[normal]`` or ``[normal, inverted]`` (index = variant flag)."""
    cfg = cfg or LocalConfig()
    inverts = (False, True) if cfg.enrol_inverted else (False,)
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


def _small_copy(img: Image.Image, cfg: LocalConfig, scale: float) -> Image.Image | None:
    """The reference shrunk to ``ref_small_side`` px and enlarged back to its working size (``scale``); None = no copy."""
    w, h = img.size
    f = cfg.ref_small_side / max(w, h, 1)
    if cfg.ref_small_side <= 0 or min(w, h) < cfg.min_side or f >= 1.0:
        return None
    if img.mode not in ("L", "RGB"):  # PIL resizes palette and 1-bit images by nearest neighbour: no blur
        img = img.convert("RGB")
    small = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
    return small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)


class FeatureCache:
    """Reference features on disk, one ``.npz`` per (image sha256, extraction config, variant)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _path(self, sha256: str, cfg: LocalConfig, variant: int) -> Path:
        return self.dir / cfg.ref_hash() / sha256[:2] / f"{sha256}-{variant}.npz"

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
    "LocalConfig", "Features", "FeatureCache", "extract", "extract_reference", "root_sift", "tile_scales", "tile_windows",
    "VARIANT_NORMAL", "VARIANT_INVERTED",
]
