import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from logoid.core.errors import ConfigError
from logoid.eval.metrics import evaluate
from logoid.scoring.results import QueryResult
from logoid.scoring.stats import auroc, fpr_at_tpr


def q(label, ranked, scores, accepted=None):
    return QueryResult(path=f"{label}-{ranked}.jpg", label=label, ranked=list(ranked), scores=list(scores),
                       accepted=accepted)


def test_auroc_hand_computed_with_ties():
    # pairs: (3,1)=1 (3,2)=1 (2,1)=1 (2,2)=0.5 -> 3.5 / 4
    assert auroc([3, 2], [1, 2]) == pytest.approx(0.875)
    assert auroc([1, 1], [1, 1, 1]) == pytest.approx(0.5)
    assert auroc([0, 0], [1]) == pytest.approx(0.0)
    assert auroc([5.0], [-math.inf]) == pytest.approx(1.0)


def test_auroc_one_class_is_none_not_nan():
    assert auroc([], [1, 2]) is None
    assert auroc([1, 2], []) is None


def test_auroc_matches_sklearn_on_tied_random_scores():
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(0.6, 0.2, 200), 1)  # rounding forces many ties
    neg = np.round(rng.normal(0.4, 0.2, 150), 1)
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(y, np.r_[pos, neg]), abs=1e-12)


def test_fpr_at_tpr_hand_computed():
    pos = np.arange(1, 21, dtype=float)  # 95% of 20 = 19 -> threshold is the 19th largest = 2
    neg = [1.5, 2.0, 2.5, 0.0]
    assert fpr_at_tpr(pos, neg) == pytest.approx(0.5)
    assert fpr_at_tpr([], neg) is None
    assert fpr_at_tpr(pos, []) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fpr_at_tpr_matches_sklearn_roc_curve(seed):
    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(0.7, 0.15, 97), 2)
    neg = np.round(rng.normal(0.5, 0.15, 61), 2)
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    fpr, tpr, _ = roc_curve(y, np.r_[pos, neg], drop_intermediate=False)
    expected = fpr[np.argmax(tpr >= 0.95)]
    assert fpr_at_tpr(pos, neg) == pytest.approx(expected)


def mixed_set():
    return [
        q("A", ["A", "B"], [0.9, 0.5]),  # accepted, right
        q("A", ["B", "A"], [0.8, 0.7]),  # accepted, wrong id
        q("B", ["C", "B"], [0.4, 0.3]),  # rejected, right within top-5
        q(None, ["A"], [0.7]),  # unknown accepted
        q(None, ["B"], [0.2]),  # unknown rejected
        q(None, [], []),  # no candidates: rejected, scores -inf
    ]


def test_evaluate_hand_computed():
    m = evaluate(mixed_set(), threshold=0.6)
    assert (m["n"], m["n_known"], m["n_unknown"]) == (6, 3, 3)
    assert m["top1"] == pytest.approx(1 / 3)
    assert m["top5"] == pytest.approx(1.0)
    assert m["open_set_accuracy"] == pytest.approx(3 / 6)
    assert m["confident_wrong_rate"] == pytest.approx(2 / 6)
    assert m["confident_wrong_rate_known"] == pytest.approx(1 / 3)
    assert m["unknown_accept_rate"] == pytest.approx(1 / 3)
    assert m["known_accept_rate"] == pytest.approx(2 / 3)
    assert m["auroc"] == pytest.approx(8 / 9)
    assert m["fpr_at_95tpr"] == pytest.approx(1 / 3)
    pc = m["per_class"]
    assert pc["A"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["B"]["f1"] == 0.0 and pc["B"]["support"] == 1
    assert pc["unknown"]["precision"] == pytest.approx(2 / 3)
    assert pc["unknown"]["recall"] == pytest.approx(2 / 3)
    assert m["weighted_f1"] == pytest.approx(0.5)
    assert m["threshold"] == 0.6


def test_evaluate_threshold_is_inclusive_and_k_is_named():
    m = evaluate([q("A", ["A"], [0.5]), q(None, ["A"], [0.49])], threshold=0.5, k=3)
    assert m["open_set_accuracy"] == 1.0
    assert "top3" in m and m["top3"] == 1.0


def test_evaluate_all_known_and_all_unknown():
    known = evaluate([q("A", ["A"], [0.9]), q("B", ["A"], [0.8])], threshold=0.5)
    assert known["auroc"] is None and known["fpr_at_95tpr"] is None
    assert known["unknown_accept_rate"] is None
    assert known["top1"] == 0.5
    unknown = evaluate([q(None, ["A"], [0.9]), q(None, ["B"], [0.1])], threshold=0.5)
    assert unknown["top1"] is None and unknown["top5"] is None and unknown["auroc"] is None
    assert unknown["confident_wrong_rate"] == 0.5
    assert unknown["confident_wrong_rate_known"] is None
    empty = evaluate([], threshold=0.5)
    assert empty["n"] == 0 and empty["open_set_accuracy"] is None and empty["weighted_f1"] is None


def test_evaluate_uses_result_flags_without_threshold():
    rs = [q("A", ["A"], [0.1], accepted=True), q(None, ["A"], [0.9], accepted=False)]
    assert evaluate(rs, threshold=None)["open_set_accuracy"] == 1.0
    assert evaluate(rs, threshold=0.5)["open_set_accuracy"] == 0.0
    with pytest.raises(ConfigError):
        evaluate([q("A", ["A"], [0.1])], threshold=None)


def test_query_result_roundtrip():
    r = QueryResult("x.jpg", "band:1", ["band:1"], [0.5], [{"cos": 0.5}], True)
    assert QueryResult.from_dict(r.to_dict()) == r
