"""The CLI as a user drives it: catalog → build-index → query / batch / add / remove, bad input, eval."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth import photo_of, text_logo

from logoid.cli import cli

FAST = ["--model", "tiny-test", "--variants", "3"]
CH = ["--channels", "global,local"]  # the text channel has its own tests; keep these fast


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


@pytest.fixture
def logos(tmp_path):
    names = {"Mayhem": ("MAYHEM", 1), "Deftones": ("DEFTONES", 2), "Korn": ("KORN", 3)}
    paths = {}
    for band, (text, seed) in names.items():
        p = tmp_path / f"{band.lower()}.png"
        text_logo(text, seed=seed).save(p)
        paths[band] = p
    return paths


@pytest.fixture
def built(logos):
    for band, p in logos.items():
        run("add-band", "--name", band, "--genre", "metal", "--image", p)
    out = json.loads(run("build-index", *FAST, "--json").stdout)
    assert out["images"] == 3 and out["vectors"] == 9 and out["descriptors"] > 0
    return logos


def test_query_finds_printed_logo_and_rejects_unknown(built, tmp_path):
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("DEFTONES", seed=2)).save(ph)
    ans = json.loads(run("query", ph, *CH, "--json").stdout)
    assert ans["accepted"] and ans["answer"] == "Deftones"
    assert "local" in ans["candidates"][0]["channels"] and ans["candidates"][0]["polygon"]
    unk = tmp_path / "unknown.jpg"
    photo_of(text_logo("QUIX", seed=9), seed=4).save(unk)  # shares no letter with a catalog logo
    ans = json.loads(run("query", unk, *CH, "--json").stdout)
    assert not ans["accepted"] and ans["answer"] == "unknown"
    text = run("query", ph, *CH, "--explain").output
    assert "Deftones" in text and "timings" in text


def test_query_draw_writes_outline(built, tmp_path):
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("MAYHEM", seed=1)).save(ph)
    out = tmp_path / "drawn.png"
    run("query", ph, *CH, "--draw", out)
    assert out.exists() and out.stat().st_size > 1000


def test_add_then_remove_band_without_rebuild(built, tmp_path):
    p = tmp_path / "slayer.png"
    text_logo("SLAYER", seed=9).save(p)
    added = json.loads(run("add-band", "--name", "Slayer", "--image", p, "--json").stdout)
    assert added["indexed"] and added["vectors_added"] == 3
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("SLAYER", seed=9)).save(ph)
    assert json.loads(run("query", ph, *CH, "--json").stdout)["answer"] == "Slayer"
    run("remove-band", "Slayer")
    ans = json.loads(run("query", ph, *CH, "--json").stdout)
    assert ans["answer"] != "Slayer"
    names = [b["name"] for b in json.loads(run("catalog", "list", "--json").stdout)]
    assert "Slayer" not in names


def test_batch_skips_bad_files_and_writes_csv(built, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    photo_of(text_logo("KORN", seed=3)).save(folder / "sub" / "korn.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_text("not an image")
    out = tmp_path / "results.csv"
    res = run("batch", folder, *CH, "-o", out, "--json")
    data = json.loads(res.stdout)
    assert data["summary"]["photos"] == 3 and data["summary"]["skipped"] == 2
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    by_file = {r["path"].rsplit("/", 1)[-1]: r for r in rows}  # one row per input, skipped files included
    assert by_file["korn.jpg"]["answer"] == "Korn" and by_file["korn.jpg"]["status"] == "ok"
    assert {by_file["empty.jpg"]["status"], by_file["broken.png"]["status"]} == {"error"}
    assert by_file["empty.jpg"]["error"] and by_file["broken.png"]["error"]
    assert "skipping" in res.stderr


def test_bad_input_is_one_line_error_exit_1(built, tmp_path):
    res = run("query", tmp_path / "nope.jpg", ok=False)
    assert res.exit_code == 1
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1 and "nope.jpg" in res.stderr
    bad = tmp_path / "bad.jpg"
    bad.write_text("x")
    res = run("add-band", "--name", "X", "--image", bad, ok=False)
    assert res.exit_code == 1 and "bad.jpg" in res.stderr
    assert "X" not in [b["name"] for b in json.loads(run("catalog", "list", "--json").stdout)]
    assert run("query", ok=False).exit_code == 2  # usage error


def test_build_index_on_empty_catalog_says_what_to_do():
    res = run("build-index", *FAST, ok=False)
    assert res.exit_code == 1 and "add-band" in res.stderr


def test_index_from_another_model_is_refused(built, tmp_path, _isolated_home):
    side = _isolated_home / "index" / "logoid-index.json"
    meta = json.loads(side.read_text())
    meta["model"]["weights_sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    ph = tmp_path / "p.jpg"
    photo_of(text_logo("KORN", seed=3)).save(ph)
    res = run("query", ph, *CH, ok=False)
    assert res.exit_code == 1 and "rebuild" in res.stderr


def test_rebuild_uses_cache(built):
    out = json.loads(run("build-index", *FAST, "--json").stdout)
    assert out["embedded"] == 0 and out["cached"] == 9


def test_rerank_budget_is_kept_with_the_descriptor_index(logos, tmp_path):
    import os

    from logoid.index.store import IndexStore

    for band, p in logos.items():
        run("add-band", "--name", band, "--image", p)
    run("build-index", *FAST, "--rerank-budget-mb", "0")
    store = IndexStore.load(Path(os.environ["LOGOID_HOME"]) / "index")
    assert store.descriptors.config.rerank_budget_mb == 0
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("KORN", seed=3)).save(ph)
    assert json.loads(run("query", ph, *CH, "--json").stdout)["answer"] == "Korn"
    bad = run("build-index", *FAST, "--rerank-budget-mb", "-1", ok=False)
    assert bad.exit_code == 2 and "--rerank-budget-mb" in bad.output


def test_catalog_import_show_and_reimport(tmp_path, logos):
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "3540.png").write_bytes(logos["Mayhem"].read_bytes())
    roster = tmp_path / "roster.csv"
    roster.write_text("Band ID,Name,Country,Genre\n3540,Mayhem,Norway,Black Metal\n77,Darkthrone,Norway,Black Metal\n")
    first = json.loads(run("catalog", "import", roster, "--images", images, "--json").stdout)
    assert first["added"] == 2 and first["images_added"] == 1
    again = json.loads(run("catalog", "import", roster, "--images", images, "--json").stdout)
    assert again["added"] == 0
    shown = json.loads(run("catalog", "show", "ma:3540", "--json").stdout)
    assert shown["name"] == "Mayhem" and shown["country"] == "Norway" and len(shown["images"]) == 1


def test_calibrate_and_eval_with_report(built, tmp_path):
    rows = ["photo,label,split"]
    for i, (band, text, seed) in enumerate([("Mayhem", "MAYHEM", 1), ("Deftones", "DEFTONES", 2),
                                             ("Korn", "KORN", 3)]):
        for split in ("calib", "test"):
            p = tmp_path / f"{band}-{split}.jpg"
            photo_of(text_logo(text, seed=seed), seed=i + (10 if split == "test" else 0)).save(p)
            rows.append(f"{p.name},{band},{split}")
    for j, split in enumerate(("calib", "test")):
        p = tmp_path / f"unknown-{split}.jpg"
        photo_of(text_logo("QUIX", seed=9), seed=20 + j).save(p)
        rows.append(f"{p.name},unknown,{split}")
    manifest = tmp_path / "queries.csv"
    manifest.write_text("\n".join(rows) + "\n")
    cal = json.loads(run("calibrate", manifest, "--json").stdout)
    assert cal["queries"] == 4 and cal["calibration"]["rule"] in ("max_score", "margin", "ratio")
    report = tmp_path / "report"
    m = json.loads(run("eval", manifest, "--split", "test", *CH, "--report", report, "--json").stdout)
    assert m["n_known"] == 3 and m["n_unknown"] == 1 and m["top1"] == 1.0
    assert (report / "report.html").exists() and (report / "confusion.png").exists()


def test_augment_preview_and_models(tmp_path, logos):
    out = tmp_path / "sheet.png"
    run("augment", "preview", logos["Korn"], "-o", out, "--variants", "6")
    assert out.exists()
    assert "logoid-effl0-minilm" in run("models").output


def test_subprocess_end_to_end(built, tmp_path, _isolated_home):
    ph = tmp_path / "photo.jpg"
    photo_of(text_logo("MAYHEM", seed=1)).save(ph)
    res = subprocess.run([sys.executable, "-m", "logoid", "--home", str(_isolated_home), "query", str(ph),
                          "--channels", "global,local", "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["answer"] == "Mayhem"
    ver = subprocess.run([sys.executable, "-m", "logoid", "--version"], capture_output=True, text=True)
    assert ver.returncode == 0 and "logoid" in ver.stdout


def test_finetune_then_build_with_checkpoint(tmp_path, logos):
    for band, p in logos.items():
        run("add-band", "--name", band, "--genre", "metal", "--image", p)
    extra = tmp_path / "x.png"
    text_logo("QUIX", seed=9).save(extra)
    run("add-band", "--name", "Quix", "--image", extra)
    ckpt = tmp_path / "ft"
    out = json.loads(run("finetune", "--base", "tiny-test", "--epochs", "2", "--variants", "2", "--batch-size", "4",
                         "--val-fraction", "0.5", "-o", ckpt, "--json").stdout)
    assert (ckpt / "model.safetensors").exists() and out["checkpoint"] == str(ckpt)
    built = json.loads(run("build-index", "--model", ckpt, "--variants", "2", "--json").stdout)
    assert built["vectors"] == 8
    # The index now records the fine-tuned model; the base model is refused for it.
    res = run("query", extra, "--model", "tiny-test", "--channels", "global", ok=False)
    assert res.exit_code == 1 and "rebuild" in res.stderr


def test_name_only_roster_is_found_by_text(tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    roster = tmp_path / "roster.csv"
    roster.write_text("Band ID,Name,Country,Genre\n1,Deftones,USA,Alt Metal\n2,Metallica,USA,Thrash\n"
                      "3,Metallics,USA,Thrash\n")
    run("catalog", "import", roster)
    run("build-index", *FAST)
    img = Image.new("RGB", (800, 400), (30, 30, 30))
    ImageDraw.Draw(img).text((400, 200), "METALLICA", font=ImageFont.load_default(size=90), fill=(230, 230, 230),
                             anchor="mm")
    ph = tmp_path / "shirt.jpg"
    img.save(ph)
    ans = json.loads(run("query", ph, "--json").stdout)
    assert ans["accepted"] and ans["answer"] == "Metallica"  # the look-alike Metallics does not steal it
    assert ans["candidates"][0]["channels"] == ["text"] and ans["read"][0]["text"].upper() == "METALLICA"
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (400, 300), (90, 90, 90)).save(blank)
    ans = json.loads(run("query", blank, "--json").stdout)
    assert not ans["accepted"] and ans["candidates"] == []


def test_add_album_then_query_names_album_and_artist(built, tmp_path):
    cover = tmp_path / "cover.png"
    text_logo("CHIMERA", size=(400, 400), font_size=80, seed=12).save(cover)
    out = json.loads(run("add-album", "--title", "Chimera", "--artist", "Mayhem", "--year", "2004", "--image", cover,
                         "--json").stdout)
    assert out["artist"] == "Mayhem" and out["vectors_added"] == 3
    ph = tmp_path / "sleeve.jpg"
    photo_of(text_logo("CHIMERA", size=(400, 400), font_size=80, seed=12),
             quad=((200, 120), (520, 140), (510, 460), (190, 440))).save(ph)
    ans = json.loads(run("query", ph, *CH, "--json").stdout)
    assert ans["accepted"] and ans["entity"].startswith("album:")
    assert "Mayhem" in ans["answer"] and "Chimera" in ans["answer"]
