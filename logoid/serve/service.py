"""A warm home: the models and indexes loaded once, answering photos and catalog reads from many threads.

What is shared and what is per thread:

- **shared** (loaded once per process): the embedding model, and the index of the current generation (FAISS
  searches run in parallel; every component is loaded before the store is handed out, so no two threads load
  one lazily at once);
- **per thread**: a catalog connection (SQLite connections stay in their thread; each request reads inside one
  ``Catalog.snapshot()``, so it sees one committed state whatever a writer commits meanwhile), the OCR reader
  (RapidOCR is not thread-safe) and the :class:`~logoid.identify.Identifier` built over them.

**Picking up changes.** Before each request the service looks at the index sidecar (a ``stat``; the file is
replaced atomically on every commit) and at the catalog's revision. A new index generation is loaded once and
swapped in for the requests that start after it; a new catalog revision rebuilds the threads' identifiers (their
caches hold the catalog's image → entity map). A change made by ``logoid add-band`` in another shell, or through
the API, is seen by the next request, and a request never mixes two states: it keeps the store and snapshot it
started with.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from logoid import Catalog, Home, Identifier, IdentifyConfig, __version__, answer_json
from logoid.build import edit
from logoid.core.errors import ConfigError, ImageError, IndexMissingError
from logoid.core.imageio import max_pixels
from logoid.identify.pipeline import CHANNELS
from logoid.index.store import SIDECAR, IndexStore


@dataclass
class Limits:
    """What one request may send: bytes per uploaded file, decoded pixels per image, files per batch."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = field(default_factory=max_pixels)
    max_batch: int = 32


class _Thread(threading.local):
    catalog: Catalog | None = None
    reader = None
    key: tuple | None = None
    identifiers: dict


