"""The descriptor index's layout at scale: streaming build, memory-mapped coordinates and codes, re-ranking options.

Seeded synthetic references (a few hundred of ~50 clustered RootSIFT-like descriptors per variant); no shared data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from logoid.engine.local import Features
from logoid.index.descriptor_layout import KeyedRows, entry_key, process_memory
from logoid.index.descriptor_structure import DescriptorConfig, sample_rows, training_pool
from logoid.index.descriptors import DescriptorIndex

faiss = pytest.importorskip("faiss")

REFS, PER = 240, 50  # 240 references x 2 variants x 50 keypoints = 24,000 descriptors
CONFIG = DescriptorConfig(nlist=32, nprobe=8, exact_below=1000, flip_inverted=False)  # IVF32_HNSW32,PQ64x4fs + SQ8 re-ranking


def _features(seed: int, ref: int, variant: int, centres: np.ndarray) -> Features:
    """One reference variant, a pure function of (seed, ref, variant): a lazy source can make it again."""
    rng = np.random.default_rng([seed, ref, variant])
    d = np.maximum(centres[rng.integers(0, len(centres), PER)] + rng.normal(0, 0.06, (PER, 128)), 0)
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    return Features(rng.random((PER, 2)).astype(np.float32) * 300, d, (300 + ref, 200 + variant))


class LazyRefs:
    """A re-iterable source: each pass makes every reference's features again, one at a time (as a build that
    reads them from disk would), and counts the passes."""

    def __init__(self, seed: int = 0, refs: int = REFS, first_id: int = 0) -> None:
        self.seed, self.refs, self.first_id, self.passes = seed, refs, first_id, 0
        self.centres = np.random.default_rng(seed).random((40, 128))

    def __iter__(self):
        self.passes += 1
        for r in range(self.refs):
            yield self.first_id + r, [_features(self.seed, r, v, self.centres) for v in range(2)]


@pytest.fixture(scope="module")
def items():
    return list(LazyRefs())


@pytest.fixture(scope="module")
def built(items):
    return DescriptorIndex.build(items, CONFIG)


@pytest.fixture(scope="module")
def queries(items):
    """Noisy copies of 400 stored descriptors (seeded), with the (image, variant, keypoint) each was copied from."""
    rng = np.random.default_rng(7)
    src = np.column_stack([rng.integers(0, REFS, 400), rng.integers(0, 2, 400), rng.integers(0, PER, 400)])
    q = np.stack([items[i][1][v].desc[k] for i, v, k in src]) + rng.normal(0, 0.01, (400, 128))
    q = np.maximum(q, 0)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), src


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ---- memory-mapped layout -------------------------------------------------------------------------------------

def test_mmapped_load_answers_exactly_like_ram_and_the_built_index(tmp_path, built, queries):
    q, _ = queries
    built.save(tmp_path / "d")
    mapped, ram = DescriptorIndex.load(tmp_path / "d"), DescriptorIndex.load(tmp_path / "d", mmap=False)
    for k, restrict in ((2, None), (8, None), (3, [5, 17, 200])):
        want = built.search(q, k, restrict=restrict)
        _same(mapped.search(q, k, restrict=restrict), want)
        _same(ram.search(q, k, restrict=restrict), want)
    assert mapped.image_ids() == ram.image_ids() == built.image_ids() == list(range(REFS))
    np.testing.assert_array_equal(mapped.ref_xy(17, 1), built.ref_xy(17, 1))
    assert mapped.ref_size(17, 1) == built.ref_size(17, 1) == (317, 201)
    assert mapped.contains(239) and not mapped.contains(240)


def test_loaded_rows_are_file_backed_only_when_mapped(tmp_path, built):
    built.save(tmp_path / "d")
    files = json.loads((tmp_path / "d.json").read_text())["files"]
    assert sorted(files) == ["codes", "faiss", "refs", "sq", "xy"]
    mapped, ram = DescriptorIndex.load(tmp_path / "d"), DescriptorIndex.load(tmp_path / "d", mmap=False)
    assert mapped._codes is not None and ram._codes is not None
    assert isinstance(mapped._geo.base, np.memmap) and isinstance(mapped._codes.rows.base, np.memmap)
    assert str(mapped._codes.rows.base.filename).endswith(files["codes"])
    assert not isinstance(ram._geo.base, np.memmap) and not isinstance(ram._codes.rows.base, np.memmap)
    xy = mapped.ref_xy(3, 0)
    assert isinstance(xy, np.memmap) and not xy.flags.writeable  # a view of the mapping, not a copy
    n = built.ntotal
    m, r = mapped.memory_breakdown(), ram.memory_breakdown()
    assert m["codes_mapped"] == n * 128 and m["xy_mapped"] == n * 8 and m["file_backed"] == n * 136
    assert r["file_backed"] == 0 and r["codes_ram"] >= n * 128 and r["anonymous"] - m["anonymous"] >= n * 136
    assert m["faiss"] == r["faiss"] >= n * (32 + 8)  # fast-scan codes and ids
    if process_memory():  # Linux
        assert {"rss_anon", "rss_file", "hwm"} <= set(process_memory())


def test_index_without_reranking_from_the_same_files(tmp_path, built, items, queries):
    q, _ = queries
    built.save(tmp_path / "d")
    plain = DescriptorIndex.load(tmp_path / "d", mmap=False, refine=0)  # FAISS distances only, codes never read
    assert plain._codes is not None and isinstance(plain._codes.rows.base, np.memmap)
    unranked = DescriptorIndex.build(items, DescriptorConfig.from_dict({**CONFIG.to_dict(), "refine": 0}))
    assert unranked._codes is None  # built without re-ranking: the same FAISS index, no codes
    _same(plain.search(q, 4), unranked.search(q, 4))
    plain.config.refine = CONFIG.refine  # and back, without rebuilding
    _same(plain.search(q, 4), built.search(q, 4))


def test_codes_over_the_rerank_budget_are_not_used_to_rerank_but_stay_for_restricted_search(tmp_path, built, items,
                                                                                              queries):
    q, _ = queries
    n = built.ntotal
    over = DescriptorIndex.build(items, DescriptorConfig.from_dict({**CONFIG.to_dict(),
                                                                   "rerank_budget_mb": n * 128 / 2**20 * 0.9}))
    over.save(tmp_path / "over")
    loaded = DescriptorIndex.load(tmp_path / "over")  # codes 10 % over the budget: searched as refine=0
    assert loaded.config.refine == 0 and loaded.saved_refine == CONFIG.refine and "Refine" not in loaded.structure()
    _same(loaded.search(q, 4), DescriptorIndex.load(tmp_path / "over", refine=0).search(q, 4))
    # the codes are still there, mapped: a search over a few references is exact over them
    asked = {3, 17, 42}
    exact = loaded.search(q, 4, restrict=asked)
    _same(exact, built.search(q, 4, restrict=asked))
    loaded.save(tmp_path / "again")  # the saved setting is kept: a bigger machine's budget re-ranks it
    assert json.loads((tmp_path / "again.json").read_text())["config"]["refine"] == CONFIG.refine
    assert DescriptorIndex.load(tmp_path / "over", refine=CONFIG.refine).config.refine == CONFIG.refine  # asked
    under = DescriptorIndex.build(items, DescriptorConfig.from_dict({**CONFIG.to_dict(),
                                                                    "rerank_budget_mb": n * 128 / 2**20 * 1.1}))
    under.save(tmp_path / "under")
    _same(DescriptorIndex.load(tmp_path / "under").search(q, 4), built.search(q, 4))  # within it: re-ranked


# ---- against exact search --------------------------------------------------------------------------------------

def test_reranked_ivf_finds_the_exact_nearest_neighbour(tmp_path, built, items, queries):
    q, src = queries
    base = np.concatenate([f.desc for _, fs in items for f in fs])
    owner = np.array([(i, v, k) for i, fs in items for v, f in enumerate(fs) for k in range(len(f))])
    d2 = (q * q).sum(1)[:, None] - 2 * q @ base.T + (base * base).sum(1)[None]
    exact = owner[d2.argmin(1)]
    assert (exact == src).all()  # each query's exact nearest neighbour is the descriptor it was copied from
    built.save(tmp_path / "d")
    # k = 8 as the ratio test asks: 32 fast-scan candidates re-ranked by their SQ8 codes (1.0 measured)
    got = DescriptorIndex.load(tmp_path / "d").search(q, 8)[1][:, 0]
    assert (got == exact).all(axis=1).mean() >= 0.99
    unranked = DescriptorIndex.load(tmp_path / "d", refine=0).search(q, 8)[1][:, 0]
    assert (unranked == exact).all(axis=1).mean() <= 0.9  # what the codes buy: 4-bit PQ alone ranks roughly (0.82)


# ---- streaming build -------------------------------------------------------------------------------------------

def test_build_from_a_reiterable_equals_build_from_a_list(built, items, queries):
    q, _ = queries
    lazy = LazyRefs()
    streamed = DescriptorIndex.build(lazy, CONFIG)
    assert lazy.passes == 2  # one pass for the count and the sample, one to add
    assert streamed.ntotal == built.ntotal == REFS * 2 * PER
    _same(streamed.search(q, 8), built.search(q, 8))
    from_generator = DescriptorIndex.build((it for it in items), CONFIG)  # read into a list first
    _same(from_generator.search(q, 8), built.search(q, 8))


def test_list_build_samples_as_before(built, items, queries):
    """Up to 3·train_size descriptors the training sample is the one sample_rows draws from all of them."""
    q, _ = queries
    n = sum(len(f) for _, fs in items for f in fs)
    cfg = DescriptorConfig.from_dict({**CONFIG.to_dict(), "ivf": True})
    old = DescriptorIndex(config=cfg)
    old.train(sample_rows([f.desc for _, fs in items for f in fs], cfg.train_size(n), cfg.seed), n_expected=n)
    old.add_many(items)
    _same(old.search(q, 8), built.search(q, 8))


def test_training_pool_thins_to_a_deterministic_uniform_subset():
    cfg = DescriptorConfig(nlist=16, train_sample=100, train_per_list=40, flip_inverted=False)  # train_size 640 of 24,000
    lazy = LazyRefs()
    n, pool = training_pool(lazy, cfg)
    rows = np.concatenate(pool)
    assert n == REFS * 2 * PER and cfg.train_size(n) <= len(rows) <= 3 * cfg.train_size(n)
    n2, pool2 = training_pool(list(LazyRefs()), cfg)
    assert n2 == n and np.array_equal(np.concatenate(pool2), rows)  # same items, same pool
    every = np.concatenate([f.desc for _, fs in LazyRefs() for f in fs])
    pos = {r.tobytes(): i for i, r in enumerate(every)}
    idx = np.array([pos[r.tobytes()] for r in rows])
    assert (np.diff(idx) > 0).all()  # a subset of the descriptors, in their order
    assert 0.3 < idx.mean() / n < 0.7  # drawn across all of them, not the first ones


def test_thinned_streaming_build_is_deterministic(queries):
    q, _ = queries
    cfg = DescriptorConfig(nlist=16, nprobe=8, exact_below=1000, train_sample=100, train_per_list=40,
                          flip_inverted=False)
    a, b = DescriptorIndex.build(LazyRefs(), cfg), DescriptorIndex.build(list(LazyRefs()), cfg)
    _same(a.search(q, 8), b.search(q, 8))


def test_spilled_build_answers_like_ram(tmp_path, built, queries):
    q, _ = queries
    spilled = DescriptorIndex.build(LazyRefs(), CONFIG, spill=tmp_path / "spill")
    assert spilled._codes is not None and all(isinstance(c, np.memmap) for c in spilled._codes.rows._chunks)
    assert list((tmp_path / "spill").iterdir()) == []  # unnamed files: nothing to clean up
    _same(spilled.search(q, 8), built.search(q, 8))
    spilled.save(tmp_path / "s")
    _same(DescriptorIndex.load(tmp_path / "s").search(q, 8), built.search(q, 8))


# ---- changes after a mapped load -------------------------------------------------------------------------------

def test_save_load_add_remove_save_load_keeps_exactly_the_right_references(tmp_path, built, items):
    built.save(tmp_path / "d")
    first = set(json.loads((tmp_path / "d.json").read_text())["files"].values())
    idx = DescriptorIndex.load(tmp_path / "d")
    extra = list(LazyRefs(seed=5, refs=3, first_id=1000))
    idx.add_many(extra)  # new references: rows in RAM beside the mapped ones
    idx.add(7, extra[1][1])  # a mapped reference replaced
    assert idx.remove([3, 1001, 4000]) == 2 * 2 * PER  # one mapped, one added, one unknown
    idx.save(tmp_path / "d")
    assert not first & {p.name for p in tmp_path.iterdir()}  # the first save's files are gone
    back = DescriptorIndex.load(tmp_path / "d")
    want = {i: fs for i, fs in items if i != 3} | {7: extra[1][1], 1000: extra[0][1], 1002: extra[2][1]}
    assert back.image_ids() == sorted(want) and back.ntotal == 2 * PER * len(want)
    assert back._codes is not None
    for i, fs in want.items():
        for v, f in enumerate(fs):
            np.testing.assert_array_equal(back.ref_xy(i, v), f.xy)
            assert back.ref_size(i, v) == f.size
            np.testing.assert_array_equal(back._codes.get((i, v)), back._codes.sq.encode(f.desc))
    for i in (1000, 1002, 7, 150):  # each reference's own descriptors find it
        owners = back.search(want[i][1].desc, 8)[1][:, 0]
        assert (owners[:, 0] == i).mean() > 0.9 and set(owners[:, 1]) == {1}
    assert not (back.search(items[3][1][0].desc, 8)[1][..., 0] == 3).any()


def test_an_emptied_index_saves_and_loads(tmp_path, built):
    idx = DescriptorIndex.build(list(LazyRefs(refs=25)), CONFIG)
    idx.remove(range(25))
    idx.save(tmp_path / "d")
    back = DescriptorIndex.load(tmp_path / "d")
    assert back.ntotal == 0 and back.image_ids() == [] and back.search(np.ones((2, 128), np.float32), 2)[1].max() == -1


# ---- the table behind it ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("first", [0, 1 << 40])  # catalog ids (a dense table) and huge ones (sorted lookup)
def test_keyed_rows_put_drop_gather_and_blocks(first):
    rng = np.random.default_rng(1)
    rows = KeyedRows(3, np.float32, aux=1)
    data = {entry_key(first + i, v): rng.random((i + 1, 3)).astype(np.float32) for i in range(50) for v in (0, 1)}
    for key, x in data.items():
        rows.put(key, x, (key,))
    gone = entry_key(first + 10, 1)
    assert rows.drop(gone) == 11 and rows.drop(gone) is None
    data.pop(gone)
    key7 = entry_key(first + 7, 0)
    data[key7] = rng.random((4, 3)).astype(np.float32)
    rows.put(key7, data[key7], (key7,))  # replaced
    assert len(rows) == len(data) == 99 and rows.count(key7) == 4 and rows.aux(key7) == (key7,)
    keys = np.array(sorted(data))
    np.testing.assert_array_equal(rows.live_sorted()[0], keys)
    kp = np.array([len(data[k]) - 1 for k in keys])
    np.testing.assert_array_equal(rows.gather(keys, kp), np.stack([data[k][-1] for k in keys]))
    slots = rows.live_sorted()[1]
    got = np.concatenate(list(rows.blocks(slots, rows_per_block=30)))
    np.testing.assert_array_equal(got, np.concatenate([data[k] for k in keys]))
    with pytest.raises(KeyError):
        rows.gather(np.array([gone]), np.array([0]))
    offsets = np.concatenate([[0], np.cumsum([len(data[k]) for k in keys])])
    again = KeyedRows.from_arrays(got, keys, offsets, aux=keys[:, None])
    np.testing.assert_array_equal(again.get(key7), data[key7])
    assert again.slot(gone) == -1 and again.aux(key7) == (key7,)
