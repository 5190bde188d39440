"""The embedding stage of a build: every reference's augmented variants through the image tower.

Each reference is looked up in the embedding cache; what is missing is read, augmented and laid out as model
inputs in batches that span references, and the calling thread runs the model on them. Two ways to make the
inputs:

- **worker processes** (:class:`_Augmenters`, ``workers`` > 1 and enough references): the references' variants
  are split among processes that write their pixels into shared memory, a chunk of :data:`CHUNK_ROWS` at a time.
  On a CPU the processes and the model take turns, each with every core: a thread augmenting beside the model's
  threads costs the model ~1.6 times its own CPU time (they stall each other on two cores), so turns are faster
  (``python -m bench build``, Intel Xeon, 2026-12-06 20:00: bf16 stage 0.91 of the best raw forward pass against
  0.85 with the thread, paired medians 0.86 against 0.80). On CUDA the next chunk is augmented while the model
  runs.
- **a reader thread** (:class:`_Reader`) beside the model, for a few references (a pool costs ~1 s to start),
  ``workers=1``, and models whose inputs need torch to make.

The model sees full batches of one fixed size (the last one padded), so an image's vectors do not depend on which
other images shared its batch: a build resumed after a kill writes the very vectors an uninterrupted one does.
References complete in catalog order: each one's fresh vectors are committed to the cache before it counts as
done (``build-image-embedded``), so a kill loses at most the chunks in flight (one on a CPU, two on CUDA).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from logoid.catalog.models import RefImage
from logoid.core.errors import ImageError, LogoidError
from logoid.core.faults import fault_point
from logoid.core.imageio import load_image
from logoid.index.cache import EmbeddingCache
from logoid.index.vectors import encode_ids

from .features import POOL_MIN_IMAGES, _start_pool, default_workers

#: Images per forward pass on a CPU: EfficientNet-Lite0's raw forward pass on the AMD EPYC (2 threads) ran at
#: 97 / 70 / 52 img/s in fp32 and 185 / 142 / 113 in bf16 at batches of 8 / 16 / 32 (bench/results/build,
#: 2026-12-06 00:03): bigger batches fall out of the cache. The stage's batches are always full (the last one
#: padded), so every batch runs the same kernels and an image's vector does not depend on its batch-mates.
CPU_BATCH = 8
#: Images per forward pass on a GPU.
GPU_BATCH = 128
_QUEUE = 6  # batches (and references) the reader may run ahead of the model
#: Variants the worker processes augment in one turn (rounded up to whole batches): ~130 ms of augmenting on two
#: cores, ~1 s of the model's, 19 MB of shared memory as 224-px pixels.
CHUNK_ROWS = 128


@dataclass
class _Job:
    """One reference on its way through the stage."""

    ref: RefImage
    keys: list[str]
    have: dict[str, np.ndarray]  # vectors found in the cache
    missing: list[int]  # variants to embed
    error: ImageError | None = None
    fresh: dict[int, np.ndarray] = field(default_factory=dict)  # variant -> vector, as the model returns them

    @property
    def complete(self) -> bool:
        return self.error is not None or len(self.fresh) == len(self.missing)


@dataclass
class Embedded:
    """What the stage returns: the references it could read, and their vectors and ids, in catalog order."""

    refs: list[RefImage] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    per_ref: int = 1  # rows of each reference (all its variants, or its one prototype)

    def keep(self, mask: Sequence[bool]) -> Embedded:
        """Only the references where ``mask`` is true: the rest's rows dropped, the kept ones moved up in place (no
        second copy of the catalog's vectors)."""
        per, j = self.per_ref, 0
        for i, k in enumerate(mask):
            if k:
                if i != j:  # rows only move up, never onto rows still to be read
                    self.vectors[j * per:(j + 1) * per] = self.vectors[i * per:(i + 1) * per]
                    self.ids[j * per:(j + 1) * per] = self.ids[i * per:(i + 1) * per]
                j += 1
        return Embedded([r for r, k in zip(self.refs, mask, strict=True) if k], self.vectors[:j * per],
                        self.ids[:j * per], per)


