"""The HTTP API of `logoid serve` through FastAPI's TestClient on the tiny model: every endpoint, every error
status, the token rules, and changes made by the CLI or the API seen by the next request."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from synth import photo_of, text_logo

import logoid
from logoid.cli import cli
from logoid.serve.app import create_app
from logoid.serve.service import Limits, Service

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "answer.schema.json").read_text())
CH = {"channels": "global,local"}  # the image channels: OCR adds seconds and nothing these tests need
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BANDS = (("Mayhem", "MAYHEM", 1), ("Deftones", "DEFTONES", 2), ("Korn", "KORN", 3))


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A built home (three bands, tiny model), built once; each test serves its own copy."""
    import os
    import shutil

    root = tmp_path_factory.mktemp("serve-template")
    home = root / "home"
    old = os.environ.get("LOGOID_HOME")
    os.environ["LOGOID_HOME"] = str(home)
    try:
        for band, text, seed in BANDS:
            p = root / f"{band.lower()}.png"
            text_logo(text, seed=seed).save(p)
            run("add-band", "--name", band, "--genre", "metal", "--country", "Norway", "--id", f"ma:{seed}",
                "--image", p)
        run("build-index", "--model", "tiny-test", "--variants", "3")
    finally:
        if old is None:
            os.environ.pop("LOGOID_HOME", None)
        else:
            os.environ["LOGOID_HOME"] = old
    yield home
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home(template, tmp_path, monkeypatch):
    import shutil

    dst = tmp_path / "home"
    shutil.copytree(template, dst)
    monkeypatch.setenv("LOGOID_HOME", str(dst))
    return dst


def serve(home: Path, token: str | None = TOKEN, warm: bool = True, **limits) -> TestClient:
    service = Service(logoid.open_home(home), threads=2, token=token, limits=Limits(**limits))
    if warm:
        service.warm()
    return TestClient(create_app(service, warm=False))


@pytest.fixture
def client(home):
    with serve(home) as c:
        yield c


def photo(text: str, seed: int, photo_seed: int = 0) -> bytes:
    return jpeg(photo_of(text_logo(text, seed=seed), seed=photo_seed))


def identify(client, data: bytes, name: str = "photo.jpg", **fields):
    return client.post("/v1/identify", files={"image": (name, data, "image/jpeg")}, data={**CH, **fields})


# ---- identify ----------------------------------------------------------------------------------------------------
def test_identify_answers_exactly_what_query_json_prints(client, home, tmp_path):
    data = photo("DEFTONES", 2)
    r = identify(client, data, "deftones.jpg")
    assert r.status_code == 200
    api = r.json()
    jsonschema.validate(api, SCHEMA)
    assert (api["status"], api["answer"], api["path"]) == ("ok", "Deftones", "deftones.jpg")
    assert (api["width"], api["height"]) == Image.open(io.BytesIO(data)).size
    (tmp_path / "deftones.jpg").write_bytes(data)
    local = json.loads(run("query", tmp_path / "deftones.jpg", "--channels", "global,local", "--json").stdout)
    drop = ("timings", "path")
    assert {k: v for k, v in api.items() if k not in drop} == {k: v for k, v in local.items() if k not in drop}


def test_options_as_query_parameters_and_form_fields(client):
    data = photo("KORN", 3)
    by_form = client.post("/v1/identify", files={"image": ("k.jpg", data)}, data={"k": "1", "explain": "true", **CH})
    by_query = client.post("/v1/identify?k=1&explain=true&channels=global,local", files={"image": ("k.jpg", data)})
    for r in (by_form, by_query):
        assert r.status_code == 200, r.text
        a = r.json()
        assert a["answer"] == "Korn" and len(a["candidates"]) == 1
        assert a["explain"][0] == "channels:" and any(line.startswith("timings: ") for line in a["explain"])
        jsonschema.validate(a, SCHEMA)


def test_an_unknown_photo_is_unknown(client):
    a = identify(client, photo("QUIXOTIC", 9, photo_seed=4)).json()
    assert a["status"] == "unknown" and a["accepted"] is False and a["answer"] == "unknown"


