"""The embedding stage of a build: every reference's augmented variants through the image tower.

A reader thread looks each reference up in the embedding cache, reads and augments what is missing and lays the
variants out as model inputs in batches that span references; the calling thread runs the model on them. The
model sees full batches of one fixed size (the last one padded), so an image's vectors do not depend on which
other images shared its batch: a build resumed after a kill writes the very vectors an uninterrupted one does.
References complete in catalog order: each one's fresh vectors are committed to the cache before it counts as
done (``build-image-embedded``), so a kill loses at most the batch in flight.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from logoid.catalog.models import RefImage
from logoid.core.errors import ImageError
from logoid.core.faults import fault_point
from logoid.core.imageio import load_image
from logoid.index.cache import EmbeddingCache
from logoid.index.vectors import encode_ids

#: Images per forward pass on a CPU: EfficientNet-Lite0's raw forward pass on the AMD EPYC (2 threads) ran at
#: 97 / 70 / 52 img/s in fp32 and 185 / 142 / 113 in bf16 at batches of 8 / 16 / 32 (bench/results/build,
#: 2026-12-06 00:03): bigger batches fall out of the cache. The stage's batches are always full (the last one
#: padded), so every batch runs the same kernels and an image's vector does not depend on its batch-mates.
CPU_BATCH = 8
#: Images per forward pass on a GPU.
GPU_BATCH = 128
_QUEUE = 6  # batches (and references) the reader may run ahead of the model


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


def embed_stage(refs: Sequence, embedder, cache_dir: Path, aug_cfg, report, *, precision: str = "fp32",
                batch_size: int | None = None, prototypes: bool = False, bar=None,
                on_error: Callable[[RefImage, ImageError], None] | None = None) -> Embedded:
    """Vectors and ids of every readable reference of ``refs`` (cache first, the model for the rest).

    ``precision`` is resolved ("fp32", "bf16", "fp16"); the cache is the one of ``embedder.vectors_id(precision)``.
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
    try:
        with _Reader(refs, embedder, cache_path, aug_cfg, batch) as reader:
            for item in reader.items():
                if item[0] == "job":
                    pending.append(item[1])
                else:
                    _, inputs, rows = item
                    vecs = embedder.embed_inputs(inputs, precision)
                    for (job, v), vec in zip(rows, vecs, strict=False):
                        job.fresh[v] = vec
                while pending and pending[0].complete:
                    finish(pending.popleft())
    finally:
        cache.close()
    k = len(out.refs) * per
    out.vectors, out.ids = vectors[:k], ids[:k]
    return out


__all__ = ["CPU_BATCH", "GPU_BATCH", "Embedded", "batch_size_for", "embed_stage"]
