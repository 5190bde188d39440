"""`make bench`: speed benchmarks, plus accuracy on ../shared/data when it is there; appends to BENCHMARKS.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import append_section  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--only", choices=["speed", "threadless"], action="append", default=None)
    p.add_argument("--model", default="logoid-effl0-minilm")
    p.add_argument("--limit", type=int, default=None, help="Query only the first N photos (smoke runs).")
    p.add_argument("--no-write", action="store_true", help="Print, don't append to BENCHMARKS.md.")
    a = p.parse_args()
    only = set(a.only or ["speed", "threadless"])
    cmd = "make bench" if a.only is None else "python bench/run.py " + " ".join(sys.argv[1:])
    from tqdm import tqdm

    def bar(it):
        return tqdm(it, leave=False, file=sys.stderr)

    if "speed" in only:
        import speed

        r = speed.run(a.model)
        md = speed.markdown(r)
        print(md)
        if not a.no_write:
            append_section("Speed (demo catalog)", cmd, md)
    td = a.data / "threadless-dev"
    if "threadless" in only:
        if not (td / "manifest.csv").exists():
            print(f"skipping accuracy: {td} not found", file=sys.stderr)
        else:
            import accuracy as threadless

            r = threadless.run(td, a.model, limit=a.limit, progress=bar)
            threadless.save_json(r)
            md = threadless.markdown(r)
            print(md)
            if not a.no_write:
                append_section(f"Accuracy on threadless-dev ({a.model})", cmd, md)


if __name__ == "__main__":
    main()
