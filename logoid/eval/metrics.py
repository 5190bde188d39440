"""Open-set identification metrics over ranked candidate lists.

Inputs are plain :class:`QueryResult` records, so evaluation does not depend on how identification
was done. Everything here is numpy (plus sklearn's per-class tables); no models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError

#: The class name that rejected answers and unknown truths count as in per-class tables.
UNKNOWN = "unknown"


@dataclass
class QueryResult:
    """One query photo's ranked answer, as the identify step hands it to evaluation."""

    # the photo (kept as a string so results serialise as plain JSON)
    path: str
    # truth entity key such as "band:12"; None when the photo shows nothing in the catalog
    label: str | None
    # candidate entity keys, best first
    ranked: list[str]
    # fused / rejection score of each ranked entity (same length as ranked)
    scores: list[float]
    # per ranked candidate, the raw per-channel features ({"cos": .83, "log_inliers": 3.5, ...})
    features: list[dict[str, float]] | None = None
    # the identify step's own accept decision, when it made one
    accepted: bool | None = None

    @property
    def top1(self) -> str | None:
        """The best candidate's key, or None when there were no candidates."""
        return self.ranked[0] if self.ranked else None

    @property
    def top1_score(self) -> float:
        """The best candidate's score; -inf when there were no candidates (always rejected)."""
        return float(self.scores[0]) if self.scores else -math.inf

    @property
    def is_known(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> QueryResult:
        return cls(
            path=str(d["path"]),
            label=d.get("label"),
            ranked=list(d.get("ranked", [])),
            scores=[float(s) for s in d.get("scores", [])],
            features=d.get("features"),
            accepted=d.get("accepted"),
        )


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
