"""Albums, artists, genres and search by words, on tiny generated covers and the tiny-test model.

Each artist has its own style (palette + layout); the tiny random model separates those styles (checked in
``test_styles_are_separable``), so an unseen album in an artist's style can be named by its artist.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont
from synth import photo_of, text_logo

from logoid.cli import cli

FAST = ["--model", "tiny-test", "--variants", "2"]

# artist: (background, foreground, layout, genre)
STYLES = {
    "Crimson Tide": ((170, 20, 30), (250, 210, 60), "stripes", "metal"),
    "Blue Lagoon": ((20, 60, 190), (230, 240, 255), "circles", "jazz"),
    "Green Acres": ((30, 140, 50), (20, 40, 20), "diagonal", "country"),
    "Grey Matter": ((0, 180, 200), (255, 255, 255), "grid", "jazz"),
    "Night Shift": ((15, 15, 25), (150, 60, 200), "circles", "metal"),
}
UNKNOWN_STYLE = ((255, 0, 255), (20, 160, 160), "circles", None)  # an artist the catalog never saw
ALBUMS = 3

ANSWER_SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "answer.schema.json").read_text())


def cover(style, seed: int, size: int = 128) -> Image.Image:
    """A cover in ``style``: its palette and layout, shapes placed by ``seed``."""
    bg, fg, layout, _ = style
    rng = np.random.default_rng(seed)

    def jit(c):
        return tuple(int(np.clip(v + rng.integers(-12, 13), 0, 255)) for v in c)

    img = Image.new("RGB", (size, size), jit(bg))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 6))):
        col = jit(fg)
        if layout == "stripes":
            y = int(rng.integers(0, size))
            d.rectangle([0, y, size, y + int(rng.integers(6, 16))], fill=col)
        elif layout == "circles":
            x, y = rng.integers(0, size, 2)
            r = int(rng.integers(8, 28))
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
        elif layout == "diagonal":
            o, w = int(rng.integers(-size, size)), int(rng.integers(6, 18))
            d.polygon([(o, 0), (o + w, 0), (o + w + size, size), (o + size, size)], fill=col)
        else:
            step = int(rng.integers(16, 32))
            for x in range(0, size, step):
                d.line([(x, 0), (x, size)], fill=col, width=2)
                d.line([(0, x), (size, x)], fill=col, width=2)
    return img


class FakeReader:
    """Stands in for RapidOCR (as tests/test_ocr.py stands in for a missing engine): "reads" the text registered for
    an image's exact pixels with :meth:`write`, nothing on any other image. ``available=False`` = no OCR engine."""

    def __init__(self, available: bool = True):
        self.available, self._failed, self.texts, self.calls = available, None if available else "fake: no engine", {}, 0

    @staticmethod
    def _key(img) -> bytes:
        import hashlib

        return hashlib.sha256(np.asarray(img.convert("RGB")).tobytes()).digest()

    def write(self, img, *texts: str):
        """Print ``texts`` on ``img`` (common font, white box) and remember them as what OCR reads there."""
        d = ImageDraw.Draw(img)
        for i, t in enumerate(texts):
            d.rectangle([4, 4 + 24 * i, img.width - 4, 24 + 24 * i], fill=(255, 255, 255))
            d.text((8, 6 + 24 * i), t, fill=(0, 0, 0), font=ImageFont.load_default(size=16))
        self.texts[self._key(img)] = list(texts)
        return img

    def read(self, img, regions=None):
        from logoid.engine.ocr import TextLine

        self.calls += 1
        if not self.available:
            return []
        return [TextLine(t, 0.95, np.zeros((4, 2), np.float32)) for t in self.texts.get(self._key(img), [])]


@pytest.fixture(autouse=True)
def fake_ocr():
    """Every test reads cover text with a FakeReader (fast, deterministic); restored after."""
    from logoid.albums.covers import set_text_reader

    r = FakeReader()
    set_text_reader(r)
    yield r
    set_text_reader(None)


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def unseen(tmp_path, artist: str, i: int = 0):
    """A cover of a new album in ``artist``'s style, not in the catalog."""
    p = tmp_path / f"unseen-{artist.replace(' ', '')}-{i}.png"
    cover(STYLES[artist], seed=9000 + 37 * list(STYLES).index(artist) + i).save(p)
    return p


