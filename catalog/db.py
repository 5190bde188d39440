"""The SQLite catalog: bands, albums and their reference images, one database per logoid home.

Images live in a content-addressed store beside the database (``images/<sha[:2]>/<sha><ext>``);
the database keeps one row per (entity, image). Every change bumps ``revision()`` so an index can
tell that it is stale.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from logoid.core.atomic import atomic_path
from logoid.core.errors import CatalogError, ImageError
from logoid.core.faults import fault_point
from logoid.core.imageio import file_hash, is_black_and_white, load_image
from logoid.core.locks import busy_message, lock_timeout
from logoid.core.paths import Home

from .imagecheck import check_reference
from .models import ENTITY_TYPES, IMAGE_KINDS, Album, Band, RefImage, normalise_name

SCHEMA_VERSION = 1

# AUTOINCREMENT: ids are never reused, so a stale index can never point at a different, newer row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, norm_name TEXT NOT NULL,
    genre TEXT, country TEXT, location TEXT, status TEXT, formed_year INTEGER, themes TEXT, label TEXT);
CREATE INDEX IF NOT EXISTS bands_norm ON bands(norm_name);
CREATE TABLE IF NOT EXISTS band_external_ids (
    band_id INTEGER NOT NULL REFERENCES bands(id) ON DELETE CASCADE,
    source TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (source, value));
CREATE TABLE IF NOT EXISTS band_aliases (
    band_id INTEGER NOT NULL REFERENCES bands(id) ON DELETE CASCADE,
    alias TEXT NOT NULL, norm_alias TEXT NOT NULL, UNIQUE (band_id, norm_alias));
CREATE INDEX IF NOT EXISTS aliases_norm ON band_aliases(norm_alias);
CREATE TABLE IF NOT EXISTS albums (
    id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, norm_title TEXT NOT NULL,
    artist_id INTEGER NOT NULL REFERENCES bands(id) ON DELETE CASCADE, year INTEGER, genre TEXT,
    UNIQUE (artist_id, norm_title));
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_type TEXT NOT NULL CHECK (entity_type IN ('band', 'album')), entity_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL, relpath TEXT NOT NULL, kind TEXT NOT NULL, scheme TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, source TEXT NOT NULL,
    UNIQUE (entity_type, entity_id, sha256));
CREATE INDEX IF NOT EXISTS images_sha ON images(sha256);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""

_BAND_FIELDS = ("genre", "country", "location", "status", "formed_year", "themes", "label")


def _inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid of the row the INSERT on ``cur`` just made (sqlite3 sets it after every INSERT)."""
    rowid = cur.lastrowid
    if rowid is None:
        raise CatalogError("the database did not report the id of the new row")
    return rowid


