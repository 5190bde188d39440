"""One way to record a bench run: a JSON file per run, ``bench/results/<subject>/<UTC date-time>-<name>-<machine>.json``.

A record holds what a reader needs to trust a number: the machine (CPU model, cores, RAM, accelerator), the git
commit, the exact command, the date, the numbers as data, the rendered tables, a one-line summary of the key numbers
(shown on BENCHMARKS.md's current-numbers page) and free notes. Records are committed; BENCHMARKS.md is generated from
them (:mod:`bench.publish`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

from bench._common import ROOT

SCHEMA = 1
RESULTS = ROOT / "bench" / "results"
#: The command line of this run; ``python -m bench`` sets it (else it is read from ``sys.argv``).
COMMAND: str | None = None
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def add_no_write(ap: argparse.ArgumentParser) -> None:
    """Every bench records its run by default; ``--no-write`` (the one flag, the same in every bench) skips that."""
    ap.add_argument("--no-write", action="store_true",
                    help="print the results only: don't record the run (nor regenerate BENCHMARKS.md)")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``lscpu``, else what Python knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """This machine: CPU model, cores, RAM, accelerator, Python and torch versions.

    Imports nothing heavy: the accelerator is read from torch only when the bench already imported it.
    """
    from importlib import metadata

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    torch = sys.modules.get("torch")
    accel = "CPU only"
    if torch is not None and torch.cuda.is_available():
        accel = "CUDA " + torch.cuda.get_device_name(0)
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": round(ram), "accelerator": accel,
            "python": platform.python_version(), "torch": torch_version}


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_id(machine: dict) -> str:
    """Which machine a record is from, as a file-name part: CPU model and cores (and the GPU, if one was used).

    Records of one machine id are one line of the current-numbers page (the latest wins)."""
    out = f"{_slug(machine.get('cpu') or 'unknown-cpu')}-{machine.get('cores') or 0}c"
    accel = machine.get("accelerator") or "CPU only"
    return out if accel == "CPU only" else f"{out}-{_slug(accel)}"


def machine_label(machine: dict) -> str:
    """``AMD EPYC, 2 cores, 24 GiB RAM`` (+ the accelerator when there is one)."""
    parts = [machine.get("cpu") or "unknown CPU", f"{machine.get('cores')} cores"]
    if machine.get("ram_gib"):
        parts.append(f"{machine['ram_gib']} GiB RAM")
    if (machine.get("accelerator") or "CPU only") != "CPU only":
        parts.append(machine["accelerator"])
    return ", ".join(parts)


def git_commit(root: Path = ROOT) -> tuple[str | None, bool]:
    """(HEAD's sha, whether the working tree has uncommitted changes); (None, False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, False
    return sha or None, bool(dirty)


def command_line() -> str:
    """The command that started this run."""
    if COMMAND:
        return COMMAND
    return shlex.join(["python", *sys.argv])


def _jsonable(x):
    """json.dumps fallback: numpy scalars and arrays, paths, sets."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=str)
    return str(x)


def save_record(subject: str, name: str, numbers: dict, markdown: str = "", *, summary: str = "",
                notes: str = "", title: str | None = None, command: str | None = None, machine: dict | None = None,
                when: dt.datetime | None = None, results_dir: Path | None = None, publish: bool = True,
                extra: dict | None = None) -> Path:
    """Write one run's record and (``publish``) regenerate BENCHMARKS.md from ``bench/results``; returns its path.

    ``numbers``: the run's results as data (any JSON-able dict); ``markdown``: its rendered tables; ``summary``: one
    short markdown line of the key numbers for the current-numbers page; ``notes``: free text under the tables.
    ``title`` defaults to the record's title in :data:`bench.SUBJECTS`. A ``results_dir`` other than the default
    (tests) is never published. ``extra``: fields set last (the legacy importer's ``commit`` and ``legacy``).
    """
    from bench import SUBJECTS

    if not _NAME.match(subject) or not _NAME.match(name):
        raise ValueError(f"subject and name must be lower-case slugs (they make anchors), got {subject!r}, {name!r}")
    when = (when or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(microsecond=0)
    machine = machine or machine_info()
    sha, dirty = git_commit()
    known = SUBJECTS.get(subject)
    rec = {
        "schema": SCHEMA, "subject": subject, "name": name,
        "title": title or (known.records.get(name) if known else None) or name,
        "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine, "commit": sha, "dirty": dirty,
        "command": command or command_line(), "summary": summary.strip(), "numbers": numbers,
        "markdown": markdown.strip(), "notes": notes.strip(), **(extra or {}),
    }
    folder = (results_dir or RESULTS) / subject
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{when:%Y-%m-%dT%H%M%SZ}-{name}-{machine_id(machine)}"
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1, ensure_ascii=False, default=_jsonable) + "\n")
    os.replace(tmp, path)
    print(f"recorded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)
    if publish and results_dir is None:
        from bench.publish import publish as regenerate

        for out in regenerate():
            print(f"regenerated {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", file=sys.stderr)
    return path


def load_records(results_dir: Path | None = None) -> list[dict]:
    """Every record under ``results_dir`` (default ``bench/results``), oldest first; each gains ``"path"``."""
    out = []
    for p in sorted((results_dir or RESULTS).glob("*/*.json")):
        rec = json.loads(p.read_text())
        if not isinstance(rec, dict) or rec.get("schema") != SCHEMA or rec.get("subject") != p.parent.name:
            continue  # not a record (a stray result file)
        rec["path"] = p
        out.append(rec)
    return sorted(out, key=lambda r: (r["date"], str(r["path"])))
