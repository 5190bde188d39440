"""Fine-tuning before vs after on threadless-dev, GLOBAL channel alone (no local features, no text reading).

    nice python -m bench finetune --data ../shared/data/threadless-dev [--variants 20] [--epochs 15] [--no-write]
    python -m bench finetune --publish-only     # record the last run's result (bench/work/bench_finetune.json)

Trains ONLY on enrolled designs (never on photos), and of those only on ~80%: a seeded 20% of the enrolled
designs is held out of training altogether, to measure entities the fine-tuning never saw. (Inside training,
finetune() holds out a further share of the training designs for early stopping and the WiSE-FT alpha.)
Reports, for base and fine-tuned weights, on split=test photos: top-1 / top-5 against a FAISS IndexFlatIP of
all enrolled designs' variants (best variant per design), and AUROC known-vs-unknown by max cosine, each for
seen and held-out designs; plus caption→design recall@5. Threadless designs have no names, so the only caption
is "... logo for threadless <id>": text retrieval here is weak by construction (it can only learn id strings).
Frozen trunk features are cached in bench/work/finetune-cache, so reruns skip augmentation and the trunk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import DATA, WORK, fmt, peak_rss_mb, read_manifest, table
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL


def load_rows(data: Path, holdout: float, seed: int):
    rows = read_manifest(data)
    enrolled = sorted(r["id"] for r in rows if r["role"] == "enrolled")
    order = np.random.default_rng(seed).permutation(len(enrolled))
    held = {enrolled[i] for i in order[: int(round(holdout * len(enrolled)))]}
    return rows, enrolled, held


def make_items(data: Path, rows, enrolled):
    from logoid.catalog.captions import caption
    from logoid.core.imageio import is_black_and_white, load_image
    from logoid.finetune import TrainItem

    by_id = {r["id"]: r for r in rows}
    items = []
    for i in enrolled:
        path = data / by_id[i]["design"]
        scheme = "bw" if is_black_and_white(load_image(path)) else "color"
        items.append(TrainItem(f"threadless:{i}", path, caption({"name": f"threadless {i}"}, "band"), scheme))
    return items


def photo_features(embedder, tower, paths: list[Path], cache: Path) -> np.ndarray:
    """Pooled frozen-trunk features of every photo (no augmentation), cached by model weights."""
    import torch

    from logoid.core.imageio import load_image

    if cache.is_file():
        return np.load(cache)
    out = []
    with torch.no_grad():
        for s in range(0, len(paths), 16):
            x = torch.stack([embedder.preprocess(load_image(p)) for p in paths[s:s + 16]])
            out.append(tower.prefix(x).float().numpy())
    arr = np.concatenate(out)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, arr)
    return arr


def project(tower, feats: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        return F.normalize(tower.suffix(torch.from_numpy(feats).float()), dim=-1).numpy()


def evaluate(gallery: np.ndarray, n_var: int, photos: np.ndarray, texts: np.ndarray, rows, enrolled, held) -> dict:
    """Global-channel metrics: photo→design top-1/top-5 and AUROC (seen / held-out), caption→design recall@5."""
    import faiss
    from sklearn.metrics import roc_auc_score

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    sims, ids = index.search(photos, min(len(gallery), 50 * n_var))
    design_of = np.repeat(np.arange(len(enrolled)), n_var)
    pos = {d: k for k, d in enumerate(enrolled)}
    ranked, top_sim = [], []
    for s_row, i_row in zip(sims, ids, strict=True):
        seen_d, order = set(), []
        for i in i_row:
            d = design_of[i]
            if d not in seen_d:
                seen_d.add(d)
                order.append(d)
        ranked.append(order)
        top_sim.append(float(s_row[0]))
    out = {}
    # Open-set threshold on max cosine, chosen on the calib split (all enrolled designs), applied on test.
    from logoid.scoring.rules import search_threshold

    calib = [k for k, r in enumerate(rows) if r["split"] == "calib"]
    c_known = np.array([rows[k]["role"] == "enrolled" for k in calib])
    c_right = np.array([c_known[j] and ranked[k][0] == pos[rows[k]["id"]] for j, k in enumerate(calib)])
    thr = search_threshold(np.array([top_sim[k] for k in calib]), c_right, ~c_known).threshold
    out["threshold"] = float(thr)
    test = [k for k, r in enumerate(rows) if r["split"] == "test"]
    unknown = [k for k in test if rows[k]["role"] == "unknown"]
    for name, members in (("seen", lambda i: i not in held), ("heldout", lambda i: i in held)):
        known = [k for k in test if rows[k]["role"] == "enrolled" and members(rows[k]["id"])]
        truth = [pos[rows[k]["id"]] for k in known]
        out[f"{name}_n"] = len(known)
        out[f"{name}_top1"] = float(np.mean([ranked[k][0] == t for k, t in zip(known, truth, strict=True)]))
        out[f"{name}_top5"] = float(np.mean([t in ranked[k][:5] for k, t in zip(known, truth, strict=True)]))
        labels = [1] * len(known) + [0] * len(unknown)
        out[f"{name}_auroc"] = float(roc_auc_score(labels, [top_sim[k] for k in known + unknown]))
        right = sum(ranked[k][0] == t and top_sim[k] >= thr for k, t in zip(known, truth, strict=True))
        out[f"{name}_open_set"] = float((right + sum(top_sim[k] < thr for k in unknown)) / (len(known) + len(unknown)))
        idx = [pos[i] for i in enrolled if members(i)]
        t_sims = texts[idx] @ gallery[::n_var].T
        top5 = np.argsort(-t_sims, axis=1)[:, :5]
        out[f"{name}_text_r5"] = float(np.mean([d in row for d, row in zip(idx, top5, strict=True)]))
    out["n_unknown"] = len(unknown)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--variants", type=int, default=20, help="augmented variants per design (variant 0 = original)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--holdout", type=float, default=0.2, help="share of enrolled designs never trained on")
    ap.add_argument("--image-pair-weight", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=WORK / "finetune-cache")
    ap.add_argument("--out", type=Path, default=WORK / "bench_finetune.json")
    ap.add_argument("--checkpoint", type=Path, default=WORK / "finetune-checkpoint")
    add_no_write(ap)
    ap.add_argument("--publish-only", action="store_true", help="record the result in --out (no run) and stop")
    args = ap.parse_args(argv)
    if args.publish_only:
        publish(json.loads(args.out.read_text()), args.out)
        return 0

    import torch

    from logoid.augment import AugmentConfig
    from logoid.engine import create_embedder
    from logoid.finetune import FinetuneConfig, finetune, save_checkpoint
    from logoid.finetune.data import ImageTower, TextTower, image_features, image_key, text_features

    t_all = time.perf_counter()
    rows, enrolled, held = load_rows(args.data, args.holdout, args.seed)
    items = make_items(args.data, rows, enrolled)
    emb = create_embedder(args.model, device="cpu")
    cfg = FinetuneConfig(epochs=args.epochs, seed=args.seed, image_pair_weight=args.image_pair_weight,
                         augment=AugmentConfig(n_variants=args.variants))
    itower, ttower = ImageTower(emb.model), TextTower(emb.model)
    t = time.perf_counter()
    keys = [image_key(it) for it in items]
    feats = image_features(items, keys, emb, itower, cfg.augment, cfg.feature_batch_size, args.cache)
    gallery_feats = feats.reshape(-1, feats.shape[-1])
    pfeats = photo_features(emb, itower, [args.data / r["photo"] for r in rows],
                            args.cache / f"photos-{emb.weights_sha256[:16]}.npy")
    tfeats = text_features([it.caption for it in items], emb, ttower)
    feature_s = time.perf_counter() - t

    def measure() -> dict:
        return evaluate(project(itower, gallery_feats), args.variants, project(itower, pfeats),
                        project(ttower, tfeats), rows, enrolled, held)

    # The cached-feature path must be the embedder's own path: check on a few photos.
    direct = emb.embed_paths([args.data / r["photo"] for r in rows[:4]])[0]
    assert np.allclose(direct, project(itower, pfeats[:4]), atol=1e-4), "cached features disagree with embed_images"
    before = measure()
    base_sha = emb.weights_sha256
    train_items = [it for it in items if it.entity_key.split(":", 1)[1] not in held]
    t = time.perf_counter()
    res = finetune(train_items, cfg, emb, progress=lambda stage, done, total, info: print(
        f"{stage} {done}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in info.items() if isinstance(v, float)),
        file=sys.stderr, flush=True) if stage != "features" else None, cache_dir=args.cache)
    train_s = time.perf_counter() - t
    after = measure()
    ckpt = save_checkpoint(args.checkpoint, emb, cfg, res)
    loaded = create_embedder(str(ckpt), device="cpu")
    reloaded = loaded.embed_paths([args.data / r["photo"] for r in rows[:4]])[0]
    assert np.allclose(reloaded, project(itower, pfeats[:4]), atol=1e-4), "checkpoint does not reproduce the model"
    assert loaded.weights_sha256 != base_sha

    report = {
        "model": args.model, "variants": args.variants, "epochs_run": len(res.history), "best_epoch": res.best_epoch,
        "wise_alpha": res.wise_alpha, "wise_scores": res.wise_scores, "val_before": res.val_before,
        "val_after": res.val_after, "n_train_designs": res.n_train_entities, "n_val_designs": len(res.val_entities),
        "n_heldout_designs": len(held), "before": before, "after": after,
        "feature_seconds_incl_photos": round(feature_s, 1), "finetune_seconds": round(train_s, 1),
        "finetune_train_seconds": round(res.train_seconds, 1), "total_seconds": round(time.perf_counter() - t_all, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1), "torch_threads": torch.get_num_threads(),
        "history": res.history, "config": cfg.to_dict(), "checkpoint": str(ckpt),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    keys_show = [k for k in before if not k.endswith("_n") and k != "n_unknown"]
    print(f"{'metric':<18}{'before':>9}{'after':>9}")
    for k in keys_show:
        print(f"{k:<18}{before[k]:>9.3f}{after[k]:>9.3f}")
    print(json.dumps({k: v for k, v in report.items() if k not in ("history", "config", "before", "after")}, indent=1))
    if not args.no_write:
        publish(report, args.out)
    return 0


def markdown(d: dict) -> str:
    """The before/after table of a result (what ``main`` writes to --out)."""
    b, a = d["before"], d["after"]
    rows = []
    for part, label in (("seen", "designs trained on"), ("heldout", "designs held out of training")):
        for m in ("top1", "top5", "auroc", "open_set", "text_r5"):
            if f"{part}_{m}" not in b:
                continue
            name = m.replace("_r5", " R@5").replace("top", "top-").replace("open_set", "open-set accuracy (vs unknowns)")
            rows.append([label, name, b[f"{part}_{m}"], a[f"{part}_{m}"]])
    return "\n\n".join([
        f"Global channel alone on threadless-dev photos (split=test; {b['seen_n']} photos of trained designs, "
        f"{b['heldout_n']} of held-out designs, {b['n_unknown']} unknown), index of every enrolled design at "
        f"{d['variants']} variants. Trained on the gallery designs only (never photos): {d['n_train_designs']} "
        f"designs, {d['n_val_designs']} for validation (early stopping, WiSE-FT), {d['n_heldout_designs']} never "
        "seen. Captions carry only the design id (threadless has no names), so text retrieval can only memorise ids.",
        table(["queries", "metric", "before", "after"], rows),
        f"Best epoch {d['best_epoch']} of {d['epochs_run']} (early stopping), WiSE-FT alpha {d['wise_alpha']}; "
        f"validation image top-1 {fmt(d['val_before']['image_top1'])} → {fmt(d['val_after']['image_top1'])}. "
        f"Time: {fmt(d['feature_seconds_incl_photos'], 0)} s to augment and run the frozen trunk once "
        f"(cached afterwards), {fmt(d['finetune_train_seconds'], 1)} s of training; peak RSS "
        f"{fmt(d['peak_rss_mb'], 0)} MB.",
    ])


def summary(d: dict) -> str:
    """The key numbers, for the current-numbers page."""
    b, a = d["before"], d["after"]
    return (f"global channel alone; designs trained on: top-1 {fmt(b['seen_top1'])} → {fmt(a['seen_top1'])}, AUROC "
            f"{fmt(b['seen_auroc'])} → {fmt(a['seen_auroc'])}, text R@5 {fmt(b['seen_text_r5'])} → "
            f"{fmt(a['seen_text_r5'])}; designs held out of training: top-1 {fmt(b['heldout_top1'])} → "
            f"{fmt(a['heldout_top1'])}, AUROC {fmt(b['heldout_auroc'])} → {fmt(a['heldout_auroc'])}")


def publish(d: dict, path: Path) -> None:
    """Record a result (numbers never typed by hand) and regenerate BENCHMARKS.md."""
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"(measured {when}, result file `{path}`)\n\n" + markdown(d)
    print(body)
    save_record("accuracy", "finetune", {k: v for k, v in d.items() if k not in ("history", "config")}, body,
                summary=summary(d))


if __name__ == "__main__":
    raise SystemExit(main())