def _like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (``%`` and ``_`` match themselves; escape char ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _split_ext_id(ref: str) -> tuple[str, str] | None:
    source, sep, value = ref.partition(":")
    if sep and source and value and source.isidentifier():
        return source.lower(), value.strip()
    return None


class Catalog:
    """A logoid catalog. Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    def __init__(self, db_path: Path, images_dir: Path):
        self.db_path = Path(db_path)
        self.images_dir = Path(images_dir)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are ours (BEGIN / SAVEPOINT), so nesting works. The timeout is SQLite's
        # busy wait; logoid's own writers already queue on the home's write lock (logoid.core.locks).
        self._timeout = lock_timeout()
        self._conn = sqlite3.connect(str(self.db_path), isolation_level=None, timeout=self._timeout)
        self._conn.row_factory = sqlite3.Row
        self._depth = 0
        self._snapshot = False  # a read transaction of snapshot() is open
        self._new_files: list[Path] = []  # store files written in the open transaction (removed on rollback)
        self._drop_files: set[str] = set()  # store files to delete once the transaction commits
        self._init_schema()

    @classmethod
    def open(cls, home: Home | str | os.PathLike) -> Catalog:
        """Open (creating if needed) the catalog of ``home``: a :class:`Home`, a home folder or a ``.db`` path."""
        if isinstance(home, Home):
            return cls(home.catalog_db, home.images)
        path = Path(home)
        if path.suffix == ".db":
            return cls(path, path.parent / "images")
        return cls.open(Home(path))

    def _init_schema(self) -> None:
        c = self._conn
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA foreign_keys=ON")
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogError(f"{self.db_path} has schema version {version}, newer than this logoid ({SCHEMA_VERSION})",
                               "upgrade logoid")
        if version == SCHEMA_VERSION:
            return  # an existing catalog: opening it writes nothing, so a reader never waits for a writer
        if c.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            c.execute("PRAGMA journal_mode=WAL")  # persistent: set once, when the database is created
        with self.transaction():
            # Statement by statement: executescript() would commit behind our transaction's back.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- transactions -------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Catalog]:
        """All changes inside commit together or not at all; nested use becomes a savepoint."""
        c = self._conn
        depth = self._depth
        mark = len(self._new_files)
        if depth == 0:
            self._begin_write()
        else:
            c.execute(f"SAVEPOINT sp{depth}")
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            c.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO sp{depth}")
            if depth:
                c.execute(f"RELEASE sp{depth}")
            for p in self._new_files[mark:]:
                p.unlink(missing_ok=True)
            del self._new_files[mark:]
            if depth == 0:
                self._drop_files.clear()
            raise
        self._depth -= 1
        if depth:
            c.execute(f"RELEASE sp{depth}")
            return
        fault_point("catalog-before-commit")
        c.execute("COMMIT")
        fault_point("catalog-committed")
        self._new_files.clear()
        drops, self._drop_files = self._drop_files, set()
        for rel in drops:
            if not c.execute("SELECT 1 FROM images WHERE relpath=? LIMIT 1", (rel,)).fetchone():
                (self.images_dir / rel).unlink(missing_ok=True)

    def _begin_write(self) -> None:
        if self._snapshot:
            raise RuntimeError("a catalog write cannot start inside Catalog.snapshot()")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            raise CatalogError(*busy_message(self.db_path.parent, self._timeout)) from e

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Catalog]:
        """Every read inside sees the catalog as one committed state, whatever other processes commit meanwhile.

        A WAL read transaction: it blocks no writer, and no writer blocks it. Inside a transaction or another
        snapshot it just joins that one.
        """
        if self._depth or self._snapshot:
            yield self
            return
        c = self._conn
        c.execute("BEGIN")
        c.execute("SELECT value FROM meta WHERE key='revision'").fetchone()  # the snapshot starts at the first read
        self._snapshot = True
        try:
            yield self
        finally:
            self._snapshot = False
            c.execute("COMMIT")

    def _bump(self) -> None:
        self._conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")

    def revision(self) -> int:
        """A counter that grows on every change (the index stores it to detect staleness)."""
        return int(self._conn.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0])

    def id_marks(self) -> dict[str, int]:
        """The highest id each table has ever handed out (AUTOINCREMENT never hands one out again)."""
        return {r[0]: int(r[1]) for r in self._conn.execute("SELECT name, seq FROM sqlite_sequence")}

    def reserve_ids(self, marks: dict[str, int]) -> None:
        """Never hand out ids up to ``marks`` again (ids an index holds from before the catalog lost a commit,
        e.g. to a power cut under ``synchronous=NORMAL``): no new row can inherit an old row's vectors."""
        mine = self.id_marks()
        behind = {t: int(m) for t, m in marks.items() if t in ("bands", "albums", "images") and int(m) > mine.get(t, 0)}
        if not behind:
            return
        with self.transaction():
            for table, mark in behind.items():
                if table in mine:
                    self._conn.execute("UPDATE sqlite_sequence SET seq=? WHERE name=?", (mark, table))
                else:
                    self._conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, mark))

    # ---- bands --------------------------------------------------------------------------------
    def _band_from_row(self, row: sqlite3.Row) -> Band:
        c = self._conn
        ext = {r["source"]: r["value"] for r in
               c.execute("SELECT source, value FROM band_external_ids WHERE band_id=? ORDER BY source", (row["id"],))}
        aliases = [r[0] for r in c.execute("SELECT alias FROM band_aliases WHERE band_id=? ORDER BY rowid", (row["id"],))]
        return Band(id=row["id"], name=row["name"], **{f: row[f] for f in _BAND_FIELDS},
                    external_ids=ext, aliases=aliases)

    def get_band(self, band_id: int) -> Band:
        """The band with this row id, or :class:`CatalogError`."""
        row = self._conn.execute("SELECT * FROM bands WHERE id=?", (int(band_id),)).fetchone()
        if row is None:
            raise CatalogError(f"no band with id {band_id}", "see `logoid catalog list`")
        return self._band_from_row(row)

    def list_bands(self) -> list[Band]:
        """Every band, by id."""
        return [self._band_from_row(r) for r in self._conn.execute("SELECT * FROM bands ORDER BY id")]

    def search_bands(self, query: str = "", *, limit: int = 50, offset: int = 0) -> tuple[int, list[Band]]:
        """(how many bands match, one page of them by name): ``query`` is a substring of the name or an alias,
        case- and accent-insensitive; empty matches every band."""
        like = "%" + _like_escape(normalise_name(query)) + "%"
        where = ("WHERE norm_name LIKE ? ESCAPE '\\' OR id IN (SELECT band_id FROM band_aliases "
                 "WHERE norm_alias LIKE ? ESCAPE '\\')")
        c = self._conn
        total = int(c.execute(f"SELECT COUNT(*) FROM bands {where}", (like, like)).fetchone()[0])
        rows = c.execute(f"SELECT * FROM bands {where} ORDER BY norm_name, id LIMIT ? OFFSET ?",
                         (like, like, int(limit), int(offset)))
        return total, [self._band_from_row(r) for r in rows]

    def _band_ids_by_ext(self, external_ids: dict[str, str]) -> list[int]:
        ids: list[int] = []
        for source, value in external_ids.items():
            row = self._conn.execute("SELECT band_id FROM band_external_ids WHERE source=? AND value=?",
                                     (source, str(value))).fetchone()
            if row and row[0] not in ids:
                ids.append(row[0])
        return ids

    def _match_band(self, name: str, external_ids: dict[str, str]) -> int | None:
        if external_ids:
            ids = self._band_ids_by_ext(external_ids)
            if len(ids) > 1:
                raise CatalogError(f"external ids {external_ids} belong to different bands {ids}",
                                   "fix the ids in the input")
            if ids:
                return ids[0]
        for row in self._conn.execute("SELECT id FROM bands WHERE norm_name=? ORDER BY id", (normalise_name(name),)):
            # Same name but another id from the same source: a different band (Metal Archives has many "Mayhem").
            theirs = {r[0]: r[1] for r in self._conn.execute(
                "SELECT source, value FROM band_external_ids WHERE band_id=?", (row[0],))}
            if not any(s in theirs and theirs[s] != str(v) for s, v in external_ids.items()):
                return row[0]
        return None

    def upsert_band(self, name: str, **fields) -> tuple[Band, bool]:
        """Like :meth:`add_band`, also saying whether the band was created (True) or updated."""
        name = (name or "").strip()
        if not name:
            raise CatalogError("a band needs a name", "fill the Name column")
        external_ids = {str(k).lower(): str(v).strip() for k, v in (fields.pop("external_ids", None) or {}).items()
                        if v is not None and str(v).strip()}
        aliases = [a.strip() for a in (fields.pop("aliases", None) or []) if a and a.strip()]
        unknown = set(fields) - set(_BAND_FIELDS)
        if unknown:
            raise CatalogError(f"unknown band fields {sorted(unknown)}", f"use {', '.join(_BAND_FIELDS)}")
        values = {k: v for k, v in fields.items() if v is not None}
        with self.transaction():
            matched = self._match_band(name, external_ids)
            created = matched is None
            if matched is None:
                cols = ["name", "norm_name", *values]
                cur = self._conn.execute(
                    f"INSERT INTO bands ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [name, normalise_name(name), *values.values()])
                band_id = _inserted_id(cur)
            else:
                band_id = matched
                # Update only what the caller gave: a name-only re-import must not wipe metadata. The name
                # changes only when it differs beyond case / accents (a rename found by external id).
                stored = self._conn.execute("SELECT norm_name FROM bands WHERE id=?", (band_id,)).fetchone()[0]
                renamed = stored != normalise_name(name)
                sets = {**({"name": name, "norm_name": normalise_name(name)} if renamed else {}), **values}
                if sets:
                    self._conn.execute(f"UPDATE bands SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?",
                                       [*sets.values(), band_id])
            for source, value in external_ids.items():
                self._conn.execute("INSERT OR REPLACE INTO band_external_ids (band_id, source, value) VALUES (?,?,?)",
                                   (band_id, source, value))
            for alias in aliases:
                self._conn.execute("INSERT OR IGNORE INTO band_aliases (band_id, alias, norm_alias) VALUES (?,?,?)",
                                   (band_id, alias, normalise_name(alias)))
            self._bump()
        return self.get_band(band_id), created

    def add_band(self, name: str, *, genre: str | None = None, country: str | None = None,
                 location: str | None = None, status: str | None = None, formed_year: int | None = None,
                 themes: str | None = None, label: str | None = None, external_ids: dict[str, str] | None = None,
                 aliases: list[str] | None = None) -> Band:
        """Add a band, or update the one with the same external id or (failing that) the same normalised name."""
        return self.upsert_band(name, genre=genre, country=country, location=location, status=status,
                                formed_year=formed_year, themes=themes, label=label,
                                external_ids=external_ids, aliases=aliases)[0]

    def find_band(self, ref: str | int) -> Band:
        """A band by row id, external id (``ma:1234``), name or alias (case- and accent-insensitive)."""
        if isinstance(ref, int):
            return self.get_band(ref)
        ref = str(ref).strip()
        c = self._conn
        ids = [r[0] for r in c.execute("SELECT id FROM bands WHERE norm_name=? ORDER BY id", (normalise_name(ref),))]
        if not ids and (ext := _split_ext_id(ref)):
            ids = self._band_ids_by_ext({ext[0]: ext[1]})
        if not ids and ref.isdigit():
            return self.get_band(int(ref))
        if not ids:
            ids = [r[0] for r in c.execute("SELECT DISTINCT band_id FROM band_aliases WHERE norm_alias=? ORDER BY 1",
                                           (normalise_name(ref),))]
        if len(ids) == 1:
            return self.get_band(ids[0])
        if ids:
            bands = [self.get_band(i) for i in ids]
            choices = "; ".join(f"#{b.id} {b.name} ({b.country or '?'}, "
                                f"{', '.join(f'{k}:{v}' for k, v in b.external_ids.items()) or 'no ext id'})"
                                for b in bands)
            raise CatalogError(f"{ref!r} matches {len(ids)} bands: {choices}", "name it by id or external id")
        names = [r[0] for r in c.execute("SELECT name FROM bands")]
        close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see `logoid catalog list`"
        raise CatalogError(f"no band {ref!r} in the catalog", hint)

    def remove_band(self, ref: str | int | Band) -> Band:
        """Remove a band with its albums and all their image rows; returns the removed band."""
        band = ref if isinstance(ref, Band) else self.find_band(ref)
        with self.transaction():
            for (album_id,) in self._conn.execute("SELECT id FROM albums WHERE artist_id=?", (band.id,)).fetchall():
                self._drop_images("album", album_id)
            self._drop_images("band", band.id)
            self._conn.execute("DELETE FROM bands WHERE id=?", (band.id,))  # albums, ids, aliases cascade
            self._bump()
        return band

    # ---- albums -------------------------------------------------------------------------------
    _ALBUM_SQL = "SELECT a.*, b.name AS artist_name FROM albums a JOIN bands b ON b.id = a.artist_id"

    @staticmethod
    def _album_from_row(row: sqlite3.Row) -> Album:
        return Album(id=row["id"], title=row["title"], artist_id=row["artist_id"], artist_name=row["artist_name"],
                     year=row["year"], genre=row["genre"])

    def get_album(self, album_id: int) -> Album:
        """The album with this row id, or :class:`CatalogError`."""
        row = self._conn.execute(f"{self._ALBUM_SQL} WHERE a.id=?", (int(album_id),)).fetchone()
        if row is None:
            raise CatalogError(f"no album with id {album_id}", "see `logoid catalog list --albums`")
        return self._album_from_row(row)

    def list_albums(self) -> list[Album]:
        """Every album, by id."""
        return [self._album_from_row(r) for r in self._conn.execute(f"{self._ALBUM_SQL} ORDER BY a.id")]

    def search_albums(self, query: str = "", *, limit: int = 50, offset: int = 0) -> tuple[int, list[Album]]:
        """(how many albums match, one page of them by artist and title): ``query`` is a substring of the title
        or the artist's name, case- and accent-insensitive."""
        like = "%" + _like_escape(normalise_name(query)) + "%"
        where = "WHERE a.norm_title LIKE ? ESCAPE '\\' OR b.norm_name LIKE ? ESCAPE '\\'"
        c = self._conn
        total = int(c.execute(f"SELECT COUNT(*) FROM albums a JOIN bands b ON b.id = a.artist_id {where}",
                              (like, like)).fetchone()[0])
        rows = c.execute(f"{self._ALBUM_SQL} {where} ORDER BY b.norm_name, a.norm_title, a.id LIMIT ? OFFSET ?",
                         (like, like, int(limit), int(offset)))
        return total, [self._album_from_row(r) for r in rows]

    def upsert_album(self, title: str, artist: str | int | Band, *, year: int | None = None,
                     genre: str | None = None) -> tuple[Album, bool]:
        """Like :meth:`add_album`, also saying whether the album was created."""
        title = (title or "").strip()
        if not title:
            raise CatalogError("an album needs a title", "fill the title / name field")
        with self.transaction():
            if isinstance(artist, Band):
                band = artist
            elif isinstance(artist, int):
                band = self.get_band(artist)
            else:
                try:
                    band = self.find_band(artist)
                except CatalogError as e:
                    if "matches" in str(e):
                        raise
                    band = self.add_band(artist)
            row = self._conn.execute("SELECT id FROM albums WHERE artist_id=? AND norm_title=?",
                                     (band.id, normalise_name(title))).fetchone()
            if row is None:
                album_id = _inserted_id(self._conn.execute(
                    "INSERT INTO albums (title, norm_title, artist_id, year, genre) VALUES (?,?,?,?,?)",
                    (title, normalise_name(title), band.id, year, genre)))
            else:
                album_id = row[0]
                self._conn.execute("UPDATE albums SET year=COALESCE(?, year), genre=COALESCE(?, genre) WHERE id=?",
                                   (year, genre, album_id))
            self._bump()
        return self.get_album(album_id), row is None

    def add_album(self, title: str, artist: str | int, *, year: int | None = None, genre: str | None = None) -> Album:
        """Add an album (creating its band if missing), or update the band's album with the same title."""
        return self.upsert_album(title, artist, year=year, genre=genre)[0]

    def find_album(self, ref: str | int) -> Album:
        """An album by row id, title, or ``artist - title``."""
        if isinstance(ref, int) or str(ref).strip().isdigit():
            return self.get_album(int(ref))
        ref = str(ref).strip()
        rows = self._conn.execute(f"{self._ALBUM_SQL} WHERE a.norm_title=? ORDER BY a.id",
                                  (normalise_name(ref),)).fetchall()
        if not rows and " - " in ref:
            artist, _, title = ref.partition(" - ")
            rows = [r for r in self._conn.execute(f"{self._ALBUM_SQL} WHERE a.norm_title=? ORDER BY a.id",
                                                  (normalise_name(title),))
                    if normalise_name(r["artist_name"]) == normalise_name(artist)]
        if len(rows) == 1:
            return self._album_from_row(rows[0])
        if rows:
            choices = "; ".join(f"#{r['id']} {r['artist_name']} - {r['title']}" for r in rows)
            raise CatalogError(f"{ref!r} matches {len(rows)} albums: {choices}", "name it by id or 'artist - title'")
        raise CatalogError(f"no album {ref!r} in the catalog", "see `logoid catalog list --albums`")

    def remove_album(self, ref: str | int | Album) -> Album:
        """Remove an album and its image rows; returns the removed album."""
        album = ref if isinstance(ref, Album) else self.find_album(ref)
        with self.transaction():
            self._drop_images("album", album.id)
            self._conn.execute("DELETE FROM albums WHERE id=?", (album.id,))
            self._bump()
        return album

    # ---- images -------------------------------------------------------------------------------
    def _image_from_row(self, row: sqlite3.Row) -> RefImage:
        return RefImage(id=row["id"], entity_type=row["entity_type"], entity_id=row["entity_id"],
                        sha256=row["sha256"], path=self.images_dir / row["relpath"], kind=row["kind"],
                        scheme=row["scheme"], width=row["width"], height=row["height"], source=row["source"])

    def _drop_images(self, entity_type: str, entity_id: int) -> None:
        rows = self._conn.execute("SELECT relpath FROM images WHERE entity_type=? AND entity_id=?",
                                  (entity_type, entity_id)).fetchall()
        self._conn.execute("DELETE FROM images WHERE entity_type=? AND entity_id=?", (entity_type, entity_id))
        self._drop_files.update(r[0] for r in rows)  # deleted after commit, if no other row uses them

    def _check_entity(self, entity_type: str, entity_id: int) -> None:
        if entity_type not in ENTITY_TYPES:
            raise CatalogError(f"unknown entity type {entity_type!r}", "use 'band' or 'album'")
        (self.get_band if entity_type == "band" else self.get_album)(entity_id)

    def upsert_image(self, entity_type: str, entity_id: int, src_path: str | os.PathLike,
                     kind: str | None = None, *, allow_small: bool = False) -> tuple[RefImage, bool]:
        """Like :meth:`add_image`, also saying whether a new image row was created."""
        self._check_entity(entity_type, entity_id)
        kind = kind or ("logo" if entity_type == "band" else "cover")
        if kind not in IMAGE_KINDS:
            raise CatalogError(f"unknown image kind {kind!r}", "use 'logo' or 'cover'")
        src = Path(src_path)
        img = load_image(src)  # raises ImageError for anything unusable
        if not allow_small:
            check_reference(img, src)  # a 1x1 or one-colour image has nothing to recognise
        sha = file_hash(src)
        row = self._conn.execute("SELECT * FROM images WHERE entity_type=? AND entity_id=? AND sha256=?",
                                 (entity_type, entity_id, sha)).fetchone()
        if row is not None:
            return self._image_from_row(row), False
        rel = f"{sha[:2]}/{sha}{src.suffix.lower() or '.img'}"
        dest = self.images_dir / rel
        with self.transaction():
            if not dest.exists():
                try:
                    with atomic_path(dest) as tmp:
                        shutil.copyfile(src, tmp)
                except OSError as e:
                    raise ImageError(src, f"cannot copy into the image store ({e})", "check disk space") from e
                self._new_files.append(dest)
            fault_point("catalog-image-stored")
            scheme = "bw" if is_black_and_white(img) else "color"
            cur = self._conn.execute(
                "INSERT INTO images (entity_type, entity_id, sha256, relpath, kind, scheme, width, height, source) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (entity_type, entity_id, sha, rel, kind, scheme, img.width, img.height, src.name))
            self._bump()
        return self.get_image(_inserted_id(cur)), True

    def add_image(self, entity_type: str, entity_id: int, src_path: str | os.PathLike,
                  kind: str | None = None, *, allow_small: bool = False) -> RefImage:
        """Validate and store a reference image for an entity (dedup by content); returns its row.

        Images under ``imagecheck.MIN_SIDE`` px or of one colour are refused unless ``allow_small``."""
        return self.upsert_image(entity_type, entity_id, src_path, kind, allow_small=allow_small)[0]

    def get_image(self, image_id: int) -> RefImage:
        """The image with this id, or :class:`CatalogError`."""
        row = self._conn.execute("SELECT * FROM images WHERE id=?", (int(image_id),)).fetchone()
        if row is None:
            raise CatalogError(f"no image with id {image_id}", "rebuild the index: `logoid build-index`")
        return self._image_from_row(row)

    def image_ids(self) -> set[int]:
        """The ids of every reference image (what a complete index holds)."""
        return {int(r[0]) for r in self._conn.execute("SELECT id FROM images")}

    def entity_keys(self) -> set[str]:
        """``band:ID`` and ``album:ID`` of every entity: what an answer may name."""
        return ({f"band:{r[0]}" for r in self._conn.execute("SELECT id FROM bands")}
                | {f"album:{r[0]}" for r in self._conn.execute("SELECT id FROM albums")})

    def images(self, entity_type: str | None = None, entity_id: int | None = None) -> list[RefImage]:
        """Reference images, optionally of one entity type or one entity, by id."""
        sql = "SELECT * FROM images WHERE 1=1"
        args: list[str | int] = []
        if entity_type is not None:
            sql, args = sql + " AND entity_type=?", [*args, entity_type]
        if entity_id is not None:
            sql, args = sql + " AND entity_id=?", [*args, int(entity_id)]
        return [self._image_from_row(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    # ---- display ------------------------------------------------------------------------------
    def entity_name(self, entity_type: str, entity_id: int) -> str:
        """Display name: the band's name, or ``artist - title`` for an album."""
        if entity_type == "band":
            return self.get_band(entity_id).name
        album = self.get_album(entity_id)
        return f"{album.artist_name} - {album.title}"

    def entity_meta(self, entity_type: str, entity_id: int) -> dict:
        """Everything a query answer shows about an entity, JSON-ready (also the input of captions)."""
        self._check_entity(entity_type, entity_id)
        n_images = len(self.images(entity_type, entity_id))
        if entity_type == "band":
            meta = self.get_band(entity_id).to_dict()
        else:
            album = self.get_album(entity_id)
            band = self.get_band(album.artist_id)
            meta = album.to_dict()
            meta.update(name=album.title, artist=album.artist_name, country=band.country,
                        artist_genre=band.genre, external_ids=band.external_ids)
        meta.update(type=entity_type, display_name=self.entity_name(entity_type, entity_id), n_images=n_images)
        return json.loads(json.dumps(meta))

    def counts(self) -> dict:
        """Numbers of bands, albums and images (by entity type), and the revision."""
        c = self._conn
        one = lambda sql: int(c.execute(sql).fetchone()[0])  # noqa: E731
        return {"bands": one("SELECT COUNT(*) FROM bands"), "albums": one("SELECT COUNT(*) FROM albums"),
                "images": one("SELECT COUNT(*) FROM images"),
                "band_images": one("SELECT COUNT(*) FROM images WHERE entity_type='band'"),
                "album_images": one("SELECT COUNT(*) FROM images WHERE entity_type='album'"),
                "revision": self.revision()}
