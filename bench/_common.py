"""Bench helpers: machine facts, timing, and appending a dated section to BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    dev = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {dev}; Python {sys.version.split()[0]}, "
            f"torch {torch.__version__}")


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


def append_section(title: str, command: str, body: str, path: Path | None = None) -> Path:
    """Append a dated section (machine, command, results) to BENCHMARKS.md."""
    path = path or ROOT / "BENCHMARKS.md"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"\n## {title} — {now}\n\n- machine: {machine()}\n- command: `{command}`\n\n{body.strip()}\n"
    if not path.exists():
        path.write_text("# logoid benchmarks\n\nEvery section below is written by a bench script; nothing is "
                        "hand-typed. Newest last.\n")
    with open(path, "a") as f:
        f.write(text)
    return path
