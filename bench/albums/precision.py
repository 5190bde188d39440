"""albums-dev answered with the image vectors a build makes in each precision: fp32, bf16 autocast, the frozen tower.

    OMP_NUM_THREADS=2 python -m bench albums-precision --data ../shared/data/albums-dev [--no-write]

``build-index --precision`` changes the vectors the index holds (the image tower's arithmetic); queries and the
text tower stay fp32. So every albums-dev cover is embedded as a build embeds a reference (``Embedder.image_input``
then ``Embedder.embed_inputs`` in full batches of the build's size) once per precision, and the protocols that
answer from those 512-d vectors run on each: genre by the artist-disjoint folds (logistic regression on the
vectors, and zero-shot against "a {genre} album cover"), artist of an unseen album (each artist's 3 best cosines,
rejection by the calibrated z-score), and text search by genre (mAP, recall@10). The multi-stage style features
of the product's genre and artist defaults are computed at query time in fp32 whatever the index holds, so they
are not part of this. Noise: each difference to fp32 with its 95 % paired bootstrap interval (1,000 resamples
of the covers or queries, seed 0); a difference whose interval holds 0 is within the noise of albums-dev.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench._common import DATA, WORK, read_manifest, table  # noqa: E402
from bench.albums import protocols as ev  # noqa: E402
from bench.record import add_no_write, save_record  # noqa: E402
from logoid import DEFAULT_MODEL  # noqa: E402

PRECISIONS = ("fp32", "bf16", "bf16+frozen")
PROMPT = "a {genre} album cover"
TOP_M = 3  # the product's artist scorer (logoid.albums.artist.ArtistConfig.top_m)
BOOT = 1000


def embed_all(rows: list[dict], data: Path, embedder, precision: str) -> tuple[np.ndarray, float]:
    """Every cover's vector as the build makes it in ``precision`` (cached per precision); and img/s (0: cached)."""
    from logoid.build.embedding import CPU_BATCH
    from logoid.core.imageio import load_image

    ids = np.asarray([r["id"] for r in rows])
    key = hashlib.sha256(json.dumps([embedder.vectors_id(precision), CPU_BATCH]).encode()).hexdigest()[:12]
    path = WORK / f"albums_precision_{key}.npz"
    if path.exists():
        z = np.load(path)
        if np.array_equal(z["ids"], ids):
            return z["vec"], 0.0
    side = embedder.input_side
    out, seconds = [], 0.0
    for i in range(0, len(rows), CPU_BATCH):
        part = rows[i:i + CPU_BATCH]
        batch = np.zeros((CPU_BATCH, side, side, 3), np.float32)  # full batches, the last padded: as the build
        for j, r in enumerate(part):
            embedder.image_input(load_image(data / r["cover"]), out=batch[j])
        t0 = time.perf_counter()
        out.append(embedder.embed_inputs(batch, precision)[:len(part)])
        seconds += time.perf_counter() - t0
    vec = np.concatenate(out).astype(np.float32)
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, vec=vec, ids=ids)
    tmp.replace(path)
    return vec, len(rows) / seconds


# ---------------------------------------------------------------------------------------------- metrics


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's ``f1_score(average="weighted")`` over the labels present in ``y``, in numpy (bootstrapped)."""
    out = 0.0
    for g in np.unique(y):
        tp = np.sum((pred == g) & (y == g))
        p, t = np.sum(pred == g), np.sum(y == g)
        out += t * (2 * tp / (p + t) if p + t else 0.0)
    return float(out / len(y))


def genre_answers(vec: np.ndarray, rows: list[dict], prompts: np.ndarray) -> dict[str, np.ndarray]:
    y = np.asarray([r["genre"] for r in rows])
    folds = np.asarray([int(r["genre_fold"]) for r in rows])
    groups = np.asarray([r["artist"] for r in rows])
    return {"lr": ev.cv_predict(vec, y, folds, groups, ev.lr_maker(standardise=False, balanced=False)),
            "lr_std": ev.cv_predict(vec, y, folds, groups, ev.lr_maker()),
            "zero_shot": ev.zero_shot(vec, prompts)}


def artist_answers(vec: np.ndarray, rows: list[dict]) -> dict:
    """Scores of every query (gallery artists' 3 best cosines, z-scored), the target, the calib split."""
    gal = np.asarray([r["artist_role"] == "gallery" for r in rows])
    artists = sorted({r["artist"] for r, g in zip(rows, gal, strict=True) if g})
    pos = {a: i for i, a in enumerate(artists)}
    q_rows = [r for r, g in zip(rows, gal, strict=True) if not g]
    _, z, _ = ev.style_scores(vec[gal], [r["artist"] for r, g in zip(rows, gal, strict=True) if g], vec[~gal],
                              top_m=TOP_M)
    return {"z": z, "target": np.asarray([pos.get(r["artist"], -1) if r["artist_role"] == "query" else -1
                                          for r in q_rows]),
            "calib": np.asarray([r["split"] == "calib" for r in q_rows])}


