"""The reference catalogs of the local-channel scale benches: threadless-dev designs, simple-icons brand logos as
real distractors, and synthetic references (noisy joins of icons) beyond them."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

from bench._common import WORK
from bench.local import sweep
from logoid.engine.local import FeatureCache, Features
from logoid.identify.match import LocalConfig

ICON_DIR = WORK / "icons"
ICON_ID0 = 1_000_000  # image ids of distractors (threadless ids are < 10k)


def icon_slugs(n: int, seed: int = 0) -> list[str]:
    """``n`` simple-icons slugs in a seeded order (the first n of a larger draw are the same icons)."""
    import simple_icons_pack as si

    slugs = sorted(getattr(si, a).slug for a in dir(si) if a.startswith("SI_"))
    random.Random(seed).shuffle(slugs)
    return slugs[:n]


def icon_features(slugs: list[str], cfg: LocalConfig, progress=None) -> list[tuple[int, list[Features]]]:
    from logoid.core.imageio import file_hash, load_image
    from logoid.demo.icons import render_to

    cache = FeatureCache(sweep.CACHE / "refs")
    out = []
    it = progress(list(enumerate(slugs))) if progress else enumerate(slugs)
    for i, slug in it:
        try:
            path = render_to(slug, ICON_DIR)
        except Exception as e:  # noqa: BLE001 - an icon resvg cannot render is skipped and counted
            print(f"skipping icon {slug}: {e}", file=sys.stderr)
            continue
        feats = cache.get_reference(file_hash(path), lambda p=path: load_image(p), cfg.extract)
        out.append((ICON_ID0 + i, feats[: 2 if cfg.extract.enrol_inverted else 1]))
    return out


SYNTH_ID0 = 2_000_000  # image ids of synthetic references (noisy copies of icons)
MAX_REAL_ICONS = 3000  # icons whose features the distractor run cached


def catalog_items(data: Path, rows: list[dict], cfg: LocalConfig, n_refs: int, progress=None
                  ) -> tuple[list[tuple[int, list[Features]]], int]:
    """The REAL references of an ``n_refs`` catalog and how many synthetic ones complete it.

    Real: the 276 threadless designs, then simple-icons (up to 3,000). The rest (``n_synth``) are noisy
    copies of the icons, made by :func:`synthetic_items`; the designs never get copies, so their
    ratio test sees only distinct images.
    """
    designs = sweep.build_refs_items(data, rows, cfg)
    icons = icon_features(icon_slugs(MAX_REAL_ICONS if n_refs > len(designs) + MAX_REAL_ICONS
                                     else n_refs - len(designs) + 40), cfg, progress)
    icons = icons[: max(0, n_refs - len(designs))]
    return designs + icons, max(0, n_refs - len(designs) - len(icons))


def synthetic_items(sources: list[tuple[int, list[Features]]], n: int, sigma: float, seed: int = 0, start: int = 0,
                    merge: int = 1):
    """``n`` synthetic references. Copy j joins ``merge`` icons (``sources[(j·merge + t) % len]``: their keypoints
    side by side, the largest size), every descriptor moved by Gaussian noise (per dimension ``sigma``),
    clipped at 0 and L2-normalised again (RootSIFT stays non-negative, unit norm). Icons have ~60 keypoints
    a variant, designs ~660: joining several gives a synthetic catalog the descriptor count of a real one.
    Yields ``(SYNTH_ID0 + j, [normal, inverted])`` lazily for ``start <= j < n`` (copy j is the same whatever
    ``start``)."""
    for j in range(start, n):
        parts = [sources[(j * merge + t) % len(sources)][1] for t in range(merge)]
        rng = np.random.default_rng([seed, j])
        out = []
        for v in range(min(len(p) for p in parts)):
            fs = [p[v] for p in parts]
            desc = np.concatenate([f.desc for f in fs])
            d = np.maximum(desc + rng.normal(0, sigma, desc.shape).astype(np.float32), 0)
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            size = (max(f.size[0] for f in fs), max(f.size[1] for f in fs))
            out.append(Features(np.concatenate([f.xy for f in fs]), d.astype(np.float32), size, fs[0].scale))
        yield SYNTH_ID0 + j, out
