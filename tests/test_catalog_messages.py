"""What add-band, add-album and the catalog commands tell people: counts of what was stored, tiny or blank logos
refused with the reason, and names with control characters that cannot break a line or drive the terminal."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image
from synth import photo_of, text_logo

from logoid.catalog import Catalog
from logoid.catalog.imagecheck import check_reference
from logoid.cli import cli
from logoid.core.errors import ImageError
from logoid.core.paths import Home

FAST = ["--model", "tiny-test", "--variants", "3"]


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def index_vectors(home) -> int:
    return json.loads((home / "index" / "logoid-index.json").read_text())["counts"]["vectors"]


# ---- exact counts ---------------------------------------------------------------------------------------
def test_add_band_counts_what_it_stored_and_names_the_duplicate(tmp_path, _isolated_home):
    first = tmp_path / "korn.png"
    text_logo("KORN", seed=3).save(first)
    run("add-band", "--name", "Korn", "--image", first)
    run("build-index", *FAST, "--no-names")
    before = index_vectors(_isolated_home)
    a, b, c = (tmp_path / f"{x}.png" for x in "abc")
    text_logo("SLAYER", seed=9).save(a)
    b.write_bytes(a.read_bytes())  # byte-identical to a
    text_logo("SLAYER", seed=10).save(c)
    res = run("add-band", "--name", "Slayer", "--image", a, "--image", b, "--image", c)
    assert res.stdout.strip() == "added band Slayer (id 2) with 2 image(s) (1 skipped); 6 vectors added to the index"
    assert res.stderr.strip() == f"warning: skipping {b}: same image as {a}: stored once"
    assert index_vectors(_isolated_home) == before + 6  # 2 images x 3 variants, what the message said
    shown = json.loads(run("catalog", "show", "Slayer", "--json").stdout)
    assert len(shown["images"]) == 2
    again = json.loads(run("add-band", "--name", "Slayer", "--image", a, "--json").stdout)
    assert (again["created"], again["images"], again["vectors_added"]) == (False, [], 0)
    assert again["skipped"] == [{"path": str(a), "reason": "already in the catalog for this band"}]
    assert index_vectors(_isolated_home) == before + 6


def test_a_path_given_twice_is_named_as_given_twice(tmp_path):
    logo = tmp_path / "korn.png"
    text_logo("KORN", seed=3).save(logo)
    res = run("add-band", "--name", "Korn", "--image", logo, "--image", tmp_path / "." / "korn.png")
    assert res.stdout.strip() == "added band Korn (id 1) with 1 image(s) (1 skipped); run `logoid build-index` next"
    assert res.stderr.strip() == f"warning: skipping {tmp_path / '.' / 'korn.png'}: given twice: stored once"


# ---- tiny and blank logos -----------------------------------------------------------------------------
def _tiny(p):
    Image.new("RGB", (1, 1), (200, 0, 0)).save(p)
    return "too small: 1x1 px, at least 16 px on each side"


def _line(p):
    Image.new("RGB", (400, 8), (0, 0, 0)).save(p)
    return "too small: 400x8 px, at least 16 px on each side"


def _transparent(p):
    Image.new("RGBA", (64, 64), (30, 30, 30, 0)).save(p)
    return "blank: one colour (#ffffff) everywhere, transparent or plain"


def _plain_jpeg(p):
    Image.new("RGB", (120, 80), (200, 20, 20)).save(p, quality=80)
    img = Image.open(p).convert("RGB")
    colour = "#" + "".join(f"{(lo + hi) // 2:02x}" for lo, hi in img.getextrema())
    return f"blank: one colour ({colour}) everywhere, transparent or plain"


@pytest.mark.parametrize("make", [_tiny, _line, _transparent, _plain_jpeg])
def test_tiny_or_blank_logo_is_refused_in_one_line_unless_allowed(tmp_path, make):
    p = tmp_path / ("logo.jpg" if make is _plain_jpeg else "logo.png")
    reason = make(p)
    res = run("add-band", "--name", "Void", "--image", p, ok=False)
    assert res.exit_code == 1
    assert res.stderr == f"error: {p}: {reason} (use another image, or keep it anyway with --allow-small)\n"
    assert json.loads(run("catalog", "list", "--json").stdout) == []  # nothing changed
    res = run("add-album", "--title", "Nothing", "--artist", "Void", "--image", p, ok=False)
    assert res.exit_code == 1 and reason in res.stderr
    out = json.loads(run("add-band", "--name", "Void", "--image", p, "--allow-small", "--json").stdout)
    assert len(out["images"]) == 1


def test_catalog_api_refuses_too_and_the_demo_logos_all_pass(tmp_path):
    from logoid.demo.icons import CALIBRATION_UNKNOWN_SLUGS, DEMO_SLUGS, UNKNOWN_SLUGS, render_icon

    tiny = tmp_path / "t.png"
    _tiny(tiny)
    with Catalog.open(Home(tmp_path / "h")) as cat:
        band = cat.add_band("Void")
        with pytest.raises(ImageError, match="too small: 1x1 px"):
            cat.add_image("band", band.id, tiny)
        assert cat.images() == []
        assert cat.add_image("band", band.id, tiny, allow_small=True).width == 1
    for slug in DEMO_SLUGS + UNKNOWN_SLUGS + CALIBRATION_UNKNOWN_SLUGS:
        check_reference(render_icon(slug), slug)  # no real logo of the demo trips the thresholds


# ---- control characters in names -----------------------------------------------------------------------
EVIL = "Evil\nTwin"
ESCAPES = "\x1b]0;pwned\x07\x1b[31mRed\u202eTxet"


def test_names_with_control_characters_are_escaped_for_people_and_exact_in_json(tmp_path):
    run("add-band", "--name", EVIL, "--genre", "black\x1b[2Jmetal")
    run("add-band", "--name", ESCAPES, "--country", "Nor\rway")
    listed = run("catalog", "list").stdout
    assert listed.splitlines() == ["1  Evil\\nTwin  black\\x1b[2Jmetal  0",
                                   "2  \\x1b]0;pwned\\x07\\x1b[31mRed\\u202eTxet  Nor\\rway  0", "2 bands"]
    assert [b["name"] for b in json.loads(run("catalog", "list", "--json").stdout)] == [EVIL, ESCAPES]
    shown = run("catalog", "show", "2").stdout
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "name: \\x1b]0;pwned\\x07\\x1b[31mRed\\u202eTxet" in shown.splitlines()
    assert json.loads(run("catalog", "show", "2", "--json").stdout)["name"] == ESCAPES
    res = run("catalog", "show", "no\x1b[31msuch", ok=False)
    assert res.exit_code == 1 and "\x1b" not in res.stderr and len(res.stderr.splitlines()) == 1
    assert run("remove-band", "1").stdout == "removed band Evil\\nTwin (id 1) and 0 image(s)\n"


def test_query_prints_an_escaped_name(tmp_path):
    logo = tmp_path / "korn.png"
    text_logo("KORN", seed=3).save(logo)
    run("add-band", "--name", "Korn\x1b[2J\nrm", "--image", logo)
    run("build-index", *FAST, "--no-names")
    photo = tmp_path / "photo.jpg"
    photo_of(text_logo("KORN", seed=3)).save(photo)
    out = run("query", photo, "--channels", "global,local", "--explain").stdout
    assert "\x1b" not in out and "Korn\\x1b[2J\\nrm" in out.splitlines()[0]
    assert json.loads(run("query", photo, "--channels", "global,local", "--json").stdout)["answer"] == "Korn\x1b[2J\nrm"
