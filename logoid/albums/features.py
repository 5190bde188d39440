"""Album-cover features and the small models on top of them: genre from a cover, artist of an unseen album.

Measured on albums-dev (``python -m bench albums``; BENCHMARKS.md#albums). What the product should call:

- :func:`cover_features` — image → style vector: GeM-pooled features of several EfficientNet stages of the
  (frozen, pretrained) image trunk, at two scales, plus colour statistics. Independent of the (possibly
  untrained) projection, so it works with the default model from the start.
- :class:`GenreClassifier` — standardised features → class-balanced logistic regression (C by inner CV);
  optional OCR-text features (:func:`ocr_text`) through the text tower. ``to_dict`` / ``from_dict`` for saving.
- :class:`ArtistScorer` — per-artist scores of a query cover against enrolled gallery covers (mean of the top-m
  cosine similarities per artist, z-normalised against the whole gallery) and a rejection score.
- :func:`text_artist_scores` — artist names read on the cover (OCR lines → :class:`logoid.index.names.NameIndex`).
- :class:`ArtistFusion` — logistic fusion of style and text evidence into one calibrated "is artist X" score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from logoid.core.config import checked_kwargs
from logoid.core.errors import ConfigError, ModelError
from logoid.index.names import NameIndex

__all__ = [
    "CoverFeatureConfig", "cover_features", "colour_stats", "genre_features", "text_features", "ocr_text",
    "GenreClassifier", "ArtistScorer", "text_artist_scores", "ArtistFusion", "text_amount", "l2rows",
    "topm_scores", "znorm_rows", "surname_alias", "artist_name_index",
]


# ---------------------------------------------------------------------------------------------- image features


@dataclass
class CoverFeatureConfig:
    """Which parts of the image trunk make a cover's style vector."""

    # Input sides the trunk sees (the cover resized to a square of each); features are averaged over scales.
    scales: tuple[int, ...] = (224, 320)
    # Trunk stages whose activations are GeM-pooled and concatenated (EfficientNet blocks index; -1 = the
    # final 1280-channel head). Mid stages carry texture and typography style, the head carries objects.
    stages: tuple[int, ...] = (3, 4, 5, -1)
    # GeM exponent (1 = average pooling; larger leans to the strongest activations).
    gem_p: float = 3.0
    # Append colour statistics (:func:`colour_stats`, 64 numbers).
    colour: bool = True
    # Images per forward pass.
    batch_size: int = 16

    def __post_init__(self) -> None:
        self.scales, self.stages = tuple(int(s) for s in self.scales), tuple(int(s) for s in self.stages)
        if not self.scales or min(self.scales) < 32:
            raise ConfigError(f"CoverFeatureConfig.scales must be sides >= 32, got {self.scales}")
        if not self.stages:
            raise ConfigError("CoverFeatureConfig.stages is empty", "name at least one trunk stage, e.g. -1")
        if self.gem_p < 1:
            raise ConfigError(f"CoverFeatureConfig.gem_p must be >= 1, got {self.gem_p}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scales"], d["stages"] = list(self.scales), list(self.stages)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CoverFeatureConfig:
        return cls(**checked_kwargs(cls, d, "cover feature"))


def gem_pool(x, p: float):
    """Generalised-mean pooling of a (n, c, h, w) feature map over its positions: (n, c); p = 1 is the average."""
    import torch

    return x.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p) if p != 1 else torch.mean(x, dim=(2, 3))


