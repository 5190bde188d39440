"""Run the identify step over a labelled query set: evidence once, then any channel mix, fusion or threshold."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from logoid.errors import CatalogError, ImageError, LogoidError

from .calibrate import Calibration, calibrate, rule_score
from .fusion import FusionModel, fit_fusion
from .manifest import LabelledQuery
from .metrics import QueryResult


@dataclass
class Collected:
    query: LabelledQuery
    evidence: object  # logoid.identify.Evidence


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


def to_results(identifier, collected: Sequence[Collected], catalog, channels: tuple[str, ...] | None = None,
               scorer=None) -> list[QueryResult]:
    """Fuse each query's evidence (optionally restricted to ``channels``) into ranked QueryResults."""
    old = identifier._scorer
    if scorer is not None:
        identifier._scorer = scorer
    try:
        results = []
        for c in collected:
            ans = identifier.decide(c.evidence, channels)
            results.append(QueryResult(
                path=str(c.query.path), label=resolve_label(catalog, c.query.label),
                ranked=[x.entity_key for x in ans.candidates], scores=[x.score for x in ans.candidates],
                features=[x.features for x in ans.candidates], accepted=ans.accepted,
            ))
        return results
    finally:
        identifier._scorer = old


def fusion_scorer(model: FusionModel):
    return lambda feats: [float(p) for p in model.predict_proba(feats)] if feats else []


def fit(identifier, collected: Sequence[Collected], catalog, *, channels=None, objective="open_set_accuracy",
        max_false_accept=0.05, features: Sequence[str] | None = None) -> tuple[FusionModel, Calibration]:
    """Fit the fusion model on calibration evidence, then choose the rejection rule and threshold on its scores."""
    from logoid.identify.fuse import FEATURES

    base = to_results(identifier, collected, catalog, channels)
    model = fit_fusion(base, list(features or FEATURES))
    fused = to_results(identifier, collected, catalog, channels, scorer=fusion_scorer(model))
    cal = calibrate(fused, objective=objective, max_false_accept=max_false_accept,
                    rules=["max_score", "margin", "ratio"])
    return model, cal


def with_rule_scores(results: Sequence[QueryResult], rule: str, threshold: float) -> list[QueryResult]:
    """Results whose top-1 score is the rejection rule's score (so AUROC and one threshold see it), accepted by it."""
    if rule == "max_score":
        return [QueryResult(r.path, r.label, r.ranked, r.scores, r.features, bool(r.scores and r.scores[0] >= threshold))
                for r in results]
    out = []
    for r in results:
        s = rule_score(rule, r)
        scores = list(r.scores)
        if scores:
            scores[0] = s
        out.append(QueryResult(r.path, r.label, r.ranked, scores, r.features, bool(scores and s >= threshold)))
    return out


def apply_calibration(results: Sequence[QueryResult], cal: Calibration) -> list[QueryResult]:
    """Results scored and accepted by a calibration's rule and threshold."""
    return with_rule_scores(results, cal.rule, cal.threshold)
