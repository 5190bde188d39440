"""The artist of an album logoid never saw: score every catalog artist by two kinds of evidence, fuse them
into one probability per artist, answer the best one or "unknown" by a calibrated rejection rule.

- Style: how much the photo looks like each artist's covers (``ArtistConfig.scorer``: mean of the top-m
  cosines, or the cosine to the artist's mean vector) after centring on the gallery mean, z-normalised
  across artists for that photo (:mod:`logoid.albums.features`: ``topm_scores``, ``znorm_rows``).
- Text: the artist's name (or surname) read on the cover by OCR, fuzzily matched against the enrolled
  artists' names (``text_artist_scores`` over an ``artist_name_index``), and how much text was read at all
  (a cover full of text naming no enrolled artist is evidence of an unknown one).
- :class:`logoid.albums.features.ArtistFusion` (logistic) turns both into P(artist) per candidate; the best
  candidate's probability (or the margin to the second) is compared with the calibrated threshold, and
  ``logoid artist-check`` answers yes at P >= 0.5.

Calibration without photos is leave-one-album-out over the catalog itself: every album's covers are scored
with that album taken out (a known-artist query when the artist has other albums) and with the whole artist
taken out, its name too (an unknown-artist query); the text of the catalog covers is read once (cached).
``logoid artist calibrate`` refits the fusion and the threshold on labelled photos. Without OCR the text
evidence is empty and the same model answers from style alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from logoid.albums import store
from logoid.albums.covers import catalog_covers, covers_signature, ocr_unavailable, path_lines, path_vectors
from logoid.core.config import checked_kwargs
from logoid.core.errors import ConfigError
from logoid.scoring.results import QueryResult
from logoid.scoring.rules import calibrate, rule_score
from logoid.scoring.stats import auroc

from .features import ArtistFusion, l2rows, text_amount, text_artist_scores, topm_scores, znorm_rows

NAME = "artist-model"
FIT_HINT = "fit it with `logoid artist fit`, or on labelled photos with `logoid artist calibrate MANIFEST`"


@dataclass
class ArtistConfig:
    """How covers become artist scores and how the rejection threshold is chosen."""

    features: str = "style"  # cover feature extractor of the style evidence (logoid.albums.covers.feature_methods())
    scorer: str = "knn_mean"  # per-artist aggregation (SCORERS): knn_mean or prototype
    top_m: int = 3  # knn_mean: mean of an artist's m best cosines (fewer when it has fewer covers)
    center: bool = True  # subtract the gallery mean first (removes the "every cover looks like a cover" part)
    znorm: bool = True  # z-normalise each photo's artist scores across artists
    text: bool = True  # fuse the artist names read on the cover (OCR) with the style evidence
    aliases: bool = True  # text: also match an artist's surname (last word of 4+ letters: "COLTRANE")
    text_amount: bool = True  # text: count how much text was read (text naming no enrolled artist → unknown)
    objective: str = "balanced_accuracy"  # threshold objective (logoid.scoring.rules.OBJECTIVES)
    rules: tuple[str, ...] = ("max_score", "margin")  # rejection rules tried by calibration
    max_unknown_queries: int = 3000  # leave-one-artist-out impostor queries kept (seeded sample)
    seed: int = 0  # for that sample

    def __post_init__(self) -> None:
        self.rules = tuple(self.rules)
        if self.scorer not in SCORERS:
            raise ConfigError(f"unknown artist scorer {self.scorer!r}", f"choose one of {', '.join(SCORERS)}")
        if self.top_m < 1:
            raise ConfigError(f"top_m must be at least 1, got {self.top_m}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rules"] = list(self.rules)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ArtistConfig:
        return cls(**checked_kwargs(cls, d, "artist model"))


# ---- scorers: fn(model, qn (m, d) prepared queries, exclude (m,) group id to leave out or -1) -> (m, A), -inf = absent
def _knn_mean(model: ArtistModel, qn: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    return topm_scores(qn, model.gallery, model.owner, len(model.artists), model.config.top_m, model.group, exclude)


def _prototype(model: ArtistModel, qn: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    A = len(model.artists)
    sums = np.zeros((A, model.gallery.shape[1]), np.float64)
    np.add.at(sums, model.owner, model.gallery)
    out = (qn @ l2rows(sums).T).astype(np.float32)
    out[:, np.bincount(model.owner, minlength=A) == 0] = -np.inf
    for i, g in enumerate(exclude):
        rows = model.group == g
        if g < 0 or not rows.any():
            continue
        a = int(model.owner[rows][0])
        rest = sums[a] - model.gallery[rows].sum(0)
        out[i, a] = float(qn[i] @ l2rows(rest)[0]) if (model.owner == a).sum() > rows.sum() else -np.inf
    return out


SCORERS: dict[str, Callable[[ArtistModel, np.ndarray, np.ndarray], np.ndarray]] = {
    "knn_mean": _knn_mean, "prototype": _prototype,
}


@dataclass
class ArtistGuess:
    """The artist step's answer for one photo."""

    accepted: bool
    artist: str | None  # key of the best artist ("band:3"), also when rejected
    name: str | None
    score: float  # the best artist's fused probability (style + name read)
    rejection_score: float  # what the threshold was compared with (per the calibrated rule)
    threshold: float
    rule: str
    ranked: list[tuple[str, str, float]] = field(default_factory=list)  # (key, name, score), best first

    def to_dict(self, k: int = 5) -> dict:
        return {"accepted": self.accepted, "artist": self.name if self.accepted else None, "best": self.name,
                "entity": self.artist, "score": round(self.score, 4), "rejection_score": round(self.rejection_score, 4),
                "threshold": round(self.threshold, 4), "rule": self.rule,
                "candidates": [{"entity": a, "name": n, "score": round(s, 4)} for a, n, s in self.ranked[:k]]}


