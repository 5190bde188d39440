"""Genre from a cover: classifiers on cover vectors, compared by grouped cross-validation, the winner kept.

Three methods ship (``CLASSIFIERS``; add one with :func:`register_classifier`): a linear probe
(:class:`logoid.albums.features.GenreClassifier`), k nearest neighbours (cosine vote), and zero-shot from captions
("a {genre} album cover" through the text tower, which needs no training but only means something
once the model's projections are trained). Folds keep each artist's covers on one side, because
genre is almost a property of the artist: mixed folds would measure artist recognition. The default
features are ``style+colour+text``: the cover's style vector, its colour statistics and the text read on it
(OCR) through the text tower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from logoid.albums import store
from logoid.albums.features import GenreClassifier
from logoid.core.config import checked_kwargs
from logoid.core.errors import ConfigError
from logoid.scoring.stats import per_class_table

from .features import l2rows

NAME = "genre-model"
TRAIN_HINT = "train one with `logoid genre train`"


@dataclass
class GenreConfig:
    """What `logoid genre train` compares and how."""

    # cover features (logoid.albums.covers.feature_methods(), parts joined by '+'): GeM style, colour statistics and
    # the text read on the cover through the text tower measured best on albums-dev (weighted F1 0.69; 0.62 without
    # the text, 0.55 from the 512-d embedding)
    features: str = "style+colour+text"
    methods: tuple[str, ...] = ("logreg", "knn", "zeroshot")  # classifiers compared (CLASSIFIERS)
    folds: int = 5  # cross-validation folds (fewer when there are fewer artists / covers per genre)
    logreg_c: float = 0.01  # inverse regularisation of the linear probe (standardised features), without a grid
    # C candidates tried by inner cross-validation grouped by artist (needs 3+ artists); () = always logreg_c
    logreg_c_grid: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    balanced: bool = True  # weight genres inversely to their frequency in the linear probe
    knn_k: int = 10  # neighbours that vote in kNN
    prompt: str = "a {genre} album cover"  # zero-shot caption per genre
    zeroshot_scale: float = 100.0  # logit scale of the zero-shot softmax (CLIP's)
    seed: int = 0  # fold shuffling where folds are not grouped

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        self.logreg_c_grid = tuple(float(c) for c in self.logreg_c_grid)
        bad = [m for m in self.methods if m not in CLASSIFIERS]
        if bad or not self.methods:
            raise ConfigError(f"unknown genre method(s) {bad or '(none)'}", f"choose from {', '.join(CLASSIFIERS)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"], d["logreg_c_grid"] = list(self.methods), list(self.logreg_c_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GenreConfig:
        return cls(**checked_kwargs(cls, d, "genre"))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


class LinearProbe:
    """:class:`logoid.albums.features.GenreClassifier` (standardised, class-balanced logistic regression, C by
    inner CV grouped by artist) as a genre method; predicts with numpy from its stored arrays."""

    name = "logreg"
    features: str | None = None  # None: the config's feature extractor

    def __init__(self, classes: list[str], arrays: dict | None = None):
        self.classes, self.arrays = list(classes), dict(arrays or {})
        stored: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in self.arrays.items()}
        self.clf = GenreClassifier(classes=self.classes, **stored)

    def fit(self, x, y, cfg: GenreConfig, *, groups=None, **_) -> LinearProbe:
        grid = cfg.logreg_c_grid if cfg.logreg_c_grid and groups is not None else (cfg.logreg_c,)
        self.clf = GenreClassifier(c_grid=tuple(grid), inner_folds=3 if len(grid) > 1 else 0, balanced=cfg.balanced)
        self.clf.fit(x, [str(v) for v in y], None if groups is None else [str(g) for g in groups])
        self.c, self.classes = self.clf.C, list(self.clf.classes)
        self.arrays = {k: getattr(self.clf, k) for k in ("mean", "scale", "coef", "intercept")}
        return self

    def predict_proba(self, x) -> np.ndarray:
        return self.clf.predict_proba(x)


class KNearest:
    """Cosine k-NN on gallery-centred vectors; a genre's probability is its share of the similarity-weighted vote."""

    name = "knn"
    features: str | None = None

    def __init__(self, classes: list[str], arrays: dict | None = None, k: int = 10):
        self.classes, self.arrays, self.k = list(classes), dict(arrays or {}), k

    def fit(self, x, y, cfg: GenreConfig, **_) -> KNearest:
        x = np.asarray(x, np.float32)
        self.classes = sorted({str(v) for v in y})
        pos = {c: i for i, c in enumerate(self.classes)}
        centre = x.mean(0)
        self.k = cfg.knn_k
        self.arrays = {"centre": centre, "train": l2rows(x - centre), "label": np.array([pos[str(v)] for v in y]),
                       "k": np.array(cfg.knn_k)}
        return self

    def predict_proba(self, x) -> np.ndarray:
        a = self.arrays
        sims = l2rows(np.asarray(x, np.float32) - a["centre"]) @ a["train"].T
        k = min(int(a["k"]), sims.shape[1])
        nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        votes = np.full((len(sims), len(self.classes)), 1e-3)
        for i, row in enumerate(nn):
            np.add.at(votes[i], a["label"][row], np.maximum(sims[i, row], 0.0) + 1e-3)
        return votes / votes.sum(1, keepdims=True)


