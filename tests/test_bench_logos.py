"""The roster-logo generator (bench/_logos.py): deterministic, distinct, both polarities, cached, font fallback."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from bench import _logos

NO_DATA = Path("/nonexistent-shared-data")  # the built-in word list, as on a fresh machine


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def no_fonts(tmp_path, monkeypatch):
    """No font package installed: the generator falls back to PIL's default font."""
    monkeypatch.setattr(_logos, "FONT_DIRS", [tmp_path / "no-fonts"])
    monkeypatch.setattr(_logos, "_pypi_font_dirs", lambda: [])
    _logos._fonts_in.cache_clear()
    yield
    _logos._fonts_in.cache_clear()


def test_same_name_and_seed_give_identical_bytes():
    a, b = _logos.logo("Grave Winter", 3), _logos.logo("Grave Winter", 3)
    assert _png(a) == _png(b)
    assert _logos.plan("Grave Winter", 3) == _logos.plan("Grave Winter", 3)


def test_different_names_give_different_images():
    names = _logos.roster_names(12, 0, NO_DATA)
    assert len(set(names)) == 12
    assert len({_png(_logos.logo(n, 0)) for n in names}) == 12


def test_roster_names_are_prefix_stable_and_come_from_the_text_bench():
    from bench.text.channel import generated_roster

    assert _logos.roster_names(5, 1, NO_DATA) == _logos.roster_names(9, 1, NO_DATA)[:5]
    assert _logos.roster_names(5, 1, NO_DATA) == generated_roster([_logos.FALLBACK_NAME], 5, 1)


def test_both_polarities_rgb_and_logo_sizes():
    seen = set()
    for seed in range(12):
        p = _logos.plan("Iron Throne", seed)
        im = _logos.render(p)
        arr = np.asarray(im)
        assert im.mode == "RGB" and im.width == p.width and 300 <= im.width <= 800
        corner = int(arr[0, 0, 0])
        assert corner == (0 if p.inverted else 255)  # the background is the polarity's
        assert (arr != corner).any()  # something is drawn
        seen.add(p.inverted)
    assert seen == {True, False}


def test_every_style_is_drawn(no_fonts):
    # Force each effect and layout once: none raises and each changes the picture.
    base = _logos.plan("Black Raven Oath", 0)
    plain = _logos.Plan(base.name, base.text, base.font, "line", (), "", False, 400, 7)
    ref = _png(_logos.render(plain))
    slug = _logos.icon_slugs()[0] if _logos.icon_slugs() else ""
    variants = [("big-ends", ()), ("stacked", ())] + [("line", (fx,)) for fx in
                                                       ("heavy", "outline", "hollow", "mirror", "bar", "spikes",
                                                        "drips", "arc")]
    if slug:
        variants += [("line", ("emblem-behind",)), ("line", ("emblem-beside",))]
    for layout, fx in variants:
        p = _logos.Plan(base.name, base.text, base.font, layout, fx, slug if fx and "emblem" in fx[0] else "",
                        False, 400, 7)
        assert _png(_logos.render(p)) != ref, (layout, fx)


def test_default_font_when_no_font_package(no_fonts):
    assert _logos.fonts() == ()
    p = _logos.plan("Frost Hammer", 0)
    assert p.font == _logos.DEFAULT_FONT
    assert _png(_logos.logo("Frost Hammer", 0)) == _png(_logos.logo("Frost Hammer", 0))


def test_generate_writes_distinct_files_and_a_complete_manifest(tmp_path, no_fonts):
    out = tmp_path / "logos"
    rows = _logos.generate(6, out, seed=2, data=NO_DATA)
    with open(out / _logos.MANIFEST, newline="") as f:
        listed = list(csv.DictReader(f))
    assert listed == rows
    assert [r["file"] for r in rows] == [f"{i:06d}.png" for i in range(6)]
    assert {r["name"] for r in rows} == set(_logos.roster_names(6, 2, NO_DATA))
    for r in rows:
        p = _logos.plan(r["name"], 2)
        assert (r["font"], r["style"]) == (p.font, p.style)
        assert r["polarity"] == ("white-on-black" if p.inverted else "black-on-white")
    assert len({(out / r["file"]).read_bytes() for r in rows}) == 6
    assert (out / _logos.MARKER).read_text() == "6"


def test_generate_is_cached_and_resumes(tmp_path, no_fonts, monkeypatch):
    out = tmp_path / "logos"
    _logos.generate(4, out, data=NO_DATA)
    drawn = []
    real_render = _logos.render
    monkeypatch.setattr(_logos, "render", lambda p: drawn.append(p.name) or real_render(p))
    _logos.generate(4, out, data=NO_DATA)
    assert drawn == []  # finished: nothing drawn again
    (out / "000002.png").unlink()
    (out / _logos.MARKER).unlink()  # as if killed before the end
    _logos.generate(5, out, data=NO_DATA)
    names = _logos.roster_names(5, 0, NO_DATA)
    assert drawn == [names[2], names[4]]  # only what was missing
    assert (out / _logos.MARKER).read_text() == "5"


def test_generate_refuses_a_folder_made_with_other_settings(tmp_path, no_fonts):
    out = tmp_path / "logos"
    _logos.generate(2, out, seed=0, data=NO_DATA)
    with pytest.raises(ValueError, match="other settings"):
        _logos.generate(2, out, seed=1, data=NO_DATA)


def test_contact_sheet_grid(no_fonts):
    sheet = _logos.contact_sheet(7, cols=3, tile=(60, 30), data=NO_DATA)
    assert sheet.size == (3 * 64 + 4, 3 * 34 + 4)
    assert sheet.getpixel((0, 0)) == 128
