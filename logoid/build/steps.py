"""Build and update a home's index from its catalog: augment → embed → FAISS or Milvus, plus local features and names."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np

from logoid.core.errors import ConfigError, ImageError, IndexMissingError
from logoid.core.faults import fault_point
from logoid.core.imageio import load_image
from logoid.core.paths import Home
from logoid.engine.embedder import resolve_precision
from logoid.identify.match import LocalConfig
from logoid.index.backend import MILVUS, backend_kind
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.milvus import MilvusConfig, MilvusVectorIndex
from logoid.index.names import NameIndex
from logoid.index.store import IndexStore
from logoid.index.vectors import IndexConfig, VectorIndex, decode_ids
from logoid.scoring.fusion import DefaultRule
from logoid.scoring.rules import leave_one_out_impostors

from .embedding import Embedded, embed_stage
from .features import default_workers, feature_stage, new_index_variants
from .precision import build_precision, eager_unless_it_freezes, frozen_by_default, index_precision


#: ``progress(desc, total, unit)`` opens a bar for one stage of a build: an object with ``update(n)`` and ``close()``
#: (a tqdm bar). The embedding stage counts variants, the local-feature stage images.
class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


Progress = Callable[[str, int, str], Bar]

#: Below this gallery leave-one-out AUROC the global channel is not trusted to accept on its own.
MIN_GALLERY_AUROC = 0.8


@dataclass
class BuildReport:
    images: int = 0
    vectors: int = 0
    embedded: int = 0  # variants actually run through the model (the rest came from the cache)
    cached: int = 0
    features_extracted: int = 0  # images whose local features were extracted (the rest came from the cache)
    features_cached: int = 0
    descriptors: int = 0
    names: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    backend: dict = field(default_factory=dict)  # where the global vectors went (the sidecar's "backend")
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    removed: int = 0  # images taken out (an update: removed from the catalog, or orphans of a crashed write)
    unindexed: int = 0  # catalog images still not in the index after an update (no model given, or unreadable)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class BuildOptions:
    """What goes into an index besides the global vectors."""

    augment: object = None  # logoid.augment.AugmentConfig; None = defaults
    local: object = None  # logoid.identify.match.LocalConfig (stored in the sidecar); None = defaults
    index: IndexConfig = field(default_factory=IndexConfig)
    with_local: bool = True  # enrol RootSIFT features of every reference image
    with_names: bool = True  # index catalog names for the text channel
    prototypes: bool = False  # index one mean vector per image instead of every variant
    milvus: object = None  # logoid.index.milvus.MilvusConfig: global vectors in Milvus; None = FAISS (default)
    # image tower arithmetic: auto | fp32 | bf16, with "+frozen" for the TorchScript tower (engine.embedder.FROZEN),
    # as given (never probed: "bf16" is eager bf16); None = the home's index's, else engine.embedder.default_precision,
    # its frozen tower falling back to the eager one where it does not trace (logoid.build.precision)
    precision: str | None = None
    workers: int | None = None  # processes extracting local features; None = this machine's cores, 1 = here
    embed_batch: int | None = None  # images per forward pass; None = 8 on a CPU, 128 on a GPU
    descriptors: DescriptorConfig | None = None  # the FAISS descriptor index's settings; None = defaults


def augment_defaults(home: Home):
    """How a build of ``home`` augments by default: :class:`~logoid.augment.AugmentConfig`'s defaults, but the variant
    size and light map its index was built with (homes built before the default became 224 keep 320 px, and before
    float32 light maps their float64 ones), so a rebuild finds every variant it embedded in the cache."""
    from logoid.augment import AugmentConfig

    cfg = AugmentConfig()
    if IndexStore.exists(home.index_dir):
        built = IndexStore.load_meta_only(home.index_dir).get("augment")
        if built:
            old = AugmentConfig.from_dict(built)
            cfg.size, cfg.bw_float64 = old.size, old.bw_float64
    return cfg


def _augment_cfg(opts: BuildOptions, home: Home):
    """``opts.augment``, or :func:`augment_defaults`."""
    return opts.augment if opts.augment is not None else augment_defaults(home)


def _local_cfg(opts: BuildOptions):
    return opts.local or LocalConfig()


def embed_reference(ref, embedder, cache_dir, aug_cfg, report: BuildReport, prototypes=False, precision="fp32",
                    batch_size: int | None = None):
    """Vectors and ids of every augmented variant of one catalog image (cache first, model for the rest), as the
    build's embedding stage makes them; raises :class:`ImageError` for an unreadable image."""
    errors: list[ImageError] = []
    got = embed_stage([ref], embedder, cache_dir, aug_cfg, report, precision=precision, batch_size=batch_size,
                      prototypes=prototypes, on_error=lambda _, e: errors.append(e))
    if errors:
        raise errors[0]
    return got.vectors, got.ids


