"""Where the descriptor index keeps its per-reference rows: keypoint coordinates and SQ8 re-ranking codes.

A catalog of 180k references holds ~130M descriptors in 360k (image, variant) entries. A dict of numpy views
per entry costs ~300 B of Python objects each, and the rows themselves (8 B of coordinates, 128 B of codes per
descriptor) need not be anonymous memory at all: a query reads the codes of its ~100k candidates and the
coordinates of a handful of shortlisted references. :class:`KeyedRows` keeps the entries in parallel arrays
(no object per entry) and their rows in one base array, a read-only memory map of an ``.npy`` file when
loaded so, plus in-RAM chunks (or chunks in unnamed files, ``spill``) for entries put later.

:func:`process_memory` reads what the process holds resident, split into anonymous and file-backed pages.
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from logoid.core.atomic import atomic_path

CHUNK_ROWS = 1 << 20  # rows per chunk; one (image, variant) holds fewer keypoints than this (descriptors.KP_BITS)
DENSE_KEYS = 1 << 23  # a dense key -> slot table this long (32 MB of int32) is always fine
RECENT_MAX = 1 << 16  # sparse keys: entries put since the sorted lookup was built, before it is rebuilt


def entry_key(image_id: int, variant: int) -> int:
    """The key of one (image, variant) entry: ``image_id · 2 + variant`` (also the FAISS id's high bits)."""
    return (int(image_id) << 1) | int(variant)


class KeyedRows:
    """Fixed-width rows per key (:func:`entry_key`), e.g. each reference's keypoint coordinates or SQ8 codes.

    Rows are numbered globally: ``r < len(base)`` lies in ``base`` (what was loaded, perhaps a memory map),
    later rows in chunks of ``CHUNK_ROWS`` (an entry never straddles two). Entries live in slots, parallel
    arrays of key, first row, row count, ``aux`` ints (e.g. image width and height) and a live flag; a dense
    table key -> slot finds them (a sorted index when keys are too sparse for one). Putting a key again or
    dropping it leaves its old rows unused until the next save.
    """

    def __init__(self, width: int, dtype: np.dtype | type, aux: int = 0, spill: Path | None = None) -> None:
        self.width, self.dtype, self.naux = int(width), np.dtype(dtype), int(aux)
        self.spill = None if spill is None else Path(spill)  # folder for chunks backed by unnamed files (a large build), None = anonymous memory
        self.base: np.ndarray = np.zeros((0, self.width), self.dtype)
        self._chunks: list[np.ndarray] = []
        self._fill = 0  # rows used in the last chunk
        self._n = self._nlive = 0  # slots used, of which live
        self._key = np.zeros(0, np.int64)
        self._start = np.zeros(0, np.int64)
        self._count = np.zeros(0, np.int64)
        self._aux = np.zeros((0, self.naux), np.int64)
        self._live = np.zeros(0, bool)
        self._dense: np.ndarray | None = np.zeros(0, np.int32)  # key -> slot (-1 none); None = sparse keys
        self._sorted = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # sparse: (keys, slots) sorted by key
        self._recent: dict[int, int] = {}  # sparse: key -> slot put since _sorted was built
        self._order: tuple[np.ndarray, np.ndarray] | None = None  # live_sorted() until the next change

    @classmethod
    def from_arrays(cls, base: np.ndarray, keys: np.ndarray, offsets: np.ndarray, aux: np.ndarray | None = None,
                    spill: Path | None = None) -> KeyedRows:
        """Entries ``keys[i]`` owning ``base[offsets[i]:offsets[i + 1]]`` (as a save lays them out)."""
        obj = cls(base.shape[1], base.dtype, 0 if aux is None else aux.shape[1], spill)
        n = len(keys)
        obj.base = base
        obj._key = np.asarray(keys, np.int64).copy()
        obj._start = np.asarray(offsets[:-1], np.int64).copy()
        obj._count = np.asarray(offsets[1:], np.int64) - np.asarray(offsets[:-1], np.int64)
        obj._aux = np.zeros((n, 0), np.int64) if aux is None else np.asarray(aux, np.int64).reshape(n, obj.naux).copy()
        obj._live = np.ones(n, bool)
        obj._n = obj._nlive = n
        obj._reindex()
        return obj

    # ---- lookup ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._nlive

    def _dense_limit(self) -> int:
        return max(8 * (self._nlive + 1), DENSE_KEYS)

    def _reindex(self) -> None:
        """Rebuild the key -> slot lookup from the live slots (dense while the keys allow)."""
        live = np.flatnonzero(self._live[:self._n])
        keys = self._key[live]
        top = int(keys.max()) + 1 if len(keys) else 0
        self._recent = {}
        if (not len(keys) or int(keys.min()) >= 0) and top <= self._dense_limit():
            table = np.full(top, -1, np.int32)
            table[keys] = live
            self._dense = table
        else:
            order = np.argsort(keys, kind="stable")
            self._dense, self._sorted = None, (keys[order], live[order])

    def prepare(self) -> None:
        """Bring the lookup up to date, so that threads may call :meth:`slots` side by side."""
        if self._dense is None and self._recent:
            self._reindex()

    def slot(self, key: int) -> int:
        """The slot of a live key, -1 if none."""
        if self._dense is not None:
            return int(self._dense[key]) if 0 <= key < len(self._dense) else -1
        if key in self._recent:
            return self._recent[key]
        keys, slots = self._sorted
        i = int(np.searchsorted(keys, key))
        return int(slots[i]) if i < len(keys) and keys[i] == key and self._live[slots[i]] else -1

    def slots(self, keys: np.ndarray) -> np.ndarray:
        """Slots of many keys at once (-1 where not live). A binary search over sorted keys took ~10 ms for the
        130k hits of one photo; the dense table is one gather."""
        keys = np.asarray(keys, np.int64)
        if self._dense is not None:
            table = self._dense
            if not len(table):
                return np.full(len(keys), -1, np.int64)
            inside = (keys >= 0) & (keys < len(table))
            return np.where(inside, table[np.where(inside, keys, 0)], -1).astype(np.int64)
        self.prepare()
        skeys, sslots = self._sorted
        if not len(skeys):
            return np.full(len(keys), -1, np.int64)
        pos = np.minimum(np.searchsorted(skeys, keys), len(skeys) - 1)
        found = sslots[pos]
        return np.where((skeys[pos] == keys) & self._live[found], found, -1)

    def count(self, key: int) -> int | None:
        """Rows of a live key; None if it has none."""
        s = self.slot(key)
        return None if s < 0 else int(self._count[s])

    def aux(self, key: int) -> tuple[int, ...]:
        s = self.slot(key)
        if s < 0:
            raise KeyError((key >> 1, key & 1))
        return tuple(int(v) for v in self._aux[s])

    def get(self, key: int) -> np.ndarray:
        """The rows of one key: a view (of the memory map for loaded entries)."""
        s = self.slot(key)
        if s < 0:
            raise KeyError((key >> 1, key & 1))
        start, n = int(self._start[s]), int(self._count[s])
        if start < len(self.base):
            return self.base[start:start + n]
        r = start - len(self.base)
        return self._chunks[r // CHUNK_ROWS][r % CHUNK_ROWS:r % CHUNK_ROWS + n]

    def live_sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, slots) of the live entries in key order (cached until the next change)."""
        if self._order is None:
            live = np.flatnonzero(self._live[:self._n])
            order = np.argsort(self._key[live], kind="stable")
            self._order = (self._key[live][order], live[order])
        return self._order

    # ---- changes -----------------------------------------------------------------------------
    def put(self, key: int, rows: np.ndarray, aux: Iterable[int] = ()) -> None:
        """Store the rows of ``key`` (replacing any earlier ones)."""
        rows = np.asarray(rows).reshape(-1, self.width)
        n = len(rows)
        if n > CHUNK_ROWS:
            raise ValueError(f"an entry holds at most {CHUNK_ROWS} rows, got {n}")
        self.drop(key)
        if not self._chunks or self._fill + n > CHUNK_ROWS:
            self._chunks.append(self._new_chunk())
            self._fill = 0
        self._chunks[-1][self._fill:self._fill + n] = rows
        start = len(self.base) + (len(self._chunks) - 1) * CHUNK_ROWS + self._fill
        self._fill += n
        s = self._new_slot(key, start, n, aux)
        if self._dense is None:
            self._recent[key] = s
            if len(self._recent) > RECENT_MAX:
                self._reindex()
        elif 0 <= key < len(self._dense):
            self._dense[key] = s
        elif 0 <= key < self._dense_limit():
            grown = np.full(min(self._dense_limit(), max(key + 1, 2 * len(self._dense))), -1, np.int32)
            grown[:len(self._dense)] = self._dense
            grown[key] = s
            self._dense = grown
        else:
            self._reindex()  # a key too large for a dense table (or negative): sorted lookup from now on

    def _new_slot(self, key: int, start: int, n: int, aux: Iterable[int]) -> int:
        if self._n == len(self._key):
            cap = max(64, 2 * self._n)
            self._key, self._start, self._count, self._live = (np.resize(a, cap) for a in
                                                                (self._key, self._start, self._count, self._live))
            grown = np.zeros((cap, self.naux), np.int64)
            grown[:self._n] = self._aux[:self._n]
            self._aux = grown
        s = self._n
        self._key[s], self._start[s], self._count[s], self._live[s] = key, start, n, True
        self._aux[s] = tuple(aux) if self.naux else ()
        self._n += 1
        self._nlive += 1
        self._order = None
        return s

    def drop(self, key: int) -> int | None:
        """Forget one key; returns how many rows it had (None if absent). Its rows stay unused until a save."""
        s = self.slot(key)
        if s < 0:
            return None
        self._live[s] = False
        self._nlive -= 1
        self._order = None
        if self._dense is not None:
            self._dense[key] = -1
        else:
            self._recent.pop(key, None)
        return int(self._count[s])

    def _new_chunk(self) -> np.ndarray:
        if self.spill is None:
            return np.empty((CHUNK_ROWS, self.width), self.dtype)  # pages are touched only when used
        # A file with no name (gone when unmapped): its pages are file-backed, written back and dropped by the
        # kernel under pressure, so a large build's codes need not fit in memory
        self.spill.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.spill) as fh:
            fh.truncate(CHUNK_ROWS * self.width * self.dtype.itemsize)
            return np.memmap(fh, self.dtype, mode="r+", shape=(CHUNK_ROWS, self.width))

    # ---- reading many rows -------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows by global row number, as one (m, width) array."""
        rows = np.asarray(rows, np.int64)
        nb = len(self.base)
        if not self._chunks:
            return np.asarray(self.base[rows])
        if nb == 0 and len(self._chunks) == 1:
            return np.asarray(self._chunks[0][rows])
        out = np.empty((len(rows), self.width), self.dtype)
        in_base = rows < nb
        if in_base.any():
            out[in_base] = self.base[rows[in_base]]
        chunk = np.where(in_base, -1, (rows - nb) // CHUNK_ROWS)
        for c in np.unique(chunk[~in_base]):
            sel = chunk == c
            out[sel] = self._chunks[int(c)][(rows[sel] - nb) % CHUNK_ROWS]
        return out

    def gather(self, keys: np.ndarray, kp: np.ndarray) -> np.ndarray:
        """Row ``kp[i]`` of entry ``keys[i]`` for every i, as (m, width); every key must be live."""
        slots = self.slots(keys)
        if (slots < 0).any():
            bad = int(np.asarray(keys)[np.flatnonzero(slots < 0)[0]])
            raise KeyError((bad >> 1, bad & 1))
        return self.take(self._start[slots] + np.asarray(kp, np.int64))

    def blocks(self, slots: np.ndarray, rows_per_block: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
        """The rows of ``slots``, concatenated in that order, as blocks of about ``rows_per_block`` rows."""
        counts, starts = self._count[slots], self._start[slots]
        ends = np.cumsum(counts)
        i = 0
        while i < len(slots):
            done = int(ends[i - 1]) if i else 0
            j = max(i + 1, int(np.searchsorted(ends, done + rows_per_block, side="right")))
            c, s = counts[i:j], starts[i:j]
            total = int(c.sum())
            if total:
                yield self.take(np.repeat(s - (np.cumsum(c) - c), c) + np.arange(total))
            i = j

    def rows_of(self, slots: np.ndarray) -> int:
        return int(self._count[slots].sum())

    def aux_of(self, slots: np.ndarray) -> np.ndarray:
        return self._aux[slots]

    def counts_of(self, slots: np.ndarray) -> np.ndarray:
        return self._count[slots]

    # ---- memory ------------------------------------------------------------------------------
    def memory(self) -> tuple[int, int]:
        """(anonymous, file-backed) bytes: in-RAM rows and tables; memory-mapped rows (mapped, not all resident)."""
        tables = sum(a.nbytes for a in (self._key, self._start, self._count, self._aux, self._live))
        tables += self._dense.nbytes if self._dense is not None else sum(a.nbytes for a in self._sorted)
        anon, mapped = tables, 0
        row = self.width * self.dtype.itemsize
        for i, c in enumerate(self._chunks):
            used = (self._fill if i == len(self._chunks) - 1 else CHUNK_ROWS) * row
            if isinstance(c, np.memmap):
                mapped += used
            else:
                anon += used
        if isinstance(self.base, np.memmap):
            mapped += self.base.nbytes
        else:
            anon += self.base.nbytes
        return anon, mapped


# ---- files -----------------------------------------------------------------------------------
def write_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype | type, blocks: Iterable[np.ndarray]) -> None:
    """Write an ``.npy`` file from consecutive row blocks (never the whole array in memory), atomically."""
    dtype = np.dtype(dtype)
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": tuple(int(s) for s in shape)})
        n = 0
        for b in blocks:
            b = np.ascontiguousarray(b, dtype)
            fh.write(b.data.cast("B"))
            n += len(b)
        if n != shape[0]:
            raise ValueError(f"{path.name}: wrote {n} rows, expected {shape[0]}")


def read_npy(path: Path, mmap_rows: bool, random: bool = False) -> np.ndarray:
    """An ``.npy`` file, memory-mapped read-only when ``mmap_rows`` (``random``: no readahead around a read)."""
    arr = np.load(path, mmap_mode="r" if mmap_rows else None)
    if random and isinstance(arr, np.memmap):
        advise_random(arr)
    return arr


def advise_random(arr: np.memmap) -> None:
    """``madvise(MADV_RANDOM)`` on a memory map: a gather of scattered 128-byte rows reads only their pages."""
    mm = getattr(arr, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM") and len(mm):
        mm.madvise(mmap.MADV_RANDOM)


def process_memory() -> dict[str, int]:
    """Bytes this process holds: ``rss_anon`` (heap, anonymous maps), ``rss_file`` (resident pages of mapped
    files), ``rss`` and ``hwm`` (peak resident), from /proc/self/status; empty where there is none (not Linux)."""
    fields = {"RssAnon": "rss_anon", "RssFile": "rss_file", "RssShmem": "rss_shmem", "VmRSS": "rss", "VmHWM": "hwm"}
    out: dict[str, int] = {}
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in fields and value.strip().endswith("kB"):
            out[fields[name]] = int(value.split()[0]) * 1024
    return out


__all__ = ["KeyedRows", "CHUNK_ROWS", "entry_key", "write_npy", "read_npy", "advise_random", "process_memory"]
