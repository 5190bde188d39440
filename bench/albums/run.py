"""Albums benchmark on albums-dev: genre from a cover, artist of an unseen album, text search.

    OMP_NUM_THREADS=1 python -m bench albums --data ../shared/data/albums-dev [--only genre,artist] [--no-write]

Protocols are the dataset README's (artist-disjoint genre folds; gallery/query/unknown artists with calib/test
split by artist; genre text queries). The research ablation runs on cached arrays; the ``product`` part runs the
same protocols through `logoid eval --task genre|artist` (bench/albums/product.py), the numbers users get.
Embeddings and OCR are cached under bench/work/ (albums_emb_*.npz, albums_ocr.json; run ``python -m bench
albums-ocr`` first, or this runs it). Writes bench/work/albums.json, records the run and regenerates BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench._common import DATA, read_manifest  # noqa: E402
from bench.albums import protocols as ev  # noqa: E402
from bench.albums.cache import RESULTS, cover_cache, stage_features  # noqa: E402
from bench.albums.ocr import CACHE as OCR_CACHE  # noqa: E402
from bench.albums.ocr import ocr_covers  # noqa: E402
from bench.record import add_no_write, save_record  # noqa: E402
from logoid import DEFAULT_MODEL  # noqa: E402
from logoid.albums.features import artist_name_index, ocr_text, text_amount, text_artist_scores  # noqa: E402

GENRE_PROMPT = "a {genre} album cover"


def load_rows(data: Path) -> list[dict]:
    return read_manifest(data)


def text_cache(rows, ocr: dict, embedder) -> np.ndarray:
    """OCR text of each cover through the text tower (zero row where nothing was read); cached."""
    path = RESULTS / f"albums_ocrtext_{embedder.model_id.replace('@', '_')}.npz"
    texts = [ocr_text(ocr[r["id"]]["lines"]) for r in rows]
    if path.exists():
        z = np.load(path)
        if list(z["texts"]) == texts:
            return z["vec"]
    vec = embedder.embed_texts([t or "-" for t in texts])
    vec[[not t for t in texts]] = 0.0
    np.savez(path, vec=vec, texts=np.asarray(texts))
    return vec


# ---------------------------------------------------------------------------------------------- protocol 1


def run_genre(rows, cache, ocr_vec, text_prompts) -> dict:
    y = np.asarray([r["genre"] for r in rows])
    folds = np.asarray([int(r["genre_fold"]) for r in rows])
    groups = np.asarray([r["artist"] for r in rows])
    has_text = (np.abs(ocr_vec).sum(1) > 0).astype(np.float32)[:, None]
    ms = stage_features(cache, scales=(224,), stages=(3, 4, 5, -1))
    ms2 = stage_features(cache, scales=(224, 320), stages=(3, 4, 5, -1))
    ms2c = np.concatenate([ms2, cache["colour"]], axis=1)
    full = np.concatenate([ms2c, ocr_vec, has_text], axis=1)
    steps = [
        ("raw trunk 1280-d, LR (README baseline)", cache["raw"], ev.lr_maker(standardise=False, balanced=False)),
        ("raw trunk 1280-d, 10-NN (README baseline)", cache["raw"], ev.knn_maker(10)),
        ("product 512-d embedding, LR", cache["proj"], ev.lr_maker(standardise=False, balanced=False)),
        ("+ standardise, class-balanced LR", cache["raw"], ev.lr_maker()),
        ("+ GeM stages 3,4,5,head (224 px)", ms, ev.lr_maker()),
        ("+ second scale 320 px", ms2, ev.lr_maker()),
        ("+ colour statistics", ms2c, ev.lr_maker()),
        ("+ OCR text through the text tower", full, ev.lr_maker()),
        ("same features, SVC (RBF)", full, ev.svc_maker()),
        ("same features, 10-NN (standardised)", full, ev.knn_maker(10, standardise=True)),
    ]
    out = {"steps": []}
    for name, x, make in steps:
        t0 = time.perf_counter()
        pred = ev.cv_predict(x, y, folds, groups, make)
        m = ev.genre_metrics(y, pred)
        m.update(name=name, dim=int(x.shape[1]), seconds=round(time.perf_counter() - t0, 1))
        print(f"genre {name}: wF1 {m['weighted_f1']:.3f}", file=sys.stderr, flush=True)
        out["steps"].append(m)
    zs = ev.zero_shot(cache["proj"], text_prompts)
    m = ev.genre_metrics(y, zs)
    m.update(name="zero-shot 'a {genre} album cover', raw model", dim=int(cache["proj"].shape[1]))
    out["steps"].append(m)
    out["best"] = max(out["steps"], key=lambda s: s["weighted_f1"])["name"]
    return out


# ---------------------------------------------------------------------------------------------- protocol 2


def run_artist(rows, cache, ocr) -> dict:
    role = np.asarray([r["artist_role"] for r in rows])
    gal, qry = role == "gallery", role != "gallery"
    artists = sorted({r["artist"] for r, g in zip(rows, gal, strict=True) if g})
    pos = {a: i for i, a in enumerate(artists)}
    q_rows = [r for r, q in zip(rows, qry, strict=True) if q]
    target = np.asarray([pos.get(r["artist"], -1) if r["artist_role"] == "query" else -1 for r in q_rows])
    calib = np.asarray([r["split"] == "calib" for r in q_rows])
    gal_artist = [r["artist"] for r, g in zip(rows, gal, strict=True) if g]
    feats = {
        "raw trunk 1280-d (baseline)": cache["raw"],
        "product 512-d embedding": cache["proj"],
        "GeM stages 3,4,5,head x 2 scales": stage_features(cache, scales=(224, 320), stages=(3, 4, 5, -1)),
        "GeM stages 2-6,head x 2 scales": stage_features(cache, scales=(224, 320), stages=(2, 3, 4, 5, 6, -1)),
    }
    out: dict = {"n_artists": len(artists), "style": [], "text": [], "fusion": []}
    best = None
    for fname, x in feats.items():
        for m in (1, 2, 3, 100):
            _, z, raw = ev.style_scores(x[gal], gal_artist, x[qry], top_m=m)
            for rname, rej in ({"max_raw": raw.max(1)} | ev.reject_scores(z)).items():
                rep = ev.artist_report(z, rej, target, calib)
                rep.update(features=fname, top_m=m, reject=rname)
                out["style"].append(rep)
                if best is None or rep["calib"]["top1"] + rep["calib"]["auroc_known_vs_unknown"] > \
                        best[0]["calib"]["top1"] + best[0]["calib"]["auroc_known_vs_unknown"]:
                    best = (rep, z)
    print(f"artist style best (on calib): {best[0]['features']} m={best[0]['top_m']} {best[0]['reject']}: "
          f"test top1 {best[0]['test']['top1']:.3f} auroc {best[0]['test']['auroc_known_vs_unknown']:.3f}",
          file=sys.stderr, flush=True)
    out["style_best"] = best[0]
    style_z = best[1]
    for alias in (False, True):
        # surnames: covers of composers and jazz players often print only "BRAHMS", "COLTRANE"
        idx = artist_name_index(artists, aliases=alias)
        tsim = np.stack([text_artist_scores([tuple(x) for x in ocr[r["id"]]["lines"]], idx, artists)
                         for r in q_rows])
        # Text alone: rank by name similarity (ties broken by style so every query has an answer).
        rep = ev.artist_report(tsim + 1e-3 * style_z, tsim.max(1), target, calib)
        rep.update(aliases="surname aliases" if alias else "full names only",
                   read_any=float(np.mean(tsim.max(1) >= 0.8)))
        out["text"].append(rep)
        chars = np.asarray([text_amount(ocr[r["id"]]["lines"]) for r in q_rows], np.float32)
        for amount in (False, True):
            fu, p, rej = ev.fuse(style_z, tsim, target, calib, chars if amount else None)
            frep = ev.artist_report(p, rej, target, calib)
            frep.update(aliases=rep["aliases"], weights=fu.weights,
                        text_amount="with amount of text read" if amount else "without amount of text")
            out["fusion"].append(frep)
        print(f"artist text ({rep['aliases']}): test top1 {rep['test']['top1']:.3f}; fusion top1 "
              f"{frep['test']['top1']:.3f} auroc {frep['test']['auroc_known_vs_unknown']:.3f}", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------- protocol 3


def run_search_raw(rows, cache, text_prompts) -> dict:
    y = np.asarray([r["genre"] for r in rows])
    per = {g: ev.search_metrics(cache["proj"] @ text_prompts[i], y == g) for i, g in enumerate(ev.GENRES)}
    return {"per_genre": per, "map": float(np.mean([v["ap"] for v in per.values()])),
            "mean_recall_at_10": float(np.mean([v["recall_at_k"] for v in per.values()]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA / "albums-dev")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--only", default="genre,artist,search,finetune,photo,product",
                    help="comma list of parts to run (product: the `logoid eval` commands, bench/albums/product.py)")
    add_no_write(ap)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from logoid.engine.registry import create_embedder

    rows = load_rows(a.data)
    emb = create_embedder(a.model, device="cpu")
    cache = cover_cache(rows, a.data, emb)
    ocr = ocr_covers(rows, a.data, OCR_CACHE)
    ocr_vec = text_cache(rows, ocr, emb)
    prompts = emb.embed_texts([GENRE_PROMPT.format(genre=g) for g in ev.GENRES])
    only = set(a.only.split(","))
    out = RESULTS / "albums.json"
    # Parts not run this time keep their last results (each part's key is replaced when it runs).
    res: dict = json.loads(out.read_text()) if out.exists() else {}
    res.update(model=emb.model_id, n_covers=len(rows))
    if "genre" in only:
        res["genre"] = run_genre(rows, cache, ocr_vec, prompts)
    if "artist" in only:
        res["artist"] = run_artist(rows, cache, ocr)
    if "search" in only:
        res["search_raw"] = run_search_raw(rows, cache, prompts)
    if "finetune" in only:
        from bench.albums.finetuned import run_search_finetuned

        cached = RESULTS / "albums_ft.json"  # slow (5 fine-tuning runs); delete to rerun
        if not cached.exists():
            cached.write_text(json.dumps(run_search_finetuned(rows, a.data, a.model), default=float))
        res["search_finetuned"] = json.loads(cached.read_text())
    if "photo" in only:
        from bench.albums.photo import run_album_photos

        cached = RESULTS / "albums_photo.json"  # slow (SIFT of every gallery cover); delete to rerun
        if not cached.exists():
            cached.write_text(json.dumps(run_album_photos(rows, a.data), default=float))
        res["album_photo"] = json.loads(cached.read_text())
    if "product" in only:
        from bench.albums.product import run_catalog, run_product

        res["product"] = run_product(a.data, a.model)
        res["product"]["catalog"] = run_catalog(a.data, a.model)
    out.write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {out}", file=sys.stderr)
    if not a.no_write:
        from bench.albums.report import report, summary

        save_record("albums", "protocols", res, report(res), summary=summary(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
