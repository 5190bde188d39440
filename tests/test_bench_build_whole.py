"""The whole-build bench's stage clock and issue 24's roster table, on records made up here (no dev data)."""

from __future__ import annotations

import time

from bench.local import roster_table
from bench.local.build_whole import _Stages

INTEL = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2}
AMD = {"cpu": "AMD EPYC", "cores": 2}


def _rec(name: str, numbers: dict, date: str, machine: dict = INTEL, command: str = "") -> dict:
    subject = "build" if name == "whole" else "local"
    return {"subject": subject, "name": name, "numbers": numbers, "date": date, "machine": machine,
            "command": command or f"python -m bench {name}"}


def _e2e_row(n: int, p50: float, **facts) -> dict:
    return {"refs": n, "p50_s": p50, "descriptor_index": "IVF4096_HNSW32,PQ64x4fs,Refine(SQ8)", "p90_s": p50 + 0.2, "correct": 37, "timed": 40,
            "mem_timed": {"VmRSS": 4000.0, "RssAnon": 3600.0, "RssFile": 400.0}, **facts}


def _whole() -> dict:
    seconds = {"embedding": 1000.0, "local features": 600.0, "calibration": 10.0, "names": 5.0, "other": 5.0,
               "global index": 1.0, "descriptor index": 79.0}
    return {"refs": 10_000, "seconds": seconds, "total_s": sum(seconds.values())}


def test_the_stage_clock_times_bars_and_wrapped_steps_and_puts_them_back():
    class Owner:
        @staticmethod
        def step(x):
            time.sleep(0.02)
            return x * 2

    stages, original = _Stages(), Owner.step
    with stages.timed(Owner, "step", "index"):
        assert Owner.step(21) == 42
    assert Owner.step is original  # restored
    bar = stages.progress("embedding", 3, "variant")
    bar.update(2)
    bar.update(1)
    time.sleep(0.01)
    bar.close()
    assert stages.seconds["index"] >= 0.02 and stages.seconds["embedding"] >= 0.01
    assert [n for _, n in stages.marks["embedding"]] == [2, 3]


def test_roster_table_reads_one_machine_and_scales_the_build():
    straight = _e2e_row(180_000, 0.8, descriptor_index_build={"build_s": 3000.0, "save_s": 20.0, "disk_mb": 12_000},
                        global_index={"build_s": 580.0, "disk_mb": 3_000})
    records = [
        _rec("roster-e2e", {"1000": _e2e_row(1000, 0.5)}, "2026-12-07T03:00:00Z"),
        _rec("roster-e2e", {"1000": _e2e_row(1000, 9.9)}, "2026-12-01T03:00:00Z"),  # older: not shown
        _rec("roster-e2e", {"180000": straight}, "2026-12-06T17:00:00Z", command="roster-e2e --straight"),
        _rec("roster-e2e", {"1000": _e2e_row(1000, 7.7)}, "2026-12-08T00:00:00Z", AMD),  # another machine
        _rec("whole", _whole(), "2026-12-07T02:37:00Z"),
        _rec("roster-fused", {"276": {"subsets": {"global+local+text": {"after": {"top1": 0.957, "auroc": 0.974}}}},
                              "50000": {"subsets": {"global+local+text": {"after": {"top1": 0.95, "auroc": 0.967}}}}},
             "2026-12-06T18:00:00Z"),
    ]
    text = "\n".join(roster_table.render(records))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| 1")
            or line.startswith("| 5")}
    assert "Intel(R) Xeon(R) Processor, 2 cores" in text
    assert "0.500 / 0.700" in rows["1,000"] and "9.9" not in rows["1,000"] and "7.7" not in rows["1,000"]
    assert f"**{1700 / 3600:.2f}** (measured)" in rows["10,000"]  # the 10k build's 1,700 s
    # 180k: the linear stages (1,620 s at 10k) × 18 plus the structures as the straight build measured them
    assert f"**{(1620 * 18 + 3020 + 580) / 3600:.1f}**" in rows["180,000 (50k distinct + 130k reused)"]
    assert "| IVF4096, SQ8 re-rank |" in rows["1,000"]
    assert "14.6" in rows["180,000 (50k distinct + 130k reused)"]  # GB: 12,000 + 3,000 MB of index files
    assert " | ≈ 0.0" in rows["1,000"]  # a tenth of the 10k build: scaled where no structure was measured
    assert "fused top-1 / AUROC 0.950 / 0.967 (alone 0.957 / 0.974)" in rows["50,000"]


def test_roster_table_waits_for_a_straight_180k_run():
    assert roster_table.render([_rec("roster-e2e", {"1000": _e2e_row(1000, 0.5)}, "2026-12-07T03:00:00Z")]) == []
