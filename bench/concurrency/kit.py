"""Real processes against one logoid home, for ``python -m bench concurrency``: the CLI in its own process, homes and
their checks (does the index agree with the catalog, is each photo answered right).

Every process here runs the real CLI (``logoid.cli.cli``). They are forked by a multiprocessing *fork server* that
has imported logoid, torch, FAISS and OpenCV once, so a process starts in milliseconds instead of seconds, and no
process is forked from one that already ran torch. Nothing here knows logoid's internals beyond the public catalog
and index readers used to check a home. The crash tests (tests/test_crash.py, tests/test_concurrency.py) run the same
workload, shorter, through tests/crashkit.py, which imports it from here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.concurrency.synth import photo_of, text_logo

MODEL = ["--model", "tiny-test", "--variants", "3"]
#: name -> seed of its synthetic logo. No two names share a letter, so no logo can pass for another (SLAYER's
#: photo does match MAYHEM's logo: A, Y, E, M). The first three are in every home; the others come and go.
BANDS = {"MAYHEM": 1, "KORN": 2, "DUST": 3, "FLIP": 4, "CBGB": 5, "1984": 6, "6502": 7}
BASE = ("MAYHEM", "KORN", "DUST")
REPAIR = "CBGB"  # the band the write after a crash adds
CHANNELS = "global,local"  # the text channel has its own orphan test (tests/test_crash.py); OCR is slow here

#: What the fork server imports once: this bench's modules (the targets of its processes) and the heavy libraries.
_PRELOAD = ["bench.concurrency.kit", "bench.concurrency.mixed", "bench.concurrency.kills", "click.testing",
            "logoid.cli", "logoid.build.steps", "logoid.build.sync", "logoid.identify.pipeline", "logoid.engine", "torch",
            "open_clip", "faiss", "cv2"]


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
    quiet_threads()
    from logoid.cli import cli

    try:
        cli.main(args=argv, prog_name="logoid")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def quiet_threads() -> None:
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