@pytest.fixture
def styled(tmp_path):
    """A catalog of five artists × three albums in their styles, indexed with the tiny model."""
    from logoid.catalog import Catalog
    from logoid.core.paths import Home

    cat = Catalog.open(Home.resolve())
    for ai, (artist, style) in enumerate(STYLES.items()):
        for j in range(ALBUMS):
            p = tmp_path / f"c{ai}{j}.png"
            cover(style, seed=100 * ai + j).save(p)
            album = cat.add_album(f"{artist} Vol {j + 1}", artist, year=2000 + j, genre=style[3])
            cat.add_image("album", album.id, p)
    cat.close()
    run("build-index", *FAST, "--no-local", "--no-names")
    return tmp_path


def test_styles_are_separable():
    """The premise of the artist tests: the tiny model puts an artist's covers nearer each other than others'."""
    from logoid.albums.artist import ArtistModel
    from logoid.engine import create_embedder

    e = create_embedder("tiny-test")
    names = list(STYLES)
    v = e.embed_images([cover(STYLES[a], 100 * i + j) for i, a in enumerate(names) for j in range(ALBUMS)])
    owner = np.repeat(np.arange(len(names)), ALBUMS)
    model = ArtistModel.fit(v, [names[i] for i in owner], list(range(len(owner))))
    q = e.embed_images([cover(STYLES[a], 9000 + 37 * i) for i, a in enumerate(names)])
    assert [model.guess(q[i:i + 1]).name for i in range(len(names))] == names
    assert model.summary()["auroc"] > 0.6 and model.verify["auroc"] > 0.9


def test_add_album_creates_artist_and_query_names_album_and_artist(tmp_path):
    art = text_logo("ECLIPSE", size=(400, 400), font_size=80, seed=21)
    art.save(tmp_path / "eclipse.png")
    out = json.loads(run("add-album", "--title", "Eclipse", "--artist", "Moon Unit", "--year", "2004",
                         "--genre", "jazz", "--image", tmp_path / "eclipse.png", "--json").stdout)
    assert out["artist"] == "Moon Unit"
    bands = json.loads(run("catalog", "list", "--json").stdout)
    assert [b["name"] for b in bands] == ["Moon Unit"]  # the artist became a catalog band
    logo = tmp_path / "other.png"
    text_logo("KORN", seed=3).save(logo)
    run("add-band", "--name", "Korn", "--image", logo)
    run("build-index", *FAST)
    ph = tmp_path / "sleeve.jpg"
    photo_of(art, quad=((200, 120), (520, 140), (510, 460), (190, 440))).save(ph)
    ans = json.loads(run("query", ph, "--channels", "global,local", "--json").stdout)
    assert ans["accepted"] and ans["entity"].startswith("album:") and ans["artist"] == "Moon Unit"
    assert ans["artist_guess"] is None  # an accepted album needs no guess
    text = run("query", ph, "--channels", "global,local").output
    assert "Eclipse — Moon Unit (2004, jazz)" in text


def test_unseen_album_answers_its_artist_and_unknown_artist_is_rejected(styled, tmp_path):
    fit = json.loads(run("artist", "fit", "--json").stdout)
    assert fit["artists"] == len(STYLES) and fit["source"] == "gallery leave-one-album-out"
    right = 0
    for artist in STYLES:
        # Local channel only for the album: a new cover has no verified match, so no album is accepted.
        ans = json.loads(run("query", unseen(tmp_path, artist), "--channels", "local", "--json").stdout)
        assert not ans["accepted"] and ans["artist_guess"]["best"] == artist
        jsonschema.validate(ans, ANSWER_SCHEMA)  # the album extras in the documented shape
        right += ans["artist_guess"]["accepted"]
    assert right >= 4
    text = run("query", unseen(tmp_path, "Blue Lagoon"), "--channels", "local").output
    assert "album not in the catalog; artist probably Blue Lagoon" in text
    unk = tmp_path / "stranger.png"
    cover(UNKNOWN_STYLE, seed=5).save(unk)
    ans = json.loads(run("query", unk, "--channels", "local", "--json").stdout)
    assert not ans["accepted"] and not ans["artist_guess"]["accepted"] and ans["artist_guess"]["artist"] is None
    assert "artist: unknown" in run("query", unk, "--channels", "local").output


