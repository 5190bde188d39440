"""NameIndex and normalise(): fuzzy matching of read text against catalog names (no OCR, no shared data)."""

from __future__ import annotations

import random
import string
from types import SimpleNamespace

import pytest

from logoid.core.errors import IndexMismatchError, IndexMissingError
from logoid.index.names import NameIndex, name_similarity, normalise

BANDS = [
    ("band:1", "Metallica"),
    ("band:2", "Metallics"),
    ("band:3", "The Cure"),
    ("band:4", "Iron Maiden"),
    ("band:5", "Mötley Crüe"),
    ("band:6", "Guns N' Roses"),
    ("band:7", "Kiss"),
    ("band:8", "Sum 41"),
    ("album:9", "Master of Puppets"),
]


@pytest.fixture
def index() -> NameIndex:
    return NameIndex(BANDS)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Mötley Crüe", "motley crue"),
        ("  GUNS  N' ROSES!! ", "guns n roses"),
        ("R.E.M.", "rem"),
        ("Simon & Garfunkel", "simon and garfunkel"),
        ("M3T4LL1C4", "metallica"),
        ("$l@yer", "slayer"),
        ("Sigur Rós / Mø", "sigur ros mo"),
        ("AC/DC", "ac dc"),
        ("", ""),
    ],
)
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_leet_read_matches_plain_name():
    # "5LAY3R" (OCR or stylised lettering) and "Slayer" normalise identically.
    assert normalise("5LAY3R") == normalise("Slayer")


def test_exact_name_wins_over_lookalike_with_margin(index):
    ms = index.match("METALLICA")
    assert [m.entity_key for m in ms[:2]] == ["band:1", "band:2"]
    assert ms[0].similarity == pytest.approx(1.0)
    assert ms[0].similarity - ms[1].similarity >= 0.1
    # And the other way round.
    assert index.match("Metallics")[0].entity_key == "band:2"


def test_one_result_per_entity_best_first(index):
    ms = index.match(["THE CURE"], k=10)
    keys = [m.entity_key for m in ms]
    assert keys[0] == "band:3"
    assert len(keys) == len(set(keys))
    sims = [m.similarity for m in ms]
    assert sims == sorted(sims, reverse=True)


def test_auto_alias_without_the(index):
    m = index.match("CURE")[0]
    assert (m.entity_key, m.name, m.similarity) == ("band:3", "Cure", 1.0)


def test_logo_split_over_two_lines(index):
    m = index.match(["IRON", "MAIDEN"])[0]
    assert m.entity_key == "band:4" and m.similarity == pytest.approx(1.0)
    assert m.coverage == pytest.approx(1.0)


def test_ocr_lines_objects_and_confidence(index):
    lines = [SimpleNamespace(text="MOTLEY CRUE", conf=0.8)]
    m = index.match(lines)[0]
    assert m.entity_key == "band:5" and m.line_conf == pytest.approx(0.8)


def test_name_inside_long_text_scores_lower_with_low_coverage(index):
    alone = index.match("Metallica")[0]
    inside = index.match("metallica world tour summer twenty five")[0]
    assert inside.entity_key == "band:1"
    assert inside.similarity < alone.similarity - 0.2
    assert inside.coverage < 0.4


def test_typo_still_matches(index):
    assert index.match("MASTER 0F PUPPET5")[0].entity_key == "album:9"
    assert index.match("IRON MA1DEN")[0].entity_key == "band:4"


def test_unrelated_text_has_low_similarity(index):
    ms = index.match(["OPEN 24 HOURS", "FREE PARKING"])
    assert not ms or ms[0].similarity < 0.6


def test_short_strings_are_discounted():
    assert name_similarity("kis", "kiss") < name_similarity("kiss", "kiss")
    assert name_similarity("ab", "ab") < 0.95


def test_remove_and_len(index):
    n = len(index)
    assert index.remove("band:1") == 1
    assert len(index) == n - 1
    assert "band:1" not in index
    assert all(m.entity_key != "band:1" for m in index.match("METALLICA", k=10))
    assert index.remove("band:1") == 0
    index.add(("band:1", "Metallica"))
    assert index.match("METALLICA")[0].entity_key == "band:1"


def test_add_pair_with_aliases(index):
    index.add(("band:10", "Black Sabbath"), aliases=["Sabbath"])
    assert index.match("SABBATH")[0].entity_key == "band:10"


def test_save_load_roundtrip(index, tmp_path):
    index.remove("band:2")
    p = tmp_path / "sub" / "names.npz"
    index.save(p)
    back = NameIndex.load(p)
    assert len(back) == len(index)
    assert sorted(back._by_key) == sorted(index._by_key)
    for q in ("METALLICA", "CURE", "guns n roses", "Sum 4I"):
        a, b = index.match(q, k=3), back.match(q, k=3)
        assert [(m.entity_key, m.name, m.similarity) for m in a] == [(m.entity_key, m.name, m.similarity) for m in b]
    assert not list(p.parent.glob(".*"))  # no temp file left behind


def test_load_errors(tmp_path):
    with pytest.raises(IndexMissingError):
        NameIndex.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(IndexMismatchError):
        NameIndex.load(bad)


def test_empty_inputs():
    ix = NameIndex()
    assert ix.match("anything") == []
    assert NameIndex(BANDS).match(["", "  ", "!!"]) == []


def test_scales_to_many_names_and_finds_the_right_one():
    rng = random.Random(0)
    names = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 14))) for _ in range(20_000)]
    ix = NameIndex([(f"g{i}", n) for i, n in enumerate(names)] + BANDS)
    for key, name in BANDS[:4]:
        assert ix.match(name.upper())[0].entity_key == key
    # A one-letter OCR slip on a random name still comes back first.
    target = names[1234]
    slipped = target[:3] + ("x" if target[3] != "x" else "y") + target[4:]
    assert ix.match(slipped)[0].entity_key == "g1234"
    # Names added after the postings were built are found too (scored exhaustively until the next rebuild).
    assert ix._n_built > 0
    ix.add(("band:new", "Zyxwvut Orchestra"))
    assert ix.match("ZYXWVUT ORCHESTRA")[0].entity_key == "band:new"
    ix.remove("g1234")
    assert all(m.entity_key != "g1234" for m in ix.match(slipped, k=10))


def test_name_explaining_all_lines_beats_one_line_read_exactly():
    # A big roster holds a one-word name for nearly any word read; the name that explains both lines wins even
    # with a misread letter group ("CORER").
    idx = NameIndex([("band:1", "Alice"), ("band:2", "Alice Cooper"), ("band:3", "Corpse"),
                     ("band:4", "Cannibal Corpse")])
    assert idx.match(["ALICE", "CORER"])[0].entity_key == "band:2"
    assert idx.match(["CANNIBAI", "CORPSE"])[0].entity_key == "band:4"
    assert idx.match(["ALICE"])[0].entity_key == "band:1"
