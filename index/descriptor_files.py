"""The descriptor index on disk: :func:`save_index` and :func:`load_index` behind ``DescriptorIndex.save`` / ``load``.

An index at ``path`` is ``path.<token>.faiss`` (the FAISS index), ``path.<token>.refs.npy`` (per (image, variant),
in key order: image, variant, width, height, keypoint count), ``path.<token>.xy.npy`` (keypoint coordinates,
concatenated in that order), with re-ranking ``path.<token>.codes.npy`` (the SQ8 codes in the same order) and
``path.<token>.sq.npy`` (the quantiser), and ``path.json`` (sidecar: schema, config, counts, the file names), each
written atomically, the sidecar last. :func:`load_index` memory-maps coordinates and codes (``mmap=True``): resident
memory is then the FAISS index (~40 B a descriptor) and a few arrays per reference, while a query touches only its
candidates' code rows and its shortlist's coordinates. Indexes saved before this layout (``path.<token>.npz``)
still load, into RAM.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from logoid.core.atomic import atomic_path, write_json_atomic
from logoid.core.errors import IndexMismatchError, IndexMissingError

from .descriptor_layout import KeyedRows, read_npy, write_npy
from .descriptor_structure import SQ8, CodeStore, DescriptorConfig, zero_block_tails

if TYPE_CHECKING:  # typing only: descriptors.py imports this module
    from .descriptors import DescriptorIndex

SCHEMA_VERSION = 2  # 2: coordinates and codes in .npy files (memory-mapped on load); 1: one .npz (still read)
READS = (1, 2)
KIND = "logoid-descriptors"


def geometry_arrays(geo: KeyedRows) -> tuple[np.ndarray, np.ndarray, Iterator[np.ndarray]]:
    """What is saved of a geometry table, in key order: refs (n, 5) int64 (image, variant, w, h, keypoints),
    offsets (n + 1,) into the coordinates, and the coordinates as row blocks."""
    keys, slots = geo.live_sorted()
    counts = geo.counts_of(slots)
    refs = np.column_stack([keys >> 1, keys & 1, geo.aux_of(slots), counts]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return refs.reshape(-1, 5), offsets, geo.blocks(slots)


def geometry_from_arrays(owners: np.ndarray, sizes: np.ndarray, offsets: np.ndarray, xy: np.ndarray) -> KeyedRows:
    """The table of entries ``owners[i]`` = (image, variant) with image size ``sizes[i]`` = (w, h) and coordinates
    ``xy[offsets[i]:offsets[i + 1]]`` (as saved)."""
    owners = np.asarray(owners, np.int64).reshape(-1, 2)
    return KeyedRows.from_arrays(xy, owners[:, 0] * 2 + owners[:, 1], offsets,
                                 aux=np.asarray(sizes, np.int64).reshape(-1, 2))


def save_index(dindex: DescriptorIndex, path: str | Path) -> None:
    """Write ``dindex``'s files and (last) the ``path.json`` sidecar naming them (see ``DescriptorIndex.save``)."""
    import faiss

    path = Path(path)
    index = dindex._require_index()
    codes = dindex._codes
    token = uuid.uuid4().hex[:8]
    parts = ["faiss", "refs", "xy"] + (["codes", "sq"] if codes is not None else [])
    files = {p: _file(path, f".{token}.faiss" if p == "faiss" else f".{token}.{p}.npy").name for p in parts}
    with atomic_path(path.parent / files["faiss"]) as tmp:
        faiss.write_index(index, str(tmp))
    refs, offsets, xy_blocks = geometry_arrays(dindex._geo)
    rows = int(offsets[-1])
    write_npy(path.parent / files["xy"], (rows, 2), np.float32, xy_blocks)
    if codes is not None:  # re-ranking codes in the coordinates' order
        slots = codes.rows.slots(refs[:, 0] * 2 + refs[:, 1])
        if (slots < 0).any() or codes.rows.rows_of(slots) != rows:
            raise IndexMismatchError("the re-ranking codes do not match the keypoints", "rebuild the index")
        write_npy(path.parent / files["codes"], (rows, codes.dim), np.uint8, codes.rows.blocks(slots))
        _save_npy(path.parent / files["sq"], np.stack([codes.sq.vmin, codes.sq.step]))
    _save_npy(path.parent / files["refs"], refs)
    write_json_atomic(_file(path, ".json"), {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "config": {**dindex.config.to_dict(), **({"refine": dindex.saved_refine} if dindex.saved_refine else {})},
        "structure": dindex.structure(),
        "feature_config": dindex.feature_config,
        "ntotal": dindex.ntotal,
        "images": len(dindex.image_ids()),
        "entries": len(refs),
        "files": files,
    })
    keep = set(files.values())
    for p in path.parent.glob(f"{path.name}.*"):  # earlier saves' files (and the unversioned ones of old logoid)
        if p.suffix in (".faiss", ".npz", ".npy") and p.name not in keep:
            p.unlink(missing_ok=True)  # a mapping of it stays readable (POSIX) until this process drops it


