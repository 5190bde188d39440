"""Readers never lock, writers queue, answers come from one consistent state: locks, snapshots, pinned index
generations, and 8 reader processes beside 2 writer processes (tests/crashkit.py)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from types import SimpleNamespace

import crashkit as ck
import numpy as np
import pytest
from click.testing import CliRunner

from logoid.catalog import Catalog
from logoid.core.errors import CatalogError
from logoid.core.locks import LockTimeout, write_lock, writer_active
from logoid.index.names import NameIndex
from logoid.index.store import IndexStore
from logoid.index.vectors import VectorIndex, encode_ids

from logoid.cli import cli  # isort: skip


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_readers_open_and_list_while_a_writer_holds_the_catalog(_isolated_home, monkeypatch):
    with Catalog.open(_isolated_home) as cat:
        cat.add_band("Mayhem")
    monkeypatch.setenv("LOGOID_LOCK_TIMEOUT", "0.5")
    with Catalog.open(_isolated_home) as writer, writer.transaction():
        writer.add_band("Korn")  # uncommitted, and SQLite's write lock held
        res = _cli("catalog", "list", "--json")
        assert res.exit_code == 0, res.output
        assert [b["name"] for b in json.loads(res.stdout)] == ["Mayhem"]
        with Catalog.open(_isolated_home) as reader:
            assert [b.name for b in reader.list_bands()] == ["Mayhem"]


def test_a_catalog_write_that_cannot_get_sqlites_lock_says_so(_isolated_home, monkeypatch):
    Catalog.open(_isolated_home).close()
    monkeypatch.setenv("LOGOID_LOCK_TIMEOUT", "0.2")
    other = sqlite3.connect(_isolated_home / "catalog.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with Catalog.open(_isolated_home) as cat, pytest.raises(CatalogError) as e:
            cat.add_band("Mayhem")
    finally:
        other.execute("ROLLBACK")
    assert str(e.value) == (f"another logoid command is writing to {_isolated_home}; try again (waited 0.2 s; "
                            "set LOGOID_LOCK_TIMEOUT to wait longer)")


def test_a_second_writer_waits_its_turn(_isolated_home, monkeypatch):
    monkeypatch.setenv("LOGOID_LOCK_TIMEOUT", "20")
    _isolated_home.mkdir(parents=True)
    held = threading.Event()

    def first_writer():
        with write_lock(_isolated_home):
            held.set()
            time.sleep(1.0)

    t = threading.Thread(target=first_writer)
    t.start()
    held.wait()
    assert writer_active(_isolated_home)
    t0 = time.monotonic()
    res = _cli("add-band", "--name", "Mayhem")
    waited = time.monotonic() - t0
    t.join()
    assert res.exit_code == 0, res.output
    assert waited >= 0.8 and not writer_active(_isolated_home)


def test_a_writer_that_waits_too_long_says_so_in_one_line(_isolated_home, monkeypatch):
    monkeypatch.setenv("LOGOID_LOCK_TIMEOUT", "0.3")
    _isolated_home.mkdir(parents=True)
    held, done = threading.Event(), threading.Event()

    def other_writer():  # another thread: the lock is re-entrant only within one
        with write_lock(_isolated_home):
            held.set()
            done.wait(30)

    t = threading.Thread(target=other_writer)
    t.start()
    held.wait()
    try:
        res = _cli("add-band", "--name", "Mayhem")
        with pytest.raises(LockTimeout), write_lock(_isolated_home, timeout=0.1):
            pass
    finally:
        done.set()
        t.join()
    assert res.exit_code == 1
    assert res.output == (f"error: another logoid command is writing to {_isolated_home}; try again (waited 0.3 s; "
                          "set LOGOID_LOCK_TIMEOUT to wait longer)\n")
    with Catalog.open(_isolated_home) as cat:
        assert cat.list_bands() == []


def test_write_lock_is_reentrant_in_one_thread(tmp_path):
    with write_lock(tmp_path), write_lock(tmp_path, timeout=0):
        assert writer_active(tmp_path)
    assert not writer_active(tmp_path)


def test_snapshot_reads_one_committed_state(_isolated_home):
    with Catalog.open(_isolated_home) as reader, Catalog.open(_isolated_home) as writer:
        writer.add_band("Mayhem")
        with reader.snapshot():
            assert [b.name for b in reader.list_bands()] == ["Mayhem"]
            korn = writer.add_band("Korn")  # commits while the reader is inside its snapshot
            assert [b.name for b in reader.list_bands()] == ["Mayhem"]
            with pytest.raises(CatalogError):
                reader.get_band(korn.id)
            with pytest.raises(RuntimeError):
                reader.add_band("Slayer")  # a snapshot is read-only
        assert [b.name for b in reader.list_bands()] == ["Mayhem", "Korn"]


def test_ids_the_index_knows_are_never_handed_out_again(_isolated_home):
    with Catalog.open(_isolated_home) as cat:
        cat.add_band("Mayhem")
        # as after a power cut that lost catalog commits an index had already seen
        cat.reserve_ids({"bands": 7, "images": 40})
        assert cat.id_marks()["bands"] == 7 and cat.id_marks()["images"] == 40
        assert cat.add_band("Korn").id == 8
        cat.reserve_ids({"bands": 3})  # never moves back
        assert cat.add_band("Dust").id == 9


def _tiny_store(root, image_ids, names):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(image_ids), 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = IndexStore(root=root)
    store.vectors = VectorIndex.build(vecs, encode_ids(np.array(image_ids), np.zeros(len(image_ids), int)))
    store.names = NameIndex(names)
    store.commit()
    return store


def test_a_reader_keeps_the_generation_it_loaded_until_it_is_done(tmp_path):
    root = tmp_path / "index"
    _tiny_store(root, [1, 2], [("band:1", "Mayhem"), ("band:2", "Korn")])
    reader = IndexStore.load(root)  # reads generation 1; its names load lazily, later
    for gen in (2, 3):
        writer = IndexStore.load(root)
        writer.vectors.remove_images([2])
        writer.names = NameIndex([("band:1", "Mayhem")])
        writer.commit()
        writer.close()
        assert IndexStore.load_meta_only(root)["generation"] == gen
    assert (root / "names-00001.npz").exists() and not (root / "names-00002.npz").exists()
    assert len(reader.names) == 2 and reader.image_ids() == {1, 2}
    reader.close()
    writer = IndexStore.load(root)
    writer.commit()  # nobody reads generation 1 any more: swept (names unchanged: generation 3's file stays)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "logoid-index.json", "names-00003.npz", "vectors-00004.faiss"]


def test_answers_never_name_an_entity_the_catalog_lacks(_isolated_home):
    """An index entry of a band removed since (here a name the text channel read) is ignored, not an error."""
    from logoid.identify.pipeline import Evidence, Identifier

    with Catalog.open(_isolated_home) as cat:
        cat.add_band("Mayhem")
        ident = Identifier(None, cat)
        ident._store = SimpleNamespace(meta={})
        text = {"cos": 0.0, "text_coverage": 1.0, "text_conf": 0.9}
        ev = Evidence("p.jpg", {"band:99": {**text, "text_sim": 1.0, "text": "Gone"},
                                "band:1": {**text, "text_sim": 0.9, "text": "Mayhem"}}, 0.0, [], [], {},
                      ("global", "local", "text"))
        ans = ident.decide(ev)
    assert [c.entity_key for c in ans.candidates] == ["band:1"] and ans.best.name == "Mayhem"


@pytest.fixture(scope="module")
def mixed_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    ctx = ck.context()
    ck.warm(ctx)
    assets = ck.make_assets(root / "assets")
    ck.build_home(ctx, root / "home", assets)
    return SimpleNamespace(ctx=ctx, assets=assets, root=root, home=root / "home")


def test_eight_readers_beside_two_writers(mixed_home, capsys):
    """8 processes query while 2 add and remove bands: no error, and every answer names the band in the photo by
    an id that band had in the catalog at some moment of the query (crashkit.analyse)."""
    stable = {n: int(k.split(":")[1]) for n, k in ck.read_home(mixed_home.home).entities.items()}
    reads, writes = ck.run_mixed(mixed_home.ctx, mixed_home.home, mixed_home.assets, mixed_home.root / "run",
                                 seconds=12, churn=("1984", "6502"))
    rep = ck.analyse(reads, writes, stable)
    with capsys.disabled():
        print(f"\n8 readers + 2 writers, 12 s: {rep.to_dict()}")
    assert (rep.errors, rep.inconsistent, rep.misses, rep.write_errors, rep.reused_ids) == (0, 0, 0, 0, 0), \
        rep.to_dict()
    assert rep.queries >= 8 and rep.writes >= 4, rep.to_dict()
    st = ck.read_home(mixed_home.home)
    assert st.exact and set(st.entities) >= set(ck.BASE)
