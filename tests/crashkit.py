"""Real processes against one logoid home: kill a write at each named step, or run readers beside writers.

Used by tests/test_crash.py and tests/test_concurrency.py; bench/concurrency/ (kit.py, mixed.py, kills.py) runs the
same workload for a full minute from its own copy, since tests and benches never import each other: change both
together. Every process here is a real one that runs the real CLI (``logoid.cli.cli``). They are forked by a
multiprocessing *fork server* that has imported logoid, torch, FAISS and OpenCV once, so a process starts in
milliseconds instead of seconds, and no process is forked from one that already ran torch (pytest's own process may
have). Nothing here knows logoid's internals beyond the public catalog and index readers used to check a home.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from synth import photo_of, text_logo

MODEL = ["--model", "tiny-test", "--variants", "3"]
#: name -> seed of its synthetic logo. No two names share a letter, so no logo can pass for another (SLAYER's
#: photo does match MAYHEM's logo: A, Y, E, M). The first three are in every home; the others come and go.
BANDS = {"MAYHEM": 1, "KORN": 2, "DUST": 3, "FLIP": 4, "CBGB": 5, "1984": 6, "6502": 7}
BASE = ("MAYHEM", "KORN", "DUST")
REPAIR = "CBGB"  # the band the write after a crash adds
CHANNELS = "global,local"  # the text channel has its own orphan test (tests/test_crash.py); OCR is slow here

_PRELOAD = ["crashkit", "click.testing", "logoid.cli", "logoid.build.steps", "logoid.build.sync",
            "logoid.identify.pipeline", "logoid.engine", "torch", "open_clip", "faiss", "cv2"]


def context():
    """The fork-server context every process of this module starts from."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def make_assets(folder: Path, names=tuple(BANDS)) -> dict[str, tuple[Path, Path]]:
    """name -> (logo file, photo of it printed on a cluttered scene)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        logo, photo = folder / f"{name.lower()}.png", folder / f"{name.lower()}-photo.jpg"
        if not logo.exists():
            text_logo(name, seed=BANDS[name]).save(logo)
            photo_of(text_logo(name, seed=BANDS[name])).save(photo)
        out[name] = (logo, photo)
    return out


# ---- one CLI run in its own process ----------------------------------------------------------------------------
@dataclass
class Run:
    rc: int | None  # exit code; -9 when SIGKILLed
    out: str
    err: str


def _cli_child(argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    for path, fd in ((out, 1), (err, 2)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    for key in ("LOGOID_FAULT", "LOGOID_FAULT_TRACE"):
        os.environ.pop(key, None)
    os.environ.update(env)
    _quiet_threads()
    from logoid.cli import cli

    try:
        cli.main(args=argv, prog_name="logoid")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _quiet_threads() -> None:
    """One thread per process: many processes share few cores."""
    import torch

    torch.set_num_threads(1)


def _noop() -> None:
    pass


def warm(ctx) -> None:
    """Start the fork server (it imports everything once) before anything is timed."""
    p = ctx.Process(target=_noop)
    p.start()
    p.join()


def run_cli(ctx, argv: list[str], env: dict[str, str], workdir: Path, timeout: float = 300) -> Run:
    """Run ``logoid ARGV`` in a new process with ``env`` added; its exit code and output."""
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    p = ctx.Process(target=_cli_child, args=([str(a) for a in argv], env, str(out), str(err)))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise TimeoutError(f"logoid {' '.join(map(str, argv))} ran past {timeout} s")
    return Run(p.exitcode, out.read_text(errors="replace"), err.read_text(errors="replace"))


# ---- a home and its checks ------------------------------------------------------------------------------------
def build_home(ctx, home: Path, assets, names=BASE, workdir: Path | None = None) -> None:
    """A home with ``names`` added and an index built (tiny-test model, 3 variants)."""
    work = workdir or home.parent / "setup"
    for name in names:
        r = run_cli(ctx, ["--home", home, "add-band", "--name", name, "--image", assets[name][0]], {}, work)
        assert r.rc == 0, r.err
    r = run_cli(ctx, ["--home", home, "build-index", *MODEL], {}, work)
    assert r.rc == 0, r.err


def copy_home(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


@dataclass
class HomeState:
    """Catalog and index of a home, side by side."""

    entities: dict[str, str]  # display name (band name, "artist - title") -> entity key, in the catalog
    entity_images: dict[str, set[int]]  # display name -> its image ids
    catalog_images: set[int]
    index_images: set[int]  # images with global vectors
    descriptor_images: set[int]
    issued: int  # the highest image id the catalog ever handed out
    catalog_revision: int
    index_revision: int | None
    problems: list[str] = field(default_factory=list)

    @property
    def missing(self) -> set[int]:
        return self.catalog_images - self.index_images

    @property
    def orphans(self) -> set[int]:
        return (self.index_images | self.descriptor_images) - self.catalog_images

    @property
    def consistent(self) -> bool:
        """Catalog and index can only disagree in the safe directions: the index lacks images (reported, indexed by
        the next write) or keeps ids the catalog handed out and will never hand out again (ignored by queries)."""
        return not self.problems

    @property
    def exact(self) -> bool:
        return self.consistent and not self.missing and not self.orphans


def read_home(home: Path) -> HomeState:
    from logoid.catalog import Catalog
    from logoid.index.store import IndexStore

    with Catalog.open(home) as cat, cat.snapshot():
        ents = {b.name: f"band:{b.id}" for b in cat.list_bands()}
        ents |= {f"{a.artist_name} - {a.title}": f"album:{a.id}" for a in cat.list_albums()}
        ent_images = {}
        for name, key in ents.items():
            etype, eid = key.split(":")
            ent_images[name] = {r.id for r in cat.images(etype, int(eid))}
        images, marks, rev = cat.image_ids(), cat.id_marks(), cat.revision()
    store = IndexStore.load(home / "index")
    try:
        desc = set(store.descriptors.image_ids()) if store.descriptors is not None else set()
        st = HomeState(ents, ent_images, images, store.image_ids(), desc, int(marks.get("images", 0)), rev,
                       store.meta.get("catalog_revision"))
    finally:
        store.close()
    future = sorted(i for i in st.index_images | st.descriptor_images if i > st.issued)
    if future:
        st.problems.append(f"index holds image ids the catalog never handed out: {future} (they would be reused)")
    if st.index_revision is not None and st.index_revision > rev:
        st.problems.append(f"index built from catalog revision {st.index_revision}, catalog is at {rev}")
    return st


class Querier:
    """Queries a home in this process (the identifier and its tiny model made once per home state)."""

    def __init__(self) -> None:
        from logoid.engine import create_embedder

        self.embedder = create_embedder("tiny-test")

    def answers(self, home: Path, photos: dict[str, Path]) -> dict[str, tuple[str, str | None]]:
        """photo name -> (answer name or "unknown", entity key)."""
        from logoid.catalog import Catalog
        from logoid.core.paths import Home
        from logoid.identify import Identifier, IdentifyConfig

        out = {}
        with Catalog.open(home) as cat, cat.snapshot():
            ident = Identifier(Home(home), cat, config=IdentifyConfig(channels=tuple(CHANNELS.split(","))),
                               embedder=self.embedder)
            for name, photo in photos.items():
                ans = ident.identify(photo)
                out[name] = (ans.best.name, ans.best.entity_key) if ans.accepted and ans.best else ("unknown", None)
            ident.store.close()
        return out


def wrong_answers(state: HomeState, answers: dict[str, tuple[str, str | None]]) -> list[str]:
    """Each photo (named by the entity it shows) must be answered by that entity when the catalog has it and its
    image is indexed, unknown when the catalog does not have it, either when it is in the catalog but not yet
    indexed."""
    bad = []
    for name, (answer, key) in answers.items():
        in_catalog = name in state.entities
        indexed = in_catalog and bool(state.entity_images[name] & state.index_images)
        if answer != "unknown" and (answer != name or key != state.entities.get(name)):
            bad.append(f"{name} photo answered {answer} ({key})")
        elif answer == "unknown" and indexed:
            bad.append(f"{name} photo answered unknown though {name} is indexed")
    return bad


# ---- readers and writers at once ----------------------------------------------------------------------------------
def _reader(home: str, photos: list[tuple[str, str]], until: float, out: str, seed: int) -> None:
    _quiet_threads()
    from click.testing import CliRunner

    from logoid.cli import cli

    rng = random.Random(seed)
    with open(out, "w") as f:
        while True:  # at least one query, however late this process started
            name, photo = rng.choice(photos)
            t0 = time.time()
            res = CliRunner().invoke(cli, ["--home", home, "query", photo, "--channels", CHANNELS, "--json"])
            rec = {"photo": name, "t0": t0, "t1": time.time(), "rc": res.exit_code}
            try:
                ans = json.loads(res.stdout)
                rec.update(answer=ans["answer"], entity=ans["entity"])
            except (ValueError, KeyError):
                rec["error"] = (res.output + (repr(res.exception) if res.exception else ""))[-800:]
            f.write(json.dumps(rec) + "\n")
            f.flush()
            if time.time() >= until:
                break


def _writer(home: str, name: str, logo: str, until: float, out: str, pause: float) -> None:
    _quiet_threads()
    from click.testing import CliRunner

    from logoid.cli import cli

    def op(kind: str, args: list[str]) -> None:
        t0 = time.time()
        res = CliRunner().invoke(cli, ["--home", home, *args, "--json"])
        rec = {"op": kind, "name": name, "t0": t0, "t1": time.time(), "rc": res.exit_code}
        try:
            ans = json.loads(res.stdout)
            rec["id"] = ans["band"] if kind == "add" else ans["removed"]
        except (ValueError, KeyError):
            rec["error"] = (res.output + (repr(res.exception) if res.exception else ""))[-800:]
        f.write(json.dumps(rec) + "\n")
        f.flush()

    with open(out, "w") as f:
        while True:  # at least one add and one remove
            op("add", ["add-band", "--name", name, "--image", logo])
            time.sleep(pause)
            op("remove", ["remove-band", name])
            if time.time() >= until:
                break
            time.sleep(pause)


def run_mixed(ctx, home: Path, assets, workdir: Path, seconds: float, readers: int = 8,
              churn: tuple[str, ...] = ("ALPHA", "BRAVO"), pause: float = 0.2) -> tuple[list[dict], list[dict]]:
    """``readers`` processes query photos of stable and churning bands for ``seconds`` while one writer process per
    name in ``churn`` adds and removes that band. Returns (reader records, writer records)."""
    workdir.mkdir(parents=True, exist_ok=True)
    photos = [(n, str(assets[n][1])) for n in (*BASE, *churn)]
    warm(ctx)
    until = time.time() + seconds
    procs, r_files, w_files = [], [], []
    for i in range(readers):
        r_files.append(workdir / f"reader-{i}.jsonl")
        procs.append(ctx.Process(target=_reader, args=(str(home), photos, until, str(r_files[-1]), i)))
    for name in churn:
        w_files.append(workdir / f"writer-{name}.jsonl")
        procs.append(ctx.Process(target=_writer, args=(str(home), name, str(assets[name][0]), until,
                                                       str(w_files[-1]), pause)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(seconds + 300)
        if p.is_alive():
            p.kill()
            p.join()

    def load(files):
        return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines() if line]

    return load(r_files), load(w_files)


@dataclass
class MixedReport:
    queries: int = 0
    errors: int = 0  # a query that failed (traceback, lock, any non-zero exit)
    inconsistent: int = 0  # an answer naming a band that was not in the catalog during the query, or the wrong band
    misses: int = 0  # a stable band's photo answered unknown
    unknown_churn: int = 0  # a coming-and-going band's photo answered unknown (allowed: it may be absent)
    writes: int = 0
    write_errors: int = 0
    reused_ids: int = 0
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "details"} | {"details": self.details[:20]}


def analyse(reads: list[dict], writes: list[dict], stable: dict[str, int]) -> MixedReport:
    """Judge every query against the writers' log.

    An answer is consistent when it names the band in the photo with an id that band had in the catalog at some
    moment of the query: for a stable band, its one id; for a coming-and-going one, an incarnation whose life
    (from the start of the add-band that made it to the end of the remove-band that ended it) overlaps the query.
    """
    rep = MixedReport(queries=len(reads), writes=len(writes))
    lives: dict[int, tuple[str, float, float]] = {}
    for w in writes:
        if w["rc"] != 0 or "id" not in w:
            rep.write_errors += 1
            rep.details.append(f"write failed: {w}")
            continue
        if w["op"] == "add":
            if w["id"] in lives or w["id"] in stable.values():
                rep.reused_ids += 1
                rep.details.append(f"id {w['id']} handed out twice")
            lives[w["id"]] = (w["name"], w["t0"], float("inf"))
        elif w["id"] in lives:
            name, t0, _ = lives[w["id"]]
            lives[w["id"]] = (name, t0, w["t1"])
    for q in reads:
        if q["rc"] != 0 or "answer" not in q:
            rep.errors += 1
            rep.details.append(f"query failed: {q}")
            continue
        photo, answer, key = q["photo"], q["answer"], q.get("entity")
        if photo in stable:
            if answer == "unknown":
                rep.misses += 1
            elif answer != photo or key != f"band:{stable[photo]}":
                rep.inconsistent += 1
                rep.details.append(f"{photo} photo answered {answer} ({key})")
            continue
        if answer == "unknown":
            rep.unknown_churn += 1
            continue
        bid = int(key.split(":")[1]) if key and key.startswith("band:") else None
        life = lives.get(bid) if bid is not None else None
        if answer != photo or life is None or life[0] != photo or not (life[1] <= q["t1"] and q["t0"] <= life[2]):
            rep.inconsistent += 1
            rep.details.append(f"{photo} photo answered {answer} ({key}) during [{q['t0']:.3f}, {q['t1']:.3f}]; "
                               f"that id's life: {life}")
    return rep


# ---- kill a write at each of its steps ----------------------------------------------------------------------------
@dataclass
class KillPoint:
    """What a crash at one step left, and what the next write made of it."""

    command: str
    step: str
    rc: int | None
    catalog: str  # the subject bands as the catalog has them after the crash
    index: str  # how the index stands against the catalog after the crash
    consistent: bool
    query_right: bool
    repaired: bool  # after the next write (add-band CBGB): index == catalog, queries right, no id reused
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == -9 and self.consistent and self.query_right and self.repaired


def trace_steps(ctx, template: Path, argv: list, workdir: Path) -> list[str]:
    """The fault points ``logoid ARGV`` passes, in order: each name at its first and last occurrence."""
    home = copy_home(template, workdir / "trace-home")
    trace = workdir / "trace.txt"
    trace.unlink(missing_ok=True)
    r = run_cli(ctx, ["--home", home, *argv], {"LOGOID_FAULT_TRACE": str(trace)}, workdir)
    assert r.rc == 0, r.err
    seen = trace.read_text().split()
    last = {s.split("@")[0]: s for s in seen}
    return [s for s in seen if s.endswith("@1") or last[s.split("@")[0]] == s]


def _index_note(st: HomeState) -> str:
    if not st.missing and not st.orphans:
        return "agrees"
    parts = [f"{len(st.missing)} image(s) not indexed yet" if st.missing else "",
             f"{len(st.orphans)} orphan image(s), ignored" if st.orphans else ""]
    return "; ".join(p for p in parts if p)


def _kill_step(command: str, template: str, argv: list, step: str, photos: dict[str, str], repair: list[str],
               workdir: str, out: str) -> None:
    """One kill point, in a process of its own: crash a copy of the template at ``step``, check it, write again,
    check again. The crash runs in a child forked before this process touches torch."""
    workdir_p = Path(workdir)
    home = copy_home(Path(template), workdir_p / "home")
    r = run_cli(mp.get_context("fork"), ["--home", home, *argv], {"LOGOID_FAULT": step}, workdir_p)
    _quiet_threads()
    from click.testing import CliRunner

    from logoid.cli import cli

    querier = Querier()
    st = read_home(home)
    wrong = wrong_answers(st, querier.answers(home, photos))
    fix = CliRunner().invoke(cli, ["--home", str(home), "add-band", "--name", REPAIR, "--image", repair[0]])
    after = read_home(home)
    wrong_after = wrong_answers(after, querier.answers(home, {**photos, REPAIR: repair[1]}))
    reused = sorted(i for i in after.entity_images.get(REPAIR, set()) if i <= st.issued)
    problems = st.problems + wrong + after.problems + wrong_after
    if fix.exit_code != 0:
        problems.append(f"the next write failed: {fix.output.strip()}")
    if reused:
        problems.append(f"the next write reused image id(s) {reused}")
    if not after.exact:
        problems.append(f"after the next write: {_index_note(after)}")
    row = KillPoint(command, step, r.rc, ", ".join(f"{n} {'in' if n in st.entities else 'absent'}" for n in photos),
                    _index_note(st), st.consistent, not wrong,
                    fix.exit_code == 0 and after.exact and not wrong_after and not reused and not after.problems,
                    problems)
    Path(out).write_text(json.dumps(row.__dict__))


def kill_scenario(ctx, template: Path, command: str, argv: list, subjects: dict[str, str], assets, workdir: Path,
                  parallel: int = 2) -> list[KillPoint]:
    """Kill ``logoid ARGV`` (run on a fresh copy of ``template``) at every step it passes; check each crash.
    ``subjects``: the entities the write changes (display name -> the asset its photo shows). ``parallel`` kill
    points run at once, each in its own process and home."""
    photos = {n: str(assets[a][1]) for n, a in subjects.items()}
    repair = [str(p) for p in assets[REPAIR]]
    argv = [str(a) for a in argv]
    steps = trace_steps(ctx, template, argv, workdir)
    outs = [workdir / f"step-{i}.json" for i in range(len(steps))]
    pending = [ctx.Process(target=_kill_step, args=(command, str(template), argv, step, photos, repair,
                                                    str(workdir / f"step-{i}"), str(outs[i])))
               for i, step in enumerate(steps)]
    running: list = []
    while pending or running:
        while pending and len(running) < parallel:
            running.append(pending.pop(0))
            running[-1].start()
        running[0].join(600)
        running.pop(0)
    rows = []
    for step, out in zip(steps, outs, strict=True):
        if out.exists():
            rows.append(KillPoint(**json.loads(out.read_text())))
        else:
            rows.append(KillPoint(command, step, None, "?", "?", False, False, False, ["the check itself failed"]))
    return rows


def kill_table(rows: list[KillPoint]) -> str:
    """The kill-point table (markdown): each step of each write, what the crash left, whether it held."""
    yes = {True: "yes", False: "**no**"}
    lines = ["| write | killed at | rc | catalog after the crash | index after the crash | consistent | "
             "query right | next write repairs |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.command} | `{r.step}` | {r.rc} | {r.catalog} | {r.index} | {yes[r.consistent]} | "
              f"{yes[r.query_right]} | {yes[r.repaired]} |" for r in rows]
    return "\n".join(lines)


def kill_templates(ctx, assets, workdir: Path) -> dict[str, Path]:
    """``base``: MAYHEM, KORN, DUST in catalog and index; ``stale``: FLIP imported since, not indexed."""
    base = workdir / "base"
    build_home(ctx, base, assets)
    stale = copy_home(base, workdir / "stale")
    roster, images = write_roster(workdir / "stale-roster", assets, ("FLIP",))
    r = run_cli(ctx, ["--home", stale, "catalog", "import", roster, "--images", images], {}, workdir / "setup")
    assert r.rc == 0, r.err
    return {"base": base, "stale": stale}


def write_roster(folder: Path, assets, names) -> tuple[Path, Path]:
    """A band roster CSV and its images folder (files named by band)."""
    images = folder / "logos"
    images.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(assets[n][0], images / f"{n.lower()}.png")
    roster = folder / "roster.csv"
    roster.write_text("Name,Genre\n" + "".join(f"{n},punk\n" for n in names))
    return roster, images


def kill_scenarios(assets, workdir: Path) -> list[tuple[str, str, list, dict[str, str]]]:
    """(write, template, argv, the entities it changes -> their photo's asset) for every write the test kills."""
    roster, images = write_roster(workdir / "import", assets, ("FLIP", "1984"))
    return [
        ("add-band", "base", ["add-band", "--name", "FLIP", "--image", assets["FLIP"][0]], {"FLIP": "FLIP"}),
        ("add-album", "base", ["add-album", "--title", "Flip", "--artist", "DUST", "--image", assets["FLIP"][0]],
         {"DUST - Flip": "FLIP"}),
        ("remove-band", "base", ["remove-band", "KORN"], {"KORN": "KORN"}),
        ("catalog import", "base", ["catalog", "import", roster, "--images", images], {"FLIP": "FLIP", "1984": "1984"}),
        ("build-index", "stale", ["build-index", *MODEL], {"FLIP": "FLIP"}),
    ]