def reference_features(ref, img, extract_cfg, feature_cache, report: BuildReport | None = None,
                       variants: int | None = None):
    """Local features of one reference image (normal and, by default, inverted; ``variants`` 1: normal only), cached
    by content hash."""
    from logoid.engine.local import extract_reference

    feats = feature_cache.lookup_reference(ref.sha256, extract_cfg, variants)
    if feats is not None:
        if report is not None:
            report.features_cached += 1
        return feats
    feats = extract_reference(img if img is not None else load_image(ref.path), extract_cfg, variants)
    feature_cache.put_reference(ref.sha256, extract_cfg, feats)
    if report is not None:
        report.features_extracted += 1
    return feats


def _skip(report: BuildReport, on_skip, ref, e: ImageError) -> None:
    report.skipped.append((str(ref.path), e.reason))
    if on_skip:
        on_skip(str(ref.path), e.reason)


def _bar(progress: Progress | None, desc: str, total: int, unit: str):
    return progress(desc, total, unit) if progress else None


def _embed_stage(refs, embedder, home: Home, aug_cfg, opts: BuildOptions, precision: str, report: BuildReport,
                 progress: Progress | None, on_skip) -> Embedded:
    """Vectors and ids of every readable reference (``logoid.build.embedding``: batches across references, each
    image's vectors committed to the cache before the next one counts, so a kill loses at most the chunk in
    flight; the next build reads the rest back)."""
    embedder.vectors_id(precision)  # reads the weights (their hash): the bar's rate and ETA start after that
    bar = _bar(progress, "embedding", len(refs) * aug_cfg.n_variants, "variant")
    try:
        return embed_stage(refs, embedder, home.cache_dir, aug_cfg, report, precision=precision,
                           batch_size=opts.embed_batch, prototypes=opts.prototypes, bar=bar,
                           on_error=lambda ref, e: _skip(report, on_skip, ref, e), workers=opts.workers)
    finally:
        if bar is not None:
            bar.close()


def _feature_stage(done: Embedded, extract_cfg, fcache, opts: BuildOptions, report: BuildReport,
                   progress: Progress | None, on_skip):
    """Local features of every embedded reference (``logoid.build.features``: in worker processes, each image's
    files written atomically as it finishes, none kept in memory); the references whose image could not be read
    drop out. Returns the kept references' vectors and the features as an iterable that reads the cache."""
    bar = _bar(progress, "local features", len(done.refs), "img")
    try:
        keep, items = feature_stage(done.refs, extract_cfg, fcache, report, bar=bar, on_skip=on_skip,
                                    workers=opts.workers if opts.workers is not None else default_workers(),
                                    variants=new_index_variants(extract_cfg))
    finally:
        if bar is not None:
            bar.close()
    return done.keep(keep), items


def _name_entries(catalog) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for b in catalog.list_bands():
        entries.append((f"band:{b.id}", b.name))
        entries.extend((f"band:{b.id}", a) for a in (b.aliases or []))
    for a in catalog.list_albums():
        entries.append((f"album:{a.id}", a.title))
    return entries


def _new_names_index(catalog):
    return NameIndex(_name_entries(catalog))