def _trunk_stages(trunk, x, stages: Sequence[int], p: float):
    """Run a timm EfficientNet trunk, GeM-pooling the requested stages; returns one L2-normalised block each."""
    import torch

    if not all(hasattr(trunk, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ModelError(f"multi-stage cover features need an EfficientNet trunk, got {type(trunk).__name__}",
                         "use the default logoid-effl0-minilm model or a fine-tuned checkpoint of it")
    want = set(stages)
    out = {}
    x = trunk.bn1(trunk.conv_stem(x))
    for i, block in enumerate(trunk.blocks):
        x = block(x)
        if i in want:
            out[i] = gem_pool(x, p)
    if -1 in want:
        out[-1] = gem_pool(trunk.bn2(trunk.conv_head(x)), p)
    return [torch.nn.functional.normalize(out[s], dim=1) for s in stages]


def prepare_image(img: Image.Image, side: int, mean, std) -> np.ndarray:
    """The (3, side, side) float32 input array of an image: resized square (bicubic), normalised by mean and std."""
    img = img.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return ((a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)


def colour_stats(img: Image.Image) -> np.ndarray:
    """64 numbers: a 4x4x3 HSV histogram (hue x saturation x value), plus global brightness/saturation/edge stats.

    Covers of one genre share palettes (white classical sleeves, dark metal ones) that pooled CNN features blur.
    """
    import cv2

    rgb = np.asarray(img.convert("RGB").resize((128, 128), Image.Resampling.BILINEAR))
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float32)
    hist, _ = np.histogramdd(hsv, bins=(4, 4, 3), range=((0, 180), (0, 256), (0, 256)))
    hist = hist.ravel() / hsv.shape[0]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    edges = cv2.Canny(grey.astype(np.uint8), 80, 160) > 0
    s, v = hsv[:, 1] / 255.0, hsv[:, 2] / 255.0
    extra = [v.mean(), v.std(), s.mean(), s.std(), edges.mean(), (v > 0.9).mean(), (v < 0.1).mean(),
             np.abs(np.diff(grey, axis=1)).mean() / 255.0, np.abs(np.diff(grey, axis=0)).mean() / 255.0,
             *np.quantile(v, [0.1, 0.5, 0.9]), *np.quantile(s, [0.5, 0.9]), float(edges[32:96, 32:96].mean()),
             float((hsv[:, 1] < 30).mean())]
    return np.concatenate([np.sqrt(hist), np.asarray(extra, np.float32)]).astype(np.float32)


def cover_features(embedder, images: Sequence[Image.Image], cfg: CoverFeatureConfig | None = None) -> np.ndarray:
    """Images → ``(n, d)`` float32 style vectors (see :class:`CoverFeatureConfig`); not L2-normalised as a whole.

    Each stage block is L2-normalised and averaged over scales; colour statistics are appended raw, so
    standardise before a linear model (:class:`GenreClassifier` does).
    """
    import torch

    cfg = cfg or CoverFeatureConfig()
    trunk = getattr(embedder.model.visual, "trunk", None)
    if trunk is None:
        raise ModelError(f"model {embedder.name!r} has no timm image trunk", "use an EfficientNet-based model")
    pp = embedder.preprocess_cfg
    mean, std = pp.get("mean", (0.5,) * 3), pp.get("std", (0.5,) * 3)
    rows = []
    with torch.inference_mode():
        for i in range(0, len(images), cfg.batch_size):
            chunk = [im.convert("RGB") for im in images[i:i + cfg.batch_size]]
            per_scale = []
            for side in cfg.scales:
                batch = torch.from_numpy(np.stack([prepare_image(im, side, mean, std) for im in chunk]))
                batch = batch.to(embedder.device).contiguous(memory_format=torch.channels_last)
                per_scale.append(torch.cat(_trunk_stages(trunk, batch, cfg.stages, cfg.gem_p), dim=1))
            feats = torch.stack(per_scale).mean(0).float().cpu().numpy()
            if cfg.colour:
                feats = np.concatenate([feats, np.stack([colour_stats(im) for im in chunk])], axis=1)
            rows.append(feats.astype(np.float32))
    if not rows:
        raise ModelError("cover_features got no images")
    return np.concatenate(rows)


def text_features(embed_texts, texts: Sequence[str]) -> np.ndarray:
    """The text part of :func:`genre_features` as one block: each cover's read text (:func:`ocr_text`) through
    the text tower (``embed_texts``, e.g. ``embedder.embed_texts``), zero where nothing was read, then a has-text
    flag column. ``np.concatenate([cover_vecs, text_features(...)], 1)`` equals :func:`genre_features`."""
    texts = [t.strip() for t in texts]
    has = np.asarray([bool(t) for t in texts], np.float32)
    vec = np.asarray(embed_texts([t or "-" for t in texts]), np.float32) if texts else np.zeros((0, 0), np.float32)
    return np.concatenate([vec * has[:, None], has[:, None]], axis=1) if texts else np.zeros((0, 1), np.float32)


def genre_features(cover_vecs: np.ndarray, text_vecs: np.ndarray, has_text: Sequence[bool]) -> np.ndarray:
    """What :class:`GenreClassifier` was measured best on: cover style vectors (:func:`cover_features`), the OCR
    text of each cover through the model's text tower (``embedder.embed_texts([ocr_text(lines)])``), zeroed
    where nothing was read, and a has-text flag. Train and predict with the same model and config. (The product
    builds the same rows as features ``style+colour+text``: :mod:`logoid.albums.covers`, :func:`text_features`.)"""
    flag = np.asarray(has_text, np.float32).reshape(-1, 1)
    text = np.asarray(text_vecs, np.float32) * flag
    return np.concatenate([np.asarray(cover_vecs, np.float32), text, flag], axis=1)


def ocr_text(lines: Sequence) -> str:
    """The text read on a cover as one string (``TextLine`` objects or ``(text, conf)`` pairs), reading order."""
    parts = [ln.text if hasattr(ln, "text") else str(ln[0]) for ln in lines]
    return " ".join(p.strip() for p in parts if p and p.strip())


# ---------------------------------------------------------------------------------------------- genre


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float32) - mean) / scale


