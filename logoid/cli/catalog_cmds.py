"""catalog list/show/import, add-band, remove-band."""

from __future__ import annotations

from pathlib import Path

import click

from logoid import LogoidError, create_embedder
from logoid.build.sync import sync_index
from logoid.catalog.imagecheck import check_reference
from logoid.catalog.importers import import_album_manifest, import_bands_csv
from logoid.core.imageio import load_image
from logoid.index.store import IndexStore

from ._common import emit_json, json_option, key_value_pairs, pass_state, progress, reads, shown, warn, writes


def _allow_small_option(f):
    return click.option("--allow-small", is_flag=True,
                        help="Keep images under 16 px or of one colour (refused by default: nothing to recognise).")(f)


def _check_images(paths, allow_small: bool) -> None:
    """Validate every file before anything changes: unreadable, tiny or blank files fail in one line."""
    for p in paths:
        img = load_image(p)
        if not allow_small:
            check_reference(img, p)


def _store_images(cat, entity_type: str, entity_id: int, paths, allow_small: bool):
    """Store each distinct file once: (the new image rows, [(path, why it was not stored)])."""
    new, skipped, first = [], [], {}
    for p in paths:
        ref, created = cat.upsert_image(entity_type, entity_id, p, allow_small=allow_small)
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


def _stored_message(what: str, refs, skipped, has_index: bool, indexed: int) -> str:
    for path, why in skipped:
        warn(f"skipping {path}: {why}")
    return (f" with {len(refs)} {what}(s)" + (f" ({len(skipped)} skipped)" if skipped else "")
            + (f"; {indexed} vectors added to the index" if has_index else "; run `logoid build-index` next"))


def _index_exists(state) -> bool:
    return IndexStore.exists(state.home.index_dir)


def _embedder_for_index(state):
    return create_embedder(IndexStore.load_meta_only(state.home.index_dir)["model"]["model"])


def _sync_index(state):
    """The index brought to the catalog's images, inside the catalog transaction (commit it after that one)."""
    return sync_index(state.home, state.catalog, load_embedder=lambda: _embedder_for_index(state))


def _commit_index(store, report, added: int = 0, removed: int = 0) -> None:
    """Commit the index after the catalog (logoid/build/sync.py): if that fails, the catalog change stands and the
    next write (or build-index) indexes it. ``added``, ``removed``: the images this command itself changed; the
    rest of the report is what an interrupted write or an import had left, repaired now."""
    try:
        store.commit()
    except OSError as e:
        raise LogoidError(f"the catalog was changed but writing the index failed ({e})",
                          "run `logoid build-index`") from e
    if report.images > added:
        warn(f"also indexed {report.images - added} catalog image(s) the index lacked (left by an interrupted "
             "write or an import)")
    if report.removed > removed:
        warn(f"dropped {report.removed - removed} image(s) from the index that the catalog no longer has "
             "(left by an interrupted write)")
    if report.unindexed:
        warn(f"{report.unindexed} catalog image(s) could not be indexed; run `logoid build-index`")


@click.command("add-band")
@click.option("--name", required=True, help="Band name.")
@click.option("--genre")
@click.option("--country")
@click.option("--location")
@click.option("--status")
@click.option("--formed", "formed_year", type=int)
@click.option("--themes")
@click.option("--label")
@click.option("--id", "ext_ids", multiple=True, help="External id as source:value, e.g. ma:3540 (repeatable).")
@click.option("--alias", "aliases", multiple=True, help="Another spelling of the name (repeatable).")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path), help="Logo image (repeatable).")
@_allow_small_option
@json_option
@pass_state
def add_band_cmd(state, name, genre, country, location, status, formed_year, themes, label, ext_ids, aliases, images,
                 allow_small, as_json):
    """Add a band (and its logo images) to the catalog and, if built, to the index without a rebuild."""
    _check_images(images, allow_small)
    external = {}
    for e in ext_ids:
        if ":" not in e:
            raise LogoidError(f"--id {e!r} is not source:value", "write it like --id ma:3540")
        src, val = e.split(":", 1)
        external[src] = val
    cat = state.catalog
    with state.writing():
        has_index = _index_exists(state)
        store = None
        with cat.transaction():  # an embedding failure rolls the catalog back too
            band, created = cat.upsert_band(name, genre=genre, country=country, location=location, status=status,
                                            formed_year=formed_year, themes=themes, label=label,
                                            external_ids=external or None, aliases=list(aliases) or None)
            refs, skipped = _store_images(cat, "band", band.id, images, allow_small)
            if has_index:
                store, report = _sync_index(state)
        indexed = 0
        if store is not None:  # after the catalog commit: an id in an index is never handed out again
            _commit_index(store, report, added=len(refs))
            indexed = report.vectors
    out = {"band": band.id, "name": band.name, "created": created, "images": [r.id for r in refs],
           "skipped": [{"path": p, "reason": why} for p, why in skipped], "vectors_added": indexed,
           "indexed": has_index}
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{'added' if created else 'updated'} band {shown(band.name)} (id {band.id})"
                   + _stored_message("image", refs, skipped, has_index, indexed))


