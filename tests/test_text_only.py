"""Answers supported by the text channel alone: their own calibrated threshold (tiny fakes, no models, no OCR)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from logoid.eval.manifest import LabelledQuery
from logoid.eval.metrics import evaluate
from logoid.eval.run import Collected, apply_calibration, fit, text_only_flags, with_rule_scores
from logoid.identify.pipeline import Evidence, Identifier
from logoid.scoring.results import QueryResult
from logoid.scoring.rules import MIN_TEXT_ONLY, Calibration, calibrate_text_only


class FakeCatalog:
    def entity_name(self, etype, eid):
        return f"{etype} {eid}"

    def entity_meta(self, etype, eid):
        return {}


def _identifier(meta: dict | None = None, threshold: float | None = None) -> Identifier:
    ident = Identifier(home=None, catalog=FakeCatalog(), threshold=threshold)
    ident._store = SimpleNamespace(meta=meta or {})
    return ident


def _text_ev(key: str, sim: float, other: float = 0.5) -> Evidence:
    """A photo whose only evidence is a read name: ``key`` at ``sim``, a look-alike band at ``other``."""
    cands = {key: {"cos": 0.0, "text_sim": sim, "text_coverage": 1.0, "text_conf": 0.9, "text": key},
             "band:99": {"cos": 0.0, "text_sim": other, "text_coverage": 0.5, "text_conf": 0.9, "text": "x"}}
    return Evidence("p.jpg", cands, 0.0, [], [], {}, ("global", "local", "text"))


def _image_ev(key: str, cos: float) -> Evidence:
    cands = {key: {"cos": cos, "in_global": True, "inliers": 30, "inlier_ratio": 0.6},
             "band:98": {"cos": cos - 0.2, "in_global": True}}
    return Evidence("p.jpg", cands, 0.3, [], [], {}, ("global", "local", "text"))


def _qr(label, top, score) -> QueryResult:
    return QueryResult("p", label, [top], [score])


def test_text_only_threshold_separates_right_from_wrong_names():
    # Right text-only answers score 0.8-0.99, wrong names and unknowns 0.55-0.7: the cut lands between.
    right = [_qr(f"band:{i}", f"band:{i}", 0.8 + 0.01 * i) for i in range(15)]
    wrong = [_qr("band:1", "band:2", 0.55 + 0.01 * i) for i in range(8)] + [_qr(None, "band:3", 0.6 + 0.01 * i)
                                                                            for i in range(8)]
    res = right + wrong
    out = calibrate_text_only(res, [True] * len(res), Calibration("max_score", 0.5))
    assert out["source"] == "calibrated" and out["n"] == len(res) and out["n_right"] == 15
    assert 0.67 < out["threshold"] < 0.8
    assert out["auroc"] == pytest.approx(1.0)


def test_text_only_threshold_uses_only_flagged_answers_and_falls_back_when_too_few():
    res = [_qr("band:1", "band:1", 0.9)] * 3 + [_qr(None, "band:2", 0.6)] * 3
    out = calibrate_text_only(res, [True] * 6, Calibration("max_score", 0.42))
    assert out["source"] == "default" and out["threshold"] == 0.42 and out["n"] == 6 < MIN_TEXT_ONLY
    # Plenty of answers, but none flagged text-only: nothing to fit on either.
    many = res * 10
    out = calibrate_text_only(many, [False] * len(many), Calibration("max_score", 0.42))
    assert out["source"] == "default" and out["n"] == 0


def test_calibration_json_keeps_text_only():
    cal = Calibration("max_score", 0.5, text_only={"threshold": 0.8, "source": "calibrated", "n": 30, "n_right": 20,
                                                   "n_unknown": 5, "rule": "max_score"})
    back = Calibration.from_dict(cal.to_dict())
    assert back.text_only == cal.text_only
    assert Calibration.from_dict(Calibration("max_score", 0.5).to_dict()).text_only is None


def test_identify_applies_text_only_threshold_to_text_only_answers_only():
    text = _text_ev("band:1", 0.9)  # default rule: sigmoid(30 * 0.05) ≈ 0.82
    image = _image_ev("band:2", 0.95)
    strict = {"calibration": {"rule": "max_score", "threshold": 0.5, "text_only": {"threshold": 0.9}}}
    ident = _identifier(strict)
    ans = ident.decide(text)
    assert ans.best.channels == ["text"] and 0.5 < ans.best.score < 0.9
    assert not ans.accepted and ans.threshold == 0.9
    ans = ident.decide(image)  # image-supported answers keep the main threshold
    assert ans.accepted and ans.threshold == 0.5
    lenient = {"calibration": {"rule": "max_score", "threshold": 0.95, "text_only": {"threshold": 0.6}}}
    assert _identifier(lenient).decide(text).accepted
    # Without a text-only threshold, text-only answers use the main one; --threshold overrides both.
    assert _identifier({"calibration": {"rule": "max_score", "threshold": 0.9}}).decide(text).threshold == 0.9
    assert _identifier(strict, threshold=0.3).decide(text).accepted


def test_eval_helpers_accept_text_only_answers_by_their_threshold():
    res = [_qr("band:1", "band:1", 0.7), _qr("band:2", "band:2", 0.7)]
    flags = [True, False]
    out = with_rule_scores(res, "max_score", 0.5, flags, 0.8)
    assert [r.accepted for r in out] == [False, True]
    assert evaluate(out, None)["known_correct_accept_rate"] == 0.5
    cal = Calibration("max_score", 0.5, text_only={"threshold": 0.8})
    assert [r.accepted for r in apply_calibration(res, cal, flags)] == [False, True]
    assert [r.accepted for r in apply_calibration(res, cal)] == [True, True]  # no flags: one threshold


def _collected(ev: Evidence, label: str | None) -> Collected:
    return Collected(LabelledQuery("p.jpg", label, "calib"), ev)


def test_fit_stores_a_text_only_threshold_from_calibration_evidence():
    # Known bands read well (0.88-0.99), unknown bands read as a look-alike (0.6-0.8), plus image-supported
    # photos; fit() must calibrate the text-only answers on their own.
    data = []
    for i in range(24):
        data.append(_collected(_text_ev(f"band:{i + 1}", 0.88 + 0.005 * i, other=0.55), f"band:{i + 1}"))
        data.append(_collected(_text_ev(f"band:{i + 1}", 0.6 + 0.008 * i, other=0.5), None))
        data.append(_collected(_image_ev(f"band:{i + 30}", 0.9), f"band:{i + 30}"))
    ident = _identifier({})
    flags = text_only_flags(ident, data)
    assert sum(flags) == 48 and not any(flags[2::3])
    model, cal = fit(ident, data, FakeCatalog())
    t = cal.text_only
    assert t["source"] == "calibrated" and t["n"] == 48 and t["n_right"] == 24 and t["n_unknown"] == 24
    # Stored in the sidecar, identify applies it to text-only answers, whatever the main threshold says (here one
    # that accepts nothing): a well-read name passes, a look-alike read does not, an image answer does not.
    ident._store.meta.update(fusion=model.to_dict(), calibration={**cal.to_dict(), "threshold": 1.01})
    ident._scorer = None
    assert ident.decide(_text_ev("band:3", 0.97)).accepted
    assert not ident.decide(_text_ev("band:3", 0.7)).accepted
    assert not ident.decide(_image_ev("band:40", 0.9)).accepted
