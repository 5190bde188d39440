"""Readers never lock, writers queue, answers come from one consistent state: locks, snapshots, pinned index
generations, and 8 reader processes beside 2 writer processes (tests/crashkit.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import crashkit as ck
import numpy as np
import pytest
from click.testing import CliRunner

from logoid.catalog import Catalog
from logoid.core.errors import CatalogError
from logoid.core.locks import WRITE_LOCK, write_lock, writer_active
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


# ---- real `python -m logoid` processes -------------------------------------------------------------------------------
def _start(home, *args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "logoid", "--home", str(home), *map(str, args)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _run(home, *args, env=None) -> subprocess.CompletedProcess:
    proc = _start(home, *args, env=env)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _wait_for(cond, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.02)


@contextlib.contextmanager
def _paused_write(home, step: str, *args):
    """``logoid ARGS`` (a write) stopped at fault point ``step``, holding all a write holds there, until the ``with``
    block ends; then it resumes and its result is ``proc.result`` (``LOGOID_FAULT_PAUSE``, logoid.core.faults)."""
    flag = Path(home).parent / f"{Path(home).name}-paused-at-{step}"
    proc = _start(home, *args, env={"LOGOID_FAULT": step, "LOGOID_FAULT_PAUSE": str(flag)})
    try:
        _wait_for(lambda: flag.exists() or proc.poll() is not None, f"{args[0]} to reach {step}")
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        flag.unlink(missing_ok=True)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        proc.result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (Linux: /proc/PID/fd)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fds / fd) == str(path.resolve()) for fd in os.listdir(fds))
    except (FileNotFoundError, ProcessLookupError):
        return False


def _new_home(home: Path) -> Path:
    Catalog.open(home).close()  # created now, so the writes below meet their steps inside the write lock
    return home


def _names(home) -> list[str]:
    with Catalog.open(home) as cat:
        return [b.name for b in cat.list_bands()]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see a process wait on the lock")
def test_a_second_writer_process_waits_its_turn(_isolated_home):
    """Two ``add-band`` processes at once: the second waits on the home's write lock while the first is mid-write
    (its catalog transaction open), and runs when the first is done."""
    home = _new_home(_isolated_home)
    with _paused_write(home, "catalog-before-commit", "add-band", "--name", "Mayhem", "--json") as first:
        second = _start(home, "add-band", "--name", "Korn", "--json", env={"LOGOID_LOCK_TIMEOUT": "60"})
        _wait_for(lambda: _has_open(second.pid, home / WRITE_LOCK) or second.poll() is not None,
                  "the second add-band to wait on the write lock")
        time.sleep(0.5)
        assert second.poll() is None, second.communicate()  # still waiting: the first has not finished
    out, err = second.communicate(timeout=300)
    assert (first.result.returncode, second.returncode) == (0, 0), (first.result.stderr, err)
    assert (json.loads(first.result.stdout)["band"], json.loads(out)["band"]) == (1, 2)
    assert _names(home) == ["Mayhem", "Korn"]


def test_a_writer_process_that_waits_too_long_says_so_in_one_line(_isolated_home):
    home = _new_home(_isolated_home)
    with _paused_write(home, "write-locked", "add-band", "--name", "Mayhem") as first:
        res = _run(home, "add-band", "--name", "Korn", env={"LOGOID_LOCK_TIMEOUT": "1"})
        assert first.poll() is None  # the first still holds the lock: the second gave up waiting for it
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == (f"error: another logoid command is writing to {home}; try again (waited 1 s; "
                          "set LOGOID_LOCK_TIMEOUT to wait longer)\n")
    assert first.result.returncode == 0, first.result.stderr
    assert _names(home) == ["Mayhem"]


@pytest.fixture(scope="module")
def indexed_home(tmp_path_factory):
    """A home with MAYHEM, KORN and DUST (bands and images 1-3) in catalog and index (tiny-test model), made by real
    commands; tests copy it."""
    root = tmp_path_factory.mktemp("indexed")
    assets = ck.make_assets(root / "assets", (*ck.BASE, "FLIP", "CBGB"))
    home = root / "home"
    for args in (*(["add-band", "--name", n, "--image", assets[n][0]] for n in ck.BASE), ["build-index", *ck.MODEL]):
        res = _run(home, *args)
        assert res.returncode == 0, res.stderr
    return SimpleNamespace(home=home, assets=assets)


def _batch(home, photos: dict[str, Path], folder: Path, env=None) -> dict[str, tuple[str, str | None]]:
    """``logoid batch`` over copies of ``photos`` (name -> file): name -> (answer, entity)."""
    folder.mkdir(parents=True)
    for name, photo in photos.items():
        shutil.copy(photo, folder / f"{name}.jpg")
    out = folder.with_suffix(".jsonl")
    res = _run(home, "batch", folder, "-o", out, "--channels", ck.CHANNELS, env=env)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {Path(r["path"]).stem: (r["answer"], r["entity"]) for r in rows}


def test_catalog_list_and_batch_run_beside_a_writer_process(indexed_home, tmp_path):
    """Reader processes while an ``add-band`` holds the write lock and its uncommitted catalog transaction: both
    answer at once (a lock wait would fail within 1 s) from the last committed state."""
    home = ck.copy_home(indexed_home.home, tmp_path / "home")
    quick = {"LOGOID_LOCK_TIMEOUT": "1"}
    photos = {n: indexed_home.assets[n][1] for n in ("MAYHEM", "FLIP")}
    with _paused_write(home, "catalog-before-commit", "add-band", "--name", "FLIP", "--image",
                       indexed_home.assets["FLIP"][0]) as writer:
        listed = _run(home, "catalog", "list", "--json", env=quick)
        answers = _batch(home, photos, tmp_path / "photos", env=quick)
        assert writer.poll() is None  # the write was still open throughout
    assert listed.returncode == 0, listed.stderr
    assert [b["name"] for b in json.loads(listed.stdout)] == list(ck.BASE)
    assert answers == {"MAYHEM": ("MAYHEM", "band:1"), "FLIP": ("unknown", None)}
    assert writer.result.returncode == 0, writer.result.stderr
    assert _names(home) == [*ck.BASE, "FLIP"]


def test_ids_the_index_saw_stay_taken_when_the_catalog_loses_commits(indexed_home, tmp_path):
    """Why every write starts with ``reserve_index_ids``: a catalog that lost commits the index saw (a power cut
    under ``synchronous=NORMAL``, or an older catalog.db restored) would hand those ids out again, and the index's
    vectors of the lost image would then answer for the new band."""
    home = ck.copy_home(indexed_home.home, tmp_path / "home")
    db, older = home / "catalog.db", tmp_path / "catalog-older.db"
    with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(older)) as dst:
        src.backup(dst)
    res = _run(home, "add-band", "--name", "FLIP", "--image", indexed_home.assets["FLIP"][0], "--json")
    assert res.returncode == 0, res.stderr
    assert (json.loads(res.stdout)["band"], json.loads(res.stdout)["images"]) == (4, [4])
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    shutil.copy(older, db)  # the catalog forgets FLIP; the index still holds image 4's vectors
    res = _run(home, "add-band", "--name", "CBGB", "--image", indexed_home.assets["CBGB"][0], "--json")
    assert res.returncode == 0, res.stderr
    assert (json.loads(res.stdout)["band"], json.loads(res.stdout)["images"]) == (5, [5])
    answers = _batch(home, {n: indexed_home.assets[n][1] for n in ("FLIP", "CBGB")}, tmp_path / "photos")
    assert answers == {"FLIP": ("unknown", None), "CBGB": ("CBGB", "band:5")}
    assert _names(home) == [*ck.BASE, "CBGB"]


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