def batch_size_for(device: str, batch_size: int | None = None) -> int:
    """The stage's batch size: ``batch_size`` when given, else :data:`CPU_BATCH` or :data:`GPU_BATCH`."""
    if batch_size is not None:
        if batch_size < 1:
            from logoid.core.errors import ConfigError

            raise ConfigError(f"the embedding batch size must be at least 1, got {batch_size}")
        return batch_size
    return GPU_BATCH if device.startswith("cuda") else CPU_BATCH


class _Reader:
    """The thread that turns references into jobs and full input batches, ahead of the model."""

    def __init__(self, refs, embedder, cache_path: tuple[Path, str], aug_cfg, batch: int):
        self.refs, self.embedder, self.cache_path, self.aug_cfg, self.batch = refs, embedder, cache_path, aug_cfg, batch
        self.out: queue.Queue = queue.Queue(maxsize=_QUEUE)
        self.stop = threading.Event()
        self.side = embedder.input_side
        # Batches are reused in turn (fresh 10 MB arrays cost their page faults each time): the queue holds at most
        # _QUEUE of them, one is being filled and one is in the model.
        self.buffers = [np.empty((batch, self.side, self.side, 3), np.float32) for _ in range(_QUEUE + 2)]
        self.turn = 0
        self.thread = threading.Thread(target=self._run, name="logoid-embed-reader", daemon=True)

    def __enter__(self) -> _Reader:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()  # a reader waiting on a full queue gives up within 0.1 s
        self.thread.join()

    def items(self) -> Iterator[tuple]:
        """``("job", _Job)`` and ``("batch", inputs, [(job, variant), ...])`` in order; an error in the reader
        is raised here."""
        while True:
            item = self.out.get()
            if item[0] == "end":
                return
            if item[0] == "error":
                raise item[1]
            yield item

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        cache = None
        try:
            cache = EmbeddingCache(*self.cache_path)  # its own connection: SQLite's belong to their thread
            self._produce(cache)
        except BaseException as e:  # noqa: BLE001 - handed to the model's thread, which raises it
            self._put(("error", e))
        finally:
            if cache is not None:
                cache.close()

    def _produce(self, cache: EmbeddingCache) -> None:
        from logoid.augment import variant_arrays

        aug_hash = self.aug_cfg.config_hash()
        inputs = self._new_batch()
        rows: list[tuple[_Job, int]] = []  # (job, variant) of each filled row of ``inputs``
        for ref in self.refs:
            keys = [EmbeddingCache.key(ref.sha256, aug_hash, v) for v in range(self.aug_cfg.n_variants)]
            have = cache.get_many(keys)
            job = _Job(ref, keys, have, [v for v, k in enumerate(keys) if k not in have])
            arrays: list[np.ndarray] = []
            if job.missing:
                try:
                    arrays = variant_arrays(load_image(ref.path), ref.scheme, self.aug_cfg, ref.sha256, job.missing)
                except ImageError as e:
                    job.error = e
            if not self._put(("job", job)):
                return
            for v, arr in zip(job.missing if job.error is None else [], arrays, strict=True):
                self.embedder.image_input(arr, out=inputs[len(rows)])
                rows.append((job, v))
                if len(rows) == self.batch:
                    if not self._put(("batch", inputs, rows)):
                        return
                    inputs, rows = self._new_batch(), []
        if rows:
            inputs[len(rows):] = 0  # padding: the batch keeps its size (see the module's docstring)
            if not self._put(("batch", inputs, rows)):
                return
        self._put(("end",))

    def _new_batch(self) -> np.ndarray:
        self.turn = (self.turn + 1) % len(self.buffers)
        return self.buffers[self.turn]


_ATTACHED: dict[str, SharedMemory] = {}  # in a worker: the shared chunks it has opened, by name
#: Shared chunks are named ``logoid-emb-<pid namespace>-<pid>-<n>`` (``/dev/shm`` on Linux): a stage removes those
#: of a build in its own pid namespace that was killed before it could (multiprocessing's resource tracker usually
#: has, unless it was killed too). A container sharing ``/dev/shm`` (``--ipc=host``) sees other pids: the namespace
#: keeps it off their chunks.
SHM_PREFIX = "logoid-emb-"
_SHM_DIR = Path("/dev/shm")
_serial = itertools.count()


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # no /proc (macOS): pids are the machine's
        return "0"


