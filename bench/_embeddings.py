"""Synthetic 512-d embeddings spread like real ones, regenerated from a seed (never stored): shared by the scale
bench (bench/scale/structures.py) and the roster's whole-query bench (bench/local/roster_e2e.py).

Centres lie in a cone (a shared mean direction plus a power-law spectrum in a random rotation), so between-centre
cosine is 0.55 +- 0.09, like real embeddings' 0.59 +- 0.17 (the default model on band logos, measured once);
isotropic view noise puts two views of a centre at cosine ~0.85.
"""

from __future__ import annotations

import numpy as np

DIM, VIEWS = 512, 20
CONE, ALPHA, NOISE = 1.1, 1.0, 0.42  # mean-direction weight, spectrum decay, view noise (cos ~ 1/(1+NOISE^2))


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def centres(n_centres: int, seed: int = 0) -> np.ndarray:
    """The first ``n_centres`` of the fixed 180k (a prefix, so every size shares its centres)."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    mean = rng.standard_normal(DIM)
    mean /= np.linalg.norm(mean)
    lam = np.arange(1, DIM + 1, dtype=np.float64) ** -ALPHA
    lam /= lam.sum()
    out = np.empty((n_centres, DIM), np.float32)
    for s in range(0, n_centres, 16384):
        g = np.random.default_rng([seed, 1, s]).standard_normal((min(16384, n_centres - s), DIM)) * np.sqrt(lam)
        out[s:s + len(g)] = unit(CONE * mean + g @ rot.T)
    return out


def views(cent: np.ndarray, first: int, stop: int, seed: int = 0, salt: int = 2, noise: float = NOISE) -> np.ndarray:
    """The 20 views of centres [first, stop), row j*20+v = view v of centre j."""
    rng = np.random.default_rng([seed, salt, first])
    base = np.repeat(cent[first:stop], VIEWS, axis=0)
    return unit(base + rng.standard_normal(base.shape, dtype=np.float32) * (noise / np.sqrt(DIM)))


