"""The descriptor index in Milvus (Milvus Lite in a temp file) against the FAISS one: same neighbours, add/remove,
the pending log across a crash, and the CLI's answers with ``build-index --backend milvus``."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from logoid.engine.local import DESC_DIM, INVERTED_ORDER, Features
from logoid.index.descriptor_structure import DescriptorConfig
from logoid.index.descriptors import DescriptorIndex
from logoid.index.milvus import MilvusConfig, connect
from logoid.index.milvus_descriptors import SUFFIX, MilvusDescriptorIndex
from logoid.index.store import SIDECAR, IndexStore

HAVE_MILVUS = all(importlib.util.find_spec(m) is not None for m in ("pymilvus", "milvus_lite"))
pytestmark = pytest.mark.skipif(not HAVE_MILVUS, reason="pymilvus / milvus-lite not installed "
                                                        "(pip install 'logoid[milvus]')")

N_IMAGES, K = 24, 8


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _feats(rng, centre, n) -> Features:
    desc = _unit(np.abs(centre + 0.5 * rng.normal(size=(n, DESC_DIM))))
    return Features(xy=rng.uniform(0, 200, size=(n, 2)).astype(np.float32), desc=desc, size=(200, 120))


@pytest.fixture
def data():
    """Per image a normal and an inverted variant of clustered descriptors (the inverted one, as extraction makes
    it, the normal's first keypoints contrast-flipped); queries near images 3 and 7."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(N_IMAGES + 1, DESC_DIM))
    items = []
    for i in range(1, N_IMAGES + 1):
        normal = _feats(rng, centres[i], 20 + i)
        inverted = Features(xy=normal.xy[:10 + i], desc=normal.desc[:10 + i, INVERTED_ORDER], size=normal.size)
        items.append((i, [normal, inverted]))
    queries = np.concatenate([_feats(rng, centres[3], 30).desc, _feats(rng, centres[7], 30).desc])
    return items, queries


def _same(a, b):
    (da, oa), (db, ob) = a, b
    assert np.array_equal(oa, ob)
    fin = np.isfinite(db)
    assert np.array_equal(np.isfinite(da), fin) and np.abs(da[fin] - db[fin]).max() < 1e-4


def _pair(items, tmp_path, cfg=None, flip=True):
    cfg = cfg or MilvusConfig(uri=str(tmp_path / "milvus.db"))
    return (DescriptorIndex.build(items, DescriptorConfig(flip_inverted=flip)),
            MilvusDescriptorIndex.build(items, cfg, cfg.collection_for(1) + SUFFIX, flip_inverted=flip))


@pytest.mark.parametrize("flip", [True, False], ids=["inverted-by-flip", "both-stored"])
def test_same_neighbours_as_faiss(data, tmp_path, flip):
    items, q = data
    faiss_idx, mil = _pair(items, tmp_path, flip=flip)
    assert mil.ntotal == faiss_idx.ntotal == sum(len(f) for _, fs in items for f in (fs[:1] if flip else fs))
    assert mil.image_ids() == faiss_idx.image_ids() == list(range(1, N_IMAGES + 1))
    for k in (2, K, 100):
        _same(mil.search(q, k), faiss_idx.search(q, k))
    _same(mil.search(q, K, restrict=[5, 7, 99]), faiss_idx.search(q, K, restrict=[5, 7, 99]))
    assert np.array_equal(mil.ref_xy(4, 1), faiss_idx.ref_xy(4, 1)) and mil.ref_size(4) == faiss_idx.ref_size(4)
    D, owners = mil.search(q, K)
    assert (owners[:30, 0, 0] == 3).all() and (owners[30:, 0, 0] == 7).all()  # the data do what they say


@pytest.mark.parametrize("kind", ["IVF_FLAT", "IVF_SQ8"])
def test_ivf_collections_find_the_same_references(data, tmp_path, kind):
    """The server-path index types on Milvus Lite, every list probed: the same nearest reference keypoint as FAISS's
    exact search for nearly every photo descriptor (IVF_SQ8's 8-bit codes may swap near ties)."""
    items, q = data
    cfg = MilvusConfig(uri=str(tmp_path / "milvus.db"), index_type=kind, nlist=8, nprobe=8)
    mil = MilvusDescriptorIndex.build(items, cfg, cfg.collection_for(1) + SUFFIX)
    assert mil.structure() == f"Milvus {kind} (L2)"
    want = DescriptorIndex.build(items, DescriptorConfig(ivf=False)).search(q, K)[1]
    got = mil.search(q, K)[1]
    assert (got[:, 0, 0] == want[:, 0, 0]).all()  # the right reference image first, every time
    assert (got[:, 0] == want[:, 0]).all(axis=1).mean() >= (1.0 if kind == "IVF_FLAT" else 0.9)


def test_remove_and_add_are_staged_then_applied_like_faiss(data, tmp_path):
    items, q = data
    faiss_idx, mil = _pair(items, tmp_path)
    before = mil.search(q, K)
    assert mil.remove([3, 7]) == faiss_idx.remove([3, 7]) == 20 + 3 + 20 + 7  # the normal variants are stored
    assert mil.ntotal == faiss_idx.ntotal and 3 not in mil.image_ids()
    removed = mil.search(q, K)
    _same(removed, faiss_idx.search(q, K))
    assert not np.isin(removed[1][..., 0], [3, 7]).any()
    _same(mil.search(q, K, restrict=[3, 4]), faiss_idx.search(q, K, restrict=[3, 4]))  # staged removal filtered
    back = dict(items)
    for i in (3, 7):
        assert mil.add(i, back[i]) == faiss_idx.add(i, back[i])
    assert mil.dirty
    _same(mil.search(q, K), before)  # staged rows merged with Milvus' answer
    _same(mil.search(q, K, restrict=[3]), faiss_idx.search(q, K, restrict=[3]))
    mil.apply_pending()
    assert not mil.dirty and mil.ntotal == faiss_idx.ntotal
    _same(mil.search(q, K), before)  # and the same from the collection alone
    assert mil.add(3, back[5]) == len(back[5][0])  # a re-add replaces, never duplicates
    mil.apply_pending()
    assert mil.ntotal == faiss_idx.ntotal - (20 + 3) + (20 + 5)


def test_store_commit_load_and_crash_after_the_rename(data, tmp_path):
    items, q = data
    root = tmp_path / "index"
    cfg = MilvusConfig()  # milvus.db inside the home (root's parent)
    faiss_idx = DescriptorIndex.build(items)
    store = IndexStore(root=root)
    store.descriptors = MilvusDescriptorIndex.build(items, cfg, cfg.collection_for(1) + SUFFIX, home=tmp_path)
    store.commit()
    loaded = IndexStore.load(root).descriptors
    assert isinstance(loaded, MilvusDescriptorIndex) and loaded.image_ids() == faiss_idx.image_ids()
    _same(loaded.search(q, K), faiss_idx.search(q, K))

    # A commit that dies after its sidecar rename but before applying its log: readers see the committed state.
    loaded.remove([3])
    faiss_idx.remove([3])
    meta = json.loads((root / SIDECAR).read_text())
    pending = root / "milvus-desc-pending-crash.npz"
    loaded.save_pending(pending)
    meta["files"]["descriptors_pending"] = pending.name
    (root / SIDECAR).write_text(json.dumps(meta))
    reader = IndexStore.load(root)
    assert reader.descriptors.ntotal == faiss_idx.ntotal
    _same(reader.descriptors.search(q, K), faiss_idx.search(q, K))

    # The next commit applies the log and drops it; the collection alone then answers the same.
    reader.descriptors.add(5, dict(items)[4])
    faiss_idx.add(5, dict(items)[4])
    reader.commit()
    meta = json.loads((root / SIDECAR).read_text())
    assert "descriptors_pending" not in meta["files"] and not pending.exists()
    fresh = IndexStore.load(root).descriptors
    assert not fresh.dirty
    _same(fresh.search(q, K), faiss_idx.search(q, K))
    assert connect(str(tmp_path / "milvus.db")).list_collections() == [cfg.collection_for(1) + SUFFIX]


# ---- the CLI end to end, Milvus next to FAISS ----------------------------------------------------------

FAST = ["--model", "tiny-test", "--variants", "3"]


def _run(home, *args):
    from click.testing import CliRunner

    from logoid.cli import cli

    res = CliRunner().invoke(cli, ["--home", str(home), *[str(a) for a in args]], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def _answer(home, photo) -> dict:
    ans = json.loads(_run(home, "query", photo, "--channels", "global,local", "--json").stdout)
    ans.pop("timings")
    return ans


def answer_alike_through_add_and_remove(homes: dict, logos: dict, photos: dict) -> None:
    """The FAISS and the Milvus home answer Deftones' and Slayer's photos alike: before, after `add-band Slayer` and
    after `remove-band Slayer` (no backend flag: each command follows its home's sidecar)."""

    def check(expect_slayer: bool) -> None:
        for band in ("Deftones", "Slayer"):
            f, m = _answer(homes["faiss"], photos[band]), _answer(homes["milvus"], photos[band])
            assert f == m, band
            assert (m["answer"] == band) == (band != "Slayer" or expect_slayer), (band, m["answer"])

    check(expect_slayer=False)
    for home in homes.values():
        _run(home, "add-band", "--name", "Slayer", "--image", logos["Slayer"])
    check(expect_slayer=True)
    for home in homes.values():
        _run(home, "remove-band", "Slayer")
    check(expect_slayer=False)


def test_cli_milvus_descriptors_answer_like_faiss(tmp_path):
    from synth import faiss_and_milvus_homes

    logos, photos, homes, outs = faiss_and_milvus_homes(tmp_path, _run, FAST)
    assert all(out["descriptors"] > 0 for out in outs.values())
    faiss_n = json.loads((homes["faiss"] / "index" / SIDECAR).read_text())["counts"]["descriptors"]
    meta = json.loads((homes["milvus"] / "index" / SIDECAR).read_text())
    assert meta["counts"]["descriptors"] == faiss_n
    desc = IndexStore.load(homes["milvus"] / "index").descriptors
    assert isinstance(desc, MilvusDescriptorIndex) and desc.collection.endswith(SUFFIX)
    del desc  # Milvus Lite serves one process, and the CLI below opens it again in this one
    answer_alike_through_add_and_remove(homes, logos, photos)
    meta = json.loads((homes["milvus"] / "index" / SIDECAR).read_text())
    assert meta["counts"]["descriptors"] == faiss_n and "descriptors_pending" not in meta["files"]
