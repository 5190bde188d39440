"""How the descriptor index is structured: :class:`DescriptorConfig` (the structure chosen by size) and the
re-ranking codes, every descriptor again as 8-bit scalar-quantised bytes (128 B).

Fast-scan PQ codes (32 B) find candidates quickly but rank them roughly (recall@1 ~0.5 against exact);
the ``k·refine`` candidates of each query are re-ranked by distances to these finer copies, which are
nearly exact. Codes are kept per (image, variant), in the same keypoint order as the coordinates, so the
FAISS id of a hit (image, variant, keypoint) is also where its codes lie. They live in fixed-size chunks
(one (image, variant) never straddles two), so a hit's codes are gathered without a Python loop per image.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from logoid.core.errors import ConfigError

CHUNK_ROWS = 1 << 20  # rows per chunk; one (image, variant) holds fewer keypoints than this (KP_BITS)


@dataclass
class DescriptorConfig:
    """How the descriptor index is structured."""

    ivf: bool | None = None  # True: IVF; False: exact flat; None: choose by size at build()
    # Below this many descriptors exact search, above it IVF. Exact search grows with the catalog: a photo of
    # 1,420 descriptors took 3.2 s against 457k on one core where IVF4096 (nprobe 16) took 0.11 s
    # (BENCHMARKS.md#local-index), so ~0.35 s at 50k. On threadless-dev (367k) IVF gave the same top-1 as exact.
    exact_below: int = 50_000
    nlist: int = 0  # IVF lists; 0 = about 4·sqrt(n), a power of two (2,048 at 1k references, 8,192 at 10k)
    nprobe: int = 16  # IVF lists visited per query (recall vs latency)
    # How a descriptor finds its nprobe lists: "hnsw" (a graph over the centroids: ~constant time in nlist) or
    # "flat" (every centroid compared: 1,400 descriptors x 8,192 lists cost ~0.06 s a photo on one core).
    quantizer: str = "hnsw"
    # HNSW quantiser: efSearch (raised to nprobe). A photo's ~4,000 descriptors each walk the graph: at 32 that was
    # 60 % of the FAISS time. 16 scored the same top-1 on threadless-dev at 3,276 and 10k references (AUROC +0.002 /
    # -0.005, open-set +0.005 / +0.005) for 0.07 s a photo less on one thread at 10k (BENCHMARKS.md#local-e2e, run
    # of 2026-12-04 18:37). Indexes saved with 32 keep it.
    ef_search: int = 16
    # Codes in the IVF lists: "PQ64x4fs" (32 B: 4-bit PQ, SIMD fast-scan), "PQ{m}" (m B, 8-bit PQ), "SQ8"
    # (128 B), "Flat" (float32, 512 B). Fast-scan codes are not residual: one lookup table per descriptor
    # instead of one per (descriptor, list) was 3x faster at the same recall after re-ranking.
    codes: str = "PQ64x4fs"
    refine: int = 4  # PQ codes: re-rank k·refine candidates by SQ8 copies (128 B/descriptor); 0 = no re-ranking
    pq_m: int = 0  # legacy (indexes saved before ``codes``): m > 0 meant codes "PQ{m}", 0 meant "Flat"
    train_sample: int = 200_000  # descriptors sampled to train the IVF coarse quantiser and the codes (at least)
    # ... and at least this many per IVF list (FAISS's k-means warns below 39: a 16,384-list index of 8.6M
    # descriptors was trained on 12 a list before this field)
    train_per_list: int = 40
    seed: int = 0  # for the training sample

    def __post_init__(self) -> None:
        if self.quantizer not in ("hnsw", "flat"):
            raise ConfigError(f"quantizer must be 'hnsw' or 'flat', got {self.quantizer!r}")
        if self.codes not in ("Flat", "SQ8") and not re.fullmatch(r"PQ\d+(x4fs)?", self.codes):
            raise ConfigError(f"codes must be Flat, SQ8, PQ<m> or PQ<m>x4fs, got {self.codes!r}")
        m = re.fullmatch(r"PQ(\d+)(x4fs)?", self.codes)
        if m and not (0 < int(m.group(1)) <= 128 and 128 % int(m.group(1)) == 0):
            raise ConfigError(f"PQ codes need a sub-vector count dividing 128 (e.g. PQ32, PQ64x4fs), got {self.codes!r}")
        if self.refine < 0 or self.nprobe < 1:
            raise ConfigError("refine must be >= 0 and nprobe >= 1")

    def auto_nlist(self, n: int) -> int:
        return self.nlist or int(2 ** round(math.log2(max(16, 4 * math.sqrt(max(n, 1))))))

    def train_size(self, n: int) -> int:
        """Descriptors sampled to train an IVF index that will hold ``n`` (all of them when fewer)."""
        return min(n, max(self.train_sample, self.train_per_list * self.auto_nlist(n)))

    def refines(self) -> bool:
        """Whether hits are re-ranked by SQ8 copies (PQ codes with refine > 0)."""
        return bool(self.ivf) and self.codes.startswith("PQ") and self.refine > 0

    def choose(self, n: int) -> str:
        """The structure for ``n`` descriptors, e.g. ``Flat`` or ``IVF2048_HNSW32,PQ64x4fs,Refine(SQ8)``."""
        use_ivf = self.ivf if self.ivf is not None else n >= self.exact_below
        if not use_ivf:
            return "Flat"
        q = "_HNSW32" if self.quantizer == "hnsw" else ""
        refine = ",Refine(SQ8)" if self.codes.startswith("PQ") and self.refine > 0 else ""
        return f"IVF{self.auto_nlist(n)}{q},{self.codes}{refine}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DescriptorConfig:
        d = dict(d)
        if "codes" not in d and d:  # saved before `codes` existed: flat quantiser, PQ{pq_m} or Flat, no re-ranking
            d.update(codes=f"PQ{d['pq_m']}" if d.get("pq_m") else "Flat", quantizer="flat", refine=0)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def sample_rows(parts: list[np.ndarray], size: int, seed: int) -> np.ndarray:
    """About ``size`` rows drawn evenly from ``parts`` (all of them if fewer), without concatenating them all."""
    parts = [p for p in parts if len(p)]
    n = sum(len(p) for p in parts)
    if n == 0:
        return np.zeros((0, 128), np.float32)
    if n <= size:
        return np.ascontiguousarray(np.concatenate(parts), np.float32)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=size, replace=False))
    bounds = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    cut = np.searchsorted(keep, bounds)  # keep[cut[i]:cut[i + 1]] fall in parts[i]
    return np.ascontiguousarray(np.concatenate([p[keep[cut[i]:cut[i + 1]] - bounds[i]] for i, p in enumerate(parts)]),
                                np.float32)


@dataclass
class SQ8:
    """Per-dimension 8-bit scalar quantiser: x ≈ vmin + code · step."""

    vmin: np.ndarray  # (d,) float32 smallest value per dimension in the training sample
    step: np.ndarray  # (d,) float32 (max - min) / 255 per dimension

    @classmethod
    def train(cls, x: np.ndarray) -> SQ8:
        x = np.asarray(x, np.float32)
        lo, hi = x.min(axis=0), x.max(axis=0)
        return cls(lo.astype(np.float32), (np.maximum(hi - lo, 1e-12) / 255).astype(np.float32))

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((np.asarray(x, np.float32) - self.vmin) / self.step), 0, 255).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.float32) * self.step + self.vmin

    def distances(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Squared L2 distances (n, k) between ``x`` (n, d) and the decoded ``codes`` (n, k, d), without decoding:
        sum_j step_j² (c_j - (x_j - vmin_j) / step_j)², one float pass over the codes."""
        r = (np.asarray(x, np.float32) - self.vmin) / self.step
        c = codes.astype(np.float32)
        c -= r[:, None, :]
        c *= c
        return (c.reshape(-1, c.shape[-1]) @ (self.step * self.step)).reshape(codes.shape[:-1])


