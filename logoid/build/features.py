"""The local-feature stage of a build: RootSIFT of every reference, extracted in worker processes, kept on disk.

Each reference's features go to the feature cache (one atomic file per variant) as soon as they are extracted; the
stage keeps none of them in memory. The descriptor index is built from :class:`CachedFeatures`, which reads them
back from the cache each time it is iterated. With ``workers`` > 1, processes extract side by side (OpenCV at one
thread each) while this process takes their results in catalog order: the bar, the warnings and the
``build-image-features`` kill point advance per image in that order, as in a serial build, and the features are
the same bytes (SIFT's output does not depend on OpenCV's thread count).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from logoid.catalog.models import RefImage
from logoid.core.errors import ImageError
from logoid.core.faults import fault_point
from logoid.core.imageio import load_image

#: A reference with fewer keypoints than this (normal + inverted; half of it when only the normal variant is
#: extracted) can hardly be verified geometrically.
MIN_REF_KEYPOINTS = 40
#: Fewer images to extract than this are extracted here: a pool of processes costs ~0.5 s to start.
POOL_MIN_IMAGES = 8
_AHEAD = 4  # images queued per worker, so none waits while this process takes results in order


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def new_index_variants(extract_cfg) -> int:
    """Variants of each reference a new descriptor index stores, so the build extracts: the normal one only where
    it finds inverted prints by flipping photo descriptors (``DescriptorConfig.flip_inverted``, FAISS and Milvus
    alike), which halves the stage's work; both with ``flip_inverted`` off."""
    from logoid.engine.local import reference_variants
    from logoid.index.descriptor_structure import DescriptorConfig

    return reference_variants(extract_cfg, flips=DescriptorConfig().flip_inverted)


class CachedFeatures:
    """``(image id, [normal, inverted] features)`` (``[normal]`` with ``variants`` 1) of references whose features
    are in the cache, read from it on every pass (re-iterable; nothing kept): what ``DescriptorIndex.build`` takes
    without the whole catalog's descriptors in memory."""

    def __init__(self, fcache, extract_cfg, refs: Sequence, variants: int | None = None):
        self.fcache, self.cfg, self.variants = fcache, extract_cfg, variants
        self.entries = [(int(r.id), r.sha256, str(r.path)) for r in refs]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[int, list]]:
        for image_id, sha, path in self.entries:
            feats = self.fcache.lookup_reference(sha, self.cfg, self.variants)
            if feats is None:  # deleted or damaged since the stage wrote it: extract it again
                feats = self.fcache.get_reference(sha, lambda p=path: load_image(p), self.cfg, self.variants)
            yield image_id, feats


def _init_worker(parent: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the processes are the parallelism; also keeps the chroma SIFT inline (logoid.core.pool)

    def watch() -> None:  # a build killed (kill -9) must not leave its workers running: they exit within 0.2 s
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="logoid-parent-watch", daemon=True).start()


def _extract(cache_dir: str, extract_cfg, sha256: str, path: str, variants: int | None = None
             ) -> tuple[int | None, str | None]:
    """In a worker: one reference's features into the cache; (keypoints, None), or (None, why) for a bad image."""
    from logoid.engine.local import FeatureCache, extract_reference

    try:
        feats = extract_reference(load_image(path), extract_cfg, variants)
    except ImageError as e:
        return None, e.reason
    FeatureCache(cache_dir).put_reference(sha256, extract_cfg, feats)
    return sum(len(f) for f in feats), None


class _Task:
    """One reference to extract: here when its turn comes, or in the pool once one runs (``future``)."""

    __slots__ = ("ref", "future")

    def __init__(self, ref: RefImage):
        self.ref: RefImage = ref
        self.future: Future | None = None

    def result(self, cache_dir: str, extract_cfg, variants: int | None) -> tuple[int | None, str | None]:
        if self.future is None:
            return _extract(cache_dir, extract_cfg, self.ref.sha256, str(self.ref.path), variants)
        return self.future.result()


def _start_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing

    # spawn, not fork: the model's OpenMP threads do not survive a fork, and a forked child would hold the home's
    # lock beyond a killed build.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(),))


def feature_stage(refs: Sequence, extract_cfg, fcache, report, *, workers: int = 1, bar=None,
                  on_skip: Callable | None = None, variants: int | None = None) -> tuple[list[bool], CachedFeatures]:
    """Extract what the cache lacks of ``refs``' local features (in ``workers`` processes; 1: here) and say which
    references were readable, with :class:`CachedFeatures` of those. ``variants``: of each reference, the normal
    variant only (1) or normal and inverted (2); default ``logoid.engine.local.reference_variants``. ``report``
    counts ``features_extracted``, ``features_cached``, ``skipped`` and ``warnings``; ``bar.update`` is told each
    image."""
    from logoid.engine.local import reference_variants

    variants = variants or reference_variants(extract_cfg)
    min_kp = MIN_REF_KEYPOINTS * variants // 2
    cache_dir = str(fcache.dir)
    workers = max(1, workers)
    # Look ahead far enough to keep every worker busy while results are taken in order.
    limit = max(workers * _AHEAD, POOL_MIN_IMAGES) if workers > 1 else 1
    ahead: deque[tuple[RefImage, int | _Task]] = deque()  # (ref, cached keypoint count or its extraction)
    todo = iter(refs)
    pool: ProcessPoolExecutor | None = None
    waiting = 0  # extractions in ``ahead``
    keep: list[bool] = []

    def submit(task: _Task) -> None:
        if pool is not None:
            task.future = pool.submit(_extract, cache_dir, extract_cfg, task.ref.sha256, str(task.ref.path), variants)

    def fill() -> None:
        nonlocal pool, waiting
        while waiting < limit and len(ahead) < 64 * limit and (ref := next(todo, None)) is not None:
            count = fcache.keypoint_count(ref.sha256, extract_cfg, variants)
            if count is not None:
                ahead.append((ref, count))
                continue
            task = _Task(ref)
            submit(task)
            ahead.append((ref, task))
            waiting += 1
        if pool is None and workers > 1 and waiting >= POOL_MIN_IMAGES:
            pool = _start_pool(workers)
            for _, x in ahead:
                if isinstance(x, _Task):
                    submit(x)

    finished = False
    try:
        fill()
        while ahead:
            ref, got = ahead.popleft()
            if isinstance(got, _Task):
                waiting -= 1
                n_kp, why = got.result(cache_dir, extract_cfg, variants)
                report.features_extracted += why is None
            else:
                n_kp, why = got, None
                report.features_cached += 1
            keep.append(why is None)
            if why is not None:
                report.skipped.append((str(ref.path), why))
                if on_skip:
                    on_skip(str(ref.path), why)
            elif n_kp is not None and n_kp < min_kp:
                report.warnings.append(f"{ref.source or ref.path}: only {n_kp} keypoints; "
                                       "matching will rely on the embedding alone")
            if bar is not None:
                bar.update(1)
            fault_point("build-image-features")
            fill()
        finished = True
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=not finished)
    return keep, CachedFeatures(fcache, extract_cfg, [r for r, k in zip(refs, keep, strict=True) if k], variants)


__all__ = ["CachedFeatures", "MIN_REF_KEYPOINTS", "POOL_MIN_IMAGES", "default_workers", "feature_stage",
           "new_index_variants"]
