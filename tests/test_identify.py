"""The identify step's fusion pieces: default rule, candidate features, channel restriction, de-duplication."""

from __future__ import annotations

import numpy as np

from logoid.identify.pipeline import Evidence, _same_place
from logoid.scoring.fusion import DefaultRule, candidate_features, make_scorer


def test_default_rule_each_channel_can_carry_an_answer():
    rule = DefaultRule(cos_mid=0.8)
    nothing = rule.score({"cos": 0.5, "log_inliers": 0.0, "text_sim": 0.0})
    assert nothing < 0.01
    assert rule.score({"cos": 0.9}) > 0.95  # global alone
    assert rule.score({"cos": 0.5, "log_inliers": np.log1p(30)}) > 0.95  # verified geometry alone
    assert rule.score({"cos": 0.5, "text_sim": 1.0}) > 0.95  # a read name alone
    assert rule.score({"cos": 0.5, "text_sim": 0.7}) < 0.05  # a vague read does not


def test_candidate_features_margins_and_ranks():
    feats = candidate_features([{"cos": 0.9, "in_global": True, "inliers": 3},
                                {"cos": 0.7, "in_global": True, "inliers": 40}], shortlist=20)
    assert abs(feats[0]["cos_margin"] - 0.2) < 1e-9
    assert feats[0]["rank_global"] == 0 and feats[1]["rank_global"] == 1
    assert feats[1]["rank_local"] == 0 and feats[1]["local_margin"] > 0 > feats[0]["local_margin"]


def test_scorer_from_sidecar_uses_fitted_model_when_present():
    default = make_scorer({})
    fitted = make_scorer({"fusion": {"feature_names": ["cos"], "coef": [10.0], "intercept": -5.0, "mean": [0.0],
                                     "scale": [1.0], "kind": "logistic"}})
    f = [{"cos": 0.6}]
    assert abs(fitted(f)[0] - 1 / (1 + np.exp(-1.0))) < 1e-6
    assert default(f)[0] != fitted(f)[0]


def test_restrict_drops_other_channels_evidence():
    ev = Evidence("p", {"band:1": {"cos": 0.8, "in_global": True, "inliers": 12, "text_sim": 0.9},
                        "band:2": {"cos": 0.3, "text_sim": 0.95}}, floor=0.3, read=[{"text": "x"}], logos=[],
                  timings={}, channels=("global", "local", "text"))
    g = ev.restrict(("global",))
    assert set(g.cands) == {"band:1"} and "inliers" not in g.cands["band:1"] and "text_sim" not in g.cands["band:1"]
    t = ev.restrict(("text",))
    assert set(t.cands) == {"band:1", "band:2"} and all(c["cos"] == 0.0 for c in t.cands.values()) and t.read


def test_same_place_merges_overlapping_outlines_only():
    a = np.float32([[0, 0], [100, 0], [100, 50], [0, 50]])
    assert _same_place(a, a + 10)
    assert not _same_place(a, a + 300)


def _synthetic_results(n: int = 60, seed: int = 0):
    from logoid.scoring.results import QueryResult

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        known = i % 3 != 0
        label = f"band:{i % 20}" if known else None
        # the right candidate has more inliers; a noise feature carries nothing
        right = {"log_inliers": float(rng.normal(3.0, 0.5)), "noise": float(rng.normal())}
        wrong = {"log_inliers": float(rng.normal(1.5, 0.5)), "noise": float(rng.normal())}
        ranked = [label or f"band:{100 + i}", f"band:{200 + i}"]
        feats = [right if known else wrong, dict(wrong)]
        out.append(QueryResult(f"p{i}.jpg", label, ranked, [0.0, 0.0], feats))
    return out


def test_fusion_c_chosen_by_grouped_cross_validation():
    from logoid.eval.fusion import _group_folds, choose_c, cv_scores

    res = _synthetic_results()
    folds = _group_folds(res, 5, 0)
    by_label: dict = {}
    for r, f in zip(res, folds, strict=True):
        if r.label is not None:
            by_label.setdefault(r.label, set()).add(int(f))
    assert all(len(v) == 1 for v in by_label.values())  # one entity's photos never straddle folds
    a, top1 = cv_scores(res, ["log_inliers"], C=1.0)
    assert a is not None and a > 0.9 and top1 == 1.0
    a_noise, _ = cv_scores(res, ["noise"], C=1.0)
    assert a_noise < a
    grid = (0.01, 0.1, 1.0)
    assert choose_c(res, ["log_inliers", "noise"], grid=grid) in grid


def test_default_rule_from_an_older_sidecar_keeps_comparing_raw_inliers():
    # 12 inliers at inlier ratio 0.25 → local score 6: above the new rule's mid (3) on both readings, but an
    # index built before the local score stored mid 9 for raw inliers and must keep that meaning
    f = {"log_inliers": float(np.log1p(12)), "log_local_score": float(np.log1p(6))}
    old = make_scorer({"fusion": {"kind": "default", "inliers_mid": 9.0, "cos_mid": 2.0}})
    new = make_scorer({"fusion": {**DefaultRule(inliers_mid=9.0, cos_mid=2.0).to_dict()}})
    assert old([f])[0] > 0.5 > new([f])[0]


def test_find_all_logos_sorted_and_extra_logos_need_all_min_score():
    from types import SimpleNamespace

    from logoid.identify.pipeline import Identifier, IdentifyConfig

    def verif(image_id, inliers, x):
        poly = [[x, 0], [x + 50, 0], [x + 50, 30], [x, 30]]
        return SimpleNamespace(image_id=image_id, inliers=inliers, inlier_ratio=0.5, score=float(inliers), polygon=poly,
                               coverage=0.5)

    # found in this order (find_all's rounds), fused score = inliers / 100
    verifs = [verif(1, 60, 0), verif(2, 95, 200), verif(3, 85, 400), verif(4, 40, 600)]

    def logos(floor):
        stub = SimpleNamespace(entity_of_image=lambda i: f"band:{i}", threshold=0.5,
                               config=IdentifyConfig(all_min_score=floor),
                               score=lambda fs: [round(float(np.expm1(f["log_inliers"]))) / 100 for f in fs],
                               catalog=SimpleNamespace(entity_name=lambda t, i: f"B{i}"), _meta=lambda key: {})
        return [(c.entity_key, c.score) for c in Identifier._logos(stub, verifs, {})]

    assert logos(None) == [("band:2", 0.95), ("band:3", 0.85), ("band:1", 0.6)]  # strongest first; 0.4 < threshold
    assert logos(0.8) == [("band:2", 0.95), ("band:3", 0.85)]
    assert logos(0.99) == [("band:2", 0.95)]  # the strongest is kept at the threshold alone
