"""A build-index killed (SIGKILL, a real process) in the middle of embedding or of local feature extraction, then run
again: the rerun takes every image the killed one finished from the caches, computes only the rest, and writes the
same index (vectors, descriptors, answers) as a build that was never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import faiss
import numpy as np
import pytest
from click.testing import CliRunner
from synth import photo_of, text_logo

from logoid.catalog import Catalog
from logoid.cli import cli
from logoid.core.paths import Home
from logoid.index.store import IndexStore

N_IMAGES, VARIANTS, KILL_AT = 6, 3, 4  # the kill comes after the 4th image of a stage has reached its cache
BUILD = ["build-index", "--model", "tiny-test", "--variants", str(VARIANTS), "--no-names"]
CH = ["--channels", "global,local"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    logos = [root / f"band{i}.png" for i in range(N_IMAGES)]
    for i, p in enumerate(logos):
        _logo(i).save(p)
    photos = [root / f"photo{i}.jpg" for i in (0, 3)]
    for i, p in zip((0, 3), photos, strict=True):
        photo_of(_logo(i)).save(p)
    template = Home(root / "template")
    template.ensure()
    with Catalog.open(template) as cat:
        for i, logo in enumerate(logos):
            cat.add_image("band", cat.add_band(f"Band {i}").id, logo)
    whole = _copy(template.root, root / "whole")
    report = _build(whole)
    assert (report["embedded"], report["cached"]) == (N_IMAGES * VARIANTS, 0)
    assert (report["features_extracted"], report["features_cached"]) == (N_IMAGES, 0)
    return root, template.root, photos, _index(whole), _answers(whole, photos)


def _logo(i: int):
    return text_logo(f"RX{i}QZ"[: 3 + i % 3], seed=10 + i)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _build(home) -> dict:
    res = CliRunner().invoke(cli, ["--home", str(home), *BUILD, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _killed_build(home, step: str) -> None:
    env = {**os.environ, "LOGOID_FAULT": f"{step}@{KILL_AT}", "LOGOID_HOME": str(home)}
    res = subprocess.run([sys.executable, "-m", "logoid", *BUILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == -9, res.stderr  # SIGKILLed at the fault point, nothing after it ran


def _index(home) -> dict:
    """Every array the index holds, ordered by id, and its sidecar without the build's time and file names."""
    store = IndexStore.load(home / "index")
    try:
        vecs, ids = store.require_vectors().vectors_and_ids()
        order = np.argsort(ids)
        d = store.descriptors
        inner = faiss.downcast_index(d._index)
        desc_ids = faiss.vector_to_array(inner.id_map)
        desc = faiss.downcast_index(inner.index).reconstruct_n(0, d.ntotal)
        xy = {i: d.ref_xy(i, v) for i in d.image_ids() for v in (0, 1)}
        meta = {k: v for k, v in store.meta.items() if k not in ("built_at", "updated_at", "files")}
        return {"ids": ids[order], "vectors": vecs[order], "desc_ids": desc_ids, "desc": desc, "xy": xy,
                "meta": meta}
    finally:
        store.close()


def _answers(home, photos) -> list[dict]:
    out = []
    for p in photos:
        res = CliRunner().invoke(cli, ["--home", str(home), "query", str(p), *CH, "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        ans = json.loads(res.stdout)
        ans.pop("timings")
        out.append(ans)
    return out


def _assert_same_index(got: dict, want: dict) -> None:
    for key in ("ids", "vectors", "desc_ids", "desc"):
        assert got[key].shape == want[key].shape and got[key].size > 0, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["xy"].keys() == want["xy"].keys()
    for k in want["xy"]:
        np.testing.assert_array_equal(got["xy"][k], want["xy"][k])
    assert got["meta"] == want["meta"]


@pytest.mark.parametrize("step, reused", [
    # killed while embedding: the first KILL_AT images' vectors are cached, no local features were extracted yet
    ("build-image-embedded", {"embedded": (N_IMAGES - KILL_AT) * VARIANTS, "cached": KILL_AT * VARIANTS,
                              "features_extracted": N_IMAGES, "features_cached": 0}),
    # killed while extracting local features: every vector and the first KILL_AT images' features are cached
    ("build-image-features", {"embedded": 0, "cached": N_IMAGES * VARIANTS,
                              "features_extracted": N_IMAGES - KILL_AT, "features_cached": KILL_AT}),
])
def test_killed_build_resumes_where_it_stopped(kit, step, reused):
    root, template, photos, whole_index, whole_answers = kit
    home = _copy(template, root / step)
    _killed_build(home, step)
    assert not IndexStore.exists(home / "index")  # the killed build wrote no index
    leftovers = [p for p in (home / "cache").rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []  # no half-written cache file: each one was renamed into place whole
    # a kill inside a write (between the temp file and its rename) leaves the temp file: the rerun deletes it
    partial = [d / f".{d.name}-0.npz.k1ll3d.tmp" for d in (home / "cache" / "features").glob("*/*")][:1]
    for p in partial:
        p.write_bytes(b"PK\x03\x04")

    report = _build(home)
    assert not any(p.exists() for p in partial)
    assert {k: report[k] for k in reused} == reused
    assert (report["images"], report["vectors"], report["skipped"]) == (N_IMAGES, N_IMAGES * VARIANTS, [])
    _assert_same_index(_index(home), whole_index)
    assert _answers(home, photos) == whole_answers
    assert whole_answers[0]["answer"] == "Band 0" and whole_answers[1]["answer"] == "Band 3"

    again = _build(home)  # and a third run computes nothing at all
    assert (again["embedded"], again["features_extracted"]) == (0, 0)


def test_build_shows_a_bar_per_stage_with_rate_and_eta(kit, tmp_path):
    """stderr: an embedding bar counting variants and a local-feature bar counting images, each with its rate and
    time left; stdout with --json: the JSON report alone."""
    _, template, *_ = kit
    home = _copy(template, tmp_path / "home")
    # TQDM_MININTERVAL=0: every update is drawn, however fast (or slow) this machine is today
    env = {**os.environ, "LOGOID_PROGRESS": "1", "LOGOID_HOME": str(home), "TQDM_MININTERVAL": "0"}
    res = subprocess.run([sys.executable, "-m", "logoid", *BUILD, "--json"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["images"] == N_IMAGES
    frames = [f.strip() for f in res.stderr.replace("\r", "\n").splitlines() if f.strip()]
    total = N_IMAGES * VARIANTS
    emb = [f for f in frames if f.startswith("embedding:")]
    loc = [f for f in frames if f.startswith("local features:")]
    # the embedding bar's total is every variant, the local-feature bar's every image (the work each stage does)
    assert emb and all(f"/{total} [" in f and f.endswith("variant/s]") for f in emb), emb
    assert loc and all(f"/{N_IMAGES} [" in f and f.endswith("img/s]") for f in loc), loc
    # once a stage is under way its frames carry elapsed<remaining (tqdm's ETA) and a rate
    assert [f for f in emb if "<" in f and "?" not in f], emb
