"""Bulk import: Metal-Archives-shaped band CSVs and album manifests, with their images.

Batch rule: a bad row or image is skipped with a reason in :class:`ImportReport`, and the
import goes on. Re-importing the same file updates rows; it never duplicates them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logoid.core.errors import CatalogError, LogoidError
from logoid.core.imageio import iter_image_files

from .db import Catalog
from .models import slugify

# Canonical band fields, keyed by the header with case, spaces and punctuation removed.
BAND_COLUMNS = {
    "bandid": "band_id", "id": "band_id", "name": "name", "band": "name", "bandname": "name",
    "country": "country", "location": "location", "status": "status", "formedin": "formed_year",
    "formed": "formed_year", "formedyear": "formed_year", "genre": "genre", "themes": "themes",
    "lyricalthemes": "themes", "label": "label", "currentlabel": "label", "image": "image", "aliases": "aliases",
}
_MISSING = {"", "n/a", "na", "unknown", "none", "null", "-", "?"}

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    """What an import did. ``skipped`` holds ``(row or path, reason)`` pairs."""

    added: int = 0
    updated: int = 0
    images_added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "images_added": self.images_added,
                "skipped": [list(s) for s in self.skipped]}


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(header).lower())


def _clean(value) -> str | None:
    if value is None:
        return None
    text = re.sub(r"\s+", " ", str(value)).strip()
    return None if text.lower() in _MISSING else text


def _year(value) -> int | None:
    m = re.search(r"\b(1[89]\d\d|20\d\d)\b", str(value or ""))
    return int(m.group(1)) if m else None


def _header_map(headers: Sequence[str], column_map: dict[str, str] | None) -> dict[str, str]:
    """CSV header → canonical field; ``column_map`` (their header → canonical header or field) wins."""
    out: dict[str, str] = {}
    user = {_key(k): v for k, v in (column_map or {}).items()}
    for h in headers:
        target = user.get(_key(h), h)
        canon = BAND_COLUMNS.get(_key(target))
        if canon is None and target in BAND_COLUMNS.values():
            canon = target
        if canon and canon not in out.values():
            out[h] = canon
    return out


def _image_lookup(images_dir: Path) -> dict[str, list[Path]]:
    """Match keys (slug of file stem, or of a subfolder name) → image files."""
    lookup: dict[str, list[Path]] = {}
    for p in iter_image_files(images_dir):
        rel = p.relative_to(images_dir)
        key = slugify(rel.parts[0]) if len(rel.parts) > 1 else slugify(p.stem)
        lookup.setdefault(key, []).append(p)
    return lookup


def _add_images(cat: Catalog, entity_type: str, entity_id: int, paths: list[Path], report: ImportReport,
                used: set[Path]) -> None:
    for p in paths:
        used.add(p)
        try:
            _, created = cat.upsert_image(entity_type, entity_id, p)
            report.images_added += created
        except LogoidError as e:
            report.skipped.append((str(p), getattr(e, "reason", str(e))))


def import_bands_csv(cat: Catalog, csv_path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                     column_map: dict[str, str] | None = None, progress: Progress | None = None,
                     id_source: str = "ma") -> ImportReport:
    """Import bands from a CSV (Metal Archives columns by default) and match images by band id or name.

    Images: ``images_dir/<id or name>.<ext>``, or several in ``images_dir/<id or name>/``, or an
    ``Image`` column (relative to ``images_dir``, else to the CSV's folder). Band ids become external
    ids ``<id_source>:<id>``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CatalogError(f"{csv_path}: no such CSV file", "check the path")
    base = Path(images_dir) if images_dir else csv_path.parent
    if images_dir and not base.is_dir():
        raise CatalogError(f"{base}: no such images folder", "check --images")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        headers = reader.fieldnames or []
        rows = list(reader)
    hmap = _header_map(headers, column_map)
    if "name" not in hmap.values():
        raise CatalogError(f"{csv_path}: no band name column in {headers}",
                           "map one with --column-map 'YourHeader=Name'")
    lookup = _image_lookup(base) if images_dir else {}
    used: set[Path] = set()
    report = ImportReport()
    for i, raw in enumerate(rows, start=2):  # row 1 is the header
        row = {canon: _clean(raw.get(h)) for h, canon in hmap.items()}
        where = f"{csv_path.name}:{i}"
        try:
            with cat.transaction():
                band, created = cat.upsert_band(
                    row.get("name") or "", genre=row.get("genre"), country=row.get("country"),
                    location=row.get("location"), status=row.get("status"), formed_year=_year(row.get("formed_year")),
                    themes=row.get("themes"), label=row.get("label"),
                    external_ids={id_source: row["band_id"]} if row.get("band_id") else None,
                    aliases=[a for a in re.split(r"[;|]", row.get("aliases") or "") if a.strip()])
                report.added += created
                report.updated += not created
                paths: list[Path] = []
                ext_id = row.get("band_id")
                if ext_id:
                    paths += lookup.get(slugify(ext_id), [])
                paths += [p for p in lookup.get(slugify(band.name), []) if p not in paths]
                image = row.get("image")
                if image:
                    img = Path(image)
                    img = img if img.is_absolute() else base / img
                    if not img.is_file():
                        report.skipped.append((str(img), "image file not found"))
                    elif img not in paths:
                        paths.append(img)
                _add_images(cat, "band", band.id, paths, report, used)
        except LogoidError as e:
            report.skipped.append((where, str(e)))
        if progress:
            progress(i - 1, len(rows))
    for paths in lookup.values():
        report.skipped += [(str(p), "no band in the CSV matches this file name") for p in paths if p not in used]
    return report


def _read_manifest(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                return list(csv.DictReader(f))
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CatalogError(f"{path}: cannot read album manifest ({e})", "pass a JSON list or a CSV") from e
    if isinstance(data, dict) and isinstance(data.get("albums"), list):
        data = data["albums"]
    if not isinstance(data, list):
        raise CatalogError(f"{path}: expected a JSON list of albums", "see `logoid catalog import --help`")
    return data


def import_album_manifest(cat: Catalog, json_path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                          progress: Progress | None = None) -> ImportReport:
    """Import albums from a JSON list (or CSV) of ``{name|title|album, artist, year, genre?, image?|cover?}``.

    Image paths are relative to ``images_dir``, else to the manifest's folder. Missing artists are created.
    """
    path = Path(json_path)
    if not path.is_file():
        raise CatalogError(f"{path}: no such manifest", "check the path")
    base = Path(images_dir) if images_dir else path.parent
    entries = _read_manifest(path)
    report = ImportReport()
    for i, entry in enumerate(entries):
        where = f"{path.name}[{i}]"
        if not isinstance(entry, dict):
            report.skipped.append((where, "not an object"))
            continue
        title = _clean(entry.get("title") or entry.get("name") or entry.get("album"))
        artist = _clean(entry.get("artist") or entry.get("artist_name"))
        if not title or not artist:
            report.skipped.append((where, "needs a title and an artist"))
            continue
        try:
            with cat.transaction():
                album, created = cat.upsert_album(title, artist, year=_year(entry.get("year")),
                                                  genre=_clean(entry.get("genre")))
                report.added += created
                report.updated += not created
                image = _clean(entry.get("image") or entry.get("cover"))
                if image:
                    img = Path(image) if Path(image).is_absolute() else base / image
                    if not img.is_file():
                        report.skipped.append((str(img), "image file not found"))
                    else:
                        _add_images(cat, "album", album.id, [img], report, set())
        except LogoidError as e:
            report.skipped.append((where, str(e)))
        if progress:
            progress(i + 1, len(entries))
    return report
