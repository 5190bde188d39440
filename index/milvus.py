"""The global vectors in Milvus (through pymilvus): Milvus Lite in a local file, or a standalone / cluster server.

Same contract as the FAISS ``VectorIndex``: cosine = inner product (metric ``IP``) on L2-normalised
vectors, int64 ids ``image_id * 1024 + variant`` as the primary key, an image's vectors one id range,
missing result slots id -1.

Index type (``MilvusConfig.index_type``; ``None`` chooses): ``FLAT`` on Milvus Lite, which answers exactly
and is what Lite is meant for (up to about a million vectors); ``HNSW`` (M=32, efConstruction=256,
ef=max(ef_search, k)) on a server, recall ≈ 0.99 at a few ms for tens of millions of vectors per node.
``IVF_FLAT`` (nlist/nprobe) trades recall for a lighter build; pick it with ``--milvus-index IVF_FLAT``.

Consistency. A full build writes a *new collection* per generation (``<prefix>_g<generation>``); the
sidecar rename is the commit point, and the collections of this home the sidecar no longer names are
dropped after it.
An add or remove does not copy the collection: it is staged in memory (new rows searched exactly,
replaced and removed ids filtered out of Milvus' answers) and, on commit, written to a pending log
(``milvus-pending-<generation>.npz``) that the sidecar names. After the rename the log is applied to
the collection (deletes, then inserts, both idempotent) and the sidecar is rewritten without it. A crash
before the rename leaves Milvus untouched; a crash after it leaves a log that every reader merges in
memory and the next commit applies. So a process that loads the index sees exactly the generation the
sidecar names; one that loaded it before an add or remove sees the change once it is applied (vectors of
images its catalog does not know are ignored by identify), and one that loaded it before a rebuild gets an
error once its collection is dropped.
Milvus Lite serves one process at a time: a second process opening the same file waits or fails.

The token of a server (``user:password`` or an API key) is read from ``LOGOID_MILVUS_TOKEN`` (or
passed to :func:`connect`) and never written to the sidecar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logoid.core.atomic import atomic_path
from logoid.core.errors import ConfigError, IndexMissingError

from .vectors import VARIANT_SLOTS

ENV_TOKEN = "LOGOID_MILVUS_TOKEN"
DEFAULT_LITE_FILE = "milvus.db"  # Milvus Lite's file, in the logoid home
MAX_TOPK = 16384  # Milvus' limit on limit (and offset + limit) per search or query
_MISSING_SCORE = np.float32(-3.4028235e38)  # what FAISS reports for an empty inner-product slot

_clients: dict[tuple[str, str], Any] = {}  # one connection per (uri, token) per process


class MilvusUnavailableError(ConfigError):
    """pymilvus / milvus-lite is not installed, or the Milvus server cannot be reached."""


@dataclass
class MilvusConfig:
    """Where and how the global vectors live in Milvus. Saved in the sidecar (the token never is)."""

    uri: str = DEFAULT_LITE_FILE  # a Milvus Lite file (*.db; relative = inside the home) or http(s)://host:19530
    prefix: str = ""  # this home's collection prefix (logoid_<random>); "" = draw one at the first build
    index_type: str | None = None  # FLAT, HNSW, IVF_FLAT, IVF_SQ8; None = FLAT on Milvus Lite, HNSW on a server
    hnsw_m: int = 32  # HNSW graph degree (memory vs recall)
    ef_construction: int = 256  # HNSW build-time beam
    ef_search: int = 128  # HNSW query-time beam (raised to k when k is larger)
    nlist: int = 4096  # IVF_FLAT / IVF_SQ8 lists
    nprobe: int = 32  # IVF_FLAT / IVF_SQ8 lists visited per query
    insert_batch: int = 8192  # rows per insert call (8192 × 512-d float32 = 16 MiB, under gRPC's 64 MiB)

    @property
    def is_lite(self) -> bool:
        return "://" not in self.uri

    def chosen_index(self) -> str:
        kind = (self.index_type or ("FLAT" if self.is_lite else "HNSW")).upper()
        if kind not in ("FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8"):
            raise ConfigError(f"unknown Milvus index type {self.index_type!r}", "choose FLAT, HNSW, IVF_FLAT or IVF_SQ8")
        return kind

    def index_params(self, metric: str = "IP") -> dict:
        kind = self.chosen_index()
        params = {"HNSW": {"M": self.hnsw_m, "efConstruction": self.ef_construction},
                  "IVF_FLAT": {"nlist": self.nlist}, "IVF_SQ8": {"nlist": self.nlist}}.get(kind, {})
        return {"index_type": kind, "metric_type": metric, "params": params}

    def search_params(self, k: int, metric: str = "IP") -> dict:
        kind = self.chosen_index()
        params = {"HNSW": {"ef": max(self.ef_search, k)}, "IVF_FLAT": {"nprobe": self.nprobe},
                  "IVF_SQ8": {"nprobe": self.nprobe}}.get(kind, {})
        return {"metric_type": metric, "params": params}

    def collection_for(self, generation: int) -> str:
        if not self.prefix:
            self.prefix = f"logoid_{secrets.token_hex(4)}"
        return f"{self.prefix}_g{generation:05d}"

    def resolved_uri(self, home: Path | None) -> str:
        """The URI to connect to: a relative Lite file is inside ``home``."""
        if self.is_lite:
            p = Path(self.uri).expanduser()
            if not p.is_absolute() and home is not None:
                p = Path(home) / p
            if p.suffix != ".db":
                raise ConfigError(f"Milvus Lite file {p} must end in .db", "use e.g. --uri ~/logoid-home/milvus.db")
            return str(p)
        return self.uri

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MilvusConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def import_pymilvus():
    """pymilvus, or a typed error that says how to install it (kept out of import time: it is heavy)."""
    try:
        import pymilvus
    except ImportError as e:
        raise MilvusUnavailableError(f"the Milvus backend needs pymilvus ({e})", "pip install 'logoid[milvus]'") from e
    return pymilvus


def connect(uri: str, token: str | None = None):
    """A MilvusClient for ``uri`` (a Lite file starts an embedded server), shared within the process."""
    token = token if token is not None else os.environ.get(ENV_TOKEN, "")
    key = (uri, token)
    if key not in _clients:
        pymilvus = import_pymilvus()
        if "://" not in uri:
            try:
                import milvus_lite  # noqa: F401
            except ImportError as e:
                raise MilvusUnavailableError(f"{uri} is a Milvus Lite file, which needs milvus-lite ({e})",
                                             "pip install 'logoid[milvus]', or point --uri at a Milvus server") from e
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet("milvus_lite"):  # it logs a traceback of its own before raising; the CLI says one line
                _clients[key] = pymilvus.MilvusClient(uri=uri, token=token)
        except Exception as e:  # pymilvus raises MilvusException or grpc errors, both without a stable type
            hint = ("Milvus Lite serves one process at a time: stop the other logoid process using it, or move to a "
                    "server" if "://" not in uri else "start the server or fix --uri (and LOGOID_MILVUS_TOKEN)")
            raise MilvusUnavailableError(f"cannot open Milvus at {uri}: {str(e).splitlines()[0][:200]}", hint) from e
    return _clients[key]


@dataclass
class MilvusVectorIndex:
    """One Milvus collection of (id → vector) plus the staged, not yet applied, adds and removes.

    ``metric``: ``IP`` (cosine on unit vectors, the global vectors: higher is nearer) or ``L2`` (squared
    Euclidean distance, the local descriptors of ``milvus_descriptors.py``: lower is nearer, as FAISS reports it).
    """

    dim: int
    config: MilvusConfig
    collection: str
    uri: str  # resolved
    metric: str = "IP"
    search_batch: int = 1024  # query rows per search call (Milvus takes up to 16384)
    _client: Any = None
    _count: int = 0  # rows in the collection
    _masked: set[int] = field(default_factory=set)  # ids in the collection that are removed or replaced
    _staged: dict[int, np.ndarray] = field(default_factory=dict)  # new rows, not yet in the collection

    # ---- building and opening --------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: MilvusConfig, collection: str,
              home: Path | None = None, metric: str = "IP", dim: int | None = None) -> MilvusVectorIndex:
        """Create ``collection`` (replacing a leftover of that name), insert every vector, index and load it."""
        pymilvus = import_pymilvus()
        vectors = _as_f32(vectors)
        dim = int(vectors.shape[-1]) if dim is None else dim  # ``dim`` names it for an empty build
        uri = config.resolved_uri(home)
        client = connect(uri)
        if client.has_collection(collection):
            client.drop_collection(collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dim)
        client.create_collection(collection, schema=schema, consistency_level="Strong")
        obj = cls(dim=dim, config=config, collection=collection, uri=uri, metric=metric, _client=client)
        obj._insert(vectors, np.asarray(ids, np.int64))
        client.flush(collection)
        index = client.prepare_index_params()
        index.add_index(field_name="vector", **config.index_params(metric))
        client.create_index(collection, index)
        client.load_collection(collection)
        obj._count = len(vectors)
        return obj

    @classmethod
    def open(cls, config: MilvusConfig, collection: str, dim: int, home: Path | None = None, metric: str = "IP",
             what: str = "the index's global vectors") -> MilvusVectorIndex:
        """The collection a sidecar names; a missing one is an index that must be rebuilt."""
        uri = config.resolved_uri(home)
        client = connect(uri)
        if not client.has_collection(collection):
            raise IndexMissingError(f"Milvus at {uri} has no collection {collection} ({what})",
                                    "rebuild with `logoid build-index --backend milvus`")
        client.load_collection(collection)
        obj = cls(dim=dim, config=config, collection=collection, uri=uri, metric=metric, _client=client)
        obj._count = obj._milvus_count()
        return obj

    def backend_meta(self) -> dict:
        """The sidecar's ``backend`` entry."""
        return {"kind": "milvus", "collection": self.collection, "dim": self.dim, **self.config.to_dict()}

    # ---- the VectorIndex interface ---------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self._count - len(self._masked) + len(self._staged)

    @property
    def dirty(self) -> bool:
        """Whether adds or removes wait to be applied to the collection."""
        return bool(self._masked or self._staged)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.array(vectors, dtype=np.float32)  # a copy: staged rows must not change with the caller's array
        if vectors.shape[0] == 0:
            return
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"vectors have dim {vectors.shape[1]}, index has {self.dim}")
        ids = np.asarray(ids, np.int64)
        self._masked.update(self._present(ids))  # a re-added id replaces the stored row
        self._staged.update({int(i): v for i, v in zip(ids, vectors, strict=True)})

    def remove_images(self, image_ids) -> int:
        """Remove every variant vector of these reference images; returns how many vectors went."""
        removed = 0
        for image_id in image_ids:
            lo, hi = int(image_id) * VARIANT_SLOTS, (int(image_id) + 1) * VARIANT_SLOTS
            staged = [i for i in self._staged if lo <= i < hi]
            for i in staged:
                del self._staged[i]
            stored = {int(r["id"]) for r in self._query(f"id >= {lo} and id < {hi}", ["id"])} - self._masked
            self._masked.update(stored)
            removed += len(staged) + len(stored)
        return removed

    def remove_ids(self, ids) -> int:
        """Remove these rows (staged or stored; ids of neither are ignored); returns how many went."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        staged = [int(i) for i in ids if int(i) in self._staged]
        for i in staged:
            del self._staged[i]
        stored = self._present(ids) - self._masked
        self._masked.update(stored)
        return len(staged) + len(stored)

    def ids(self) -> np.ndarray:
        return self.vectors_and_ids(with_vectors=False)[1]

    def search(self, queries: np.ndarray, k: int, id_ranges: list[tuple[int, int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Scores (cosine, or squared L2 for ``metric="L2"``) and ids of the ``k`` nearest vectors, nearest first;
        missing slots have id -1. ``id_ranges``: only ids in these ``[lo, hi)`` ranges are searched."""
        queries = _as_f32(queries)
        if queries.ndim == 1:
            queries = queries[None]
        k = max(1, min(k, max(1, self.ntotal), MAX_TOPK))
        sims = np.full((len(queries), k), np.inf if self.metric == "L2" else _MISSING_SCORE, np.float32)
        out = np.full((len(queries), k), -1, np.int64)
        if self._count > len(self._masked) and (id_ranges is None or id_ranges):
            terms = [f"id not in {sorted(self._masked)}"] if self._masked else []
            if id_ranges is not None:
                terms.append(" or ".join(f"(id >= {lo} and id < {hi})" for lo, hi in id_ranges))
            expr = " and ".join(f"({t})" for t in terms)
            step = max(1, self.search_batch)
            for start in range(0, len(queries), step):
                batch = queries[start:start + step]
                hits = self._call(self._client.search, self.collection, data=list(batch), limit=k, filter=expr,
                                  search_params=self.config.search_params(k, self.metric), anns_field="vector",
                                  output_fields=["id"])
                for row, found in enumerate(hits, start):
                    n = len(found)
                    # pymilvus' Hits carry ids/distances as lists; reading them skips building a dict per hit
                    out[row, :n] = getattr(found, "ids", None) or [h["id"] for h in found]
                    sims[row, :n] = getattr(found, "distances", None) or [h["distance"] for h in found]
        if self._staged:
            sims, out = self._merge_staged(queries, sims, out, k, id_ranges)
        return sims, out

    def reconstruct_image(self, image_id: int) -> np.ndarray:
        """The stored vectors of one image, by variant."""
        lo, hi = int(image_id) * VARIANT_SLOTS, (int(image_id) + 1) * VARIANT_SLOTS
        rows = {int(r["id"]): r["vector"] for r in self._query(f"id >= {lo} and id < {hi}", ["id", "vector"])
                if int(r["id"]) not in self._masked}
        rows.update({i: v for i, v in self._staged.items() if lo <= i < hi})
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([np.asarray(rows[i], np.float32) for i in sorted(rows)])

    def vectors_and_ids(self, with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Every vector with its id, sorted by id (for gallery calibration and exports)."""
        fields = ["id", "vector"] if with_vectors else ["id"]
        got: dict[int, Any] = {}
        with _quiet("pymilvus.client.iterator"):  # warns that Milvus Lite gives no server timestamp; harmless
            it = self._client.query_iterator(self.collection, batch_size=4096, filter="id >= 0", output_fields=fields)
            try:
                while batch := it.next():
                    got.update((int(r["id"]), r.get("vector")) for r in batch if int(r["id"]) not in self._masked)
            finally:
                it.close()
        got.update(self._staged)
        ids = np.array(sorted(got), np.int64)
        if not with_vectors:
            return np.zeros((0, self.dim), np.float32), ids
        vecs = np.stack([np.asarray(got[i], np.float32) for i in ids]) if len(ids) else np.zeros((0, self.dim), "f4")
        return vecs, ids

    @property
    def faiss_index(self):
        """An in-memory FAISS copy (IDMap2 over Flat, rows in ``ids()`` order) for code written against FAISS."""
        import faiss

        vecs, ids = self.vectors_and_ids()
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if len(ids):
            index.add_with_ids(vecs, ids)
        return index

    # ---- commit: pending log, apply, sweep -------------------------------------------------------
    def save_pending(self, path: Path) -> None:
        """Write the staged changes as a log (ids to delete, rows to insert); the sidecar then names it."""
        ids = np.array(sorted(self._staged), np.int64)
        vecs = np.stack([self._staged[int(i)] for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, delete=np.array(sorted(self._masked), np.int64), ids=ids, vectors=vecs)

    def load_pending(self, path: Path) -> None:
        """Merge a log the collection may or may not have had applied (both read the same)."""
        with np.load(path) as z:
            delete, ids, vecs = z["delete"], z["ids"], z["vectors"]
        self._masked.update(self._present(np.concatenate([delete, ids])))
        self._staged.update({int(i): v for i, v in zip(ids, vecs.astype(np.float32), strict=True)})

    def apply_pending(self) -> None:
        """Write the staged changes into the collection: delete, then insert (idempotent, so a re-run is safe)."""
        if not self.dirty:
            return
        masked = sorted(self._masked)
        for start in range(0, len(masked), 8192):
            self._client.delete(self.collection, ids=masked[start:start + 8192])
        ids = np.array(sorted(self._staged), np.int64)
        if len(ids):
            self._insert(np.stack([self._staged[int(i)] for i in ids]), ids)
        self._client.flush(self.collection)
        self._masked.clear()
        self._staged.clear()
        self._count = self._milvus_count()

    def drop_other_generations(self, keep: tuple[str, ...] = ()) -> list[str]:
        """Drop this home's collections other than this one and ``keep`` (earlier or abandoned builds)."""
        return drop_collections(self._client, self.config.prefix, keep=(self.collection, *keep))

    # ---- helpers --------------------------------------------------------------------------------
    def _insert(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        step = max(1, self.config.insert_batch)
        for start in range(0, len(ids), step):
            rows = [{"id": int(i), "vector": v} for i, v in zip(ids[start:start + step], vectors[start:start + step],
                                                                  strict=True)]
            self._client.insert(self.collection, rows)

    def _query(self, expr: str, fields: list[str]) -> list[dict]:
        return self._call(self._client.query, self.collection, filter=expr, output_fields=fields, limit=MAX_TOPK)

    def _call(self, fn, *args, **kwargs):
        try:
            with _quiet("pymilvus"):  # it logs every failure itself; ours become one typed error
                return fn(*args, **kwargs)
        except Exception as e:  # MilvusException / grpc errors; a dropped collection is the one we can explain
            if self._client.has_collection(self.collection):
                raise
            raise IndexMissingError(f"Milvus collection {self.collection} is gone: the index was rebuilt meanwhile",
                                    "run the command again") from e

    def _present(self, ids: np.ndarray) -> set[int]:
        """Which of ``ids`` are rows of the collection."""
        found: set[int] = set()
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), 4096):
            chunk = wanted[start:start + 4096]
            found.update(int(r["id"]) for r in self._query(f"id in {chunk}", ["id"]))
        return found

    def _milvus_count(self) -> int:
        res = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _merge_staged(self, queries, sims, ids, k, id_ranges=None):
        keys = np.array(list(self._staged), np.int64)
        if id_ranges is not None:
            keys = keys[np.any([(keys >= lo) & (keys < hi) for lo, hi in id_ranges] or [np.zeros(len(keys), bool)], 0)]
            if not len(keys):
                return sims, ids
        mat = np.stack([self._staged[int(i)] for i in keys])
        if self.metric == "L2":  # squared distances; negated so that one descending sort serves both metrics
            near = -(np.sum(queries ** 2, 1)[:, None] + np.sum(mat ** 2, 1)[None] - 2 * queries @ mat.T)
            sims = -sims
        else:
            near = queries @ mat.T
        all_sims = np.concatenate([sims, near.astype(np.float32)], axis=1)
        all_ids = np.concatenate([ids, np.broadcast_to(keys, (len(queries), len(keys)))], axis=1)
        order = np.argsort(-all_sims, axis=1, kind="stable")[:, :k]
        if self.metric == "L2":
            return -np.take_along_axis(all_sims, order, 1), np.take_along_axis(all_ids, order, 1)
        return np.take_along_axis(all_sims, order, 1), np.take_along_axis(all_ids, order, 1)


def drop_collections(client, prefix: str, keep: str | tuple[str, ...] | None = None) -> list[str]:
    """Drop every collection named ``<prefix>_g*`` except ``keep`` (a name or several); returns the dropped names."""
    if not prefix:
        return []
    kept = {keep} if isinstance(keep, str) else set(keep or ())
    gone = [c for c in client.list_collections() if c.startswith(f"{prefix}_g") and c not in kept]
    for name in gone:
        client.drop_collection(name)
    return gone


def drop_backend(meta_backend: dict, home: Path | None, keep: str | None = None) -> list[str]:
    """Drop the collections a (previous) sidecar's Milvus backend owns, except ``keep``."""
    cfg = MilvusConfig.from_dict(meta_backend)
    try:
        client = connect(cfg.resolved_uri(home))
    except MilvusUnavailableError:
        return []  # nothing reachable to clean up; a later build with the backend sweeps it
    return drop_collections(client, cfg.prefix, keep=keep)


@contextlib.contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level, log.level = log.level, logging.CRITICAL
    try:
        yield
    finally:
        log.setLevel(level)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))