def load_index(cls: type[DescriptorIndex], path: str | Path, mmap: bool = True, refine: int | None = None
               ) -> DescriptorIndex:
    """Read an index written by :func:`save_index` as a ``cls`` (see ``DescriptorIndex.load``)."""
    import faiss

    path = Path(path)
    side = _file(path, ".json")
    if not side.exists():
        raise IndexMissingError(f"no descriptor index at {path}", "run `logoid build-index` first")
    meta = json.loads(side.read_text())
    if meta.get("schema_version") not in READS or meta.get("kind") != KIND:
        raise IndexMismatchError(f"{side} has descriptor schema {meta.get('schema_version')}, "
                                 f"this logoid reads {SCHEMA_VERSION}", "rebuild with `logoid build-index`")
    config = DescriptorConfig.from_dict(meta.get("config", {}))
    saved_refine = None
    if refine is None and config.refines() and config.rerank_budget_mb is not None and \
            int(meta.get("ntotal") or 0) * 128 / 2**20 > config.rerank_budget_mb:
        saved_refine, refine = config.refine, 0  # over the budget: no re-ranking (DescriptorConfig.rerank_budget_mb)
    if refine is not None:
        config = DescriptorConfig.from_dict({**config.to_dict(), "refine": int(refine)})
    files = meta.get("files") or {}  # saved before versioned file names: path.faiss / path.npz
    index = faiss.read_index(str(path.parent / files["faiss"] if files else _file(path, ".faiss")))
    zero_block_tails(index)  # indexes saved before remove() zeroed them may carry stale codes in their last blocks
    obj = cls(config=config, feature_config=meta.get("feature_config", {}), _index=index)
    obj.saved_refine = saved_refine
    obj.set_search_params()
    if "refs" in files:
        refs = np.load(path.parent / files["refs"])
        owners, sizes = refs[:, :2], refs[:, 2:4]
        offsets = np.concatenate([[0], np.cumsum(refs[:, 4])]).astype(np.int64)
        xy = read_npy(path.parent / files["xy"], mmap)
        codes = read_npy(path.parent / files["codes"], mmap or config.refine == 0, random=True) \
            if "codes" in files else None
        sq = np.load(path.parent / files["sq"]) if "codes" in files else None
    else:  # schema 1: one .npz (read whole: an .npz member cannot be mapped)
        with np.load(path.parent / files["npz"] if files else _file(path, ".npz")) as z:
            owners, offsets, xy, sizes = z["keys"], z["offsets"], z["xy"], z["sizes"]
            codes = z["codes"] if "codes" in z.files else None
            sq = np.stack([z["sq_vmin"], z["sq_step"]]) if codes is not None else None
    obj._geo = geometry_from_arrays(owners, sizes, offsets, xy)
    if codes is not None and sq is not None:
        keys = np.asarray(owners[:, 0], np.int64) * 2 + np.asarray(owners[:, 1], np.int64)
        obj._codes = CodeStore.from_base(SQ8(sq[0], sq[1]), keys, offsets, codes)
    rows = int(offsets[-1])
    if rows != obj.ntotal or obj.ntotal != meta.get("ntotal") or len(xy) != rows or \
            (codes is not None and len(codes) != rows):
        raise IndexMismatchError(f"descriptor index at {path} is inconsistent ({obj.ntotal} descriptors, "
                                 f"{rows} keypoints)", "rebuild with `logoid build-index`")
    return obj


def _save_npy(target: Path, arr: np.ndarray) -> None:
    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, arr)


def _file(path: Path, suffix: str) -> Path:
    # Suffixes are appended (not replaced): store.py names components like "descriptors-00003".
    return path.with_name(path.name + suffix)


__all__ = ["SCHEMA_VERSION", "READS", "save_index", "load_index", "geometry_arrays", "geometry_from_arrays"]
