"""Fitting the fusion: a class-balanced logistic regression over each candidate's per-channel features, its
regularisation chosen by cross-validation grouped by entity. The model it fits,
:class:`~logoid.scoring.fusion.FusionModel`, is applied at run time by identification (``logoid.scoring``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from logoid.core.errors import ConfigError
from logoid.scoring.fusion import FusionModel
from logoid.scoring.results import QueryResult
from logoid.scoring.stats import auroc


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
