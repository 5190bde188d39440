"""catalog list/show/import, add-band, remove-band."""

from __future__ import annotations

from pathlib import Path

import click

from logoid.core.errors import LogoidError

from ._common import emit_json, json_option, key_value_pairs, pass_state, progress, warn


def _index_exists(state) -> bool:
    from logoid.index.store import IndexStore

    return IndexStore.exists(state.home.index_dir)


def _embedder_for_index(state):
    from logoid.engine import create_embedder
    from logoid.index.store import IndexStore

    return create_embedder(IndexStore.load_meta_only(state.home.index_dir)["model"]["model"])


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
@json_option
@pass_state
def add_band_cmd(state, name, genre, country, location, status, formed_year, themes, label, ext_ids, aliases, images,
                 as_json):
    """Add a band (and its logo images) to the catalog and, if built, to the index without a rebuild."""
    from logoid.core.imageio import load_image

    for p in images:  # validate every file before changing anything
        load_image(p)
    external = {}
    for e in ext_ids:
        if ":" not in e:
            raise LogoidError(f"--id {e!r} is not source:value", "write it like --id ma:3540")
        src, val = e.split(":", 1)
        external[src] = val
    cat = state.catalog
    has_index = _index_exists(state)
    with cat.transaction():
        band = cat.add_band(name, genre=genre, country=country, location=location, status=status,
                            formed_year=formed_year, themes=themes, label=label, external_ids=external or None,
                            aliases=list(aliases) or None)
        refs = [cat.add_image("band", band.id, p) for p in images]
        indexed = 0
        if has_index:
            from logoid.build.steps import add_images

            store, report = add_images(state.home, cat, _embedder_for_index(state), refs)
            store.commit()  # the index is written before the catalog commits: a failure rolls both back
            indexed = report.vectors
    out = {"band": band.id, "name": band.name, "images": [r.id for r in refs], "vectors_added": indexed,
           "indexed": has_index}
    if as_json:
        emit_json(out)
    else:
        click.echo(f"added band {band.name} (id {band.id}) with {len(refs)} image(s)"
                   + (f"; {indexed} vectors added to the index" if has_index else "; run `logoid build-index` next"))


@click.command("add-album")
@click.option("--title", required=True, help="Album title.")
@click.option("--artist", required=True, help="The artist (a catalog band; created if missing).")
@click.option("--year", type=int)
@click.option("--genre")
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path), help="Cover image (repeatable).")
@json_option
@pass_state
def add_album_cmd(state, title, artist, year, genre, images, as_json):
    """Add an album (and its cover images) to the catalog and, if built, to the index without a rebuild."""
    from logoid.core.imageio import load_image

    for p in images:
        load_image(p)
    cat = state.catalog
    has_index = _index_exists(state)
    with cat.transaction():
        album = cat.add_album(title, artist, year=year, genre=genre)
        refs = [cat.add_image("album", album.id, p) for p in images]
        indexed = 0
        if has_index:
            from logoid.build.steps import add_images

            store, report = add_images(state.home, cat, _embedder_for_index(state), refs)
            store.commit()
            indexed = report.vectors
    out = {"album": album.id, "title": album.title, "artist": album.artist_name, "images": [r.id for r in refs],
           "vectors_added": indexed, "indexed": has_index}
    if as_json:
        emit_json(out)
    else:
        click.echo(f"added album {album.title} by {album.artist_name} (id {album.id}) with {len(refs)} cover(s)"
                   + (f"; {indexed} vectors added to the index" if has_index else "; run `logoid build-index` next"))


@click.command("remove-band")
@click.argument("band")
@json_option
@pass_state
def remove_band_cmd(state, band, as_json):
    """Remove BAND (id, external id like ma:3540, or name) from the catalog and the index."""
    cat = state.catalog
    b = cat.find_band(band)
    image_ids = [r.id for r in cat.images("band", b.id)]
    for alb in [a for a in cat.list_albums() if a.artist_id == b.id]:
        image_ids += [r.id for r in cat.images("album", alb.id)]
    with cat.transaction():
        cat.remove_band(b.id)
        if _index_exists(state):
            from logoid.build.steps import remove_images

            remove_images(state.home, cat, image_ids).commit()
    if as_json:
        emit_json({"removed": b.id, "name": b.name, "images": image_ids})
    else:
        click.echo(f"removed band {b.name} (id {b.id}) and {len(image_ids)} image(s)")


@click.group("catalog")
def catalog_group():
    """Inspect and import the catalog."""


@catalog_group.command("list")
@click.option("--albums", is_flag=True, help="List albums instead of bands.")
@json_option
@pass_state
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
        click.echo("  ".join(f"{v}" for v in r.values() if v is not None))
    click.echo(f"{len(rows)} {'albums' if albums else 'bands'}")


@catalog_group.command("show")
@click.argument("band")
@json_option
@pass_state
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
            click.echo(f"{k}: {v}")
    for im in meta["images"]:
        click.echo(f"image {im['id']}: {im['kind']} {im['scheme']} {im['size'][0]}x{im['size'][1]} {im['path']}")


@catalog_group.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of images named by band id or name.")
@click.option("--map", "mapping", multiple=True, help="Column mapping HEADER=field, e.g. --map 'Band name=Name'.")
@json_option
@pass_state
def catalog_import(state, source, images_dir, mapping, as_json):
    """Import a band roster CSV (Metal Archives columns) or a JSON album manifest."""
    from logoid.catalog.importers import import_album_manifest, import_bands_csv

    cat = state.catalog
    bar = progress(None, "importing", unit="row")

    def tick(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    if source.suffix.lower() == ".json":
        report = import_album_manifest(cat, source, images_dir=images_dir, progress=tick)
    else:
        cmap = key_value_pairs(mapping, "--map", "'Band name=Name'")
        report = import_bands_csv(cat, source, images_dir=images_dir, column_map=cmap or None,
                                  progress=tick)
    bar.close()
    for where, why in report.skipped:
        warn(f"skipping {where}: {why}")
    d = {"added": report.added, "updated": report.updated, "images_added": report.images_added,
         "skipped": [list(s) for s in report.skipped]}
    if as_json:
        emit_json(d)
    else:
        click.echo(f"imported {source.name}: {report.added} added, {report.updated} updated, "
                   f"{report.images_added} images, {len(report.skipped)} skipped"
                   + ("; run `logoid build-index` to index them" if report.images_added else ""))


COMMANDS = [add_band_cmd, add_album_cmd, remove_band_cmd, catalog_group]