@dataclass
class CodeStore:
    """SQ8 codes of every indexed descriptor, addressed by (image, variant, keypoint)."""

    sq: SQ8
    _chunks: list = field(default_factory=list)  # (CHUNK_ROWS, d) uint8 arrays; pages are touched only when used
    _fill: int = 0  # rows used in the last chunk
    _start: dict = field(default_factory=dict)  # (image_id, variant) -> global row of its keypoint 0
    _lookup: tuple | None = field(default=None, repr=False)  # _start as arrays (see _table); None = stale

    @property
    def dim(self) -> int:
        return int(self.sq.vmin.shape[0])

    def put(self, key: tuple[int, int], desc: np.ndarray) -> None:
        self.put_codes(key, self.sq.encode(desc))

    def put_codes(self, key: tuple[int, int], codes: np.ndarray) -> None:
        n = len(codes)
        if not self._chunks or self._fill + n > CHUNK_ROWS:
            self._chunks.append(np.empty((CHUNK_ROWS, self.dim), np.uint8))
            self._fill = 0
        self._chunks[-1][self._fill:self._fill + n] = codes
        self._start[key] = (len(self._chunks) - 1) * CHUNK_ROWS + self._fill
        self._lookup = None
        self._fill += n

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._chunks[:-1]) + self._fill * self.dim if self._chunks else 0

    def drop(self, key: tuple[int, int]) -> None:
        """Forget one (image, variant); its rows stay unused until the store is rewritten (save / load)."""
        self._start.pop(key, None)
        self._lookup = None

    def get(self, key: tuple[int, int], n: int) -> np.ndarray:
        s = self._start[key]
        return self._chunks[s // CHUNK_ROWS][s % CHUNK_ROWS:s % CHUNK_ROWS + n]

    def _table(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The start rows of keys (image·2 + variant), rebuilt after a put or drop: ``(table, None)`` with table[key]
        = start (-1 = none) while keys are small (catalog ids are), else ``(starts, keys)`` sorted by key."""
        if self._lookup is None:
            keys = np.fromiter((i * 2 + v for i, v in self._start), np.int64, len(self._start))
            starts = np.fromiter(self._start.values(), np.int64, len(self._start))
            top = int(keys.max()) + 1 if len(keys) else 0
            if top <= max(8 * len(keys), 1 << 23):  # at most 64 MB
                table = np.full(top, -1, np.int64)
                table[keys] = starts
                self._lookup = (table, None)
            else:
                order = np.argsort(keys)
                self._lookup = (starts[order], keys[order])
        return self._lookup

    def _starts(self, want: np.ndarray) -> np.ndarray:
        """Start rows of keys ``want``; -1 where not stored. (A binary search over sorted keys took ~10 ms for the
        130k hits of one photo; the dense table is one gather.)"""
        starts, keys = self._table()
        if not len(starts):
            return np.full(len(want), -1, np.int64)
        if keys is None:  # dense: starts[key]
            inside = (want >= 0) & (want < len(starts))
            return np.where(inside, starts[np.where(inside, want, 0)], -1)
        pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        return np.where(keys[pos] == want, starts[pos], -1)

    def gather(self, img: np.ndarray, var: np.ndarray, kp: np.ndarray) -> np.ndarray:
        """Codes (m, d) of hits given as flat arrays of (image, variant, keypoint); every hit must be stored."""
        want = np.asarray(img, np.int64) * 2 + np.asarray(var, np.int64)
        starts = self._starts(want)
        if (starts < 0).any():
            bad = int(want[np.flatnonzero(starts < 0)[0]])
            raise KeyError((bad >> 1, bad & 1))
        rows = starts + kp
        if len(self._chunks) == 1:
            return self._chunks[0][rows]
        out = np.empty((len(rows), self.dim), np.uint8)
        chunk = rows // CHUNK_ROWS
        for c in np.unique(chunk):
            sel = chunk == c
            out[sel] = self._chunks[int(c)][rows[sel] % CHUNK_ROWS]
        return out

    def rerank(self, queries: np.ndarray, owners: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank candidates ``owners`` (nq, k', 3) of ``queries`` (nq, d) by SQ8 distances; keep the best ``k``.

        Returns squared L2 distances (nq, k) and the reordered owner rows (nq, k, 3); misses (-1) go last.
        """
        nq, kk = owners.shape[:2]
        valid = owners[..., 0] >= 0
        D = np.full((nq, kk), np.inf, np.float32)
        if valid.any():
            # every slot gets codes (a miss borrows the first hit's) so the distances are one batched pass
            o = np.where(valid[..., None], owners, owners[valid][0]).reshape(-1, 3)
            codes = self.gather(o[:, 0], o[:, 1], o[:, 2]).reshape(nq, kk, -1)
            D = np.where(valid, np.maximum(self.sq.distances(queries, codes), 0), np.inf).astype(np.float32)
        order = np.argsort(D, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(D, order, axis=1), np.take_along_axis(owners, order[..., None], axis=1)


__all__ = ["DescriptorConfig", "SQ8", "CodeStore", "CHUNK_ROWS", "sample_rows"]
