"""Contact sheets: look at the variants before trusting them (``logoid augment preview``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from logoid.core.atomic import atomic_path
from logoid.core.errors import ConfigError
from logoid.core.imageio import file_hash, is_black_and_white, load_image

from .config import AugmentConfig
from .variants import make_variants


def contact_sheet(images: Sequence[Image.Image], cols: int = 5, cell: int = 160,
                  labels: Sequence[str] | None = None) -> Image.Image:
    """A grid of ``images`` fitted into ``cell``-pixel squares on mid grey, with optional labels."""
    if not images:
        raise ConfigError("no images for the contact sheet", "pass at least one image")
    if labels is not None and len(labels) != len(images):
        raise ConfigError(f"{len(labels)} labels for {len(images)} images", "give one label per image")
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    pad, label_h = 4, 14 if labels else 0
    sheet = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + pad + label_h) + pad), (128, 128, 128))
    draw = ImageDraw.Draw(sheet)
    for i, img in enumerate(images):
        thumb = img.convert("RGB")
        thumb.thumbnail((cell, cell))
        x = pad + (i % cols) * (cell + pad)
        y = pad + (i // cols) * (cell + pad + label_h)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        if labels:
            draw.text((x + 2, y + cell + 1), str(labels[i])[: cell // 6], fill=(255, 255, 255))
    return sheet


def preview(path: str | os.PathLike, cfg: AugmentConfig | None = None, out_path: str | os.PathLike = "sheet.png",
            cols: int = 5, cell: int = 160) -> Path:
    """Write a contact sheet of the variants of the image at ``path`` (as the index would make them)."""
    cfg = cfg or AugmentConfig()
    img = load_image(path)
    scheme = "bw" if is_black_and_white(img) else "color"
    variants = make_variants(img, scheme, cfg, key=file_hash(path))
    labels = [f"{i} {'original' if i == 0 else scheme}" for i in range(len(variants))]
    sheet = contact_sheet(variants, cols=cols, cell=cell, labels=labels)
    out = Path(out_path)
    with atomic_path(out, suffix=out.suffix or ".png") as tmp:
        sheet.save(tmp, format="PNG" if out.suffix.lower() not in (".jpg", ".jpeg") else "JPEG")
    return out