def artist_metrics(a: dict, take: np.ndarray | None = None) -> dict:
    """Test split: top-1 of the known queries, AUROC known vs unknown by the top z-score, open-set accuracy at the
    threshold chosen on the calib split. ``take``: test query indices (a bootstrap resample)."""
    from logoid.scoring.stats import auroc

    z, target, calib = a["z"], a["target"], a["calib"]
    top, score = z.argmax(1), z.max(1)
    ck, cu = calib & (target >= 0), calib & (target < 0)
    thr = ev.best_threshold(top[ck] == target[ck], score[ck], score[cu])
    test = np.flatnonzero(~calib) if take is None else take
    known, unk = test[target[test] >= 0], test[target[test] < 0]
    ok = top[known] == target[known]
    return {"top1": float(ok.mean()), "auroc": auroc(score[known], score[unk]),
            "open_set": ev.open_set(ok, score[known], score[unk], thr)}


def search_metrics(vec: np.ndarray, y: np.ndarray, prompts: np.ndarray, take: np.ndarray | None = None) -> dict:
    take = np.arange(len(y)) if take is None else take
    per = [ev.search_metrics(vec[take] @ prompts[i], y[take] == g) for i, g in enumerate(ev.GENRES)]
    return {"map": float(np.mean([p["ap"] for p in per])), "recall10": float(np.mean([p["recall_at_k"] for p in per]))}


def metrics(ans: dict, y: np.ndarray, vec: np.ndarray, prompts: np.ndarray, take: dict | None = None) -> dict:
    """Every metric of one precision's answers (``take``: the bootstrap's resampled covers and test queries)."""
    c = take["covers"] if take else np.arange(len(y))
    return {"genre_lr": weighted_f1(y[c], ans["genre"]["lr"][c]),
            "genre_lr_std": weighted_f1(y[c], ans["genre"]["lr_std"][c]),
            "genre_zero_shot": weighted_f1(y[c], ans["genre"]["zero_shot"][c]),
            **{f"artist_{k}": v for k, v in artist_metrics(ans["artist"], take["queries"] if take else None).items()},
            **{f"search_{k}": v for k, v in search_metrics(vec, y, prompts, c).items()}}


def bootstrap_diffs(answers: dict, vecs: dict, y: np.ndarray, prompts: np.ndarray, n: int = BOOT) -> dict:
    """Per precision other than fp32, per metric: the 2.5 and 97.5 percentiles of (metric - fp32's) over ``n``
    paired resamples (the same covers and test queries for both); and the fp32 metric's own bootstrap std."""
    rng = np.random.default_rng(0)
    test = np.flatnonzero(~answers["fp32"]["artist"]["calib"])
    draws: dict[str, dict[str, list]] = {p: {} for p in answers}
    for _ in range(n):
        take = {"covers": rng.integers(0, len(y), len(y)), "queries": rng.choice(test, len(test))}
        for p in answers:
            for k, v in metrics(answers[p], y, vecs[p], prompts, take).items():
                draws[p].setdefault(k, []).append(v)
    base = {k: np.asarray(v) for k, v in draws["fp32"].items()}
    out: dict = {"fp32_std": {k: float(np.std(v)) for k, v in base.items()}}
    for p in answers:
        if p != "fp32":
            out[p] = {k: [float(x) for x in np.percentile(np.asarray(v) - base[k], [2.5, 97.5])]
                      for k, v in draws[p].items()}
    return out


def changed(answers: dict, vecs: dict, y: np.ndarray, prompts: np.ndarray) -> dict:
    """How many answers differ from fp32's: genre per cover, artist top-1 per test query, search top-10 overlap."""
    out = {}
    base = answers["fp32"]
    test = ~base["artist"]["calib"]
    for p in answers:
        if p == "fp32":
            continue
        a = answers[p]
        top10 = [len(set(np.argsort(-(vecs[p] @ q))[:10]) & set(np.argsort(-(vecs["fp32"] @ q))[:10])) / 10
                 for q in prompts]
        out[p] = {"genre_lr": float(np.mean(a["genre"]["lr"] != base["genre"]["lr"])),
                  "genre_lr_std": float(np.mean(a["genre"]["lr_std"] != base["genre"]["lr_std"])),
                  "genre_zero_shot": float(np.mean(a["genre"]["zero_shot"] != base["genre"]["zero_shot"])),
                  "artist_top1": float(np.mean(a["artist"]["z"][test].argmax(1) != base["artist"]["z"][test].argmax(1))),
                  "search_top10_overlap": float(np.mean(top10))}
    return out


