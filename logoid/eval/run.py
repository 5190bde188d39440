"""Run the identify step over a labelled query set: evidence once, then any channel mix, fusion or threshold."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from logoid.core.errors import CatalogError, ImageError, LogoidError
from logoid.identify.pipeline import Evidence
from logoid.scoring.fusion import FEATURES, FusionModel
from logoid.scoring.results import QueryResult
from logoid.scoring.rules import Calibration, calibrate, calibrate_text_only, rule_score

from .fusion import choose_c, fit_fusion, supported_features
from .manifest import LabelledQuery


@dataclass
class Collected:
    query: LabelledQuery
    evidence: Evidence


def resolve_label(catalog, label: str | None) -> str | None:
    """A manifest label (entity key, catalog id, external id or name) as an entity key like "band:12"."""
    if label is None:
        return None
    if ":" in label and label.split(":", 1)[0] in ("band", "album"):
        return label
    try:
        return f"band:{catalog.find_band(label).id}"
    except CatalogError:
        pass
    try:
        return f"album:{catalog.find_album(label).id}"
    except (CatalogError, AttributeError) as e:
        raise LogoidError(f"label {label!r} is not in the catalog",
                          "use a catalog id, external id or name, or 'unknown' for photos of unknowns") from e


def collect(identifier, queries: Sequence[LabelledQuery], *, progress: Callable | None = None,
            on_skip: Callable[[str, str], None] | None = None) -> list[Collected]:
    """Gather every channel's evidence for each query photo once (the slow part); bad photos are skipped."""
    out = []
    it = progress(queries) if progress else queries
    for q in it:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ev = identifier.collect(q.path)
        except ImageError as e:
            if on_skip:
                on_skip(str(q.path), e.reason)
            continue
        out.append(Collected(query=q, evidence=ev))
    return out


def _decide_all(identifier, collected: Sequence[Collected], channels, scorer) -> list:
    """Each query's answer, fused by ``scorer`` (the identifier's own when None) from its stored evidence."""
    return [identifier.decide(c.evidence, channels, scorer=scorer) for c in collected]


def to_results(identifier, collected: Sequence[Collected], catalog, channels: tuple[str, ...] | None = None,
               scorer=None) -> list[QueryResult]:
    """Fuse each query's evidence (optionally restricted to ``channels``) into ranked QueryResults."""
    return [QueryResult(path=str(c.query.path), label=resolve_label(catalog, c.query.label),
                        ranked=[x.entity_key for x in ans.candidates], scores=[x.score for x in ans.candidates],
                        features=[x.features for x in ans.candidates], accepted=ans.accepted)
            for c, ans in zip(collected, _decide_all(identifier, collected, channels, scorer), strict=True)]


def text_only_flags(identifier, collected: Sequence[Collected], channels: tuple[str, ...] | None = None,
                    scorer=None) -> list[bool]:
    """Whether each query's best candidate is supported by the text channel alone (its own threshold applies)."""
    return [ans.best is not None and ans.best.channels == ["text"]
            for ans in _decide_all(identifier, collected, channels, scorer)]


def fusion_scorer(model: FusionModel):
    return lambda feats: [float(p) for p in model.predict_proba(feats)] if feats else []


def fit(identifier, collected: Sequence[Collected], catalog, *, channels=None, objective="open_set_accuracy",
        max_false_accept=0.05, features: Sequence[str] | None = None, C: float | None = None
        ) -> tuple[FusionModel, Calibration]:
    """Fit the fusion model on calibration evidence, then choose the rejection rule and threshold on its scores.
    ``C``: the logistic regression's regularisation; None = chosen by grouped cross-validation (:func:`choose_c`)."""
    base = to_results(identifier, collected, catalog, channels)
    names = list(features) if features else supported_features(base, FEATURES)[0]
    # Regularisation by cross-validation on the calibration photos, grouped by entity (choose_c), instead of the
    # fixed C=1 of earlier versions: on threadless-dev test it was as good or better on every metric in the last two
    # of three comparisons (open-set 0.951 vs 0.928 at the same top-1 and AUROC in the latest; the first was mixed),
    # BENCHMARKS.md#accuracy-fusion-cv. Calibration sets are small.
    model = fit_fusion(base, names, C=C if C is not None else choose_c(base, names))
    fused = to_results(identifier, collected, catalog, channels, scorer=fusion_scorer(model))
    cal = calibrate(fused, objective=objective, max_false_accept=max_false_accept,
                    rules=["max_score", "margin", "ratio"])
    flags = text_only_flags(identifier, collected, channels, scorer=fusion_scorer(model))
    cal.text_only = calibrate_text_only(fused, flags, cal, objective=objective, max_false_accept=max_false_accept)
    return model, cal


def with_rule_scores(results: Sequence[QueryResult], rule: str, threshold: float,
                     text_only: Sequence[bool] | None = None, text_threshold: float | None = None
                     ) -> list[QueryResult]:
    """Results whose top-1 score is the rejection rule's score (so AUROC and one threshold see it), accepted by it.

    With ``text_only`` flags and a ``text_threshold``, flagged queries (best candidate supported by text alone)
    are accepted by ``text_threshold`` instead; read ``accepted`` then (``evaluate(results, None)``).
    """
    out = []
    for i, r in enumerate(results):
        scores = list(r.scores)
        if not scores:
            out.append(QueryResult(r.path, r.label, r.ranked, scores, r.features, False))
            continue
        if rule != "max_score":
            scores[0] = rule_score(rule, r)
        thr = text_threshold if (text_only is not None and text_threshold is not None and text_only[i]) else threshold
        out.append(QueryResult(r.path, r.label, r.ranked, scores, r.features, bool(scores[0] >= thr)))
    return out


def apply_calibration(results: Sequence[QueryResult], cal: Calibration,
                      text_only: Sequence[bool] | None = None) -> list[QueryResult]:
    """Results scored and accepted by a calibration's rule and threshold (and its text-only threshold, given flags)."""
    text_thr = (cal.text_only or {}).get("threshold")
    return with_rule_scores(results, cal.rule, cal.threshold, text_only, text_thr)
