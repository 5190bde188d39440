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
from logoid.identify.match import LocalConfig
from logoid.index.backend import MILVUS, backend_kind
from logoid.index.cache import EmbeddingCache
from logoid.index.milvus import MilvusConfig, MilvusVectorIndex
from logoid.index.names import NameIndex
from logoid.index.store import IndexStore
from logoid.index.vectors import IndexConfig, VectorIndex, decode_ids, encode_ids
from logoid.scoring.fusion import DefaultRule
from logoid.scoring.rules import leave_one_out_impostors


#: ``progress(desc, total, unit)`` opens a bar for one stage of a build: an object with ``update(n)`` and ``close()``
#: (a tqdm bar). The embedding stage counts variants, the local-feature stage images.
class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> object: ...


Progress = Callable[[str, int, str], Bar]

#: A reference with fewer keypoints than this (normal + inverted) can hardly be verified geometrically.
MIN_REF_KEYPOINTS = 40

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


def _augment_cfg(opts: BuildOptions):
    from logoid.augment import AugmentConfig

    return opts.augment or AugmentConfig()


def _local_cfg(opts: BuildOptions):
    return opts.local or LocalConfig()


def embed_reference(ref, embedder, cache: EmbeddingCache, aug_cfg, report: BuildReport, prototypes=False):
    """Vectors and ids of every augmented variant of one catalog image (cache first, model for the rest)."""
    from logoid.augment import make_variants

    aug_hash = aug_cfg.config_hash()
    keys = [EmbeddingCache.key(ref.sha256, aug_hash, v) for v in range(aug_cfg.n_variants)]
    have = cache.get_many(keys)
    report.cached += len(have)
    img = None
    if len(have) < len(keys):
        img = load_image(ref.path)
        variants = make_variants(img, ref.scheme, aug_cfg, key=ref.sha256)
        missing = [v for v, k in enumerate(keys) if k not in have]
        vecs = embedder.embed_images([variants[v] for v in missing])
        fresh = {keys[v]: vecs[i] for i, v in enumerate(missing)}
        cache.put_many(fresh)
        have.update(fresh)
        report.embedded += len(missing)
    mat = np.stack([have[k] for k in keys]).astype(np.float32)
    if prototypes:
        proto = mat.mean(axis=0, keepdims=True)
        proto /= np.linalg.norm(proto, axis=1, keepdims=True) + 1e-12
        return proto, encode_ids(np.array([ref.id]), np.array([0])), img
    return mat, encode_ids(np.full(len(keys), ref.id), np.arange(len(keys))), img


def reference_features(ref, img, extract_cfg, feature_cache, report: BuildReport | None = None):
    """Local features of one reference image (normal and, by default, inverted), cached by content hash."""
    from logoid.engine.local import extract_reference

    feats = feature_cache.lookup_reference(ref.sha256, extract_cfg)
    if feats is not None:
        if report is not None:
            report.features_cached += 1
        return feats
    feats = extract_reference(img if img is not None else load_image(ref.path), extract_cfg)
    feature_cache.put_reference(ref.sha256, extract_cfg, feats)
    if report is not None:
        report.features_extracted += 1
    return feats


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _skip(report: BuildReport, on_skip, ref, e: ImageError) -> None:
    report.skipped.append((str(ref.path), e.reason))
    if on_skip:
        on_skip(str(ref.path), e.reason)


def _embed_stage(refs, embedder, cache: EmbeddingCache, aug_cfg, opts: BuildOptions, report: BuildReport,
                 progress: Progress | None, on_skip) -> list[tuple]:
    """(ref, vectors, ids) of every readable reference. Each image's vectors are committed to the cache before the
    next one starts, so a build killed here loses at most the image in flight; the next one reads the rest back."""
    bar = progress("embedding", len(refs) * aug_cfg.n_variants, "variant") if progress else _NoBar()
    done = []
    try:
        for ref in refs:
            try:
                vecs, ids, _ = embed_reference(ref, embedder, cache, aug_cfg, report, opts.prototypes)
            except ImageError as e:
                _skip(report, on_skip, ref, e)
            else:
                done.append((ref, vecs, ids))
            bar.update(aug_cfg.n_variants)
            fault_point("build-image-embedded")
    finally:
        bar.close()
    return done


