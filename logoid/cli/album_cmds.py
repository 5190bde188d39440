"""search, artist fit/calibrate/show, artist-check, genre train/predict/show."""

from __future__ import annotations

import difflib
from pathlib import Path

import click

from logoid import DEFAULT_MODEL, CatalogError, ConfigError, ImageError, IndexMissingError, LogoidError, create_embedder
from logoid.albums import store
from logoid.albums.artist import ArtistConfig, ArtistModel, fit_catalog
from logoid.albums.covers import FeatureTable, catalog_covers, extract, ocr_unavailable, read_lines, uses_text
from logoid.albums.genre import GenreConfig, GenreModel
from logoid.albums.search import search
from logoid.core.imageio import iter_image_files, load_image
from logoid.eval.albums import GALLERY_ROLE, UNKNOWN_ROLE, AlbumColumns, load_album_manifest
from logoid.index.store import IndexStore

from ._common import emit_json, json_option, key_value_pairs, pass_state, progress, shown, warn


def embedder_for(state, model: str | None = None):
    """``--model``, else the model that built the index, else the default model."""
    if model:
        return create_embedder(model)
    if IndexStore.exists(state.home.index_dir):
        return create_embedder(IndexStore.load_meta_only(state.home.index_dir)["model"]["model"])
    return create_embedder(DEFAULT_MODEL)


def _bar(desc: str):
    return lambda it: progress(it, desc, unit="batch")


def _skip(path, reason) -> None:
    warn(f"skipping {path}: {reason}")


def _warn_no_ocr(needs_text: bool) -> None:
    """One warning line when a model wants the text on covers and no OCR engine runs here."""
    if needs_text:
        from logoid.albums.covers import ocr_unavailable

        why = ocr_unavailable()
        if why:
            warn(why)


def _notes(notes: list[str]) -> None:
    for n in dict.fromkeys(notes):
        warn(n)


def _columns(mapping: tuple[str, ...]):
    return AlbumColumns().override(key_value_pairs(mapping, "--column", "photo=cover"))


def column_option(f):
    return click.option("--column", "columns", multiple=True, metavar="FIELD=HEADER",
                        help="Manifest column for a field (photo, artist, genre, split, role, group, fold).")(f)


# ---- search ------------------------------------------------------------------------------------
@click.command("search")
@click.argument("text")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Images to show.")
@click.option("--type", "entity_type", type=click.Choice(["all", "album", "band"]), default="all", show_default=True)
@json_option
@pass_state
def search_cmd(state, text, k, entity_type, as_json):
    """Rank catalog images by how well they match TEXT (text tower vs the indexed image vectors).

    \b
    Honest note: the default model's text and image projections are untrained, so before
    `logoid finetune` this ranking is close to arbitrary; it becomes meaningful with a fine-tuned
    checkpoint (`logoid build-index --model models/ft1`) or a real CLIP model.
    """
    index_store = IndexStore.load(state.home.index_dir)
    embedder = embedder_for(state)
    hits = search(text, index_store, state.catalog, embedder, k=k, entity_type=None if entity_type == "all" else entity_type)
    untrained = index_store.meta.get("model", {}).get("projections") == "untrained"
    if as_json:
        emit_json({"query": text, "model": index_store.model_name, "untrained_projections": untrained,
                   "results": [h.to_dict() for h in hits]})
        return
    if untrained:
        warn("this model's text-image projections are untrained: rankings are close to arbitrary until "
             "`logoid finetune`")
    for h in hits:
        click.echo(shown(f"{h.rank:>3}. {h.score:+.3f}  {h.name}  ({h.entity})  {h.path}"))
    if not hits:
        click.echo("no indexed images" + (f" of type {entity_type}" if entity_type != "all" else ""))


# ---- artist ------------------------------------------------------------------------------------
@click.group("artist")
def artist_group():
    """The artist of an album not in the catalog, from the style of each artist's covers."""


def _emit_artist(summary: dict, as_json: bool) -> None:
    emit_json(summary) if as_json else _print_artist_summary(summary)


