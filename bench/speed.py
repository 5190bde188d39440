"""Speed: embedding throughput (end to end vs raw forward, same run), build-index time, warm/cold query latency."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import fmt, median_time, peak_rss_mb, table


def run(model: str = "logoid-effl0-minilm", n_images: int = 64, batch: int = 32) -> dict:
    import torch

    from logoid.build.steps import build_index
    from logoid.catalog import Catalog
    from logoid.core.paths import Home
    from logoid.demo import build_demo_catalog, demo_assets
    from logoid.engine import create_embedder
    from logoid.identify import Identifier

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp) / "home").ensure()
        cat = Catalog.open(home)
        build_demo_catalog(cat, Path(tmp) / "demo")
        assets = demo_assets(Path(tmp) / "demo")
        t = time.perf_counter()
        emb = create_embedder(model)
        emb.embed_images([assets_image(assets)])
        out["model_load_s"] = time.perf_counter() - t

        # Embedding throughput: decoded PIL images → vectors, vs the raw forward pass on ready tensors.
        from logoid.core.imageio import load_image

        paths = [r.path for r in cat.images()]
        imgs = [load_image(paths[i % len(paths)]) for i in range(n_images)]
        t_e2e = median_time(lambda: emb.embed_images(imgs, batch_size=batch), repeat=3)
        x = torch.stack([emb.preprocess(im) for im in imgs[:batch]])
        with torch.inference_mode():
            t_raw = median_time(lambda: emb.model.encode_image(x), repeat=3) * (n_images / batch)
        out["embed_e2e_img_s"] = n_images / t_e2e
        out["embed_raw_img_s"] = n_images / t_raw
        out["embed_overhead_ratio"] = t_e2e / t_raw

        t = time.perf_counter()
        rep = build_index(home, cat, emb)
        out["build_cold_s"] = time.perf_counter() - t
        out["build_images"], out["build_vectors"] = rep.images, rep.vectors
        t = time.perf_counter()
        build_index(home, cat, emb)
        out["build_cached_s"] = time.perf_counter() - t

        ident = Identifier(home, cat, embedder=emb)
        photo = assets["known_photo"]
        ident.identify(photo)  # warm everything (OCR and descriptor index load lazily)
        lat, per = [], {"global": [], "local": [], "text": []}
        for _ in range(7):
            t = time.perf_counter()
            a = ident.identify(photo)
            lat.append(time.perf_counter() - t)
            for k in per:
                per[k].append(a.timings.get(k, 0.0))
        out["query_warm_p50_s"] = statistics.median(lat)
        out["query_warm_channels_s"] = {k: statistics.median(v) for k, v in per.items()}
        cold = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "logoid", "--home", str(home.root), "query", str(photo), "--json"],
                           check=True, capture_output=True)
            cold.append(time.perf_counter() - t)
        out["query_cold_p50_s"] = statistics.median(cold)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def assets_image(assets):
    from logoid.core.imageio import load_image

    return load_image(assets["known_photo"])


def markdown(r: dict) -> str:
    rows = [
        ["model load (first embedding)", f"{fmt(r['model_load_s'], 2)} s"],
        ["embedding, end to end (PIL → vectors)", f"{fmt(r['embed_e2e_img_s'], 1)} img/s"],
        ["embedding, raw forward pass of the same model", f"{fmt(r['embed_raw_img_s'], 1)} img/s"],
        ["end-to-end / raw time ratio", fmt(r["embed_overhead_ratio"], 2)],
        [f"build-index, demo catalog ({r['build_images']} images → {r['build_vectors']} vectors), cold",
         f"{fmt(r['build_cold_s'], 1)} s"],
        ["build-index again (embedding + feature caches warm)", f"{fmt(r['build_cached_s'], 1)} s"],
        ["query, warm (model loaded), median", f"{fmt(r['query_warm_p50_s'], 3)} s"],
        ["  of which global / local / text", " / ".join(f"{fmt(v, 3)}" for v in r["query_warm_channels_s"].values())
         + " s"],
        ["query, cold (`logoid query` process), median of 3", f"{fmt(r['query_cold_p50_s'], 2)} s"],
        ["peak RSS of the bench process", f"{fmt(r['peak_rss_mb'], 0)} MB"],
    ]
    return table(["what", "median"], rows)