@dataclass
class ArtistModel:
    """Enrolled covers of every artist with the calibrated rejection and verification rules."""

    config: ArtistConfig
    artists: list[str]  # artist keys ("band:3", or names in a manifest evaluation)
    names: list[str]  # display name per artist
    gallery: np.ndarray  # (n, d) prepared (centred, L2-normalised) cover vectors
    owner: np.ndarray  # (n,) artist index per cover
    group: np.ndarray  # (n,) album (near-duplicate group) id per cover: left out together
    centre: np.ndarray  # (d,) gallery mean subtracted before cosines (zeros when config.center is off)
    calibration: dict = field(default_factory=dict)  # logoid.scoring.rules.Calibration.to_dict()
    fusion: dict = field(default_factory=dict)  # ArtistFusion.to_dict(): style + text → P(artist)
    verify: dict = field(default_factory=dict)  # {"auroc", "threshold", ...}: the fused P(artist) of one artist
    model: dict = field(default_factory=dict)  # the embedding model the vectors come from (store.model_record)
    source: str = ""  # what calibrated it
    catalog_revision: int | None = None  # catalog revision the gallery was read at
    covers_signature: str | None = None  # logoid.albums.covers.covers_signature of the enrolled catalog covers
    _names_index: object = field(default=None, repr=False, compare=False)  # built from names on first use

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def enrol(cls, vectors: np.ndarray, artists: Sequence[str], groups: Sequence, *, names: dict[str, str] | None = None,
              config: ArtistConfig | None = None, model: dict | None = None) -> ArtistModel:
        """A model over gallery ``vectors`` (one row per cover) of ``artists``, covers of one album sharing a group."""
        config = config or ArtistConfig()
        x = np.asarray(vectors, np.float32)
        if x.ndim != 2 or len(x) != len(artists) or len(x) != len(groups):
            raise ConfigError("artist gallery: vectors, artists and groups must have one row per cover")
        keys = sorted({str(a) for a in artists})
        if len(keys) < 2:
            raise ConfigError(f"the artist model needs album covers of at least two artists, got {len(keys)}",
                              "add albums with `logoid add-album --image COVER` or `logoid catalog import`")
        pos = {a: i for i, a in enumerate(keys)}
        gid = {g: i for i, g in enumerate(dict.fromkeys(str(g) for g in groups))}
        centre = x.mean(0) if config.center else np.zeros(x.shape[1], np.float32)
        return cls(config=config, artists=keys, names=[(names or {}).get(k, k) for k in keys],
                   gallery=l2rows(x - centre), owner=np.array([pos[str(a)] for a in artists], np.int64),
                   group=np.array([gid[str(g)] for g in groups], np.int64), centre=centre.astype(np.float32),
                   model=dict(model or {}))

    @classmethod
    def fit(cls, vectors, artists, groups, **kw) -> ArtistModel:
        """:meth:`enrol` then :meth:`calibrate_gallery` (``lines``: OCR lines of each cover, for the text evidence)."""
        lines = kw.pop("lines", None)
        return cls.enrol(vectors, artists, groups, **kw).calibrate_gallery(lines)

    def _prep(self, q: np.ndarray) -> np.ndarray:
        return l2rows(np.atleast_2d(np.asarray(q, np.float32)) - self.centre)

    def _scores(self, qn: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        ex = np.full(len(qn), -1, np.int64) if exclude is None else np.asarray(exclude, np.int64)
        out = np.concatenate([SCORERS[self.config.scorer](self, qn[i:i + 512], ex[i:i + 512])
                              for i in range(0, len(qn), 512)]) if len(qn) else np.zeros((0, len(self.artists)))
        return out

    def _z(self, raw: np.ndarray) -> np.ndarray:
        return znorm_rows(raw) if self.config.znorm else raw

    def style_scores(self, q: np.ndarray) -> np.ndarray:
        """``(m, n_artists)`` style scores of raw query vectors (z-normalised when the config says)."""
        return self._z(self._scores(self._prep(q)))

    @property
    def name_index(self):
        """The enrolled artists' names (+ surname aliases) for the text evidence; built on first use."""
        if self._names_index is None:
            from .features import artist_name_index

            self._names_index = artist_name_index(self.artists, self.names, aliases=self.config.aliases)
        return self._names_index

    def text_evidence(self, lines: Sequence | None, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(text_sim (n, A), letters read (n,) or None)`` of ``n`` queries' OCR lines (None: nothing known)."""
        sim = np.zeros((n, len(self.artists)), np.float32)
        if not self.config.text or lines is None:
            return sim, None
        if len(lines) != n:
            raise ConfigError(f"artist model: {len(lines)} OCR line lists for {n} photos")
        for i, ln in enumerate(lines):
            if ln:
                sim[i] = text_artist_scores(ln, self.name_index, self.artists)
        chars = np.asarray([text_amount(ln) for ln in lines], np.float32) if self.config.text_amount else None
        return sim, chars

    def _fused(self, z: np.ndarray, sim: np.ndarray, chars: np.ndarray | None) -> np.ndarray:
        fin = np.isfinite(z)
        p = ArtistFusion.from_dict(self.fusion).proba(np.where(fin, z, 0.0), sim, chars) if self.fusion else \
            1.0 / (1.0 + np.exp(-np.where(fin, z, 0.0)))
        return np.where(fin, p, -np.inf).astype(np.float32)

    def scores(self, q: np.ndarray, lines: Sequence | None = None) -> np.ndarray:
        """``(m, n_artists)`` fused P(artist) of raw query vectors and the text read on each (``lines``: one list
        of OCR lines per query, None = no text evidence: style only)."""
        z = self.style_scores(q)
        sim, chars = self.text_evidence(lines, len(z))
        return self._fused(z, sim, chars)

    def _results(self, s: np.ndarray, labels: Sequence[int | None]):
        out = []
        for row, lab in zip(s, labels, strict=True):
            order = [int(j) for j in np.argsort(-row, kind="stable") if np.isfinite(row[j])]
            out.append(QueryResult("", None if lab is None else self.artists[lab], [self.artists[j] for j in order],
                                   [float(row[j]) for j in order]))
        return out

    def _fit(self, z: np.ndarray, sim: np.ndarray, chars: np.ndarray | None, labels: Sequence[int | None],
             source: str) -> ArtistModel:
        """Fit the fusion on queries with style ``z`` / text ``sim`` / ``chars`` and artist index (None: unknown),
        then the rejection rule and threshold on the fused scores."""
        target = np.asarray([-1 if v is None else v for v in labels], np.int64)
        if not (target >= 0).any():
            raise ConfigError("artist calibration needs photos of artists with covers in the catalog",
                              "label some photos with their catalog artist")
        fin = np.isfinite(z)
        self.fusion = ArtistFusion().fit(np.where(fin, z, 0.0), sim, target, chars, present=fin).to_dict()
        p = self._fused(z, sim, chars)
        known = np.flatnonzero(target >= 0)
        unknown = np.flatnonzero(target < 0)
        results = self._results(p[known], [int(t) for t in target[known]]) + self._results(p[unknown], [None] * len(unknown))
        self.calibration = calibrate(results, objective=self.config.objective, rules=list(self.config.rules)).to_dict()
        own = np.zeros(p.shape, bool)
        own[known, target[known]] = True
        gen, imp = p[own & fin], p[~own & fin]
        self.verify = {"auroc": auroc(gen, imp) if gen.size and imp.size else None, "threshold": 0.5,
                       "n_genuine": int(gen.size), "n_impostor": int(imp.size)}
        self.source = source + (" (style only: no text read)" if chars is None and not sim.any() else "")
        return self

    def calibrate_gallery(self, lines: Sequence | None = None) -> ArtistModel:
        """Leave-one-album-out calibration from the gallery itself (no photos needed).

        ``lines``: the OCR lines of every gallery cover (row order), for the text evidence; None = style only.
        """
        raw = self._scores(self.gallery, self.group)
        a = self.owner
        rows = np.arange(len(a))
        has_other = np.isfinite(raw[rows, a])  # the artist has covers outside this album
        known = np.flatnonzero(has_other)
        if known.size == 0:
            raise ConfigError("no artist has covers of two or more albums, so no unseen-album queries can be simulated",
                              "add a second album for some artists, or calibrate on photos with `logoid artist calibrate`")
        unk = rows
        if unk.size > self.config.max_unknown_queries:
            unk = np.sort(np.random.default_rng(self.config.seed).choice(unk, self.config.max_unknown_queries, False))
        unk_raw = raw[unk].copy()
        unk_raw[np.arange(len(unk)), a[unk]] = -np.inf  # the whole artist left out: an unknown-artist query
        sim, chars = self.text_evidence(lines, len(a))
        unk_sim = sim[unk].copy()
        unk_sim[np.arange(len(unk)), a[unk]] = 0.0  # ... its name too
        z = np.concatenate([self._z(raw[known]), self._z(unk_raw)])
        sim2 = np.concatenate([sim[known], unk_sim])
        chars2 = None if chars is None else np.concatenate([chars[known], chars[unk]])
        return self._fit(z, sim2, chars2, [int(v) for v in a[known]] + [None] * len(unk), "gallery leave-one-album-out")

    def calibrate_photos(self, q: np.ndarray, labels: Sequence[str | None], source: str,
                         lines: Sequence | None = None) -> ArtistModel:
        """Calibrate on labelled photo vectors: ``labels`` are artist keys, None for artists not in the catalog;
        ``lines`` the OCR lines read on each photo (None: style only)."""
        pos = {k: i for i, k in enumerate(self.artists)}
        bad = sorted({str(v) for v in labels if v is not None and v not in pos})
        if bad:
            raise ConfigError(f"calibration labels {bad[:5]} are not artists with covers in the catalog",
                              "label photos of unenrolled artists 'unknown'")
        z = self.style_scores(q)
        sim, chars = self.text_evidence(lines, len(z))
        return self._fit(z, sim, chars, [None if v is None else pos[v] for v in labels], source)

    # ---- answering -----------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return float(self.calibration.get("threshold", float("inf")))

    @property
    def rule(self) -> str:
        return str(self.calibration.get("rule", "max_score"))

    def guess(self, q: np.ndarray, k: int = 5, lines: Sequence | None = None) -> ArtistGuess:
        """The most likely artist of one photo vector (and the OCR ``lines`` read on it), accepted or not."""
        s = self.scores(q, None if lines is None else [lines])[0]
        r = self._results(s[None], [None])[0]
        if not r.ranked:
            return ArtistGuess(False, None, None, 0.0, float("-inf"), self.threshold, self.rule)
        rej = float(rule_score(self.rule, r))
        best = r.ranked[0]
        names = dict(zip(self.artists, self.names, strict=True))
        return ArtistGuess(bool(rej >= self.threshold), best, names[best], float(r.scores[0]), rej, self.threshold,
                           self.rule, [(a, names[a], float(v)) for a, v in zip(r.ranked[:k], r.scores[:k], strict=True)])

    def check(self, q: np.ndarray, artist: str, lines: Sequence | None = None) -> dict:
        """Is the photo ``artist``'s? The fused calibrated probability, yes at p >= 0.5, and its two pieces of
        evidence (style z-score, best name similarity read)."""
        if artist not in self.artists:
            raise ConfigError(f"artist {artist!r} has no covers in the artist model", FIT_HINT)
        j = self.artists.index(artist)
        z = self.style_scores(q)
        sim, chars = self.text_evidence(None if lines is None else [lines], len(z))
        p = float(self._fused(z, sim, chars)[0, j])
        p = max(p, 0.0)
        return {"artist": self.names[j], "entity": artist, "score": round(float(z[0, j]), 4),
                "text_similarity": round(float(sim[0, j]), 4), "probability": round(p, 4), "match": bool(p >= 0.5),
                "threshold": 0.5, "auroc": self.verify.get("auroc")}

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, home) -> None:
        """Store beside the index (atomic)."""
        meta = {"config": self.config.to_dict(), "artists": self.artists, "names": self.names,
                "calibration": self.calibration, "fusion": self.fusion, "verify": self.verify, "model": self.model, "source": self.source,
                "catalog_revision": self.catalog_revision, "covers_signature": self.covers_signature,
                "n_covers": int(len(self.gallery))}
        store.save(home, NAME, meta, {"gallery": self.gallery, "owner": self.owner, "group": self.group,
                                       "centre": self.centre})

    @classmethod
    def load(cls, home, embedder_or_info=None) -> ArtistModel:
        """The stored model; with ``embedder_or_info`` refuses one built from another model's vectors."""
        meta, arr = store.load(home, NAME, FIT_HINT)
        if embedder_or_info is not None:
            store.check_model(meta, embedder_or_info, "artist model", "refit it: `logoid artist fit`")
        return cls(config=ArtistConfig.from_dict(meta["config"]), artists=list(meta["artists"]),
                   names=list(meta["names"]), gallery=arr["gallery"], owner=arr["owner"], group=arr["group"],
                   centre=arr["centre"], calibration=meta.get("calibration") or {}, fusion=meta.get("fusion") or {},
                   verify=meta.get("verify") or {},
                   model=meta.get("model") or {}, source=meta.get("source", ""),
                   catalog_revision=meta.get("catalog_revision"), covers_signature=meta.get("covers_signature"))

    def stale_note(self, catalog) -> str | None:
        """A note when the catalog's covers changed since this model was fitted (it still answers, from the old ones)."""
        if self.covers_signature is not None and self.covers_signature != covers_signature(catalog_covers(catalog)):
            return "the catalog's album covers changed since `logoid artist fit`; run it again"
        return None

    def summary(self) -> dict:
        cal = self.calibration
        return {"artists": len(self.artists), "covers": int(len(self.gallery)), "source": self.source,
                "rule": cal.get("rule"), "threshold": cal.get("threshold"),
                "auroc": (cal.get("per_rule", {}).get(cal.get("rule"), {}) or {}).get("auroc"),
                "verify_auroc": self.verify.get("auroc"), "fusion": self.fusion, "config": self.config.to_dict(),
                "model": self.model.get("model"), "catalog_revision": self.catalog_revision}


def fit_catalog(home, catalog, embedder, config: ArtistConfig | None = None, *, progress=None,
                on_skip=None, notes: list[str] | None = None) -> ArtistModel:
    """Enrol every album cover of the catalog by its artist and calibrate leave-one-album-out (reading the text
    on the covers, cached, when the config fuses text and OCR works; else style only, with a line in ``notes``)."""
    config = config or ArtistConfig()
    covers = catalog_covers(catalog)
    vecs, ok = path_vectors([c.path for c in covers], embedder, config.features, cache_dir=home.cache_dir,
                            progress=progress, on_skip=on_skip)
    covers = [covers[i] for i in ok]
    model = ArtistModel.enrol(vecs, [c.artist_key for c in covers], [c.album_id for c in covers],
                              names={c.artist_key: c.artist for c in covers}, config=config,
                              model=store.model_record(embedder))
    model.catalog_revision = catalog.revision()
    model.covers_signature = covers_signature(catalog_covers(catalog))
    lines = None
    if config.text:
        why = ocr_unavailable()
        if why is None:
            got = path_lines([c.path for c in covers], cache_dir=home.cache_dir, progress=progress)
            lines = [got.get(i, []) for i in range(len(covers))]
        elif notes is not None:
            notes.append(why)
    return model.calibrate_gallery(lines)
