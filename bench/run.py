"""Plain `make bench`: speed on the demo catalog, plus accuracy on threadless-dev when ../shared/data has it.

Each part records its run (bench/results/) and regenerates BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench._common import DATA
from bench.record import add_no_write
from logoid import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--only", choices=["speed", "threadless"], action="append", default=None)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--limit", type=int, default=None, help="Query only the first N photos (smoke runs).")
    add_no_write(p)
    a = p.parse_args(argv)
    only = set(a.only or ["speed", "threadless"])
    from tqdm import tqdm

    def bar(it):
        return tqdm(it, leave=False, file=sys.stderr)

    if "speed" in only:
        from bench.speed import demo

        demo.report(demo.run(a.model), write=not a.no_write)
    td = a.data / "threadless-dev"
    if "threadless" in only:
        if not (td / "manifest.csv").exists():
            print(f"skipping accuracy: {td} not found", file=sys.stderr)
        else:
            from bench.accuracy import threadless

            r = threadless.run(td, a.model, limit=a.limit, progress=bar)
            threadless.save_json(r)
            threadless.report(r, a.model, write=not a.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
