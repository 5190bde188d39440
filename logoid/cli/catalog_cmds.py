"""catalog list/show/import, add-band, add-album, remove-band, remove-album (the changes: logoid.build.edit)."""

from __future__ import annotations

from pathlib import Path

import click

from logoid.build import edit
from logoid.catalog.importers import import_album_manifest, import_bands_csv

from ._common import emit_json, json_option, key_value_pairs, pass_state, progress, reads, shown, warn, writes


def _allow_small_option(f):
    return click.option("--allow-small", is_flag=True,
                        help="Keep images under 16 px or of one colour (refused by default: nothing to recognise).")(f)


def _show_change(change) -> dict:
    for w in change.warnings:
        warn(w)
    return change.result


def _stored_message(what: str, r: dict) -> str:
    skipped = r["skipped"]
    return (f" with {len(r['images'])} {what}(s)" + (f" ({len(skipped)} skipped)" if skipped else "")
            + (f"; {r['vectors_added']} vectors added to the index" if r["indexed"] else "; run `logoid build-index` next"))


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
    out = _show_change(edit.add_band(
        state.home, state.catalog, name, images=images, allow_small=allow_small,
        external_ids=edit.parse_external_ids(ext_ids), aliases=aliases, genre=genre, country=country,
        location=location, status=status, formed_year=formed_year, themes=themes, label=label))
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{'added' if out['created'] else 'updated'} band {shown(out['name'])} (id {out['band']})"
                   + _stored_message("image", out))


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
    out = _show_change(edit.add_album(state.home, state.catalog, title, artist, images=images,
                                      allow_small=allow_small, year=year, genre=genre))
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{'added' if out['created'] else 'updated'} album {shown(out['title'])} by "
                   f"{shown(out['artist'])} (id {out['album']})" + _stored_message("cover", out))


@click.command("remove-band")
@click.argument("band")
@json_option
@pass_state
def remove_band_cmd(state, band, as_json):
    """Remove BAND (id, external id like ma:3540, or name) from the catalog and the index."""
    out = _show_change(edit.remove_band(state.home, state.catalog, band))
    if as_json:
        emit_json(out)
    else:
        click.echo(f"removed band {shown(out['name'])} (id {out['removed']}) and {len(out['images'])} image(s)")


@click.command("remove-album")
@click.argument("album")
@json_option
@pass_state
def remove_album_cmd(state, album, as_json):
    """Remove ALBUM (id or title) and its covers from the catalog and the index."""
    out = _show_change(edit.remove_album(state.home, state.catalog, album))
    if as_json:
        emit_json(out)
    else:
        click.echo(f"removed album {shown(out['title'])} by {shown(out['artist'])} (id {out['removed']}) and "
                   f"{len(out['images'])} image(s)")


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


COMMANDS = [add_band_cmd, add_album_cmd, remove_band_cmd, remove_album_cmd, catalog_group]
