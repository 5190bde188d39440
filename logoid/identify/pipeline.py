"""One photo → one answer: shortlist from every channel, verify, fuse, reject."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from logoid.albums.answer import AlbumStep
from logoid.albums.features import CoverFeatureConfig
from logoid.core.errors import CatalogError, ConfigError
from logoid.core.imageio import geometry, load_image, load_image_bytes
from logoid.core.paths import Home
from logoid.engine.local import extract, finest_side
from logoid.identify.match import LocalConfig, match_local
from logoid.identify.match import find_all as _find_all
from logoid.index.store import IndexStore
from logoid.index.vectors import decode_ids
from logoid.scoring.fusion import candidate_features, make_scorer
from logoid.scoring.results import QueryResult
from logoid.scoring.rules import rule_score

from .answer import Answer, Candidate

CHANNELS = ("global", "local", "text")


@dataclass
class IdentifyConfig:
    """Knobs of the identify step (the index sidecar holds the calibrated threshold and fusion)."""

    channels: tuple[str, ...] = CHANNELS  # which evidence to use; see `--channels`
    k_vectors: int = 400  # nearest variant vectors fetched from the global index
    shortlist: int = 20  # entities per channel that go on to verification and fusion
    max_logos: int = 10  # with find_all: most logos reported per photo
    # With find_all, logos after the strongest also need at least this fused score (None: the threshold alone).
    # The threshold is calibrated on whole photos, one answer each; a photo read in many tile windows gives chance
    # more tries. Chosen on 2×2 and 3×3 mosaics of threadless-dev calib photos: the lowest value with at most 0.1
    # wrong ids per mosaic on both (3×3: 0.20 -> 0.10, recall 0.832 -> 0.815; BENCHMARKS.md#mosaic-designs, run of 2026-11-23 18:37).
    all_min_score: float | None = 0.7
    text_min_sim: float = 0.55  # name matches below this similarity are not candidates
    # The text channel's best-matched entities (up to this many) that the local channel has not verified are
    # verified on their own references (a search restricted to them): among 180k logos a print's descriptors find
    # other logos' strokes nearer than its own, and its band gets no votes, though its name is read (0: off).
    text_verify: int = 5
    # Album extras on every answer (logoid.albums.AlbumStep): the artist of an album not in the catalog, the
    # genre of a cover. Each needs its model (`logoid artist fit`, `logoid genre train`) or album covers.
    albums: bool = True

    def __post_init__(self) -> None:
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad or not self.channels:
            raise ConfigError(f"unknown channel(s) {bad or self.channels}", f"choose from {', '.join(CHANNELS)}")
        if self.all_min_score is not None and not 0.0 <= self.all_min_score <= 1.0:
            raise ConfigError(f"all_min_score must be in [0, 1] or None, got {self.all_min_score}")


@dataclass
class Evidence:
    """Raw per-entity evidence of one photo from each channel, before fusion."""

    path: str
    cands: dict[str, dict]  # entity key → raw values (cos, inliers, text_sim, ...)
    floor: float  # lowest cosine the global search returned (an upper bound for entities it missed)
    read: list[dict]
    logos: list  # verified logos (find_all mode)
    timings: dict
    channels: tuple[str, ...]

    def restrict(self, channels: tuple[str, ...]) -> Evidence:
        """The evidence as if only ``channels`` had run (for side-by-side channel comparisons)."""
        keep_g, keep_l, keep_t = ("global" in channels), ("local" in channels), ("text" in channels)
        out: dict[str, dict] = {}
        for key, c in self.cands.items():
            has_g, has_l, has_t = c.get("in_global", False), c.get("inliers", 0) > 0, c.get("text_sim", 0) > 0
            if not ((keep_g and has_g) or (keep_l and has_l) or (keep_t and has_t)):
                continue
            d = dict(c)
            if not keep_g:
                d["cos"], d["in_global"] = 0.0, False
            elif not has_g:
                d["cos"] = self.floor
            if not keep_l:
                for k in ("inliers", "inlier_ratio", "local_score", "inlier_coverage", "polygon", "local_image_id"):
                    d.pop(k, None)
            if not keep_t:
                for k in ("text_sim", "text_coverage", "text_conf", "text"):
                    d.pop(k, None)
            out[key] = d
        return Evidence(self.path, out, self.floor if keep_g else 0.0, self.read if keep_t else [],
                        self.logos if keep_l else [], self.timings, tuple(channels))


class Identifier:
    """Holds the index, catalog and models of one home; each is loaded on first use."""

    def __init__(self, home: Home, catalog, *, config: IdentifyConfig | None = None, embedder=None,
                 threshold: float | None = None, store: IndexStore | None = None, reader=None):
        """``embedder``, ``store`` (the loaded index) and ``reader`` (OCR) may be shared with other Identifiers,
        e.g. one per server thread over one set of models: each is loaded here on first use otherwise."""
        self.home = home
        self.catalog = catalog
        self.config = config or IdentifyConfig()
        self._embedder = embedder
        self._embedder_checked = False
        self._threshold_override = threshold
        self._store: IndexStore | None = store
        self._entity_of_image: dict[int, str] | None = None
        self._images_of_entity: dict[str, list[int]] | None = None
        self._reader = reader
        self._scorer: Callable[[list[dict]], list[float]] | None = None
        self._album_step: AlbumStep | None = None

    # ---- lazy state ----------------------------------------------------------------------
    @property
    def store(self) -> IndexStore:
        if self._store is None:
            self._store = IndexStore.load(self.home.index_dir)
        return self._store

    @property
    def embedder(self):
        """The index's model (or the one passed in, checked once against the index)."""
        if not self._embedder_checked:
            if self._embedder is None:
                from logoid.engine import create_embedder

                self._embedder = create_embedder(self.store.model_name)
            self.store.check_model(self._embedder.info)
            self._embedder_checked = True
        return self._embedder

    @property
    def threshold(self) -> float:
        if self._threshold_override is not None:
            return float(self._threshold_override)
        cal = self.store.meta.get("calibration") or {}
        return float(cal.get("threshold", self.store.meta.get("threshold", 0.5)))

    @property
    def text_only_threshold(self) -> float:
        """Threshold for an answer supported by the text channel alone (`logoid calibrate` fits it; else the main one)."""
        if self._threshold_override is not None:
            return float(self._threshold_override)
        t = ((self.store.meta.get("calibration") or {}).get("text_only") or {}).get("threshold")
        return float(t) if t is not None else self.threshold

    def _image_entities(self) -> dict[int, str]:
        """Reference image id -> entity key (``band:3``), as the catalog held them when first asked."""
        if self._entity_of_image is None:
            self._entity_of_image = {r.id: f"{r.entity_type}:{r.entity_id}" for r in self.catalog.images()}
        return self._entity_of_image

    def entity_of_image(self, image_id: int) -> str | None:
        return self._image_entities().get(int(image_id))

    def images_of_entity(self, key: str) -> list[int]:
        """The reference image ids of an entity (``band:3``): the inverse of :meth:`entity_of_image`."""
        if self._images_of_entity is None:
            out: dict[str, list[int]] = {}
            for iid, k in self._image_entities().items():
                out.setdefault(k, []).append(iid)
            self._images_of_entity = out
        return self._images_of_entity.get(key, [])

    @property
    def reader(self):
        if self._reader is None:
            from logoid.engine.ocr import TextReader

            self._reader = TextReader()
        return self._reader

    @property
    def rule(self) -> str:
        """The calibrated rejection rule (max_score until `logoid calibrate` picks another)."""
        return (self.store.meta.get("calibration") or {}).get("rule", "max_score")

    def rejection_score(self, ranked: list[Candidate]) -> float:
        if not ranked:
            return float("-inf")
        if self.rule == "max_score":
            return ranked[0].score

        qr = QueryResult("", None, [c.entity_key for c in ranked], [c.score for c in ranked],
                         [c.features for c in ranked])
        return float(rule_score(self.rule, qr))

    def score(self, feats: list[dict]) -> list[float]:
        scorer = self._scorer
        if scorer is None:
            scorer = self._scorer = make_scorer(self.store.meta)
        return scorer(feats)

    # ---- channels ------------------------------------------------------------------------
    def _global(self, img: Image.Image) -> dict[str, dict]:
        q = self.embedder.embed_images([img])
        sims, ids = self.store.vectors.search(q, self.config.k_vectors)
        image_ids, _ = decode_ids(ids[0])
        out: dict[str, dict] = {}
        for sim, iid, vid in zip(sims[0], image_ids, ids[0], strict=True):
            if vid < 0:
                continue
            key = self.entity_of_image(iid)
            if key is None:  # vector of an image no longer in the catalog
                continue
            c = out.setdefault(key, {"cos": float(sim), "image_id": int(iid), "in_global": True})
            if sim > c["cos"]:
                c.update(cos=float(sim), image_id=int(iid))
        floor = float(sims[0][ids[0] >= 0].min()) if (ids[0] >= 0).any() else 0.0
        ranked = sorted(out.items(), key=lambda kv: -kv[1]["cos"])[: self.config.shortlist]
        return dict(ranked) | {"__floor__": {"cos": floor}}

    def _local_cfg(self):
        return LocalConfig.from_dict(self.store.meta.get("local") or {})

    def decode_size(self, find_all: bool = False) -> tuple[int, int]:
        """(long side, short side) a photo must keep for the channels asked: the most any of them reads it at. A
        bigger photo is decoded straight down to it (``load_image(min_size=...)``), in its own px all the same."""
        ch, long_side, short_side = self.config.channels, 1, 1
        if "global" in ch:  # the model's input square
            long_side = short_side = max((self.store.meta.get("model") or {}).get("image_size") or [224])
        if self.config.albums:  # cover features read squares of each scale
            short_side = max(short_side, *CoverFeatureConfig().scales)
        if "local" in ch:
            cfg = self._local_cfg().extract
            long_side = max(long_side, finest_side(cfg.for_find_all() if find_all else cfg))
        if "text" in ch:
            long_side = max(long_side, self.reader.config.photo_side())
        return max(long_side, short_side), short_side

    def _local(self, img: Image.Image, extra_images: list[int], find_all: bool):
        """(verified references, every logo with ``find_all``, the photo's local features and settings for a later
        :meth:`verify_named`; None where there are none)."""
        dindex = self.store.descriptors
        if dindex is None or dindex.ntotal == 0:
            return [], [], None
        cfg = self._local_cfg()
        if find_all:
            # Several logos in one photo are each a small part of it: read it finer, in tiles.
            cfg = replace(cfg, extract=cfg.extract.for_find_all())
        qf = extract(img, cfg.extract, role="query")
        if len(qf.xy) == 0:
            return [], [], None
        # One k-NN search of the photo's descriptors serves both the best answer and every logo in it.
        search = dindex.search(qf.desc, k=max(2, cfg.match.neighbours))
        verifs = match_local(qf, dindex, cfg, extra_candidates=extra_images, search=search)
        logos = _find_all(qf, dindex, cfg, max_logos=self.config.max_logos, search=search) if find_all else []
        return verifs, logos, (qf, cfg)

    def named_images(self, matches, cands: dict[str, dict]) -> list[int]:
        """Reference images of the ``text_verify`` most similar names read whose entity has no local evidence yet."""
        out: list[int] = []
        seen: set[str] = set()
        for m in sorted(matches, key=lambda m: -m.similarity):
            if len(seen) >= self.config.text_verify:
                break
            if m.entity_key in seen or "local_score" in cands.get(m.entity_key, {}):
                continue
            seen.add(m.entity_key)
            out += self.images_of_entity(m.entity_key)
        return out

    def verify_named(self, local: tuple, images: list[int]):
        """The local channel's verification of ``images`` alone: matched by a search restricted to their
        descriptors (exact where the index keeps codes), so other references' nearer strokes cannot outvote them."""
        qf, cfg = local
        return match_local(qf, self.store.descriptors, cfg, restrict=images)

    def _text(self, img: Image.Image, regions: list | None = None):
        names = self.store.names
        if names is None or len(names) == 0:
            return [], []
        lines = self.reader.read(img, regions=regions)
        if not lines:
            return [], []
        matches = names.match(lines, k=self.config.shortlist)
        read = [{"text": ln.text, "conf": round(float(ln.conf), 3), "box": np.asarray(ln.box, dtype=np.float64).round(1).tolist()}
                for ln in lines]
        return [m for m in matches if m.similarity >= self.config.text_min_sim], read

    # ---- the answer ----------------------------------------------------------------------
    def identify(self, photo: str | Path | bytes | Image.Image, *, find_all: bool = False,
                 path: str | None = None) -> Answer:
        """The whole answer for one photo (a file, the bytes of one — an upload, never written to disk — or a
        decoded image), named ``path`` in the answer: the band or album or unknown, every logo (``find_all``), the
        album extras, the text read and each step's time. The photo is decoded once."""
        t0 = time.perf_counter()
        img, name = self._decode(photo, find_all, path)
        decode = time.perf_counter() - t0
        ev = self.collect(img, find_all=find_all, path=name)
        ev.timings = {"decode": decode, **ev.timings}
        answer = self.decide(ev)
        answer.size = geometry(img).original_size
        if self.config.albums:
            t = time.perf_counter()
            best = answer.best
            album = best.meta if (answer.accepted and best and best.entity_key.startswith("album:")) else None
            extras = self.album_step.apply(img, accepted_album=album, accepted=answer.accepted,
                                           read=answer.read if "text" in ev.channels else None)
            answer.artist_guess, answer.genre = extras["artist_guess"], extras["genre"]
            answer.notes += self.album_step.notes
            self.album_step.notes.clear()
            answer.timings["albums"] = time.perf_counter() - t
        answer.timings["total"] = time.perf_counter() - t0
        return answer

    def _decode(self, photo, find_all: bool, path: str | None) -> tuple[Image.Image, str]:
        """(the photo decoded at the size the asked channels need, its name in the answer)."""
        if isinstance(photo, Image.Image):
            return photo, path if path is not None else "<image>"
        size = self.decode_size(find_all)  # (reads the index sidecar)
        if isinstance(photo, bytes | bytearray):
            name = path if path is not None else "<upload>"
            return load_image_bytes(bytes(photo), name, min_size=size), name
        return load_image(photo, min_size=size), path if path is not None else str(photo)

    @property
    def album_step(self) -> AlbumStep:
        """The album models of this home (loaded on first use, kept for the next photo)."""
        if self._album_step is None:
            self._album_step = AlbumStep(self.home, self.catalog, lambda: self.embedder)
        return self._album_step

    def collect(self, photo: str | Path | bytes | Image.Image, *, find_all: bool = False,
                path: str | None = None) -> Evidence:
        """Run every enabled channel on the photo and gather raw per-entity evidence (no album extras)."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        img, path = self._decode(photo, find_all, path)
        if not isinstance(photo, Image.Image):
            timings["decode"] = time.perf_counter() - t
        ch = self.config.channels
        cands: dict[str, dict] = {}
        floor = 0.0
        if "global" in ch and self.store.vectors is not None and self.store.vectors.ntotal:
            t = time.perf_counter()
            g = self._global(img)
            floor = g.pop("__floor__")["cos"]
            cands.update(g)
            timings["global"] = time.perf_counter() - t
        logos_v = []
        local = None
        if "local" in ch:
            t = time.perf_counter()
            extra = [c["image_id"] for c in cands.values() if "image_id" in c]
            verifs, logos_v, local = self._local(img, extra, find_all)
            add_local(cands, verifs, self.entity_of_image, floor)
            timings["local"] = time.perf_counter() - t
        read: list[dict] = []
        if "text" in ch:
            t = time.perf_counter()
            try:
                matches, read = self._text(img, text_regions(cands))
            except Exception as e:  # noqa: BLE001 - OCR must never take the answer down with it
                warnings.warn(f"text channel failed ({e}); answering from the image channels", stacklevel=2)
                matches = []
            add_text(cands, matches, floor)
            timings["text"] = time.perf_counter() - t
            named = self.named_images(matches, cands) if local is not None else []
            if local is not None and named:
                t = time.perf_counter()
                add_local(cands, self.verify_named(local, named), self.entity_of_image, floor)
                timings["text_verify"] = time.perf_counter() - t
        return Evidence(path=path, cands=cands, floor=floor, read=read, logos=logos_v, timings=timings,
                        channels=tuple(ch))

    def decide(self, ev: Evidence, channels: tuple[str, ...] | None = None,
               scorer: Callable[[list[dict]], list[float]] | None = None) -> Answer:
        """Fuse the evidence (optionally only some channels' part of it) into a ranked, thresholded answer;
        ``scorer`` (candidate features -> fused scores) replaces the index's fusion, e.g. one being fitted."""
        if channels is not None:
            ev = ev.restrict(channels)
        score = scorer or self.score
        answer = self._rank(ev.path, ev.cands, ev.read, dict(ev.timings), score)
        if ev.logos:
            answer.logos = self._logos(ev.logos, ev.cands, score)
        return answer
    def _rank(self, path, cands: dict[str, dict], read, timings, score) -> Answer:
        names = {k: n for k in cands if (n := entity_name(self.catalog, k)) is not None}
        keys = list(names)
        raw = [cands[k] for k in keys]
        feats = candidate_features(raw, self.config.shortlist)
        scores = score(feats)
        out = []
        for key, c, f, s in zip(keys, raw, feats, scores, strict=True):
            chans = [n for n, ok in (("global", c.get("in_global")), ("local", c.get("inliers", 0) > 0),
                                     ("text", c.get("text_sim", 0) > 0)) if ok]
            out.append(Candidate(
                entity_key=key, name=names[key], score=float(s), features=f,
                channels=chans, image_id=c.get("local_image_id", c.get("image_id")), polygon=c.get("polygon"),
                text=c.get("text"), inliers=int(c.get("inliers", 0)),
            ))
        out.sort(key=lambda cand: -cand.score)
        for cand in out:
            cand.meta = self._meta(cand.entity_key)
        best = out[0] if out else None
        thr = self.text_only_threshold if (best is not None and best.channels == ["text"]) else self.threshold
        rej = self.rejection_score(out)
        return Answer(path=path, accepted=bool(best is not None and rej >= thr), best=best, candidates=out,
                      threshold=thr, read=read, timings=timings, rejection_score=rej, rule=self.rule)

    def _logos(self, verifs, cands: dict[str, dict], score=None) -> list[Candidate]:
        """Every verified logo in the photo, scored by the same fusion as the main answer, strongest first."""
        scored = []
        for v in verifs:
            key = self.entity_of_image(v.image_id)
            if key is None or entity_name(self.catalog, key) is None:
                continue
            c = dict(cands.get(key, {"cos": 0.0}))
            c.update(inliers=int(v.inliers), inlier_ratio=float(v.inlier_ratio), local_score=float(v.score),
                     inlier_coverage=float(v.coverage))
            f = candidate_features([c], self.config.shortlist)[0]
            s = (score or self.score)([f])[0]
            if s >= self.threshold:
                scored.append((s, v, key, f))
        scored.sort(key=lambda t: -t[0])  # stable: equal scores keep the order found
        floor = self.config.all_min_score
        logos: list[Candidate] = []
        for s, v, key, f in scored:
            if logos and floor is not None and s < floor:
                continue  # after the strongest, a logo needs all_min_score too (and then it hides nothing)
            poly = np.asarray(v.polygon, dtype=np.float32)
            if any(_same_place(poly, np.asarray(o.polygon, dtype=np.float32)) for o in logos):
                continue  # the same print found again (its other reference, or a second homography on it)
            logos.append(Candidate(entity_key=key, name=entity_name(self.catalog, key) or key, score=s,
                                   features=f, channels=["local"], image_id=v.image_id, inliers=int(v.inliers),
                                   polygon=poly.astype(np.float64).round(1).tolist(), meta=self._meta(key)))
        return logos

    def _meta(self, key: str) -> dict:
        etype, eid = key.split(":")
        return self.catalog.entity_meta(etype, int(eid))


def add_local(cands: dict[str, dict], verifs, entity_of_image: Callable[[int], str | None], floor: float) -> None:
    """Merge the local channel's verified references into ``cands`` (entity key -> raw values): each entity keeps
    its best-scored reference; one the global search missed enters at ``floor`` cosine. ``entity_of_image``: a
    reference image id's entity key (None: not an answer)."""
    for v in verifs:
        key = entity_of_image(v.image_id)
        if key is None:
            continue
        c = cands.setdefault(key, {"cos": floor, "image_id": v.image_id})
        if v.score > c.get("local_score", -1.0):
            c.update(inliers=int(v.inliers), inlier_ratio=float(v.inlier_ratio), local_score=float(v.score),
                     inlier_coverage=float(v.coverage), polygon=np.asarray(v.polygon, dtype=np.float64).round(1).tolist(),
                     local_image_id=v.image_id)


def add_text(cands: dict[str, dict], matches, floor: float) -> None:
    """Merge the text channel's name matches into ``cands``: each entity keeps its most similar name read."""
    for m in matches:
        c = cands.setdefault(m.entity_key, {"cos": floor})
        if m.similarity > c.get("text_sim", 0):
            c.update(text_sim=float(m.similarity), text_coverage=float(m.coverage),
                     text_conf=float(getattr(m, "line_conf", 0.0)), text=m.name)


def entity_name(catalog, key: str) -> str | None:
    """The entity's display name, or None when the catalog does not have it: an index entry (vector, name) of an
    entity removed since the index was written, or of a write still committing, is never an answer."""
    etype, eid = key.split(":")
    try:
        return catalog.entity_name(etype, int(eid))
    except CatalogError:
        return None


def text_regions(cands: dict[str, dict], n: int = 2) -> list:
    """Outlines of the ``n`` best-verified logos, re-read at full resolution: small lettering on a print that the
    whole-photo OCR pass (at its working size) cannot resolve."""
    located = sorted((c for c in cands.values() if c.get("polygon") and c.get("inliers", 0) > 0),
                     key=lambda c: -c["inliers"])
    return [c["polygon"] for c in located[:n]]


def _same_place(a: np.ndarray, b: np.ndarray) -> bool:
    """True when either outline's centre lies inside the other: one print, reported once."""
    import cv2

    def inside(poly: np.ndarray, pt: np.ndarray) -> bool:
        return cv2.pointPolygonTest(poly.reshape(-1, 1, 2), (float(pt[0]), float(pt[1])), False) >= 0

    return inside(b, a.mean(axis=0)) or inside(a, b.mean(axis=0))
