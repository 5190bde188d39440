"""Bulk import: Metal-Archives-shaped band CSVs and album manifests, with their images.

Batch rule: a bad row or image is skipped with its line number and a reason in :class:`ImportReport`, and the
import goes on; nothing that cannot be trusted gets in (``textfile.read_csv`` sets aside broken quoting and
overlong fields; rows of one band or album that disagree within a file are all skipped). Re-importing the same
file updates rows; it never duplicates them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logoid.core.errors import CatalogError, LogoidError
from logoid.core.imageio import iter_image_files

from .db import Catalog
from .models import normalise_name, slugify
from .textfile import MAX_FIELD_CHARS, read_csv, read_text

# Canonical band fields, keyed by the header with case, spaces and punctuation removed.
BAND_COLUMNS = {
    "bandid": "band_id", "id": "band_id", "name": "name", "band": "name", "bandname": "name",
    "country": "country", "location": "location", "status": "status", "formedin": "formed_year",
    "formed": "formed_year", "formedyear": "formed_year", "genre": "genre", "themes": "themes",
    "lyricalthemes": "themes", "label": "label", "currentlabel": "label", "image": "image", "aliases": "aliases",
}
# Fields whose value can never hold a line break: one broken across lines is a quoting accident.
_ONE_LINE = {"band_id", "name", "image", "title", "album", "artist", "artist_name", "year", "cover"}
_MISSING = {"", "n/a", "na", "unknown", "none", "null", "-", "?"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Skip:
    """Something not imported: ``where`` is ``file:line`` or an image path, ``line`` the file line it came from."""

    where: str
    reason: str
    line: int | None = None

    def to_dict(self) -> dict:
        return {"where": self.where, "line": self.line, "reason": self.reason}


@dataclass
class ImportReport:
    """What an import did: counts, and every row or image skipped with its line and why."""

    added: int = 0
    updated: int = 0
    images_added: int = 0
    skipped: list[Skip] = field(default_factory=list)
    rows: int = 0  # records read from the file (a quoted multi-line value makes one record of several lines)
    lines: int = 0  # lines in the file, header and blank lines included
    encoding: str | None = None

    def skip(self, where: str, reason: str, line: int | None = None) -> None:
        self.skipped.append(Skip(where, reason, line))

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "images_added": self.images_added,
                "rows": self.rows, "lines": self.lines, "encoding": self.encoding,
                "skipped": [s.to_dict() for s in self.skipped]}


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
                used: set[Path], line: int | None, allow_small: bool, first: dict[int, Path]) -> None:
    """Store each file; ``first`` (image id → the file this import first stored or found it as) names a file
    whose content another file of this import already gave the same band or album."""
    for p in paths:
        used.add(p)
        try:
            ref, created = cat.upsert_image(entity_type, entity_id, p, allow_small=allow_small)
        except LogoidError as e:
            reason = getattr(e, "reason", None)  # an ImageError names the file in ``where`` already
            report.skip(str(p), str(e) if reason is None else f"{reason} ({e.hint})" if e.hint else reason, line)
            continue
        report.images_added += created
        if ref.id in first and first[ref.id] != p:
            report.skip(str(p), f"same image as {first[ref.id]}: stored once", line)
        first.setdefault(ref.id, p)


Row = tuple[int, dict]  # (first line in the file, or -position of a JSON entry with no line; canonical fields)


def _line(ln: int) -> int | None:
    return ln if ln > 0 else None


def _at(ln: int) -> str:
    return f"line {ln}" if ln > 0 else f"entry {-ln}"


def _one_per_key(rows: list[Row], key_of: Callable[[dict], Any], label: Callable[[Any], str],
                 facts: Callable[[dict], tuple], where: Callable[[int], str], report: ImportReport) -> list[Row]:
    """Rows that may be applied: several rows of one band or album are reported, never applied silently.

    Rows of one key that agree on ``facts`` are one entity (a repeated row is skipped as a repeat; rows adding
    another image are kept); rows that disagree (one id, two names) are all skipped: which one is right is
    the file owner's call, and applying both would let the last silently overwrite the first.
    """
    groups: dict[Hashable, list[Row]] = {}
    for line, row in rows:
        k = key_of(row)
        if k is not None:
            groups.setdefault(k, []).append((line, row))
    drop: set[int] = set()
    for k, members in groups.items():
        if len(members) < 2:
            continue
        lines = [ln for ln, _ in members]
        if len({facts(r) for _, r in members}) > 1:
            for ln in lines:
                others = ", ".join(_at(o) for o in lines if o != ln)
                report.skip(where(ln), f"{label(k)} is also on {others} with other values; none of them "
                                       "imported: keep one", _line(ln))
            drop.update(lines)
            continue
        seen: dict[str, int] = {}
        for ln, row in members:
            text = json.dumps(row, sort_keys=True, default=str)
            if text in seen:
                report.skip(where(ln), f"repeats {_at(seen[text])} ({label(k)}): imported once", _line(ln))
                drop.add(ln)
            else:
                seen[text] = ln
    return [(ln, r) for ln, r in rows if ln not in drop]


def _band_key(row: dict) -> Hashable | None:
    if row.get("band_id"):
        return ("id", row["band_id"])
    return ("name", normalise_name(row["name"])) if row.get("name") else None


def _band_label(key) -> str:
    return f"band id {key[1]}" if key[0] == "id" else f"band {key[1]!r} (no band id)"


def _band_facts(row: dict) -> tuple:
    return tuple(sorted((k, normalise_name(v) if k == "name" else v) for k, v in row.items()
                        if k != "image" and v is not None))


def import_bands_csv(cat: Catalog, csv_path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                     column_map: dict[str, str] | None = None, progress: Progress | None = None,
                     id_source: str = "ma", *, encoding: str | None = None, allow_small: bool = False) -> ImportReport:
    """Import bands from a CSV (Metal Archives columns by default) and match images by band id or name.

    Images: ``images_dir/<id or name>.<ext>``, or several in ``images_dir/<id or name>/``, or an
    ``Image`` column (relative to ``images_dir``, else to the CSV's folder). Band ids become external
    ids ``<id_source>:<id>``. ``encoding`` None reads UTF-8 (with or without BOM, or UTF-16/32 with one);
    ``allow_small`` keeps images that :mod:`.imagecheck` would refuse.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CatalogError(f"{csv_path}: no such CSV file", "check the path")
    base = Path(images_dir) if images_dir else csv_path.parent
    if images_dir and not base.is_dir():
        raise CatalogError(f"{base}: no such images folder", "check --images")
    table = read_csv(csv_path, encoding, one_line_fields=lambda headers: {
        h for h, canon in _header_map(headers, column_map).items() if canon in _ONE_LINE})
    hmap = _header_map(table.headers, column_map)
    if "name" not in hmap.values():
        raise CatalogError(f"{csv_path}: no band name column in {table.headers}",
                           "map one with --map 'YourHeader=Name'")
    report = ImportReport(rows=len(table.records), lines=table.lines, encoding=table.encoding)
    for line, why in table.problems:
        report.skip(f"{csv_path.name}:{line}", why, line)
    rows = [(rec.line, {canon: _clean(rec.values.get(h)) for h, canon in hmap.items()}) for rec in table.records]
    rows = _one_per_key(rows, _band_key, _band_label, _band_facts, lambda ln: f"{csv_path.name}:{ln}", report)
    lookup = _image_lookup(base) if images_dir else {}
    used: set[Path] = set()
    first: dict[int, Path] = {}
    for n, (line, row) in enumerate(rows, 1):
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
                _add_images(cat, "band", band.id, _row_images(row, band.name, lookup, base, report, line), report,
                            used, line, allow_small, first)
        except LogoidError as e:
            report.skip(f"{csv_path.name}:{line}", str(e), line)
        if progress:
            progress(n, len(rows))
    for paths in lookup.values():
        for p in paths:
            if p not in used:
                report.skip(str(p), "no band in the CSV matches this file name")
    report.skipped.sort(key=lambda s: (s.line is None, s.line or 0))
    return report


def _row_images(row: dict, name: str, lookup: dict[str, list[Path]], base: Path, report: ImportReport,
                line: int) -> list[Path]:
    paths: list[Path] = []
    if row.get("band_id"):
        paths += lookup.get(slugify(row["band_id"]), [])
    paths += [p for p in lookup.get(slugify(name), []) if p not in paths]
    if row.get("image"):
        img = Path(row["image"])
        img = img if img.is_absolute() else base / img
        if not img.is_file():
            report.skip(str(img), "image file not found", line)
        elif img not in paths:
            paths.append(img)
    return paths


def _json_entries(text: str, path: Path) -> list[tuple[int | None, object]]:
    """The entries of a JSON album list with the line each starts on (None inside an ``{"albums": [...]}``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CatalogError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})",
                           "fix the JSON (a list of albums), or pass a CSV") from e
    if isinstance(data, dict) and isinstance(data.get("albums"), list):
        return [(None, entry) for entry in data["albums"]]
    if not isinstance(data, list):
        raise CatalogError(f"{path}: expected a JSON list of albums", "see `logoid catalog import --help`")
    decoder, gap = json.JSONDecoder(), re.compile(r"[\s,]*")
    pos, line = text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    out: list[tuple[int | None, object]] = []
    for _ in data:
        m = gap.match(text, pos)
        start = m.end() if m else pos
        line += text.count("\n", pos, start)
        entry, end = decoder.raw_decode(text, start)
        out.append((line, entry))
        line += text.count("\n", start, end)
        pos = end
    return out


def _manifest_rows(path: Path, encoding: str | None, report: ImportReport) -> list[tuple[int, object]]:
    """(line, entry) of an album manifest: a JSON list or a CSV with title/artist/year/genre/cover headers."""
    if path.suffix.lower() == ".csv":
        table = read_csv(path, encoding, one_line_fields=lambda hs: {h for h in hs if h.strip().lower() in _ONE_LINE})
        report.rows, report.lines, report.encoding = len(table.records), table.lines, table.encoding
        for line, why in table.problems:
            report.skip(f"{path.name}:{line}", why, line)
        return [(r.line, {k.strip().lower(): v for k, v in r.values.items()}) for r in table.records]
    text, report.encoding = read_text(path, encoding, kind="JSON")
    report.lines = text.count("\n") + (not text.endswith("\n"))
    # An entry is named by the line it starts on, or (-position) inside {"albums": [...]}, whose lines we do not map.
    entries = _json_entries(text, path)
    rows = [(line if line is not None else -(i + 1), entry) for i, (line, entry) in enumerate(entries)]
    report.rows = len(rows)
    return rows


def _album_fields(entry: dict) -> dict:
    return {"title": _clean(entry.get("title") or entry.get("name") or entry.get("album")),
            "artist": _clean(entry.get("artist") or entry.get("artist_name")),
            "year": _year(entry.get("year")), "genre": _clean(entry.get("genre")),
            "image": _clean(entry.get("image") or entry.get("cover"))}


def import_album_manifest(cat: Catalog, json_path: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                          progress: Progress | None = None, *, encoding: str | None = None,
                          allow_small: bool = False) -> ImportReport:
    """Import albums from a JSON list (or CSV) of ``{name|title|album, artist, year, genre?, image?|cover?}``.

    Image paths are relative to ``images_dir``, else to the manifest's folder. Missing artists are created.
    Several entries of one album add their covers; entries of one album that disagree on year or genre are
    all skipped and named.
    """
    path = Path(json_path)
    if not path.is_file():
        raise CatalogError(f"{path}: no such manifest", "check the path")
    base = Path(images_dir) if images_dir else path.parent
    report = ImportReport()
    entries = _manifest_rows(path, encoding, report)

    def where(ln: int) -> str:
        return f"{path.name}:{ln}" if ln > 0 else f"{path.name} entry {-ln}"

    rows: list[Row] = []
    for ln, entry in entries:
        if not isinstance(entry, dict):
            report.skip(where(ln), "not an object", _line(ln))
            continue
        fields = _album_fields(entry)
        long = [k for k in ("title", "artist", "genre", "image") if len(fields[k] or "") > MAX_FIELD_CHARS]
        if long:
            report.skip(where(ln), f"{long[0]} is {len(fields[long[0]] or ''):,} characters, over the limit of "
                                   f"{MAX_FIELD_CHARS:,}", _line(ln))
        elif not fields["title"] or not fields["artist"]:
            report.skip(where(ln), "needs a title and an artist", _line(ln))
        else:
            rows.append((ln, fields))
    first: dict[int, Path] = {}
    rows = _one_per_key(rows, lambda r: (normalise_name(r["artist"]), normalise_name(r["title"])),
                        lambda k: f"album {k[1]!r} by {k[0]!r}", lambda r: (r["year"], r["genre"]), where, report)
    for n, (ln, fields) in enumerate(rows, 1):
        line = _line(ln)
        try:
            with cat.transaction():
                album, created = cat.upsert_album(fields["title"], fields["artist"], year=fields["year"],
                                                  genre=fields["genre"])
                report.added += created
                report.updated += not created
                if fields["image"]:
                    img = Path(fields["image"])
                    img = img if img.is_absolute() else base / img
                    if not img.is_file():
                        report.skip(str(img), "image file not found", line)
                    else:
                        _add_images(cat, "album", album.id, [img], report, set(), line, allow_small, first)
        except LogoidError as e:
            report.skip(where(ln), str(e), line)
        if progress:
            progress(n, len(rows))
    report.skipped.sort(key=lambda s: (s.line is None, s.line or 0))
    return report