def _print_artist_summary(s: dict) -> None:
    text = "+ artist names read on the cover" if s["config"].get("text") else "(no text)"
    click.echo(f"artist model: {s['artists']} artists, {s['covers']} covers, {s['config']['features']} features "
               f"{text}, {s['config']['scorer']} scorer; calibrated on {s['source']}")
    auroc = f"{s['auroc']:.3f}" if s.get("auroc") is not None else "n/a"
    click.echo(f"  reject rule {s['rule']} at {s['threshold']:.4f} (known vs unknown artist AUROC {auroc}); "
               f"verification AUROC {s['verify_auroc'] or float('nan'):.3f}")
    w = (s.get("fusion") or {}).get("weights")
    if w:
        click.echo("  fusion weights: " + ", ".join(f"{k} {v:+.2f}" for k, v in
                                                    zip(("style z", "name sim", "name hit", "text amount", "bias"), w, strict=False)))


@artist_group.command("fit")
@click.option("--features", default=None, help="Cover features of the style evidence (default style).")
@click.option("--scorer", type=click.Choice(["knn_mean", "prototype"]), default=None)
@click.option("--top-m", type=int, default=None, help="knn_mean: an artist's best covers that count.")
@click.option("--text/--no-text", default=None, help="Fuse the artist names read on covers (OCR; default on).")
@click.option("--model", default=None, help="Embedding model (default: the index's).")
@json_option
@pass_state
def artist_fit(state, features, scorer, top_m, text, model, as_json):
    """Enrol every catalog album cover by its artist; read the text on the covers; calibrate the style + name
    fusion leave-one-album-out; store beside the index."""
    cfg = ArtistConfig()
    for k, v in (("features", features), ("scorer", scorer), ("top_m", top_m), ("text", text)):
        if v is not None:
            setattr(cfg, k, v)
    cfg = ArtistConfig.from_dict(cfg.to_dict())
    notes: list[str] = []
    m = fit_catalog(state.home, state.catalog, embedder_for(state, model), cfg, progress=_bar("covers"), on_skip=_skip,
                    notes=notes)
    _notes(notes)
    m.save(state.home)
    _emit_artist(m.summary(), as_json)


@artist_group.command("calibrate")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", default="calib", show_default=True, help="Rows of this split, when there is a split column.")
@column_option
@json_option
@pass_state
def artist_calibrate(state, manifest, split, columns, as_json):
    """Calibrate the unseen-album artist rule on labelled photos.

    MANIFEST is a CSV with a photo column and an artist column (`photo,artist[,split]`, or albums-dev's
    `cover,artist,...,artist_role,split`); artist = a catalog band with album covers, empty/'unknown' (or
    role 'unknown', or a name not in the catalog) = an artist the catalog does not know. Rows with role
    'gallery' are skipped.
    """
    rows = [r for r in load_album_manifest(manifest, _columns(columns)) if r.role != GALLERY_ROLE]
    if any(r.split for r in rows):
        rows = [r for r in rows if r.split == split]
    if not rows:
        raise LogoidError(f"{manifest}: no calibration rows" + (f" with split={split}" if split else ""),
                          "check the split and role columns")
    embedder = embedder_for(state)
    notes: list[str] = []
    try:
        model = ArtistModel.load(state.home, embedder)
    except IndexMissingError:
        model = fit_catalog(state.home, state.catalog, embedder, progress=_bar("covers"), on_skip=_skip, notes=notes)
    _notes(notes)
    cat, labels, missing = state.catalog, [], set()
    for r in rows:
        key = None
        if r.artist and r.role != UNKNOWN_ROLE:
            try:
                key = f"band:{cat.find_band(r.artist).id}"
            except CatalogError:
                missing.add(r.artist)
        labels.append(key if key in model.artists else None)
    if missing:
        warn(f"{len(missing)} artist name(s) not in the catalog count as unknown artists, e.g. {sorted(missing)[0]!r}")
    table = FeatureTable([r.path for r in rows], embedder, state.home.cache_dir, _bar("photos"), _skip)
    x = table(model.config.features)
    ok = table.ok or []
    if not ok:
        raise LogoidError(f"{manifest}: no readable photos to calibrate on", "check the photo paths in the manifest")
    lines = None
    if model.config.text:
        _warn_no_ocr(True)
        got = table.lines()
        lines = [got.get(i, []) for i in ok]
    model.calibrate_photos(x, [labels[i] for i in ok], f"{manifest} split={split}", lines=lines)
    model.save(state.home)
    _emit_artist(model.summary(), as_json)


