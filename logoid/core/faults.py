"""Fault injection for crash tests: kill this process (as ``kill -9`` would) at a named step of a write.

``LOGOID_FAULT=STEP`` kills the process the first time it reaches ``fault_point(STEP)``; ``STEP@N`` the N-th time
(an import commits once per row). ``LOGOID_FAULT_TRACE=FILE`` appends every step reached, as ``STEP@N``, to FILE:
a crash test first traces a command, then kills it at each step it traced (tests/test_crash.py).
``LOGOID_FAULT_PAUSE=FILE`` makes the step named by ``LOGOID_FAULT`` a pause instead of a death: the process creates
FILE and waits there, holding whatever the write holds at that step, until FILE is deleted (tests/test_concurrency.py
runs readers and a second writer beside a write stopped at a known step). Unset, a fault point costs one environment
lookup.

The steps, in the order a write meets them (``STEPS``), are the moments where a crash leaves a different state
on disk: a change staged in memory, the catalog committed, the index's new files written, the index switched.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV_FAULT = "LOGOID_FAULT"
ENV_TRACE = "LOGOID_FAULT_TRACE"
ENV_PAUSE = "LOGOID_FAULT_PAUSE"

#: Every named step, with what is on disk when a process dies there.
STEPS = {
    "write-locked": "the home's write lock taken; nothing changed yet",
    "catalog-image-stored": "a reference image copied into the image store; its catalog row not committed",
    "build-image-embedded": "one more image embedded (vectors in the cache); the index not written",
    "build-image-features": "one more image's local features extracted (in the feature cache); the index not written",
    "index-staged": "the index update computed in memory; nothing of it written",
    "catalog-before-commit": "a catalog transaction complete, not committed",
    "catalog-committed": "the catalog transaction committed; the index not yet updated",
    "index-files-written": "the index's new generation files written; the sidecar still names the old ones",
    "index-committed": "the sidecar renamed onto the new generation; old files not yet swept",
    "write-done": "the whole write finished; the process is about to exit",
}

_counts: dict[str, int] = {}


def fault_point(step: str) -> None:
    """Mark a step of a write: die here if ``LOGOID_FAULT`` names it, log it if ``LOGOID_FAULT_TRACE`` is set."""
    spec, trace = os.environ.get(ENV_FAULT), os.environ.get(ENV_TRACE)
    if not spec and not trace:
        return
    n = _counts[step] = _counts.get(step, 0) + 1
    if trace:
        with open(trace, "a") as f:
            f.write(f"{step}@{n}\n")
    if spec:
        name, _, at = spec.partition("@")
        if name == step and n == int(at or 1):
            pause = os.environ.get(ENV_PAUSE)
            if pause:
                _wait_for_release(Path(pause), f"{step}@{n}")
            else:
                _die()


def _wait_for_release(flag: Path, where: str) -> None:
    """Create ``flag`` (saying where we stopped) and return once someone deletes it."""
    tmp = flag.with_name(flag.name + ".tmp")
    tmp.write_text(where + "\n")
    tmp.replace(flag)  # whoever waits for the flag sees it whole
    while flag.exists():
        time.sleep(0.02)


def _die() -> None:
    """End the process the way a crash does: no cleanup, no flushed buffers, no atexit."""
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # pragma: no cover - no SIGKILL (Windows)
