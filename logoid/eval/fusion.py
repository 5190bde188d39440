"""Fusion of per-channel candidate features into one probability that the candidate is right.

A :class:`FusionModel` is a logistic regression over named features with its standardisation stored
beside the weights, all as plain JSON (it lives in the index's JSON sidecar; no pickle). The same
class represents a hand-set linear rule (:meth:`FusionModel.linear`), used before any calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .metrics import QueryResult

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


def _as_float(v) -> float:
    return float(v) if v is not None else math.nan


def training_rows(results: Sequence[QueryResult]) -> tuple[list[dict[str, float]], np.ndarray]:
    """Every candidate of every query as a row; label 1 when it is the query's true entity.

    Unknown queries contribute only negatives. Queries without features are skipped.
    """
    rows: list[dict[str, float]] = []
    ys: list[int] = []
    for r in results:
        if not r.features:
            continue
        if len(r.features) != len(r.ranked):
            raise ConfigError(f"{r.path}: {len(r.features)} feature dicts for {len(r.ranked)} candidates")
        for key, feats in zip(r.ranked, r.features, strict=True):
            rows.append(feats)
            ys.append(int(r.label is not None and key == r.label))
    return rows, np.asarray(ys, dtype=np.int64)


# Features that only carry information when their channel found something: (indicator feature, the features).
CHANNEL_FEATURES = {"text": ("text_sim", ("text_sim", "text_coverage", "text_conf"))}
MIN_CHANNEL_POSITIVES = 5  # right candidates a channel must support on calib before its weights are fitted


def supported_features(results: Sequence[QueryResult], feature_names: Sequence[str],
                       min_positives: int = MIN_CHANNEL_POSITIVES) -> tuple[list[str], list[str]]:
    """The features worth fitting, and the channels left out because calib shows too few right answers for them.

    A weight fitted on a handful of spurious matches (e.g. fuzzy name hits on photos with no names, as on
    threadless shirts) only adds noise to the fused score; such a channel keeps contributing candidates,
    scored by the other channels' features.
    """
    rows, y = training_rows(results)
    names, dropped = list(feature_names), []
    for channel, (indicator, feats) in CHANNEL_FEATURES.items():
        support = sum(1 for row, yi in zip(rows, y, strict=True) if yi and float(row.get(indicator) or 0.0) > 0)
        if support < min_positives and any(f in names for f in feats):
            names = [n for n in names if n not in feats]
            dropped.append(channel)
    return names, dropped


def fit_fusion(results: Sequence[QueryResult], feature_names: Sequence[str], C: float = 1.0) -> FusionModel:
    """Fit a class-balanced logistic regression on the candidates of calibration ``results``."""
    from sklearn.linear_model import LogisticRegression

    names = list(feature_names)
    if not names:
        raise ConfigError("fit_fusion needs at least one feature name")
    rows, y = training_rows(results)
    if y.size == 0 or y.min() == y.max():
        raise ConfigError(
            f"fusion needs both right and wrong candidates; got {int(y.sum())} right of {y.size}",
            "use calibration photos of catalog entities whose truth appears among the candidates",
        )
    # Means from the values present (missing ones ignored), so imputation uses the real centre.
    raw = np.array([[_as_float(row.get(n)) for n in names] for row in rows], dtype=np.float64)
    present = np.isfinite(raw)
    counts = present.sum(axis=0)
    mean = np.where(counts > 0, np.where(present, raw, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
    probe = FusionModel(names, [0.0] * len(names), 0.0, mean=[float(m) for m in mean])
    x = probe.matrix(rows)
    std = x.std(axis=0)
    # A constant feature carries no information; scale 1 keeps it harmless instead of dividing by zero.
    scale = np.where(std > 1e-12, std, 1.0)
    z = (x - mean) / scale
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=1000)
    clf.fit(z, y)
    return FusionModel(names, [float(c) for c in clf.coef_[0]], float(clf.intercept_[0]),
                       mean=[float(m) for m in mean], scale=[float(s) for s in scale], kind="logistic", C=float(C))


def _group_folds(results: Sequence[QueryResult], folds: int, seed: int) -> np.ndarray:
    """Fold of each query; every photo of one entity (an unknown photo: itself) shares a fold."""
    groups = [r.label if r.label is not None else f"photo:{r.path}" for r in results]
    uniq = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of = {uniq[j]: i % folds for i, j in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def cv_scores(results: Sequence[QueryResult], feature_names: Sequence[str], C: float, folds: int = 5,
              seed: int = 0) -> tuple[float | None, float | None]:
    """(AUROC known-vs-unknown of the top fused probability, top-1) by grouped cross-validation."""
    from .metrics import auroc

    fold = _group_folds(results, folds, seed)
    top, known, right = [], [], []
    for k in range(folds):
        train = [r for r, f in zip(results, fold, strict=True) if f != k]
        held = [r for r, f in zip(results, fold, strict=True) if f == k and r.features]
        try:
            model = fit_fusion(train, feature_names, C)
        except ConfigError:
            continue  # a fold without right candidates says nothing about C
        for r in held:
            p = model.predict_proba(r.features or [])
            i = int(np.argmax(p))
            top.append(float(p[i]))
            known.append(r.label is not None)
            right.append(r.label is not None and r.ranked[i] == r.label)
    if not top:
        return None, None
    s, kn = np.asarray(top), np.asarray(known)
    n_known = int(kn.sum())
    return auroc(s[kn], s[~kn]), (float(np.sum(right)) / n_known if n_known else None)


def choose_c(results: Sequence[QueryResult], feature_names: Sequence[str],
             grid: Sequence[float] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0), folds: int = 5, seed: int = 0) -> float:
    """Regularisation of the fusion chosen by grouped cross-validation: best AUROC, then top-1, then the smaller C.

    Groups are entities, so a design's photos never score each other; with few calibration photos a
    strongly regularised model is often the better one, which is what this finds out. 1.0 when no fold can be
    scored.
    """
    best: tuple | None = None
    for C in grid:
        a, t = cv_scores(results, feature_names, C, folds, seed)
        if a is None and t is None:
            continue  # no fold could be scored (too few calibration photos): says nothing about C
        key = (a if a is not None else -1.0, t if t is not None else -1.0, -C)
        if best is None or key > best[0]:
            best = (key, C)
    return float(best[1]) if best else 1.0
