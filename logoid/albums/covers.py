"""Cover vectors: the one place that turns cover images into feature rows for the album models.

Every album model (artist, genre) names its feature extractor in its config (``features``) and calls
:func:`extract` / :func:`path_vectors` / :func:`catalog_cover_vectors`; a new extractor is one
:func:`register_features` call. Vectors of files are cached per model and extractor, keyed by the
file's content hash, so refitting a model does not embed the catalog again.

``features`` may join parts with ``+``: ``style+colour+text`` (the genre default) is the GeM style vector, the
colour statistics and the ``text`` part, the cover's OCR-read text through the text tower plus a has-text flag
(:func:`logoid.albums.features.text_features`): exactly :func:`logoid.albums.features.genre_features` of the
default :func:`logoid.albums.features.cover_features`. Each part is cached on its own.
Text is read by :func:`text_reader` (RapidOCR, created on first use; :func:`set_text_reader` swaps it) and the
lines of files are cached by content hash. Without a working OCR engine the text part is empty (zeros, flag 0):
the models answer from the cover style alone, and :func:`ocr_unavailable` says why (for a one-line warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from logoid.albums.features import CoverFeatureConfig, colour_stats, cover_features, ocr_text, text_features
from logoid.core.atomic import write_json_atomic
from logoid.core.errors import ConfigError, ImageError
from logoid.core.imageio import file_hash, load_image
from logoid.index.cache import EmbeddingCache

#: name → fn(embedder, images) → (n, d) float32
FeatureFn = Callable[[object, Sequence[Image.Image]], np.ndarray]
_FEATURES: dict[str, FeatureFn] = {}
_VERSIONS: dict[str, Callable[[], str]] = {}


def register_features(name: str, fn: FeatureFn, version: Callable[[], str] | str = "1") -> None:
    """Make ``fn(embedder, images) -> (n, d) float32`` available as ``features=name`` in album configs.

    ``version`` (a string, or a function giving one, e.g. a config hash) is part of the cache key: change it
    whenever ``fn`` would give different vectors.
    """
    _FEATURES[name] = fn
    _VERSIONS[name] = version if callable(version) else (lambda: str(version))


TEXT = "text"  # the feature part made of the cover's read text (not an image extractor)


def feature_methods() -> list[str]:
    """Names of the registered feature extractors and the ``text`` part (join parts with ``+``)."""
    return sorted(_FEATURES) + [TEXT]


def method_parts(method: str) -> list[str]:
    """``"style+text"`` → ``["style", "text"]``, each checked."""
    parts = [p.strip() for p in str(method).split("+")]
    bad = [p for p in parts if p not in _FEATURES and p != TEXT]
    if bad or not parts:
        raise ConfigError(f"unknown cover feature extractor {method!r}",
                          f"choose from {', '.join(feature_methods())}, or join them with '+' (e.g. style+text)")
    return parts


def uses_text(method: str) -> bool:
    return TEXT in method_parts(method)


# ---- reading the text on covers -----------------------------------------------------------------
_READER: list = []  # the process's text reader, created on first use


def text_reader():
    """The OCR reader the album models use (``logoid.engine.ocr.TextReader``, created on first use)."""
    if not _READER:
        from logoid.engine.ocr import TextReader

        _READER.append(TextReader())
    return _READER[0]


def set_text_reader(reader) -> None:
    """Use ``reader`` (``.read(image) -> lines``, ``.available``) for cover text from now on; None = the default."""
    _READER.clear()
    if reader is not None:
        _READER.append(reader)


def ocr_unavailable() -> str | None:
    """Why cover text cannot be read (None when it can): the album models then use the cover style only."""
    r = text_reader()
    if getattr(r, "available", True):
        return None
    return f"text reading unavailable ({getattr(r, '_failed', None) or 'no OCR engine'}): album models use the " \
           "cover style only; install the `ocr` extra for the text channel"


def line_pairs(lines) -> list[tuple[str, float]]:
    """OCR lines (``TextLine``, ``(text, conf)`` or ``{"text", "conf"}``) as ``(text, conf)`` pairs."""
    out = []
    for ln in lines or []:
        if isinstance(ln, dict):
            out.append((str(ln.get("text", "")), float(ln.get("conf", 1.0))))
        elif hasattr(ln, "text"):
            out.append((str(ln.text), float(getattr(ln, "conf", 1.0))))
        else:
            out.append((str(ln[0]), float(ln[1]) if len(ln) > 1 else 1.0))
    return out


def read_lines(images: Sequence[Image.Image]) -> list[list[tuple[str, float]]]:
    """The text read on each image as ``(text, conf)`` pairs; empty lists when OCR is unavailable."""
    r = text_reader()
    with warnings.catch_warnings():  # the unavailable engine's warning: callers say it once via ocr_unavailable
        warnings.simplefilter("ignore")
        return [line_pairs(r.read(im)) for im in images]


def _ocr_tag() -> str:
    r = text_reader()
    to_dict = getattr(getattr(r, "config", None), "to_dict", None)
    d = {k: v for k, v in (to_dict() if to_dict else {}).items() if k != "threads"}
    d["reader"] = type(r).__name__
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def ocr_cache_path(cache_dir: Path) -> Path:
    """Where the read lines of cover files are cached (one JSON per OCR configuration)."""
    return Path(cache_dir) / "ocr" / f"covers-{_ocr_tag()}.json"


def path_lines(paths: Sequence[str | os.PathLike], *, cache_dir: Path | None, progress: Callable | None = None,
               on_skip: Callable[[str, str], None] | None = None) -> dict[int, list[tuple[str, float]]]:
    """Read lines of image files (cached by content hash under ``cache_dir``): index into ``paths`` → lines."""
    cache_file = ocr_cache_path(cache_dir) if cache_dir is not None else None
    have: dict = {}
    if cache_file is not None and cache_file.is_file():
        try:
            have = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            have = {}
    can_read = ocr_unavailable() is None
    out: dict[int, list[tuple[str, float]]] = {}
    todo: list[tuple[int, str]] = []
    for i, p in enumerate(paths):
        try:
            h = file_hash(Path(p))
        except OSError as e:
            if on_skip:
                on_skip(str(p), f"cannot read ({e.strerror or e})")
            continue
        if h in have:
            out[i] = [(str(t), float(c)) for t, c in have[h]]
        else:
            todo.append((i, h))
    if todo and not can_read:
        return {**out, **{i: [] for i, _ in todo}}  # nothing to read with; not cached
    fresh = 0
    for i, h in progress(todo) if progress else todo:
        try:
            img = load_image(Path(paths[i]))
        except ImageError as e:
            if on_skip:
                on_skip(str(paths[i]), e.reason)
            continue
        out[i] = read_lines([img])[0]
        have[h] = [[t, round(c, 4)] for t, c in out[i]]
        fresh += 1
        if cache_file is not None and fresh % 50 == 0:
            write_json_atomic(cache_file, have)
    if cache_file is not None and fresh:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_file, have)
    return out


def _text_part(embedder, lines: Sequence) -> np.ndarray:
    return text_features(embedder.embed_texts, [ocr_text(line_pairs(ln)) for ln in lines])


def _embedding(embedder, images: Sequence[Image.Image]) -> np.ndarray:
    # The dual encoder's image vector (the same space as the index and the text tower).
    return embedder.embed_images(list(images))


def _trunk(embedder, images: Sequence[Image.Image]) -> np.ndarray:
    # Pooled image-trunk features before the projection: independent of an untrained projection.
    return embedder.image_features_raw(list(images))


def _style(embedder, images: Sequence[Image.Image]) -> np.ndarray:
    # Multi-stage, multi-scale GeM trunk features (logoid.albums.features.cover_features without its colour block,
    # which is the separate "colour" part: it helps genre and hurts artist style). A model without a timm trunk
    # (a tiny test tower, another family) gives its image embedding instead.

    if getattr(getattr(getattr(embedder, "model", None), "visual", None), "trunk", None) is None:
        return embedder.embed_images(list(images))
    return cover_features(embedder, images, _style_config())


def _style_config():
    return CoverFeatureConfig(colour=False)


def _style_version() -> str:
    return hashlib.sha256(json.dumps(_style_config().to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _colour(embedder, images: Sequence[Image.Image]) -> np.ndarray:
    # 64 colour statistics per cover (HSV histogram, brightness, saturation, edges): palettes of genres.

    return np.stack([colour_stats(im) for im in images])


register_features("embedding", _embedding)
register_features("trunk", _trunk)
register_features("style", _style, _style_version)
register_features("colour", _colour)


def _image_part(embedder, images: Sequence[Image.Image], method: str, batch_size: int) -> np.ndarray:
    fn = _FEATURES[method]
    parts = [np.asarray(fn(embedder, images[i:i + batch_size]), np.float32) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def extract(embedder, images: Sequence[Image.Image], method: str = "embedding", batch_size: int = 32,
            lines: Sequence | None = None) -> np.ndarray:
    """Feature rows of ``images`` by ``method`` (parts joined by ``+``): ``(n, d)`` float32.

    ``lines``: the text already read on each image (e.g. by the identify step's text channel); read here when a
    ``text`` part needs it and it is not given.
    """
    blocks = []
    for part in method_parts(method):
        if part == TEXT:
            blocks.append(_text_part(embedder, lines if lines is not None else read_lines(images)))
        else:
            blocks.append(_image_part(embedder, images, part, batch_size))
    return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]


def path_vectors(paths: Sequence[str | os.PathLike], embedder, method: str = "embedding", *, cache_dir: Path | None,
                 progress: Callable | None = None, on_skip: Callable[[str, str], None] | None = None,
                 batch_size: int = 16, lines: dict[int, list] | None = None) -> tuple[np.ndarray, list[int]]:
    """Feature rows of image files (cached by content hash under ``cache_dir``); unreadable files are skipped.

    Returns ``(vectors, ok)``: row ``j`` belongs to ``paths[ok[j]]``. A ``text`` part reads (and caches) the
    files' text unless ``lines`` (index → lines, from :func:`path_lines`) is given.
    """
    blocks: list[tuple[np.ndarray, list[int]]] = []
    for part in method_parts(method):
        if part == TEXT:
            got = lines if lines is not None else path_lines(paths, cache_dir=cache_dir, progress=progress,
                                                               on_skip=on_skip)
            ok = sorted(got)
            blocks.append((_text_part(embedder, [got[i] for i in ok]) if ok else np.zeros((0, 0), np.float32), ok))
        else:
            blocks.append(_path_image_part(paths, embedder, part, cache_dir=cache_dir, progress=progress,
                                           on_skip=on_skip, batch_size=batch_size))
    if len(blocks) == 1:
        return blocks[0]
    common = sorted(set.intersection(*(set(ok) for _, ok in blocks)))
    if not common:
        return np.zeros((0, 0), np.float32), []
    rows = [v[[ok.index(i) for i in common]] if ok != common else v for v, ok in blocks]
    return np.concatenate(rows, axis=1).astype(np.float32), common


def _path_image_part(paths, embedder, method: str, *, cache_dir, progress, on_skip,
                     batch_size: int) -> tuple[np.ndarray, list[int]]:
    paths = [Path(p) for p in paths]
    cache = EmbeddingCache(cache_dir, embedder.model_id) if cache_dir is not None else None
    tag = f"cover-{method}-{_VERSIONS[method]()}"
    found: dict[int, np.ndarray] = {}
    keys: dict[int, str] = {}
    todo: list[int] = []
    for i, p in enumerate(paths):
        try:
            keys[i] = EmbeddingCache.key(file_hash(p), tag, 0)
        except OSError as e:
            if on_skip:
                on_skip(str(p), f"cannot read ({e.strerror or e})")
            continue
    if cache is not None:
        have = cache.get_many(list(keys.values()))
        found = {i: have[k] for i, k in keys.items() if k in have}
    todo = [i for i in keys if i not in found]
    steps = range(0, len(todo), batch_size)
    for start in progress(steps) if progress else steps:
        imgs, idx = [], []
        for i in todo[start:start + batch_size]:
            try:
                imgs.append(load_image(paths[i]))
                idx.append(i)
            except ImageError as e:
                if on_skip:
                    on_skip(str(paths[i]), e.reason)
        if not imgs:
            continue
        vecs = _image_part(embedder, imgs, method, batch_size)
        fresh = {keys[i]: vecs[j] for j, i in enumerate(idx)}
        found.update({i: vecs[j] for j, i in enumerate(idx)})
        if cache is not None:
            cache.put_many(fresh)
    if cache is not None:
        cache.close()
    ok = sorted(found)
    if not ok:
        return np.zeros((0, 0), np.float32), []
    return np.stack([found[i] for i in ok]).astype(np.float32), ok


@dataclass
class CatalogCover:
    """One cover image of a catalog album, with what the album models learn from it."""

    image_id: int
    path: Path
    album_id: int
    title: str
    artist_key: str  # "band:N"
    artist: str
    genre: str | None  # the album's genre, else its artist's


def catalog_covers(catalog) -> list[CatalogCover]:
    """Every album cover in the catalog, by image id."""
    bands = {b.id: b for b in catalog.list_bands()}
    albums = {a.id: a for a in catalog.list_albums()}
    out = []
    for ref in catalog.images("album"):
        a = albums.get(ref.entity_id)
        if a is None:
            continue
        band = bands.get(a.artist_id)
        genre = a.genre or (band.genre if band else None)
        out.append(CatalogCover(ref.id, ref.path, a.id, a.title, f"band:{a.artist_id}", a.artist_name,
                                genre.strip().lower() if genre and genre.strip() else None))
    return out


def covers_signature(covers: Sequence[CatalogCover]) -> str:
    """A short hash of which covers belong to which album and artist: changes when the gallery does."""
    text = ";".join(f"{c.image_id}:{c.album_id}:{c.artist_key}" for c in sorted(covers, key=lambda c: c.image_id))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def catalog_cover_vectors(home, catalog, embedder, method: str = "embedding", *, progress=None,
                          on_skip=None) -> tuple[np.ndarray, list[CatalogCover]]:
    """Feature rows of every catalog album cover (cached); returns the rows and the covers they belong to."""
    covers = catalog_covers(catalog)
    vecs, ok = path_vectors([c.path for c in covers], embedder, method, cache_dir=home.cache_dir,
                            progress=progress, on_skip=on_skip)
    return vecs, [covers[i] for i in ok]


class FeatureTable:
    """Feature rows of a fixed list of image files per extractor, each computed once (and cached on disk).

    Call it with an extractor name; ``ok`` lists the indices of the files that could be read. :meth:`lines`
    gives the text read on each file (read once, cached), shared by every ``text`` part.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], embedder, cache_dir: Path | None, progress=None,
                 on_skip=None):
        self.paths, self.embedder, self.cache_dir = list(paths), embedder, cache_dir
        self.progress, self.on_skip = progress, on_skip
        self._mats: dict[str, np.ndarray] = {}
        self._lines: dict[int, list] | None = None
        self.ok: list[int] | None = None

    def lines(self) -> dict[int, list]:
        """Index into the paths → the OCR lines read on that file (empty lists when OCR is unavailable)."""
        if self._lines is None:
            self._lines = path_lines(self.paths, cache_dir=self.cache_dir, progress=self.progress,
                                     on_skip=self.on_skip)
        return self._lines

    def __call__(self, method: str) -> np.ndarray:
        if method not in self._mats:
            vecs, ok = path_vectors(self.paths, self.embedder, method, cache_dir=self.cache_dir,
                                    progress=self.progress, on_skip=self.on_skip,
                                    lines=self.lines() if uses_text(method) else None)
            if self.ok is not None and ok != self.ok:
                raise ConfigError("some images could be read by one extractor and not another", "fix the skipped files")
            self.ok = ok
            self._mats[method] = vecs
        return self._mats[method]
