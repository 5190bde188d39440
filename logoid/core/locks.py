"""Locks between logoid processes on one home: one writer at a time, readers never wait.

Two kinds, both advisory ``flock`` locks that the kernel drops when the holder dies (``kill -9`` included), so a
crash never leaves a stale lock behind:

- the **write lock** (``HOME/.write.lock``, exclusive): every command that changes the catalog or the index
  holds it for the whole change, catalog and index together, so writers queue instead of interleaving. A writer
  that cannot get it within ``LOGOID_LOCK_TIMEOUT`` seconds (default 60) gives up with one line.
- **pins** (shared): a reader holds one on each index file it uses; a writer deletes a superseded file only
  when it can take that pin exclusively (``index/store.py``).

Readers of the catalog take no lock of ours: SQLite's WAL mode lets them read while one writer commits.
Where ``fcntl`` is missing (Windows) the write lock uses ``msvcrt`` and pins are no-ops.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import LogoidError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Whether pins work here (POSIX); without them a commit sweeps superseded index files at once.
PINS = fcntl is not None
ENV_LOCK_TIMEOUT = "LOGOID_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0
WRITE_LOCK = ".write.lock"
_POLL_S = 0.05

_local = threading.local()  # per thread: lock file path -> depth, so a writer may re-enter its own lock


class LockTimeout(LogoidError):
    """Another logoid command held the home's write lock for longer than we were willing to wait."""


def lock_timeout() -> float:
    """Seconds a writer waits for the write lock (and SQLite for its own lock): ``LOGOID_LOCK_TIMEOUT`` or 60."""
    raw = os.environ.get(ENV_LOCK_TIMEOUT)
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise LogoidError(f"{ENV_LOCK_TIMEOUT}={raw!r} is not a number of seconds", "set it like 60") from None
    return max(0.0, value)


def busy_message(root: Path, waited: float) -> tuple[str, str]:
    """The one line (message, hint) a writer says when another one held ``root`` for all ``waited`` seconds."""
    return (f"another logoid command is writing to {root}; try again",
            f"waited {waited:g} s; set {ENV_LOCK_TIMEOUT} to wait longer")


def _depths() -> dict[str, int]:
    if not hasattr(_local, "depths"):
        _local.depths = {}
    return _local.depths


def _try_lock(f: IO, exclusive: bool) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: one byte locked with msvcrt (exclusive only)
        import msvcrt

        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(f.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def write_lock(root: str | os.PathLike, timeout: float | None = None) -> Iterator[None]:
    """Hold the home's exclusive write lock for the ``with`` block; raise :class:`LockTimeout` after ``timeout``.

    Re-entrant within one thread (a command that calls another writer keeps the lock it has).
    """
    root = Path(root)
    path = root / WRITE_LOCK
    key = str(path.resolve())
    depths = _depths()
    if depths.get(key):
        depths[key] += 1
        try:
            yield
        finally:
            depths[key] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    wait = lock_timeout() if timeout is None else timeout
    t0 = time.monotonic()
    with open(path, "a+b") as f:
        while not _try_lock(f, exclusive=True):
            if time.monotonic() - t0 >= wait:
                raise LockTimeout(*busy_message(root, wait))
            time.sleep(_POLL_S)
        depths[key] = 1
        try:
            yield
        finally:
            depths.pop(key, None)
            # closing the file releases the lock; the file itself stays (removing it would race a waiting writer)


def writer_active(root: str | os.PathLike) -> bool:
    """True while some process holds ``root``'s write lock (a write is under way)."""
    path = Path(root) / WRITE_LOCK
    if fcntl is None or not path.exists():
        return False
    if _depths().get(str(path.resolve())):
        return True
    with open(path, "rb") as f:
        return not _try_lock(f, exclusive=False)  # closing releases our probe at once


def pin(path: Path) -> IO | None:
    """A shared lock on ``path`` (created if missing), held until the returned file is closed."""
    if fcntl is None:  # pragma: no cover
        return None
    f = open(path, "a+b")  # noqa: SIM115 - the caller holds it open: that is the pin
    fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # waits only while a writer deletes that generation (milliseconds)
    return f


def try_exclusive(path: Path) -> IO | None:
    """An exclusive lock on ``path`` if nobody pins it now, else None. Close the file to release it."""
    if fcntl is None:  # pragma: no cover
        return None
    f = open(path, "a+b")  # noqa: SIM115 - returned open: closing it releases the lock
    if _try_lock(f, exclusive=True):
        return f
    f.close()
    return None
