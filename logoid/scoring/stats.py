"""Rank statistics of scores: AUROC, FPR at a TPR, per-class precision/recall/F1. Pure numpy (+ sklearn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from logoid.core.errors import ConfigError


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks_sorted = np.repeat(avg, ends - starts)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def auroc(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve (positives should score higher), via Mann–Whitney U with average ranks.

    Ties between a positive and a negative count half. Returns None when either side is empty.
    Scores of -inf (queries with no candidates) rank lowest.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        return None
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ConfigError("AUROC got NaN scores", "check the scoring rule for divisions by zero")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def fpr_at_tpr(
    positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray, tpr: float = 0.95
) -> float | None:
    """False-positive rate at the highest threshold that accepts at least ``tpr`` of the positives.

    Accept means ``score >= threshold``; matches sklearn's ``roc_curve`` read at the first point with
    TPR ≥ target. Returns None when either side is empty.
    """
    pos = np.sort(np.asarray(positive, dtype=np.float64).ravel())[::-1]
    neg = np.asarray(negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        return None
    # Integer arithmetic (in basis points) so 95% of 20 is exactly 19, not 18.999….
    need = -(-round(tpr * 10000) * pos.size // 10000)
    need = min(max(need, 1), pos.size)
    thr = pos[need - 1]
    return float(np.mean(neg >= thr))


def per_class_table(truth: Sequence[str], pred: Sequence[str]) -> tuple[dict[str, dict], float | None]:
    """Per-class precision/recall/F1/support and the support-weighted F1 over ``truth ∪ pred`` classes."""
    from sklearn.metrics import precision_recall_fscore_support

    if not truth:
        return {}, None
    classes = sorted(set(truth) | set(pred))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=classes, zero_division=0)
    table = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }
    weighted = float(np.sum(f * s) / np.sum(s)) if np.sum(s) else None
    return table, weighted
