import json

import numpy as np
import pytest

from logoid.core.errors import ConfigError
from logoid.scoring.fusion import FusionModel
from logoid.scoring.results import QueryResult
from logoid.scoring.rules import (
    Calibration,
    calibrate,
    leave_one_out_impostors,
    leave_one_out_scores,
    rule_score,
    search_threshold,
)

CORRECT = [0.9, 0.8, 0.7, 0.6, 0.55]
UNKNOWN = [0.2, 0.4, 0.62]


def masks(correct=CORRECT, unknown=UNKNOWN, wrong=()):
    scores = np.array(list(correct) + list(unknown) + list(wrong))
    c = np.r_[np.ones(len(correct), bool), np.zeros(len(unknown) + len(wrong), bool)]
    u = np.r_[np.zeros(len(correct), bool), np.ones(len(unknown), bool), np.zeros(len(wrong), bool)]
    return scores, c, u


def test_search_threshold_open_set_accuracy_hand_computed():
    # Accepting everything above 0.4 gets 5 knowns + 2 rejected unknowns = 7/8; nothing else does as well.
    choice = search_threshold(*masks(), objective="open_set_accuracy")
    assert choice.threshold == pytest.approx((0.4 + 0.55) / 2)
    assert choice.value == pytest.approx(7 / 8)
    assert choice.false_accept_rate == pytest.approx(1 / 3)
    assert choice.true_accept_rate == pytest.approx(1.0)


def test_search_threshold_far_target():
    strict = search_threshold(*masks(), objective="max_false_accept", max_false_accept=0.0)
    assert strict.threshold == pytest.approx((0.62 + 0.7) / 2)
    assert strict.true_accept_rate == pytest.approx(3 / 5)
    loose = search_threshold(*masks(), objective="max_false_accept", max_false_accept=0.34)
    assert loose.threshold == pytest.approx((0.4 + 0.55) / 2)
    assert loose.false_accept_rate == pytest.approx(1 / 3)


def test_search_threshold_counts_wrong_identity_when_asked():
    scores, c, u = masks(wrong=[0.95])
    plain = search_threshold(scores, c, u, objective="max_false_accept", max_false_accept=0.0)
    assert plain.threshold < 0.7
    strict = search_threshold(scores, c, u, objective="max_false_accept", max_false_accept=0.0,
                              count_wrong_identity=True)
    assert strict.threshold > 0.95  # only rejecting everything keeps the wrong id out
    assert strict.true_accept_rate == 0.0


def test_search_threshold_needs_unknowns():
    scores, c, u = masks(unknown=[])
    with pytest.raises(ConfigError, match="unknown"):
        search_threshold(scores, c, u)
    with pytest.raises(ConfigError):
        search_threshold(*masks(), objective="nope")


def test_rule_scores_hand_computed():
    r = QueryResult("x.jpg", "A", ["A", "A", "B"], [0.9, 0.85, 0.5], [{"kth": 0.7}, {}, {}])
    assert rule_score("max_score", r) == pytest.approx(0.9)
    assert rule_score("margin", r) == pytest.approx(0.4)  # the duplicate entity is not the runner-up
    assert rule_score("ratio", r) == pytest.approx(1.8)
    assert rule_score("kth", r) == pytest.approx(0.7)
    assert np.isnan(rule_score("fused", r))  # no model
    assert rule_score("margin", QueryResult("y", None, ["A"], [0.3])) == pytest.approx(0.3)
    assert rule_score("max_score", QueryResult("z", None, [], [])) == -np.inf
    with pytest.raises(ConfigError):
        rule_score("bogus", r)


