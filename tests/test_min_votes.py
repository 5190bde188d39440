"""The votes a candidate needs (``MatchConfig.min_votes``): in a crowded catalog a print's keypoints often have
another logo's descriptor nearly as close as their own, so the ratio test passes only a few of them; the few votes
pick the reference, and its soft matches verify it."""

from __future__ import annotations

import numpy as np
import pytest

from logoid.engine.local import Features
from logoid.identify.match import LocalConfig, match_local
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.descriptors import DescriptorIndex, ratio_matches

pytest.importorskip("faiss")

N, CLEAR = 30, 3  # the design's keypoints; how many of them have no near twin in another reference


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.maximum(x, 0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _catalog_and_photo(seed: int = 0, clear: int = CLEAR) -> tuple[DescriptorIndex, Features]:
    rng = np.random.default_rng(seed)
    design = _unit(rng.random((N, 128)))
    xy = (rng.random((N, 2)) * [360, 260] + 20).astype(np.float32)
    photo_desc = _unit(design + rng.normal(0, 0.01, design.shape))
    # Another logo has a twin of every keypoint but the first CLEAR, mirrored through the photo's descriptor and
    # 2 % farther: the second-nearest is then ANOTHER reference at ratio ~0.98, so the Lowe test (0.95) fails.
    twins = _unit(photo_desc[clear:] + 1.02 * (photo_desc[clear:] - design[clear:]))
    other_xy = (rng.random((N - clear, 2)) * 380).astype(np.float32)
    filler = [(i, [Features((rng.random((N, 2)) * 380).astype(np.float32), _unit(rng.random((N, 128))), (400, 300))])
              for i in range(2, 12)]
    items = [(0, [Features(xy, design, (400, 300))]), (1, [Features(other_xy, twins, (400, 300))]), *filler]
    dindex = DescriptorIndex.build(items, config=DescriptorConfig(ivf=False))
    photo_xy = (xy * 1.5 + [50, 40]).astype(np.float32)  # the print, enlarged and moved on an 800x600 photo
    return dindex, Features(photo_xy, photo_desc, (800, 600))


def test_a_design_with_three_votes_is_verified_on_its_soft_matches():
    dindex, photo = _catalog_and_photo()
    D, owners = dindex.search(photo.desc, k=8)
    votes = ratio_matches(D, owners, LocalConfig().match.ratio)
    assert sorted(votes[votes[:, 1] == 0][:, 0].tolist()) == list(range(CLEAR))  # the premise: 3 votes only
    assert LocalConfig().match.min_votes == 3
    found = match_local(photo, dindex, LocalConfig())
    assert [v.image_id for v in found] == [0]
    assert found[0].inliers >= N - 2  # verified on its soft matches, not only its 3 votes
    np.testing.assert_allclose(found[0].H[:2, :2], np.eye(2) * 1.5, atol=0.02)


def test_with_four_votes_needed_the_same_design_is_never_tried():
    dindex, photo = _catalog_and_photo()
    assert match_local(photo, dindex, LocalConfig.of(min_votes=4)) == []


def test_a_shortlisted_design_with_too_few_votes_is_verified_on_its_own_descriptors():
    # Two votes: too few to be tried from the votes, but the global channel shortlisted it. It used to be left out of
    # the restricted search as well (it was among the voted groups), so it was never verified at all.
    dindex, photo = _catalog_and_photo(clear=2)
    assert match_local(photo, dindex, LocalConfig()) == []
    found = match_local(photo, dindex, LocalConfig(), extra_candidates=[0, 5])
    assert [v.image_id for v in found] == [0]
    assert found[0].inliers >= N - 2


def _asked(monkeypatch, dindex) -> list:
    """The image ids each restricted search of ``dindex.match`` is asked for, in order (that search finds nothing)."""
    asked: list = []
    monkeypatch.setattr(dindex, "match", lambda *a, **k: asked.append(a[3]) or np.zeros((0, 4), np.int64))
    return asked


def test_a_shortlisted_design_the_votes_verified_is_not_searched_again(monkeypatch):
    dindex, photo = _catalog_and_photo()
    asked = _asked(monkeypatch, dindex)
    found = match_local(photo, dindex, LocalConfig.of(extras_until_inliers=0), extra_candidates=[0, 5])
    assert [v.image_id for v in found] == [0] and asked == [{5}]


def test_no_extra_candidate_is_searched_once_the_votes_verified_a_strong_reference(monkeypatch):
    dindex, photo = _catalog_and_photo()
    asked = _asked(monkeypatch, dindex)
    inliers = match_local(photo, dindex, LocalConfig())[0].inliers
    assert inliers >= LocalConfig().match.extras_until_inliers  # the premise: the design verifies strongly
    found = match_local(photo, dindex, LocalConfig(), extra_candidates=[0, 5])
    assert [v.image_id for v in found] == [0] and asked == []
    # below the limit the shortlist's other image is searched as before
    match_local(photo, dindex, LocalConfig.of(extras_until_inliers=inliers + 1), extra_candidates=[0, 5])
    assert asked == [{5}]


def test_an_older_sidecar_reads_extras_until_inliers_as_0_and_a_new_one_the_default():
    from logoid.identify.match import MatchConfig

    stored = {k: v for k, v in MatchConfig().to_dict().items() if k != "extras_until_inliers"}
    assert MatchConfig.from_dict(stored).extras_until_inliers == 0
    assert MatchConfig.from_dict({}).extras_until_inliers == MatchConfig().extras_until_inliers
