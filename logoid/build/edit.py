"""Catalog changes that keep the index in step: add a band or album with its images, remove one.

One place for what ``logoid add-band``/``add-album``/``remove-band``/``remove-album`` and the HTTP API
(``POST``/``DELETE /v1/bands``, ``/v1/albums``) do. Each change runs under the home's write lock
(:func:`writing`) and commits the catalog first, then the index (:mod:`logoid.build.sync`): a process killed
at any moment leaves the two agreeing, and the next write repairs what an interrupted one left. A built index
takes the new images at once, without a rebuild.

Every function returns a :class:`Change`: ``result`` is the JSON the CLI's ``--json`` prints and the API
returns; ``warnings`` are for the caller to show (images skipped, repairs done).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from logoid.catalog.imagecheck import check_reference
from logoid.core.errors import LogoidError
from logoid.core.faults import fault_point
from logoid.core.imageio import load_image
from logoid.core.locks import write_lock
from logoid.core.paths import Home
from logoid.index.store import IndexStore

from .sync import reserve_index_ids, sync_index


@dataclass
class Change:
    """What one catalog change did: its JSON result and the warnings to show."""

    result: dict
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def writing(home: Home, catalog) -> Iterator[None]:
    """Hold the home's write lock for a whole change, catalog and index (``logoid.core.locks``): writers queue
    (in this process and others), and one that waits too long raises a one-line error. Readers take no lock."""
    home.ensure()
    with write_lock(home.root):
        fault_point("write-locked")
        reserve_index_ids(home, catalog)
        yield
        fault_point("write-done")


def check_images(paths: Iterable[Path], allow_small: bool = False) -> None:
    """Validate every file before anything changes: an unreadable, tiny or blank file fails in one line."""
    for p in paths:
        img = load_image(p)
        if not allow_small:
            check_reference(img, p)


def parse_external_ids(ext_ids: Iterable[str], flag: str = "--id") -> dict[str, str]:
    """``["ma:3540", ...]`` → ``{"ma": "3540"}``; a malformed item is a one-line error naming ``flag``."""
    external = {}
    for e in ext_ids:
        if ":" not in e:
            raise LogoidError(f"{flag} {e!r} is not source:value", f"write it like {flag} ma:3540")
        src, val = e.split(":", 1)
        external[src.strip()] = val.strip()
    return external


def add_band(home: Home, catalog, name: str, *, images: Iterable[Path] = (), allow_small: bool = False,
             external_ids: dict[str, str] | None = None, aliases: Iterable[str] = (),
             load_embedder: Callable[[], object] | None = None, **fields) -> Change:
    """Add (or update, matched by external id or name) a band and store its logo images; index them when an
    index exists. ``fields``: genre, country, location, status, formed_year, themes, label."""
    images = [Path(p) for p in images]
    check_images(images, allow_small)
    with writing(home, catalog):
        def change():
            band, created = catalog.upsert_band(name, external_ids=external_ids or None,
                                                aliases=list(aliases) or None, **fields)
            refs, skipped = _store_images(catalog, "band", band.id, images, allow_small)
            return {"band": band.id, "name": band.name, "created": created}, refs, skipped

        return _apply(home, catalog, change, load_embedder)


def add_album(home: Home, catalog, title: str, artist: str | int, *, images: Iterable[Path] = (),
              allow_small: bool = False, year: int | None = None, genre: str | None = None,
              load_embedder: Callable[[], object] | None = None) -> Change:
    """Add (or update) an album of ``artist`` (a catalog band, created if missing) and store its covers."""
    images = [Path(p) for p in images]
    check_images(images, allow_small)
    with writing(home, catalog):
        def change():
            album, created = catalog.upsert_album(title, artist, year=year, genre=genre)
            refs, skipped = _store_images(catalog, "album", album.id, images, allow_small)
            return ({"album": album.id, "title": album.title, "artist": album.artist_name, "created": created},
                    refs, skipped)

        return _apply(home, catalog, change, load_embedder)


def remove_band(home: Home, catalog, ref: str | int) -> Change:
    """Remove a band (id, external id like ma:3540, or name), its albums and all their images, from the catalog
    and the index."""
    with writing(home, catalog):
        band = catalog.find_band(ref)
        image_ids = [r.id for r in catalog.images("band", band.id)]
        for alb in [a for a in catalog.list_albums() if a.artist_id == band.id]:
            image_ids += [r.id for r in catalog.images("album", alb.id)]
        warnings = _remove(home, catalog, lambda: catalog.remove_band(band.id), len(image_ids))
    return Change({"removed": band.id, "name": band.name, "images": image_ids}, warnings)


def remove_album(home: Home, catalog, ref: str | int) -> Change:
    """Remove an album (id or title) and its covers from the catalog and the index."""
    with writing(home, catalog):
        album = catalog.find_album(ref)
        image_ids = [r.id for r in catalog.images("album", album.id)]
        warnings = _remove(home, catalog, lambda: catalog.remove_album(album.id), len(image_ids))
    return Change({"removed": album.id, "title": album.title, "artist": album.artist_name, "images": image_ids},
                  warnings)


# ---- the steps every change shares --------------------------------------------------------------------------
def _apply(home: Home, catalog, change, load_embedder) -> Change:
    """Run ``change`` (catalog rows + stored images) in one catalog transaction with the index brought to it,
    then commit the index after the catalog."""
    has_index = IndexStore.exists(home.index_dir)
    store = report = None
    with catalog.transaction():  # an embedding failure rolls the catalog back too
        result, refs, skipped = change()
        if has_index:
            store, report = sync_index(home, catalog, load_embedder=load_embedder or _index_embedder(home))
    warnings = [f"skipping {p}: {why}" for p, why in skipped]
    indexed = 0
    if store is not None and report is not None:  # after the catalog commit: an id in an index is never reused
        warnings += _commit_index(store, report, added=len(refs))
        indexed = report.vectors
    result.update(images=[r.id for r in refs], skipped=[{"path": p, "reason": why} for p, why in skipped],
                  vectors_added=indexed, indexed=has_index)
    return Change(result, warnings)


def _remove(home: Home, catalog, drop, n_images: int) -> list[str]:
    store = report = None
    with catalog.transaction():
        drop()
        if IndexStore.exists(home.index_dir):
            store, report = sync_index(home, catalog, load_embedder=_index_embedder(home))  # orphans go
    return _commit_index(store, report, removed=n_images) if store is not None else []


def _index_embedder(home: Home) -> Callable[[], object]:
    def load():
        from logoid.engine import create_embedder

        return create_embedder(IndexStore.load_meta_only(home.index_dir)["model"]["model"])

    return load


def _store_images(catalog, entity_type: str, entity_id: int, paths: list[Path], allow_small: bool):
    """Store each distinct file once: (the new image rows, [(path, why it was not stored)])."""
    new, skipped, first = [], [], {}
    for p in paths:
        ref, created = catalog.upsert_image(entity_type, entity_id, p, allow_small=allow_small)
        if created:
            new.append(ref)
            first[ref.id] = p
        else:
            skipped.append((str(p), _why_not_stored(p, first.get(ref.id), entity_type)))
    return new, skipped


def _why_not_stored(path: Path, first: Path | None, entity_type: str) -> str:
    if first is None:
        return f"already in the catalog for this {entity_type}"
    if Path(path).resolve() == Path(first).resolve():
        return "given twice: stored once"
    return f"same image as {first}: stored once"


def _commit_index(store, report, added: int = 0, removed: int = 0) -> list[str]:
    """Commit the index after the catalog: if that fails, the catalog change stands and the next write (or
    build-index) indexes it. ``added``, ``removed``: the images this change itself made; the rest of the report
    is what an interrupted write or an import had left, repaired now. Returns the warnings to show."""
    try:
        store.commit()
    except OSError as e:
        raise LogoidError(f"the catalog was changed but writing the index failed ({e})",
                          "run `logoid build-index`") from e
    warnings = []
    if report.images > added:
        warnings.append(f"also indexed {report.images - added} catalog image(s) the index lacked (left by an "
                        "interrupted write or an import)")
    if report.removed > removed:
        warnings.append(f"dropped {report.removed - removed} image(s) from the index that the catalog no longer "
                        "has (left by an interrupted write)")
    if report.unindexed:
        warnings.append(f"{report.unindexed} catalog image(s) could not be indexed; run `logoid build-index`")
    return warnings
