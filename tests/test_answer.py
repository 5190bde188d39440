"""One answer, one JSON: the Python API, `query --json` and `batch` give the same answer in the documented schema."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import PIL.Image
import pytest
from click.testing import CliRunner
from synth import photo_of, text_logo

import logoid
from logoid.cli import cli

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "answer.schema.json").read_text())
CH = ["--channels", "global,local"]


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


@pytest.fixture
def built(tmp_path):
    for band, text, seed in (("Mayhem", "MAYHEM", 1), ("Deftones", "DEFTONES", 2), ("Korn", "KORN", 3)):
        p = tmp_path / f"{band.lower()}.png"
        text_logo(text, seed=seed).save(p)
        run("add-band", "--name", band, "--genre", "metal", "--image", p)
    run("build-index", "--model", "tiny-test", "--variants", "3")


def _without_timings(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "timings"}


def test_query_json_matches_the_schema_and_the_python_api(built, tmp_path):
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("DEFTONES", seed=2)).save(ph)
    cli_answer = json.loads(run("query", ph, *CH, "--json").stdout)
    jsonschema.validate(cli_answer, SCHEMA)
    assert cli_answer["status"] == "ok" and cli_answer["answer"] == "Deftones" and cli_answer["schema"] == "logoid.answer/1"
    assert {"decode", "local", "albums", "total"} <= set(cli_answer["timings"])

    home = logoid.open_home()  # LOGOID_HOME points at this test's home
    ident = logoid.Identifier(home, logoid.Catalog.open(home),
                              config=logoid.IdentifyConfig(channels=("global", "local")))
    api_answer = ident.identify(ph)
    assert api_answer.status == "ok" and api_answer.best.name == "Deftones"
    assert _without_timings(logoid.answer_json(api_answer)) == _without_timings(cli_answer)


def test_a_photo_is_decoded_once(built, tmp_path, monkeypatch):
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("KORN", seed=3)).save(ph)
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda fp, *a, **kw: (opened.append(str(fp)), real_open(fp, *a, **kw))[1])
    ans = json.loads(run("query", ph, *CH, "--json").stdout)
    assert ans["answer"] == "Korn"
    assert opened.count(str(ph)) == 1


def test_batch_has_one_row_per_input_with_its_status(built, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo_of(text_logo("MAYHEM", seed=1)).save(folder / "a_mayhem.jpg")
    photo_of(text_logo("QUIX", seed=9), seed=4).save(folder / "b_unknown.jpg")
    (folder / "c_empty.jpg").write_bytes(b"")
    out = tmp_path / "rows.csv"
    res = run("batch", folder, *CH, "-o", out, "--json")
    data = json.loads(res.stdout)
    for r in data["results"]:
        jsonschema.validate(r, SCHEMA)
    by_name = {Path(r["path"]).name: r for r in data["results"]}
    assert [by_name[n]["status"] for n in ("a_mayhem.jpg", "b_unknown.jpg", "c_empty.jpg")] == ["ok", "unknown", "error"]
    assert by_name["a_mayhem.jpg"]["answer"] == "Mayhem" and by_name["c_empty.jpg"]["error"]
    assert data["summary"] | {"skipped_files": None} == {"photos": 3, "identified": 1, "unknown": 1, "skipped": 1,
                                                          "skipped_files": None}
    with open(out, newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert set(rows) == {"a_mayhem.jpg", "b_unknown.jpg", "c_empty.jpg"}
    assert (rows["a_mayhem.jpg"]["status"], rows["a_mayhem.jpg"]["answer"]) == ("ok", "Mayhem")
    assert rows["c_empty.jpg"]["status"] == "error" and rows["c_empty.jpg"]["error"] == by_name["c_empty.jpg"]["error"]
    assert f"skipping {folder / 'c_empty.jpg'}" in res.stderr


def test_error_json_matches_the_schema():
    jsonschema.validate(logoid.error_json("x.jpg", "not an image"), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**logoid.error_json("x.jpg", "bad"), "status": "maybe"}, SCHEMA)


def test_batch_names_every_path_it_passes_over_in_both_outputs(built, tmp_path):
    """SVGs, symlink loops, dangling links, folders named like images and empty files each get their own row with the
    reason, in the .jsonl (full answers) and the .csv (flat rows); the readable photo is answered."""
    folder = tmp_path / "merch"
    folder.mkdir()
    photo_of(text_logo("KORN", seed=3)).save(folder / "korn.jpg")
    (folder / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "album.jpg").mkdir()
    photo_of(text_logo("MAYHEM", seed=1)).save(folder / "album.jpg" / "inside.jpg")  # a folder is still scanned

    jsonl, table = tmp_path / "out.jsonl", tmp_path / "out.csv"
    res = run("batch", folder, *CH, "-o", jsonl)
    run("batch", folder, *CH, "-o", table)
    answers = {Path(a["path"]).name: a for a in map(json.loads, jsonl.read_text().splitlines())}
    for a in answers.values():
        jsonschema.validate(a, SCHEMA)
    assert {n: a["status"] for n, a in answers.items()} == {
        "korn.jpg": "ok", "inside.jpg": "ok", "logo.svg": "error", "loop.jpg": "error", "gone.png": "error",
        "empty.jpg": "error", "album.jpg": "error"}
    assert answers["korn.jpg"]["answer"] == "Korn" and answers["inside.jpg"]["answer"] == "Mayhem"
    assert "symlink loop" in answers["loop.jpg"]["error"] and "SVG" in answers["logo.svg"]["error"]
    assert "folder" in answers["album.jpg"]["error"]
    for name in ("logo.svg", "loop.jpg", "gone.png", "empty.jpg", "album.jpg"):
        assert f"skipping {folder / name}" in res.stderr
    with open(table, newline="") as f:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(f)}
    assert set(rows) == set(answers)
    assert rows["loop.jpg"]["status"] == "error" and rows["loop.jpg"]["answer"] == "" and rows["loop.jpg"]["score"] == ""
    assert rows["loop.jpg"]["error"] == answers["loop.jpg"]["error"]
