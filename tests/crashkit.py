"""Real processes against one logoid home: kill a write at each named step, or run readers beside writers.

The workload lives in one place, bench/concurrency/ (kit.py: the CLI in its own process, homes and their checks;
mixed.py: readers beside writers; kills.py: a write killed at every step), which ``python -m bench concurrency``
runs for a full minute; tests/test_crash.py and tests/test_concurrency.py run it shorter through this module.
"""

from bench.concurrency.kills import kill_scenario, kill_scenarios, kill_table, kill_templates
from bench.concurrency.kit import BASE, CHANNELS, MODEL, build_home, context, copy_home, make_assets, read_home, warm
from bench.concurrency.mixed import analyse, run_mixed

__all__ = ["BASE", "CHANNELS", "MODEL", "analyse", "build_home", "context", "copy_home", "kill_scenario",
           "kill_scenarios", "kill_table", "kill_templates", "make_assets", "read_home", "run_mixed", "warm"]
