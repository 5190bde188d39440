"""Per-candidate features from every channel, and the scoring that turns them into one answer.

Before calibration a documented fixed rule scores candidates (a noisy-OR of per-channel evidence);
`logoid calibrate` replaces it with a logistic regression fitted on labelled calibration photos,
stored in the index sidecar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from logoid.core.errors import ConfigError

FEATURES = (
    "cos",  # best cosine between the photo and any augmented variant of the entity
    "cos_margin",  # cos minus the best cosine of any other entity
    "rank_global",  # rank of the entity in the global channel (shortlist size if absent)
    "log_inliers",  # log(1 + RANSAC-verified inliers) of the entity's best reference
    "inlier_ratio",  # inliers / tentative matches of that verification
    "log_local_score",  # log(1 + inliers × sqrt(inlier_ratio)): inliers discounted by the tentative matches
    "local_margin",  # log_local_score minus the best other entity's log_local_score
    "rank_local",  # rank in the local channel (shortlist size if absent)
    "text_sim",  # fuzzy similarity of the read text to the entity's name, 0 if none
    "text_coverage",  # fraction of the read text the name explains
    "text_conf",  # OCR confidence of the line that matched
)


@dataclass
class DefaultRule:
    """Fixed fusion used until `logoid calibrate` fits one: noisy-OR of three per-channel sigmoids.

    Each channel alone can carry an answer (a verified homography, a close embedding, a read name),
    so evidence combines as ``1 - Π(1 - p_channel)`` rather than a sum that a silent channel drags down.
    """

    cos_mid: float = 0.80  # cosine at which the global channel alone gives p = 0.5
    cos_slope: float = 40.0
    # local score (inliers × sqrt(inlier ratio)) at which the local channel alone gives p = 0.5: the local
    # channel's open-set-best threshold on threadless-dev calib (candidate_ratio 0.7, shortlist 50)
    inliers_mid: float = 3.0
    inliers_slope: float = 4.0  # per unit of log(1 + local score)
    text_mid: float = 0.85  # name similarity at which the text channel alone gives p = 0.5
    text_slope: float = 30.0
    threshold: float = 0.5
    # what inliers_mid is compared with: "local_score", or "inliers" (sidecars written before the local score)
    local_feature: str = "local_score"

    def score(self, f: dict) -> float:
        p_g = _sigmoid(self.cos_slope * (f.get("cos", 0.0) - self.cos_mid))
        local = f.get("log_inliers", 0.0) if self.local_feature == "inliers" else \
            f.get("log_local_score", f.get("log_inliers", 0.0))
        p_l = _sigmoid(self.inliers_slope * (local - math.log1p(self.inliers_mid)))
        p_t = _sigmoid(self.text_slope * (f.get("text_sim", 0.0) - self.text_mid)) if f.get("text_sim", 0) > 0 else 0.0
        return float(1.0 - (1.0 - p_g) * (1.0 - p_l) * (1.0 - p_t))

    def to_dict(self) -> dict:
        return {"kind": "default", **asdict(self)}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def candidate_features(cands: list[dict], shortlist: int) -> list[dict]:
    """Fill the relative features (margins, ranks) of each candidate from the raw per-channel values."""
    if not cands:
        return []
    cos = np.array([c.get("cos", 0.0) for c in cands])
    inl = np.array([math.log1p(c.get("inliers", 0)) for c in cands])
    loc = np.array([math.log1p(c.get("local_score", c.get("inliers", 0))) for c in cands])
    order_g = np.argsort(-cos, kind="stable")
    order_l = np.argsort(-loc, kind="stable")
    rank_g = np.empty(len(cands), int)
    rank_g[order_g] = np.arange(len(cands))
    rank_l = np.empty(len(cands), int)
    rank_l[order_l] = np.arange(len(cands))
    out = []
    for i, c in enumerate(cands):
        other_cos = np.delete(cos, i).max() if len(cands) > 1 else 0.0
        other_loc = np.delete(loc, i).max() if len(cands) > 1 else 0.0
        out.append({
            "cos": float(cos[i]),
            "cos_margin": float(cos[i] - other_cos),
            "rank_global": float(min(rank_g[i], shortlist) if c.get("in_global") else shortlist),
            "log_inliers": float(inl[i]),
            "inlier_ratio": float(c.get("inlier_ratio", 0.0)),
            # Not in FEATURES (measured: it did not help the fusion); kept for `python -m bench fusion-cv` and the JSON "why".
            "inlier_coverage": float(c.get("inlier_coverage", 0.0)),
            "log_local_score": float(loc[i]),
            "local_margin": float(loc[i] - other_loc),
            "rank_local": float(min(rank_l[i], shortlist) if c.get("inliers", 0) > 0 else shortlist),
            "text_sim": float(c.get("text_sim", 0.0)),
            "text_coverage": float(c.get("text_coverage", 0.0)),
            "text_conf": float(c.get("text_conf", 0.0)),
        })
    return out


def make_scorer(meta: dict):
    """The scorer recorded in an index sidecar: a fitted fusion model, or the default rule."""
    fusion = meta.get("fusion")
    if fusion and fusion.get("kind") != "default":
        model = FusionModel.from_dict(fusion)
        if "local_margin" in model.feature_names and "log_local_score" not in model.feature_names:
            import warnings

            warnings.warn("the fusion model was fitted by an older logoid (local_margin has changed meaning); "
                          "re-run `logoid calibrate`", RuntimeWarning, stacklevel=2)
        return lambda feats: [float(p) for p in model.predict_proba(feats)] if feats else []
    kw = {k: v for k, v in (fusion or {}).items() if k in DefaultRule.__dataclass_fields__}
    if fusion and "local_feature" not in fusion:  # an index built before the local score: keep its meaning
        kw["local_feature"] = "inliers"
    rule = DefaultRule(**kw)
    return lambda feats: [rule.score(f) for f in feats]


FUSION_VERSION = 1


@dataclass
class FusionModel:
    """p(candidate is right) = sigmoid(intercept + Σ coef_i · (x_i − mean_i) / scale_i)."""

    # feature names, in the order of coef / mean / scale
    feature_names: list[str]
    # weight of each standardised feature
    coef: list[float]
    # bias term of the linear score
    intercept: float
    # value subtracted from each feature before scaling; also the value used when a feature is missing
    mean: list[float] = field(default_factory=list)
    # divisor of each centred feature (1.0 for a hand-set rule)
    scale: list[float] = field(default_factory=list)
    # "logistic" when fitted by fit_fusion, "linear" when set by hand
    kind: str = "logistic"
    C: float | None = None  # the logistic regression's regularisation (None: a hand-set or older model)

    def __post_init__(self) -> None:
        d = len(self.feature_names)
        if not self.mean:
            self.mean = [0.0] * d
        if not self.scale:
            self.scale = [1.0] * d
        if not (len(self.coef) == len(self.mean) == len(self.scale) == d):
            raise ConfigError("fusion model has mismatched lengths of feature_names/coef/mean/scale",
                              "rebuild the fusion model with `logoid calibrate`")
        if any(not s > 0 for s in self.scale):
            raise ConfigError("fusion model scale values must be positive")

    @classmethod
    def linear(cls, weights: Mapping[str, float], bias: float = 0.0) -> FusionModel:
        """A hand-set rule: linear score ``bias + Σ w·x`` on raw features (no standardisation)."""
        names = list(weights)
        return cls(names, [float(weights[n]) for n in names], float(bias), kind="linear")

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Feature matrix for ``rows``; a missing or non-finite feature takes the stored mean, so it adds nothing."""
        x = np.empty((len(rows), len(self.feature_names)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.feature_names):
                v = row.get(name)
                x[i, j] = float(v) if v is not None and math.isfinite(float(v)) else self.mean[j]
        return x

    def decision_function(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The linear score (log-odds) of each candidate feature dict."""
        if not rows:
            return np.zeros(0)
        z = (self.matrix(rows) - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef, dtype=np.float64) + self.intercept

    def predict_proba(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Probability in [0, 1] that each candidate is the query's true entity."""
        z = self.decision_function(rows)
        # Clip so exp never overflows; sigmoid(±40) is already 0/1 in float64.
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))

    def to_dict(self) -> dict:
        return {
            "version": FUSION_VERSION,
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "coef": [float(c) for c in self.coef],
            "intercept": float(self.intercept),
            "mean": [float(m) for m in self.mean],
            "scale": [float(s) for s in self.scale],
            **({"C": float(self.C)} if self.C is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FusionModel:
        if d.get("version", FUSION_VERSION) != FUSION_VERSION:
            raise ConfigError(f"fusion model version {d.get('version')} is not supported (expected {FUSION_VERSION})",
                              "re-run `logoid calibrate`")
        try:
            return cls(
                feature_names=list(d["feature_names"]),
                coef=[float(c) for c in d["coef"]],
                intercept=float(d["intercept"]),
                mean=[float(m) for m in d.get("mean", [])],
                scale=[float(s) for s in d.get("scale", [])],
                kind=str(d.get("kind", "logistic")),
                C=float(d["C"]) if d.get("C") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"fusion model JSON is malformed ({e})", "re-run `logoid calibrate`") from e
