"""Kill points: each write SIGKILLed (``LOGOID_FAULT=STEP@N``, :mod:`logoid.core.faults`) at every step it passes, on a
fresh copy of a home; then the checks of bench/concurrency/kit.py, before and after the next write."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.concurrency.kit import (
    MODEL,
    REPAIR,
    HomeState,
    Querier,
    build_home,
    copy_home,
    quiet_threads,
    read_home,
    run_cli,
    wrong_answers,
)


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
    quiet_threads()
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
