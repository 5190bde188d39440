"""Calibration of the rejection rule: which score says "not in the catalog", and at what threshold.

Several rules turn a :class:`QueryResult` into one rejection score (higher = more confident); each is
thresholded on a calibration set and the best one is kept in a :class:`Calibration`, which saves as
plain JSON. Without unknown photos, :func:`leave_one_out_impostors` simulates them from the gallery.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from logoid.core.errors import ConfigError
from logoid.scoring.fusion import FusionModel
from logoid.scoring.results import QueryResult
from logoid.scoring.stats import auroc

#: Feature of the top candidate holding the k-th neighbour similarity (for the ``kth`` rule).
KTH_FEATURE = "kth"
#: Used when a candidate list has a single entity: the missing runner-up scores this.
_MISSING_SECOND = 0.0
_EPS = 1e-6

OBJECTIVES = ("open_set_accuracy", "balanced_accuracy", "max_false_accept")
RULES = ("max_score", "margin", "ratio", "kth", "fused")


def _second_score(r: QueryResult) -> float:
    """Score of the best candidate whose entity differs from the top one."""
    for key, s in zip(r.ranked[1:], r.scores[1:], strict=False):
        if key != r.ranked[0]:
            return float(s)
    return _MISSING_SECOND


def rule_score(rule: str, r: QueryResult, fusion: FusionModel | None = None) -> float:
    """Rejection score of ``r`` under ``rule``; -inf when there are no candidates, NaN when the rule lacks data.

    ``max_score``: top-1 score. ``margin``: top-1 minus the best other entity (a missing runner-up
    scores 0). ``ratio``: top-1 / max(runner-up, 1e-6). ``kth``: the top candidate's ``kth`` feature.
    ``fused``: the fusion model's probability for the top candidate's features.
    """
    if not r.ranked:
        return -math.inf
    top = float(r.scores[0])
    if rule == "max_score":
        return top
    if rule == "margin":
        return top - _second_score(r)
    if rule == "ratio":
        return top / max(_second_score(r), _EPS)
    if rule == "kth":
        v = r.features[0].get(KTH_FEATURE) if r.features else None
        return float(v) if v is not None else math.nan
    if rule == "fused":
        if fusion is None or not r.features:
            return math.nan
        return float(fusion.predict_proba([r.features[0]])[0])
    raise ConfigError(f"unknown rejection rule {rule!r}", f"choose one of {', '.join(RULES)}")


@dataclass
class ThresholdChoice:
    """The best threshold of one rule on one calibration set."""

    # accept when score >= threshold
    threshold: float
    # the objective's value at that threshold
    value: float
    # share of unknown (or impostor) queries accepted at that threshold
    false_accept_rate: float | None
    # share of known queries accepted with the right id at that threshold
    true_accept_rate: float | None


def search_threshold(
    scores: np.ndarray,
    correct: np.ndarray,
    unknown: np.ndarray,
    *,
    objective: str = "open_set_accuracy",
    max_false_accept: float = 0.05,
    count_wrong_identity: bool = False,
) -> ThresholdChoice:
    """Best ``score >= t`` threshold over every midpoint between unique scores (plus accept-all / reject-all).

    ``correct``: known queries whose top-1 is right; ``unknown``: queries with no true entity; the rest
    are known queries with a wrong top-1. Objectives:
      - ``open_set_accuracy``: (correct accepted + unknown rejected) / all.
      - ``balanced_accuracy``: mean of correct-accept rate over knowns and reject rate over unknowns.
      - ``max_false_accept``: most correct accepts subject to FAR ≤ ``max_false_accept``, where FAR is
        the share of unknown queries accepted; with ``count_wrong_identity`` the wrong-top-1 knowns join
        the unknowns (numerator and denominator). Ties go to the higher (safer) threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.where(np.isnan(scores), -np.inf, scores)  # no data: never accepted
    correct = np.asarray(correct, dtype=bool)
    unknown = np.asarray(unknown, dtype=bool)
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}", f"choose one of {', '.join(OBJECTIVES)}")
    n = scores.size
    n_known = int((~unknown).sum())
    n_unknown = int(unknown.sum())
    negative = ~correct if count_wrong_identity else unknown
    n_neg = int(negative.sum())
    if n == 0:
        raise ConfigError("calibration set is empty", "pass labelled query photos")
    if n_neg == 0 or (objective != "max_false_accept" and n_unknown == 0):
        raise ConfigError(
            "calibration needs unknown queries (photos of things not in the catalog) to set a rejection threshold",
            "add photos labelled 'unknown' to the manifest, or calibrate from the gallery with leave-one-out impostors",
        )
    finite = np.isfinite(scores)
    uniq = np.unique(scores[finite])
    if uniq.size:
        mids = (uniq[1:] + uniq[:-1]) / 2.0
        thresholds = np.concatenate([[uniq[0] - 1.0], mids, [uniq[-1] + 1.0]])
    else:
        thresholds = np.array([0.0])
    # Counts of score >= t via a descending sort and cumulative sums: O(n log n) for all thresholds.
    order = np.argsort(scores)
    s_sorted = scores[order]
    idx = np.searchsorted(s_sorted, thresholds, side="left")

    def accepted_count(mask: np.ndarray) -> np.ndarray:
        tail = np.concatenate([np.cumsum(mask[order][::-1])[::-1], [0]])
        return tail[idx]

    corr_acc = accepted_count(correct)
    unk_acc = accepted_count(unknown)
    neg_acc = accepted_count(negative)
    tar = corr_acc / n_known if n_known else np.zeros_like(thresholds)
    far_unknown = unk_acc / n_unknown if n_unknown else np.full(thresholds.shape, np.nan)
    if objective == "open_set_accuracy":
        value = (corr_acc + (n_unknown - unk_acc)) / n
    elif objective == "balanced_accuracy":
        value = 0.5 * (tar + (1.0 - far_unknown)) if n_known else 1.0 - far_unknown
    else:
        far = neg_acc / n_neg
        # Infeasible thresholds get -1 so the highest threshold (reject all) always qualifies.
        value = np.where(far <= max_false_accept + 1e-12, tar, -1.0)
    best = np.flatnonzero(value >= value.max() - 1e-12)
    # FAR-constrained: safest (highest) of the tied thresholds; otherwise the middle of the tied ones.
    i = int(best[-1]) if objective == "max_false_accept" else int(best[len(best) // 2])
    return ThresholdChoice(
        threshold=float(thresholds[i]),
        value=float(value[i]),
        false_accept_rate=None if not n_unknown else float(far_unknown[i]),
        true_accept_rate=None if not n_known else float(tar[i]),
    )


@dataclass
class Calibration:
    """The chosen rejection rule and threshold, with how every rule did."""

    # rule name, one of RULES
    rule: str
    # accept when the rule's score >= threshold
    threshold: float
    # objective used to pick the threshold and the rule
    objective: str = "open_set_accuracy"
    # FAR target of the "max_false_accept" objective
    max_false_accept: float | None = None
    # per rule: {"auroc", "threshold", "value", "false_accept_rate", "true_accept_rate"}
    per_rule: dict[str, dict] = field(default_factory=dict)
    # known / unknown queries (or genuine / impostor scores) it was fitted on
    n_known: int = 0
    n_unknown: int = 0
    # fusion model behind the "fused" rule, when one was used
    fusion: FusionModel | None = None
    # answers supported by the text channel alone: {"threshold", "source" ("calibrated" or "default"), counts};
    # see calibrate_text_only. None: they use ``threshold``.
    text_only: dict | None = None

    def score(self, r: QueryResult) -> float:
        """This calibration's rejection score for ``r`` (NaN when the rule lacks data: reject)."""
        return rule_score(self.rule, r, self.fusion)

    def accept(self, score: float) -> bool:
        """True when ``score`` clears the threshold (NaN never does)."""
        return bool(score >= self.threshold)

    def to_dict(self) -> dict:
        return {
            "rule": self.rule,
            "threshold": float(self.threshold),
            "objective": self.objective,
            "max_false_accept": self.max_false_accept,
            "per_rule": self.per_rule,
            "n_known": int(self.n_known),
            "n_unknown": int(self.n_unknown),
            "fusion": self.fusion.to_dict() if self.fusion else None,
            "text_only": self.text_only,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        try:
            rule = str(d["rule"])
            threshold = float(d["threshold"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"calibration JSON is malformed ({e})", "re-run `logoid calibrate`") from e
        if rule not in RULES:
            raise ConfigError(f"calibration names unknown rule {rule!r}", "re-run `logoid calibrate`")
        fusion = FusionModel.from_dict(d["fusion"]) if d.get("fusion") else None
        if rule == "fused" and fusion is None:
            raise ConfigError("calibration uses the fused rule but stores no fusion model", "re-run `logoid calibrate`")
        return cls(rule=rule, threshold=threshold, objective=str(d.get("objective", "open_set_accuracy")),
                   max_false_accept=d.get("max_false_accept"), per_rule=dict(d.get("per_rule", {})),
                   n_known=int(d.get("n_known", 0)), n_unknown=int(d.get("n_unknown", 0)), fusion=fusion,
                   text_only=dict(d["text_only"]) if d.get("text_only") else None)


def calibrate(
    results: Sequence[QueryResult],
    *,
    objective: str = "open_set_accuracy",
    max_false_accept: float = 0.05,
    rules: Sequence[str] | None = None,
    fusion: FusionModel | None = None,
    count_wrong_identity: bool = False,
) -> Calibration:
    """Threshold every rule on ``results`` and keep the best (objective value, then AUROC).

    ``rules`` None tries every rule with data on every query that has candidates (``kth`` needs the
    ``kth`` feature, ``fused`` needs ``fusion``). A query is right when its top-1 equals its label.
    See :func:`search_threshold` for the objectives and ``count_wrong_identity``.
    """
    results = list(results)
    if not 0.0 <= max_false_accept <= 1.0:
        raise ConfigError(f"max_false_accept must be in [0, 1], got {max_false_accept}")
    explicit = rules is not None
    names = list(rules) if rules is not None else list(RULES)
    unknown = np.array([r.label is None for r in results], dtype=bool)
    correct = np.array([r.label is not None and r.top1 == r.label for r in results], dtype=bool)
    per_rule: dict[str, dict] = {}
    for name in names:
        if name not in RULES:
            raise ConfigError(f"unknown rejection rule {name!r}", f"choose from {', '.join(RULES)}")
        s = np.array([rule_score(name, r, fusion) for r in results], dtype=np.float64)
        if np.isnan(s).any():
            if explicit:
                raise ConfigError(f"rule {name!r} lacks data on some queries",
                                  "kth needs a 'kth' feature on the top candidate; fused needs a fusion model")
            continue
        choice = search_threshold(s, correct, unknown, objective=objective, max_false_accept=max_false_accept,
                                  count_wrong_identity=count_wrong_identity)
        per_rule[name] = {"auroc": auroc(s[~unknown], s[unknown]), **asdict(choice)}
    if not per_rule:
        raise ConfigError("no rejection rule could be scored on the calibration set")
    best = max(per_rule, key=lambda k: (per_rule[k]["value"], per_rule[k]["auroc"] or 0.0))
    return Calibration(rule=best, threshold=per_rule[best]["threshold"], objective=objective,
                       max_false_accept=max_false_accept if objective == "max_false_accept" else None,
                       per_rule=per_rule, n_known=int((~unknown).sum()), n_unknown=int(unknown.sum()),
                       fusion=fusion if best == "fused" else None)


#: Fewer text-only calibration answers than this, or fewer right (or not right) ones than MIN_TEXT_ONLY_EACH:
#: text-only answers keep the main threshold.
MIN_TEXT_ONLY = 20
MIN_TEXT_ONLY_EACH = 5


def calibrate_text_only(
    results: Sequence[QueryResult],
    text_only: Sequence[bool],
    main: Calibration,
    *,
    objective: str = "open_set_accuracy",
    max_false_accept: float = 0.05,
) -> dict:
    """The threshold for answers whose only supporting channel is text, chosen on those calibration answers.

    A name read in the photo is the only evidence there, and a wrong name is as bad as an unknown band accepted,
    so every text-only answer that is not right (wrong band or unknown photo) counts as a negative. Scores are
    ``main``'s rule scores, so the threshold lives on the same scale as ``main.threshold``. With too few text-only
    answers (see MIN_TEXT_ONLY) the main threshold is kept ("source": "default").
    """
    if len(text_only) != len(results):
        raise ConfigError(f"calibrate_text_only: {len(text_only)} flags for {len(results)} results")
    sub = [r for r, t in zip(results, text_only, strict=True) if t]
    right = np.array([r.label is not None and r.top1 == r.label for r in sub], dtype=bool)
    n_right, n_other = int(right.sum()), int((~right).sum())
    out = {"threshold": float(main.threshold), "source": "default", "n": len(sub), "n_right": n_right,
           "n_unknown": sum(r.label is None for r in sub), "rule": main.rule}
    if len(sub) < MIN_TEXT_ONLY or n_right < MIN_TEXT_ONLY_EACH or n_other < MIN_TEXT_ONLY_EACH:
        return out
    s = np.array([rule_score(main.rule, r, main.fusion) for r in sub], dtype=np.float64)
    choice = search_threshold(s, right, ~right, objective=objective, max_false_accept=max_false_accept)
    return {**out, "threshold": choice.threshold, "source": "calibrated", "auroc": auroc(s[right], s[~right]),
            "false_accept_rate": choice.false_accept_rate, "true_accept_rate": choice.true_accept_rate}


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def leave_one_out_scores(
    entity_vectors: Mapping[str, np.ndarray],
    *,
    max_queries: int | None = 5000,
    seed: int = 0,
    chunk_elements: int = 1 << 24,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor max-cosine scores simulated from the gallery.

    For a query variant of entity E: genuine = best cosine to E's *other* variants (absent when E has
    one variant); impostor = best cosine to every other entity's vectors, i.e. the index without E,
    which is what an unknown photo resembling E would score. ``max_queries`` samples query variants
    (seeded) because the all-pairs cost grows with the square of the gallery; chunks of rows keep the
    similarity block under ``chunk_elements`` floats. ``progress(done, total)`` is called per chunk.
    """
    keys = [k for k, v in entity_vectors.items() if np.asarray(v).size]
    if len(keys) < 2:
        raise ConfigError("leave-one-out calibration needs at least two entities in the gallery")
    mats = [_normalise(entity_vectors[k]) for k in keys]
    dims = {m.shape[1] for m in mats}
    if len(dims) != 1:
        raise ConfigError(f"gallery vectors have mixed dimensions {sorted(dims)}", "rebuild the index")
    gallery = np.concatenate(mats, axis=0)
    owner = np.repeat(np.arange(len(keys)), [m.shape[0] for m in mats])
    n = gallery.shape[0]
    queries = np.arange(n)
    if max_queries is not None and n > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))
    rows = max(1, chunk_elements // n)
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    for start in range(0, queries.size, rows):
        q = queries[start:start + rows]
        sims = gallery[q] @ gallery.T
        own = owner[None, :] == owner[q][:, None]
        impostor.append(np.where(own, -np.inf, sims).max(axis=1))
        own[np.arange(q.size), q] = False  # a variant is not its own genuine match
        g = np.where(own, sims, -np.inf).max(axis=1)
        genuine.append(g[np.isfinite(g)])
        if progress:
            progress(min(start + rows, queries.size), queries.size)
    return np.concatenate(genuine).astype(np.float64), np.concatenate(impostor).astype(np.float64)


def leave_one_out_impostors(
    entity_vectors: Mapping[str, np.ndarray],
    *,
    objective: str = "balanced_accuracy",
    max_false_accept: float = 0.05,
    max_queries: int | None = 5000,
    seed: int = 0,
) -> Calibration:
    """A ``max_score`` (max-cosine) calibration from gallery genuine/impostor scores, no unknown photos needed.

    ``objective`` as in :func:`search_threshold`, with genuine scores as the right knowns and impostor
    scores as the unknowns; "max_false_accept" bounds the impostor acceptance rate.
    """
    genuine, impostor = leave_one_out_scores(entity_vectors, max_queries=max_queries, seed=seed)
    if genuine.size == 0:
        raise ConfigError("no entity has two or more vectors, so there are no genuine pairs",
                          "index augmented variants (more than one vector per entity)")
    scores = np.concatenate([genuine, impostor])
    unknown = np.r_[np.zeros(genuine.size, bool), np.ones(impostor.size, bool)]
    choice = search_threshold(scores, ~unknown, unknown, objective=objective, max_false_accept=max_false_accept)
    per_rule = {"max_score": {"auroc": auroc(genuine, impostor), **asdict(choice)}}
    return Calibration(rule="max_score", threshold=choice.threshold, objective=objective,
                       max_false_accept=max_false_accept if objective == "max_false_accept" else None,
                       per_rule=per_rule, n_known=int(genuine.size), n_unknown=int(impostor.size))
