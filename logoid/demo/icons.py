"""Demo icons: pick, render and enrol simple-icons logos."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from PIL import Image

from logoid.catalog import Band, Catalog
from logoid.core.errors import LogoidError

# Recognisable icons with clearly different shapes: circles, letters, animals, wordmarks, colour and black.
DEMO_SLUGS = (
    "spotify", "apple", "python", "github", "docker", "firefox", "redhat", "ubuntu",
    "android", "mastodon", "debian", "soundcloud", "lastdotfm", "youtube", "steam", "playstation",
    "adidas", "starbucks", "mcdonalds", "shell", "bmw", "atari", "discord", "reddit",
)
# Never in the demo catalog: the "unknown" photos for the rejection demo.
UNKNOWN_SLUGS = ("archlinux", "rust", "volkswagen", "raspberrypi")
# The logo the demo photo shows (a known one).
DEMO_PHOTO_SLUG = "starbucks"
#: Icons outside the demo catalog that calibration sees as unknowns (never the demo's own unknown photo).
CALIBRATION_UNKNOWN_SLUGS = ("rust", "volkswagen", "raspberrypi", "git", "linux", "nvidia", "intel", "netflix",
                             "twitch", "dropbox", "paypal", "visa", "nike", "audi", "ferrari", "gitlab", "kubernetes",
                             "nodedotjs", "vlcmediaplayer", "wikipedia")


def _icon(slug: str):
    import simple_icons_pack

    icon = simple_icons_pack.get_icon(slug)
    if icon is None:
        raise LogoidError(f"simple-icons has no icon {slug!r}", "pick another slug; the installed pack may be older")
    return icon


def icon_title(slug: str) -> str:
    """The brand name of an icon (e.g. ``"lastdotfm"`` → ``"Last.fm"``)."""
    return _icon(slug).title


def render_icon(slug: str, size: int = 384, colour: str | None = None, background: str = "#ffffff",
                margin: float = 0.12) -> Image.Image:
    """Render icon ``slug`` as an RGB square of ``size`` px, in its brand colour (or ``colour``) on ``background``."""
    import resvg_py

    icon = _icon(slug)
    fill = colour or f"#{icon.hex}"
    m = re.search(r'viewBox="([-\d.\s]+)"', icon.svg)
    x, y, w, h = (float(v) for v in m.group(1).split()) if m else (0.0, 0.0, 24.0, 24.0)
    pad = margin * max(w, h)
    side = max(w, h) + 2 * pad
    # Square viewBox with a margin, centred on the artwork; fill on the root so every path takes it.
    box = f"{x - pad - (side - 2 * pad - w) / 2} {y - pad - (side - 2 * pad - h) / 2} {side} {side}"
    svg = re.sub(r"<svg\b", f'<svg fill="{fill}"', icon.svg, count=1)
    svg = re.sub(r'viewBox="[^"]*"', f'viewBox="{box}"', svg, count=1) if m else svg
    png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, background=background)
    return Image.open(io.BytesIO(bytes(png))).convert("RGB")


def render_to(slug: str, folder: Path, size: int = 384) -> Path:
    """``folder/<slug>.png``: the icon rendered at ``size`` px (kept: rendered once, written atomically)."""
    path = folder / f"{slug}.png"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        from logoid.core.atomic import atomic_path

        with atomic_path(path, suffix=".png") as tmp:
            render_icon(slug, size).save(tmp, format="PNG")
    return path


def build_demo_catalog(cat: Catalog, workdir: str | os.PathLike, n: int = 24) -> list[Band]:
    """Enrol the first ``n`` demo icons as bands (genre "demo", external id ``si:<slug>``) with one image each."""
    folder = Path(workdir) / "logos"
    bands = []
    with cat.transaction():
        for slug in DEMO_SLUGS[:n]:
            band = cat.add_band(icon_title(slug), genre="demo", external_ids={"si": slug})
            cat.add_image("band", band.id, render_to(slug, folder), kind="logo")
            bands.append(cat.get_band(band.id))
    return bands


def demo_assets(workdir: str | os.PathLike) -> dict:
    """Render the demo files into ``workdir`` (cached): logos, a photo of a known logo and one of an unknown logo.

    Returns ``{"workdir", "logos_dir", "logos": {slug: path}, "known_photo", "known_slug", "known_name",
    "unknown_photo", "unknown_slug", "unknown_name"}``.
    """
    from .photo import make_demo_photo

    workdir = Path(workdir)
    logos_dir = workdir / "logos"
    logos = {slug: render_to(slug, logos_dir) for slug in DEMO_SLUGS}
    unknown_slug = UNKNOWN_SLUGS[0]
    known_photo = workdir / f"photo_{DEMO_PHOTO_SLUG}.jpg"
    unknown_photo = workdir / f"photo_unknown_{unknown_slug}.jpg"
    if not known_photo.exists():
        make_demo_photo(render_icon(DEMO_PHOTO_SLUG), known_photo, seed=1)
    if not unknown_photo.exists():
        make_demo_photo(render_icon(unknown_slug), unknown_photo, seed=2)
    return {"workdir": workdir, "logos_dir": logos_dir, "logos": logos,
            "known_photo": known_photo, "known_slug": DEMO_PHOTO_SLUG, "known_name": icon_title(DEMO_PHOTO_SLUG),
            "unknown_photo": unknown_photo, "unknown_slug": unknown_slug, "unknown_name": icon_title(unknown_slug)}


def calibration_manifest(workdir: str | os.PathLike, *, per_known: int = 1, n_known: int = 24) -> Path:
    """Simulated calibration photos and their manifest (``photo,label``): known demo icons and unknown ones.

    Uses other seeds than the demo photos, and never the demo's own unknown icon, so the demo's answers
    are not scored on photos the calibration saw.
    """
    from .photo import make_demo_photo

    workdir = Path(workdir) / "calibration"
    workdir.mkdir(parents=True, exist_ok=True)
    rows = ["photo,label"]
    for i, slug in enumerate(DEMO_SLUGS[:n_known]):
        for j in range(per_known):
            p = workdir / f"{slug}-{j}.jpg"
            if not p.exists():
                make_demo_photo(render_icon(slug), p, seed=100 + 7 * i + j)
            rows.append(f"{p.name},si:{slug}")
    for i, slug in enumerate(CALIBRATION_UNKNOWN_SLUGS):
        p = workdir / f"unknown-{slug}.jpg"
        if not p.exists():
            make_demo_photo(render_icon(slug), p, seed=200 + i)
        rows.append(f"{p.name},unknown")
    manifest = workdir / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest
