"""Cold `logoid query`: a new process, no server. Wall time to the answer, where it goes, and (against a baseline
source tree) whether the answers stay the same.

    python -m bench.serve.cold                          # demo home + the 1k band-logos home, 5 runs each
    python -m bench.serve.cold --baseline-ref HEAD      # the same, against the code of a commit, runs interleaved
    python -m bench.serve.cold --baseline /tmp/src      # against a source tree laid out as this repository
    python -m bench.serve.cold --home my-home --photo p.jpg --runs 7

Per home, after one untimed run of each variant (bytecode caches and the page cache filled, as on a machine in use):
the median (and every value) of ``--runs`` cold ``python -m logoid query PHOTO --json`` wall times; the
median split of the same cold query into steps (``_cold_child.py``: CLI import, index load, torch import, model
build, OCR load, the query itself); with a baseline, the same for the baseline code, runs interleaved so a change
in the machine's load hits both alike, and every photo of the home answered by both (``logoid batch`` → JSONL)
and compared minus timings. Prints one JSON dict; records nothing (the serve subject records it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench._common import DATA, ROOT

CHILD = Path(__file__).with_name("_cold_child.py")
_NEUTRAL: list[str] = []


def neutral() -> str:
    """An empty folder the timed processes run in: not the checkout, whose ``logoid/`` would shadow a baseline on
    ``PYTHONPATH`` (``python -m`` puts the working folder first on the import path)."""
    if not _NEUTRAL:
        _NEUTRAL.append(tempfile.mkdtemp(prefix="logoid-cold-"))
    return _NEUTRAL[0]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")


# ---------------------------------------------------------------------------------------------- code under test


def import_tree(src: Path, out: Path) -> Path:
    """A folder to put on ``PYTHONPATH`` so ``import logoid`` runs the source tree ``src`` (laid out as this
    repository: ``logoid/``, ``engine/``, ``index/``... mapped as pyproject's ``package-dir`` maps them)."""
    import tomllib

    dirs = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for pkg, folder in sorted(dirs.items(), key=lambda kv: kv[0].count(".")):  # logoid before logoid.engine
        target = out.joinpath(*pkg.split("."))
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src / folder, target, ignore=shutil.ignore_patterns("__pycache__"))
    return out


def tree_of_ref(ref: str, out: Path) -> Path:
    """The source tree of git ``ref``, unpacked in ``out``."""
    archive = out / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", ref], cwd=ROOT, stdout=f, check=True)
    with tarfile.open(archive) as t:
        t.extractall(out / "src", filter="data")
    return out / "src"


