"""One small shared thread pool for work that releases the GIL (OpenCV calls, large numpy passes): a photo's chroma
SIFT beside its grey SIFT, slices of its SQ8 re-ranking, the RANSAC fits of its candidates side by side. Sized by OpenCV's thread count (``cv2.setNumThreads``),
so a caller that pins OpenCV to one thread gets everything inline, in order."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOL: list = []  # [workers, ThreadPoolExecutor], made on first use
_PREFIX = "logoid-pool"


def workers() -> int:
    """Threads OpenCV may use here (1 = run inline; always inline on one of the pool's own threads, which must not
    wait on the pool)."""
    import cv2

    if threading.current_thread().name.startswith(_PREFIX):
        return 1
    return max(1, min(cv2.getNumThreads(), os.cpu_count() or 1))


def _executor(n: int) -> ThreadPoolExecutor:
    if not _POOL or _POOL[0] < n:
        if _POOL:
            _POOL[1].shutdown(wait=False)
        _POOL[:] = [n, ThreadPoolExecutor(max_workers=n, thread_name_prefix=_PREFIX)]
    return _POOL[1]


def thread_map(fn: Callable[[T], R], items: Iterable[T], min_items: int = 4) -> list[R]:
    """``[fn(x) for x in items]``, side by side on ``workers()`` threads when there are at least ``min_items``."""
    items = list(items)
    n = min(workers(), len(items))
    if n < 2 or len(items) < min_items:
        return [fn(x) for x in items]
    return list(_executor(n).map(fn, items))


def submit(fn: Callable[..., R], *args: Any) -> Future[R]:
    """``fn(*args)`` started on another thread when ``workers() > 1``, else run now (a finished future)."""
    if workers() > 1:
        return _executor(workers()).submit(fn, *args)
    done: Future[R] = Future()
    done.set_result(fn(*args))
    return done


__all__ = ["workers", "thread_map", "submit"]
