"""Readers beside writers: query processes and add/remove processes on one home at once, and the judge of every
answer against the writers' log (bench/concurrency/kit.py runs the processes)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.concurrency.kit import BASE, CHANNELS, quiet_threads, warm


def _reader(home: str, photos: list[tuple[str, str]], until: float, out: str, seed: int) -> None:
    quiet_threads()
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
    quiet_threads()
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
