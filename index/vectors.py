"""The global-embedding index: FAISS inner product on L2-normalised vectors (cosine).

Vector ids encode their origin: ``image_id * VARIANT_SLOTS + variant``, so an image's vectors are one
id range and removing a band is a range removal, not a rebuild.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logoid.errors import ConfigError

VARIANT_SLOTS = 1024


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
    nprobe: int = 32  # IVF lists visited per query (recall vs latency)
    train_sample: int = 200_000  # vectors sampled to train IVF/PQ structures
    seed: int = 0  # for the training sample

    def choose_factory(self, n: int, dim: int) -> str:
        if self.factory:
            return self.factory
        if n < self.exact_below:
            return "Flat"
        nlist = int(2 ** round(math.log2(max(1024, 4 * math.sqrt(n)))))
        return f"IVF{nlist}_HNSW32,Flat"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class VectorIndex:
    """A FAISS index of (id → vector) with cosine similarity, add/remove without rebuild."""

    dim: int
    config: IndexConfig = field(default_factory=IndexConfig)
    _index: Any = None

    def __post_init__(self) -> None:
        if self._index is None:
            import faiss

            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def faiss_index(self):
        return self._index

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None) -> VectorIndex:
        """Create the index structure chosen by ``config`` for this many vectors, train it, add them."""
        import faiss

        config = config or IndexConfig()
        vectors = _as_f32(vectors)
        n, dim = vectors.shape if vectors.ndim == 2 else (0, vectors.shape[-1])
        spec = config.choose_factory(n, dim)
        inner = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        if not inner.is_trained:
            rng = np.random.default_rng(config.seed)
            sample = vectors[rng.choice(n, size=min(n, config.train_sample), replace=False)]
            inner.train(sample)
        idx = cls(dim=dim, config=config, _index=faiss.IndexIDMap2(inner))
        idx._set_search_params()
        idx.add(vectors, ids)
        return idx

    def _set_search_params(self) -> None:
        import faiss

        inner = faiss.downcast_index(self._index.index)
        if hasattr(inner, "nprobe"):
            inner.nprobe = self.config.nprobe

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = _as_f32(vectors)
        if vectors.shape[0] == 0:
            return
        if vectors.shape[1] != self.dim:
            raise ConfigError(f"vectors have dim {vectors.shape[1]}, index has {self.dim}")
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove_images(self, image_ids) -> int:
        """Remove every variant vector of these reference images; returns how many vectors went."""
        import faiss

        removed = 0
        for image_id in image_ids:
            lo = int(image_id) * VARIANT_SLOTS
            removed += self._index.remove_ids(faiss.IDSelectorRange(lo, lo + VARIANT_SLOTS))
        return int(removed)

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and ids of the ``k`` nearest vectors; missing slots have id -1."""
        queries = _as_f32(queries)
        if queries.ndim == 1:
            queries = queries[None]
        k = max(1, min(k, max(1, self.ntotal)))
        return self._index.search(queries, k)

    def reconstruct_image(self, image_id: int) -> np.ndarray:
        """The stored vectors of one image (for prototypes and leave-one-out calibration)."""
        ids = self.ids()
        lo = int(image_id) * VARIANT_SLOTS
        sel = ids[(ids >= lo) & (ids < lo + VARIANT_SLOTS)]
        return np.stack([self._index.reconstruct(int(i)) for i in sel]) if len(sel) else np.zeros((0, self.dim), "f4")

    def save(self, path: Path) -> None:
        """Write to ``path`` (callers write a fresh generation file, then commit the sidecar)."""
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, config: IndexConfig | None = None, mmap: bool = False) -> VectorIndex:
        import faiss

        flags = faiss.IO_FLAG_MMAP if mmap else 0
        index = faiss.read_index(str(path), flags)
        obj = cls(dim=index.d, config=config or IndexConfig(), _index=index)
        obj._set_search_params()
        return obj


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))