def test_every_logo_with_all(client):
    canvas = Image.new("RGB", (900, 420), (235, 235, 230))
    canvas.paste(text_logo("MAYHEM", seed=1).convert("RGB").resize((400, 160)), (20, 40))
    canvas.paste(text_logo("KORN", seed=3).convert("RGB").resize((400, 160)), (470, 230))
    a = identify(client, jpeg(canvas), "two.jpg", all="true").json()
    assert sorted(logo["name"] for logo in a["logos"]) == ["Korn", "Mayhem"]
    for logo in a["logos"]:
        xs = [p[0] for p in logo["polygon"]]
        assert (max(xs) < 450) == (logo["name"] == "Mayhem")  # each outline where its logo is


def test_batch_answers_each_photo_in_order_and_reports_the_bad_one(client):
    files = [("images", ("a.jpg", photo("MAYHEM", 1))), ("images", ("b.txt", b"just text\n")),
             ("images", ("c.jpg", photo("KORN", 3)))]
    r = client.post("/v1/identify/batch", files=files, data=CH)
    assert r.status_code == 200
    res = r.json()
    assert [(x["path"], x["status"], x["answer"]) for x in res["results"]] == [
        ("a.jpg", "ok", "Mayhem"), ("b.txt", "error", "unknown"), ("c.jpg", "ok", "Korn")]
    assert "not an image" in res["results"][1]["error"]
    assert res["summary"] == {"photos": 3, "identified": 2, "unknown": 0, "skipped": 1,
                              "skipped_files": [{"path": "b.txt", "reason": res["results"][1]["error"]}]}
    for x in res["results"]:
        jsonschema.validate(x, SCHEMA)


def test_parallel_requests_get_the_same_answers_as_one_at_a_time(client):
    photos = [photo(text, seed, photo_seed=i) for i, (_, text, seed) in enumerate(BANDS * 3)]
    alone = [identify(client, p).json() for p in photos]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda p: identify(client, p).json(), photos))
    strip = lambda a: {k: v for k, v in a.items() if k != "timings"}  # noqa: E731
    assert [strip(a) for a in together] == [strip(a) for a in alone]
    assert [a["answer"] for a in alone] == [b for b, _, _ in BANDS * 3]


def test_uploads_are_not_written_to_the_home(client, home):
    before = sorted((p.relative_to(home), p.stat().st_size) for p in home.rglob("*") if p.is_file())
    assert identify(client, photo("MAYHEM", 1)).json()["answer"] == "Mayhem"
    client.post("/v1/identify/batch", files=[("images", ("x.jpg", photo("KORN", 3)))], data=CH)
    after = sorted((p.relative_to(home), p.stat().st_size) for p in home.rglob("*") if p.is_file())
    assert after == before


# ---- errors --------------------------------------------------------------------------------------------------------
def error_of(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["status"], err["code"]) == (status, code)
    assert "Traceback" not in r.text
    return err