def build_index(
    home: Home,
    catalog,
    embedder,
    opts: BuildOptions | None = None,
    *,
    progress: Progress | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> BuildReport:
    """(Re)build the whole index of ``home`` from ``catalog``. Unchanged images come from the caches.

    Resumable: every image's vectors, then its local features, reach their cache as soon as they are computed, so a
    build killed at any point and run again computes only what the killed one had not finished (``report.cached``,
    ``report.features_cached``) and writes the same index as an uninterrupted build."""
    t0 = time.perf_counter()
    opts = opts or BuildOptions()
    home.ensure()
    aug_cfg = _augment_cfg(opts, home)
    report = BuildReport()
    precision = resolve_precision(opts.precision or build_precision(home, embedder.device), embedder.device)
    if opts.precision is None and frozen_by_default(home, embedder.device):
        precision, why = eager_unless_it_freezes(embedder, precision, opts.embed_batch)
        report.warnings += [why] if why else []
    dindex, local_cfg = None, _local_cfg(opts)
    done = _embed_stage(catalog.images(), embedder, home, aug_cfg, opts, precision, report, progress, on_skip)
    feature_items = None
    if opts.with_local:
        from logoid.engine.local import FeatureCache
        from logoid.index.descriptors import DescriptorIndex

        fcache = FeatureCache(home.cache_dir / "features")
        fcache.sweep_partial(local_cfg.extract)  # a killed build's half-written files (writers hold the home's lock)
        done, feature_items = _feature_stage(done, local_cfg.extract, fcache, opts, report, progress, on_skip)
    report.images = len(done.refs)
    vectors, ids = done.vectors, done.ids
    del done
    # Before the vector index holds its own copy of the vectors: the calibration's scratch copies come and go first.
    calibration = gallery_calibration(catalog, vectors, ids) if not opts.prototypes else {}
    store = IndexStore(root=home.index_dir)
    if IndexStore.exists(home.index_dir):
        old = IndexStore.load_meta_only(home.index_dir)
        store.meta = {k: v for k, v in old.items() if k in ("generation", "files", "backend")}
    store.vectors = _build_vectors(home, store.meta, vectors, ids, opts)
    if feature_items is not None:
        # Built in one go so the index structure (exact or IVF) is chosen for the whole catalog's size; the rows put
        # while building (coordinates, re-ranking codes: 136 B a descriptor, ~9 GB at 180k references) go to unnamed
        # files in the index folder, pages the kernel can write back, not anonymous memory.
        dindex = DescriptorIndex.build(feature_items, config=opts.descriptors, feature_config=local_cfg.extract,
                                       spill=home.index_dir) \
            if opts.milvus is None \
            else _build_milvus_descriptors(home, store.meta, feature_items, local_cfg, opts)
    store.descriptors = dindex
    if opts.with_names:
        store.names = _new_names_index(catalog)
        report.names = len(store.names)
    report.vectors = store.vectors.ntotal
    report.descriptors = dindex.ntotal if dindex is not None else 0
    store.meta.update(
        model=dict(embedder.info, model_id=embedder.model_id, precision=precision),
        augment=aug_cfg.to_dict(),
        augment_hash=aug_cfg.config_hash(),
        local=local_cfg.to_dict() if opts.with_local else None,
        prototypes=opts.prototypes,
        catalog_revision=catalog.revision(),
        catalog_ids=catalog.id_marks(),  # ids the catalog had handed out (logoid/build/sync.py)
        built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        counts={"images": report.images, "vectors": report.vectors, "descriptors": report.descriptors,
                "names": report.names},
    )
    store.meta.update(calibration)
    fault_point("index-staged")
    store.commit()
    report.backend = {k: v for k, v in store.meta.get("backend", {}).items() if k in ("kind", "uri", "collection")}
    report.seconds = time.perf_counter() - t0
    return report


def _build_vectors(home: Home, old_meta: dict, vectors: np.ndarray, ids: np.ndarray, opts: BuildOptions):
    """FAISS by default; with ``opts.milvus`` a fresh Milvus collection for the next generation."""
    if opts.milvus is None:
        return VectorIndex.build(vectors, ids, opts.index)

    cfg = cast(MilvusConfig, opts.milvus)
    old = old_meta.get("backend") or {}
    if not cfg.prefix and old.get("kind") == "milvus":
        cfg.prefix = old.get("prefix", "")  # one prefix per home: its old generations are found and dropped
    collection = cfg.collection_for(int(old_meta.get("generation", 0)) + 1)
    return MilvusVectorIndex.build(vectors, ids, cfg, collection, home=home.root)


def _build_milvus_descriptors(home: Home, old_meta: dict, items, local_cfg, opts: BuildOptions):
    """The descriptors in Milvus beside the global vectors: the same prefix and generation (``_build_vectors`` ran)."""
    from logoid.index.milvus_descriptors import SUFFIX, MilvusDescriptorIndex

    cfg = cast(MilvusConfig, opts.milvus)
    collection = cfg.collection_for(int(old_meta.get("generation", 0)) + 1) + SUFFIX
    return MilvusDescriptorIndex.build(items, cfg, collection, home=home.root, feature_config=local_cfg.extract)


def current_backend(home: Home):
    """The Milvus config of the home's current index, or None when it is FAISS or not built."""
    if not IndexStore.exists(home.index_dir):
        return None
    meta = IndexStore.load_meta_only(home.index_dir)
    if backend_kind(meta) != MILVUS:
        return None

    return MilvusConfig.from_dict(meta["backend"])


def gallery_calibration(catalog, vectors: np.ndarray, ids: np.ndarray) -> dict:
    """Sidecar entries that centre the default rule's global channel on a threshold learnt from the gallery.

    Leave-one-out: each entity's variants are scored against the rest of its own variants (genuine) and
    against every other entity (impostors, the index without it). No photos are needed; `logoid calibrate`
    with real labelled photos replaces this.
    """
    owner = {r.id: f"{r.entity_type}:{r.entity_id}" for r in catalog.images()}
    image_ids, _ = decode_ids(ids)
    # Rows of one image are one run; an entity with one image is a view of ``vectors``, not a copy (1M vectors are
    # 2 GB at 50k references x 20 variants).
    cuts = np.flatnonzero(np.diff(image_ids)) + 1
    groups: dict[str, list[tuple[int, int]]] = {}
    for start, end in zip(np.r_[0, cuts], np.r_[cuts, len(image_ids)], strict=True):
        if end > start:
            groups.setdefault(owner.get(int(image_ids[start]), "?"), []).append((int(start), int(end)))
    gallery = {k: vectors[runs[0][0]:runs[0][1]] if len(runs) == 1 else np.concatenate([vectors[a:b] for a, b in runs])
               for k, runs in groups.items()}
    try:
        cal = leave_one_out_impostors(gallery, objective="balanced_accuracy")
    except ConfigError:
        return {}
    separable = (cal.per_rule["max_score"].get("auroc") or 0.0) >= MIN_GALLERY_AUROC
    # A model that cannot tell the gallery's own variants from other entities (an untrained or random one)
    # must not accept on the global channel alone: centre its sigmoid out of reach.
    rule = DefaultRule(cos_mid=float(cal.threshold) if separable else 1.5)
    return {"fusion": rule.to_dict(), "calibration": {"rule": "max_score", "threshold": rule.threshold,
                                                      "source": "gallery leave-one-out", "global": cal.to_dict()}}


def add_images(home: Home, catalog, embedder, refs, *, on_skip=None,
               store: IndexStore | None = None) -> tuple[IndexStore, BuildReport]:
    """Add catalog images to an existing index (or to ``store``, loaded from it) without a rebuild; the caller
    commits, after the catalog (``logoid.build.sync``)."""
    from logoid.augment import AugmentConfig

    if store is None and not IndexStore.exists(home.index_dir):
        raise IndexMissingError(f"no index in {home.index_dir}", "run `logoid build-index` first")
    store = store if store is not None else IndexStore.load(home.index_dir)
    store.check_model(embedder.info)
    aug_cfg = AugmentConfig.from_dict(store.meta["augment"])
    report = BuildReport()
    precision = index_precision(store.meta, embedder.device)
    extract_cfg = fcache = None
    if store.descriptors is not None:
        from logoid.engine.local import FeatureCache, reference_variants
        from logoid.identify.match import LocalConfig

        extract_cfg = LocalConfig.from_dict(store.meta["local"]).extract
        fcache = FeatureCache(home.cache_dir / "features")
    for ref in refs:
        # Re-adding an image already indexed replaces its vectors instead of duplicating them.
        store.require_vectors().remove_images([ref.id])
        if store.descriptors is not None:
            store.descriptors.remove([ref.id])
        try:
            vecs, ids = embed_reference(ref, embedder, home.cache_dir, aug_cfg, report,
                                        store.meta.get("prototypes", False), precision)
            if store.descriptors is not None:
                store.descriptors.add(ref.id, reference_features(ref, None, extract_cfg, fcache, report,
                                                                 reference_variants(extract_cfg, store.descriptors.flip_inverted)))
        except ImageError as e:
            _skip(report, on_skip, ref, e)
            continue
        store.require_vectors().add(vecs, ids)
        report.images += 1
        report.vectors += len(ids)
    _refresh_after_change(store, catalog)
    return store, report


def remove_images(home: Home, catalog, image_ids: list[int]) -> IndexStore:
    """Take images out of every index component (the caller commits, after the catalog)."""
    store = IndexStore.load(home.index_dir)
    store.require_vectors().remove_images(image_ids)
    if store.descriptors is not None:
        store.descriptors.remove(image_ids)
    _refresh_after_change(store, catalog)
    return store


def _refresh_after_change(store: IndexStore, catalog) -> None:
    if store.meta.get("files", {}).get("names") is not None or store._names is not None:
        store.names = _new_names_index(catalog)
    counts = dict(store.meta.get("counts", {}))
    counts.update(vectors=store.require_vectors().ntotal, images=len(catalog.images()))
    if store._descriptors is not None:
        counts["descriptors"] = store._descriptors.ntotal
    store.meta["counts"] = counts
    store.meta["catalog_revision"] = catalog.revision()