class ZeroShot:
    """Caption per genre through the text tower; softmax of the scaled cosines. Image vectors must be the
    dual encoder's own (features "embedding")."""

    name = "zeroshot"
    features: str | None = "embedding"

    def __init__(self, classes: list[str], arrays: dict | None = None):
        self.classes, self.arrays = list(classes), dict(arrays or {})

    def fit(self, x, y, cfg: GenreConfig, *, embed_texts: Callable | None = None, **_) -> ZeroShot:
        if embed_texts is None:
            raise ConfigError("zero-shot genre needs the text tower", "pass embed_texts=embedder.embed_texts")
        self.classes = sorted({str(v) for v in y})
        self.arrays = {"text": embed_texts([cfg.prompt.format(genre=c) for c in self.classes]).astype(np.float32),
                       "scale": np.array(cfg.zeroshot_scale, np.float32)}
        return self

    def predict_proba(self, x) -> np.ndarray:
        a = self.arrays
        return _softmax(float(a["scale"]) * (l2rows(x) @ a["text"].T).astype(np.float64))


CLASSIFIERS: dict[str, Any] = {"logreg": LinearProbe, "knn": KNearest, "zeroshot": ZeroShot}


def register_classifier(cls: Any) -> None:
    """Add a classifier class (``name``, ``features``, ``__init__(classes, arrays)``, ``fit``, ``predict_proba``)."""
    CLASSIFIERS[cls.name] = cls


def method_features(method: str, cfg: GenreConfig) -> str:
    """The feature extractor a method reads (zero-shot always the dual encoder's own vectors)."""
    return CLASSIFIERS[method].features or cfg.features


def _full(proba: np.ndarray, classes: list[str], all_classes: list[str]) -> np.ndarray:
    out = np.zeros((len(proba), len(all_classes)))
    pos = {c: i for i, c in enumerate(all_classes)}
    for j, c in enumerate(classes):
        out[:, pos[c]] = proba[:, j]
    return out


