"""Settings of local-feature extraction (:class:`ExtractConfig`) and the hashes that key features on them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from logoid.core.errors import ConfigError

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
_LEGACY = {"tile_min_step": 1.4, "ref_small_side": 0, "ref_chroma_keypoints": 0, "query_chroma_keypoints": 0,
           "chroma_dedup_px": 0}


def from_stored(cls, d: dict | None, legacy: dict):
    """A settings dataclass from a stored dict: its own fields of ``d`` (other keys are ignored, so the flat dict of
    every local setting that sidecars held before the stages were split also reads); fields that a non-empty ``d``
    lacks take their ``legacy`` value (what logoid did before they existed), the rest their default."""
    d = d or {}
    old = {k: v for k, v in legacy.items() if d and k not in d}
    return cls(**{**old, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__}})


@dataclass
class ExtractConfig:
    """How references and photos are read into RootSIFT keypoints (the local channel's first stage)."""

    ref_long_side: int = 400  # references are resized so their long side is this many px before SIFT
    query_long_side: int = 800  # photos likewise; upscaling small photos roughly doubles verified matches
    upscale: bool = True  # also enlarge images smaller than the working size (not only shrink big ones)
    ref_max_keypoints: int = 1000  # strongest (by response) keypoints kept per reference image, variant and copy
    # Also read each reference as a small print would be: shrunk so its long side is this many px, enlarged back to
    # ref_long_side, its keypoints added to the variant's own (same coordinates). A print that is a small part of a
    # photo reaches SIFT blurred; the sharp reference alone shares few keypoints with it. 0 = off. On threadless-dev
    # calib (photos as they are and shrunk to 70 %), 50 lifted local top-1 0.904 -> 0.926 and 0.830 -> 0.911 for
    # 22 % more reference descriptors (BENCHMARKS.md#local-sweep, run of 2026-11-23 18:49)
    ref_small_side: int = 50
    query_max_keypoints: int = 4000  # strongest keypoints kept per photo (a logo may be a small part of it)
    # Colour-opponent keypoints: SIFT also reads the CIELAB a* (green-red) and b* (blue-yellow) channels and keeps
    # this many keypoints of each beside the grey ones. A print whose colours differ from the shirt in hue more than
    # in lightness (yellow on orange, pale blue on light blue) is nearly invisible in grey. References get them in
    # the normal variant only (a colour print keeps its colours); grey logos have flat chroma and get none. 0 = off.
    # threadless-dev local channel, chosen on calib (BENCHMARKS.md#accuracy-designs, run of 2026-12-04 11:53):
    # calib top-1 0.926 -> 0.956, AUROC 0.968 -> 0.982 (test 0.922 -> 0.957, 0.957 -> 0.972) for +10 % reference
    # descriptors; 150 per channel scored the same on calib for +17 %.
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
    # about doubles the keypoints and time of such a photo (BENCHMARKS.md#mosaic-designs)
    tile_min_step: float = 1.25
    tile_size: int = 800  # tile side in working px of its level (tiles overlap by half)
    tile_max_keypoints: int = 1500  # strongest keypoints kept per tile
    enrol_inverted: bool = True  # also enrol references as their inverted grey image

    def __post_init__(self) -> None:
        if min(self.ref_long_side, self.query_long_side, self.ref_max_keypoints, self.query_max_keypoints) < 1:
            raise ConfigError("working sizes and keypoint caps must be positive")
        if min(self.tile_levels, self.all_tile_levels) < 0 or self.tile_size < 64 or self.tile_max_keypoints < 1 \
                or not 1.0 < self.tile_min_step <= 2.0:
            raise ConfigError("tile levels must be >= 0, tile_size >= 64, tile_max_keypoints >= 1 and tile_min_step "
                              "in (1, 2]")
        if min(self.ref_chroma_keypoints, self.query_chroma_keypoints) < 0 or self.query_chroma_long_side < 16:
            raise ConfigError("ref_chroma_keypoints and query_chroma_keypoints must be >= 0 (0 = off) and "
                              "query_chroma_long_side >= 16")
        if self.chroma_dedup_px < 0 or self.chroma_dedup_desc < 0:
            raise ConfigError("chroma_dedup_px (0 = off) and chroma_dedup_desc must be >= 0, got "
                              f"{self.chroma_dedup_px} and {self.chroma_dedup_desc}")
        if self.ref_small_side < 0:
            raise ConfigError(f"ref_small_side must be >= 0 (0 = off), got {self.ref_small_side}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> ExtractConfig:
        """From a stored dict (see :func:`from_stored`): a sidecar written before a field existed keeps the
        behaviour it was built with."""
        return from_stored(cls, d, _LEGACY)

    def for_find_all(self) -> ExtractConfig:
        """The settings for reading a photo for every logo in it: at least ``all_tile_levels`` finer levels."""
        return replace(self, tile_levels=self.all_tile_levels) if self.all_tile_levels > self.tile_levels else self

    def ref_scale(self, size: tuple[int, int]) -> float:
        """Working px per original px of a reference of ``size`` (what its keypoints were found at)."""
        long = max(size)
        return self.ref_long_side / long if (self.upscale or long > self.ref_long_side) else 1.0

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


__all__ = ["ExtractConfig", "from_stored"]
