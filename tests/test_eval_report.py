import json

import numpy as np
import pytest
from PIL import Image

from logoid.eval.metrics import UNKNOWN, accepted_mask, evaluate
from logoid.eval.report import (
    ACCEPTED_UNKNOWN,
    CONFIDENT_WRONG,
    REJECTED_KNOWN,
    confusion_classes,
    failure_cases,
    write_report,
)
from logoid.scoring.results import QueryResult

COLOURS = {"band:1": (200, 30, 30), "band:2": (30, 160, 30), "album:3": (30, 30, 200)}


@pytest.fixture
def world(tmp_path):
    refs = {}
    for key, colour in COLOURS.items():
        p = tmp_path / "refs" / f"{key.replace(':', '_')}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (60, 40), colour).save(p)
        refs[key] = p
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    results = []
    keys = list(COLOURS)
    for i in range(40):
        label = None if i % 4 == 0 else keys[i % 3]
        photo = photos / f"q{i}.jpg"
        Image.new("RGB", (80, 120), (i * 5 % 255, 90, 90)).save(photo)
        ranked = keys[:] if label is None else [label] + [k for k in keys if k != label]
        if i % 7 == 3:  # a few wrong top-1s
            ranked = ranked[1:] + ranked[:1]
        top = rng.uniform(0.2, 0.6) if label is None else rng.uniform(0.45, 0.95)
        results.append(QueryResult(str(photo), label, ranked, [top, top - 0.1, top - 0.2]))
    results.append(QueryResult(str(photos / "missing.jpg"), "band:1", [], []))  # no candidates, unreadable
    return results, refs


def test_write_report_files_and_contents(world, tmp_path):
    results, refs = world
    thr = 0.5
    metrics = evaluate(results, thr)
    out = tmp_path / "report"
    html_path = write_report(out, metrics, results, threshold=thr, label_names={"band:1": "Motörhead"},
                             thumb_for=refs.get, scores_rule_name="fused p")
    assert html_path == out / "report.html"
    assert json.loads((out / "metrics.json").read_text())["top1"] == pytest.approx(metrics["top1"])
    for png in ("confusion.png", "scores.png"):
        with Image.open(out / png) as im:
            assert im.width > 300 and im.height > 200
    fails = sorted((out / "failures").glob("*.jpg"))
    expected = failure_cases(results, accepted_mask(results, thr))
    assert len(fails) == len(expected) > 0
    assert fails[0].name.endswith(f"_{expected[0][0]}.jpg")
    html = html_path.read_text()
    md = (out / "report.md").read_text()
    for f in fails:
        assert f"failures/{f.name}" in html and f"failures/{f.name}" in md
    assert "Motörhead" in html and "open_set_accuracy" in md
    assert len(json.loads((out / "results.json").read_text())) == len(results)
    # Re-running with fewer failures leaves no stale sheets behind.
    write_report(out, metrics, results, threshold=thr, max_failures=2)
    assert len(list((out / "failures").glob("*.jpg"))) == 2


def test_failure_sheet_shows_matched_reference(world, tmp_path):
    results, refs = world
    wrong = next(r for r in results if r.label and r.ranked and r.top1 != r.label)
    wrong.scores[0] = 0.99  # surely accepted: the worst failure
    write_report(tmp_path / "r", {}, results, threshold=0.5, thumb_for=refs.get)
    sheet = Image.open(next((tmp_path / "r" / "failures").glob("00_*.jpg"))).convert("RGB")
    assert sheet.width > 2 * 200  # query + matched + should-be panels
    colours = {tuple(int(v) for v in c[1]) for c in sheet.getcolors(1 << 20) if c[0] > 500}
    matched = COLOURS[wrong.top1]
    assert any(max(abs(a - b) for a, b in zip(c, matched, strict=True)) < 12 for c in colours)


def test_failure_order():
    rs = [
        QueryResult("a", None, ["x"], [0.9]),  # accepted unknown
        QueryResult("b", "x", ["x"], [0.1]),  # rejected known
        QueryResult("c", "x", ["y"], [0.6]),  # confident wrong
        QueryResult("d", "x", ["y"], [0.8]),  # more confident wrong
        QueryResult("e", "x", ["x"], [0.9]),  # fine
    ]
    got = failure_cases(rs, accepted_mask(rs, 0.5))
    assert [(c, r.path) for c, r in got] == [(CONFIDENT_WRONG, "d"), (CONFIDENT_WRONG, "c"), (REJECTED_KNOWN, "b"),
                                             (ACCEPTED_UNKNOWN, "a")]
    assert len(failure_cases(rs, accepted_mask(rs, 0.5), limit=1)) == 1


def test_confusion_classes_keep_the_most_confused():
    truth = [f"c{i}" for i in range(50)] * 2 + ["c7", "c7", UNKNOWN]
    pred = [f"c{i}" for i in range(50)] * 2 + ["c8", UNKNOWN, "c9"]
    classes = confusion_classes(truth, pred, max_classes=5)
    assert len(classes) == 5 and classes[-1] == UNKNOWN
    assert {"c7", "c8", "c9"} <= set(classes)
    assert confusion_classes(["a", "b"], ["a", UNKNOWN]) == ["a", "b", UNKNOWN]


def test_failures_keep_a_share_for_every_category():
    rs = [QueryResult(f"w{i}", "x", ["y"], [0.9]) for i in range(30)]
    rs += [QueryResult(f"r{i}", "x", ["x"], [0.1]) for i in range(2)]
    rs += [QueryResult(f"u{i}", None, ["x"], [0.8]) for i in range(30)]
    got = failure_cases(rs, accepted_mask(rs, 0.5), limit=24)
    cats = [c for c, _ in got]
    assert len(got) == 24
    assert cats.count(REJECTED_KNOWN) == 2 and cats.count(ACCEPTED_UNKNOWN) == 8
    assert cats.count(CONFIDENT_WRONG) == 14  # the unused rejected-known places go to the worst category
    assert cats == sorted(cats, key=[CONFIDENT_WRONG, REJECTED_KNOWN, ACCEPTED_UNKNOWN].index)
