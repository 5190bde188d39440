"""How the descriptor index is structured: :class:`DescriptorConfig` (the structure chosen by size) and the
re-ranking codes, every descriptor again as 8-bit scalar-quantised bytes (128 B).

Fast-scan PQ codes (32 B) find candidates quickly but rank them roughly (recall@1 ~0.5 against exact);
the ``k·refine`` candidates of each query are re-ranked by distances to these finer copies, which are
nearly exact. Codes are kept per (image, variant), in the same keypoint order as the coordinates, so the
FAISS id of a hit (image, variant, keypoint) is also where its codes lie; they are gathered without a Python
loop per image (``descriptor_layout.KeyedRows``: a loaded index's codes memory-mapped, later ones in RAM).

Two FAISS helpers live here too: :func:`faiss_bytes` (the RAM an index holds) and :func:`zero_block_tails`
(clears what ``remove_ids`` leaves behind in fast-scan lists).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from logoid.core.errors import ConfigError

from .descriptor_layout import CHUNK_ROWS, KeyedRows, entry_key

if TYPE_CHECKING:
    import faiss


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
    # PQ codes: re-rank k·refine candidates by SQ8 copies (128 B/descriptor); 0 = no re-ranking. Built with 0, an
    # index has no copies; built with > 0 it keeps them, and setting 0 after loading skips re-ranking at search
    # (the copies, memory-mapped, then cost no resident memory) while a later save still writes them.
    refine: int = 4
    # Re-ranking reads the SQ8 copies of ~128k candidates a photo, spread over the whole file, so their pages end up
    # resident however they are mapped. A loaded index whose copies exceed this many MB searches without re-ranking
    # (as if loaded with ``refine=0``; the saved ``refine`` is kept): at 180k references they are 9.2 GB, against a
    # 6 GB machine budget, while at 50k (2.4 GB) re-ranking fits and is worth 0.02 top-1. The copies stay on disk,
    # mapped, for the exact search over a few references (the global shortlist's extra candidates). None: always.
    rerank_budget_mb: float | None = 4096.0
    pq_m: int = 0  # legacy (indexes saved before ``codes``): m > 0 meant codes "PQ{m}", 0 meant "Flat"
    train_sample: int = 200_000  # descriptors sampled to train the IVF coarse quantiser and the codes (at least)
    # ... and at least this many per IVF list (FAISS's k-means warns below 39: a 16,384-list index of 8.6M
    # descriptors was trained on 12 a list before this field)
    train_per_list: int = 40
    seed: int = 0  # for the training sample
    # Keep references' normal variant only and find inverted prints by searching each photo descriptor a second
    # time contrast-flipped (``INVERTED_ORDER``): a reference's inverted variant is exactly its grey keypoints with
    # that permutation, so storing it doubled the index for nothing. Hits of the flipped search are reported as
    # variant 1 with the normal's keypoints. Same answers as both variants stored (tested), half the descriptors.
    # Indexes saved before this field stored both (False).
    flip_inverted: bool = True

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
        if d and "flip_inverted" not in d:  # saved before it existed: both variants stored
            d["flip_inverted"] = False
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


def training_pool(items: Iterable[tuple[int, list]], config: DescriptorConfig) -> tuple[int, list[np.ndarray]]:
    """One pass over ``(image_id, [features])`` items: how many descriptors they hold and a pool to sample from.

    While the items hold at most 3·``train_size`` descriptors the pool is all of them, in order, so that
    ``sample_rows(pool, config.train_size(n), seed)`` draws what it draws from the whole list. Beyond that,
    each descriptor gets a seeded random priority and the pool keeps those below a threshold that falls to
    keep 2·``train_size`` (of the count so far) whenever the pool passes 3·``train_size``: a uniform subset,
    in order, of roughly 2·``train_size(n)`` rows, never all descriptors at once.
    """
    rng = np.random.default_rng([config.seed, 1])
    parts: list[np.ndarray] = []
    prio: list[np.ndarray] = []
    n = kept = 0
    cut = 2.0  # keep descriptors whose priority is below this (all of them until the first thinning)
    for _, feats in items:
        for f in (feats[:1] if config.flip_inverted else feats):  # the variants the index stores
            d = np.asarray(f.desc, np.float32)
            if not len(d):
                continue
            u = rng.random(len(d))
            n += len(d)
            if cut <= 1:
                keep = u < cut
                d, u = d[keep], u[keep]
            parts.append(d)
            prio.append(u)
            kept += len(d)
            size = config.train_size(n)
            if kept > 3 * size:
                every = np.concatenate(prio)
                cut = float(np.partition(every, 2 * size)[2 * size])
                kept = int((every < cut).sum())
                parts, prio = _thin(parts, prio, cut, kept)
    return n, parts


def _thin(parts: list[np.ndarray], prio: list[np.ndarray], cut: float, kept: int
          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The ``kept`` rows of ``parts`` whose priority is below ``cut``, in order, as one block, filled from the last
    part back while each part is let go (the pool is never copied whole)."""
    rows = np.empty((kept, parts[0].shape[1]), np.float32)
    pri = np.empty(kept, np.float64)
    at = kept
    while parts:
        part, u = parts.pop(), prio.pop()
        keep = u < cut
        m = int(keep.sum())
        rows[at - m:at], pri[at - m:at] = part[keep], u[keep]
        at -= m
    return [rows], [pri]


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