class Service:
    """One home kept warm. ``identify`` and the catalog reads may be called from any thread; identification
    runs on ``pool`` (``threads`` workers: as many photos in parallel as the cores allow)."""

    def __init__(self, home: Home, *, threads: int = 2, limits: Limits | None = None, token: str | None = None):
        self.home = home
        self.threads = max(1, int(threads))
        self.limits = limits or Limits()
        self.token = token or None
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="logoid-identify")
        self.started = time.time()
        self.ready_after: float | None = None  # seconds from start to warm
        self.error: str | None = None  # why warming failed
        self.counts = {"identified": 0, "errors": 0}
        self._local = _Thread()
        self._lock = threading.Lock()
        self._store: IndexStore | None = None
        self._store_key: tuple | None = None
        self._embedder = None

    @property
    def read_only(self) -> bool:
        return self.token is None

    @property
    def ready(self) -> bool:
        return self.ready_after is not None

    # ---- warming ------------------------------------------------------------------------------------------
    def warm(self) -> None:
        """Load the index, the model, and on every worker thread its catalog and OCR reader; then answer one
        blank photo per thread so that every lazily built part is built before the first real request."""
        try:
            self.store()
            from PIL import Image

            # the model loads its weights on first use: once, here, before the threads share it
            self.embedder.embed_images([Image.new("RGB", (64, 64), "white")])
            futures = [self.pool.submit(self._warm_thread) for _ in range(self.threads)]
            for f in futures:
                f.result()
        except Exception as e:  # noqa: BLE001 - a server that cannot warm says why on /v1/health
            self.error = str(e)
            raise
        self.ready_after = time.time() - self.started

    def _warm_thread(self) -> None:
        from PIL import Image

        time.sleep(0.05)  # let the other warm-up tasks reach the other threads
        with self.reading() as cat:
            self.identifier(cat, CHANNELS).identify(Image.new("RGB", (320, 240), "white"), path="<warm-up>")

    # ---- shared state -------------------------------------------------------------------------------------
    def store(self) -> IndexStore:
        """The index of the current generation, loaded once for every thread (reloaded when a write commits)."""
        key = _sidecar_key(self.home.index_dir)
        store = self._store
        if store is not None and key == self._store_key:
            return store
        with self._lock:
            if self._store is None or key != self._store_key:
                if key is None:
                    raise IndexMissingError(f"no index in {self.home.index_dir}", "run `logoid build-index` first")
                fresh = IndexStore.load(self.home.index_dir)
                _ = fresh.descriptors, fresh.names  # loaded now, not lazily by two threads at once
                self._store, self._store_key = fresh, key  # the old one is released when its last request ends
            return self._store

    @property
    def embedder(self):
        """The index's model, made once (again only if the index is rebuilt with another model)."""
        built = self.store().meta.get("model") or {}
        with self._lock:
            if self._embedder is None or self._embedder.info.get("weights_sha256") != built.get("weights_sha256"):
                from logoid import create_embedder

                self._embedder = create_embedder(str(built.get("model")))
            return self._embedder

    # ---- per-thread state ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[Catalog]:
        """This thread's catalog inside one snapshot: every read in the block sees one committed state."""
        loc = self._local
        if loc.catalog is None:
            self.home.ensure()
            loc.catalog = Catalog.open(self.home)
        with loc.catalog.snapshot():
            yield loc.catalog

    def identifier(self, catalog: Catalog, channels: tuple[str, ...]) -> Identifier:
        """This thread's identifier for ``channels`` over the current index and the snapshot's catalog state."""
        loc = self._local
        store = self.store()
        key = (id(store), catalog.revision())
        if loc.key != key:
            loc.key, loc.identifiers = key, {}
        ident = loc.identifiers.get(channels)
        if ident is None:
            if loc.reader is None:
                from logoid.engine.ocr import TextReader

                loc.reader = TextReader()
            ident = Identifier(self.home, catalog, config=IdentifyConfig(channels=channels), embedder=self.embedder,
                               store=store, reader=loc.reader)
            loc.identifiers[channels] = ident
        return ident

    # ---- work ---------------------------------------------------------------------------------------------
    def identify(self, data: bytes, name: str, *, find_all: bool = False, k: int = 5,
                 channels: tuple[str, ...] = CHANNELS, explain: bool = False) -> dict:
        """The answer JSON of one uploaded photo (``logoid query --json``'s), decoded from memory."""
        channels = parse_channels(channels)
        _check_pixels(data, name, self.limits.max_pixels)
        with self.reading() as cat:
            ans = self.identifier(cat, channels).identify(data, find_all=find_all, path=name)
            return answer_json(ans, k, explain=explain)

    def add_band(self, name: str, images: list[Path], **kw) -> edit.Change:
        with self.reading_for_write() as cat:
            return edit.add_band(self.home, cat, name, images=images, load_embedder=lambda: self.embedder, **kw)

    def add_album(self, title: str, artist: str | int, images: list[Path], **kw) -> edit.Change:
        with self.reading_for_write() as cat:
            return edit.add_album(self.home, cat, title, artist, images=images, load_embedder=lambda: self.embedder,
                                  **kw)

    def remove(self, entity_type: str, entity_id: int) -> edit.Change:
        with self.reading_for_write() as cat:
            return (edit.remove_band if entity_type == "band" else edit.remove_album)(self.home, cat, entity_id)

    @contextlib.contextmanager
    def reading_for_write(self) -> Iterator[Catalog]:
        """This thread's catalog outside any snapshot (a write opens its own transaction)."""
        loc = self._local
        if loc.catalog is None:
            self.home.ensure()
            loc.catalog = Catalog.open(self.home)
        yield loc.catalog

    def stats(self) -> dict:
        with self.reading() as cat:
            counts = cat.counts()
        out: dict = {
            "version": __version__, "uptime_s": round(time.time() - self.started, 1), "ready": self.ready,
            "ready_after_s": round(self.ready_after, 2) if self.ready_after is not None else None,
            "read_only": self.read_only, "threads": self.threads, "home": str(self.home.root),
            "catalog": {k: counts[k] for k in ("bands", "albums", "images", "revision")},
            "index": None, "calibration": None, "requests": dict(self.counts),
            "limits": {"max_upload_bytes": self.limits.max_upload_bytes, "max_pixels": self.limits.max_pixels,
                       "max_batch": self.limits.max_batch},
        }
        if IndexStore.exists(self.home.index_dir):
            store = self.store()
            out["index"] = {
                "generation": store.meta.get("generation"), "backend": store.backend, "model": store.model_name,
                "vectors": int(store.vectors.ntotal) if store.vectors is not None else 0,
                "descriptors": int(store.descriptors.ntotal) if store.descriptors is not None else 0,
                "names": len(store.names) if store.names is not None else 0,
                "threshold": (store.meta.get("calibration") or {}).get("threshold", store.meta.get("threshold")),
            }
            cal = store.meta.get("calibration")
            if cal:
                out["calibration"] = {k: cal.get(k) for k in ("threshold", "rule", "objective", "n_photos", "fitted")
                                      if k in cal}
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def parse_channels(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"global,local"`` → ``("global", "local")`` in the pipeline's order; unknown names are a ConfigError."""
    if value is None or value == "":
        return CHANNELS
    items = value.split(",") if isinstance(value, str) else list(value)
    chosen = {c.strip() for c in items if c.strip()}
    bad = sorted(chosen - set(CHANNELS))
    if bad or not chosen:
        raise ConfigError(f"unknown channel(s) {', '.join(bad) or '(none)'}", f"choose from {', '.join(CHANNELS)}")
    return tuple(c for c in CHANNELS if c in chosen)


def _check_pixels(data: bytes, name: str, limit: int) -> None:
    """Refuse a photo over the server's pixel limit from its header, before decoding anything."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception:  # noqa: BLE001 - not an image: decoding says why, with the right status
        return
    if w * h > limit:
        raise ImageError(name, f"{w}x{h} is over the server's pixel limit of {limit:,}",
                         "send a smaller photo; `logoid serve --max-pixels` sets the limit", kind="too_large")


def _sidecar_key(index_dir: Path) -> tuple | None:
    """Changes whenever a commit replaces the sidecar (an atomic rename: a new inode)."""
    try:
        st = (Path(index_dir) / SIDECAR).stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
