"""The shared thread pool: same results as inline, in order; inline when OpenCV is pinned to one thread."""

from __future__ import annotations

import threading

import pytest

from logoid.core import pool as _pool

cv2 = pytest.importorskip("cv2")


@pytest.fixture
def opencv_threads():
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


def test_thread_map_keeps_order_and_runs_inline_on_one_thread(opencv_threads):
    cv2.setNumThreads(2)
    names: set[str] = set()

    def f(x: int) -> int:
        names.add(threading.current_thread().name)
        return x * x

    assert _pool.thread_map(f, range(50)) == [x * x for x in range(50)]
    cv2.setNumThreads(1)
    names.clear()
    assert _pool.thread_map(f, range(50)) == [x * x for x in range(50)]
    assert names == {threading.current_thread().name}
    assert _pool.submit(f, 7).result() == 49


def test_work_on_a_pool_thread_never_waits_on_the_pool(opencv_threads):
    cv2.setNumThreads(2)
    # every worker submits more work and waits for it: inline on pool threads, so this cannot deadlock
    nested = _pool.thread_map(lambda x: _pool.submit(lambda y: y + 1, x).result() + sum(_pool.thread_map(
        lambda z: z, range(5))), range(8))
    assert nested == [x + 1 + 10 for x in range(8)]
