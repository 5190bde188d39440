"""Protocol 3 after fine-tuning: per genre fold, fine-tune the projections on the other folds' covers (album
captions), then rank the held-out fold's covers by "a {genre} album cover". Trunks frozen (CPU budget)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench.albums import protocols as ev
from bench.albums.cache import RESULTS, cover_cache

GENRE_PROMPT = "a {genre} album cover"
#: Small on purpose (CPU, shared machine): 2 variants per cover, 10 epochs, towers frozen, projections trained.
FT_SETTINGS = {"epochs": 10, "n_variants": 2, "unlock_image_blocks": 0}


def _items(rows, data: Path):
    from logoid.catalog.captions import CaptionTemplates
    from logoid.finetune.data import TrainItem

    tpl = CaptionTemplates()
    return [TrainItem(entity_key=f"album:{r['id']}", image=data / r["cover"], scheme="color",
                      caption=tpl.captions({"title": r["album"].strip('"'), "year": r["year"], "genre": r["genre"],
                                            "artist": r["artist"]}, kind="album")[0])
            for r in rows]


def run_search_finetuned(rows, data: Path, model: str) -> dict:
    import torch

    from logoid.augment import AugmentConfig
    from logoid.engine.registry import create_embedder
    from logoid.finetune import FinetuneConfig, finetune

    y = np.asarray([r["genre"] for r in rows])
    folds = np.asarray([int(r["genre_fold"]) for r in rows])
    items = _items(rows, data)
    cfg = FinetuneConfig(epochs=FT_SETTINGS["epochs"], unlock_image_blocks=0,
                         augment=AugmentConfig(n_variants=FT_SETTINGS["n_variants"]))
    per_fold, zs_pred = [], np.empty(len(rows), dtype=object)
    raw = None
    for f in sorted(set(folds)):
        emb = create_embedder(model, device="cpu")
        if raw is None:
            cache = cover_cache(rows, data, emb)
            raw = torch.from_numpy(cache["raw"])
            head = emb.model.visual.head
            # The held-out covers' vectors are head(trunk feature): the trunk is frozen, so reuse the cache.
            check = torch.nn.functional.normalize(head(raw[:8]), dim=1).detach().numpy()
            assert np.allclose(check, cache["proj"][:8], atol=1e-4), "head is not bias-free linear"
        t0 = time.perf_counter()
        res = finetune([it for it, k in zip(items, folds != f, strict=True) if k], cfg, emb,
                       cache_dir=RESULTS / "albums_ft_cache")
        with torch.inference_mode():
            img = torch.nn.functional.normalize(emb.model.visual.head(raw[folds == f]), dim=1).numpy()
        txt = emb.embed_texts([GENRE_PROMPT.format(genre=g) for g in ev.GENRES])
        per = {g: ev.search_metrics(img @ txt[i], y[folds == f] == g) for i, g in enumerate(ev.GENRES)}
        zs_pred[folds == f] = ev.zero_shot(img, txt)
        per_fold.append({"fold": int(f), "per_genre": per, "seconds": round(time.perf_counter() - t0, 1),
                         "wise_alpha": res.wise_alpha, "best_epoch": res.best_epoch})
        print(f"ft fold {f}: mAP {np.mean([v['ap'] for v in per.values()]):.3f}", file=sys.stderr, flush=True)
    per_genre = {g: {k: float(np.mean([pf["per_genre"][g][k] for pf in per_fold]))
                     for k in ("ap", "recall_at_k", "chance_ap")} for g in ev.GENRES}
    zs = ev.genre_metrics(y, zs_pred.astype(str))
    return {"settings": FT_SETTINGS, "per_fold": per_fold, "per_genre": per_genre,
            "map": float(np.mean([v["ap"] for v in per_genre.values()])),
            "mean_recall_at_10": float(np.mean([v["recall_at_k"] for v in per_genre.values()])),
            "zero_shot_genre_after_ft": {"weighted_f1": zs["weighted_f1"], "accuracy": zs["accuracy"]}}