def test_artist_check_yes_no_and_unknown_name(styled, tmp_path):
    photo = unseen(tmp_path, "Green Acres")
    yes = json.loads(run("artist-check", photo, "--artist", "Green Acres", "--json").stdout)
    no = json.loads(run("artist-check", photo, "--artist", "Night Shift", "--json").stdout)
    assert yes["match"] and not no["match"] and yes["probability"] > 0.5 > no["probability"]
    assert set(yes) >= {"artist", "score", "probability", "match", "threshold", "path"}
    assert run("artist-check", photo, "--artist", "Green Acres").output.startswith(f"{photo}: yes")
    bad = run("artist-check", photo, "--artist", "Grey Mater", ok=False)
    assert bad.exit_code == 1 and "Grey Matter" in bad.output and len(bad.output.strip().splitlines()) == 1
    run("artist", "fit")  # a stored model: it answers from the covers it was fitted on until fitted again
    assert "changed since" not in run("artist-check", photo, "--artist", "Green Acres").stderr
    extra = tmp_path / "extra-cover.png"
    cover(STYLES["Green Acres"], 4242).save(extra)
    run("add-album", "--title", "Late Harvest", "--artist", "Green Acres", "--image", extra)
    assert "changed since `logoid artist fit`" in run("artist-check", photo, "--artist", "Green Acres").stderr


def test_artist_model_is_stored_and_refuses_another_model(styled):
    from logoid.albums.artist import ArtistModel
    from logoid.core.errors import IndexMismatchError
    from logoid.core.paths import Home
    from logoid.engine import create_embedder

    run("artist", "fit")
    home = Home.resolve()
    m = ArtistModel.load(home, create_embedder("tiny-test"))
    assert m.model["model"] == "tiny-test" and len(m.artists) == len(STYLES)
    with pytest.raises(IndexMismatchError):
        ArtistModel.load(home, {"model": "other", "weights_sha256": "0" * 64, "embed_dim": 32})


