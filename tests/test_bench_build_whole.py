"""The whole-build bench's stage clock and 180k arithmetic, and issue 24's roster table, on made-up records."""

from __future__ import annotations

import time

import pytest

from bench.local import roster_table
from bench.local.build_whole import ROSTER, _Stages, extrapolate

INTEL = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2}
AMD = {"cpu": "AMD EPYC", "cores": 2}
SECONDS = {"embedding": 1000.0, "local features": 600.0, "calibration": 10.0, "names": 3.0, "commit": 2.0,
           "other": 5.0, "global index": 1.0, "descriptor index": 79.0}


def _rec(name: str, numbers: dict, date: str, machine: dict = INTEL, command: str = "") -> dict:
    return {"subject": "build" if name == "whole" else "local", "name": name, "numbers": numbers, "date": date,
            "machine": machine, "command": command or f"python -m bench {name}"}


def _e2e_row(n: int, p50: float, **facts) -> dict:
    return {"refs": n, "p50_s": p50, "p90_s": p50 + 0.2, "correct": 37, "timed": 40,
            "descriptor_index": "IVF4096_HNSW32,PQ64x4fs,Refine(SQ8)",
            "mem_timed": {"VmRSS": 4000.0, "RssAnon": 3600.0, "RssFile": 400.0}, **facts}


def _fused(top1: float, auroc: float) -> dict:
    return {"subsets": {"global+local+text": {"after": {"top1": top1, "auroc": auroc}}}}


def _prints(refs: int, band: int, top1: float) -> dict:
    return {"refs": refs, "distinct": refs, "kinds": {"band": band},
            "prints": {"top1": 0.1, "names_read": {"top1": top1}}}


def test_the_stage_clock_times_bars_and_wrapped_steps_and_puts_them_back():
    class Index:
        @classmethod
        def build(cls, x):
            time.sleep(0.02)
            return cls, x * 2

    class Sub(Index):
        pass

    stages = _Stages()
    with stages.timed(Index, "build", "index"):
        assert Index.build(21) == (Index, 42)
    assert Sub.build(1) == (Sub, 2)  # a classmethod again, not the method bound to Index
    bar = stages.progress("embedding", 3, "variant")
    bar.update(2)
    bar.update(1)
    time.sleep(0.01)
    bar.close()
    assert stages.seconds["index"] >= 0.02 and stages.seconds["embedding"] >= 0.01
    assert [n for _, n in stages.marks["embedding"]] == [2, 3]


def test_180k_is_the_linear_stages_scaled_plus_the_structures_measured_there():
    straight = {"descriptor index": 3000.0, "global index": 600.0}
    e = extrapolate(SECONDS, 10_000, straight)
    assert e["linear_h"] == pytest.approx(1620 * 18 / 3600)  # every stage but the two structures
    assert e["total_h"] == pytest.approx((1620 * 18 + 3600) / 3600)
    assert e["total_linear_h"] == pytest.approx(1700 * 18 / 3600)
    assert extrapolate(SECONDS, 10_000, None)["total_h"] is None
    assert ROSTER == 180_000


def test_roster_table_reads_one_machine_and_scales_the_build():
    straight = _e2e_row(180_000, 0.8, descriptor_index_build={"build_s": 3000.0, "disk_mb": 12_000},
                        global_index={"build_s": 600.0, "disk_mb": 3_000})
    ten = _e2e_row(10_000, 0.6, descriptor_index_build={"build_s": 158.0, "disk_mb": 500},
                   global_index={"build_s": 5.0, "disk_mb": 400})
    records = [
        _rec("roster-e2e", {"1000": _e2e_row(1000, 0.5), "10000": ten}, "2026-12-07T03:00:00Z"),
        _rec("roster-e2e", {"1000": _e2e_row(1000, 9.9)}, "2026-12-01T03:00:00Z"),  # older: not shown
        _rec("roster-e2e", {"180000": straight}, "2026-12-06T17:00:00Z", command="roster-e2e --straight"),
        _rec("roster-e2e", {"1000": _e2e_row(1000, 7.7)}, "2026-12-08T00:00:00Z", AMD),  # another machine
        _rec("whole", {"refs": 10_000, "seconds": SECONDS, "total_s": 1700.0}, "2026-12-07T02:37:00Z"),
        _rec("roster-fused", {"276": _fused(0.957, 0.974), "50000": _fused(0.95, 0.967),
                              "50000@0": _fused(0.5, 0.5)}, "2026-12-06T18:00:00Z"),  # another extras setting
        _rec("roster-prints", {"_meta": {}, "bands": _prints(1206, 1206, 0.949), "50k": _prints(50_000, 1206, 0.932)},
             "2026-12-06T15:00:00Z"),
    ]
    text = "\n".join(roster_table.render(records))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith(("| 1", "| 5"))}
    assert "Intel(R) Xeon(R) Processor, 2 cores" in text and f'id="{roster_table.ANCHOR}"' in text
    assert "0.500 / 0.700" in rows["1,000"] and "9.9" not in rows["1,000"] and "7.7" not in rows["1,000"]
    assert "| IVF4096, SQ8 re-rank |" in rows["1,000"]
    assert f"**{1700 / 3600:.2f}** (measured)" in rows["10,000"]
    # 180k: the linear stages (1,620 s at 10k) × 18 plus the structures as the straight build measured them there
    big = rows["180,000 (50k distinct + 130k reused)"]
    assert f"| ≈ {(1620 * 18 + 3600) / 3600:.1f} |" in big
    assert "| 14.6 |" in big  # GB: 12,000 + 3,000 MB of index files
    assert f"| ≈ {1700 / 10 / 3600:.2f} |" in rows["1,000"]  # no structures measured there: the whole build scaled
    assert "fused top-1 / AUROC 0.950 / 0.967 (alone 0.957 / 0.974)" in rows["50,000"]
    assert "band-logo prints top-1 0.932 (alone 0.949)" in rows["50,000"]


def test_roster_table_waits_for_a_straight_180k_run():
    assert roster_table.render([_rec("roster-e2e", {"1000": _e2e_row(1000, 0.5)}, "2026-12-07T03:00:00Z")]) == []