@artist_group.command("show")
@json_option
@pass_state
def artist_show(state, as_json):
    """Show the stored artist model: artists, calibration, features."""
    _emit_artist(ArtistModel.load(state.home).summary(), as_json)


def _artist_model(state, embedder):
    try:
        model = ArtistModel.load(state.home, embedder)
        if note := model.stale_note(state.catalog):
            warn(note)
        return model
    except IndexMissingError:
        notes: list[str] = []
        model = fit_catalog(state.home, state.catalog, embedder, progress=_bar("covers"), on_skip=_skip, notes=notes)
        _notes(notes)
        return model


@click.command("artist-check")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--artist", required=True, help="Catalog artist (band name, id or external id).")
@json_option
@pass_state
def artist_check_cmd(state, photo, artist, as_json):
    """Is PHOTO a cover of ARTIST? Yes/no with a calibrated probability from the style of ARTIST's covers and
    the artist name read on PHOTO."""

    img = load_image(photo)
    band = state.catalog.find_band(artist)  # unknown names: one line listing close ones
    embedder = embedder_for(state)
    model = _artist_model(state, embedder)
    key = f"band:{band.id}"
    if key not in model.artists:
        close = difflib.get_close_matches(band.name, model.names, n=3, cutoff=0.5)
        raise ConfigError(f"{band.name} has no album covers in the artist model",
                          (f"did you mean {', '.join(close)}? " if close else "")
                          + "add covers with `logoid add-album --image` and refit: `logoid artist fit`")
    lines = None
    if model.config.text:
        _warn_no_ocr(True)
        lines = read_lines([img])[0] if ocr_unavailable() is None else None
    out = {"path": str(photo), **model.check(extract(embedder, [img], model.config.features), key, lines=lines)}
    if as_json:
        emit_json(out)
    else:
        click.echo(shown(f"{photo}: {'yes' if out['match'] else 'no'} — {'' if out['match'] else 'not '}by "
                         f"{out['artist']} (p {out['probability']:.2f} vs 0.50; style z {out['score']:+.2f}, name read "
                         f"{out['text_similarity']:.2f})"))


