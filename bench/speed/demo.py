"""Speed: embedding throughput (end to end vs raw forward, same run), build-index time, warm/cold query latency.

    python -m bench speed [--model NAME] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import ROOT, fmt, median_time, peak_rss_mb, table
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL


def run(model: str = DEFAULT_MODEL, n_images: int = 64, batch: int = 32) -> dict:
    import torch

    from logoid.build.steps import build_index
    from logoid.catalog import Catalog
    from logoid.core.paths import Home
    from logoid.demo import build_demo_catalog, demo_assets
    from logoid.engine import create_embedder
    from logoid.identify import Identifier

    out: dict = {}
    load0 = os.getloadavg()[0]  # the machine may be shared: say how busy it was
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
        from logoid.build.precision import built_precision

        out["build_precision"] = built_precision(home)  # the default's: auto with the frozen tower on a CPU (its trace)
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
                           check=True, capture_output=True, cwd=ROOT)
            cold.append(time.perf_counter() - t)
        out["query_cold_p50_s"] = statistics.median(cold)
    out["peak_rss_mb"] = peak_rss_mb()
    out["loadavg_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    out["cores"] = os.cpu_count()
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
    if "loadavg_1min" in r:
        rows.append([f"machine load average (1 min) at start / end, {r['cores']} cores",
                     " / ".join(fmt(v, 2) for v in r["loadavg_1min"])])
    return table(["what", "median"], rows)


def summary(r: dict) -> str:
    """The key numbers, for the current-numbers page."""
    ch = " / ".join(fmt(v, 3) for v in r["query_warm_channels_s"].values())
    return (f"model load {fmt(r['model_load_s'], 2)} s; embedding {fmt(r['embed_e2e_img_s'], 1)} img/s end to end "
            f"(raw forward pass {fmt(r['embed_raw_img_s'], 1)}); build-index of the demo catalog ({r['build_images']} "
            f"images → {r['build_vectors']} vectors) {fmt(r['build_cold_s'], 1)} s cold, {fmt(r['build_cached_s'], 1)} s "
            f"cached; query warm **{fmt(r['query_warm_p50_s'], 3)} s** (global / local / text {ch} s), cold `logoid "
            f"query` {fmt(r['query_cold_p50_s'], 2)} s; peak RSS {fmt(r['peak_rss_mb'], 0)} MB; load average "
            f"{' → '.join(fmt(v, 1) for v in r['loadavg_1min'])} on {r['cores']} cores")


def report(r: dict, write: bool = True) -> None:
    """Print the table; ``write``: record the run and regenerate BENCHMARKS.md."""
    md = markdown(r)
    print(md)
    if write:
        save_record("speed", "demo", r, md, summary=summary(r))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    add_no_write(ap)
    args = ap.parse_args(argv)
    report(run(args.model), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
