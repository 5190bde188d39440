"""The global-embedding index: FAISS inner product on L2-normalised vectors (cosine).

Vector ids encode their origin: ``image_id * VARIANT_SLOTS + variant``, so an image's vectors are one
id range and removing a band is a range removal, not a rebuild.

The structure is chosen by size and memory budget (``IndexConfig.choose_factory``):

- below ``exact_below`` vectors: exact ``Flat`` inside an ``IndexIDMap2``;
- above: ``IVF{nlist}_HNSW32,Flat`` (an HNSW graph finds the ``nprobe`` nearest lists, so assignment
  stays fast at thousands of lists);
- when float32 vectors exceed ``memory_budget_mb``: ``IVF..,PQ{m}`` re-ranked by exact vectors read from
  a memory-mapped float16 file (BENCHMARKS.md#scale-faiss at 1M: recall@1 0.997 in 96 MB of process RAM, where
  ``IVF..,SQ8`` gets 0.959 in 509 MB; SQ8 stays available through ``factory``).

IVF indexes store *row numbers* as FAISS ids, with a row → id table beside them: FAISS's IndexIDMap
renumbers positions on removal, which IVF lists do not follow (remove on IDMap2(IVF) corrupts the
index), while rows never move. A removed row is dropped from the lists and its table entry set to -1.
The float16 copy of every row (``<file>.f16.npy``, on disk, memory-mapped on load) serves re-ranking,
``reconstruct_image`` and ``vectors_and_ids``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logoid.core.errors import ConfigError

VARIANT_SLOTS = 1024
_ROWS_SUFFIX = ".rows.npy"  # files next to the FAISS file; the store keeps files that start with its name
_F16_SUFFIX = ".f16.npy"


def encode_ids(image_ids: np.ndarray, variants: np.ndarray) -> np.ndarray:
    return np.asarray(image_ids, dtype=np.int64) * VARIANT_SLOTS + np.asarray(variants, dtype=np.int64)


def decode_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return ids // VARIANT_SLOTS, ids % VARIANT_SLOTS


@dataclass
class IndexConfig:
    """How the global index is structured. ``factory`` overrides the size-based choice."""

    factory: str | None = None  # a FAISS index_factory string (e.g. "IVF4096,Flat"); None = choose by size
    exact_below: int = 1_000_000  # vectors; below this an exact flat index is both fast enough and simplest
    memory_budget_mb: float | None = 1536.0  # RAM for the loaded index; over it: IVF-PQ + re-ranking (None = no limit)
    nlist: int | None = None  # IVF lists; None = 2·sqrt(n) rounded to a power of two (256..65536)
    nprobe: int = 32  # IVF lists visited per query (recall vs latency); applied at build and load
    ef_search: int = 64  # HNSW efSearch: the IVF coarse quantiser's graph, or a pure HNSW index
    refine: int | None = None  # re-rank k·refine ANN candidates by exact vectors; None = 8 for PQ codes, else 0
    mmap: bool = False  # load memory-mapped: IVF lists and the float16 copy stay on disk, pages come on demand
    train_sample: int = 100_000  # vectors sampled to train IVF/PQ structures
    kmeans_iters: int = 10  # k-means iterations for the IVF lists (FAISS's 25 costs 2.5x the time for little)
    seed: int = 0  # for the training sample

    def choose_factory(self, n: int, dim: int) -> str:
        """The FAISS factory string for ``n`` vectors of ``dim``: by size, then by memory budget."""
        if self.factory:
            return self.factory
        budget = self.memory_budget_mb * 2**20 if self.memory_budget_mb else math.inf
        if n < self.exact_below and (n * dim * 4 <= budget or n < 20_000):  # too few to train IVF lists anyway
            return "Flat"
        ivf = f"IVF{self.nlist or auto_nlist(n)}_HNSW32"
        if n * dim * 4 * 1.05 <= budget:
            return f"{ivf},Flat"
        # 64 bytes are enough when candidates are re-ranked by exact vectors (``refine``); fewer when the budget says
        m = max(8, min(64, dim // 2, _largest_pq(budget / max(n, 1) * 0.9, dim)))
        return f"{ivf},PQ{m}"  # OPQ{m},... (via ``factory``) trains far slower on few cores

    def refine_for(self, spec: str) -> int:
        if self.refine is not None:
            return self.refine
        return 8 if "PQ" in spec else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def auto_nlist(n: int) -> int:
    """About 2·sqrt(n) IVF lists, a power of two (4,096 at 3.6M: ~900 vectors a list, k-means in minutes)."""
    return int(min(65536, max(256, 2 ** round(math.log2(2 * math.sqrt(max(n, 1)))))))


def _largest_pq(bytes_per_vector: float, dim: int) -> int:
    """The most PQ bytes (a divisor of ``dim``, 8-bit codes) that fit ``bytes_per_vector``."""
    fits = [m for m in (8, 16, 32, 48, 64, 96, 128, 256) if dim % m == 0 and m <= bytes_per_vector]
    return fits[-1] if fits else 8


@dataclass
class VectorIndex:
    """A FAISS index of (id → vector) with cosine similarity, add/remove without rebuild."""

    dim: int
    config: IndexConfig = field(default_factory=IndexConfig)
    _index: Any = None
    _rows: Any = None  # np.ndarray, IVF only: row → external id (-1 = removed)
    _f16: list = field(default_factory=list)  # IVF only: float16 copies of the rows, in chunks (first may be mmapped)
    _path: Path | None = None  # the file a memory-mapped index came from (re-read in RAM before a change)
    _refine: int = 0

    def __post_init__(self) -> None:
        if self._index is None:
            import faiss

            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def faiss_index(self):
        return self._index

    @property
    def is_ivf(self) -> bool:
        return self._rows is not None

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, n_expected: int, train: np.ndarray | None = None,
               config: IndexConfig | None = None) -> VectorIndex:
        """An empty index shaped for ``n_expected`` vectors, trained on ``train`` when it needs training."""
        import faiss

        config = config or IndexConfig()
        spec = config.choose_factory(n_expected, dim)
        try:
            inner = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"bad FAISS factory string {spec!r}: {str(e).splitlines()[-1][:200]}") from e
        if not inner.is_trained:
            if train is None or len(train) == 0:
                raise ConfigError(f"index {spec!r} needs training vectors")
            ivf = faiss.try_extract_index_ivf(inner)
            if ivf is not None:
                ivf.cp.niter = config.kmeans_iters
            for part in (ivf, faiss.downcast_index(inner)):  # polysemous codes (Hamming pre-filter) go unused
                if part is not None and hasattr(part, "do_polysemous_training"):
                    part.do_polysemous_training = False  # and their training is 10x the PQ's own
            if isinstance(inner, faiss.IndexPreTransform):  # OPQ's 50 default iterations dominate training
                chain: Any = inner.chain  # a SWIG vector
                for i in range(chain.size()):
                    vt = faiss.downcast_VectorTransform(chain.at(i))
                    if isinstance(vt, faiss.OPQMatrix):
                        vt.niter = 2 * config.kmeans_iters
            inner.train(_as_f32(train))
        if faiss.try_extract_index_ivf(inner) is not None:
            obj = cls(dim=dim, config=config, _index=inner, _rows=np.zeros(0, np.int64),
                      _refine=config.refine_for(spec))
        else:
            obj = cls(dim=dim, config=config, _index=faiss.IndexIDMap2(inner))
        obj._set_search_params()
        return obj

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None) -> VectorIndex:
        """Create the index structure chosen by ``config`` for this many vectors, train it, add them."""
        config = config or IndexConfig()
        vectors = _as_f32(vectors)
        n, dim = vectors.shape if vectors.ndim == 2 else (0, vectors.shape[-1])
        rng = np.random.default_rng(config.seed)
        sample = vectors[np.sort(rng.choice(n, size=min(n, config.train_sample), replace=False))] if n else None
        idx = cls.create(dim, n, sample, config)
        idx.add(vectors, ids)
        return idx

    def _set_search_params(self) -> None:
        import faiss

        inner = self._index if self.is_ivf else faiss.downcast_index(self._index.index)
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            ivf.nprobe = self.config.nprobe
            quantizer = faiss.downcast_index(ivf.quantizer)
            if hasattr(quantizer, "hnsw"):
                quantizer.hnsw.efSearch = max(self.config.ef_search, self.config.nprobe)
        elif hasattr(inner, "hnsw"):
            inner.hnsw.efSearch = self.config.ef_search

    # ---- changing ------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = _as_f32(vectors)
        if vectors.shape[0] == 0:
            return
        if vectors.shape[1] != self.dim:
            raise ConfigError(f"vectors have dim {vectors.shape[1]}, index has {self.dim}")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._writable()
        if not self.is_ivf:
            self._index.add_with_ids(vectors, ids)
            return
        rows = np.arange(len(self._rows), len(self._rows) + len(ids), dtype=np.int64)
        self._index.add_with_ids(vectors, rows)
        self._rows = np.concatenate([self._rows, ids])
        self._f16.append(vectors.astype(np.float16))

    def remove_images(self, image_ids) -> int:
        """Remove every variant vector of these reference images; returns how many vectors went."""
        import faiss

        self._writable()
        removed = 0
        for image_id in image_ids:
            lo = int(image_id) * VARIANT_SLOTS
            if not self.is_ivf:
                try:
                    removed += self._index.remove_ids(faiss.IDSelectorRange(lo, lo + VARIANT_SLOTS))
                except RuntimeError as e:
                    raise ConfigError(f"this index type cannot remove vectors ({str(e).splitlines()[-1][:120]})",
                                      "rebuild with `logoid build-index`, or use a Flat or IVF factory") from e
                continue
            rows = np.flatnonzero((self._rows >= lo) & (self._rows < lo + VARIANT_SLOTS)).astype(np.int64)
            if len(rows):
                removed += self._index.remove_ids(faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows)))
                self._rows[rows] = -1
        return int(removed)

    def _writable(self) -> None:
        """A memory-mapped FAISS index is read-only: re-read it into RAM before the first change."""
        if self._path is not None:
            import faiss

            self._index = faiss.read_index(str(self._path))
            self._rows = np.array(self._rows) if self._rows is not None else None
            self._path = None
            self._set_search_params()

    # ---- reading -------------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        import faiss

        if self.is_ivf:
            return self._rows[self._rows >= 0].copy()
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and ids of the ``k`` nearest vectors; missing slots have id -1."""
        queries = _as_f32(queries)
        if queries.ndim == 1:
            queries = queries[None]
        k = max(1, min(k, max(1, self.ntotal)))
        if not self.is_ivf:
            return self._index.search(queries, k)
        if self.ntotal == 0:  # every image removed: FAISS asserts on k=0 for PQ with re-ranking
            return (np.full((len(queries), k), np.finfo(np.float32).min, np.float32),  # FAISS's empty-slot value
                    np.full((len(queries), k), -1, np.int64))
        kk = min(self.ntotal, k * self._refine) if self._refine > 1 else k
        sims, rows = self._index.search(queries, kk)
        if kk > k:
            sims = self._exact_sims(queries, rows)
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            sims, rows = np.take_along_axis(sims, order, 1), np.take_along_axis(rows, order, 1)
        ids = np.where(rows >= 0, self._rows[np.maximum(rows, 0)], -1)
        return sims.astype(np.float32), ids

    def _exact_sims(self, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
        valid = rows >= 0
        vecs = self._gather(np.where(valid, rows, 0).ravel()).reshape(*rows.shape, self.dim)
        sims = np.einsum("qkd,qd->qk", vecs.astype(np.float32), queries)
        return np.where(valid, sims, -np.inf)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """float16 vectors of these rows, from whichever chunk holds each."""
        if len(self._f16) == 1:
            return np.asarray(self._f16[0][rows])
        starts = np.cumsum([0] + [len(c) for c in self._f16])
        which = np.searchsorted(starts, rows, side="right") - 1
        out = np.empty((len(rows), self.dim), np.float16)
        for c in np.unique(which):
            sel = which == c
            out[sel] = self._f16[c][rows[sel] - starts[c]]
        return out

    def reconstruct_image(self, image_id: int) -> np.ndarray:
        """The stored vectors of one image (for prototypes and leave-one-out calibration)."""
        lo = int(image_id) * VARIANT_SLOTS
        if self.is_ivf:
            rows = np.flatnonzero((self._rows >= lo) & (self._rows < lo + VARIANT_SLOTS))
            return self._gather(rows).astype(np.float32) if len(rows) else np.zeros((0, self.dim), "f4")
        ids = self.ids()
        sel = ids[(ids >= lo) & (ids < lo + VARIANT_SLOTS)]
        return np.stack([self._index.reconstruct(int(i)) for i in sel]) if len(sel) else np.zeros((0, self.dim), "f4")

    def vectors_and_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored vector (float32; float16-exact for IVF) with its id, for gallery calibration."""
        if self.is_ivf:
            rows = np.flatnonzero(self._rows >= 0)
            return self._gather(rows).astype(np.float32), self._rows[rows].copy()
        inner = self._index.index
        return np.asarray(inner.reconstruct_n(0, self.ntotal), np.float32), self.ids()

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write to ``path`` (callers write a fresh generation file, then commit the sidecar)."""
        import faiss

        self._writable()  # an mmapped index would be written as a reference to the old file
        path = Path(path)
        faiss.write_index(self._index, str(path))
        if not self.is_ivf:
            return
        np.save(_side(path, _ROWS_SUFFIX), self._rows)
        target = _side(path, _F16_SUFFIX)
        tmp = target.with_name(target.name + ".tmp")  # the old copy may be the one being read (mmapped)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(self._rows), self.dim))
        at = 0
        for chunk in self._f16:  # streamed: the float16 copy may be larger than RAM
            for s in range(0, len(chunk), 65536):
                part = np.asarray(chunk[s:s + 65536])
                out[at:at + len(part)] = part
                at += len(part)
        out.flush()
        del out
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: Path, config: IndexConfig | None = None, mmap: bool | None = None) -> VectorIndex:
        """Read an index; ``mmap`` (default ``config.mmap``) leaves IVF lists and flat codes on disk."""
        import faiss

        config = config or IndexConfig()
        mmap = config.mmap if mmap is None else mmap
        path = Path(path)
        rows_file = _side(path, _ROWS_SUFFIX)
        # IVF lists map through IO_FLAG_MMAP, flat codes (Flat, SQ, PQ) through IO_FLAG_MMAP_IFC; not both at once
        flags = (faiss.IO_FLAG_MMAP if rows_file.exists() else faiss.IO_FLAG_MMAP_IFC) if mmap else 0
        index = faiss.read_index(str(path), flags)
        if rows_file.exists():
            f16 = np.load(_side(path, _F16_SUFFIX), mmap_mode="r")  # random reads only: never worth RAM
            _no_readahead(f16)
            spec = config.factory or ("PQ" if "PQ" in type(faiss.extract_index_ivf(index)).__name__ else "")
            obj = cls(dim=index.d, config=config, _index=index, _rows=np.load(rows_file), _f16=[f16],
                      _refine=config.refine_for(spec))
        else:
            obj = cls(dim=index.d, config=config, _index=index)
        if mmap:
            obj._path = path
        obj._set_search_params()
        return obj


def _no_readahead(arr: np.ndarray) -> None:
    """Re-ranking reads a few scattered rows: kernel read-ahead would pull 128 KB around each into RAM."""
    import mmap

    m = getattr(arr, "_mmap", None)
    if m is not None and hasattr(mmap, "MADV_RANDOM"):
        m.madvise(mmap.MADV_RANDOM)


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))
