"""``FinetuneConfig``: every knob of a fine-tuning run, saved in the checkpoint it produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from logoid.augment import AugmentConfig
from logoid.core.config import checked_kwargs
from logoid.core.errors import ConfigError

SELECT_METRICS = ("image_top1", "text_r5", "mean")
DEFAULT_WISE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class FinetuneConfig:
    """How the dual encoder is fine-tuned. Same config + same items + same start weights → identical weights."""

    epochs: int = 15  # passes over every (image, variant) pair; early stopping may end sooner
    batch_size: int = 64  # pairs per step; capped at the number of training entities (one per entity per batch)
    lr: float = 1e-3  # AdamW peak learning rate of the projections (and logit scale)
    trunk_lr: float = 1e-4  # peak learning rate of unlocked image-trunk blocks (pretrained: smaller than lr)
    weight_decay: float = 0.05  # AdamW decoupled weight decay on matrices (never on biases, norms, logit scale)
    warmup_fraction: float = 0.05  # share of all steps spent warming the learning rate up linearly from 0
    logit_scale: float = 1 / 0.07  # initial temperature inverse for the contrastive logits (CLIP's start value)
    learn_logit_scale: bool = True  # train the logit scale (clamped at 100 as in CLIP) or keep it fixed
    image_pair_weight: float = 0.5  # weight of the image-image term (two variants of one image); 0 turns it off
    unlock_image_blocks: int = 0  # train the last N blocks of the image trunk too (0: trunk frozen, cached features)
    val_fraction: float = 0.2  # share of ENTITIES held out for early stopping and the WiSE-FT alpha; 0 = none
    patience: int = 3  # stop after this many epochs without a better validation score
    select_metric: str = "mean"  # validation score: "image_top1", "text_r5" or their "mean"
    wise_alpha: float | str = "auto"  # WiSE-FT mix of fine-tuned vs start weights (1 = fine-tuned); "auto" = on val
    wise_grid: tuple[float, ...] = DEFAULT_WISE_GRID  # alphas tried when wise_alpha is "auto"
    seed: int = 0  # seeds the entity split, batch order, partner variants and torch
    feature_batch_size: int = 32  # images per forward pass while caching frozen features
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # how each reference image's variants are made

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        self.wise_grid = tuple(float(a) for a in self.wise_grid)
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}"),
            (self.lr > 0 and self.trunk_lr >= 0, "lr must be > 0 and trunk_lr >= 0"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.warmup_fraction < 1, f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}"),
            (0 < self.logit_scale <= 100, f"logit_scale must be in (0, 100], got {self.logit_scale}"),
            (self.image_pair_weight >= 0, f"image_pair_weight must be >= 0, got {self.image_pair_weight}"),
            (self.unlock_image_blocks >= 0, f"unlock_image_blocks must be >= 0, got {self.unlock_image_blocks}"),
            (0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (self.select_metric in SELECT_METRICS, f"select_metric must be one of {SELECT_METRICS}"),
            (self.feature_batch_size >= 1, "feature_batch_size must be >= 1"),
            (bool(self.wise_grid) and all(0 <= a <= 1 for a in self.wise_grid), "wise_grid alphas must be in [0, 1]"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg, "fix the fine-tuning setting")
        if isinstance(self.wise_alpha, str):
            if self.wise_alpha != "auto":
                raise ConfigError(f"wise_alpha must be a number in [0, 1] or 'auto', got {self.wise_alpha!r}")
        elif not 0 <= float(self.wise_alpha) <= 1:
            raise ConfigError(f"wise_alpha must be in [0, 1], got {self.wise_alpha}", "1 keeps the fine-tuned weights")
        else:
            self.wise_alpha = float(self.wise_alpha)
        if self.wise_alpha == "auto" and self.val_fraction == 0:
            raise ConfigError("wise_alpha='auto' needs a validation split", "set val_fraction > 0 or a number alpha")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["wise_grid"] = list(self.wise_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        return cls(**checked_kwargs(cls, d, "fine-tuning"))