@dataclass
class GenreClassifier:
    """Standardised cover features → class-balanced multinomial logistic regression.

    ``C`` is chosen by inner cross-validation over ``groups`` (pass the artist of each cover: genre is almost a
    property of the artist, so folds that share artists would pick a C that memorises artists).
    """

    # Candidate inverse regularisation strengths tried by the inner CV.
    c_grid: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    # Inner CV folds (grouped by artist); 0 = no search, use the middle of c_grid.
    inner_folds: int = 3
    # Weight classes inversely to their frequency (the small reggae class otherwise drowns).
    balanced: bool = True
    # Fitted state (set by fit / from_dict).
    classes: list[str] = field(default_factory=list)
    C: float | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None

    def _model(self, c: float):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if self.balanced else None)

    def pick_c(self, x: np.ndarray, y: np.ndarray, groups) -> float:
        """The C of ``c_grid`` with the best weighted F1 in ``inner_folds``-fold CV grouped by ``groups`` (the middle
        of the grid when there are too few groups)."""
        from sklearn.metrics import f1_score
        from sklearn.model_selection import GroupKFold

        if self.inner_folds < 2 or groups is None or len(set(groups)) < self.inner_folds:
            return float(self.c_grid[len(self.c_grid) // 2])
        scores = np.zeros(len(self.c_grid))
        for tr, va in GroupKFold(self.inner_folds).split(x, y, groups):
            if len(set(y[tr])) < 2:
                continue
            for j, c in enumerate(self.c_grid):
                pred = self._model(c).fit(x[tr], y[tr]).predict(x[va])
                scores[j] += f1_score(y[va], pred, average="weighted")
        return float(self.c_grid[int(np.argmax(scores))])

    def fit(self, x: np.ndarray, y: Sequence[str], groups: Sequence | None = None) -> GenreClassifier:
        """Fit on features ``x`` (n, d) and genre labels ``y``; ``groups`` (artist per row) for the C search."""
        x = np.asarray(x, np.float32)
        labels = np.asarray([str(v) for v in y])
        if len(set(labels)) < 2:
            raise ConfigError("genre training needs covers of at least two genres", "label more covers")
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-6
        xs = _standardise(x, self.mean, self.scale)
        self.C = self.pick_c(xs, labels, None if groups is None else np.asarray(groups))
        lr = self._model(self.C).fit(xs, labels)
        self.classes = [str(c) for c in lr.classes_]
        self.coef, self.intercept = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` probabilities, columns in ``classes`` order."""
        if self.coef is None or self.mean is None or self.scale is None or self.intercept is None:
            raise ModelError("the genre classifier is not trained", "run `logoid genre train` first")
        z = _standardise(np.atleast_2d(x), self.mean, self.scale) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # sklearn's binary case: one logit for classes[1]
            z = np.concatenate([-z / 2, z / 2], axis=1)
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(x).argmax(1)]

    def to_dict(self) -> dict:
        """JSON-able (arrays as lists): what ``genre train`` stores beside the index."""
        arr = {k: getattr(self, k) for k in ("mean", "scale", "coef", "intercept")}
        return {"c_grid": list(self.c_grid), "inner_folds": self.inner_folds, "balanced": self.balanced,
                "classes": self.classes, "C": self.C,
                **{k: None if v is None else np.asarray(v).tolist() for k, v in arr.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> GenreClassifier:
        d = checked_kwargs(cls, d, "genre classifier")
        for k in ("mean", "scale", "coef", "intercept"):
            if d.get(k) is not None:
                d[k] = np.asarray(d[k], np.float32)
        d["c_grid"] = tuple(d.get("c_grid", cls.c_grid))
        return cls(**d)


# ---------------------------------------------------------------------------------------------- artists


def l2rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.atleast_2d(np.asarray(x, np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def topm_scores(qn: np.ndarray, gallery: np.ndarray, owner: np.ndarray, n_artists: int, top_m: int,
                group: np.ndarray | None = None, exclude: np.ndarray | None = None) -> np.ndarray:
    """``(n, n_artists)``: per artist, the mean of its ``top_m`` best cosines between prepared (centred,
    L2-normalised) queries ``qn`` and gallery rows (fewer when it has fewer). With ``group``/``exclude``,
    gallery rows whose group equals the query's ``exclude`` id are left out (leave-one-album-out); an artist
    with no row left scores ``-inf``."""
    sims = np.atleast_2d(qn) @ gallery.T
    if group is not None and exclude is not None:
        sims[group[None, :] == np.asarray(exclude)[:, None]] = -np.inf
    out = np.full((sims.shape[0], n_artists), -np.inf, np.float32)
    for a in range(n_artists):
        top = -np.sort(-sims[:, owner == a], axis=1)[:, :top_m]
        finite = np.isfinite(top)
        n = finite.sum(1)
        out[:, a] = np.where(n > 0, np.where(finite, top, 0).sum(1) / np.maximum(n, 1), -np.inf)
    return out


def znorm_rows(r: np.ndarray) -> np.ndarray:
    """Per row, z-scores of the finite entries across artists (``-inf`` stays; rows with one finite entry kept)."""
    fin = np.isfinite(r)
    n = fin.sum(1, keepdims=True)
    mean = np.where(fin, r, 0).sum(1, keepdims=True) / np.maximum(n, 1)
    var = np.where(fin, (r - mean) ** 2, 0).sum(1, keepdims=True) / np.maximum(n, 1)
    z = (r - mean) / (np.sqrt(var) + 1e-6)
    return np.where(fin & (n > 1), z, r).astype(np.float32)


@dataclass
class ArtistScorer:
    """How much a cover looks like each enrolled artist's covers (their style), with an open-set score.

    Vectors are centred on the gallery mean and L2-normalised (removes the "every cover looks like a cover"
    component that dominates raw CNN features). An artist's raw score is the mean of its ``top_m`` best cosine
    similarities to the query (:func:`topm_scores`); scores are then z-normalised across artists for this query
    (:func:`znorm_rows`), so a query close to *everything* does not look like a confident match. The product's
    :class:`logoid.albums.artist.ArtistModel` uses the same functions (plus leave-one-album-out).
    """

    # How many of an artist's covers count in its score (fewer if it has fewer).
    top_m: int = 2
    # Fitted state.
    artists: list[str] = field(default_factory=list)
    centre: np.ndarray | None = None
    gallery: np.ndarray | None = None
    owner: np.ndarray | None = None  # index into ``artists`` per gallery row

    def fit(self, x: np.ndarray, artist: Sequence[str]) -> ArtistScorer:
        """Enrol gallery covers ``x`` (n, d) of ``artist`` (one label per row)."""
        x = np.asarray(x, np.float32)
        self.artists = sorted({str(a) for a in artist})
        pos = {a: i for i, a in enumerate(self.artists)}
        self.owner = np.asarray([pos[str(a)] for a in artist], np.int64)
        self.centre = x.mean(0)
        self.gallery = l2rows(x - self.centre)
        return self

    def raw_scores(self, q: np.ndarray) -> np.ndarray:
        """``(n, n_artists)`` mean of each artist's ``top_m`` cosine similarities."""
        if self.gallery is None or self.owner is None or self.centre is None:
            raise ModelError("the artist scorer has no gallery", "enrol album covers first")
        return topm_scores(l2rows(np.atleast_2d(q) - self.centre), self.gallery, self.owner, len(self.artists),
                           self.top_m)

    def scores(self, q: np.ndarray) -> np.ndarray:
        """Per-query z-scores of :meth:`raw_scores` across artists (higher: more like that artist than the rest)."""
        return znorm_rows(self.raw_scores(q))


def surname_alias(name: str) -> str | None:
    """The last word of a multi-word artist name when it has 4+ letters ("John Coltrane" → "Coltrane"): covers
    of composers and jazz players often print only the surname."""
    w = name.replace("&", " ").split()
    return w[-1] if len(w) > 1 and len(w[-1]) >= 4 else None


def artist_name_index(artists: Sequence[str], names: Sequence[str] | None = None, aliases: bool = True):
    """A :class:`logoid.index.names.NameIndex` whose entity keys are ``artists`` (display ``names``, default the
    keys), plus surname aliases (:func:`surname_alias`) when ``aliases``."""
    names = list(names) if names is not None else list(artists)
    idx = NameIndex([(str(k), str(n)) for k, n in zip(artists, names, strict=True)])
    if aliases:
        extra = [(str(k), a) for k, n in zip(artists, names, strict=True) if (a := surname_alias(str(n)))]
        if extra:
            idx.add(extra)
    return idx


def text_artist_scores(lines, name_index, artists: Sequence[str], k: int = 10) -> np.ndarray:
    """Per artist (in ``artists`` order), the similarity of the best read text to its name (0 if unmatched).

    ``lines``: OCR ``TextLine`` objects or ``(text, conf)`` pairs.

    ``name_index`` maps entity keys that are the artist strings themselves; an unknown artist's name matches
    nothing well, which is what rejects it.
    """
    out = np.zeros(len(artists), np.float32)
    pos = {a: i for i, a in enumerate(artists)}
    lines = list(lines or [])
    texts = [ln.text if hasattr(ln, "text") else str(ln[0]) for ln in lines]
    confs = [float(ln.conf) if hasattr(ln, "conf") else float(ln[1]) for ln in lines]
    for m in name_index.match(texts, k=k, line_confs=confs) if texts else []:
        i = pos.get(m.entity_key)
        if i is not None:
            out[i] = max(out[i], float(m.similarity))
    return out


@dataclass
class ArtistFusion:
    """Style z-score + name similarity → P(this artist) per (query, artist); logistic, fitted on labelled queries.

    Features per candidate: style z-score, name similarity, whether the name matched (>= 0.8), and per query how
    much text was read (``log1p(letters) / 5``): covers usually print their artist's name, so a cover with plenty
    of text and no enrolled name on it is evidence of an unknown artist. The answer for a query is its best
    candidate; that probability is the open-set score (reject below a threshold chosen on calibration queries).
    """

    # Fitted logistic weights over (style_z, text_sim, text_hit, text_amount, 1).
    weights: list[float] = field(default_factory=lambda: [1.0, 2.0, 5.0, -1.0, -2.0])

    @staticmethod
    def _design(style_z: np.ndarray, text_sim: np.ndarray, text_chars: np.ndarray | None) -> np.ndarray:
        s, t = np.asarray(style_z, np.float32), np.asarray(text_sim, np.float32)
        n = np.zeros(s.shape[0], np.float32) if text_chars is None else np.asarray(text_chars, np.float32)
        amount = np.broadcast_to((np.log1p(n) / 5.0).reshape(-1, *([1] * (s.ndim - 1))), s.shape)
        return np.stack([s, t, (t >= 0.8).astype(np.float32), amount, np.ones_like(s)], axis=-1)

    def fit(self, style_z: np.ndarray, text_sim: np.ndarray, target: np.ndarray,
            text_chars: np.ndarray | None = None, present: np.ndarray | None = None) -> ArtistFusion:
        """``style_z``, ``text_sim``: (n, n_artists); ``target``: artist index per query, or -1 for unknown;
        ``text_chars``: letters and digits read on each query cover (None: not known, counted as 0);
        ``present``: (n, n_artists) bool, the candidates that exist for each query (default all; a left-out
        artist is absent in leave-one-out calibration)."""
        from sklearn.linear_model import LogisticRegression

        style_z = np.asarray(style_z, np.float32)
        keep = np.ones(style_z.shape, bool) if present is None else np.asarray(present, bool)
        x = self._design(np.where(keep, style_z, 0.0), text_sim, text_chars)[keep]
        y = np.zeros(style_z.shape, np.int64)
        known = np.asarray(target) >= 0
        y[np.flatnonzero(known), np.asarray(target)[known]] = 1
        y = y[keep]
        if y.min() == y.max():
            raise ConfigError("artist fusion needs queries of enrolled artists and candidates that are not theirs",
                              "calibrate on covers of enrolled artists")
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, fit_intercept=False)
        lr.fit(x, y)
        self.weights = [float(w) for w in lr.coef_[0]]
        return self

    def proba(self, style_z: np.ndarray, text_sim: np.ndarray, text_chars: np.ndarray | None = None) -> np.ndarray:
        """``(n, n_artists)`` probability that each enrolled artist made each query cover."""
        z = self._design(style_z, text_sim, text_chars) @ np.asarray(self.weights, np.float32)
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return {"weights": list(self.weights)}

    @classmethod
    def from_dict(cls, d: dict) -> ArtistFusion:
        return cls(**checked_kwargs(cls, d, "artist fusion"))


def text_amount(lines) -> int:
    """Letters and digits read on a cover (``TextLine`` objects or ``(text, conf)`` pairs): ArtistFusion's input."""
    return sum(ch.isalnum() for t in (ln.text if hasattr(ln, "text") else str(ln[0]) for ln in lines or []) for ch in t)
