"""Is a decoded image worth keeping as a reference? Refuse those with nothing to recognise, saying why.

A 1x1 pixel, a fully transparent PNG (flattened onto one plain colour by ``load_image``) or a single-colour
fill embeds like any other image and then matches every plain photo; SIFT finds no keypoints on it.
"""

from __future__ import annotations

from typing import cast

from PIL import Image

from logoid.core.errors import ImageError

#: Shortest side a reference may have. The embedder reads 224 px and the local features 400 px: under 16 px
#: a logo is blown up more than 14x and keeps no detail. Favicons (16 px) still pass; a 1-px line does not.
MIN_SIDE = 16
#: Largest spread (max - min, per RGB channel) of an image counted as one colour. A plain fill saved as JPEG
#: stays within a few levels; the least contrasted demo logo (mastodon) spreads over 150.
BLANK_SPREAD = 8

ALLOW_HINT = "use another image, or keep it anyway with --allow-small"


def check_reference(img: Image.Image, path) -> None:
    """Raise :class:`ImageError` naming ``path`` when ``img`` (decoded RGB) is too small or blank."""
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise ImageError(path, f"too small: {w}x{h} px, at least {MIN_SIDE} px on each side", ALLOW_HINT)
    lo_hi = cast("tuple[tuple[int, int], ...]", img.convert("RGB").getextrema())  # (min, max) per band of RGB
    if max(hi - lo for lo, hi in lo_hi) <= BLANK_SPREAD:
        colour = "#" + "".join(f"{(lo + hi) // 2:02x}" for lo, hi in lo_hi)
        raise ImageError(path, f"blank: one colour ({colour}) everywhere, transparent or plain", ALLOW_HINT)
