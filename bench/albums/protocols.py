"""Evaluation pieces of the albums benchmark (protocols 1-3 of albums-dev); ``python -m bench albums`` runs them."""

from __future__ import annotations

import numpy as np

from logoid.albums.features import ArtistFusion, ArtistScorer, GenreClassifier
from logoid.scoring.stats import auroc

GENRES = ("classical", "country", "hiphop", "jazz", "metal", "reggae")


# ---------------------------------------------------------------------------------------------- protocol 1


def genre_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = sorted(set(y))
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {"weighted_f1": float(f1_score(y, pred, average="weighted")),
            "accuracy": float(np.mean(y == pred)),
            "per_genre": {g: {"precision": float(a), "recall": float(b), "f1": float(c), "n": int(d)}
                          for g, a, b, c, d in zip(labels, p, r, f, n, strict=True)},
            "labels": labels, "confusion": confusion_matrix(y, pred, labels=labels).tolist()}


def cv_predict(x: np.ndarray, y: np.ndarray, folds: np.ndarray, groups: np.ndarray, make) -> np.ndarray:
    """Protocol 1: train on four folds, predict the fifth. ``make(x_tr, y_tr, groups_tr)`` → predict function."""
    pred = np.empty(len(y), dtype=object)
    for f in sorted(set(folds)):
        te = folds == f
        predict = make(x[~te], y[~te], groups[~te])
        pred[te] = predict(x[te])
    return pred.astype(str)


def lr_maker(standardise: bool = True, balanced: bool = True, c_grid=(0.001, 0.003, 0.01, 0.03), inner=3):
    """Logistic regression, C by inner artist-grouped CV. ``standardise=False`` is the raw baseline: plain LR on
    the L2-normalised vectors (its C grid is scaled up, since unscaled unit vectors need far weaker regularisation)."""
    def make(x, y, g):
        if standardise:
            clf = GenreClassifier(c_grid=tuple(c_grid), inner_folds=inner, balanced=balanced).fit(x, y, g)
            return lambda q: np.asarray(clf.predict(q))
        from sklearn.linear_model import LogisticRegression

        clf = GenreClassifier(c_grid=tuple(c * 1000 for c in c_grid), inner_folds=inner, balanced=balanced)
        c = clf.pick_c(x, y, g)
        lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if balanced else None).fit(x, y)
        return lr.predict
    return make


def knn_maker(k: int = 10, standardise: bool = False):
    def make(x, y, g):
        mu, sd = (x.mean(0), x.std(0) + 1e-6) if standardise else (0.0, 1.0)
        xs = _l2((x - mu) / sd)

        def predict(q):
            sims = _l2((q - mu) / sd) @ xs.T
            nn = np.argsort(-sims, axis=1)[:, :k]
            out = []
            for row in nn:
                vals, counts = np.unique(y[row], return_counts=True)
                out.append(vals[np.argmax(counts)])
            return np.asarray(out)
        return predict
    return make


def svc_maker(c: float = 3.0):
    def make(x, y, g):
        from sklearn.svm import SVC

        mu, sd = x.mean(0), x.std(0) + 1e-6
        svc = SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced").fit((x - mu) / sd, y)
        return lambda q: svc.predict((q - mu) / sd)
    return make


def zero_shot(img: np.ndarray, text: np.ndarray, genres=GENRES) -> np.ndarray:
    return np.asarray(genres)[np.argmax(img @ text.T, axis=1)]


def _l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------- protocol 2


def open_set(known_ok: np.ndarray, known_score: np.ndarray, unk_score: np.ndarray, thr: float) -> float:
    """Accuracy where a known query must be accepted AND right, an unknown one rejected."""
    good = np.sum(known_ok & (known_score >= thr)) + np.sum(unk_score < thr)
    return float(good / (len(known_score) + len(unk_score)))


def best_threshold(known_ok, known_score, unk_score) -> float:
    cands = np.unique(np.concatenate([known_score, unk_score, [np.inf]]))
    accs = [open_set(known_ok, known_score, unk_score, t) for t in cands]
    return float(cands[int(np.argmax(accs))])


def artist_report(score_mat: np.ndarray, reject: np.ndarray, target: np.ndarray, calib: np.ndarray) -> dict:
    """``score_mat`` (n, n_artists): ranking; ``reject``: open-set score per query; ``target``: index or -1."""
    top = score_mat.argmax(1)
    out = {}
    thr = None
    for name, part in (("calib", calib), ("test", ~calib)):
        known, unk = part & (target >= 0), part & (target < 0)
        ok = top[known] == target[known]
        if thr is None:
            thr = best_threshold(ok, reject[known], reject[unk])
        top5 = np.mean([t in np.argsort(-s)[:5] for s, t in zip(score_mat[known], target[known], strict=True)])
        out[name] = {"top1": float(ok.mean()), "top5": float(top5), "n_known": int(known.sum()),
                     "n_unknown": int(unk.sum()), "auroc_known_vs_unknown": auroc(reject[known], reject[unk]),
                     "open_set_accuracy": open_set(ok, reject[known], reject[unk], thr)}
    out["threshold"] = thr
    return out


def style_scores(gal_x, gal_artist, q_x, top_m: int = 2):
    sc = ArtistScorer(top_m=top_m).fit(gal_x, gal_artist)
    return sc, sc.scores(q_x), sc.raw_scores(q_x)


def reject_scores(z: np.ndarray) -> dict:
    s = np.sort(z, axis=1)[:, ::-1]
    return {"max_z": s[:, 0], "margin": s[:, 0] - s[:, 1]}


def fuse(style_z: np.ndarray, text_sim: np.ndarray, target: np.ndarray, calib: np.ndarray, chars=None):
    fu = ArtistFusion().fit(style_z[calib], text_sim[calib], target[calib], None if chars is None else chars[calib])
    p = fu.proba(style_z, text_sim, chars)
    return fu, p, p.max(1)


# ---------------------------------------------------------------------------------------------- protocol 3


def search_metrics(sims: np.ndarray, relevant: np.ndarray, k: int = 10) -> dict:
    """One text query over n images: average precision and recall@k (= hits in top k / min(k, n relevant))."""
    order = np.argsort(-sims, kind="stable")
    rel = relevant[order].astype(np.float64)
    hits = np.cumsum(rel)
    ap = float(np.sum(rel * hits / np.arange(1, len(rel) + 1)) / max(rel.sum(), 1))
    return {"ap": ap, "recall_at_k": float(hits[k - 1] / min(k, max(rel.sum(), 1))), "n_relevant": int(rel.sum()),
            "chance_ap": float(rel.mean())}