def make_folds(n: int, y: Sequence[str], groups: Sequence | None, folds: Sequence | None, k: int, seed: int = 0):
    """Fold id per row: the given ``folds``, else grouped by ``groups`` (artists), else stratified by genre."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    if folds is not None:
        return np.asarray([str(f) for f in folds])
    out = np.zeros(n, dtype=object)
    idx = np.arange(n)
    if groups is not None and len(set(groups)) >= 2:
        splitter = GroupKFold(n_splits=min(k, len(set(groups))))
        parts = splitter.split(idx, y, np.asarray([str(g) for g in groups]))
    else:
        smallest = min(np.unique(np.asarray(y), return_counts=True)[1])
        if smallest < 2:
            raise ConfigError("every genre needs two or more covers for cross-validation", "label more covers")
        parts = StratifiedKFold(n_splits=min(k, smallest), shuffle=True, random_state=seed).split(idx, y)
    for f, (_, te) in enumerate(parts):
        out[te] = str(f)
    return out.astype(str)


def genre_metrics(y: Sequence[str], proba: np.ndarray, classes: list[str]) -> dict:
    """Weighted/macro F1, accuracy and the per-genre table of argmax predictions."""
    pred = [classes[i] for i in proba.argmax(1)]
    table, weighted = per_class_table(list(y), pred)
    macro = float(np.mean([table[c]["f1"] for c in sorted(set(y))])) if table else None
    return {"weighted_f1": weighted, "macro_f1": macro, "accuracy": float(np.mean([p == t for p, t in zip(pred, y, strict=True)])),
            "n": len(pred), "per_class": table}


@dataclass
class Comparison:
    """Cross-validated out-of-fold probabilities and metrics of every compared method."""

    classes: list[str]
    folds: np.ndarray
    proba: dict[str, np.ndarray] = field(default_factory=dict)  # method → (n, n_classes) out-of-fold
    metrics: dict[str, dict] = field(default_factory=dict)

    @property
    def winner(self) -> str:
        return max(self.metrics, key=lambda m: (self.metrics[m]["weighted_f1"] or 0.0, -list(self.metrics).index(m)))

    def table(self) -> dict:
        return {m: {k: v for k, v in d.items() if k != "per_class"} for m, d in self.metrics.items()}


def cross_validate(features: Callable[[str], np.ndarray], y: Sequence[str], cfg: GenreConfig, *,
                   groups: Sequence | None = None, folds: Sequence | None = None, embed_texts=None) -> Comparison:
    """Out-of-fold predictions of each method in ``cfg.methods``; ``features(extractor)`` gives the rows."""
    y = [str(v) for v in y]
    classes = sorted(set(y))
    if len(classes) < 2:
        raise ConfigError(f"genre training needs covers of two or more genres, got {classes}", "label more covers")
    fold = make_folds(len(y), y, groups, folds, cfg.folds, cfg.seed)
    if len(set(fold)) < 2:
        raise ConfigError("cross-validation needs two or more folds", "add covers of more artists")
    ya = np.asarray(y)
    comp = Comparison(classes=classes, folds=fold)
    for m in cfg.methods:
        x = features(method_features(m, cfg))
        oof = np.zeros((len(y), len(classes)))
        for f in sorted(set(fold)):
            tr, te = fold != f, fold == f
            if len(set(ya[tr])) < 2:
                oof[te] = 1.0 / len(classes)
                continue
            clf = CLASSIFIERS[m]([]).fit(x[tr], ya[tr], cfg, embed_texts=embed_texts,
                                         groups=None if groups is None else [groups[int(i)] for i in np.flatnonzero(tr)])
            oof[te] = _full(clf.predict_proba(x[te]), clf.classes, classes)
        comp.proba[m] = oof
        comp.metrics[m] = genre_metrics(y, oof, classes)
    return comp


@dataclass
class GenreModel:
    """A trained genre classifier with what it was trained on and how every method compared."""

    method: str
    features: str  # the feature extractor its inputs come from
    clf: Any  # a CLASSIFIERS instance
    config: GenreConfig = field(default_factory=GenreConfig)
    metrics: dict = field(default_factory=dict)  # cross-validated metrics of every compared method
    model: dict = field(default_factory=dict)  # the embedding model (store.model_record)
    source: str = ""  # what it was trained on
    n_train: int = 0

    @property
    def classes(self) -> list[str]:
        return list(self.clf.classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict_proba(x)

    def predict(self, x: np.ndarray, k: int = 3) -> list[dict]:
        """Per row: the top genre, its probability, and the ``k`` most likely genres."""
        out = []
        for row in self.predict_proba(x):
            order = np.argsort(-row, kind="stable")[:k]
            out.append({"genre": self.classes[order[0]], "probability": round(float(row[order[0]]), 4),
                        "top": [{"genre": self.classes[j], "probability": round(float(row[j]), 4)} for j in order]})
        return out

    @classmethod
    def train(cls, features: Callable[[str], np.ndarray], y: Sequence[str], cfg: GenreConfig | None = None, *,
              groups=None, folds=None, embed_texts=None, model: dict | None = None, source: str = "") -> tuple:
        """Compare ``cfg.methods`` by cross-validation, refit the winner on everything; returns (model, comparison)."""
        cfg = cfg or GenreConfig()
        comp = cross_validate(features, y, cfg, groups=groups, folds=folds, embed_texts=embed_texts)
        best = comp.winner
        clf = CLASSIFIERS[best]([]).fit(features(method_features(best, cfg)), np.asarray([str(v) for v in y]), cfg,
                                        embed_texts=embed_texts, groups=groups)
        return cls(best, method_features(best, cfg), clf, cfg, comp.metrics, dict(model or {}), source, len(y)), comp

    def save(self, home) -> None:
        """Store beside the index (atomic): JSON metadata and metrics, npz arrays."""
        meta = {"method": self.method, "features": self.features, "classes": self.classes, "config": self.config.to_dict(),
                "metrics": self.metrics, "model": self.model, "source": self.source, "n_train": self.n_train}
        store.save(home, NAME, meta, self.clf.arrays)

    @classmethod
    def load(cls, home, embedder_or_info=None) -> GenreModel:
        """The stored model; with ``embedder_or_info`` refuses one trained on another model's vectors."""
        meta, arrays = store.load(home, NAME, TRAIN_HINT)
        if embedder_or_info is not None:
            store.check_model(meta, embedder_or_info, "genre model", "retrain it: `logoid genre train`")
        kind = CLASSIFIERS.get(meta["method"])
        if kind is None:
            raise ConfigError(f"the genre model uses method {meta['method']!r}, unknown to this logoid", TRAIN_HINT)
        clf = kind(meta["classes"], arrays)
        if hasattr(clf, "k") and "k" in arrays:
            clf.k = int(arrays["k"])
        return cls(meta["method"], meta["features"], clf, GenreConfig.from_dict(meta.get("config") or {}),
                   meta.get("metrics") or {}, meta.get("model") or {}, meta.get("source", ""), int(meta.get("n_train", 0)))
