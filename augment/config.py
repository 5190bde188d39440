"""``AugmentConfig``: every knob of the variant pipeline, saved next to the index it helped build."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from logoid.core.config import checked_kwargs
from logoid.core.errors import ConfigError


@dataclass
class AugmentConfig:
    """How reference variants are made. Same config + same image → identical variants, in any process."""

    n_variants: int = 20  # variants per reference image, the (resized) original counted as variant 0
    seed: int = 0  # global seed; each variant's generator is seeded from hash(seed, image sha256, variant index)
    # Long side of every output image, in pixels: 224, the default model's input side, so a variant is resampled
    # once. 320 (before issue 24) cost the build's reader twice the CPU a variant beside the model; on threadless-dev
    # the answers were the same (fused and calibrated, test top-1 0.957 at both, AUROC 0.981 / 0.982: BENCHMARKS.md
    # #accuracy-designs, 2026-12-06 05:05 and 07:21). A home keeps the size its index was built with
    # (`build-index --augment-size`).
    size: int = 224
    p_perspective: float = 0.7  # probability of a perspective warp (like RandomPerspective)
    perspective: float = 0.3  # RandomPerspective distortion_scale: corners move inward by up to this × half-side
    degrees: float = 12.0  # RandomAffine rotation range ±degrees
    translate: float = 0.06  # RandomAffine translation, fraction of width / height
    scale_min: float = 0.75  # RandomAffine scale range, lower end (< 1 leaves room so warps do not crop)
    scale_max: float = 1.05  # RandomAffine scale range, upper end
    shear: float = 8.0  # RandomAffine shear range ±degrees (x and y)
    brightness: float = 0.3  # ColorJitter brightness: factor in [1 - b, 1 + b]
    contrast: float = 0.3  # ColorJitter contrast: factor in [1 - c, 1 + c]
    saturation: float = 0.4  # ColorJitter saturation: factor in [1 - s, 1 + s]
    hue: float = 0.05  # ColorJitter hue: rotation in [-h, h] turns
    p_invert: float = 0.15  # RandomInvert probability (a light-on-dark logo printed dark-on-light)
    p_blur: float = 0.3  # probability of a Gaussian blur (out-of-focus phone photo)
    blur_sigma: float = 1.2  # largest blur sigma, in pixels at output size
    noise_sigma: float = 4.0  # largest sensor-noise standard deviation, in 0-255 units (0 turns it off)
    p_bw_light: float = 0.3  # black-and-white scheme: probability to recolour the LIGHT pixels
    p_bw_dark: float = 0.3  # black-and-white scheme: probability to recolour the DARK pixels
    p_bw_both: float = 0.15  # black-and-white scheme: probability to recolour both (light and dark, two colours)
    p_texture: float = 0.35  # when recolouring, probability of a gradient / cloudy texture instead of a flat colour
    # The black-and-white scheme's light map in float64, as indexes built before 2026-12-07 made it (NumPy 2 promoted
    # it through a float64 percentile). float32 takes 25-38 % of those variants' augmenting CPU away and moves 1.7 % of
    # their pixels by 7 levels at most (README, building the index); a home keeps what its index was built with (a
    # sidecar's config from before has no such key: True).
    bw_float64: bool = False

    def __post_init__(self) -> None:
        if self.n_variants < 1:
            raise ConfigError(f"n_variants must be >= 1, got {self.n_variants}", "the original is variant 0")
        if self.size < 16:
            raise ConfigError(f"size must be >= 16 pixels, got {self.size}", "use e.g. 320")
        if not 0 < self.scale_min <= self.scale_max:
            raise ConfigError(f"bad scale range {self.scale_min}..{self.scale_max}", "use 0 < scale_min <= scale_max")
        probs = ("p_perspective", "p_invert", "p_blur", "p_bw_light", "p_bw_dark", "p_bw_both", "p_texture")
        for name in probs:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}", "it is a probability")
        if self.p_bw_light + self.p_bw_dark + self.p_bw_both > 1.0:
            raise ConfigError("p_bw_light + p_bw_dark + p_bw_both must be <= 1", "lower one of them")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        """A saved config; one saved before ``bw_float64`` existed made its light maps in float64."""
        return cls(**checked_kwargs(cls, {"bw_float64": True, **d}, "augment"))

    def config_hash(self) -> str:
        """Short stable hash of every setting (cache key for embedded variants). A float64 light map hashes without the
        key, so configs saved before it existed keep their hash and their cached vectors."""
        d = self.to_dict()
        if d["bw_float64"]:
            del d["bw_float64"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
