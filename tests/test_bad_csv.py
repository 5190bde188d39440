"""Bad rosters and manifests through `logoid catalog import`: every case generated here, each with its exact outcome
(the rows imported under the right names, the bad lines named with their reason, or rc=1 and one line naming the
file and the fix)."""

from __future__ import annotations

import codecs
import json
import random
import zipfile

import pytest
from click.testing import CliRunner
from PIL import Image

from logoid.cli import cli

HEADER = "Band ID,Name,Country,Genre\n"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def imported(path, *flags) -> dict:
    res = run("catalog", "import", path, *flags, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def names() -> list[str]:
    return [b["name"] for b in json.loads(run("catalog", "list", "--json").stdout)]


def refused(path, *flags) -> str:
    """The one error line of an import that must change nothing."""
    res = run("catalog", "import", path, *flags)
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert names() == []
    return lines[0]


def skipped(report: dict) -> list[tuple[int | None, str]]:
    return [(s["line"], s["reason"]) for s in report["skipped"]]


# ---- encodings -----------------------------------------------------------------------------------
LATIN = HEADER + "1,Mayhem,Norway,Black Metal\n2,Motörhead,United Kingdom,Heavy Metal\n3,Mötley Crüe,USA,Glam\n"


def test_latin1_is_refused_naming_line_byte_and_encoding_then_imported_with_it(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_bytes(LATIN.encode("latin-1"))
    byte = LATIN.encode("latin-1").index("ö".encode("latin-1"))
    line = refused(p)
    assert byte == 60 and LATIN.splitlines()[2].index("ö") == 5  # byte 60 of the file is column 6 of line 3
    assert line == (f"error: {p}: line 3, column 6 (byte offset 60 in the file): not valid utf-8 (0xf6) (pass the "
                    f"file's encoding with "
                    f"--encoding, e.g. --encoding cp1252 (Windows / Latin-1, Western Europe) reads it as "
                    f"'2,Motörhead,United Kingdo')")
    report = imported(p, "--encoding", "latin-1")
    assert (report["added"], report["skipped"], report["encoding"]) == (3, [], "iso8859-1")
    assert names() == ["Mayhem", "Motörhead", "Mötley Crüe"]


def test_the_column_of_a_bad_byte_counts_the_characters_before_it_on_its_line(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_bytes(codecs.BOM_UTF8 + (HEADER + "1,Mötley Crüe,USA,Gl").encode("utf-8") + b"\xe4m\n")  # ä in latin-1
    assert refused(p).startswith(f"error: {p}: line 2, column 21 (byte offset 52 in the file): not valid utf-8 (0xe4)")


@pytest.mark.parametrize("encode,delimiter", [
    (lambda s: codecs.BOM_UTF8 + s.encode("utf-8"), ","),  # Excel's "CSV UTF-8"
    (lambda s: s.encode("utf-8"), ","),
    (lambda s: s.encode("utf-16"), "\t"),  # Excel's "Unicode text": UTF-16 with a BOM, tab-separated
    (lambda s: s.encode("utf-8"), ";"),  # Excel where the decimal point is a comma
])
def test_utf8_with_or_without_bom_utf16_and_other_delimiters_import_exactly(tmp_path, encode, delimiter):
    p = tmp_path / "roster.csv"
    p.write_bytes(encode(LATIN.replace(",", delimiter).replace("\n", "\r\n")))
    report = imported(p)
    assert (report["added"], report["skipped"], report["rows"]) == (3, [], 3)
    assert names() == ["Mayhem", "Motörhead", "Mötley Crüe"]
    assert json.loads(run("catalog", "show", "ma:1", "--json").stdout)["country"] == "Norway"  # BOM not in "Band ID"


def _xlsx(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")


@pytest.mark.parametrize("make,why", [
    (lambda p: Image.new("RGB", (8, 8)).save(p, format="PNG"), "a PNG image"),
    (_xlsx, "a ZIP archive: an .xlsx or .ods workbook?"),
    (lambda p: p.write_bytes(b"Band ID,Name\n1,x\0y\n"), "a NUL byte at byte 16"),
    (lambda p: p.write_bytes(random.Random(0).randbytes(3000).replace(b"\0", b"\1")), "2"),  # no NUL in it
])
def test_binary_file_named_csv_is_not_a_csv(tmp_path, make, why):
    p = tmp_path / "roster.csv"
    make(p)
    line = refused(p)
    assert line.startswith(f"error: {p}: not a CSV file (") and line.endswith("(pass a CSV text file)")
    if why != "2":
        assert line == f"error: {p}: not a CSV file ({why}) (pass a CSV text file)"
    else:
        assert "control bytes in the first 3,000" in line


def test_unknown_encoding_and_a_wrong_explicit_one_name_the_flag(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_bytes(LATIN.encode("latin-1"))
    assert refused(p, "--encoding", "klingon") == ("error: unknown encoding 'klingon' (pass a Python codec name to "
                                                   "--encoding, e.g. utf-8, cp1252, latin-1)")
    assert refused(p, "--encoding", "ascii").endswith("not valid ascii (0xf6) (pass the file's real encoding with "
                                                      "--encoding)")


def test_empty_file_and_header_only(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_text("\n\n")
    assert refused(p) == f"error: {p}: empty file, no header row (pass a CSV whose first line names the columns)"
    p.write_text(HEADER)
    assert imported(p) == {"added": 0, "updated": 0, "images_added": 0, "rows": 0, "lines": 1, "encoding": "utf-8",
                           "skipped": []}


# ---- broken quoting and overlong fields -----------------------------------------------------------
def test_unclosed_quotes_cost_their_own_lines_only(tmp_path):
    """Issue 22: 50 unclosed quotes in 10,000 rows swallowed ~5,000 rows into 50 bands with ~9,600-char names."""
    n, bad = 2000, sorted(random.Random(1).sample(range(2000), 20))
    lines = []
    for i in range(n):
        name = f'"Band {i}' if i in bad else f'"Band, {i}"' if i % 7 == 0 else f"Band {i}"
        lines.append(f"{i},{name},Norway,Black Metal\n")
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + "".join(lines))
    report = imported(p)
    assert report["added"] == n - len(bad) and report["rows"] == n - len(bad) and report["lines"] == n + 1
    assert [s["line"] for s in report["skipped"]] == [i + 2 for i in bad]
    assert all(s["reason"].startswith("unbalanced quote") for s in report["skipped"])
    assert sorted(names()) == sorted(f"Band, {i}" if i % 7 == 0 else f"Band {i}" for i in range(n) if i not in bad)


def test_each_malformed_line_is_named_and_the_good_rows_get_in(tmp_path):
    long_name = "X" * 1500
    rows = [
        '1,Mayhem,"Norway",Black Metal',  # 2: fine
        '2,"Dark Funeral,Sweden,Black Metal',  # 3: quote never closed on this line; 4 is a row of its own
        "3,Emperor,Norway,Black Metal",  # 4
        "4,Crosby, Stills & Nash,USA,Folk",  # 5: unquoted comma → 5 fields
        f'5,"{long_name}",Norway,Noise',  # 6: a field longer than any name
        '6,"Ulver ""Wolves""",Norway,Folk',  # 7: doubled quotes are fine
        '7,12" Vinyl,UK,Rock',  # 8: a lone quote
        '8,"Immortal"x,Norway,Black Metal',  # 9: text after a closing quote
        "",  # 10: blank
        ",,,",  # 11: an empty Excel row
        "9,Enslaved,Norway,Viking",  # 12
        '10,"Borknagar',  # 13: never closed, to the end of the file
    ]
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    report = imported(p)
    assert names() == ["Mayhem", "Emperor", 'Ulver "Wolves"', "Enslaved"]
    assert skipped(report) == [
        (3, "unbalanced quote: the quoted field opened on this line closes on line 6, mid-value"),
        (5, "5 fields but the header has 4 (an unquoted delimiter in a value?)"),
        (6, "field 'Name' is 1,500 characters, over the limit of 1,000 (lines swallowed by an unbalanced quote?)"),
        (8, 'unbalanced quote: an odd number of " on this line'),
        (9, 'text after a closing quote (a " inside a quoted value is written "")'),
        (13, "unbalanced quote: the quoted field opened on this line does not close"),
    ]
    text = run("catalog", "import", p)
    assert text.exit_code == 0
    assert "warning: skipping roster.csv:3: unbalanced quote" in text.stderr
    assert text.stdout.strip() == "imported roster.csv: 0 added, 4 updated, 0 images, 6 skipped"


def test_a_quoted_value_over_several_lines_is_one_row_unless_it_breaks_a_name(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_text('Band ID,Name,Notes,Country\n1,Mayhem,"formed in Oslo\nreformed 1994",Norway\n'
                 '2,"Dark\nFuneral",,Sweden\n3,Emperor,,Norway\n')
    report = imported(p)
    assert (report["rows"], report["lines"]) == (2, 6)  # 2 rows from 5 data lines: one is 2 lines, one refused
    assert skipped(report) == [(4, "lines 4-5: a line break inside 'Name'")]
    assert names() == ["Mayhem", "Emperor"]


# ---- duplicates in one file -------------------------------------------------------------------------
def test_two_rows_with_one_band_id_are_reported_not_applied(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + "17,Alpha,Norway,Black Metal\n18,Gamma,Sweden,Death Metal\n17,Beta,Norway,Black Metal\n"
                 "19,Delta,Chile,Thrash\n19,Delta,Chile,Thrash\n,Mayhem,Norway,\n,Mayhem,Chile,\n")
    report = imported(p)
    assert (report["added"], report["updated"]) == (2, 0)
    assert names() == ["Gamma", "Delta"]
    assert skipped(report) == [
        (2, "band id 17 is also on line 4 with other values; none of them imported: keep one"),
        (4, "band id 17 is also on line 2 with other values; none of them imported: keep one"),
        (6, "repeats line 5 (band id 19): imported once"),
        (7, "band 'mayhem' (no band id) is also on line 8 with other values; none of them imported: keep one"),
        (8, "band 'mayhem' (no band id) is also on line 7 with other values; none of them imported: keep one"),
    ]


def test_nothing_imported_exits_1_after_naming_every_line(tmp_path):
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + "17,Alpha,Norway,\n17,Beta,Norway,\n")
    res = run("catalog", "import", p)
    assert res.exit_code == 1 and names() == []
    why = "band id 17 is also on line {} with other values; none of them imported: keep one"
    assert res.stderr.splitlines() == [f"warning: skipping roster.csv:2: {why.format(3)}",
                                       f"warning: skipping roster.csv:3: {why.format(2)}"]


# ---- images named by the roster ----------------------------------------------------------------------
def test_tiny_and_blank_images_are_skipped_with_the_row_line_unless_allowed(tmp_path):
    images = tmp_path / "logos"
    images.mkdir()
    Image.new("RGB", (1, 1), (0, 0, 0)).save(images / "1.png")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(images / "2.png")
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + "1,Tiny,Norway,\n2,Clear,Norway,\n")
    report = imported(p, "--images", images)
    assert (report["added"], report["images_added"]) == (2, 0)
    fix = " (use another image, or keep it anyway with --allow-small)"
    assert [(s["where"], s["line"], s["reason"]) for s in report["skipped"]] == [
        (str(images / "1.png"), 2, "too small: 1x1 px, at least 16 px on each side" + fix),
        (str(images / "2.png"), 3, "blank: one colour (#ffffff) everywhere, transparent or plain" + fix),
    ]
    assert run("catalog", "import", p, "--images", images).stderr.splitlines()[0] == (
        f"warning: skipping {images / '1.png'} (line 2): too small: 1x1 px, at least 16 px on each side{fix}")
    again = imported(p, "--images", images, "--allow-small")
    assert (again["images_added"], again["skipped"]) == (2, [])


def test_identical_image_files_for_one_band_are_named_as_skipped(tmp_path):
    images = tmp_path / "logos"
    (images / "1").mkdir(parents=True)
    text = tmp_path / "a.png"
    Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 50).convert("RGB").save(text)
    for name in ("a.png", "b.png"):  # byte-identical: one image, two files
        (images / "1" / name).write_bytes(text.read_bytes())
    (images / "2.png").write_bytes(text.read_bytes())  # the same picture for another band is that band's own
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + "1,Mayhem,Norway,\n2,Emperor,Norway,\n")
    for stored in (2, 0):  # a re-import names it again
        report = imported(p, "--images", images)
        assert report["images_added"] == stored
        assert [(s["where"], s["line"], s["reason"]) for s in report["skipped"]] == [
            (str(images / "1" / "b.png"), 2, f"same image as {images / '1' / 'a.png'}: stored once")]
    assert [len(json.loads(run("catalog", "show", b, "--json").stdout)["images"]) for b in ("1", "2")] == [1, 1]


# ---- album manifests ------------------------------------------------------------------------------------
def test_album_manifest_bad_json_encoding_and_duplicates(tmp_path):
    m = tmp_path / "albums.json"
    m.write_text('[{"title": "Chimera", "artist": "Mayhem",}]')
    assert refused(m) == (f"error: {m}: line 1, column 42: not valid JSON (Expecting property name enclosed in "
                          "double quotes) (fix the JSON (a list of albums), or pass a CSV)")
    m.write_bytes('[{"title": "Motörhead", "artist": "Motörhead"}]'.encode("latin-1"))
    assert refused(m).startswith(f"error: {m}: line 1, column 16 (byte offset 15 in the file): not valid utf-8 (0xf6) "
                                 "(pass the file's encoding")
    m.write_text(json.dumps([
        {"title": "Chimera", "artist": "Mayhem", "year": 2004},
        {"title": "Chimera", "artist": "Mayhem", "year": 2005},
        {"title": "Ordo Ad Chao", "artist": "Mayhem", "year": 2007},
        {"title": "Ordo Ad Chao", "artist": "Mayhem", "year": 2007},
        {"title": "T" * 2000, "artist": "Mayhem"},
        "not an album",
    ], indent=1))
    report = imported(m)
    assert [a["title"] for a in json.loads(run("catalog", "list", "--albums", "--json").stdout)] == ["Ordo Ad Chao"]
    assert skipped(report) == [
        (2, "album 'chimera' by 'mayhem' is also on line 7 with other values; none of them imported: keep one"),
        (7, "album 'chimera' by 'mayhem' is also on line 2 with other values; none of them imported: keep one"),
        (17, "repeats line 12 (album 'ordo ad chao' by 'mayhem'): imported once"),
        (22, "title is 2,000 characters, over the limit of 1,000"),
        (26, "not an object"),
    ]


def test_a_quote_closed_rows_later_costs_only_its_own_line(tmp_path):
    """A quote opened on line 2 and closed on line 5 would make one band of lines 2-5 (A2-A4 swallowed into its
    genre): the line that opened it is set aside, the rows it took in are read as rows, the closing line is refused."""
    p = tmp_path / "roster.csv"
    p.write_text(HEADER + '1,A1,UK,"Heavy\n2,A2,UK,Doom\n3,A3,UK,Doom\n4,A4,UK,Doom"\n5,A5,UK,Doom\n')
    report = imported(p)
    assert names() == ["A2", "A3", "A5"]
    assert (report["added"], report["rows"], report["lines"]) == (3, 3, 6)
    assert skipped(report) == [
        (2, "unbalanced quote: the quoted field opened on this line runs on to line 5, swallowing line 3"),
        (5, 'unbalanced quote: an odd number of " on this line'),
    ]
