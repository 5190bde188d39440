"""The built-in demo: real CC0 brand icons from ``simple-icons-pack``, rendered with ``resvg_py``.

The demo catalog holds 24 icons with recognisable, distinct shapes, each as a "band" (genre
"demo", external id ``si:<slug>``). :func:`make_demo_photo` prints a logo onto simulated fabric
and photographs it (warp, folds, light, noise, JPEG); :func:`make_unknown_photo` does the same
with an icon that is not in the catalog, to show rejection. The photos are simulations.
"""

from __future__ import annotations

from .icons import DEMO_SLUGS, UNKNOWN_SLUGS, build_demo_catalog, calibration_manifest, demo_assets, render_icon
from .photo import make_demo_photo, make_unknown_photo

__all__ = [
    "DEMO_SLUGS", "UNKNOWN_SLUGS", "build_demo_catalog", "calibration_manifest", "demo_assets", "make_demo_photo", "make_unknown_photo",
    "render_icon",
]