# ---- genre -------------------------------------------------------------------------------------
class _PredictByDefault(click.Group):
    """`logoid genre PHOTO...` runs `predict`; `logoid genre train|show` run those."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["predict", *args]
        return super().parse_args(ctx, args)


@click.group("genre", cls=_PredictByDefault)
def genre_group():
    """Genre of a cover: `logoid genre PHOTO...`, `logoid genre train`, `logoid genre show`."""


def _genre_items(state, csv_file, folder, columns):
    """(paths, genres, groups or None, source) from the catalog, a CSV or a folder tree."""
    if csv_file and folder:
        raise LogoidError("--csv and --folder are exclusive", "pass one source of labelled covers")
    if csv_file:
        from logoid.eval.albums import load_album_manifest

        rows = [r for r in load_album_manifest(csv_file, _columns(columns)) if r.genre]
        groups = [r.artist for r in rows] if rows and all(r.artist for r in rows) else None
        return [r.path for r in rows], [r.genre for r in rows], groups, str(csv_file)
    if folder:
        files = [p for p in iter_image_files(folder) if p.parent != folder]
        return files, [p.relative_to(folder).parts[0].lower() for p in files], None, str(folder)

    covers = [c for c in catalog_covers(state.catalog) if c.genre]
    return [c.path for c in covers], [c.genre for c in covers], [c.artist_key for c in covers], "catalog album genres"


@genre_group.command("train")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of labelled covers: path,genre[,artist] (paths relative to the CSV).")
@click.option("--folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder tree GENRE/cover.jpg.")
@click.option("--methods", default=None, help="Classifiers to compare (default logreg,knn,zeroshot).")
@click.option("--features", default=None, help="Cover features: embedding, trunk, style, colour, text, joined with '+' "
                                                "(default style+colour+text).")
@click.option("--folds", type=int, default=None, help="Cross-validation folds (default 5).")
@click.option("--model", default=None, help="Embedding model (default: the index's).")
@column_option
@json_option
@pass_state
def genre_train(state, csv_file, folder, methods, features, folds, model, columns, as_json):
    """Compare classifiers by cross-validation (one artist's covers never straddle folds), keep the best."""
    paths, genres, groups, source = _genre_items(state, csv_file, folder, columns)
    if not paths:
        raise LogoidError(f"no labelled covers in {source}",
                          "give albums a genre (`logoid add-album --genre`), or pass --csv / --folder")
    d = GenreConfig().to_dict()
    d.update({k: v for k, v in (("features", features), ("folds", folds)) if v is not None})
    if methods:
        d["methods"] = [m.strip() for m in methods.split(",") if m.strip()]
    cfg = GenreConfig.from_dict(d)
    embedder = embedder_for(state, model)
    _warn_no_ocr(uses_text(cfg.features))
    table = FeatureTable(paths, embedder, state.home.cache_dir, _bar("covers"), _skip)
    table(cfg.features)
    ok = table.ok or []
    gm, comp = GenreModel.train(table, [genres[i] for i in ok], cfg, groups=None if groups is None else [groups[i] for i in ok],
                                embed_texts=embedder.embed_texts, model=store.model_record(embedder), source=source)
    gm.save(state.home)
    out = {"kept": gm.method, "features": gm.features, "covers": len(ok), "genres": gm.classes, "folds": len(set(comp.folds)),
           "grouped_by_artist": groups is not None, "comparison": comp.table(), "source": source}
    if as_json:
        emit_json(out)
        return
    click.echo(f"{len(ok)} covers, {len(gm.classes)} genres, {out['folds']} folds"
               + (" grouped by artist" if groups is not None else " (no artists known: stratified)"))
    click.echo(f"{'method':<10} {'weighted F1':>11} {'macro F1':>9} {'accuracy':>9}")
    for m, row in comp.table().items():
        click.echo(f"{m:<10} {row['weighted_f1'] or 0:>11.3f} {row['macro_f1'] or 0:>9.3f} {row['accuracy']:>9.3f}"
                   + ("  ← kept" if m == gm.method else ""))
    if "zeroshot" in comp.metrics and embedder.info.get("projections") == "untrained":
        click.echo("(zero-shot reads the text tower, whose projection is untrained before `logoid finetune`)")


@genre_group.command("predict")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "k", type=int, default=3, show_default=True, help="Genres to show per photo.")
@json_option
@pass_state
def genre_predict(state, photos, k, as_json):
    """Predict the genre of each PHOTO with the stored genre model."""
    gm = GenreModel.load(state.home)
    embedder = create_embedder(gm.model.get("model"))
    store.check_model({"model": gm.model}, embedder, "genre model", "retrain it: `logoid genre train`")
    _warn_no_ocr(uses_text(gm.features))
    rows = []
    for p in photos:
        try:
            img = load_image(p)
        except ImageError as e:
            warn(f"skipping {p}: {e.reason}")
            continue
        rows.append({"path": str(p), **gm.predict(extract(embedder, [img], gm.features), k)[0]})
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            rest = ", ".join(f"{t['genre']} {t['probability']:.2f}" for t in r["top"][1:])
            click.echo(shown(f"{r['path']}: {r['genre']} ({r['probability']:.2f})" + (f"  [{rest}]" if rest else "")))
    if not rows:
        raise click.exceptions.Exit(1)


@genre_group.command("show")
@json_option
@pass_state
def genre_show(state, as_json):
    """Show the stored genre model and how the methods compared."""
    gm = GenreModel.load(state.home)
    table = {m: {k: v for k, v in d.items() if k != "per_class"} for m, d in gm.metrics.items()}
    if as_json:
        emit_json({"method": gm.method, "features": gm.features, "genres": gm.classes, "n_train": gm.n_train,
                   "source": gm.source, "comparison": table, "model": gm.model.get("model")})
        return
    click.echo(f"genre model: {gm.method} on {gm.features} features, {gm.n_train} covers from {gm.source}")
    click.echo(shown(f"genres: {', '.join(gm.classes)}"))
    for m, row in table.items():
        click.echo(f"  {m:<10} weighted F1 {row.get('weighted_f1') or 0:.3f}  accuracy {row.get('accuracy') or 0:.3f}")


COMMANDS = [search_cmd, artist_group, artist_check_cmd, genre_group]
