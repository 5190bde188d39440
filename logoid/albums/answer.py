"""The album-aware step on top of identify: the artist of an album, the artist of an unseen album, the genre.

``AlbumStep(home, catalog, embedder).apply(image, accepted_album=..., accepted=..., read=...)`` gives the album
extras of one identify answer:
- ``artist``: the accepted album's artist;
- ``artist_guess``: when nothing was accepted and the catalog has covers of two or more artists, the
  artist model's guess ("album not in the catalog; artist probably X") or its rejection, from the cover's
  style and the artist names read on it (the identify text channel's lines, else read here; without OCR,
  style alone and one note);
- ``genre``: when a genre model is stored, the cover's predicted genre.
Models load once per step (a batch reuses them). Nothing here prints.
"""

from __future__ import annotations

import warnings

from PIL import Image

from logoid.albums import store
from logoid.albums.artist import NAME, ArtistModel, fit_catalog
from logoid.albums.covers import catalog_covers, extract, line_pairs, ocr_unavailable, read_lines, uses_text
from logoid.albums.genre import GenreModel
from logoid.core.errors import ConfigError, IndexMismatchError, IndexMissingError
from logoid.core.imageio import load_image


class AlbumStep:
    """Lazily loaded album models of one home, applied to identify answers."""

    def __init__(self, home, catalog, embedder, *, artists: bool = True, genre: bool = True):
        """``embedder``: the index's embedder, or a function returning it (called only when a model needs it)."""
        self.home, self.catalog, self._embedder = home, catalog, embedder
        self._want_artists, self._want_genre = artists, genre
        self._artist = self._genre = None
        self._artist_tried = self._genre_tried = False
        self._genre_embedder = None
        self.notes: list[str] = []  # why a model was not used (for the CLI to show once)
        self._ocr_noted = False

    # ---- models --------------------------------------------------------------------------------
    @property
    def embedder(self):
        if callable(self._embedder) and not hasattr(self._embedder, "embed_images"):
            self._embedder = self._embedder()
        return self._embedder

    @property
    def artist_model(self):
        """The stored artist model, else one fitted from the gallery for this run; None without album covers."""
        if self._artist_tried:
            return self._artist
        self._artist_tried = True

        stored = store.exists(self.home, NAME)
        if not stored and len({c.artist_key for c in catalog_covers(self.catalog)}) < 2:
            return None  # nothing to answer artists from: do not load the model for it
        try:
            self._artist = ArtistModel.load(self.home, self.embedder)
            if note := self._artist.stale_note(self.catalog):
                self.notes.append(note)
            return self._artist
        except IndexMismatchError as e:
            self.notes.append(f"artist model ignored: {e}")
        except IndexMissingError:
            pass
        try:
            self._artist = fit_catalog(self.home, self.catalog, self.embedder, notes=self.notes)
        except ConfigError as e:
            self.notes.append(f"no artist model: {e}")
        return self._artist

    @property
    def genre_model(self):
        if self._genre_tried:
            return self._genre
        self._genre_tried = True

        try:
            self._genre = GenreModel.load(self.home)
        except IndexMissingError:
            return None
        built = self._genre.model.get("weights_sha256")
        if built == self.embedder.info.get("weights_sha256"):
            self._genre_embedder = self.embedder
        else:
            from logoid.engine import create_embedder

            self._genre_embedder = create_embedder(self._genre.model.get("model"))
            try:
                store.check_model({"model": self._genre.model}, self._genre_embedder, "genre model",
                                   "retrain it: `logoid genre train`")
            except IndexMismatchError as e:
                self.notes.append(f"genre model ignored: {e}")
                self._genre = None
        return self._genre

    # ---- answers -------------------------------------------------------------------------------
    def _lines(self, read: list[dict] | None, image, cache: dict) -> list | None:
        """The text read on the photo: ``read`` (the identify text channel's lines, when it ran), else read here
        (once per photo); None when OCR is unavailable (a note says so once: the models answer from style alone)."""
        if "lines" in cache:
            return cache["lines"]
        if read is not None:
            cache["lines"] = line_pairs(read)
        elif (why := ocr_unavailable()) is not None:
            if not self._ocr_noted:
                self._ocr_noted = True
                if why not in self.notes:
                    self.notes.append(why)
            cache["lines"] = None
        else:
            cache["lines"] = read_lines([_get(image)])[0]
        return cache["lines"]

    def artist_guess(self, image, read: list[dict] | None = None, _cache: dict | None = None):
        """The artist model's guess for a cover not in the catalog (None without an artist model)."""
        model = self.artist_model
        if model is None:
            return None
        cache = {} if _cache is None else _cache
        lines = self._lines(read, image, cache) if model.config.text else None
        return model.guess(extract(self.embedder, [_get(image)], model.config.features), lines=lines)

    def genre(self, image, read: list[dict] | None = None, _cache: dict | None = None) -> dict | None:
        """The cover's genre with probabilities (None without a genre model)."""
        model = self.genre_model
        if model is None:
            return None
        lines = None
        if uses_text(model.features):
            lines = self._lines(read, image, {} if _cache is None else _cache)
            lines = [lines or []]
        return model.predict(extract(self._genre_embedder, [_get(image)], model.features, lines=lines))[0]

    def apply(self, image, *, accepted_album: dict | None, accepted: bool, read: list[dict] | None) -> dict:
        """Album extras of one photo: ``image`` (decoded, or its path: read only when needed), the catalog metadata
        of the album identify accepted (None otherwise), whether anything was accepted, and the text lines the
        identify text channel read (None when it did not run)."""
        if not isinstance(image, Image.Image):
            path = image
            image = _Lazy(lambda: load_image(path))
        out: dict = {"artist": None, "artist_guess": None, "genre": None}
        cache: dict = {}
        if accepted_album is not None:
            out["artist"] = accepted_album.get("artist")
        elif not accepted and self._want_artists:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                guess = self.artist_guess(image, read, cache)
            out["artist_guess"] = guess.to_dict() if guess is not None else None
        if self._want_genre:
            out["genre"] = self.genre(image, read, cache)
        return out


class _Lazy:
    def __init__(self, load):
        self._load, self._img = load, None

    def get(self):
        if self._img is None:
            self._img = self._load()
        return self._img


def _get(image):
    return image.get() if isinstance(image, _Lazy) else image


def album_line(meta: dict) -> str:
    """ "Title — Artist (year, genre)" for an album's catalog metadata."""
    extra = ", ".join(str(v) for v in (meta.get("year"), meta.get("genre")) if v)
    return f"{meta.get('title') or meta.get('name')} — {meta.get('artist')}" + (f" ({extra})" if extra else "")
