"""The descriptor index: every reference RootSIFT descriptor in one FAISS index.

Each FAISS id encodes its owner (``descriptor_base.py``, which also holds what the Milvus index shares: keypoint
coordinates and image sizes per (image, variant) for geometric verification, and the ratio-test matching).

Structure by size (``DescriptorConfig.choose``): exact ``Flat`` below ``exact_below`` descriptors; above,
``IVF{nlist}_HNSW32,PQ64x4fs`` (an HNSW graph over the list centroids, 32-byte 4-bit PQ codes scanned with
SIMD fast-scan, not residual) whose ``k·refine`` candidates are re-ranked by 8-bit scalar-quantised copies
of the descriptors (``descriptor_structure.py``): at 10k reference images (4.6M descriptors) it answers a photo in a
fraction of IVF-Flat's time and memory with the same recall (BENCHMARKS.md#local-e2e).

On disk (``descriptor_files.py``): the FAISS index, the keypoint coordinates and re-ranking codes in ``.npy``
files (memory-mapped on load) and a JSON sidecar naming them, written last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from logoid.core.errors import ConfigError, IndexMissingError
from logoid.core.pool import thread_map, workers
from logoid.engine.local import DESC_DIM, ExtractConfig, Features
from logoid.index.descriptor_base import (
    KP_BITS,
    MAX_IMAGE_ID,
    OWNER_SHIFT,
    VARIANT_BITS,
    DescriptorBase,
    _fc_dict,
    decode_ids,
    encode_ids,
    geometry_rows,
    group_matches,
    ratio_matches,
)
from logoid.index.descriptor_files import load_index, save_index
from logoid.index.descriptor_layout import KeyedRows, entry_key
from logoid.index.descriptor_structure import (
    SQ8,
    CodeStore,
    DescriptorConfig,
    faiss_bytes,
    sample_rows,
    training_pool,
    zero_block_tails,
)

if TYPE_CHECKING:
    import faiss

#: Most stored descriptors a restricted search compares exactly (:meth:`DescriptorIndex._restricted_exact`); a
#: shortlist of 50 references holds ~20k.
EXACT_RESTRICT_ROWS = 200_000


@dataclass
class DescriptorIndex(DescriptorBase):
    """FAISS (L2) index of reference RootSIFT descriptors with keypoint coordinates per (image, variant)."""

    config: DescriptorConfig = field(default_factory=DescriptorConfig)
    # ExtractConfig.to_dict() of the reference extraction (indexes built before the local settings were split by
    # stage hold the flat dict of every local setting; ExtractConfig.from_dict reads both)
    feature_config: dict = field(default_factory=dict)
    _index: faiss.Index | None = None
    _geo: KeyedRows = field(default_factory=geometry_rows)  # (image_id, variant) -> (n, 2) float32 px, aux (w, h)
    _codes: CodeStore | None = None  # re-ranking copies (``config.refines()``), trained with the IVF
    # Folder for the rows put while building (coordinates and codes, 136 B a descriptor) as unnamed files: a
    # 180k-reference build's 17 GB of codes are then file-backed pages the kernel writes back, not anonymous memory
    spill: Path | None = None
    # ``config.refine`` as saved, where loading turned re-ranking off for the memory budget (saved back unchanged)
    saved_refine: int | None = None

    def __post_init__(self) -> None:
        if self.spill is not None:
            self.spill = self._geo.spill = Path(self.spill)
        if self._index is None and not self.config.ivf:
            import faiss

            self._index = faiss.index_factory(DESC_DIM, "IDMap,Flat", faiss.METRIC_L2)

    # ---- building --------------------------------------------------------------------------
    @classmethod
    def build(cls, items: Iterable[tuple[int, list[Features]]], config: DescriptorConfig | None = None,
              feature_config: ExtractConfig | dict | None = None, spill: Path | None = None) -> DescriptorIndex:
        """Index ``(image_id, [normal, inverted])`` items (with ``config.flip_inverted``, the normal variants only);
        IVF (trained on a sample) when large or asked.

        ``items``: a list, or any re-iterable (each ``iter()`` yields the same sequence, e.g. features loaded
        from disk one reference at a time), read twice: once to count the descriptors and draw the training
        sample (:func:`training_pool`), once to add them in batches; what is held at once is the index being
        built, one batch and the sample. An iterator (a generator) is read into a list first. Deterministic:
        the same items give the same index; up to 3·``train_size`` descriptors the sample is the one a single
        ``sample_rows`` over all of them draws. ``spill``: see the field.
        """
        config = config or DescriptorConfig()
        if iter(items) is items:  # an iterator can be read once only
            items = list(items)
        use_ivf, pool, n = False, [], 0
        if config.ivf is not False:
            n, pool = training_pool(items, config)
            use_ivf = config.ivf if config.ivf is not None else n >= config.exact_below
        cfg = DescriptorConfig.from_dict({**config.to_dict(), "ivf": bool(use_ivf)})
        idx = cls(config=cfg, feature_config=_fc_dict(feature_config), spill=spill)
        if use_ivf:
            idx.train(sample_rows(pool, cfg.train_size(n), cfg.seed), n_expected=n)
        del pool
        idx.add_many(items)
        return idx

    def train(self, sample: np.ndarray, n_expected: int | None = None) -> None:
        """Create and train the IVF structure on ``sample`` descriptors (IVF indexes only).

        ``n_expected``: descriptors the index will hold (sizes the list count); default the sample's size.
        """
        import faiss

        if not self.config.ivf:
            raise ConfigError("train() is for IVF descriptor indexes; a flat index needs no training")
        n = int(sample.shape[0])
        spec = self.config.choose(n_expected or n)
        nlist = self.config.auto_nlist(n_expected or n)
        if n < nlist:
            raise ConfigError(f"an IVF index with {nlist} lists needs at least {nlist} training descriptors, got {n}",
                              "use a flat index (ivf=False) for small catalogs")
        size = self.config.train_size(n_expected or n)
        if n > size:
            rng = np.random.default_rng(self.config.seed)
            sample = sample[rng.choice(n, size=size, replace=False)]
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        index = faiss.index_factory(DESC_DIM, spec.removesuffix(",Refine(SQ8)"), faiss.METRIC_L2)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10  # FAISS's 25 k-means iterations cost 2.5x the time for little (IndexConfig.kmeans_iters)
        if self.config.codes.endswith("fs"):
            ivf.by_residual = False
        index.train(sample)
        self._index = index
        self.set_search_params()
        self._codes = CodeStore(SQ8.train(sample), spill=self.spill) if self.config.refines() else None

    def set_search_params(self) -> None:
        """Apply ``config.nprobe`` and ``config.ef_search`` to the built index (again after changing them)."""
        import faiss

        if not self.config.ivf or self._index is None:
            return
        ivf = faiss.extract_index_ivf(self._index)
        ivf.nprobe = self.config.nprobe
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(self.config.ef_search, self.config.nprobe)

    def _require_index(self) -> faiss.Index:
        if self._index is None:
            raise IndexMissingError("the IVF descriptor index is not trained yet", "call train() or build()")
        return self._index

    def add(self, image_id: int, feats_list: list[Features]) -> int:
        """Add the features of one reference image (list index = variant); replaces any earlier entry.

        Returns the number of descriptors added.
        """
        return self.add_many([(image_id, feats_list)])

    def add_many(self, items: Iterable[tuple[int, list[Features]]], batch: int = 200_000) -> int:
        """:meth:`add` for many images, handing FAISS ~``batch`` descriptors per call (a call per image costs
        a few ms on fast-scan lists: a minute at 10k images). Returns the number of descriptors added."""
        index = self._require_index()
        descs: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        added = pending = 0
        try:
            for image_id, feats_list in items:
                if descs and self.contains(image_id):  # a replacement: what is pending may be the one it replaces
                    index.add_with_ids(np.ascontiguousarray(np.concatenate(descs), np.float32), np.concatenate(ids))
                    added, pending, descs, ids = added + pending, 0, [], []
                for desc, fid in self._register(int(image_id), feats_list):
                    descs.append(desc)
                    ids.append(fid)
                    pending += len(desc)
                if pending >= batch:
                    index.add_with_ids(np.ascontiguousarray(np.concatenate(descs), np.float32), np.concatenate(ids))
                    added, pending, descs, ids = added + pending, 0, [], []
        finally:  # an item that fails its checks registers nothing; every item registered before it is indexed
            if descs:
                index.add_with_ids(np.ascontiguousarray(np.concatenate(descs), np.float32), np.concatenate(ids))
        return added + pending

    @property
    def flip_inverted(self) -> bool:
        # references extracted without their inverted variant (ExtractConfig.enrol_inverted) match normal prints only
        return self.config.flip_inverted and bool(self.feature_config.get("enrol_inverted", True))

    def _register(self, image_id: int, feats_list: list[Features]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Check one image's features, keep its coordinates (and re-ranking codes); (descriptors, ids) to index."""
        self._validate(image_id, feats_list)
        feats_list = self._stored(feats_list)
        if self.contains(image_id):
            self.remove([image_id])
        if self._codes is not None:
            for variant, f in enumerate(feats_list):
                self._codes.put((image_id, variant), f.desc)
        return self._keep(image_id, feats_list)

    def remove(self, image_ids: Iterable[int]) -> int:
        """Remove every descriptor of these reference images (all variants); returns how many went."""
        import faiss

        index = self._require_index()
        removed = 0
        for image_id in {int(i) for i in image_ids}:
            lo = image_id << OWNER_SHIFT
            removed += int(index.remove_ids(faiss.IDSelectorRange(lo, lo + (1 << OWNER_SHIFT))))
            for v in range(1 << VARIANT_BITS):
                self._geo.drop(entry_key(image_id, v))
                if self._codes is not None:
                    self._codes.drop((image_id, v))
        if removed:
            zero_block_tails(index)
        return removed

    # ---- reading ---------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def _selector(self, restrict: Iterable[int]) -> tuple[faiss.IDSelectorBatch, np.ndarray]:
        import faiss

        parts = []
        for i in sorted(restrict):
            for v in range(1 << VARIANT_BITS):
                n = self._geo.count(entry_key(i, v)) if 0 <= i <= MAX_IMAGE_ID else None
                if n is not None:
                    parts.append(encode_ids(i, v, n))
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return faiss.IDSelectorBatch(ids), ids

    def _search(self, desc: np.ndarray, k: int, restrict: Iterable[int] | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        nq = desc.shape[0]
        if nq == 0 or self.ntotal == 0:
            return np.full((nq, k), np.inf, np.float32), np.full((nq, k, 3), -1, np.int64)
        index = self._require_index()
        codes = self._codes if self.config.refine > 0 else None  # refine = 0: FAISS's distances, codes untouched
        kk = k * self.config.refine if codes is not None else k  # candidates to re-rank
        if restrict is None:
            D, ids = index.search(desc, kk)
        elif (near := self._restricted_exact(desc, k, {int(i) for i in restrict})) is not None:
            return near
        else:
            sel, _keep = self._selector({int(i) for i in restrict})
            # Attribute assignment is what faiss's kwargs constructor does (its stubs omit the kwargs).
            params: faiss.SearchParameters
            if self.config.ivf:
                ivf_params = faiss.SearchParametersIVF()
                ivf_params.sel = sel
                ivf_params.nprobe = self.config.nprobe
                params = ivf_params
            else:
                params = faiss.SearchParameters()
                params.sel = sel
            D, ids = index.search(desc, kk, params=params)
        owners = np.stack(decode_ids(ids), axis=-1)
        if codes is not None:
            codes.rows.prepare()
            # numpy releases the GIL in the gather and the distance pass: a photo's rows are re-ranked in slices
            # side by side when OpenCV / logoid may use several threads
            n = min(workers(), max(1, nq // 512))
            if n < 2:
                return codes.rerank(desc, owners, k)
            cuts = np.linspace(0, nq, n + 1).astype(int)
            parts = thread_map(lambda c: codes.rerank(desc[c[0]:c[1]], owners[c[0]:c[1]], k),
                               list(zip(cuts[:-1], cuts[1:], strict=True)), min_items=2)
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        D = np.where(ids < 0, np.inf, D).astype(np.float32)
        return D, owners

    def _restricted_exact(self, desc: np.ndarray, k: int, restrict: set[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """A search of a few references (the global shortlist's, :func:`~logoid.identify.match.match_local`'s extra
        candidates) against all their descriptors, decoded from the re-ranking codes: None where the index is not
        IVF, has no codes, or the references hold more than :data:`EXACT_RESTRICT_ROWS` descriptors.

        An IVF search with an id selector scans the same lists as a whole search, off fast-scan's SIMD path, and
        grows with the catalog. The references' own rows (~1k each) are compared with every photo row exactly
        instead, and no true neighbour is lost in an IVF list not visited: at 50k references, 20 asked, a median
        0.30 s a photo against the selector's 0.73 s and the whole search's 0.72 s (scratch, Intel Xeon, 2 threads).
        Distances are the codes', as the re-ranking's are. The codes may be memory-mapped: only the references'
        pages are read.
        """
        codes = self._codes
        if not self.config.ivf or codes is None:
            return None
        keys, counts = [], []
        for i in sorted(restrict):
            if not 0 <= i <= MAX_IMAGE_ID:
                continue
            for v in range(1 << VARIANT_BITS):
                n = self._geo.count(entry_key(i, v))
                if n is None:
                    continue
                if codes.rows.count(entry_key(i, v)) != n:
                    return None  # codes and keypoints disagree: leave it to FAISS
                keys.append((i, v))
                counts.append(n)
        if sum(counts) > EXACT_RESTRICT_ROWS:
            return None
        nq = desc.shape[0]
        D = np.full((nq, k), np.inf, np.float32)
        owners = np.full((nq, k, 3), -1, np.int64)
        if not keys or sum(counts) == 0:
            return D, owners
        import faiss

        codes.rows.prepare()
        base = np.ascontiguousarray(np.concatenate([codes.sq.decode(codes.get(key)) for key in keys]), np.float32)
        ids = np.concatenate([encode_ids(i, v, n) for (i, v), n in zip(keys, counts, strict=True)])
        kk = min(k, len(base))
        d, rows = faiss.knn(desc, base, kk)
        D[:, :kk] = np.maximum(d, 0)
        owners[:, :kk] = np.stack(decode_ids(ids[rows]), axis=-1)
        return D, owners

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write this save's files (``path.<token>.faiss``, ``.refs.npy``, ``.xy.npy``, with re-ranking ``.codes.npy``
        and ``.sq.npy``) and (last) the ``path.json`` sidecar naming them.

        The sidecar is the commit point: a crash before it leaves the previous save readable (its files are
        only removed after the new sidecar is in place), never a FAISS file of one save beside the keypoints
        of another. Rows are written in blocks from wherever they lie (memory map, RAM, spill); removed
        references' rows are left out.
        """
        save_index(self, path)

    def structure(self) -> str:
        """What this index is, e.g. ``Flat`` or ``IVF2048_HNSW32,PQ64x4fs,Refine(SQ8)``."""
        import faiss

        if not self.config.ivf or self._index is None:
            return "Flat"
        ivf = faiss.extract_index_ivf(self._index)
        q = "_HNSW32" if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW) else ""
        reranks = self._codes is not None and self.config.refine > 0
        return f"IVF{ivf.nlist}{q},{self.config.codes}{',Refine(SQ8)' if reranks else ''}"

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes by part: ``faiss`` (the FAISS index, in RAM), ``xy_ram`` / ``xy_mapped`` (keypoint coordinates and
        the per-reference tables / coordinates memory-mapped), ``codes_ram`` / ``codes_mapped`` (re-ranking codes),
        and their sums ``anonymous`` (what must be resident) and ``file_backed`` (mapped files: only the pages a
        query touched are resident, and the kernel may drop them; :func:`~logoid.index.descriptor_layout.
        process_memory` says how many are)."""
        xa, xf = self._geo.memory()
        ca, cf = self._codes.rows.memory() if self._codes is not None else (0, 0)
        fb = faiss_bytes(self._index)
        return {"faiss": fb, "xy_ram": xa, "xy_mapped": xf, "codes_ram": ca, "codes_mapped": cf,
                "anonymous": fb + xa + ca, "file_backed": xf + cf}

    def memory_bytes(self) -> int:
        """Bytes of the FAISS index, re-ranking codes and keypoint coordinates, in RAM or mapped (see
        :meth:`memory_breakdown`)."""
        b = self.memory_breakdown()
        return b["anonymous"] + b["file_backed"]

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, refine: int | None = None) -> DescriptorIndex:
        """Read an index written by :meth:`save`; checks schema and that the parts agree.

        ``mmap``: keypoint coordinates and re-ranking codes stay in their files, memory-mapped read-only (pages are
        read when a query touches them; the codes' mapping without readahead); False reads them into RAM (indexes
        saved as one ``.npz`` always are). ``refine``: overrides ``config.refine`` (0: no re-ranking at search;
        the codes are then mapped, never read, and a later save still writes them and the overridden value).
        """
        return load_index(cls, path, mmap, refine)


__all__ = ["KP_BITS", "OWNER_SHIFT", "VARIANT_BITS", "DescriptorConfig", "DescriptorIndex", "decode_ids", "encode_ids",
           "group_matches", "ratio_matches"]