def _chunk_name(n: int) -> str:
    return f"{SHM_PREFIX}{_pid_namespace()}-{os.getpid()}-{n}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_stale_chunks(shm_dir: Path = _SHM_DIR) -> list[str]:
    """Delete the shared chunks of embedding stages in this pid namespace whose process is gone; their names (one
    that cannot be deleted, another user's, is left)."""
    gone = []
    mine = f"{SHM_PREFIX}{_pid_namespace()}-"
    for p in shm_dir.glob(mine + "*") if shm_dir.is_dir() else []:
        pid = p.name[len(mine):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                p.unlink()
            except OSError:
                continue
            gone.append(p.name)
    return gone


def _augment(shm_name: str, shape: tuple, parts: list[tuple], aug_cfg, pp: dict) -> list[str | None]:
    """In a worker: the variants of each part ``(rows, path, scheme, sha256, variants)`` (one reference each) as input
    pixels into rows ``rows`` of the shared chunk; per part None, or why its image cannot be read."""
    from logoid.augment import variant_arrays
    from logoid.engine.embedder import input_bytes

    shm = _ATTACHED.get(shm_name)
    if shm is None:
        shm = _ATTACHED[shm_name] = SharedMemory(name=shm_name)
    chunk = np.ndarray(shape, np.uint8, buffer=shm.buf)
    why: list[str | None] = []
    for rows, path, scheme, sha256, variants in parts:
        try:
            arrays = variant_arrays(load_image(Path(path)), scheme, aug_cfg, sha256, variants)
        except ImageError as e:
            why.append(e.reason)
            continue
        for row, arr in zip(rows, arrays, strict=True):
            input_bytes(arr, pp, out=chunk[row])
        why.append(None)
    return why


@dataclass
class _Chunk:
    """One turn's rows: (job, variant) of each, and the tasks writing them."""

    shm: SharedMemory
    pixels: np.ndarray
    rows: list[tuple[_Job, int]] = field(default_factory=list)
    tasks: list[tuple[list[tuple[_Job, list[int]]], Future]] = field(default_factory=list)  # ([(job, its rows)], task)


class _Augmenters:
    """Worker processes that read and augment references into shared memory, a chunk of rows at a time, for the
    model in the calling thread. Yields what :class:`_Reader` yields, but a batch is a view of one buffer that the
    next batch reuses: run the model on it before asking for the next item."""

    def __init__(self, refs, embedder, cache: EmbeddingCache, aug_cfg, batch: int, workers: int, overlap: bool):
        self.refs, self.embedder, self.cache, self.aug_cfg, self.batch = refs, embedder, cache, aug_cfg, batch
        self.workers = workers
        self.pp = embedder.input_bytes_config()
        self.side = embedder.input_side
        self.rows = batch * max(1, math.ceil(CHUNK_ROWS / batch))
        self.ahead = 1 if overlap else 0  # chunks augmented while the model runs on another
        self.pool: ProcessPoolExecutor | None = None
        self.free: list[_Chunk] = []
        self.shms: list[SharedMemory] = []
        self.inputs = np.empty((self.rows, self.side, self.side, 3), np.float32)  # one chunk's, as the model reads

    def __enter__(self) -> _Augmenters:
        try:  # every chunk now, so that no shared memory (OSError) shows here, where the reader thread can step in
            self.free.extend(self._chunk() for _ in range(self.ahead + 1))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        for shm in self.shms:
            shm.close()
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()

    def _chunk(self) -> _Chunk:
        if self.free:
            c = self.free.pop()
            c.rows, c.tasks = [], []
            return c
        shape = (self.rows, self.side, self.side, 3)
        if not self.shms:
            remove_stale_chunks()
        size = int(np.prod(shape))
        shm = SharedMemory(_chunk_name(next(_serial)), create=True, size=size)
        self.shms.append(shm)
        fd = getattr(shm, "_fd", -1)
        if hasattr(os, "posix_fallocate") and fd >= 0:
            # tmpfs grants the size lazily: a /dev/shm too small would kill the first process to write past it
            # (SIGBUS); reserving it now makes that an OSError here.
            os.posix_fallocate(fd, 0, size)
        return _Chunk(shm, np.ndarray(shape, np.uint8, buffer=shm.buf))

    def _submit(self, chunk: _Chunk) -> None:
        """The chunk's rows as one task per process, each a run of consecutive rows (their lengths differ by one at
        most): a reference is decoded once in a task, so once in the chunk unless it straddles two runs. (Tasks of
        half a reference each, picked up as processes came free, decoded every image twice: ~7 % more augmenting.)"""
        if self.pool is None:
            self.pool = _start_pool(self.workers)
        n, w = len(chunk.rows), self.workers
        for start, end in zip([n * k // w for k in range(w)], [n * k // w for k in range(1, w + 1)], strict=True):
            spans: list[tuple[_Job, list[int]]] = []  # (job, its rows in this run), in row order
            for row in range(start, end):
                job = chunk.rows[row][0]
                if not spans or spans[-1][0] is not job:
                    spans.append((job, []))
                spans[-1][1].append(row)
            if not spans:
                continue
            parts = [(rows, str(job.ref.path), job.ref.scheme, job.ref.sha256, [chunk.rows[r][1] for r in rows])
                     for job, rows in spans]
            try:  # on CUDA a process may have died while the model ran the chunk before
                fut = self.pool.submit(_augment, chunk.shm.name, chunk.pixels.shape, parts, self.aug_cfg, self.pp)
            except BrokenExecutor as e:
                raise _died() from e
            chunk.tasks.append((spans, fut))

    def items(self) -> Iterator[tuple]:
        aug_hash = self.aug_cfg.config_hash()
        todo = iter(self.refs)
        job: _Job | None = None
        left: list[int] = []  # variants of ``job`` not yet in a chunk
        flight: deque[_Chunk] = deque()
        while True:
            chunk = self._chunk()
            while len(chunk.rows) < self.rows:
                if not left or (job is not None and job.error is not None):
                    ref = next(todo, None)
                    if ref is None:
                        break
                    keys = [EmbeddingCache.key(ref.sha256, aug_hash, v) for v in range(self.aug_cfg.n_variants)]
                    have = self.cache.get_many(keys)
                    job = _Job(ref, keys, have, [v for v, k in enumerate(keys) if k not in have])
                    left = list(job.missing)
                    yield ("job", job)
                    continue
                take = left[:self.rows - len(chunk.rows)]
                left = left[len(take):]
                assert job is not None
                chunk.rows.extend((job, v) for v in take)
            if chunk.rows:
                self._submit(chunk)
                flight.append(chunk)
            else:
                self.free.append(chunk)
            if not flight:
                return
            if len(flight) > self.ahead or not chunk.rows:
                yield from self._run(flight.popleft())

    def _run(self, chunk: _Chunk) -> Iterator[tuple]:
        """The chunk's rows as full model batches, once its tasks are done; the rows of an unreadable image are
        run as black pixels (its vectors are dropped), the padding as zeros."""
        from logoid.engine.embedder import bytes_to_input

        for spans, fut in chunk.tasks:
            try:
                reasons = fut.result()
            except BrokenExecutor as e:
                raise _died() from e
            for (job, rows), why in zip(spans, reasons, strict=True):
                if why is not None:
                    if job.error is None:
                        job.error = ImageError(job.ref.path, why)
                    chunk.pixels[rows] = 0
        n = len(chunk.rows)
        # One lookup for the chunk, with OpenCV's threads: the model waits for it (~5 ms for 128 rows, two cores).
        bytes_to_input(chunk.pixels[:n].reshape(-1, self.side, 3), self.pp, self.inputs[:n].reshape(-1, self.side, 3))
        for start in range(0, n, self.batch):
            part = chunk.rows[start:start + self.batch]
            inputs = self.inputs[start:start + self.batch]  # whole: a chunk is whole batches
            inputs[len(part):] = 0  # padding: the batch keeps its size (see the module's docstring)
            yield ("batch", inputs, part)
        self.free.append(chunk)


def _died() -> LogoidError:
    return LogoidError("a process augmenting the references died (out of memory?); every reference embedded before "
                       "it is in the cache",
                       "run build-index again to go on; --workers 1 augments in the build's own process")


def _overlap(device: str) -> bool:
    """Whether the processes augment the next chunk while the model runs: on CUDA (the CPU is free); elsewhere they
    and the model take turns (see the module)."""
    return device.startswith("cuda")


def _use_workers(refs: Sequence, embedder, workers: int | None) -> int:
    """Processes to augment ``refs`` in (0: the reader thread)."""
    n = default_workers() if workers is None else workers
    bytes_config = getattr(embedder, "input_bytes_config", None)
    if n <= 1 or len(refs) < POOL_MIN_IMAGES or bytes_config is None or bytes_config() is None:
        return 0
    return n


def embed_stage(refs: Sequence, embedder, cache_dir: Path, aug_cfg, report, *, precision: str = "fp32",
                batch_size: int | None = None, prototypes: bool = False, bar=None,
                on_error: Callable[[RefImage, ImageError], None] | None = None, workers: int | None = None
                ) -> Embedded:
    """Vectors and ids of every readable reference of ``refs`` (cache first, the model for the rest).

    ``precision`` is resolved ("fp32", "bf16", "fp16"); the cache is the one of ``embedder.vectors_id(precision)``.
    ``workers``: processes that augment (default: the cores; 1: a thread beside the model; see the module).
    ``report`` counts ``embedded`` and ``cached``; ``on_error(ref, ImageError)`` is told of an unreadable image (it
    drops out); ``bar.update`` is told each reference's variants."""
    n_var = aug_cfg.n_variants
    per = 1 if prototypes else n_var
    vectors = np.empty((len(refs) * per, embedder.dim), np.float32)  # pages are touched only as rows are written
    ids = np.empty(len(refs) * per, np.int64)
    out = Embedded(per_ref=per)
    cache_path = (Path(cache_dir), embedder.vectors_id(precision))
    cache = EmbeddingCache(*cache_path)
    pending: deque[_Job] = deque()

    def finish(job: _Job) -> None:
        report.cached += len(job.have)
        if job.error is not None:
            if on_error is not None:
                on_error(job.ref, job.error)
        else:
            fresh = {job.keys[v]: vec for v, vec in job.fresh.items()}
            cache.put_many(fresh)
            report.embedded += len(fresh)
            mat = np.stack([job.have[k] if k in job.have else fresh[k] for k in job.keys]).astype(np.float32)
            row = len(out.refs) * per
            if prototypes:
                proto = mat.mean(axis=0)
                vectors[row] = proto / (np.linalg.norm(proto) + 1e-12)
                ids[row] = encode_ids(np.array([job.ref.id]), np.array([0]))[0]
            else:
                vectors[row:row + per] = mat
                ids[row:row + per] = encode_ids(np.full(n_var, job.ref.id), np.arange(n_var))
            out.refs.append(job.ref)
        if bar is not None:
            bar.update(n_var)
        fault_point("build-image-embedded")

    batch = batch_size_for(embedder.device, batch_size)
    procs = _use_workers(refs, embedder, workers)
    overlap = _overlap(embedder.device)
    import cv2

    threads = cv2.getNumThreads()
    if not procs:
        cv2.setNumThreads(1)  # the model has the cores; the one augmenting thread beside it needs no more
    try:
        with contextlib.ExitStack() as stack:
            reader: _Augmenters | _Reader | None = None
            if procs:
                try:
                    reader = stack.enter_context(_Augmenters(refs, embedder, cache, aug_cfg, batch, procs, overlap))
                except OSError:  # no shared memory here (no /dev/shm, or none left): the reader thread does it
                    cv2.setNumThreads(1)
            if reader is None:
                reader = stack.enter_context(_Reader(refs, embedder, cache_path, aug_cfg, batch))
            for item in reader.items():
                if item[0] == "job":
                    pending.append(item[1])
                else:
                    _, inputs, rows = item
                    vecs = embedder.embed_inputs(inputs, precision)
                    for (job, v), vec in zip(rows, vecs, strict=False):
                        if job.error is None:
                            job.fresh[v] = vec
                while pending and pending[0].complete:
                    finish(pending.popleft())
            if pending:  # every reference was read and every batch run: none may be left unfinished
                raise RuntimeError(f"the embedding stage left {len(pending)} reference(s) unfinished")
    finally:
        cv2.setNumThreads(threads)
        cache.close()
    k = len(out.refs) * per
    out.vectors, out.ids = vectors[:k], ids[:k]
    return out


__all__ = ["CHUNK_ROWS", "CPU_BATCH", "GPU_BATCH", "Embedded", "batch_size_for", "embed_stage"]
