"""The descriptor index in Milvus: every reference RootSIFT descriptor a row of one collection (metric ``L2``).

The same contract as the FAISS :class:`~logoid.index.descriptors.DescriptorIndex` as the matcher uses it
(``search`` / ``match`` / ``image_ids`` / ``ref_xy`` / ``ref_size`` / ``add`` / ``remove``): row ids are the
FAISS ids ``(image_id << 21) | (variant << 20) | keypoint``, so a hit's owner is read off its id and an image's
rows are one id range. A photo's descriptors go to Milvus in one batched search (up to 16384 rows a call).
Only the keypoint geometry (coordinates and image sizes per (image, variant)) stays local, in a small file
beside the sidecar: it is read for the shortlisted candidates alone.

Storage and consistency are those of the global vectors (``milvus.py``), through the same
:class:`MilvusVectorIndex`: a collection per generation (``<prefix>_g<generation>_desc``), adds and removes
staged in memory and written on commit to a pending log (``milvus-desc-pending-<generation>.npz``) that the
sidecar names and that is applied after the sidecar rename. On Milvus Lite the collection is IVF_FLAT with every
list probed below 50k rows, exact as FAISS's flat index (:func:`lite_descriptor_config`: Lite's FLAT cannot hold a
photo's L2 search); on a server, the configured index type.

On disk an index at ``path`` is ``path.npz`` (coordinates and sizes) and ``path.json`` (schema, the Milvus
collection and config, counts), the JSON last.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from logoid.core.atomic import atomic_path, write_json_atomic
from logoid.core.errors import IndexMismatchError, IndexMissingError
from logoid.engine.local import DESC_DIM, ExtractConfig, Features

from .descriptor_base import (
    KP_BITS,
    OWNER_SHIFT,
    VARIANT_BITS,
    DescriptorBase,
    _fc_dict,
    decode_ids,
    encode_ids,
    geometry_rows,
)
from .descriptor_files import geometry_arrays, geometry_from_arrays
from .descriptor_layout import KeyedRows, entry_key
from .descriptor_structure import DescriptorConfig
from .milvus import MAX_TOPK, MilvusConfig, MilvusVectorIndex

SCHEMA_VERSION = 1
KIND = "logoid-milvus-descriptors"
SUFFIX = "_desc"  # collection name suffix after the generation's (``<prefix>_g00003_desc``)


@dataclass
class MilvusDescriptorIndex(DescriptorBase):
    """Reference descriptors in a Milvus collection (L2) with keypoint coordinates per (image, variant) locally."""

    rows: MilvusVectorIndex
    feature_config: dict = field(default_factory=dict)  # ExtractConfig.to_dict() of the reference extraction
    _geo: KeyedRows = field(default_factory=geometry_rows)  # (image_id, variant) -> (n, 2) float32 px, aux (w, h)
    # normal variants only, inverted prints found by flipped photo descriptors (DescriptorConfig.flip_inverted);
    # sidecars written before it stored both
    flips: bool = True

    @property
    def flip_inverted(self) -> bool:
        return self.flips and bool(self.feature_config.get("enrol_inverted", True))

    # ---- building --------------------------------------------------------------------------
    @classmethod
    def build(cls, items: Iterable[tuple[int, list[Features]]], config: MilvusConfig, collection: str,
              home: Path | None = None, feature_config: ExtractConfig | dict | None = None,
              flip_inverted: bool = True) -> MilvusDescriptorIndex:
        """A fresh collection ``collection`` with every descriptor of ``(image_id, [normal, inverted])`` items (with
        ``flip_inverted``, of the normal variants)."""
        obj = cls(rows=None, feature_config=_fc_dict(feature_config), flips=flip_inverted)  # type: ignore[arg-type]
        descs, ids = [], []
        for image_id, feats in items:
            for desc, fid in obj._register(int(image_id), feats):
                descs.append(desc)
                ids.append(fid)
        vecs = np.concatenate(descs) if descs else np.zeros((0, DESC_DIM), np.float32)
        config = lite_descriptor_config(config, len(vecs))
        obj.rows = MilvusVectorIndex.build(vecs, np.concatenate(ids) if ids else np.zeros(0, np.int64), config,
                                           collection, home=home, metric="L2", dim=DESC_DIM)
        obj.rows.search_batch = MAX_TOPK
        return obj

    def _register(self, image_id: int, feats_list: list[Features]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Check one image's features (an earlier entry goes only if they pass), keep its coordinates;
        (descriptors, ids) to insert."""
        self._validate(image_id, feats_list)
        if self.contains(image_id):
            self.remove([image_id])
        return self._keep(image_id, self._stored(feats_list))

    # ---- changes (staged until the store commits) -------------------------------------------
    def add(self, image_id: int, feats_list: list[Features]) -> int:
        """Add the features of one reference image (list index = variant); replaces any earlier entry."""
        parts = self._register(int(image_id), feats_list)
        for desc, fid in parts:
            self.rows.add(desc, fid)
        return sum(len(fid) for _, fid in parts)

    def remove(self, image_ids: Iterable[int]) -> int:
        """Remove every descriptor of these reference images (all variants); returns how many went."""
        removed = 0
        for image_id in sorted({int(i) for i in image_ids}):
            ids = []
            for v in range(1 << VARIANT_BITS):
                n = self._geo.drop(entry_key(image_id, v))
                if n is not None:
                    ids.append(encode_ids(image_id, v, n))
            if ids:
                removed += self.rows.remove_ids(np.concatenate(ids))
        return removed

    @property
    def dirty(self) -> bool:
        return self.rows.dirty

    # ---- reading ---------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self.rows.ntotal

    def structure(self) -> str:
        return f"Milvus {self.rows.config.chosen_index()} (L2)"

    def _search(self, desc: np.ndarray, k: int, restrict: Iterable[int] | None) -> tuple[np.ndarray, np.ndarray]:
        nq = desc.shape[0]
        D = np.full((nq, k), np.inf, np.float32)
        ids = np.full((nq, k), -1, np.int64)
        if nq and self.ntotal:
            ranges = None if restrict is None else \
                [(i << OWNER_SHIFT, (i + 1) << OWNER_SHIFT) for i in sorted({int(r) for r in restrict})]
            d, found = self.rows.search(desc, k, id_ranges=ranges)
            # a hit on an image this index has no coordinates for (a newer commit's add, applied by another
            # process after this one loaded) is no hit: it could not be verified
            keys = self._geo.live_sorted()[0]  # (image << VARIANT_BITS) | variant
            known = np.isin(found >> KP_BITS, keys if len(keys) else np.array([-1]))
            d = np.where(known & (found >= 0), d, np.inf).astype(np.float32)
            order = np.argsort(d, axis=1, kind="stable")
            D[:, :d.shape[1]] = np.take_along_axis(d, order, 1)
            ids[:, :d.shape[1]] = np.where(np.isfinite(D[:, :d.shape[1]]), np.take_along_axis(found, order, 1), -1)
        return D, np.stack(decode_ids(ids), axis=-1)

    # ---- commit (IndexStore): pending log, apply, sweep -------------------------------------
    def save_pending(self, path: Path) -> None:
        self.rows.save_pending(path)

    def apply_pending(self) -> None:
        self.rows.apply_pending()

    @property
    def collection(self) -> str:
        return self.rows.collection

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``path.npz`` (coordinates, sizes) and then the ``path.json`` sidecar naming the collection."""
        path = Path(path)
        refs, offsets, blocks = geometry_arrays(self._geo)
        xy = np.concatenate(list(blocks)) if len(refs) else np.zeros((0, 2), np.float32)
        npz = path.with_name(path.name + ".npz")
        with atomic_path(npz, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=refs[:, :2], offsets=offsets, xy=xy.astype(np.float32), sizes=refs[:, 2:4])
        write_json_atomic(path.with_name(path.name + ".json"), {
            "schema_version": SCHEMA_VERSION, "kind": KIND, "backend": self.rows.backend_meta(),
            "feature_config": self.feature_config, "flip_inverted": self.flips, "ntotal": self.ntotal, "images": len(self.image_ids()),
            "entries": len(refs), "files": {"npz": npz.name},
        })

    @classmethod
    def load(cls, path: str | Path, home: Path | None = None, pending: Path | None = None) -> MilvusDescriptorIndex:
        """Open the collection a sidecar written by :meth:`save` names, with its coordinates (and a pending log)."""
        path = Path(path)
        side = path.with_name(path.name + ".json")
        if not side.exists():
            raise IndexMissingError(f"no descriptor index at {path}", "run `logoid build-index` first")
        meta = json.loads(side.read_text())
        if meta.get("schema_version") != SCHEMA_VERSION or meta.get("kind") != KIND:
            raise IndexMismatchError(f"{side} is not a Milvus descriptor index this logoid reads",
                                     "rebuild with `logoid build-index`")
        b = meta["backend"]
        rows = MilvusVectorIndex.open(MilvusConfig.from_dict(b), b["collection"], DESC_DIM, home=home, metric="L2",
                                      what="the index's local descriptors")
        rows.search_batch = MAX_TOPK
        obj = cls(rows=rows, feature_config=meta.get("feature_config", {}), flips=meta.get("flip_inverted", False))
        with np.load(path.parent / meta["files"]["npz"]) as z:
            off, xy, sizes, keys = z["offsets"], z["xy"], z["sizes"], z["keys"]
        obj._geo = geometry_from_arrays(keys, sizes, off, xy)
        if pending is not None:  # a commit that stopped between its rename and applying its log
            rows.load_pending(pending)
        return obj


#: Below this many rows the descriptor collection on Milvus Lite is searched exactly (every IVF list probed).
EXACT_BELOW = 50_000


def lite_descriptor_config(config: MilvusConfig, rows: int) -> MilvusConfig:
    """The descriptor collection's config: on Milvus Lite with no index type asked, ``IVF_FLAT`` with about 4·sqrt(n)
    lists, every list probed below :data:`EXACT_BELOW` rows (exact, as FAISS's flat index), 16 above.

    Lite's ``FLAT`` computes L2 distances by broadcasting (queries × rows × 128 floats): a photo's descriptors against
    100k rows asked for 49 GB. Its ``IVF_FLAT`` runs FAISS inside the process."""
    if config.index_type is not None or not config.is_lite:
        return config
    nlist = DescriptorConfig().auto_nlist(rows)
    return replace(config, index_type="IVF_FLAT", nlist=nlist, nprobe=nlist if rows < EXACT_BELOW else 16)


def is_milvus_descriptors(path: Path) -> bool:
    """Whether the descriptor index saved at ``path`` (its ``.json``) lives in Milvus."""
    side = Path(path).with_name(Path(path).name + ".json")
    return side.exists() and json.loads(side.read_text()).get("kind") == KIND


__all__ = ["MilvusDescriptorIndex", "is_milvus_descriptors", "SUFFIX"]
