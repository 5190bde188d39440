"""Per-candidate features from every channel, and the scoring that turns them into one answer.

Before calibration a documented fixed rule scores candidates (a noisy-OR of per-channel evidence);
`logoid calibrate` replaces it with a logistic regression fitted on labelled calibration photos,
stored in the index sidecar.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

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
            # Not in FEATURES (measured: it did not help the fusion); kept for bench/fusion_cv.py and the JSON "why".
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
        from logoid.eval.fusion import FusionModel

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