class CodeStore:
    """SQ8 codes of every indexed descriptor, addressed by (image, variant, keypoint).

    Rows of a loaded index lie in its ``codes.npy``, memory-mapped when loaded so (a gather touches only the
    pages of the candidates' rows); rows put later lie in RAM chunks (or chunks in unnamed files, ``spill``).
    """

    def __init__(self, sq: SQ8, rows: KeyedRows | None = None, spill: Path | None = None) -> None:
        self.sq = sq
        self.rows = rows if rows is not None else KeyedRows(int(sq.vmin.shape[0]), np.uint8, spill=spill)

    @classmethod
    def from_base(cls, sq: SQ8, keys: np.ndarray, offsets: np.ndarray, base: np.ndarray) -> CodeStore:
        """Codes ``base[offsets[i]:offsets[i + 1]]`` of entries ``keys[i]`` (:func:`entry_key`), as saved."""
        return cls(sq, KeyedRows.from_arrays(base, keys, offsets))

    @property
    def dim(self) -> int:
        return int(self.sq.vmin.shape[0])

    def put(self, key: tuple[int, int], desc: np.ndarray) -> None:
        self.put_codes(key, self.sq.encode(desc))

    def put_codes(self, key: tuple[int, int], codes: np.ndarray) -> None:
        self.rows.put(entry_key(*key), codes)

    def nbytes(self) -> int:
        return sum(self.rows.memory())

    def drop(self, key: tuple[int, int]) -> None:
        """Forget one (image, variant); its rows stay unused until the store is rewritten (save / load)."""
        self.rows.drop(entry_key(*key))

    def get(self, key: tuple[int, int]) -> np.ndarray:
        return self.rows.get(entry_key(*key))

    def gather(self, img: np.ndarray, var: np.ndarray, kp: np.ndarray) -> np.ndarray:
        """Codes (m, d) of hits given as flat arrays of (image, variant, keypoint); every hit must be stored."""
        return self.rows.gather(np.asarray(img, np.int64) * 2 + np.asarray(var, np.int64), kp)

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


def faiss_bytes(index: faiss.Index | None) -> int:
    """Bytes a FAISS descriptor index holds in RAM, counted without serialising it (a 5 GB copy at 130M)."""
    import faiss

    if index is None:
        return 0
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # IDMap,Flat: float32 vectors and int64 ids
        return int(index.ntotal) * (int(index.d) * 4 + 8)
    if ivf.invlists is None:
        return 0
    inv: Any = faiss.downcast_InvertedLists(ivf.invlists)
    sizes = np.array([inv.list_size(i) for i in range(int(inv.nlist))], np.int64)
    if type(inv).__name__ == "BlockInvertedLists":  # fast-scan: codes packed in blocks of n_per_block
        codes = int(((sizes + int(inv.n_per_block) - 1) // int(inv.n_per_block)).sum()) * int(inv.block_size)
    else:
        codes = int(sizes.sum()) * int(inv.code_size)
    return codes + int(sizes.sum()) * 8 + int(faiss.serialize_index(ivf.quantizer).nbytes)


def zero_block_tails(index) -> None:
    """Zero the unused slots of every fast-scan list's last block (no-op for other structures).

    FAISS's fast-scan lists are packed in blocks of 32 codes; ``remove_ids`` shrinks a list but leaves the removed
    codes' nibbles in its last block, and a later add ORs new codes into slots it assumes are zero
    (``pq4_fast_scan.h``), so descriptors added after a removal came back corrupted (an image re-added after
    ``remove`` was top-1 for 0.3 of its own descriptors instead of 1.0).
    """
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return
    inv: Any = faiss.downcast_InvertedLists(ivf.invlists) if ivf.invlists is not None else None
    if type(inv).__name__ != "BlockInvertedLists" or inv.packer is None:
        return
    packer, bs, per = inv.packer, int(inv.block_size), int(inv.n_per_block)
    zero = np.zeros(int(packer.code_size), np.uint8)
    for lst in range(int(inv.nlist)):
        size = int(inv.list_size(lst))
        if size % per == 0:
            continue
        nblocks = (size + per - 1) // per
        blocks = faiss.rev_swig_ptr(inv.get_codes(lst), nblocks * bs).reshape(nblocks, bs)
        last = blocks[-1]
        for slot in range(size % per, per):
            packer.pack_1_c(faiss.swig_ptr(zero), slot, faiss.swig_ptr(last))


__all__ = ["DescriptorConfig", "SQ8", "CodeStore", "CHUNK_ROWS", "sample_rows", "training_pool", "faiss_bytes",
           "zero_block_tails"]
