"""8 reader processes beside 2 writer processes for a minute; then every write killed (SIGKILL) at every step."""

from __future__ import annotations

import argparse
import os
import shutil
import time

from bench._common import WORK, table
from bench.concurrency import kills, mixed
from bench.concurrency import kit as ck
from bench.record import add_no_write, save_record

CHURN = ("1984", "6502")


def run_mixed(seconds: float, readers: int) -> dict:
    work = WORK / "concurrency" / "mixed"
    shutil.rmtree(work, ignore_errors=True)
    ctx = ck.context()
    ck.warm(ctx)
    assets = ck.make_assets(work / "assets")
    home = work / "home"
    ck.build_home(ctx, home, assets)
    stable = {n: int(k.split(":")[1]) for n, k in ck.read_home(home).entities.items()}
    load0 = os.getloadavg()[0]
    t0 = time.time()
    reads, writes = mixed.run_mixed(ctx, home, assets, work / "run", seconds, readers=readers, churn=CHURN)
    wall = time.time() - t0
    rep = mixed.analyse(reads, writes, stable)
    final = ck.read_home(home)
    answered = sum(1 for q in reads if q.get("answer") not in (None, "unknown"))
    durations = sorted(q["t1"] - q["t0"] for q in reads)
    return {
        **rep.to_dict(), "seconds": seconds, "wall_s": round(wall, 1), "readers": readers, "writers": len(CHURN),
        "answered": answered, "adds": sum(1 for w in writes if w["op"] == "add"),
        "removes": sum(1 for w in writes if w["op"] == "remove"),
        "query_p50_s": round(durations[len(durations) // 2], 2) if durations else None,
        "final_index_agrees": final.exact, "cores": os.cpu_count(),
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def mixed_markdown(r: dict) -> str:
    rows = [
        [f"queries ({r['readers']} reader processes, {r['seconds']:.0f} s)", r["queries"]],
        ["  answered with a band / unknown (a coming-and-going band's photo)", f"{r['answered']} / {r['unknown_churn']}"],
        ["  **errors**", r["errors"]],
        ["  **inconsistent answers**", r["inconsistent"]],
        ["  stable band's photo answered unknown", r["misses"]],
        ["  median query time (whole `logoid query` in a warm process)", f"{r['query_p50_s']} s"],
        [f"writes ({r['writers']} writer processes): add-band / remove-band", f"{r['adds']} / {r['removes']}"],
        ["  failed writes / ids handed out twice", f"{r['write_errors']} / {r['reused_ids']}"],
        ["index == catalog at the end", "yes" if r["final_index_agrees"] else "**no**"],
        [f"load average (1 min) at start / end, {r['cores']} cores", " / ".join(map(str, r["loadavg_1min"]))],
    ]
    return table(["what", "count"], rows)


def mixed_summary(r: dict) -> str:
    return (f"{r['readers']} readers + {r['writers']} writers for {r['seconds']:.0f} s: {r['queries']} queries, "
            f"**{r['errors']} errors, {r['inconsistent']} inconsistent**, {r['misses']} misses; "
            f"{r['adds']} adds / {r['removes']} removes, {r['write_errors']} failed")


def run_kill(parallel: int) -> tuple[dict, list]:
    work = WORK / "concurrency" / "kill"
    shutil.rmtree(work, ignore_errors=True)
    ctx = ck.context()
    ck.warm(ctx)
    assets = ck.make_assets(work / "assets")
    templates = kills.kill_templates(ctx, assets, work / "templates")
    t0 = time.time()
    rows = []
    for write, template, argv, subjects in kills.kill_scenarios(assets, work / "scenarios"):
        rows += kills.kill_scenario(ctx, templates[template], write, argv, subjects, assets,
                                 work / write.replace(" ", "-"), parallel=parallel)
    numbers = {
        "kill_points": len(rows), "killed": sum(r.rc == -9 for r in rows),
        "consistent": sum(r.consistent for r in rows), "query_right": sum(r.query_right for r in rows),
        "repaired": sum(r.repaired for r in rows), "wall_s": round(time.time() - t0, 1), "cores": os.cpu_count(),
        "rows": [r.__dict__ for r in rows],
    }
    return numbers, rows


def kill_summary(n: dict) -> str:
    """The kill-point table in one line per write command: its named steps, then consistent / query right /
    repaired by the next write, of the kill points."""
    by_cmd: dict[str, list[dict]] = {}
    for r in n["rows"]:
        by_cmd.setdefault(r["command"], []).append(r)
    parts = []
    for cmd, rows in by_cmd.items():
        steps = ", ".join(r["step"].split("@")[0] for r in rows)
        ok = [sum(bool(r[k]) for r in rows) for k in ("consistent", "query_right", "repaired")]
        parts.append(f"{cmd} ({steps}): {ok[0]}/{ok[1]}/{ok[2]} of {len(rows)}")
    return (f"{n['kill_points']} kill points, consistent / query right / repaired by the next write: "
            f"**{n['consistent']} / {n['query_right']} / {n['repaired']}**; " + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long readers and writers run side by side")
    ap.add_argument("--readers", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=2, help="kill points checked at once")
    add_no_write(ap)
    args = ap.parse_args(argv)
    mix = run_mixed(args.seconds, args.readers)
    kill, rows = run_kill(args.parallel)
    md = (f"Readers beside writers:\n\n{mixed_markdown(mix)}\n\nA write killed at every step "
          f"({kill['wall_s']} s for {kill['kill_points']} kill points):\n\n{kills.kill_table(rows)}")
    print(md)
    for d in mix["details"]:
        print(d)
    for r in rows:
        if r.problems:
            print(f"{r.command} {r.step}: {r.problems}")
    if not args.no_write:
        save_record("concurrency", "processes", {"mixed": mix, "kill": kill}, md,
                    summary=f"{mixed_summary(mix)}. {kill_summary(kill)}")
    bad = mix["errors"] or mix["inconsistent"] or mix["write_errors"] or mix["reused_ids"]
    return 1 if bad or not all(r.ok for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
