"""find_all on photos read in tiles: several small logos in one photo, voted and verified per tile window."""

from __future__ import annotations

import numpy as np
import pytest
from synth import background, paste, text_logo
from synth import photo as to_photo

from logoid.core.errors import ConfigError
from logoid.engine.local import ExtractConfig, Features, extract, extract_reference, tile_windows
from logoid.identify.match import LocalConfig, find_all
from logoid.index.descriptors import DescriptorIndex

cv2 = pytest.importorskip("cv2")

# A coarse whole-photo level (400 px) and one finer level cut into 400 px tiles: each logo below is about 70 px
# wide at the whole-photo level, too small for SIFT, and fills about half a tile at the finer level.
CFG = LocalConfig.of(ref_long_side=300, query_long_side=400, ref_max_keypoints=600, query_max_keypoints=2000,
                     tile_levels=1, tile_size=400, tile_max_keypoints=1200)
EX = CFG.extract
PLAIN = CFG.override(tile_shortlist=0)

LOGOS = {1: text_logo("MAYHEM", (420, 160), 72, 1), 2: text_logo("DEFTONES", (460, 140), 58, 2),
         3: text_logo("KORN", (300, 200), 90, 3), 4: text_logo("SLAYER", (440, 170), 70, 4)}
DISTRACTORS = {5: text_logo("ABBA", (320, 180), 80, 5), 6: text_logo("TOOL", (320, 180), 80, 6)}


@pytest.fixture(scope="module")
def dindex() -> DescriptorIndex:
    refs = LOGOS | DISTRACTORS
    return DescriptorIndex.build(((i, extract_reference(img, EX)) for i, img in refs.items()), feature_config=EX)


def _quad(x: int, y: int, w: int, h: int, skew: int = 6) -> list[tuple[int, int]]:
    return [(x, y + skew), (x + w, y), (x + w - skew, y + h), (x + skew, y + h - skew)]


def _grid_photo(logos: list, size=(1000, 760), seed: int = 21) -> tuple:
    """Logos in the cells of a 2×2 grid on clutter; returns the photo and each logo's quad."""
    arr = background(size, seed=seed)
    quads = []
    for k, logo in enumerate(logos):
        cx, cy = (k % 2) * size[0] // 2, (k // 2) * size[1] // 2
        w = 180
        h = round(w * logo.height / logo.width)
        q = _quad(cx + 90 + 20 * k, cy + 120 - 10 * k, w, h)
        arr, _ = paste(arr, logo, q)
        quads.append(q)
    return to_photo(arr), quads


def test_tile_windows_are_the_tiles_of_the_finer_levels():
    f = Features(np.zeros((3, 2), np.float32), np.zeros((3, 128), np.float32), (1000, 760), 0.4,
                 np.array([0.4, 0.8, 0.8], np.float32))
    wins = tile_windows(f, EX)
    # Level 0.8: 800 x 608 px, 400 px tiles overlapping by half -> 3 x 3 windows of 500 original px.
    assert len(wins) == 9
    assert all(x1 - x0 == pytest.approx(500) and y1 - y0 == pytest.approx(500) for x0, y0, x1, y1 in wins)
    assert min(w[0] for w in wins) == 0 and max(w[2] for w in wins) == pytest.approx(1000)
    assert max(w[3] for w in wins) == pytest.approx(760)
    assert tile_windows(Features(f.xy, f.desc, f.size, 0.4), EX) == []  # read at one level: no windows


def test_a_level_at_the_upscale_cap_is_kept_when_fine_enough():
    from logoid.engine.local import tile_scales

    cfg = ExtractConfig(tile_levels=2, tile_max_upscale=2.5)
    assert tile_scales((800, 800), 1.0, cfg) == [2.0, 2.5]  # 2.5 is 1.25x finer than 2.0
    assert tile_scales((800, 800), 1.0, ExtractConfig.from_dict({**cfg.to_dict(), "tile_min_step": 1.4})) == [2.0]
    assert tile_scales((380, 272), 800 / 380, cfg) == []  # 2.5 is only 1.19x finer than the whole-photo 2.1x
    with pytest.raises(ConfigError):
        ExtractConfig(tile_min_step=1.0)


def test_four_small_logos_in_a_grid_are_all_found(dindex):
    photo, quads = _grid_photo([LOGOS[i] for i in (1, 2, 3, 4)])
    q = extract(photo, EX, "query")
    assert q.kp_scale is not None and len(tile_windows(q, EX)) > 1
    found = find_all(q, dindex, CFG)
    strong = {v.image_id: v for v in found if v.score > 8}
    assert set(strong) == {1, 2, 3, 4}, [(v.image_id, v.inliers, round(v.score, 1)) for v in found]
    for i, quad in zip((1, 2, 3, 4), quads, strict=True):
        assert np.linalg.norm(strong[i].polygon - np.float64(quad), axis=1).max() < 12


def test_two_prints_of_one_logo_each_scored_on_its_own_window(dindex):
    # The same shirt twice (two people wearing it): over the whole photo every match of the other print (and of
    # the clutter) is an outlier of this print's homography; within its tile window far fewer are.
    photo, quads = _grid_photo([LOGOS[1], LOGOS[3], LOGOS[2], LOGOS[1]])
    q = extract(photo, EX, "query")
    windowed = [v for v in find_all(q, dindex, CFG) if v.image_id == 1 and v.score > 8]
    plain = [v for v in find_all(q, dindex, PLAIN) if v.image_id == 1 and v.score > 5]
    assert len(windowed) == 2 and plain
    centres = sorted(tuple(v.polygon.mean(axis=0).round(-2)) for v in windowed)
    assert centres == sorted(tuple(np.float64(quads[k]).mean(axis=0).round(-2)) for k in (0, 3))
    assert min(v.inlier_ratio for v in windowed) > 1.5 * plain[0].inlier_ratio  # about 0.39 against 0.17


def test_photo_read_at_one_level_is_searched_as_before(dindex):
    photo, _ = _grid_photo([LOGOS[1], LOGOS[2]], size=(700, 540))
    cfg = CFG.override(tile_levels=0, query_long_side=900)
    q = extract(photo, cfg.extract, "query")
    plain = cfg.override(tile_shortlist=0)
    a, b = find_all(q, dindex, cfg), find_all(q, dindex, plain)
    assert [(v.image_id, v.inliers) for v in a] == [(v.image_id, v.inliers) for v in b]
    assert {v.image_id for v in a if v.score > 8} == {1, 2}


def test_a_search_done_once_serves_match_local_and_find_all(dindex, monkeypatch):
    # The identify step searches a photo's descriptors once and hands the result to both (a search of a tiled
    # photo costs about as much as its verification).
    from logoid.identify.match import match_local

    photo, _ = _grid_photo([LOGOS[i] for i in (1, 2, 3, 4)])
    q = extract(photo, EX, "query")
    search = dindex.search(q.desc, k=max(2, CFG.match.neighbours))
    want_all, want_best = find_all(q, dindex, CFG), match_local(q, dindex, CFG)

    def no_search(*a, **k):
        raise AssertionError("searched again")

    monkeypatch.setattr(dindex, "search", no_search)
    got_all, got_best = find_all(q, dindex, CFG, search=search), match_local(q, dindex, CFG, search=search)
    assert [(v.image_id, v.inliers) for v in got_all] == [(v.image_id, v.inliers) for v in want_all]
    assert [(v.image_id, v.inliers) for v in got_best] == [(v.image_id, v.inliers) for v in want_best]
