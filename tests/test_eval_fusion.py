import json

import numpy as np
import pytest

from logoid.core.errors import ConfigError
from logoid.eval.fusion import fit_fusion, training_rows
from logoid.scoring.fusion import FusionModel
from logoid.scoring.results import QueryResult


def synthetic(n_queries, seed, n_cand=5, unknown_every=4):
    """The true candidate has higher cosine and more inliers than the others, both under heavy noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_queries):
        unknown = i % unknown_every == 0
        truth = None if unknown else int(rng.integers(n_cand))
        feats = []
        for c in range(n_cand):
            good = c == truth
            cos = rng.normal(0.62 if good else 0.5, 0.08)
            inl = max(0.0, rng.normal(2.6 if good else 1.8, 0.8))
            feats.append({"cos": float(cos), "log_inliers": float(inl), "noise": float(rng.normal())})
        keys = [f"e{c}" for c in range(n_cand)]
        out.append(QueryResult(f"q{i}", None if unknown else keys[truth], keys, [0.0] * n_cand, feats))
    return out


def top1_rate(results, score):
    hits = [r.ranked[int(np.argmax(score(r.features)))] == r.label for r in results if r.label]
    return float(np.mean(hits))


def test_fitted_fusion_beats_each_feature_alone():
    model = fit_fusion(synthetic(600, seed=0), ["cos", "log_inliers", "noise"])
    test = synthetic(800, seed=1)
    fused = top1_rate(test, model.predict_proba)
    cos_only = top1_rate(test, lambda fs: [f["cos"] for f in fs])
    inl_only = top1_rate(test, lambda fs: [f["log_inliers"] for f in fs])
    assert fused > max(cos_only, inl_only) + 0.03
    coef = dict(zip(model.feature_names, model.coef, strict=True))
    assert coef["cos"] > 0 and coef["log_inliers"] > 0
    assert abs(coef["noise"]) < 0.5 * min(coef["cos"], coef["log_inliers"])


def test_training_rows_labels():
    rows, y = training_rows([
        QueryResult("a", "e1", ["e0", "e1"], [0, 0], [{"cos": 0.1}, {"cos": 0.2}]),
        QueryResult("b", None, ["e1"], [0], [{"cos": 0.3}]),  # unknown: negatives only
        QueryResult("c", "e1", ["e1"], [0], None),  # no features: skipped
    ])
    assert [r["cos"] for r in rows] == [0.1, 0.2, 0.3]
    assert y.tolist() == [0, 1, 0]


def test_fit_needs_both_classes():
    only_unknown = [QueryResult("b", None, ["e1"], [0], [{"cos": 0.3}])]
    with pytest.raises(ConfigError):
        fit_fusion(only_unknown, ["cos"])


def test_json_roundtrip_and_missing_features():
    model = fit_fusion(synthetic(200, seed=2), ["cos", "log_inliers"])
    again = FusionModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.C == model.C == 1.0 and FusionModel.linear({"cos": 1.0}).to_dict().get("C") is None
    rows = [{"cos": 0.7, "log_inliers": 3.0}, {"cos": 0.4, "log_inliers": 0.5}]
    assert again.predict_proba(rows) == pytest.approx(model.predict_proba(rows))
    # A missing feature takes the training mean, so it neither helps nor hurts.
    mean_inl = model.mean[1]
    assert model.predict_proba([{"cos": 0.7}])[0] == pytest.approx(
        model.predict_proba([{"cos": 0.7, "log_inliers": mean_inl}])[0])
    with pytest.raises(ConfigError):
        FusionModel.from_dict({"feature_names": ["a"], "coef": [1.0, 2.0], "intercept": 0.0})
    with pytest.raises(ConfigError):
        FusionModel.from_dict({"coef": [1.0]})


def test_linear_rule_is_sigmoid_of_hand_formula():
    rule = FusionModel.linear({"cos": 1.0, "log_inliers": 0.5}, bias=-1.0)
    z = 0.8 + 0.5 * 2.0 - 1.0
    assert rule.decision_function([{"cos": 0.8, "log_inliers": 2.0}])[0] == pytest.approx(z)
    assert rule.predict_proba([{"cos": 0.8, "log_inliers": 2.0}])[0] == pytest.approx(1 / (1 + np.exp(-z)))
    assert rule.predict_proba([]).shape == (0,)


def _with_text(results, seed, right_text_every=0):
    """Spurious name hits on wrong candidates; with ``right_text_every`` also real ones on the true candidate."""
    rng = np.random.default_rng(seed)
    for i, r in enumerate(results):
        for key, f in zip(r.ranked, r.features, strict=True):
            right = key == r.label and right_text_every and i % right_text_every == 0
            hit = right or (key != r.label and rng.random() < 0.1)
            f["text_sim"] = float(rng.uniform(0.9, 1.0) if right else rng.uniform(0.55, 0.7)) if hit else 0.0
            f["text_coverage"] = f["text_conf"] = 0.5 if hit else 0.0
    return results


def test_text_features_are_fitted_only_when_calibration_has_right_text_answers():
    from logoid.eval.fusion import supported_features

    names = ["cos", "log_inliers", "text_sim", "text_coverage", "text_conf"]
    spurious = _with_text(synthetic(300, seed=3), seed=3)
    kept, dropped = supported_features(spurious, names)
    assert kept == ["cos", "log_inliers"] and dropped == ["text"]
    real = _with_text(synthetic(300, seed=4), seed=4, right_text_every=5)
    kept, dropped = supported_features(real, names)
    assert kept == names and dropped == []


def test_regularisation_chosen_by_grouped_cross_validation_is_what_the_fit_records():
    from logoid.eval.fusion import choose_c

    train = synthetic(300, seed=4)
    C = choose_c(train, ["cos", "log_inliers", "noise"], grid=(0.001, 1.0))
    assert C in (0.001, 1.0)
    model = fit_fusion(train, ["cos", "log_inliers", "noise"], C=C)
    assert model.C == C and FusionModel.from_dict(model.to_dict()).C == C
    # a vanishing C shrinks every weight towards 0
    tiny = fit_fusion(train, ["cos", "log_inliers", "noise"], C=1e-5)
    assert max(abs(c) for c in tiny.coef) < 0.1 * max(abs(c) for c in fit_fusion(train, ["cos", "log_inliers",
                                                                                          "noise"]).coef)
