"""Open-set identification metrics over ranked candidate lists.

Inputs are plain :class:`QueryResult` records, so evaluation does not depend on how identification
was done. Everything here is numpy (plus sklearn's per-class tables); no models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from logoid.core.errors import ConfigError
from logoid.scoring.results import QueryResult
from logoid.scoring.stats import auroc, fpr_at_tpr, per_class_table

#: The class name that rejected answers and unknown truths count as in per-class tables.
UNKNOWN = "unknown"


def accepted_mask(results: Sequence[QueryResult], threshold: float | None) -> np.ndarray:
    """Which queries are accepted: ``top1_score >= threshold``, or each result's own ``accepted`` flag when
    ``threshold`` is None. A query without candidates is never accepted."""
    if threshold is None:
        if any(r.accepted is None for r in results):
            raise ConfigError("evaluation needs a threshold or an accept decision on every result",
                              "pass threshold=, or set QueryResult.accepted")
        return np.array([bool(r.accepted) and bool(r.ranked) for r in results], dtype=bool)
    return np.array([bool(r.ranked) and r.top1_score >= threshold for r in results], dtype=bool)


def answers(results: Sequence[QueryResult], accepted: np.ndarray) -> tuple[list[str], list[str]]:
    """Truth and answer class of each query: entity keys, with ``"unknown"`` for unknown truths and rejections."""
    truth = [r.label if r.label is not None else UNKNOWN for r in results]
    pred = [(r.top1 or UNKNOWN) if a else UNKNOWN for r, a in zip(results, accepted, strict=True)]
    return truth, pred


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def evaluate(results: Sequence[QueryResult], threshold: float | None, k: int = 5) -> dict:
    """Open-set metrics of ``results`` at ``threshold`` (accept when the top-1 score ≥ threshold; with
    ``threshold=None`` each result's own ``accepted`` flag decides).

    Conventions:
      - ``top1`` / ``top{k}``: share of *known* queries whose truth is in the first 1 / k candidates,
        ignoring the threshold.
      - Per-class tables and ``weighted_f1`` score the *answer*: the top-1 entity when accepted, else
        the class ``"unknown"``; an unknown query's truth is ``"unknown"`` too, so correct rejections
        are true positives of that class. Weights are the true supports.
      - ``auroc`` / ``fpr_at_95tpr``: known (positive) vs unknown by top-1 score; None with one class.
      - ``open_set_accuracy``: known → right id and accepted; unknown → rejected.
      - ``confident_wrong_rate``: accepted and wrong (wrong id, or any accept of an unknown) over all
        queries; ``confident_wrong_rate_known`` counts wrong-id accepts over known queries.
    Rates with an empty denominator are None.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    n = len(results)
    known = np.array([r.is_known for r in results], dtype=bool)
    acc = accepted_mask(results, threshold)
    top1_right = np.array([r.is_known and r.top1 == r.label for r in results], dtype=bool)
    topk_right = np.array([r.is_known and r.label in r.ranked[:k] for r in results], dtype=bool)
    scores = np.array([r.top1_score for r in results], dtype=np.float64)
    n_known = int(known.sum())
    n_unknown = n - n_known

    truth, pred = answers(results, acc)
    table, weighted_f1 = per_class_table(truth, pred)

    known_right_acc = int((top1_right & acc).sum())
    known_wrong_acc = int((known & ~top1_right & acc).sum())
    unknown_acc = int((~known & acc).sum())
    unknown_rej = n_unknown - unknown_acc
    return {
        "n": n,
        "n_known": n_known,
        "n_unknown": n_unknown,
        "threshold": None if threshold is None else float(threshold),
        "k": k,
        "top1": _rate(int(top1_right.sum()), n_known),
        f"top{k}": _rate(int(topk_right.sum()), n_known),
        "weighted_f1": weighted_f1,
        "per_class": table,
        "auroc": auroc(scores[known], scores[~known]),
        "fpr_at_95tpr": fpr_at_tpr(scores[known], scores[~known], 0.95),
        "open_set_accuracy": _rate(known_right_acc + unknown_rej, n),
        "known_accept_rate": _rate(int((known & acc).sum()), n_known),
        "known_correct_accept_rate": _rate(known_right_acc, n_known),
        "unknown_accept_rate": _rate(unknown_acc, n_unknown),
        "confident_wrong_rate": _rate(known_wrong_acc + unknown_acc, n),
        "confident_wrong_rate_known": _rate(known_wrong_acc, n_known),
    }
