"""Catalog: CRUD, upserts, transactions, image store, importers, captions."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from logoid.catalog import CaptionTemplates, Catalog, caption, captions, import_album_manifest, import_bands_csv
from logoid.core.errors import CatalogError, ConfigError, ImageError
from logoid.core.paths import Home


@pytest.fixture
def cat(tmp_path):
    c = Catalog.open(Home(tmp_path / "home"))
    yield c
    c.close()


def _png(path, colour=(200, 30, 30), size=(24, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste(colour, (4, 4, 16, 12))
    img.save(path)
    return path


def test_band_upsert_by_name_and_external_id(cat):
    a = cat.add_band("Mayhem", genre="Black Metal", country="Norway", external_ids={"ma": "67"})
    b = cat.add_band("  mayhem ", formed_year=1984)  # same normalised name: update, keep old fields
    assert b.id == a.id and b.name == "Mayhem" and b.genre == "Black Metal" and b.formed_year == 1984
    c = cat.add_band("Mayhem (NO)", external_ids={"ma": "67"})  # same external id, new name
    assert c.id == a.id and c.name == "Mayhem (NO)"
    assert len(cat.list_bands()) == 1
    assert cat.find_band("ma:67").id == a.id
    assert cat.find_band("MAYHEM (no)").id == a.id
    assert cat.find_band(a.id).id == a.id


def test_same_name_other_external_id_is_another_band_and_ambiguous(cat):
    cat.add_band("Mayhem", country="Norway", external_ids={"ma": "67"})
    cat.add_band("Mayhem", country="Chile", external_ids={"ma": "999"})
    assert len(cat.list_bands()) == 2
    with pytest.raises(CatalogError, match="matches 2 bands"):
        cat.find_band("mayhem")


def test_find_band_missing_suggests(cat):
    cat.add_band("Darkthrone")
    with pytest.raises(CatalogError) as e:
        cat.find_band("Darkthron")
    assert "Darkthrone" in e.value.hint


def test_accents_and_aliases(cat):
    band = cat.add_band("Motörhead", aliases=["Bastard"])
    assert cat.find_band("motorhead").id == band.id
    assert cat.find_band("bastard").id == band.id


def test_album_upsert_creates_artist(cat):
    album = cat.add_album("De Mysteriis Dom Sathanas", "Mayhem", year=1994)
    again = cat.add_album("de mysteriis dom sathanas", "mayhem", genre="black metal")
    assert again.id == album.id and again.year == 1994 and again.genre == "black metal"
    assert [b.name for b in cat.list_bands()] == ["Mayhem"]
    assert cat.find_album("Mayhem - De Mysteriis Dom Sathanas").id == album.id
    assert cat.entity_name("album", album.id) == "Mayhem - De Mysteriis Dom Sathanas"


def test_transaction_rollback_leaves_db_as_before(cat, tmp_path):
    cat.add_band("Emperor")
    before, rev = cat.counts(), cat.revision()
    img = _png(tmp_path / "logo.png")
    with pytest.raises(RuntimeError), cat.transaction():
        band = cat.add_band("Burzum")
        stored = cat.add_image("band", band.id, img)
        with cat.transaction():  # nested savepoint
            cat.add_album("Filosofem", band.id)
        raise RuntimeError("boom")
    assert cat.counts() == before and cat.revision() == rev
    assert not stored.path.exists()  # the file copied inside the failed transaction is gone
    with pytest.raises(CatalogError):
        cat.find_band("Burzum")


def test_nested_rollback_keeps_outer_changes(cat):
    with cat.transaction():
        cat.add_band("Enslaved")
        with pytest.raises(ValueError), cat.transaction():
            cat.add_band("Immortal")
            raise ValueError
    assert [b.name for b in cat.list_bands()] == ["Enslaved"]


def test_images_store_dedup_scheme_and_removal(cat, tmp_path):
    band = cat.add_band("Emperor")
    other = cat.add_band("Satyricon")
    src = _png(tmp_path / "emperor.png")
    bw = tmp_path / "bw.png"
    Image.new("RGB", (20, 20), (0, 0, 0)).save(bw)
    with pytest.raises(ImageError, match="blank: one colour"):  # nothing to recognise in a plain square
        cat.add_image("band", band.id, bw)
    marked = Image.new("RGB", (20, 20), (0, 0, 0))
    marked.paste((255, 255, 255), (5, 5, 15, 15))  # a white mark on it: a black-and-white logo
    marked.save(bw)
    img = cat.add_image("band", band.id, src)
    assert cat.add_image("band", band.id, src).id == img.id  # dedup by (entity, sha256)
    assert img.path.read_bytes() == src.read_bytes() and img.path.parent.name == img.sha256[:2]
    assert img.scheme == "color" and img.kind == "logo" and (img.width, img.height) == (24, 16)
    assert cat.add_image("band", band.id, bw).scheme == "bw"
    shared = cat.add_image("band", other.id, src)  # same file, another band
    assert shared.path == img.path
    rev = cat.revision()
    removed = cat.remove_band("Emperor")
    assert removed.id == band.id and cat.revision() > rev
    assert [i.entity_id for i in cat.images()] == [other.id]
    assert img.path.exists()  # still used by Satyricon
    cat.remove_band(other.id)
    assert not img.path.exists() and cat.counts()["images"] == 0


def test_bad_image_raises_and_adds_nothing(cat, tmp_path):
    band = cat.add_band("Emperor")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError):
        cat.add_image("band", band.id, bad)
    assert cat.images() == []


def test_remove_band_removes_albums_and_ids_never_reused(cat, tmp_path):
    album = cat.add_album("Transilvanian Hunger", "Darkthrone")
    cat.add_image("album", album.id, _png(tmp_path / "cover.png"))
    removed_id = album.artist_id
    cat.remove_band("Darkthrone")
    assert cat.list_albums() == [] and cat.images() == []
    assert cat.add_band("Gorgoroth").id != removed_id


def test_entity_meta_and_counts(cat, tmp_path):
    band = cat.add_band("Mayhem", genre="black metal", country="Norway", external_ids={"ma": "67"})
    album = cat.add_album("Chimera", band.id, year=2004)
    meta = cat.entity_meta("album", album.id)
    assert meta["artist"] == "Mayhem" and meta["year"] == 2004 and meta["country"] == "Norway"
    assert cat.entity_meta("band", band.id)["external_ids"] == {"ma": "67"}
    json.dumps(meta)
    assert cat.counts()["bands"] == 1 and cat.counts()["albums"] == 1


def test_reopen_persists(tmp_path):
    with Catalog.open(tmp_path / "h") as c:
        c.add_band("Ulver")
        rev = c.revision()
    with Catalog.open(tmp_path / "h") as c:
        assert c.find_band("ulver").name == "Ulver" and c.revision() == rev


# ---- importers ---------------------------------------------------------------------------------------
CSV = """band_id,band_name,Country,Genre,Formed in,Status
67,Mayhem,Norway,Black Metal,1984,Active
68,Dark Funeral,Sweden,Black Metal,N/A,Active
69,Burzum,Norway,,1991,Active
,Nameless,,,,
70,,Norway,,,
"""


def test_import_csv_with_column_map_images_and_reimport(cat, tmp_path):
    csv_path = tmp_path / "bands.csv"
    csv_path.write_text(CSV)
    images = tmp_path / "imgs"
    _png(images / "67.png")
    _png(images / "dark_funeral" / "a.png", colour=(10, 200, 10))
    _png(images / "dark_funeral" / "b.png", colour=(10, 10, 200))
    (images / "burzum.jpg").write_bytes(b"garbage")  # bad image: skipped, import goes on
    _png(images / "unmatched.png")
    seen = []
    report = import_bands_csv(cat, csv_path, images, column_map={"band_id": "Band ID", "band_name": "Name"},
                              progress=lambda done, total: seen.append((done, total)))
    assert (report.added, report.updated, report.images_added) == (4, 0, 3)
    reasons = {s.where: s.reason for s in report.skipped}
    assert any("burzum.jpg" in k for k in reasons) and any("unmatched.png" in k for k in reasons)
    assert any("needs a name" in v for v in reasons.values())
    assert seen[-1] == (5, 5)
    mayhem = cat.find_band("ma:67")
    assert mayhem.formed_year == 1984 and mayhem.country == "Norway"
    assert cat.find_band("Dark Funeral").formed_year is None
    assert len(cat.images("band", cat.find_band("dark funeral").id)) == 2

    again = import_bands_csv(cat, csv_path, images, column_map={"band_id": "Band ID", "band_name": "Name"})
    assert (again.added, again.updated, again.images_added) == (0, 4, 0)
    assert cat.counts()["bands"] == 4 and cat.counts()["images"] == 3


def test_import_csv_without_name_column_raises(cat, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("foo,bar\n1,2\n")
    with pytest.raises(CatalogError, match="no band name column"):
        import_bands_csv(cat, p)


def test_import_album_manifest(cat, tmp_path):
    _png(tmp_path / "covers" / "c1.png")
    manifest = tmp_path / "albums.json"
    manifest.write_text(json.dumps([
        {"title": "Chimera", "artist": "Mayhem", "year": "2004", "genre": "black metal", "image": "covers/c1.png"},
        {"name": "Ordo Ad Chao", "artist": "Mayhem", "year": 2007, "cover": "covers/missing.png"},
        {"artist": "Nobody"},
    ]))
    report = import_album_manifest(cat, manifest)
    assert (report.added, report.images_added) == (2, 1)
    assert len(report.skipped) == 2
    assert cat.find_album("chimera").year == 2004
    assert import_album_manifest(cat, manifest).added == 0 and len(cat.list_albums()) == 2


# ---- captions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("meta,expected", [
    ({"name": "Mayhem", "genre": "black metal", "country": "Norway"},
     "This is an image of the logo for Mayhem, who are a black metal band from Norway."),
    ({"name": "Mayhem", "country": "Norway"}, "This is an image of the logo for Mayhem, who are a band from Norway."),
    ({"name": "Mayhem", "genre": "black metal"}, "This is an image of the logo for Mayhem, who are a black metal band."),
    ({"name": "Mayhem"}, "This is an image of the logo for Mayhem."),
    ({"name": "Mayhem", "genre": None, "country": "N/A"}, "This is an image of the logo for Mayhem."),
    ({"name": "Ministry", "genre": "industrial metal"},
     "This is an image of the logo for Ministry, who are an industrial metal band."),
    ({"name": "A Perfect Circle", "genre": "rock"}, "This is an image of the logo for A Perfect Circle, who are a rock band."),
])
def test_band_captions(meta, expected):
    assert caption(meta, "band") == expected


@pytest.mark.parametrize("meta,expected", [
    ({"title": "Chimera", "artist": "Mayhem", "year": 2004, "genre": "black metal"},
     "The cover of Chimera, a 2004 black metal album by Mayhem."),
    ({"title": "Chimera", "artist": "Mayhem"}, "The cover of Chimera, an album by Mayhem."),
    ({"title": "Chimera", "artist": "Mayhem", "genre": "experimental"}, "The cover of Chimera, an experimental album by Mayhem."),
    ({"title": "Chimera"}, "The cover of Chimera."),
])
def test_album_captions(meta, expected):
    assert caption(meta, "album") == expected


def test_caption_templates_multiple_roundtrip_and_validation():
    t = CaptionTemplates(band=["{name}[ ({country})]", "logo of {name}"])
    assert captions({"name": "Ulver", "type": "band"}, templates=t) == ["Ulver", "logo of Ulver"]
    assert CaptionTemplates.from_dict(t.to_dict()) == t
    with pytest.raises(ConfigError):
        CaptionTemplates(band=["{name}[ from {country}"])