def test_bad_photos_get_the_status_that_fits(home):
    with serve(home, max_upload_bytes=200_000, max_pixels=1_000_000) as c:
        err = error_of(identify(c, b"hello, not an image", "notes.txt"), 415, "not_image")
        assert err["message"].startswith("notes.txt: ") and "text file" in err["message"] and err["hint"]
        good = photo("KORN", 3)
        error_of(identify(c, good[: len(good) // 3], "cut.jpg"), 400, "unreadable_image")
        error_of(identify(c, b"", "empty.jpg"), 400, "unreadable_image")
        big = png(Image.effect_noise((400, 400), 60).convert("RGB"))  # ~0.5 MB of noise
        assert len(big) > 200_000
        err = error_of(identify(c, big, "big.png"), 413, "too_large")
        assert "--max-upload-mb" in err["hint"]
        wide = png(Image.new("RGB", (2000, 600), "white"))  # 1.2 Mpx, small file
        err = error_of(identify(c, wide, "wide.png"), 413, "too_large")
        assert "2000x600" in err["message"] and "--max-pixels" in err["hint"]


def test_bad_parameters_are_422(client):
    data = photo("KORN", 3)
    error_of(client.post("/v1/identify", files={"image": ("k.jpg", data)}, data={"k": "0"}), 422, "bad_parameter")
    error_of(client.post("/v1/identify?k=many", files={"image": ("k.jpg", data)}), 422, "bad_parameter")
    err = error_of(client.post("/v1/identify", files={"image": ("k.jpg", data)}, data={"channels": "colour"}), 422,
                   "bad_parameter")
    assert "colour" in err["message"] and "global" in err["hint"]
    error_of(client.post("/v1/identify", data={"k": "3"}), 422, "bad_parameter")  # no image
    error_of(client.get("/v1/bands?limit=0"), 422, "bad_parameter")
    error_of(client.get("/v1/images/1?size=5000"), 422, "bad_parameter")


def test_not_warm_yet_is_503_and_health_says_so(home):
    with serve(home, warm=False) as c:
        r = c.get("/v1/health")
        assert r.status_code == 503 and r.json()["ready"] is False
        error_of(identify(c, photo("KORN", 3)), 503, "not_ready")
        assert c.get("/v1/stats").json()["ready"] is False
        c.app.state.service.warm()
        assert c.get("/v1/health").json() == {"status": "ready", "ready": True,
                                              "ready_after_s": c.get("/v1/health").json()["ready_after_s"]}
        assert identify(c, photo("KORN", 3)).json()["answer"] == "Korn"


def test_an_internal_failure_is_a_json_500_without_a_traceback(client, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(client.app.state.service, "identify", boom)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        err = error_of(identify(c, photo("KORN", 3)), 500, "internal")
    assert "disk on fire" not in json.dumps(err)


def test_unknown_ids_are_404(client):
    error_of(client.get("/v1/bands/999"), 404, "not_found")
    error_of(client.get("/v1/albums/999"), 404, "not_found")
    error_of(client.get("/v1/images/999"), 404, "not_found")
    error_of(client.delete("/v1/bands/999", headers=AUTH), 404, "not_found")


# ---- the catalog -------------------------------------------------------------------------------------------------
def test_bands_search_pages_and_details(client):
    everything = client.get("/v1/bands").json()
    assert everything["total"] == 3 and [b["name"] for b in everything["items"]] == ["Deftones", "Korn", "Mayhem"]
    page = client.get("/v1/bands?limit=2&offset=1").json()
    assert page["total"] == 3 and [b["name"] for b in page["items"]] == ["Korn", "Mayhem"]
    assert [b["name"] for b in client.get("/v1/bands?q=ORN").json()["items"]] == ["Korn"]
    assert client.get("/v1/bands?q=%25").json()["total"] == 0  # LIKE wildcards match themselves
    korn = client.get(page["items"][0]["url"]).json()
    assert (korn["name"], korn["genre"], korn["country"], korn["external_ids"]) == ("Korn", "metal", "Norway",
                                                                                   {"ma": "3"})
    assert len(korn["images"]) == 1 and korn["albums"] == []
    thumb = client.get(korn["images"][0]["url"] + "?size=64")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(thumb.content))
    assert max(img.size) == 64 and "immutable" in thumb.headers["cache-control"]


def test_stats_count_the_catalog_and_the_index(client):
    s = client.get("/v1/stats").json()
    assert s["catalog"]["bands"] == 3 and s["catalog"]["images"] == 3
    assert s["index"]["model"] == "tiny-test" and s["index"]["vectors"] == 9  # 3 images × 3 variants
    assert s["read_only"] is False and s["ready"] is True


# ---- writes and tokens -----------------------------------------------------------------------------------------
def new_band(client, name="Emperor", text="EMPEROR", seed=5, headers=AUTH):
    logo = png(text_logo(text, seed=seed))
    return client.post("/v1/bands", headers=headers, files=[("images", ("emperor.png", logo, "image/png"))],
                       data={"name": name, "genre": "Black Metal", "country": "Norway", "formed_year": "1991",
                             "ids": ["ma:30"], "aliases": ["The Emperor"]})


def test_writes_need_the_token(home):
    with serve(home, token=None) as ro:
        err = error_of(new_band(ro, headers={}), 403, "read_only")
        assert "--token" in err["hint"]
        assert ro.get("/v1/stats").json()["read_only"] is True
    with serve(home) as c:
        r = new_band(c, headers={})
        error_of(r, 401, "token_required")
        assert r.headers["www-authenticate"] == "Bearer"
        error_of(new_band(c, headers={"Authorization": "Bearer nope"}), 403, "bad_token")
        error_of(c.delete("/v1/bands/1", headers={"Authorization": "Basic " + TOKEN}), 403, "bad_token")
        assert c.get("/v1/bands").json()["total"] == 3  # nothing changed


def test_a_band_added_through_the_api_answers_the_next_request(client):
    assert identify(client, photo("EMPEROR", 5)).json()["status"] == "unknown"
    r = new_band(client)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["name"], out["created"], out["indexed"], len(out["images"])) == ("Emperor", True, True, 1)
    assert out["vectors_added"] == 3
    band = client.get(f"/v1/bands/{out['band']}").json()
    assert (band["genre"], band["formed_year"], band["aliases"], band["external_ids"]) == (
        "Black Metal", 1991, ["The Emperor"], {"ma": "30"})
    assert band["images"][0]["source"] == "emperor.png"
    assert identify(client, photo("EMPEROR", 5)).json()["answer"] == "Emperor"
    gone = client.delete(f"/v1/bands/{out['band']}", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["removed"] == out["band"]
    assert identify(client, photo("EMPEROR", 5)).json()["status"] == "unknown"
    error_of(client.get(f"/v1/bands/{out['band']}"), 404, "not_found")


def test_a_bad_logo_upload_changes_nothing_and_names_the_file(client):
    r = client.post("/v1/bands", headers=AUTH, data={"name": "Blank"},
                    files=[("images", ("blank.png", png(Image.new("RGB", (200, 200), "white")), "image/png"))])
    err = error_of(r, 400, "unreadable_image")
    assert err["message"].startswith("blank.png: blank") and "allow_small=true" in err["hint"]
    assert client.get("/v1/bands?q=blank").json()["total"] == 0
    error_of(client.post("/v1/bands", headers=AUTH, data={"name": "X", "ids": ["nocolon"]}), 422, "bad_parameter")
    error_of(client.post("/v1/bands", headers=AUTH, data={"genre": "no name"}), 422, "bad_parameter")


def test_a_change_made_by_the_cli_is_seen_without_a_restart(client, tmp_path):
    assert identify(client, photo("EMPEROR", 5)).json()["status"] == "unknown"
    p = tmp_path / "emperor.png"
    text_logo("EMPEROR", seed=5).save(p)
    run("add-band", "--name", "Emperor", "--image", p)  # another process's connection, the same home
    assert identify(client, photo("EMPEROR", 5)).json()["answer"] == "Emperor"
    assert [b["name"] for b in client.get("/v1/bands?q=emp").json()["items"]] == ["Emperor"]
    run("remove-band", "Korn")
    assert identify(client, photo("KORN", 3)).json()["status"] == "unknown"
    assert client.get("/v1/stats").json()["catalog"]["bands"] == 3


def test_albums_through_the_api(client):
    cover = jpeg(photo_of(text_logo("GRAND DECLARATION", seed=11), seed=2).resize((400, 400)))
    r = client.post("/v1/albums", headers=AUTH, data={"title": "Grand Declaration", "artist": "Mayhem",
                                                      "year": "2000"},
                    files=[("images", ("cover.jpg", cover, "image/jpeg"))])
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["title"], out["artist"], out["created"]) == ("Grand Declaration", "Mayhem", True)
    listed = client.get("/v1/albums?q=mayhem").json()
    assert [(a["title"], a["year"]) for a in listed["items"]] == [("Grand Declaration", 2000)]
    album = client.get(listed["items"][0]["url"]).json()
    assert album["artist"] == "Mayhem" and len(album["images"]) == 1
    mayhem = client.get(f"/v1/bands/{album['artist_id']}").json()
    assert [a["title"] for a in mayhem["albums"]] == ["Grand Declaration"]
    assert client.delete(f"/v1/albums/{out['album']}", headers=AUTH).json()["title"] == "Grand Declaration"
    assert client.get("/v1/albums").json()["total"] == 0


def test_the_page_and_the_docs_are_served_without_external_requests(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    for text in (page.text, docs.text):
        assert "https://" not in text.replace("https://www.w3.org", "") and "cdn" not in text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/v1/identify", "/v1/identify/batch", "/v1/bands", "/v1/bands/{band_id}", "/v1/albums",
            "/v1/images/{image_id}", "/v1/health", "/v1/stats"} <= set(spec["paths"])
