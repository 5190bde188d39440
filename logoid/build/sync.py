"""Keep a home's index in step with its catalog, whatever crashed in between.

Every write (add-band, add-album, remove-band; import and build-index too) holds the home's write lock and
commits **the catalog first, then the index**:

- so every image id an index holds is one the catalog committed, and AUTOINCREMENT never hands it out again: an
  index entry can outlive its image (an *orphan*, after a removal) but can never come to mean another image;
- a crash between the two commits leaves the catalog ahead of the index: images the index lacks (*missing*) or
  orphans. Queries ignore orphans (an answer names only what the catalog holds) and warn of missing images
  (:func:`index_health`); the next write repairs both, because it does not apply "this band's images" to the
  index but the whole difference between catalog and index (:func:`sync_index`).

The sidecar records the catalog state it matches (``catalog_revision``, and ``catalog_ids``: the highest ids the
catalog had handed out), so a query sees at once whether the two agree, and a catalog that lost commits (a
power cut under WAL's ``synchronous=NORMAL``) is made to skip the ids the index already uses
(:func:`reserve_index_ids`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from logoid.core.errors import IndexMissingError
from logoid.core.faults import fault_point
from logoid.core.locks import writer_active
from logoid.core.paths import Home
from logoid.index.store import IndexStore

from .steps import BuildReport, _refresh_after_change, add_images


def reserve_index_ids(home: Home, catalog) -> None:
    """Make the catalog skip every id the index's sidecar says it had handed out (run at the start of a write)."""
    if IndexStore.exists(home.index_dir):
        catalog.reserve_ids(IndexStore.load_meta_only(home.index_dir).get("catalog_ids") or {})


def sync_index(home: Home, catalog, embedder=None, *, load_embedder: Callable[[], object] | None = None,
               on_skip=None) -> tuple[IndexStore, BuildReport]:
    """The index updated to hold exactly the catalog's images: orphans removed, missing images embedded.

    Call it inside the catalog transaction whose change it indexes, and commit the returned store after that
    transaction: an embedding failure then rolls the catalog back too. ``load_embedder`` makes the model only if
    some image needs embedding; with neither it nor ``embedder`` the missing images stay out
    (``report.unindexed``).
    """
    if not IndexStore.exists(home.index_dir):
        raise IndexMissingError(f"no index in {home.index_dir}", "run `logoid build-index` first")
    store = IndexStore.load(home.index_dir)
    want = catalog.image_ids()
    orphans = sorted(store.image_ids() - want)
    if orphans:
        store.require_vectors().remove_images(orphans)
    if store.descriptors is not None:
        stale = sorted(set(store.descriptors.image_ids()) - want)
        if stale:
            store.descriptors.remove(stale)
    missing = sorted(want - store.image_ids())
    if missing and embedder is None and load_embedder is not None:
        embedder = load_embedder()
    report = BuildReport()
    if missing and embedder is not None:
        store, report = add_images(home, catalog, embedder, [catalog.get_image(i) for i in missing],
                                   on_skip=on_skip, store=store)
    _refresh_after_change(store, catalog)
    report.removed = len(orphans)
    report.unindexed = len(want - store.image_ids())
    store.meta["catalog_ids"] = catalog.id_marks()
    fault_point("index-staged")
    return store, report


@dataclass
class IndexHealth:
    """How a home's index stands against its catalog, as a query sees them."""

    missing: list[int] = field(default_factory=list)  # catalog images the index lacks (not found until indexed)
    orphans: list[int] = field(default_factory=list)  # index entries of images the catalog dropped (ignored)
    writing: bool = False  # a write holds the lock: it commits the index right after the catalog

    def warning(self) -> str | None:
        """One line for the user, or None when there is nothing they need to do."""
        if not self.missing or self.writing:
            return None
        return (f"{len(self.missing)} catalog image(s) are not in the index, so queries cannot find them "
                "(an interrupted write or an import); run `logoid build-index`")


def index_health(home: Home, catalog, store: IndexStore) -> IndexHealth:
    """Compare the loaded index with the catalog (free when the sidecar says it matches this catalog revision)."""
    with catalog.snapshot():
        if store.meta.get("catalog_revision") == catalog.revision():
            return IndexHealth()
        want = catalog.image_ids()
    have = store.image_ids()
    return IndexHealth(missing=sorted(want - have), orphans=sorted(have - want), writing=writer_active(home.root))