def margin_world(seed=0, n=80):
    """Knowns have one clear winner; unknowns score as high but between two near-equal entities."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        top = rng.uniform(0.5, 0.9)
        if i % 2:
            out.append(QueryResult(f"k{i}", "A", ["A", "B"], [top, top - rng.uniform(0.2, 0.3)]))
        else:
            out.append(QueryResult(f"u{i}", None, ["A", "B"], [top, top - rng.uniform(0.0, 0.05)]))
    return out


def test_calibrate_picks_the_rule_that_separates():
    cal = calibrate(margin_world())
    assert cal.rule == "margin"
    assert set(cal.per_rule) == {"max_score", "margin", "ratio"}  # kth/fused lack data and are skipped
    assert cal.per_rule["margin"]["auroc"] == pytest.approx(1.0)
    assert cal.per_rule["max_score"]["auroc"] < 0.8
    assert cal.per_rule["margin"]["value"] == pytest.approx(1.0)
    assert 0.05 < cal.threshold < 0.2
    assert (cal.n_known, cal.n_unknown) == (40, 40)
    test = margin_world(seed=1)
    right = [cal.accept(cal.score(r)) == (r.label is not None) for r in test]
    assert np.mean(right) == 1.0


def test_calibrate_explicit_rule_without_data_raises():
    with pytest.raises(ConfigError, match="kth"):
        calibrate(margin_world(), rules=["kth"])


def test_calibrate_fused_rule_and_json_roundtrip():
    results = margin_world()
    for r in results:
        r.features = [{"gap": r.scores[0] - r.scores[1]}, {"gap": 0.0}]
    fusion = FusionModel.linear({"gap": 40.0}, bias=-4.0)
    cal = calibrate(results, rules=["max_score", "fused"], fusion=fusion)
    assert cal.rule == "fused" and cal.fusion is not None
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.to_dict() == cal.to_dict()
    assert [again.score(r) for r in results] == pytest.approx([cal.score(r) for r in results])
    bad = cal.to_dict() | {"fusion": None}
    with pytest.raises(ConfigError):
        Calibration.from_dict(bad)
    with pytest.raises(ConfigError):
        Calibration.from_dict({"rule": "nope", "threshold": 0.1})


def test_leave_one_out_scores_hand_computed():
    vecs = {"A": np.array([[1.0, 0.0], [0.8, 0.6]]), "B": np.array([[0.0, 2.0]])}  # B unnormalised on purpose
    gen, imp = leave_one_out_scores(vecs)
    assert sorted(gen) == pytest.approx([0.8, 0.8])  # B has no second variant: no genuine score
    assert sorted(imp) == pytest.approx([0.0, 0.6, 0.6])
    gen1, imp1 = leave_one_out_scores(vecs, chunk_elements=1)  # one row per chunk gives the same
    assert sorted(gen1) == pytest.approx(sorted(gen)) and sorted(imp1) == pytest.approx(sorted(imp))


def test_leave_one_out_scores_match_brute_force():
    rng = np.random.default_rng(3)
    vecs = {f"e{i}": rng.normal(size=(rng.integers(1, 5), 8)) for i in range(12)}
    gen, imp = leave_one_out_scores(vecs, chunk_elements=50)
    exp_gen, exp_imp = [], []
    normed = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in vecs.items()}
    for k, m in normed.items():
        others = np.concatenate([v for kk, v in normed.items() if kk != k])
        for j in range(len(m)):
            exp_imp.append((others @ m[j]).max())
            if len(m) > 1:
                exp_gen.append((np.delete(m, j, axis=0) @ m[j]).max())
    assert sorted(gen) == pytest.approx(sorted(exp_gen), abs=1e-5)
    assert sorted(imp) == pytest.approx(sorted(exp_imp), abs=1e-5)
    sub_gen, sub_imp = leave_one_out_scores(vecs, max_queries=5)
    assert sub_imp.size == 5 and set(np.round(sub_imp, 5)) <= set(np.round(exp_imp, 5))


def test_leave_one_out_impostors_threshold_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 32))
    vecs = {f"e{i}": c + 0.05 * rng.normal(size=(4, 32)) for i, c in enumerate(centres)}
    cal = leave_one_out_impostors(vecs)
    assert cal.rule == "max_score"
    assert cal.per_rule["max_score"]["auroc"] == pytest.approx(1.0)
    gen, imp = leave_one_out_scores(vecs)
    assert imp.max() < cal.threshold < gen.min()
    far = leave_one_out_impostors(vecs, objective="max_false_accept", max_false_accept=0.0)
    assert far.per_rule["max_score"]["false_accept_rate"] == 0.0
    with pytest.raises(ConfigError):
        leave_one_out_impostors({"only": np.ones((3, 4))})
    with pytest.raises(ConfigError, match="two or more"):
        leave_one_out_impostors({"a": np.ones((1, 4)), "b": -np.ones((1, 4))})
