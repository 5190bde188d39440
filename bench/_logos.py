"""Distinct logo-like references for large-catalog benches: band-like names drawn in band-logo styles.

    python -m bench._logos generate bench/work/roster-logos --n 50000     # cached: a rerun skips what is written
    python -m bench._logos sheet docs/img/roster-logos.png --n 300        # a contact sheet to judge them by eye

``logo(name, seed)`` renders one name in a style the seed picks (plain, outlined, hollow, big end letters, stacked
words, a mirror image below, a bar through the name, spikes, drips, an arc, a simple-icons emblem beside or behind),
black on white or white on black, 300-800 px wide. Names come from the text bench's roster generator
(``bench.text.channel.generated_roster``) fed with the real names of ../shared/data, or a built-in word list
without it; they never repeat a real band's name. Fonts are every Latin font under /usr/share/fonts (``make
bench-fonts`` installs a set) and in matplotlib's package, sorted, so the choice depends only on the installed set;
with none, PIL's default font. These are distractors for the 180k-roster benchmark (issue 24): many distinct
references that compete for votes, not a stand-in for real logos.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench._common import DATA, read_manifest
from bench.text.channel import generated_roster, real_roster_names

FONT_DIRS = [Path("/usr/share/fonts")]
DEFAULT_FONT = "pil-default"
MARKER = ".complete"
PARAMS = "params.json"
MANIFEST = "manifest.csv"
VERSION = 1  # bump when a style changes what an existing (name, seed) renders
# Fonts whose letters are symbols or that cannot draw a word: matched against the file name.
_SKIP = ("dingbat", "d050000l", "symbol", "math", "initials", "stix", "cmex", "cmsy", "cmmi", "penguinattack",
         "lastresort")
# Words for the roster (one "name" the generator splits) when ../shared/data is absent (a fresh machine, the tests).
FALLBACK_NAME = (
    "Black Iron Grave Storm Winter Blood Night Frost Wolf Raven Crypt Throne Serpent Ash Doom Void Hammer Fire "
    "Shadow Thorn Eternal Dark Moon Steel Bone Cult Abyss Funeral Wrath Plague Torment Chaos Dawn Mist Howl Oath "
    "Rune Skull Temple Venom Witch Burial Coffin Dragon Eclipse Forest Ghost Hell Infernal Lunar Mountain Obscure "
    "Pagan Requiem Sorrow Tomb Unholy Vortex Warlord Spectral Ancient Cold Silent Northern Fallen Holy Sacred"
)


@dataclass(frozen=True)
class Plan:
    """Every choice for one logo, made from (name, seed) before drawing: what the manifest records."""

    name: str
    text: str        # the name as drawn (upper case, or as written)
    font: str        # font file, or "pil-default"
    layout: str      # line | big-ends | stacked
    # heavy (letters thickened), outline, hollow, mirror, bar, spikes, drips, arc, emblem-behind, emblem-beside
    effects: tuple
    emblem: str      # simple-icons slug, or ""
    inverted: bool   # white on black
    width: int       # output width in px
    geometry: int    # seed of the random geometry (spike places, drip lengths, ...)

    @property
    def style(self) -> str:
        return "+".join([self.layout, *self.effects])


# ---------------------------------------------------------------------------------------------------------- choices

def _font_ok(path: Path) -> bool:
    if any(s in path.name.lower() for s in _SKIP):
        return False
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return True
    try:
        cmap = TTFont(path, lazy=True, fontNumber=0).getBestCmap() or {}
    except Exception:  # noqa: BLE001 - a broken font file is skipped, not fatal
        return False
    return all(ord(c) in cmap for c in "AZaz09")


def _pypi_font_dirs() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) / "mpl-data" / "fonts" / "ttf" for p in spec.submodule_search_locations]


@functools.lru_cache(maxsize=4)
def _fonts_in(dirs: tuple[Path, ...]) -> tuple[str, ...]:
    found = {p for d in dirs if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf")}
    return tuple(str(p) for p in sorted(found) if _font_ok(p))


def fonts() -> tuple[str, ...]:
    """The usable font files, sorted (empty: PIL's default font is used)."""
    return _fonts_in(tuple(FONT_DIRS) + tuple(_pypi_font_dirs()))


@functools.lru_cache(maxsize=1)
def icon_slugs() -> tuple[str, ...]:
    """Every simple-icons slug of the installed pack, sorted (empty when the pack is missing)."""
    try:
        import simple_icons_pack
    except ImportError:
        return ()
    return tuple(sorted(n[3:].lower() for n in dir(simple_icons_pack) if n.startswith("SI_")))


def plan(name: str, seed: int = 0) -> Plan:
    """The style of ``name`` under ``seed``: deterministic, nothing drawn."""
    rng = random.Random(f"{VERSION}|{seed}|{name}")
    fs = fonts()
    font = rng.choice(fs) if fs else DEFAULT_FONT
    text = name.upper() if rng.random() < 0.55 else name
    words = name.split()
    # Long names stack more often: few real logos are ten times wider than tall.
    stack = 0 if len(words) < 2 else 6 if len(name) > 16 else 2
    layout = rng.choices(["line", "big-ends", "stacked"], weights=[6, 3, stack])[0]
    effects = ["heavy"] if rng.random() < 0.35 else []
    if rng.random() < 0.3:
        effects.append(rng.choice(["outline", "hollow"]))
    if rng.random() < 0.25:
        effects.append(rng.choice(["mirror", "bar"]))
    for fx, p in (("spikes", 0.3), ("drips", 0.2), ("arc", 0.25)):
        if rng.random() < p:
            effects.append(fx)
    slugs = icon_slugs()
    emblem = ""
    if slugs and rng.random() < 0.2:
        effects.append(rng.choice(["emblem-behind", "emblem-beside"]))
        emblem = rng.choice(slugs)
    return Plan(name, text, font, layout, tuple(effects), emblem, rng.random() < 0.5, rng.randrange(300, 801),
                rng.randrange(2**31))


# ---------------------------------------------------------------------------------------------------------- drawing

@functools.lru_cache(maxsize=256)
def _font(path: str, size: int):
    if path == DEFAULT_FONT:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


def _draw_lines(lines: list[list[tuple[str, int]]], font: str, strokes: tuple[int, ...], pad: int) -> list[np.ndarray]:
    """Draw lines of (text, size) runs, each line centred, once per stroke width: masks on one canvas."""
    metrics = []
    for runs in lines:
        asc = max(_font(font, s).getmetrics()[0] for _, s in runs)
        desc = max(_font(font, s).getmetrics()[1] for _, s in runs)
        width = sum(_font(font, s).getlength(t) for t, s in runs)
        metrics.append((asc, desc, width))
    s_max = max(strokes)
    w = int(max(m[2] for m in metrics)) + 2 * (pad + s_max)
    h = int(sum(m[0] + m[1] for m in metrics)) + 2 * (pad + s_max)
    masks = []
    for stroke in strokes:
        im = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(im)
        y = pad + s_max
        for runs, (asc, desc, width) in zip(lines, metrics, strict=True):
            x = (w - width) / 2
            for t, s in runs:
                d.text((x, y + asc), t, font=_font(font, s), fill=255, anchor="ls", stroke_width=stroke,
                       stroke_fill=255)
                x += _font(font, s).getlength(t)
            y += asc + desc
        masks.append(np.asarray(im) > 127)
    return masks


def _lines(p: Plan, size: int) -> list[list[tuple[str, int]]]:
    if p.layout == "stacked":
        words = p.text.split()
        cut = (len(words) + 1) // 2
        return [[(" ".join(words[:cut]), size)], [(" ".join(words[cut:]), int(size * 0.8))]]
    if p.layout == "big-ends" and len(p.text) > 2:
        big = int(size * 1.6)
        return [[(p.text[0], big), (p.text[1:-1], size), (p.text[-1], big)]]
    return [[(p.text, size)]]


def _profile(a: np.ndarray, bottom: bool) -> tuple[np.ndarray, np.ndarray]:
    """Columns with ink and, for each, its top (or bottom) ink row."""
    cols = np.flatnonzero(a.any(0))
    rows = a[:, cols]
    edge = a.shape[0] - 1 - np.argmax(rows[::-1], 0) if bottom else np.argmax(rows, 0)
    return cols, edge


def _spikes(im: Image.Image, a: np.ndarray, rng: random.Random, th: int) -> None:
    d = ImageDraw.Draw(im)
    for bottom in (False, True) if rng.random() < 0.6 else (False,):
        cols, edge = _profile(a, bottom)
        if not len(cols):
            return
        # Favour letter tops: places whose edge is near the line's extreme, as thorns grow from serifs.
        extreme = edge.max() if bottom else edge.min()
        near = cols[np.abs(edge - extreme) < th * 0.25]
        pool = near if len(near) > 3 else cols
        for _ in range(rng.randint(3, 3 + len(pool) // max(1, th // 2))):
            i = rng.randrange(len(pool))
            x = int(pool[i])
            y = int(edge[np.searchsorted(cols, x)])
            h = th * rng.uniform(0.25, 0.8) * (1 if bottom else -1)
            half = max(2, th * rng.uniform(0.04, 0.09))
            lean = th * rng.uniform(-0.25, 0.25)
            base = y - np.sign(h) * half * 2
            d.polygon([(x - half, base), (x + half, base), (x + lean, y + h)], fill=255)


def _drips(im: Image.Image, a: np.ndarray, rng: random.Random, th: int) -> None:
    d = ImageDraw.Draw(im)
    cols, edge = _profile(a, bottom=True)
    if not len(cols):
        return
    for _ in range(rng.randint(3, 8)):
        x = int(cols[rng.randrange(len(cols))])
        y = int(edge[np.searchsorted(cols, x)])
        half = max(2.0, th * rng.uniform(0.03, 0.08))
        length = th * rng.uniform(0.2, 1.0)
        d.polygon([(x - half * 1.6, y - half), (x + half * 1.6, y - half), (x + half, y + length),
                   (x - half, y + length)], fill=255)
        r = half * rng.uniform(1.2, 1.8)
        d.ellipse([x - r, y + length - r, x + r, y + length + r], fill=255)


def _arc(a: np.ndarray, rng: random.Random, th: int) -> np.ndarray:
    """Bend the mask along a parabola (columns shifted up or down: an arch or a smile)."""
    h, w = a.shape
    amp = int(th * rng.uniform(0.3, 0.8)) * rng.choice((1, -1))
    x = (np.arange(w) - w / 2) / (w / 2)
    shift = (amp * (1 - x**2)).astype(int)
    out = np.zeros((h + abs(amp), w), bool)
    rows = np.arange(h)[:, None] + (shift.max() - shift)[None, :]
    out[rows, np.arange(w)[None, :]] = a
    return out


def _bar(im: Image.Image, a: np.ndarray, rng: random.Random, th: int) -> None:
    """A bar through the name's middle (or under it), pointed at both ends and reaching past the letters."""
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    y = (rows[0] + rows[-1]) / 2 if rng.random() < 0.5 else rows[-1] + th * 0.12
    half = max(2.0, th * rng.uniform(0.04, 0.08))
    reach = th * rng.uniform(0.3, 1.0)
    x0, x1 = cols[0] - reach, cols[-1] + reach
    ImageDraw.Draw(im).polygon([(x0, y), (x0 + 3 * half, y - half), (x1 - 3 * half, y - half), (x1, y),
                                (x1 - 3 * half, y + half), (x0 + 3 * half, y + half)], fill=255)


def _icon_mask(slug: str, size: int) -> np.ndarray:
    from logoid.demo.icons import render_icon

    return np.asarray(render_icon(slug, size, colour="#000000", background="#ffffff", margin=0.0).convert("L")) < 128


def _paste(canvas: np.ndarray, part: np.ndarray, y: int, x: int) -> None:
    canvas[y:y + part.shape[0], x:x + part.shape[1]] |= part


def _dilate(a: np.ndarray, r: int) -> np.ndarray:
    out = a.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _emblem(a: np.ndarray, p: Plan, rng: random.Random, th: int) -> np.ndarray:
    rows = np.flatnonzero(a.any(1))
    span = rows[-1] - rows[0] + 1
    if "emblem-behind" in p.effects:
        side = int(max(span * 1.8, th * 2))
        icon = _icon_mask(p.emblem, side)
        h, w = max(a.shape[0], side), max(a.shape[1], side)
        out = np.zeros((h, w), bool)
        oy, ox = (h - a.shape[0]) // 2, (w - a.shape[1]) // 2
        _paste(out, icon, (h - side) // 2, (w - side) // 2)
        r = max(3, th // 12)
        knock = np.zeros((h + 2 * r, w + 2 * r), bool)
        _paste(knock, _dilate(np.pad(a, r), r), oy, ox)
        knock = knock[r:-r, r:-r]
        out &= ~knock  # a gap around the letters keeps them readable over the emblem
        _paste(out, a, oy, ox)
        return out
    side = int(span * rng.uniform(1.0, 1.4))
    icon = _icon_mask(p.emblem, side)
    gap = th // 4
    both = rng.random() < 0.5  # symmetric: the emblem and its mirror image on either side
    h = max(a.shape[0], side)
    out = np.zeros((h, a.shape[1] + (side + gap) * (2 if both else 1)), bool)
    mid = (rows[0] + rows[-1]) // 2 + (h - a.shape[0]) // 2
    _paste(out, icon, max(0, mid - side // 2), 0)
    _paste(out, a, (h - a.shape[0]) // 2, side + gap)
    if both:
        _paste(out, icon[:, ::-1], max(0, mid - side // 2), side + gap + a.shape[1] + gap)
    return out


def _crop(a: np.ndarray, margin: int) -> np.ndarray:
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    if not len(rows):
        return np.zeros((margin * 2 + 1, margin * 2 + 1), bool)
    a = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.pad(a, margin)


def render(p: Plan) -> Image.Image:
    """Draw a plan: an RGB image ``p.width`` px wide, black on white or white on black."""
    rng = random.Random(p.geometry)
    size = 96
    fx = set(p.effects)
    th = size  # the letter height everything else scales with
    b = size // 28 if "heavy" in fx else 0
    strokes = [b]
    if "outline" in fx:
        strokes += [b + max(2, size // 30), b + max(5, size // 12)]
    if "hollow" in fx:
        strokes += [b + max(3, size // 18)]
    masks = _draw_lines(_lines(p, size), p.font, tuple(strokes), pad=th)
    a = masks[0]
    if "outline" in fx:  # the letters, a gap, then a ring around them
        a = a | (masks[2] & ~masks[1])
    if "hollow" in fx:  # letters drawn as their outline only
        a = masks[-1] & ~a
    im = Image.fromarray(a)
    im = im.convert("L")
    if "bar" in fx:
        _bar(im, a, rng, th)
    if "spikes" in fx:
        _spikes(im, np.asarray(im) > 127, rng, th)
    if "drips" in fx:
        _drips(im, np.asarray(im) > 127, rng, th)
    a = np.asarray(im) > 127
    if "arc" in fx:
        a = _arc(a, rng, th)
    if "mirror" in fx:  # the name above its mirror image, as on a lake
        c = _crop(a, 0)
        a = np.vstack([c, np.zeros((th // 6, c.shape[1]), bool), c[::-1]])
    if p.emblem:
        a = _emblem(_crop(a, 0), p, rng, th)
    a = _crop(a, int(th * rng.uniform(0.15, 0.4)))
    ink = Image.fromarray((a * 255).astype(np.uint8))
    h = max(1, round(a.shape[0] * p.width / a.shape[1]))
    ink = ink.resize((p.width, h), Image.LANCZOS)
    if not p.inverted:
        ink = Image.eval(ink, lambda v: 255 - v)
    return ink.convert("RGB")


def logo(name: str, seed: int = 0) -> Image.Image:
    """``name`` drawn as a band-like logo in the style ``seed`` picks (same arguments, same pixels)."""
    return render(plan(name, seed))


# ---------------------------------------------------------------------------------------------------------- catalogs

def roster_names(n: int, seed: int = 0, data: Path = DATA) -> list[str]:
    """``n`` distinct band-like names, none a real band's (the text bench's roster generator); prefix-stable in n."""
    real = [r["band"] for r in read_manifest(data / "band-logos")] if (data / "band-logos").is_dir() else []
    real += real_roster_names(data)
    return generated_roster(real or [FALLBACK_NAME], n, seed)


def _params(seed: int, data: Path) -> dict:
    src = "shared-data" if (data / "band-logos").is_dir() else "builtin-words"
    fs = fonts()
    return {"version": VERSION, "seed": seed, "names": src, "fonts": len(fs),
            "fonts_sha1": hashlib.sha1("\n".join(fs).encode()).hexdigest(), "icons": len(icon_slugs())}


def generate(n: int, out_dir: Path, seed: int = 0, data: Path = DATA, progress=None) -> list[dict]:
    """Write ``n`` distinct logos as ``out_dir/NNNNNN.png`` plus ``manifest.csv`` (id, name, file, font, style,
    polarity); cached: files already there are kept, and a finished folder (its marker) is not touched again.

    A folder made with other fonts, names or seed is refused: its files would not match the manifest.
    """
    out_dir = Path(out_dir)
    params = _params(seed, data)
    out_dir.mkdir(parents=True, exist_ok=True)
    pfile = out_dir / PARAMS
    if pfile.exists() and json.loads(pfile.read_text()) != params:
        raise ValueError(f"{out_dir} holds logos made with other settings ({pfile}); use another folder")
    pfile.write_text(json.dumps(params, indent=2))
    marker = out_dir / MARKER
    if marker.exists() and int(marker.read_text() or 0) >= n:
        with open(out_dir / MANIFEST, newline="") as f:
            return list(csv.DictReader(f))[:n]
    marker.unlink(missing_ok=True)
    from logoid.core.atomic import atomic_path

    rows = []
    for i, name in enumerate(roster_names(n, seed, data)):
        p = plan(name, seed)
        path = out_dir / f"{i:06d}.png"
        if not path.exists():
            with atomic_path(path, suffix=".png") as tmp:
                # Grey PNGs (the pixels are grey anyway): half the bytes of RGB, ~17 KB a logo.
                render(p).convert("L").save(tmp, format="PNG", compress_level=1)
        rows.append({"id": f"{i:06d}", "name": name, "file": path.name, "font": p.font, "style": p.style,
                     "polarity": "white-on-black" if p.inverted else "black-on-white"})
        if progress:
            progress(i + 1, n)
    with atomic_path(out_dir / MANIFEST, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["id"])
        w.writeheader()
        w.writerows(rows)
    marker.write_text(str(n))
    return rows


def contact_sheet(n: int = 300, seed: int = 0, cols: int = 15, tile: tuple[int, int] = (180, 90),
                  data: Path = DATA) -> Image.Image:
    """``n`` logos in a grid, each fitted to a tile of its own background colour, on a grey ground."""
    gap = 4
    rows = -(-n // cols)
    sheet = Image.new("L", (cols * (tile[0] + gap) + gap, rows * (tile[1] + gap) + gap), 128)
    for i, name in enumerate(roster_names(n, seed, data)):
        im = logo(name, seed).convert("L")
        bg = im.getpixel((0, 0))
        im.thumbnail((tile[0] - 6, tile[1] - 6), Image.LANCZOS)
        cell = Image.new("L", tile, bg)
        cell.paste(im, ((tile[0] - im.width) // 2, (tile[1] - im.height) // 2))
        sheet.paste(cell, (gap + (i % cols) * (tile[0] + gap), gap + (i // cols) * (tile[1] + gap)))
    return sheet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write N logos and a manifest into a folder (cached)")
    g.add_argument("out", type=Path)
    s = sub.add_parser("sheet", help="a contact sheet PNG of N logos")
    s.add_argument("out", type=Path)
    for p in (g, s):
        p.add_argument("--n", type=int, default=300)
        p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t = time.perf_counter()
    if args.cmd == "generate":
        from tqdm import tqdm

        bar = tqdm(total=args.n, unit="logo")
        generate(args.n, args.out, args.seed, progress=lambda i, n: bar.update(i - bar.n))
        bar.close()
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # 16 grey levels: the antialiased edges survive and the PNG stays small.
        contact_sheet(args.n, args.seed).quantize(16, dither=Image.Dither.NONE).save(args.out, optimize=True)
    dt = time.perf_counter() - t
    each = 1000 * dt / max(1, args.n)
    print(f"{args.n} logos in {dt:.1f} s ({each:.1f} ms each, {len(fonts())} fonts) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
