"""Labelled query photos for evaluation and calibration: a CSV manifest or a folder tree.

CSV: columns ``photo,label[,split]``; photo paths are relative to the CSV's folder; an empty label or
``unknown`` means the photo shows nothing in the catalog. Folder tree: ``<label>/<photo>``, where a
folder named ``unknown`` holds the photos of things not in the catalog.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from logoid.core.errors import ConfigError
from logoid.core.imageio import iter_image_files

UNKNOWN_LABELS = frozenset({"", "unknown"})
REQUIRED_COLUMNS = ("photo", "label")


@dataclass(frozen=True)
class LabelledQuery:
    """One evaluation photo and its truth."""

    # the photo file
    path: Path
    # truth entity key (e.g. "band:12"), None for a photo of something not in the catalog
    label: str | None
    # "calib" / "test" / ... when the manifest says; None otherwise
    split: str | None = None


def _label(raw: str | None) -> str | None:
    raw = (raw or "").strip()
    return None if raw.lower() in UNKNOWN_LABELS else raw


def _read_csv(path: Path) -> list[LabelledQuery]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets prepend a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read manifest ({e})", "save it as UTF-8 CSV") from e
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        raise ConfigError(f"{path}: manifest is empty", "add a header row 'photo,label[,split]' and one row per photo")
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"{path}: manifest lacks column(s) {', '.join(missing)}; found {', '.join(map(str, reader.fieldnames))}",
            "the header row must be 'photo,label' (optionally ',split'); leave label empty or 'unknown' for "
            "photos of things not in the catalog",
        )
    base = path.parent
    out = []
    for lineno, row in enumerate(reader, start=2):
        photo = (row.get(columns["photo"]) or "").strip()
        if not photo:
            raise ConfigError(f"{path}:{lineno}: empty photo cell", "give every row a photo path")
        split = (row.get(columns["split"]) or "").strip() if "split" in columns else ""
        out.append(LabelledQuery(base / photo, _label(row.get(columns["label"])), split or None))
    return out


def _read_tree(root: Path) -> list[LabelledQuery]:
    stray = [p for p in iter_image_files(root) if p.parent == root]
    if stray:
        raise ConfigError(
            f"{root}: {len(stray)} photo(s) such as {stray[0].name} are not in a label folder",
            "move each photo into a folder named by its label, or into 'unknown/'",
        )
    out = []
    for p in iter_image_files(root):
        label_dir = p.relative_to(root).parts[0]
        out.append(LabelledQuery(p, _label(label_dir), None))
    return out


def load_queries(path: str | os.PathLike, *, split: str | None = None) -> list[LabelledQuery]:
    """Labelled photos from a CSV manifest or a ``label/photo.jpg`` folder tree, optionally of one ``split``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such manifest or folder", "pass a CSV 'photo,label[,split]' or a folder tree")
    queries = _read_tree(path) if path.is_dir() else _read_csv(path)
    if split is not None:
        queries = [q for q in queries if q.split == split]
    if not queries:
        where = f" with split {split!r}" if split is not None else ""
        raise ConfigError(f"{path}: no labelled photos{where}", "check the manifest rows or the folder layout")
    return queries