def _feature_stage(done: list[tuple], extract_cfg, fcache, report: BuildReport, progress: Progress | None,
                   on_skip) -> tuple[list[tuple], list[tuple[int, list]]]:
    """Local features of every embedded reference (each image's files written atomically as it finishes, so a kill
    loses at most the image in flight); the references whose image could not be read drop out."""
    bar = progress("local features", len(done), "img") if progress else _NoBar()
    kept, items = [], []
    try:
        for ref, vecs, ids in done:
            try:
                feats = reference_features(ref, None, extract_cfg, fcache, report)
            except ImageError as e:
                _skip(report, on_skip, ref, e)
            else:
                n_kp = sum(len(f.xy) for f in feats)
                if n_kp < MIN_REF_KEYPOINTS:
                    report.warnings.append(f"{ref.source or ref.path}: only {n_kp} keypoints; "
                                           "matching will rely on the embedding alone")
                kept.append((ref, vecs, ids))
                items.append((ref.id, feats))
            bar.update(1)
            fault_point("build-image-features")
    finally:
        bar.close()
    return kept, items


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
    aug_cfg = _augment_cfg(opts)
    report = BuildReport()
    cache = EmbeddingCache(home.cache_dir, embedder.model_id)
    dindex, local_cfg = None, _local_cfg(opts)
    try:
        done = _embed_stage(catalog.images(), embedder, cache, aug_cfg, opts, report, progress, on_skip)
    finally:
        cache.close()
    feature_items: list[tuple[int, list]] | None = None
    if opts.with_local:
        from logoid.engine.local import FeatureCache
        from logoid.index.descriptors import DescriptorIndex

        fcache = FeatureCache(home.cache_dir / "features")
        fcache.sweep_partial(local_cfg.extract)  # a killed build's half-written files (writers hold the home's lock)
        done, feature_items = _feature_stage(done, local_cfg.extract, fcache, report, progress, on_skip)
    vec_parts, id_parts = [v for _, v, _ in done], [i for _, _, i in done]
    report.images = len(done)
    dim = embedder.dim
    vectors = np.concatenate(vec_parts) if vec_parts else np.zeros((0, dim), np.float32)
    ids = np.concatenate(id_parts) if id_parts else np.zeros((0,), np.int64)
    store = IndexStore(root=home.index_dir)
    if IndexStore.exists(home.index_dir):
        old = IndexStore.load_meta_only(home.index_dir)
        store.meta = {k: v for k, v in old.items() if k in ("generation", "files", "backend")}
    store.vectors = _build_vectors(home, store.meta, vectors, ids, opts)
    if feature_items is not None:
        # Built in one go so the index structure (exact or IVF) is chosen for the whole catalog's size.
        dindex = DescriptorIndex.build(feature_items, feature_config=local_cfg.extract) if opts.milvus is None \
            else _build_milvus_descriptors(home, store.meta, feature_items, local_cfg, opts)
    store.descriptors = dindex
    if opts.with_names:
        store.names = _new_names_index(catalog)
        report.names = len(store.names)
    report.vectors = store.vectors.ntotal
    report.descriptors = dindex.ntotal if dindex is not None else 0
    store.meta.update(
        model=dict(embedder.info, model_id=embedder.model_id),
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
    if not opts.prototypes:
        store.meta.update(gallery_calibration(catalog, vectors, ids))
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
    groups: dict[str, list[int]] = {}
    for row, iid in enumerate(image_ids):
        groups.setdefault(owner.get(int(iid), "?"), []).append(row)
    try:
        cal = leave_one_out_impostors({k: vectors[v] for k, v in groups.items()}, objective="balanced_accuracy")
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
    cache = EmbeddingCache(home.cache_dir, embedder.model_id)
    extract_cfg = fcache = None
    if store.descriptors is not None:
        from logoid.engine.local import FeatureCache
        from logoid.identify.match import LocalConfig

        extract_cfg = LocalConfig.from_dict(store.meta["local"]).extract
        fcache = FeatureCache(home.cache_dir / "features")
    for ref in refs:
        # Re-adding an image already indexed replaces its vectors instead of duplicating them.
        store.require_vectors().remove_images([ref.id])
        if store.descriptors is not None:
            store.descriptors.remove([ref.id])
        try:
            vecs, ids, img = embed_reference(ref, embedder, cache, aug_cfg, report, store.meta.get("prototypes", False))
            if store.descriptors is not None:
                store.descriptors.add(ref.id, reference_features(ref, img, extract_cfg, fcache, report))
        except ImageError as e:
            _skip(report, on_skip, ref, e)
            continue
        store.require_vectors().add(vecs, ids)
        report.images += 1
        report.vectors += len(ids)
    cache.close()
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
