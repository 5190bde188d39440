"""Helpers every bench shares: where things live, timing, and markdown tables."""

from __future__ import annotations

import csv
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The dev data sets (threadless-dev, band-logos, albums-dev), beside the checkout; never needed by the tests.
DATA = ROOT.parent / "shared" / "data"
#: Caches and work files of the benches (homes, features, OCR, evidence, intermediate JSON): not committed.
WORK = ROOT / "bench" / "work"


def read_manifest(path: Path) -> list[dict]:
    """The rows of a data set's ``manifest.csv`` (``path`` is the CSV or the folder holding it)."""
    path = path if path.suffix == ".csv" else path / "manifest.csv"
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def median_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
