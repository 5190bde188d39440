"""Defects a review found in find_all per tile window and tile_min_step (fixed since; the mosaic bench's --set is
tested in test_bench_harness.py)."""

from __future__ import annotations

import math

import pytest

from logoid.core.errors import ConfigError
from logoid.engine.local import ExtractConfig, tile_scales
from logoid.identify.match import LocalConfig


def test_tile_min_step_above_two_does_not_drop_uncapped_levels():
    # The field's comment: "A level capped by tile_max_upscale is kept when at least this much finer than the
    # last". An uncapped level is always 2x the last, yet tile_scales applies the step to every level, so any
    # tile_min_step > 2 (which validation accepts) silently turns tiling off for every photo.
    with pytest.raises(ConfigError):  # now rejected: the step is in (1, 2]
        ExtractConfig(tile_levels=2, tile_min_step=2.2)
    assert tile_scales((4000, 3000), 0.2, ExtractConfig(tile_levels=2, tile_min_step=2.0)) == [0.4, 0.8]


def test_tile_min_step_nan_is_rejected():
    # `self.tile_min_step <= 1.0` is False for NaN, so NaN (json.loads of a sidecar accepts it) passes validation,
    # and `nxt < nan * s` never breaks: the capped level is then read again and again.
    with pytest.raises(ConfigError):
        cfg = ExtractConfig(tile_levels=4, tile_min_step=math.nan)
        assert tile_scales((800, 800), 1.0, cfg) == [2.0, 2.5, 2.5, 2.5]  # what it does instead


def test_sidecar_written_before_tile_min_step_keeps_its_levels():
    # A home built before this change stores a full LocalConfig dict without tile_min_step/tile_shortlist (and
    # with sift_contrast_threshold 0.04, which from_dict keeps: old homes keep their extraction). The missing
    # tile_min_step becomes 1.25 where the old code used 1.4, so an old home's find_all on an 800 px photo now
    # reads an extra 2.5x level (about twice the keypoints and time) and its query_hash changes.
    old = {k: v for k, v in LocalConfig().flat().items() if k not in ("tile_min_step", "tile_shortlist")}
    old["sift_contrast_threshold"] = 0.04
    cfg = LocalConfig.from_dict(old)
    assert cfg.extract.sift_contrast_threshold == 0.04 and cfg.match.tile_shortlist == 0
    ext = cfg.extract.for_find_all()  # what Identifier._local does for find_all
    assert tile_scales((800, 800), 1.0, ext) == [2.0]  # got [2.0, 2.5]