def env_for(pythonpath: Path | None) -> dict:
    """The environment of a timed process: offline, and writing bytecode caches as an installed package has them
    (with ``PYTHONDONTWRITEBYTECODE`` set every process compiles each changed module again: ~0.1-0.3 s)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


# ---------------------------------------------------------------------------------------------- measurements


def cold_query(home: Path, photo: Path, env: dict) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "logoid", "--home", str(home), "query", str(photo), "--json"],
                       capture_output=True, text=True, env=env, cwd=neutral())
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"logoid query failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, json.loads(r.stdout)


def split(home: Path, photo: Path, env: dict) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(CHILD), str(home), str(photo)], capture_output=True, text=True,
                       env=env, cwd=neutral())
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"cold split failed ({r.returncode}): {r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    d["startup_and_exit"] = round(wall - d["total_in_process"], 4)  # interpreter start, site, teardown
    d["wall"] = round(wall, 4)
    return d


def answers(home: Path, photos: list[Path], env: dict, tmp: Path, tag: str) -> dict[str, dict]:
    """Every photo's answer JSON (``logoid batch`` over links to them, one folder for every variant: the answers
    name it), minus timings, by photo name."""
    folder = tmp / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        link = folder / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    out = tmp / f"answers-{tag}.jsonl"
    r = subprocess.run([sys.executable, "-m", "logoid", "--home", str(home), "batch", str(folder), "-o", str(out)],
                       capture_output=True, text=True, env=env, cwd=neutral())
    if r.returncode != 0:
        raise RuntimeError(f"logoid batch failed ({r.returncode}): {r.stderr[-2000:]}")
    res = {}
    for line in out.read_text().splitlines():
        d = json.loads(line)
        d.pop("timings", None)
        res[Path(d["path"]).name] = d
    return res


def code_under_test(env: dict) -> str:
    """The folder ``logoid.engine`` is imported from in a timed process (which tree a variant really runs)."""
    r = subprocess.run([sys.executable, "-c", "import logoid.engine as e; print(e.__file__)"], capture_output=True,
                       text=True, env=env, cwd=neutral(), check=True)
    return str(Path(r.stdout.strip()).parent)


def _median_split(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], int | float)]
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in keys}


def measure_home(name: str, home: Path, photo: Path, photos: list[Path], runs: int, variants: dict[str, dict],
                 tmp: Path) -> dict:
    """Interleaved cold runs of every code variant on one home."""
    walls: dict[str, list[float]] = {v: [] for v in variants}
    splits: dict[str, list[dict]] = {v: [] for v in variants}
    first: dict[str, dict] = {}
    for env in variants.values():  # untimed: bytecode caches written, files in the page cache, as on a used machine
        cold_query(home, photo, env)
    for _ in range(runs):
        for v, env in variants.items():
            wall, ans = cold_query(home, photo, env)
            walls[v].append(round(wall, 3))
            first.setdefault(v, ans)
            splits[v].append(split(home, photo, env))
    out: dict = {"home": str(home), "photo": photo.name, "photos_compared": len(photos)}
    for v in variants:
        out[v] = {"total_s": round(statistics.median(walls[v]), 3), "totals_s": walls[v],
                  "split_s": _median_split(splits[v]), "answer": first[v].get("answer")}
    if len(variants) > 1:
        got = {v: answers(home, photos, env, tmp / name, v) for v, env in variants.items()}
        (a, ga), (b, gb) = list(got.items())[:2]
        out["answers_same"] = ga == gb
        out["answers_differ"] = sorted(k for k in set(ga) | set(gb) if ga.get(k) != gb.get(k))
        out["accepted"] = {v: sum(1 for d in g.values() if d.get("accepted")) for v, g in got.items()}
        out["query_same"] = ({k: w for k, w in first[a].items() if k != "timings"}
                             == {k: w for k, w in first[b].items() if k != "timings"})
    return out


# ---------------------------------------------------------------------------------------------- homes


def default_homes() -> list[tuple[str, Path, Path, list[Path]]]:
    """(name, home, timed photo, photos to compare): the demo home, and the 1k band-logos home when the data is
    there (both built on first use)."""
    from bench._homes import demo_home, home_photos, logos_home

    demo = demo_home()
    demo_photos = sorted([demo / "demo" / "photo_starbucks.jpg", demo / "demo" / "photo_unknown_archlinux.jpg"]
                         + [p for p in (demo / "demo" / "calibration").iterdir() if p.suffix in IMAGE_SUFFIXES])
    homes = [("demo", demo, demo / "demo" / "photo_starbucks.jpg", demo_photos)]
    if (DATA / "band-logos").is_dir():
        logos = logos_home(DATA)
        photos = [Path(p["photo"]) for p in home_photos(logos)]
        timed = next(p for p, d in zip(photos, home_photos(logos), strict=True) if d["kind"] == "known")
        homes.append(("logos-1000", logos, timed, photos))
    return homes


def run(homes, runs: int = 5, baseline: Path | None = None) -> dict:
    """``homes``: (name, home, timed photo, photos to compare) tuples; ``baseline``: a source tree to compare."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        variants = {"new": env_for(None)}
        if baseline is not None:
            variants = {"baseline": env_for(import_tree(baseline, tmp / "baseline")), **variants}
        load0 = os.getloadavg()
        out: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "runs": runs,
                     "variants": {v: code_under_test(env) for v, env in variants.items()}, "homes": {}}
        if len(set(out["variants"].values())) < len(variants):
            raise RuntimeError(f"the variants import the same code: {out['variants']}")
        for name, home, photo, photos in homes:
            out["homes"][name] = measure_home(name, home, photo, photos, runs, variants, tmp)
        out["loadavg_1min"] = [round(load0[0], 2), round(os.getloadavg()[0], 2)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, action="append", help="a home to measure (repeatable; default: demo + 1k)")
    ap.add_argument("--photo", type=Path, action="append", help="the photo timed in each --home, in order")
    ap.add_argument("--runs", type=int, default=5, help="cold runs per home and code variant (median reported)")
    base = ap.add_mutually_exclusive_group()
    base.add_argument("--baseline", type=Path, help="a source tree (this repository's layout) to compare with")
    base.add_argument("--baseline-ref", help="a git ref whose code to compare with, e.g. HEAD")
    args = ap.parse_args(argv)
    if args.home:
        if not args.photo or len(args.photo) != len(args.home):
            ap.error("give one --photo per --home")
        homes = [(h.name, h.resolve(), p.resolve(), [p.resolve()]) for h, p in zip(args.home, args.photo, strict=True)]
    else:
        homes = default_homes()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = tree_of_ref(args.baseline_ref, Path(tmp)) if args.baseline_ref else args.baseline
        result = run(homes, args.runs, baseline.resolve() if baseline else None)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