def test_genre_train_predict_and_query_column(styled, tmp_path):
    out = json.loads(run("genre", "train", "--json").stdout)
    assert out["grouped_by_artist"] and set(out["comparison"]) == {"logreg", "knn", "zeroshot"}
    assert out["kept"] == max(out["comparison"], key=lambda m: out["comparison"][m]["weighted_f1"])
    assert "← kept" in run("genre", "train").output
    pred = json.loads(run("genre", unseen(tmp_path, "Crimson Tide"), "--json").stdout)
    assert pred[0]["genre"] in ("metal", "jazz", "country") and len(pred[0]["top"]) == 3
    assert abs(sum(t["probability"] for t in pred[0]["top"]) - 1.0) < 1e-3
    ans = json.loads(run("query", unseen(tmp_path, "Crimson Tide"), "--channels", "local", "--json").stdout)
    assert ans["genre"]["genre"] == pred[0]["genre"]
    jsonschema.validate(ans, ANSWER_SCHEMA)
    folder = tmp_path / "batch"
    folder.mkdir()
    cover(STYLES["Blue Lagoon"], 77).save(folder / "a.png")
    run("batch", folder, "--channels", "local", "-o", tmp_path / "out.csv")
    with open(tmp_path / "out.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["genre"] and "artist" in row


@pytest.mark.parametrize("method", ["logreg", "knn", "zeroshot"])
def test_genre_model_round_trips_exactly(method, tmp_path):
    from logoid.albums.genre import GenreConfig, GenreModel
    from logoid.core.paths import Home
    from logoid.engine import create_embedder

    e = create_embedder("tiny-test")
    names = list(STYLES)
    x = e.embed_images([cover(STYLES[a], 100 * i + j) for i, a in enumerate(names) for j in range(ALBUMS)])
    y = [STYLES[a][3] for a in names for _ in range(ALBUMS)]
    groups = [a for a in names for _ in range(ALBUMS)]
    gm, comp = GenreModel.train(lambda _: x, y, GenreConfig(methods=(method,)), groups=groups,
                                embed_texts=e.embed_texts, model={"model": "tiny-test"})
    assert len(set(comp.folds)) == len(names)  # one artist per fold: grouped
    q = e.embed_images([cover(STYLES[a], 555 + i) for i, a in enumerate(names)])
    before = gm.predict_proba(q)
    home = Home.resolve()
    gm.save(home)
    gm.save(home)  # a second generation replaces the first
    back = GenreModel.load(home)
    assert back.method == method and back.classes == gm.classes
    assert np.array_equal(back.predict_proba(q), before)
    assert len(list((home.root / "albums").glob("genre-model-*.npz"))) == 1


def test_genre_train_from_csv_and_folder(tmp_path):
    folder = tmp_path / "tree"
    rows = []
    for i, (artist, style) in enumerate(STYLES.items()):
        for j in range(2):
            p = folder / style[3] / f"{i}{j}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cover(style, 100 * i + j).save(p)
            rows.append({"path": str(p.relative_to(tmp_path)), "genre": style[3], "artist": artist})
    with open(tmp_path / "covers.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "genre", "artist"])
        w.writeheader()
        w.writerows(rows)
    out = json.loads(run("genre", "train", "--csv", tmp_path / "covers.csv", "--model", "tiny-test",
                         "--methods", "logreg,knn", "--json").stdout)
    assert out["covers"] == 10 and out["grouped_by_artist"] and out["folds"] == 5
    out = json.loads(run("genre", "train", "--folder", folder, "--model", "tiny-test", "--methods", "knn",
                         "--folds", "2", "--json").stdout)
    assert out["covers"] == 10 and not out["grouped_by_artist"] and out["genres"] == ["country", "jazz", "metal"]


def test_search_ranks_images_and_json_shape(styled):
    out = json.loads(run("search", "a jazz album cover", "-k", "4", "--json").stdout)
    res = out["results"]
    assert len(res) == 4 and [r["rank"] for r in res] == [1, 2, 3, 4]
    assert all(a["score"] >= b["score"] for a, b in zip(res, res[1:], strict=False))
    assert set(res[0]) == {"rank", "score", "image_id", "entity", "name", "path"} and res[0]["entity"].startswith("album:")
    assert out["model"] == "tiny-test"
    every = json.loads(run("search", "anything", "-k", "100", "--json").stdout)["results"]
    assert len(every) == len(STYLES) * ALBUMS  # one vector per image, not one per variant
    assert " - " in run("search", "a jazz album cover", "-k", "2").output


def test_album_cli_errors_are_one_line(tmp_path):
    p = tmp_path / "x.png"
    cover(STYLES["Blue Lagoon"], 1).save(p)
    for args, needle in [(("genre", p), "logoid genre train"), (("search", "jazz"), "logoid build-index"),
                         (("artist", "show"), "logoid artist fit"), (("genre", "train"), "--csv")]:
        res = run(*args, ok=False)
        assert res.exit_code == 1 and needle in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("error: ")


def _manifest(tmp_path) -> str:
    """An albums-dev shaped manifest: gallery / query / unknown roles, calib / test splits, artist folds."""
    rows = []
    names = list(STYLES)
    for i, artist in enumerate(names):
        for j in range(ALBUMS + 2):
            p = tmp_path / "m" / f"{i}-{j}.png"
            p.parent.mkdir(exist_ok=True)
            cover(STYLES[artist], 300 * i + j).save(p)
            role = "gallery" if j < ALBUMS else "query"
            rows.append({"cover": f"m/{p.name}", "artist": artist, "genre": STYLES[artist][3], "group": f"{i}-{j}",
                         "genre_fold": str(i), "artist_role": role, "split": "calib" if j == ALBUMS else "test"})
    for j in range(4):
        p = tmp_path / "m" / f"u-{j}.png"
        cover(UNKNOWN_STYLE, 40 + j).save(p)
        rows.append({"cover": f"m/{p.name}", "artist": "Stranger", "genre": "metal", "group": f"u-{j}",
                     "genre_fold": "0", "artist_role": "unknown", "split": "calib" if j < 2 else "test"})
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_eval_genre_and_artist_protocols_write_reports(tmp_path):
    manifest = _manifest(tmp_path)
    m = json.loads(run("eval", manifest, "--task", "genre", "--model", "tiny-test", "--report", tmp_path / "g",
                       "--json").stdout)
    assert m["folds"] == len(STYLES) and 0 <= m["weighted_f1"] <= 1 and set(m["per_class"]) <= {"metal", "jazz", "country"}
    assert set(m["comparison"]) == {"logreg", "knn", "zeroshot"}
    assert (tmp_path / "g" / "confusion.png").exists() and (tmp_path / "g" / "report.html").exists()
    a = json.loads(run("eval", manifest, "--task", "artist", "--model", "tiny-test", "--report", tmp_path / "a",
                       "--json").stdout)
    assert a["n_known"] == len(STYLES) and a["n_unknown"] == 2 and a["artists"] == len(STYLES)
    assert a["calibration_source"] == "manifest rows with split=calib" and a["top1"] >= 0.8
    assert a["auroc"] is not None and a["open_set_accuracy"] is not None
    assert (tmp_path / "a" / "metrics.json").exists()
    text = run("eval", manifest, "--task", "artist", "--model", "tiny-test").output
    assert "open_set_accuracy" in text


def test_artist_calibrate_on_photos(styled, tmp_path):
    rows = [{"photo": str(unseen(tmp_path, a, 1)), "artist": a} for a in STYLES]
    for j in range(3):
        p = tmp_path / f"stranger{j}.png"
        cover(UNKNOWN_STYLE, 60 + j).save(p)
        rows.append({"photo": str(p), "artist": "unknown"})
    path = tmp_path / "calib.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["photo", "artist"])
        w.writeheader()
        w.writerows(rows)
    out = json.loads(run("artist", "calibrate", path, "--json").stdout)
    assert out["source"].startswith(str(path)) and out["threshold"] is not None
    assert json.loads(run("artist", "show", "--json").stdout)["source"] == out["source"]


# ---- the text channel: artist names read on covers (FakeReader; one real-OCR test) --------------------------------
TWINS = {"Blue Lagoon": STYLES["Blue Lagoon"], "Blue Moon Trio": STYLES["Blue Lagoon"],  # the same style: ambiguous
         "Crimson Tide": STYLES["Crimson Tide"], "Green Acres": STYLES["Green Acres"]}


def _named_gallery(reader, embedder, *, printed: bool = True):
    """Three albums per TWINS artist, each cover printing its artist's name (what OCR reads) when ``printed``."""
    from logoid.albums.covers import extract, read_lines

    imgs, artists = [], []
    for i, (a, style) in enumerate(TWINS.items()):
        for j in range(ALBUMS):
            img = cover(style, 100 * i + j)
            imgs.append(reader.write(img, a.upper(), f"VOL {j + 1}") if printed else img)
            artists.append(a)
    return extract(embedder, imgs, "style"), artists, read_lines(imgs)


def test_name_printed_on_cover_answers_its_artist_when_style_is_ambiguous(fake_ocr):
    from logoid.albums.artist import ArtistModel
    from logoid.albums.covers import extract, read_lines
    from logoid.engine import create_embedder

    e = create_embedder("tiny-test")
    x, artists, lines = _named_gallery(fake_ocr, e)
    model = ArtistModel.fit(x, artists, list(range(len(artists))), lines=lines)
    assert model.fusion["weights"][1] > 0 and model.source == "gallery leave-one-album-out"
    for name in ("Blue Moon Trio", "Blue Lagoon"):
        img = fake_ocr.write(cover(TWINS[name], 4242), name.upper())
        q, ln = extract(e, [img], "style"), read_lines([img])[0]
        g = model.guess(q, lines=ln)
        assert g.accepted and g.name == name, g
        assert model.check(q, name, lines=ln)["match"]
        other = "Blue Lagoon" if name == "Blue Moon Trio" else "Blue Moon Trio"
        assert not model.check(q, other, lines=ln)["match"]
    # Without its name the cover is ambiguous between the twins: no confident answer for either.
    plain = extract(e, [cover(TWINS["Blue Lagoon"], 4242)], "style")
    g = model.guess(plain, lines=[])
    assert g.name in ("Blue Lagoon", "Blue Moon Trio") and g.score < model.guess(q, lines=ln).score
    # A name the catalog does not know, printed in a known style: an unknown artist, rejected.
    stranger = fake_ocr.write(cover(TWINS["Crimson Tide"], 777), "THE STRANGERS", "NIGHTFALL")
    g = model.guess(extract(e, [stranger], "style"), lines=read_lines([stranger])[0])
    assert not g.accepted and g.to_dict()["artist"] is None


def test_ocr_absent_degrades_to_style_with_one_warning(styled, tmp_path, fake_ocr):
    fake_ocr.available, fake_ocr._failed = False, "fake: no engine"
    res = run("artist", "fit", "--json")
    fit = json.loads(res.stdout)
    assert fit["source"].endswith("(style only: no text read)")
    assert res.stderr.count("text reading unavailable") == 1 and len(res.stderr.strip().splitlines()) == 1
    res = run("query", unseen(tmp_path, "Green Acres"), "--channels", "local", "--json")
    ans = json.loads(res.stdout)
    assert ans["artist_guess"]["best"] == "Green Acres"
    assert res.stderr.count("text reading unavailable") == 1
    assert fake_ocr.calls == 0  # nothing was attempted on the unavailable engine


def test_genre_with_text_features_round_trips(fake_ocr, tmp_path):
    from logoid.albums.covers import extract
    from logoid.albums.genre import GenreConfig, GenreModel
    from logoid.core.paths import Home
    from logoid.engine import create_embedder

    e = create_embedder("tiny-test")
    names = list(STYLES)
    imgs = [cover(STYLES[a], 100 * i + j) for i, a in enumerate(names) for j in range(ALBUMS)]
    for k, img in enumerate(imgs):
        if k % 2:
            fake_ocr.write(img, f"{STYLES[names[k // ALBUMS]][3].upper()} CLASSICS")
    x = extract(e, imgs, "style+text")
    style = extract(e, imgs, "style")
    assert x.shape[1] == style.shape[1] + e.embed_texts(["a"]).shape[1] + 1  # style | text tower | has-text flag
    assert np.array_equal(x[:, -1], np.asarray([k % 2 for k in range(len(imgs))], np.float32))
    assert not x[0, style.shape[1]:].any()  # nothing read: the text part is zero
    y = [STYLES[a][3] for a in names for _ in range(ALBUMS)]
    gm, _ = GenreModel.train(lambda f: extract(e, imgs, f), y, GenreConfig(methods=("logreg", "knn")),
                             groups=[a for a in names for _ in range(ALBUMS)], model={"model": "tiny-test"})
    assert gm.features == "style+colour+text"  # the default: style | colour stats | text tower | has-text flag
    q = [fake_ocr.write(cover(STYLES[a], 555 + i), "JAZZ AT NIGHT") for i, a in enumerate(names)]
    qx = extract(e, q, gm.features)
    home = Home.resolve()
    gm.save(home)
    back = GenreModel.load(home)
    assert back.features == gm.features and back.method == gm.method
    assert np.array_equal(back.predict_proba(qx), gm.predict_proba(qx))


@pytest.mark.real
def test_real_ocr_reads_the_printed_artist_name(tmp_path):
    from logoid.albums.artist import ArtistModel
    from logoid.albums.covers import extract, ocr_unavailable, read_lines, set_text_reader
    from logoid.engine import create_embedder

    set_text_reader(None)  # the real RapidOCR reader
    if ocr_unavailable():
        pytest.skip("RapidOCR engine did not start here")
    e = create_embedder("tiny-test")

    def printed(style, seed, name):
        img = cover(style, seed, size=320)
        d = ImageDraw.Draw(img)
        d.rectangle([10, 120, 310, 200], fill=(255, 255, 255))
        d.text((160, 160), name, fill=(0, 0, 0), font=ImageFont.load_default(size=40), anchor="mm")
        return img

    imgs, artists = [], []
    for i, (a, style) in enumerate(TWINS.items()):
        for j in range(2):
            imgs.append(printed(style, 100 * i + j, a.split()[-1].upper() if j else a.upper()))
            artists.append(a)
    lines = read_lines(imgs)
    assert sum(bool(ln) for ln in lines) >= len(imgs) - 1
    model = ArtistModel.fit(extract(e, imgs, "style"), artists, list(range(len(imgs))), lines=lines)
    q = printed(TWINS["Blue Moon Trio"], 999, "BLUE MOON TRIO")
    g = model.guess(extract(e, [q], "style"), lines=read_lines([q])[0])
    assert g.name == "Blue Moon Trio" and g.accepted


def test_album_step_reuses_the_text_channel_lines(fake_ocr):
    from logoid.albums.answer import AlbumStep

    step = AlbumStep(None, None, None)
    img = fake_ocr.write(cover(STYLES["Blue Lagoon"], 3), "BLUE LAGOON")
    assert step._lines([{"text": "BLUE LAGOON", "conf": 0.9, "box": []}], img, {}) == [("BLUE LAGOON", 0.9)]
    assert fake_ocr.calls == 0
    assert step._lines(None, img, {}) == [("BLUE LAGOON", 0.95)]  # the text channel did not run: read here
    assert fake_ocr.calls == 1
