"""Defects a review found in find_all per tile window, tile_min_step and the mosaic bench's --set (fixed since)."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from logoid.core.errors import ConfigError
from logoid.engine.local import LocalConfig, tile_scales


def test_tile_min_step_above_two_does_not_drop_uncapped_levels():
    # The field's comment: "A level capped by tile_max_upscale is kept when at least this much finer than the
    # last". An uncapped level is always 2x the last, yet tile_scales applies the step to every level, so any
    # tile_min_step > 2 (which validation accepts) silently turns tiling off for every photo.
    with pytest.raises(ConfigError):  # now rejected: the step is in (1, 2]
        LocalConfig(tile_levels=2, tile_min_step=2.2)
    assert tile_scales((4000, 3000), 0.2, LocalConfig(tile_levels=2, tile_min_step=2.0)) == [0.4, 0.8]


def test_tile_min_step_nan_is_rejected():
    # `self.tile_min_step <= 1.0` is False for NaN, so NaN (json.loads of a sidecar accepts it) passes validation,
    # and `nxt < nan * s` never breaks: the capped level is then read again and again.
    with pytest.raises(ConfigError):
        cfg = LocalConfig(tile_levels=4, tile_min_step=math.nan)
        assert tile_scales((800, 800), 1.0, cfg) == [2.0, 2.5, 2.5, 2.5]  # what it does instead


def test_sidecar_written_before_tile_min_step_keeps_its_levels():
    # A home built before this change stores a full LocalConfig dict without tile_min_step/tile_shortlist (and
    # with sift_contrast_threshold 0.04, which from_dict keeps: old homes keep their extraction). The missing
    # tile_min_step becomes 1.25 where the old code used 1.4, so an old home's find_all on an 800 px photo now
    # reads an extra 2.5x level (about twice the keypoints and time) and its query_hash changes.
    old = {k: v for k, v in LocalConfig().to_dict().items() if k not in ("tile_min_step", "tile_shortlist")}
    old["sift_contrast_threshold"] = 0.04
    cfg = LocalConfig.from_dict(old)
    assert cfg.sift_contrast_threshold == 0.04
    cfg = replace(cfg, tile_levels=cfg.all_tile_levels)  # what Identifier._local does for find_all
    assert tile_scales((800, 800), 1.0, cfg) == [2.0]  # got [2.0, 2.5]


def test_mosaic_bench_set_parses_booleans(monkeypatch):
    # bench/mosaic.py --set KEY=VALUE converted with type(current)(value): bool("false") is True, so
    # `--set similarity_fallback=false` silently kept True. Reference settings (fixed by the index) are refused.
    bench = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.setattr(sys, "path", [str(bench), *sys.path])  # restored after the test (mosaic.py inserts too)
    monkeypatch.delitem(sys.modules, "mosaic", raising=False)
    import mosaic

    fake_acc = types.ModuleType("accuracy")
    fake_acc.setup_home = lambda data, home_dir, model: (None, None, None, [], {}, None, 0.0)
    monkeypatch.setitem(sys.modules, "accuracy", fake_acc)

    class FakeIdent:
        def __init__(self, *a, **k):
            self.store = types.SimpleNamespace(meta={"local": LocalConfig().to_dict()})
            self.threshold, self.rule = 0.5, "max_score"
            self.config = types.SimpleNamespace(max_logos=10, all_min_score=0.7)
            FakeIdent.last = self

        def _local_cfg(self):
            return LocalConfig.from_dict(self.store.meta["local"])

        def identify(self, *a, **k):
            raise AssertionError("not reached")

    import logoid.identify as ident_mod

    monkeypatch.setattr(ident_mod, "Identifier", FakeIdent)
    with pytest.raises(IndexError):  # no rows: stops at the warm-up, after the settings are applied
        mosaic.run(Path("."), sizes=(2,), mosaics=0, home_dir=Path("."), local_set={"similarity_fallback": "false"})
    assert FakeIdent.last.store.meta["local"]["similarity_fallback"] is False
    with pytest.raises(SystemExit, match="fixed by the built index"):
        mosaic.run(Path("."), sizes=(2,), mosaics=0, home_dir=Path("."), local_set={"upscale": "false"})
