"""`logoid eval --task genre|artist`: the album protocols on a cover manifest."""

from __future__ import annotations

import click

from logoid import IndexMissingError
from logoid.albums.artist import ArtistConfig, ArtistModel
from logoid.cli.album_cmds import _warn_no_ocr
from logoid.eval.albums import eval_artist, eval_genre, load_album_manifest
from logoid.eval.report import write_report

from ._common import emit_json
from .album_cmds import _artist_model, _bar, _columns, _skip, column_option, embedder_for


# ---- eval --task genre|artist ------------------------------------------------------------------
def album_eval_options(f):
    f = column_option(f)
    f = click.option("--model", default=None, help="--task genre/artist: embedding model (default: the index's).")(f)
    f = click.option("--features", default=None,
                     help="--task genre/artist: cover features, parts joined by '+' (embedding, trunk, style, colour, "
                          "text; genre default style+colour+text; for artist the image parts score the covers' style "
                          "and '+text' fuses the artist names read on them, default style+text).")(f)
    f = click.option("--use-model", is_flag=True,
                     help="--task genre: score the stored genre model on the rows instead of cross-validating.")(f)
    f = click.option("--method", default=None,
                     help="--task genre: report this classifier (default: the best of those compared).")(f)
    f = click.option("--task", type=click.Choice(["identify", "genre", "artist"]), default="identify",
                     show_default=True, help="identify: photos of catalog entities; genre / artist: the album "
                                             "protocols on a cover manifest.")(f)
    return f


def _stored_artist_config(state, features: str | None):
    try:
        cfg = ArtistModel.load(state.home).config
    except IndexMissingError:
        cfg = ArtistConfig()
    if features:
        from logoid.albums.covers import TEXT, method_parts

        parts = method_parts(features)
        cfg.text = TEXT in parts
        cfg.features = "+".join(p for p in parts if p != TEXT) or "style"
    return cfg


def eval_album_task(state, task, manifest, split, report_dir, method, use_model, model, features, columns, as_json):
    """`logoid eval MANIFEST --task genre|artist`: see logoid.eval.albums for the protocols."""

    rows = load_album_manifest(manifest, _columns(columns))
    bar = _bar("covers")
    names, threshold = None, None
    if task == "genre":
        from logoid.albums.genre import GenreConfig, GenreModel

        rows = [r for r in rows if split is None or r.split == split]
        if use_model:
            from logoid import create_embedder
            from logoid.albums import store

            gm = GenreModel.load(state.home)
            embedder = create_embedder(gm.model.get("model"))
            store.check_model({"model": gm.model}, embedder, "genre model", "retrain it: `logoid genre train`")
            metrics, results, thumbs = eval_genre(rows, embedder, gm.config, cache_dir=state.home.cache_dir,
                                                  use_model=gm, progress=bar, on_skip=_skip)
        else:
            cfg = GenreConfig(features=features) if features else GenreConfig()
            from logoid.albums.covers import uses_text

            _warn_no_ocr(uses_text(cfg.features))
            metrics, results, thumbs = eval_genre(rows, embedder_for(state, model), cfg, method=method,
                                                  cache_dir=state.home.cache_dir, progress=bar, on_skip=_skip)
    else:
        embedder = embedder_for(state, model)
        stored = None if any(r.role for r in rows) else _artist_model(state, embedder)
        acfg = _stored_artist_config(state, features)
        _warn_no_ocr(acfg.text)
        metrics, results, thumbs, names = eval_artist(rows, embedder, config=acfg,
                                                      stored_model=stored, cache_dir=state.home.cache_dir, split=split,
                                                      progress=bar, on_skip=_skip)
        if stored is not None:
            from logoid.albums.covers import catalog_covers

            for c in catalog_covers(state.catalog):
                thumbs.setdefault(c.artist_key, c.path)
        threshold = metrics["threshold"]
    metrics.update(task=task, queries=str(manifest), split=split)
    if report_dir:
        write_report(report_dir, metrics, results, threshold=threshold, label_names=names, thumb_for=thumbs.get,
                     scores_rule_name="genre probability" if task == "genre" else f"artist {metrics.get('rule')}")
    if as_json:
        emit_json(metrics)
        return
    keys = (["method", "n", "weighted_f1", "macro_f1", "accuracy"] if task == "genre" else
            ["artists", "n_known", "n_unknown", "top1", "top5", "auroc", "open_set_accuracy", "rule", "threshold"])
    for key in keys:
        v = metrics.get(key)
        click.echo(f"{key:>22}: " + ("n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)))
    for m, row in (metrics.get("comparison") or {}).items():
        click.echo(f"{'cv ' + m:>22}: weighted F1 {row['weighted_f1'] or 0:.3f}, accuracy {row['accuracy']:.3f}")
    if report_dir:
        click.echo(f"report: {report_dir / 'report.html'}")
