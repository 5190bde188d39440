"""The on-disk index of one logoid home: global vectors, local descriptors and names, one sidecar.

Each component is written to a new generation file; the JSON sidecar naming those files is then
replaced in one atomic rename. That rename is the commit point: a crash before it leaves the old
index intact, and files no sidecar names are swept on the next commit.

Readers never lock out a writer: a loaded store pins (a shared ``flock`` on ``.pin-<file stem>.lock``) every
component file its sidecar named, and a commit sweeps a superseded file only when nobody pins it, so a query
that read the old sidecar keeps its files until it is done, however many commits happen meanwhile.
The sidecar also records the catalog it was built from (``catalog_revision``, ``catalog_ids``): the catalog
always commits before the index (``logoid/build/sync.py``), so every image id in an index is one the catalog
has handed out and will never hand out again.

The global vectors live in FAISS (a file, the default) or in Milvus, as the sidecar's ``backend`` entry
says (``index/_backend.py``); ``index/milvus.py`` describes how a Milvus commit keeps the same guarantee.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logoid.core.atomic import write_json_atomic
from logoid.core.errors import IndexMismatchError, IndexMissingError
from logoid.core.faults import fault_point
from logoid.core.locks import PINS, pin, try_exclusive
from logoid.engine.towers import remember_weights
from logoid.index.backend import FAISS, MILVUS, backend_kind
from logoid.index.milvus import MilvusConfig, MilvusVectorIndex

from .vectors import IndexConfig, VectorIndex, decode_ids

SCHEMA_VERSION = 1
SIDECAR = "logoid-index.json"
_LOAD_TRIES = 20


@dataclass
class IndexStore:
    """Loaded index components plus the sidecar metadata that describes them."""

    root: Path
    meta: dict = field(default_factory=dict)
    vectors: Any = None  # VectorIndex (FAISS) or MilvusVectorIndex; see index/_backend.GlobalVectors
    _descriptors: Any = None
    _names: Any = None
    _pins: list = field(default_factory=list, repr=False)  # open lock files: the component files this store reads

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def exists(cls, root: Path) -> bool:
        return (Path(root) / SIDECAR).exists()

    @classmethod
    def load_meta_only(cls, root: Path) -> dict:
        return json.loads((Path(root) / SIDECAR).read_text())

    @classmethod
    def load(cls, root: Path) -> IndexStore:
        root = Path(root)
        side = root / SIDECAR
        if not side.exists():
            raise IndexMissingError(f"no index in {root}", "run `logoid build-index` first")
        for _ in range(_LOAD_TRIES):
            meta = json.loads(side.read_text())
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise IndexMismatchError(
                    f"index in {root} has schema version {meta.get('schema_version')}, this logoid reads "
                    f"{SCHEMA_VERSION}", "rebuild it with `logoid build-index`",
                )
            pins = _pin_files(root, meta)
            if _files_present(root, meta):
                break
            # a writer swept these files between our reading the sidecar and pinning them: a newer one is in place
            _release(pins)
            time.sleep(0.01)
        else:
            raise IndexMissingError(f"the index in {root} names files that are missing",
                                    "rebuild it with `logoid build-index`")
        store = cls(root=root, meta=meta, _pins=pins)
        model = meta.get("model") or {}
        # The weights hash this index recorded for its model's sources: a query embedder with the same sources
        # then checks against it without building the text tower it does not use (logoid.engine.towers).
        remember_weights(model.get("source_fingerprint"), model.get("weights_sha256"), model.get("model_id"))
        files = meta.get("files", {})
        if backend_kind(meta) == MILVUS:
            store.vectors = _open_milvus(root, meta["backend"], files.get("milvus_pending"))
        elif files.get("vectors"):
            store.vectors = VectorIndex.load(root / files["vectors"], IndexConfig.from_dict(meta.get("index_config", {})))
        return store

    @property
    def backend(self) -> str:
        """Where the global vectors live: "faiss" or "milvus"."""
        return backend_kind(self.meta)

    @property
    def descriptors(self):
        """The local-feature descriptor index, loaded on first use (None if not built)."""
        if self._descriptors is None:
            files = self.meta.get("files", {})
            name = files.get("descriptors")
            if name:
                from .descriptors import DescriptorIndex
                from .milvus_descriptors import MilvusDescriptorIndex, is_milvus_descriptors

                if is_milvus_descriptors(self.root / name):
                    pending = files.get("descriptors_pending")
                    self._descriptors = MilvusDescriptorIndex.load(
                        self.root / name, home=self.root.parent, pending=self.root / pending if pending else None)
                else:
                    self._descriptors = DescriptorIndex.load(self.root / name)
        return self._descriptors

    @descriptors.setter
    def descriptors(self, value) -> None:
        self._descriptors = value

    @property
    def names(self):
        """The fuzzy name index, loaded on first use (None if not built)."""
        if self._names is None:
            name = self.meta.get("files", {}).get("names")
            if name:
                from .names import NameIndex

                self._names = NameIndex.load(self.root / name)
        return self._names

    @names.setter
    def names(self, value) -> None:
        self._names = value

    def close(self) -> None:
        """Release this store's pins on its generation files (a later commit may then sweep them)."""
        _release(self._pins)
        self._pins = []

    def __del__(self) -> None:
        _release(getattr(self, "_pins", []))

    def image_ids(self) -> set[int]:
        """The catalog images the global vectors hold (each image's variants share its id)."""
        if self.vectors is None:
            return set()
        return {int(i) for i in decode_ids(np.asarray(self.vectors.ids(), np.int64))[0]}

    @classmethod
    def patch_meta(cls, root: Path, updates: dict) -> dict:
        """Change sidecar entries (calibration, fusion) of the index as it is now: the caller holds the home's
        write lock, so no other commit is lost by writing a sidecar read earlier. Returns the new metadata."""
        root = Path(root)
        meta = cls.load_meta_only(root)
        meta.update(updates)
        meta["updated_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(root / SIDECAR, meta)
        return meta

    def require_vectors(self):
        if self.vectors is None:
            raise IndexMissingError(f"the index in {self.root} has no vectors", "run `logoid build-index`")
        return self.vectors

    # ---- model check ---------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The registry name or checkpoint path of the model that built the vectors."""
        return str(self.meta.get("model", {}).get("model"))

    def check_model(self, model_info: dict) -> None:
        """Refuse to mix vectors of two models: the query embedder must be the one that built the index.

        An embedder that passes and names its sources (``source_fingerprint``) has them noted in the model record,
        so an index built before fingerprints were recorded gets one at its next commit (a write's)."""
        built = self.meta.get("model", {})
        same = (built.get("weights_sha256") == model_info.get("weights_sha256")
                and built.get("embed_dim") == model_info.get("embed_dim"))
        if same and model_info.get("source_fingerprint") and "model" in self.meta:
            self.meta["model"]["source_fingerprint"] = model_info["source_fingerprint"]
        if not same:
            raise IndexMismatchError(
                f"the index was built with model {built.get('model')!r} (weights {str(built.get('weights_sha256'))[:12]}),"
                f" not {model_info.get('model')!r} (weights {str(model_info.get('weights_sha256'))[:12]})",
                f"query with `--model {built.get('model')}` or rebuild with `logoid build-index --model "
                f"{model_info.get('model')}`",
            )

    # ---- saving --------------------------------------------------------------------------
    def commit(self) -> None:
        """Write every loaded component as a new generation, then atomically switch the sidecar to it."""
        self.root.mkdir(parents=True, exist_ok=True)
        gen = int(self.meta.get("generation", 0)) + 1
        files = dict(self.meta.get("files", {}))
        previous = dict(self.meta.get("backend") or {"kind": FAISS})
        milvus = self.vectors is not None and not isinstance(self.vectors, VectorIndex)
        if milvus:
            files.pop("vectors", None)
            files.pop("milvus_pending", None)
            if self.vectors.dirty:  # applied after the commit point; until then readers merge the log
                files["milvus_pending"] = f"milvus-pending-{gen:05d}.npz"
                self.vectors.save_pending(self.root / files["milvus_pending"])
            self.meta["backend"] = self.vectors.backend_meta()
            self.meta.pop("index_config", None)
        elif self.vectors is not None:
            files["vectors"] = f"vectors-{gen:05d}.faiss"
            self.vectors.save(self.root / files["vectors"])
            self.meta["index_config"] = self.vectors.config.to_dict()
            self.meta["backend"] = {"kind": FAISS}
        milvus_desc = getattr(self._descriptors, "dirty", None) is not None  # MilvusDescriptorIndex
        if self._descriptors is not None:
            files.pop("descriptors_pending", None)
            if milvus_desc and self._descriptors.dirty:  # as the vectors' log: applied after the commit point
                files["descriptors_pending"] = f"milvus-desc-pending-{gen:05d}.npz"
                self._descriptors.save_pending(self.root / files["descriptors_pending"])
            files["descriptors"] = f"descriptors-{gen:05d}"
            self._descriptors.save(self.root / files["descriptors"])
        if self._names is not None:
            files["names"] = f"names-{gen:05d}.npz"
            self._names.save(self.root / files["names"])
        self.meta.update(
            schema_version=SCHEMA_VERSION,
            generation=gen,
            files=files,
            updated_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        self.meta["counts"] = {
            **self.meta.get("counts", {}),
            "vectors": self.vectors.ntotal if self.vectors is not None else 0,
        }
        fault_point("index-files-written")
        write_json_atomic(self.root / SIDECAR, self.meta)
        fault_point("index-committed")
        # The rename above is the commit; what follows only tidies up. A Milvus hiccup here must not undo the
        # caller's catalog transaction: the pending log stays named by the sidecar, readers merge it, and the
        # next commit applies it.
        try:
            if milvus and files.get("milvus_pending"):
                self.vectors.apply_pending()
                files.pop("milvus_pending")
                write_json_atomic(self.root / SIDECAR, self.meta)  # the same generation, its log applied
            if milvus_desc and files.get("descriptors_pending"):
                self._descriptors.apply_pending()
                files.pop("descriptors_pending")
                write_json_atomic(self.root / SIDECAR, self.meta)
            self._drop_stale_collections(previous)
        except Exception as e:  # noqa: BLE001 - any failure here leaves a consistent, committed index
            warnings.warn(f"index committed; Milvus clean-up deferred to the next change ({e})", RuntimeWarning,
                          stacklevel=2)
        # Our own pins would keep the files we loaded from being swept: hold the new sidecar's instead.
        old_pins, self._pins = self._pins, _pin_files(self.root, self.meta)
        _release(old_pins)
        self._sweep(set(files.values()))

    def _drop_stale_collections(self, previous: dict) -> None:
        """After the commit: drop Milvus collections of this home that the sidecar no longer names."""
        current = self.meta.get("backend") or {}
        if current.get("kind") == MILVUS:
            self.vectors.drop_other_generations(keep=self._descriptor_collections())
        moved = any(previous.get(k) != current.get(k) for k in ("kind", "uri", "prefix"))
        if previous.get("kind") == MILVUS and moved:  # switched to FAISS, another server or another prefix
            from .milvus import drop_backend

            drop_backend(previous, self.root.parent, keep=current.get("collection"))

    def _descriptor_collections(self) -> tuple[str, ...]:
        """The Milvus collection of the descriptors the sidecar names, if they live in Milvus (loaded or not)."""
        if self._descriptors is not None:
            return (self._descriptors.collection,) if hasattr(self._descriptors, "collection") else ()
        name = (self.meta.get("files") or {}).get("descriptors")
        side = self.root / f"{name}.json"
        if not name or not side.exists():
            return ()
        return tuple(filter(None, [(json.loads(side.read_text()).get("backend") or {}).get("collection")]))

    def _sweep(self, keep: set[str]) -> None:
        """Delete the files no sidecar names any more (by stem: a component may span several files), except those
        a reader still pins."""
        keep_stems = {_stem(k) for k in keep}
        stale: dict[str, list[Path]] = {}
        for p in self.root.iterdir():
            if p.name != SIDECAR and not p.name.startswith(".") and _stem(p.name) not in keep_stems:
                stale.setdefault(_stem(p.name), []).append(p)
        for lock in self.root.glob(".pin-*.lock"):  # pins of files already gone
            stem = lock.name[len(".pin-"):-len(".lock")]
            if stem not in keep_stems:
                stale.setdefault(stem, [])
        for stem, paths in stale.items():
            lock = self.root / f".pin-{stem}.lock"
            held = try_exclusive(lock) if PINS else None
            if PINS and held is None:
                continue  # a reader still uses these files; a later commit sweeps them
            try:
                for p in paths:
                    if p.is_file():
                        p.unlink(missing_ok=True)
                    elif p.is_dir():
                        import shutil

                        shutil.rmtree(p, ignore_errors=True)
                lock.unlink(missing_ok=True)
            finally:
                if held is not None:
                    held.close()


def _stem(name: str) -> str:
    """The component a file belongs to: ``vectors-00012`` for ``vectors-00012.faiss`` and its ``.rows.npy``."""
    return str(name).split(".")[0]


def _pin_files(root: Path, meta: dict) -> list:
    pins = [pin(root / f".pin-{stem}.lock") for stem in sorted({_stem(n) for n in (meta.get("files") or {}).values()})]
    return [p for p in pins if p is not None]


def _release(pins: list) -> None:
    for f in pins:
        f.close()


def _files_present(root: Path, meta: dict) -> bool:
    """Every component file the sidecar names is on disk (a descriptor index is named by its stem)."""
    for key, name in (meta.get("files") or {}).items():
        path = root / (f"{name}.json" if key == "descriptors" else name)
        if not path.exists():
            return False
    return True


def _open_milvus(root: Path, backend: dict, pending: str | None):
    vectors = MilvusVectorIndex.open(MilvusConfig.from_dict(backend), backend["collection"], int(backend["dim"]),
                                     home=root.parent)
    if pending:  # a commit that stopped between its rename and applying its log
        vectors.load_pending(root / pending)
    return vectors
