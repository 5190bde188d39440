"""TextReader on generated images (real RapidOCR models from the wheel; a few seconds) and its degraded mode."""

from __future__ import annotations

import builtins
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from logoid.core.errors import ConfigError
from logoid.engine.ocr import OcrConfig, TextReader
from logoid.index.names import NameIndex

pytest.importorskip("rapidocr_onnxruntime")

_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for p in _FONT_CANDIDATES:
        if Path(p).exists():
            return ImageFont.truetype(p, size)
    return ImageFont.load_default(size=size)


def _cluttered(size=(900, 600), seed=0) -> Image.Image:
    """A busy background: colour gradient, noise, random lines and circles (no letters)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(40, 200, w)[None, :, None] * np.array([1.0, 0.7, 0.4])
    arr = np.broadcast_to(base, (h, w, 3)) + rng.normal(0, 12, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(25):
        x0, y0 = (int(v) for v in rng.integers(0, [w, h]))
        x1, y1 = x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.line([x0, y0, x1, y1], fill=col, width=3)
        else:
            d.ellipse([x0, y0, x1, y1], outline=col, width=3)
    return img


def _with_text(img: Image.Image, text: str, xy, size: int, fill, bg=None) -> Image.Image:
    img = img.copy()
    d = ImageDraw.Draw(img)
    font = _font(size)
    if bg is not None:
        x0, y0, x1, y1 = d.textbbox(xy, text, font=font)
        d.rectangle([x0 - 20, y0 - 20, x1 + 20, y1 + 20], fill=bg)
    d.text(xy, text, font=font, fill=fill)
    return img


@pytest.fixture(scope="module")
def reader() -> TextReader:
    r = TextReader()
    if not r.available:
        pytest.skip("RapidOCR engine did not start here")
    return r


@pytest.fixture(scope="module")
def names() -> NameIndex:
    return NameIndex([("band:1", "Nightwish"), ("band:2", "Nightwash"), ("band:3", "Slayer"), ("band:4", "The Cure")])


def test_reads_band_name_on_clutter_and_matches(reader, names):
    img = _with_text(_cluttered(), "NIGHTWISH", (120, 240), 90, fill=(255, 255, 255), bg=(10, 10, 10))
    lines = reader.read(img)
    assert any("NIGHTWISH" in ln.text.upper().replace(" ", "") for ln in lines), [ln.text for ln in lines]
    ms = names.match(lines)
    assert ms[0].entity_key == "band:1"
    assert ms[0].similarity >= 0.9
    # The look-alike name comes second, clearly behind.
    assert all(m.similarity <= ms[0].similarity - 0.08 for m in ms[1:])
    # Boxes are in the original image's pixels, around where the text was drawn.
    hit = next(ln for ln in lines if "NIGHT" in ln.text.upper())
    assert hit.box.shape == (4, 2)
    cx, cy = hit.box.mean(0)
    assert 150 < cx < 750 and 220 < cy < 360


def test_no_text_image_matches_nothing_confidently(reader, names):
    lines = reader.read(_cluttered(seed=3))
    ms = names.match(lines)
    assert not ms or ms[0].similarity < 0.8


def test_region_crop_reads_small_text_and_maps_box_back(names):
    # Small text in a big photo: a whole-photo pass at a low working size cannot see it; the full-resolution
    # region crop can (and its box must come back in the photo's coordinates).
    reader = TextReader(OcrConfig(work_side=480))
    big = Image.new("RGB", (3000, 2000), (235, 235, 225))
    img = _with_text(big, "SLAYER", (2000, 1500), 20, fill=(20, 20, 20))
    region = [[1985, 1495], [2100, 1495], [2100, 1525], [1985, 1525]]
    assert not any("SLAYER" in ln.text.upper() for ln in reader.read(img))  # so the region pass is what reads it
    lines = reader.read(img, regions=[region])
    hits = [ln for ln in lines if "SLAYER" in ln.text.upper()]
    assert hits, [ln.text for ln in lines]
    cx, cy = hits[0].box.mean(0)
    assert 1985 <= cx <= 2100 and 1495 <= cy <= 1525
    assert names.match(lines)[0].entity_key == "band:3"


def test_unavailable_engine_degrades_with_one_warning(monkeypatch):
    real_import = builtins.__import__

    def fail(name, *a, **k):
        if name.startswith("rapidocr_onnxruntime"):
            raise ImportError("no rapidocr here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fail)
    r = TextReader()
    img = Image.new("RGB", (64, 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert r.read(img) == []
        assert r.read(img, regions=[[[0, 0], [10, 0], [10, 10]]]) == []
    assert r.available is False
    assert len([w for w in caught if "text reading disabled" in str(w.message)]) == 1


def test_config_roundtrip_and_validation():
    c = OcrConfig(work_side=1280, try_inverted=False)
    assert OcrConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError):
        OcrConfig(min_side=2000, work_side=960)
    with pytest.raises(ConfigError):
        OcrConfig.from_dict({"nope": 1})


# ---- the text channel inside the identify step ---------------------------------------------------------------------

class _Catalog:
    def __init__(self, names: dict[str, str]):
        self.names = names

    def entity_name(self, etype, eid):
        return self.names[f"{etype}:{eid}"]

    def entity_meta(self, etype, eid):
        return {}


def _name_only_identifier(reader, pairs):
    """An identifier whose catalog has names only (no images: no vectors, no descriptors)."""
    from types import SimpleNamespace

    from logoid.identify.pipeline import Identifier, IdentifyConfig

    # no home: no album models to add (the text channel is what these tests are about)
    ident = Identifier(home=None, catalog=_Catalog(dict(pairs)), config=IdentifyConfig(albums=False))
    ident._store = SimpleNamespace(meta={}, names=NameIndex(pairs), vectors=None, descriptors=None)
    ident._reader = reader
    return ident


NAME_ONLY = [("band:1", "Nightwish"), ("band:2", "Nightwash"), ("band:3", "Slayer"), ("band:4", "The Cure")]


def test_name_only_entry_answered_by_text_on_clutter_and_lookalike_does_not_steal_it(reader):
    # A band name in a common font printed straight onto a busy background (no patch behind it).
    img = _with_text(_cluttered(seed=5), "NIGHTWISH", (110, 250), 96, fill=(250, 250, 250))
    ident = _name_only_identifier(reader, NAME_ONLY)
    ans = ident.identify(img)
    assert ans.accepted and ans.best.name == "Nightwish", ans.read
    assert ans.best.channels == ["text"]
    assert any("NIGHTWISH" in r["text"].upper().replace(" ", "") for r in ans.read)
    # The look-alike (one letter off) is a candidate too, but clearly behind.
    other = next(c for c in ans.candidates if c.name == "Nightwash")
    assert other.features["text_sim"] <= ans.best.features["text_sim"] - 0.08
    assert other.score <= ans.best.score - 0.1


def test_image_without_text_adds_no_candidate(reader):
    ident = _name_only_identifier(reader, NAME_ONLY)
    ev = ident.collect(_cluttered(seed=3))
    assert ev.cands == {}
    ans = ident.decide(ev)
    assert not ans.accepted and ans.best is None


def test_failing_ocr_degrades_to_the_other_channels_with_a_warning(reader):
    class Broken:
        def read(self, img, regions=None):
            raise RuntimeError("onnxruntime session crashed")

    ident = _name_only_identifier(reader, NAME_ONLY)
    ident._reader = Broken()
    img = _with_text(_cluttered(seed=5), "NIGHTWISH", (110, 250), 96, fill=(250, 250, 250))
    with pytest.warns(UserWarning, match="text channel failed"):
        ans = ident.identify(img)
    assert not ans.accepted and ans.candidates == [] and "text" in ans.timings


def test_engine_crash_on_one_image_returns_no_lines_with_a_warning():
    def crash(*a, **k):
        raise RuntimeError("bad input shape")

    r = TextReader()
    r._engine = crash
    with pytest.warns(RuntimeWarning, match="OCR failed"):
        assert r.read(Image.new("RGB", (100, 80))) == []


def test_cli_query_without_ocr_answers_from_images_with_a_warning_not_a_traceback(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner
    from synth import photo_of, text_logo

    from logoid.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    logo = tmp_path / "deftones.png"
    text_logo("DEFTONES", seed=2).save(logo)
    assert run("add-band", "--name", "Deftones", "--image", logo).exit_code == 0
    assert run("build-index", "--model", "tiny-test", "--variants", "3").exit_code == 0
    real_import = builtins.__import__

    def no_ocr(name, *a, **k):
        if name.startswith("rapidocr_onnxruntime"):
            raise ImportError("No module named 'rapidocr_onnxruntime'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ocr)
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("DEFTONES", seed=2)).save(ph)
    res = run("query", ph, "--json")
    assert res.exit_code == 0, res.output
    assert res.exception is None and "Traceback" not in res.output + res.stderr
    # the CLI shows library warnings as one "warning: ..." line, not Python's file:line + source dump
    warned = [ln for ln in res.stderr.splitlines() if "text reading disabled" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: "), res.stderr
    ans = json.loads(res.stdout)
    assert ans["accepted"] and ans["answer"] == "Deftones" and ans["read"] == []
    assert "text" not in ans["candidates"][0]["channels"]


def test_logos_located_by_the_local_channel_are_reread_as_regions():
    from types import SimpleNamespace

    from logoid.identify.pipeline import text_regions

    poly = [[10.0, 10.0], [90.0, 10.0], [90.0, 40.0], [10.0, 40.0]]
    cands = {"band:1": {"inliers": 5, "polygon": [[0, 0], [1, 0], [1, 1]]}, "band:2": {"cos": 0.9},
             "band:3": {"inliers": 40, "polygon": poly}, "band:4": {"inliers": 0, "polygon": poly}}
    assert text_regions(cands) == [poly, [[0, 0], [1, 0], [1, 1]]]
    assert text_regions(cands, n=1) == [poly] and text_regions({}) == []

    class Spy:
        def read(self, img, regions=None):
            self.regions = regions
            return []

    ident = _name_only_identifier(Spy(), NAME_ONLY)
    ident._entity_of_image = {7: "band:3"}
    ident._local = lambda img, extra, find_all: ([SimpleNamespace(image_id=7, inliers=40, inlier_ratio=0.5,
                                                                   score=40.0, polygon=poly, coverage=0.5)], [],
                                                      None)
    ident.collect(Image.new("RGB", (120, 60)))
    assert ident.reader.regions == [poly]