@click.command("add-album")
@click.option("--title", required=True, help="Album title.")
@click.option("--artist", required=True, help="The artist (a catalog band; created if missing).")
@click.option("--year", type=int)
@click.option("--genre")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path), help="Cover image (repeatable).")
@_allow_small_option
@json_option
@pass_state
def add_album_cmd(state, title, artist, year, genre, images, allow_small, as_json):
    """Add an album (and its cover images) to the catalog and, if built, to the index without a rebuild."""
    _check_images(images, allow_small)
    cat = state.catalog
    with state.writing():
        has_index = _index_exists(state)
        store = None
        with cat.transaction():
            album, created = cat.upsert_album(title, artist, year=year, genre=genre)
            refs, skipped = _store_images(cat, "album", album.id, images, allow_small)
            if has_index:
                store, report = _sync_index(state)
        indexed = 0
        if store is not None:
            _commit_index(store, report, added=len(refs))
            indexed = report.vectors
    out = {"album": album.id, "title": album.title, "artist": album.artist_name, "created": created,
           "images": [r.id for r in refs], "skipped": [{"path": p, "reason": why} for p, why in skipped],
           "vectors_added": indexed, "indexed": has_index}
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{'added' if created else 'updated'} album {shown(album.title)} by {shown(album.artist_name)} "
                   f"(id {album.id})" + _stored_message("cover", refs, skipped, has_index, indexed))


@click.command("remove-band")
@click.argument("band")
@json_option
@pass_state
def remove_band_cmd(state, band, as_json):
    """Remove BAND (id, external id like ma:3540, or name) from the catalog and the index."""
    cat = state.catalog
    with state.writing():
        b = cat.find_band(band)
        image_ids = [r.id for r in cat.images("band", b.id)]
        for alb in [a for a in cat.list_albums() if a.artist_id == b.id]:
            image_ids += [r.id for r in cat.images("album", alb.id)]
        store = None
        with cat.transaction():
            cat.remove_band(b.id)
            if _index_exists(state):
                store, report = _sync_index(state)  # the band's images are orphans now: they go
        if store is not None:
            _commit_index(store, report, removed=len(image_ids))
    if as_json:
        emit_json({"removed": b.id, "name": b.name, "images": image_ids})
    else:
        click.echo(f"removed band {shown(b.name)} (id {b.id}) and {len(image_ids)} image(s)")


@click.group("catalog")
def catalog_group():
    """Inspect and import the catalog."""


@catalog_group.command("list")
@click.option("--albums", is_flag=True, help="List albums instead of bands.")
@json_option
@pass_state
@reads
def catalog_list(state, albums, as_json):
    """List bands (or albums)."""
    cat = state.catalog
    if albums:
        rows = [{"id": a.id, "title": a.title, "artist": a.artist_name, "year": a.year, "genre": a.genre}
                for a in cat.list_albums()]
    else:
        rows = [{"id": b.id, "name": b.name, "genre": b.genre, "country": b.country,
                 "images": len(cat.images("band", b.id))} for b in cat.list_bands()]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo("  ".join(shown(v) for v in r.values() if v is not None))
    click.echo(f"{len(rows)} {'albums' if albums else 'bands'}")


@catalog_group.command("show")
@click.argument("band")
@json_option
@pass_state
@reads
def catalog_show(state, band, as_json):
    """Show one band's metadata and images."""
    cat = state.catalog
    b = cat.find_band(band)
    meta = cat.entity_meta("band", b.id)
    meta["images"] = [{"id": r.id, "path": str(r.path), "kind": r.kind, "scheme": r.scheme, "size": [r.width, r.height]}
                      for r in cat.images("band", b.id)]
    if as_json:
        emit_json(meta)
        return
    for k, v in meta.items():
        if k != "images" and v not in (None, "", [], {}):
            click.echo(f"{k}: {shown(v)}")
    for im in meta["images"]:
        click.echo(f"image {im['id']}: {im['kind']} {im['scheme']} {im['size'][0]}x{im['size'][1]} {shown(im['path'])}")


@catalog_group.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of images named by band id or name.")
@click.option("--map", "mapping", multiple=True, help="Column mapping HEADER=field, e.g. --map 'Band name=Name'.")
@click.option("--encoding", default=None,
              help="The file's text encoding, e.g. cp1252 or latin-1 (default: UTF-8, with or without BOM, or "
                   "UTF-16/32 with a BOM; other bytes are refused, naming the line).")
@_allow_small_option
@json_option
@pass_state
@writes
def catalog_import(state, source, images_dir, mapping, encoding, allow_small, as_json):
    """Import a band roster CSV (Metal Archives columns) or a JSON album manifest.

    Rows that cannot be trusted (an unbalanced quote, a field over 1,000 characters, more fields than the
    header, two rows of one band id that disagree) are skipped and each is named with its line; the good rows
    are imported.
    """
    cat = state.catalog
    bar = progress(None, "importing", unit="row")

    def tick(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    if source.suffix.lower() == ".json":
        report = import_album_manifest(cat, source, images_dir=images_dir, progress=tick, encoding=encoding,
                                       allow_small=allow_small)
    else:
        cmap = key_value_pairs(mapping, "--map", "'Band name=Name'")
        report = import_bands_csv(cat, source, images_dir=images_dir, column_map=cmap or None, progress=tick,
                                  encoding=encoding, allow_small=allow_small)
    bar.close()
    for s in report.skipped:
        warn(f"skipping {s.where}: {s.reason}" if s.line is None or s.where.endswith(f":{s.line}")
             else f"skipping {s.where} (line {s.line}): {s.reason}")
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(f"imported {shown(source.name)}: {report.added} added, {report.updated} updated, "
                   f"{report.images_added} images, {len(report.skipped)} skipped"
                   + ("; run `logoid build-index` to index them" if report.images_added else ""))
    if report.skipped and not (report.added or report.updated):
        raise click.exceptions.Exit(1)  # nothing imported: the warnings above say why, line by line


COMMANDS = [add_band_cmd, add_album_cmd, remove_band_cmd, catalog_group]