# ---------------------------------------------------------------------------------------------- report

METRICS = [("genre_lr", "genre wF1, LR"), ("genre_lr_std", "genre wF1, standardised LR"),
           ("genre_zero_shot", "genre wF1, zero-shot"), ("artist_top1", "artist top-1"),
           ("artist_auroc", "artist AUROC"), ("artist_open_set", "artist open-set"),
           ("search_map", "search mAP"), ("search_recall10", "search recall@10")]


def render(res: dict) -> str:
    precs = list(res["metrics"])
    lines = [table(["metric (albums-dev)", *precs, "fp32 bootstrap std",
                    *(f"{p} − fp32 (95 % interval)" for p in precs[1:])],
                   [[label, *(res["metrics"][p][k] for p in precs), res["bootstrap"]["fp32_std"][k],
                     *(f"{res['metrics'][p][k] - res['metrics']['fp32'][k]:+.3f} "
                       f"({res['bootstrap'][p][k][0]:+.3f}, {res['bootstrap'][p][k][1]:+.3f})" for p in precs[1:])]
                    for k, label in METRICS])]
    lines += ["", table(["against fp32", "cosine mean", "p1", "min", "genre LR answers changed",
                         "standardised LR changed", "zero-shot changed", "artist top-1 changed",
                         "search top-10 overlap"],
                        [[p, *res["cosine"][p], *res["changed"][p].values()] for p in precs[1:]])]
    rates = ", ".join(f"{p} {r:.0f}" for p, r in res["img_per_s"].items() if r)
    if rates:
        lines += ["", f"Embedding the covers (batches of {res['batch']}, the model pass only): {rates} img/s."]
    return "\n".join(lines)


def summary(res: dict) -> str:
    m, b = res["metrics"], res["bootstrap"]
    out = []
    for p in list(m)[1:]:
        inside = sum(lo <= 0 <= hi for lo, hi in b[p].values())
        out.append(f"{p}: genre wF1 {m[p]['genre_lr_std']:.3f} (fp32 {m['fp32']['genre_lr_std']:.3f}), artist "
                   f"top-1 {m[p]['artist_top1']:.3f} ({m['fp32']['artist_top1']:.3f}), search mAP "
                   f"{m[p]['search_map']:.3f} ({m['fp32']['search_map']:.3f}); {inside} of {len(b[p])} "
                   f"differences within the noise")
    return "index vectors by precision; " + "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA / "albums-dev")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    add_no_write(ap)
    a = ap.parse_args(argv)
    from logoid.build.embedding import CPU_BATCH
    from logoid.engine.embedder import resolve_precision
    from logoid.engine.registry import create_embedder

    rows = read_manifest(a.data)
    emb = create_embedder(a.model, device="cpu")
    if resolve_precision("auto", emb.device) != "bf16":
        print("note: this CPU has no native bf16; bf16 runs emulated (slow) and its numbers still hold",
              file=sys.stderr)
    y = np.asarray([r["genre"] for r in rows])
    prompts = emb.embed_texts([PROMPT.format(genre=g) for g in ev.GENRES])
    vecs, rates, answers = {}, {}, {}
    for p in PRECISIONS:
        vecs[p], rates[p] = embed_all(rows, a.data, emb, p)
        t0 = time.perf_counter()
        answers[p] = {"genre": genre_answers(vecs[p], rows, prompts), "artist": artist_answers(vecs[p], rows)}
        print(f"{p}: embedded ({rates[p]:.0f} img/s, 0 = cached), answered in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    cos = {p: np.sum(vecs[p] * vecs["fp32"], axis=1) for p in PRECISIONS[1:]}
    res = {"model": emb.model_id, "n_covers": len(rows), "batch": CPU_BATCH, "img_per_s": rates,
           "metrics": {p: metrics(answers[p], y, vecs[p], prompts) for p in PRECISIONS},
           "bootstrap": bootstrap_diffs(answers, vecs, y, prompts),
           "changed": changed(answers, vecs, y, prompts),
           "cosine": {p: [float(c.mean()), float(np.percentile(c, 1)), float(c.min())] for p, c in cos.items()}}
    md = render(res)
    print(md)
    if not a.no_write:
        save_record("albums", "precision", res, md, summary=summary(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
