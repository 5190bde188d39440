"""Embedding caches for the albums benchmark: every albums-dev cover through the default model, once.

One npz per (model id, preprocessing) under bench/work/: the product embedding (512-d, projected), the raw
pooled trunk feature (1280-d), GeM and average pools of several trunk stages at two input sides (for the
ablation of :func:`logoid.albums.cover_features`), and colour statistics.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from bench._common import WORK
from logoid.albums.features import colour_stats, gem_pool, prepare_image
from logoid.core.imageio import load_image

RESULTS = WORK
SCALES = (224, 320)
STAGES = (2, 3, 4, 5, 6, -1)


def _key(embedder) -> str:
    pp = json.dumps({"pp": embedder.preprocess_cfg, "scales": SCALES, "stages": STAGES, "v": 1}, sort_keys=True)
    return f"{embedder.model_id.replace('@', '_')}_{hashlib.sha256(pp.encode()).hexdigest()[:8]}"


def cover_cache(rows: list[dict], data: Path, embedder, batch: int = 16) -> dict[str, np.ndarray]:
    """Arrays keyed by name, one row per manifest row (in order); computed once, then read from the npz."""
    import torch

    path = RESULTS / f"albums_emb_{_key(embedder)}.npz"
    ids = np.asarray([r["id"] for r in rows])
    if path.exists():
        z = dict(np.load(path))
        if np.array_equal(z["ids"], ids):
            return z
    visual = embedder.model.visual
    trunk = visual.trunk
    pp = embedder.preprocess_cfg
    out: dict[str, list] = {"proj": [], "raw": [], "colour": []}
    for i in range(0, len(rows), batch):
        imgs = [load_image(data / r["cover"]) for r in rows[i:i + batch]]
        out["colour"].append(np.stack([colour_stats(im) for im in imgs]))
        with torch.inference_mode():
            for side in SCALES:
                x = torch.from_numpy(np.stack([prepare_image(im, side, pp["mean"], pp["std"]) for im in imgs]))
                x = x.contiguous(memory_format=torch.channels_last)
                for s, (f1, f3) in _stage_pools(trunk, x).items():
                    out.setdefault(f"s{side}_p1_b{s}", []).append(f1)
                    out.setdefault(f"s{side}_p3_b{s}", []).append(f3)
                if side == 224:  # the product vectors: avg-pooled head (raw) and its projection (proj)
                    head = torch.from_numpy(out[f"s{side}_p1_b-1"][-1][1])
                    out["raw"].append(out[f"s{side}_p1_b-1"][-1][0])
                    out["proj"].append(torch.nn.functional.normalize(visual.head(head), dim=1).numpy())
        for k in [k for k in out if k.startswith("s")]:
            if isinstance(out[k][-1], tuple):
                out[k][-1] = out[k][-1][0]
        print(f"embed {min(i + batch, len(rows))}/{len(rows)}", file=sys.stderr, flush=True)
    arrays = {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
    arrays["ids"] = ids
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


def _stage_pools(trunk, x) -> dict:
    """One trunk pass; per stage (L2-normalised avg pool, L2-normalised GeM-3 pool); the head's avg pool also
    carries its unnormalised value (for the projection)."""
    import torch

    norm = torch.nn.functional.normalize
    res = {}
    x = trunk.bn1(trunk.conv_stem(x))
    for i, block in enumerate(trunk.blocks):
        x = block(x)
        if i in STAGES:
            res[i] = (norm(gem_pool(x, 1.0), dim=1).numpy(), norm(gem_pool(x, 3.0), dim=1).numpy())
    h = trunk.bn2(trunk.conv_head(x))
    avg = gem_pool(h, 1.0)
    res[-1] = ((norm(avg, dim=1).numpy(), avg.numpy()), norm(gem_pool(h, 3.0), dim=1).numpy())
    return res


def stage_features(cache: dict, scales=(224, 320), stages=(3, 4, 5, -1), p: int = 3, colour: bool = False):
    """Numpy re-composition of :func:`logoid.albums.cover_features` from the cache (for ablations)."""
    blocks = [np.mean([cache[f"s{s}_p{p}_b{b}"] for s in scales], axis=0) for b in stages]
    if colour:
        blocks.append(cache["colour"])
    return np.concatenate(blocks, axis=1)
