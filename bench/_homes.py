"""Real logoid homes the benches share, built once through the public API and cached under ``bench/work/homes/``.

    from bench._homes import logos_home
    home = logos_home(DATA)          # bench/work/homes/logos-1000: the first 1,000 band logos, indexed
    photos = home_photos(home)       # its query photos: [{"photo", "band", "kind"}, ...]
    demo = demo_home()               # bench/work/homes/demo: what `make demo` builds

A home is what ``logoid add-band`` + ``logoid build-index`` make of the logos (default model, default build options);
it holds ``photos/`` beside the catalog: simulated photos of some of its logos and of logos it lacks (simulations,
never real photos of merch), and ``photos.json`` naming what each one shows. ``.complete`` is written last: a home
without it (a build killed half way) is deleted and built again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from bench._common import WORK, read_manifest

HOMES = WORK / "homes"
MARKER = ".complete"
PHOTOS = "photos"
N_KNOWN, N_UNKNOWN_LOGOS, N_SCENES = 14, 3, 3  # photos: logos in the catalog, logos not in it, no logo at all


def logos_home(data: Path, n: int = 1000, progress=None) -> Path:
    """The home of the first ``n`` band logos of ``data/band-logos`` (manifest order), built on first use."""
    root = HOMES / f"logos-{n}"
    if (root / MARKER).exists():
        return root
    if root.exists():
        shutil.rmtree(root)  # half built: a killed build leaves no marker
    rows = read_manifest(data / "band-logos")
    if len(rows) < n:
        raise ValueError(f"band-logos has {len(rows)} logos, fewer than {n}")
    _write_photos(root / PHOTOS, data / "band-logos", rows, n)
    _build(root, data / "band-logos", rows[:n], progress)
    (root / MARKER).write_text(json.dumps({"n": n}) + "\n")
    return root


def demo_home() -> Path:
    """``bench/work/homes/demo``: what ``make demo`` builds (``logoid demo``: the built-in demo catalog, indexed and
    calibrated, its photos in ``demo/``), built on first use."""
    import os
    import subprocess
    import sys

    root = HOMES / "demo"
    if (root / MARKER).exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "logoid", "--home", str(root), "demo"], check=True, capture_output=True,
                   env=dict(os.environ, HF_HUB_OFFLINE="1"))
    (root / MARKER).write_text(json.dumps({"demo": True}) + "\n")
    return root


def home_photos(root: Path) -> list[dict]:
    """The query photos of a home made by :func:`logos_home`: ``photo`` (absolute path), ``band`` (the band
    shown, ``None`` for a scene with no logo), ``kind`` (``known`` | ``unknown`` | ``scene``)."""
    items = json.loads((root / PHOTOS / "photos.json").read_text())
    return [dict(it, photo=str(root / PHOTOS / it["photo"])) for it in items]


def _build(root: Path, logos: Path, rows: list[dict], progress) -> None:
    import logoid
    from logoid.core.errors import CatalogError

    home = logoid.open_home(root)
    catalog = logoid.Catalog.open(home)
    skipped = []
    for r in rows:
        band = catalog.add_band(r["band"], external_ids={"band-logos": r["id"]})
        try:
            catalog.add_image("band", band.id, logos / r["image"])
        except CatalogError as e:  # a logo the catalog refuses (tiny, one colour): the band stays, by name only
            skipped.append({"id": r["id"], "reason": str(e)})
    logoid.build_index(home, catalog, logoid.create_embedder(logoid.DEFAULT_MODEL), progress=progress)
    (root / "skipped.json").write_text(json.dumps(skipped, indent=1) + "\n")


def _write_photos(out: Path, logos: Path, rows: list[dict], n: int, seed: int = 0) -> None:
    """~20 simulated photos: logos of the catalog and beyond it printed in perspective on cluttered scenes."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    known = sorted(rng.choice(n, N_KNOWN, replace=False).tolist())
    beyond = list(range(n, len(rows)))
    unknown = sorted(rng.choice(beyond, min(N_UNKNOWN_LOGOS, len(beyond)), replace=False).tolist()) if beyond else []
    items = []
    for j, i in enumerate(known + unknown):
        kind = "known" if i < n else "unknown"
        logo = Image.open(logos / rows[i]["image"]).convert("RGB")
        img = _scene(seed=100 + j)
        img = _print_on(img, logo, seed=200 + j, invert=(j % 3 == 2))
        name = f"{kind}-{j:02d}-{rows[i]['id']}.jpg"
        img.save(out / name, quality=88)
        items.append({"photo": name, "band": rows[i]["band"], "kind": kind})
    for j in range(N_SCENES):
        name = f"scene-{j:02d}.jpg"
        _scene(seed=300 + j).save(out / name, quality=88)
        items.append({"photo": name, "band": None, "kind": "scene"})
    (out / "photos.json").write_text(json.dumps(items, indent=1) + "\n")


def _scene(size=(1024, 768), seed: int = 0):
    """A cluttered colour scene: a smooth gradient, random shapes, sensor noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    c0, c1 = rng.integers(40, 220, 3), rng.integers(40, 220, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    arr = (c0 * (1 - t) + c1 * t) * np.ones((1, w, 1))
    img = Image.fromarray(arr.astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(30):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        a, b = (int(v) for v in rng.integers(15, 120, 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x, y, x + a, y + b], fill=fill)
    noisy = np.asarray(img, np.float32) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _print_on(scene, logo, seed: int = 0, invert: bool = False):
    """``logo`` printed in perspective on a patch of ``scene`` (inverted: dark on light, as on a light shirt),
    slightly blurred as a camera would."""
    import cv2
    from PIL import Image, ImageFilter, ImageOps

    rng = np.random.default_rng(seed)
    if invert:
        logo = ImageOps.invert(logo)
    w, h = scene.size
    side = int(rng.integers(int(0.35 * min(w, h)), int(0.7 * min(w, h))))
    x0, y0 = int(rng.integers(20, w - side - 20)), int(rng.integers(20, h - side - 20))
    quad = np.float32([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]])
    quad += rng.normal(0, side * 0.06, quad.shape).astype(np.float32)  # a tilted patch
    lw, lh = logo.size
    H = cv2.getPerspectiveTransform(np.float32([[0, 0], [lw, 0], [lw, lh], [0, lh]]), quad)
    arr = np.asarray(scene).copy()
    warped = cv2.warpPerspective(np.asarray(logo), H, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((lh, lw), 255, np.uint8), H, (w, h), flags=cv2.INTER_NEAREST) > 0
    shade = rng.uniform(0.8, 1.0)
    arr[mask] = np.clip(warped[mask] * shade, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.8))
