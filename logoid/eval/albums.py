"""Album protocols of `logoid eval --task genre|artist`, on a cover manifest (albums-dev's layout by default).

Manifest columns (``AlbumColumns``; the first header present of each list wins, ``--column FIELD=HEADER``
overrides): photo ``photo|cover|path|image`` (relative to the CSV), ``artist|label``, ``genre``,
``split`` (calib/test), ``artist_role|role`` (gallery / query / unknown), ``group`` (near-duplicate
covers, left out together), ``genre_fold|fold`` (artist-disjoint folds for genre cross-validation).

- genre: cross-validation over the fold column (else folds grouped by artist) of every method the
  genre config compares, reported for the best (or ``--method``); or ``use_model`` scores the stored
  genre model on the rows (a held-back set).
- artist: with a role column, the gallery rows are enrolled as the catalog, the threshold is
  calibrated on the ``calib`` query/unknown rows (leave-one-album-out when there are none) and the
  other query/unknown rows are reported; without one, the home's artist model answers every row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from logoid.albums import store
from logoid.albums.artist import ArtistConfig, ArtistModel
from logoid.albums.covers import FeatureTable, ocr_unavailable
from logoid.albums.genre import cross_validate, genre_metrics
from logoid.core.errors import ConfigError
from logoid.eval.run import with_rule_scores
from logoid.scoring.results import QueryResult

from .metrics import evaluate

UNKNOWN_ROLE, GALLERY_ROLE = "unknown", "gallery"


@dataclass
class AlbumColumns:
    """Manifest header candidates per field, first present wins (albums-dev's manifest.csv by default)."""

    photo: tuple[str, ...] = ("photo", "cover", "path", "image")  # cover / photo file, relative to the CSV
    artist: tuple[str, ...] = ("artist", "label")  # artist name; empty or "unknown" = not an enrolled artist
    genre: tuple[str, ...] = ("genre",)
    split: tuple[str, ...] = ("split",)  # calib / test
    role: tuple[str, ...] = ("artist_role", "role")  # gallery / query / unknown
    group: tuple[str, ...] = ("group",)  # near-duplicate group; default: the row's photo
    fold: tuple[str, ...] = ("genre_fold", "fold")  # genre cross-validation fold

    def override(self, mapping: dict[str, str]) -> AlbumColumns:
        known = {f.name for f in fields(self)}
        bad = sorted(set(mapping) - known)
        if bad:
            raise ConfigError(f"unknown manifest field(s) {bad}", f"map one of {', '.join(sorted(known))}")
        return AlbumColumns(**{f.name: ((mapping[f.name],) if f.name in mapping else getattr(self, f.name))
                               for f in fields(self)})


@dataclass
class AlbumRow:
    path: Path
    artist: str | None
    genre: str | None
    split: str | None = None
    role: str | None = None
    group: str = ""
    fold: str | None = None
    extra: dict = field(default_factory=dict)


def load_album_manifest(path: str | Path, columns: AlbumColumns | None = None) -> list[AlbumRow]:
    """Rows of a cover manifest CSV (see the module docstring for the columns)."""
    path = Path(path)
    cols = columns or AlbumColumns()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read manifest ({e})", "pass a UTF-8 CSV") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    headers = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
    pick = {f.name: next((headers[c.lower()] for c in getattr(cols, f.name) if c.lower() in headers), None)
            for f in fields(cols)}
    if pick["photo"] is None:
        raise ConfigError(f"{path}: no photo column (looked for {', '.join(cols.photo)}); found {', '.join(headers)}",
                          "name the column 'photo' or map it: --column photo=HEADER")

    def cell(row, name):
        v = (row.get(pick[name]) or "").strip() if pick[name] else ""
        return v or None

    rows = []
    for i, r in enumerate(reader, start=2):
        photo = cell(r, "photo")
        if photo is None:
            raise ConfigError(f"{path}:{i}: empty photo cell", "give every row a photo path")
        artist = cell(r, "artist")
        rows.append(AlbumRow(path.parent / photo, None if (artist or "").lower() == "unknown" else artist,
                             (cell(r, "genre") or "").lower() or None, cell(r, "split"),
                             (cell(r, "role") or "").lower() or None, cell(r, "group") or photo, cell(r, "fold")))
    if not rows:
        raise ConfigError(f"{path}: no rows", "add one row per cover")
    return rows


def _first_path(rows, key_of) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(key_of(r), r.path)
    return out


def eval_genre(rows: list[AlbumRow], embedder, cfg, *, cache_dir=None, method: str | None = None, use_model=None,
               progress=None, on_skip=None) -> tuple[dict, list[QueryResult], dict]:
    """Genre protocol → ``(metrics, results, thumbs)``; ``thumbs`` maps a genre to an example cover."""
    rows = [r for r in rows if r.genre]
    if not rows:
        raise ConfigError("no rows with a genre", "fill the genre column (or map it: --column genre=HEADER)")
    feats = FeatureTable([r.path for r in rows], embedder, cache_dir, progress, on_skip)
    if use_model is not None:
        x = feats(use_model.features)
        rows = [rows[i] for i in feats.ok or []]
        proba, classes = use_model.predict_proba(x), use_model.classes
        metrics = {"protocol": "stored genre model", "method": use_model.method}
    else:
        if method is not None:
            cfg.methods = (method,)
        feats(cfg.features)
        rows = [rows[i] for i in feats.ok or []]
        folds = [str(r.fold) for r in rows] if all(r.fold is not None for r in rows) else None
        groups = [r.artist or r.group for r in rows]
        comp = cross_validate(feats, [str(r.genre) for r in rows], cfg, groups=groups, folds=folds,
                              embed_texts=embedder.embed_texts)
        best = method or comp.winner
        proba, classes = comp.proba[best], comp.classes
        metrics = {"protocol": "cross-validation over " + ("the fold column" if folds else "folds grouped by artist"),
                   "method": best, "comparison": comp.table(), "folds": len(set(comp.folds))}
    y = [str(r.genre) for r in rows]
    results = []
    for r, p in zip(rows, proba, strict=True):
        order = np.argsort(-p, kind="stable")
        results.append(QueryResult(str(r.path), r.genre, [classes[j] for j in order], [float(p[j]) for j in order],
                                   accepted=True))
    m = evaluate(results, None, k=min(5, len(classes)))
    gm = genre_metrics(y, np.asarray(proba), classes)
    metrics.update({k: m[k] for k in ("n", "top1", "weighted_f1", "per_class") if k in m},
                   macro_f1=gm["macro_f1"], accuracy=gm["accuracy"], genres=classes)
    return metrics, results, _first_path(rows, lambda r: r.genre)


def _row_lines(feats, text: bool) -> list | None:
    """OCR lines per kept row of a FeatureTable (None when the model fuses no text or OCR is unavailable)."""
    if not text or ocr_unavailable() is not None:
        return None
    got = feats.lines()
    return [got.get(i, []) for i in feats.ok or []]


def eval_artist(rows: list[AlbumRow], embedder, *, config=None, stored_model=None, cache_dir=None, split=None,
                progress=None, on_skip=None) -> tuple[dict, list[QueryResult], dict, dict]:
    """Artist-of-an-unseen-album protocol → ``(metrics, results, thumbs, names)``."""

    has_roles = any(r.role for r in rows)
    if has_roles:
        config = config or ArtistConfig()
        feats = FeatureTable([r.path for r in rows], embedder, cache_dir, progress, on_skip)
        x = feats(config.features)
        rows = [rows[i] for i in feats.ok or []]
        gal = [i for i, r in enumerate(rows) if r.role == GALLERY_ROLE and r.artist]
        model = ArtistModel.enrol(x[gal], [str(rows[i].artist) for i in gal], [rows[i].group for i in gal], config=config,
                                  model=store.model_record(embedder))
        queries = [i for i, r in enumerate(rows) if r.role != GALLERY_ROLE]
        truth = {i: (None if rows[i].role == UNKNOWN_ROLE or rows[i].artist not in model.artists else rows[i].artist)
                 for i in queries}
        lines = _row_lines(feats, config.text)
        calib = [i for i in queries if rows[i].split == "calib"]
        if calib:
            model.calibrate_photos(x[calib], [truth[i] for i in calib], "manifest rows with split=calib",
                                   lines=None if lines is None else [lines[i] for i in calib])
            queries = [i for i in queries if rows[i].split != "calib" and (split is None or rows[i].split == split)]
        else:
            model.calibrate_gallery(None if lines is None else [lines[i] for i in gal])
        thumbs = _first_path([rows[i] for i in gal], lambda r: r.artist)
    else:
        if stored_model is None:
            raise ConfigError("the manifest has no role column and no artist model was given",
                              "add an artist_role column (gallery/query/unknown) or fit one: `logoid artist fit`")
        model = stored_model
        feats = FeatureTable([r.path for r in rows], embedder, cache_dir, progress, on_skip)
        x = feats(model.config.features)
        rows = [rows[i] for i in feats.ok or []]
        lines = _row_lines(feats, model.config.text)
        by_name = {n.lower(): k for k, n in zip(model.artists, model.names, strict=True)}
        queries = [i for i, r in enumerate(rows) if split is None or r.split == split]
        truth = {i: by_name.get((rows[i].artist or "").lower()) for i in queries}
        thumbs = {}
    if not queries:
        raise ConfigError("no query rows to evaluate", "check the role / split columns")
    s = model.scores(x[queries], None if lines is None else [lines[i] for i in queries])
    labels = [truth[i] for i in queries]
    pos = {k: j for j, k in enumerate(model.artists)}
    base = model._results(s, [None if v is None else pos[v] for v in labels])
    for r, i in zip(base, queries, strict=True):
        r.path = str(rows[i].path)
    results = with_rule_scores(base, model.rule, model.threshold)
    metrics = evaluate(results, model.threshold)
    metrics.update(protocol="artist of an unseen album", artists=len(model.artists), gallery_covers=int(len(model.gallery)),
                   rule=model.rule, calibration_source=model.source, verify_auroc=model.verify.get("auroc"),
                   fusion=model.fusion, config=model.config.to_dict())
    return metrics, results, thumbs, dict(zip(model.artists, model.names, strict=True))
