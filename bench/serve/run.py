"""logoid serve: ready time, resident memory, warm latency at 1, 4 and 16 clients, the cores' limit, cold query.

Also `logoid query --server` end to end beside the cold query; the issue's targets read on the last home.

    python -m bench serve [--homes demo,logos-1000] [--seconds 60] [--no-write]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import DATA, ROOT, WORK, table
from bench.record import add_no_write, cpu_model, save_record

LOGOID = str(Path(sys.executable).with_name("logoid"))
#: The issue's targets (at 1k references): warm p50 with one client, 16 clients for a minute with no error at
#: >= 80 % of the cores' limit, cold `logoid query`, `logoid query --server` end to end.
TARGETS = {"warm_p50_s": 0.5, "errors": 0, "limit_share": 0.80, "cold_s": 4.0, "server_query_s": 0.7}
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# ---- homes and their photos ------------------------------------------------------------------------------------
def _guarded(root: Path) -> None:
    """A home folder without its marker is being built by another process (or was killed half way): refused here
    rather than deleted under that build by bench/_homes.py."""
    from bench._homes import MARKER

    if root.exists() and not (root / MARKER).exists():
        raise SystemExit(f"error: {root} has no {MARKER}: being built by another process, or killed half way "
                         "(wait for it, or delete the folder and run again to build it)")


def demo_home() -> tuple[Path, list[Path]]:
    """bench/_homes.py's demo home (what `make demo` builds); its two demo photos and the first 18 of its
    calibration photos (simulated prints of known and unknown icons)."""
    from bench import _homes

    _guarded(_homes.HOMES / "demo")
    root = _homes.demo_home()
    demo = root / "demo"
    return root, sorted(demo.glob("photo_*.jpg")) + sorted((demo / "calibration").glob("*.jpg"))[:18]


def logos_home(n: int = 1000) -> tuple[Path, list[Path]]:
    """bench/_homes.py's home of the first ``n`` band logos and its 20 query photos (known ones first)."""
    from bench import _homes

    _guarded(_homes.HOMES / f"logos-{n}")
    root = _homes.logos_home(DATA, n)
    return root, [Path(p["photo"]) for p in _homes.home_photos(root)]


HOME_MAKERS = {"demo": demo_home, "logos-1000": logos_home}


def references(root: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{root / 'catalog.db'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])


# ---- the server process ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_memory(pid: int) -> dict:
    """Resident memory of a process from /proc/<pid>/status, MiB: ``peak`` (VmHWM, the resident high-water mark)
    and ``now`` (VmRSS)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out["peak" if key == "VmHWM" else "now"] = round(int(val.split()[0]) / 1024, 1)
    return out


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    ready_s: float
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(home: Path, workdir: Path, timeout: float = 300.0) -> Server:
    """`logoid serve` on a free loopback port; returns once ``GET /v1/health`` answers 200 (the ready time: from
    just before the process is started)."""
    port = free_port()
    log = workdir / "server.log"
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen([LOGOID, "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
    while True:
        try:
            status, _ = get(port, "/v1/health", timeout=2)
            if status == 200:
                return Server(proc, port, time.perf_counter() - t0, log)
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"logoid serve exited ({proc.returncode}) before it was ready: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            raise RuntimeError(f"logoid serve was not ready after {timeout:.0f} s")
        time.sleep(0.05)


# ---- clients -----------------------------------------------------------------------------------------------------
def multipart(path: Path) -> tuple[bytes, str]:
    boundary = "bench-" + uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Sample:
    photo: str
    t0: float
    t1: float
    status: int  # HTTP status; 0 when the request failed without one
    answer: str | None = None
    server_s: float | None = None  # the answer's timings.total: the identification itself

    @property
    def latency(self) -> float:
        return self.t1 - self.t0


@dataclass
class Client:
    """One client: its own keep-alive connection, photos in turn from ``offset``."""

    port: int
    bodies: list[tuple[str, bytes, str]]
    offset: int = 0
    step: int = 1
    samples: list[Sample] = field(default_factory=list)
    conn: http.client.HTTPConnection | None = None

    def one(self, k: int) -> Sample:
        name, body, ctype = self.bodies[k % len(self.bodies)]
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            self.conn.request("POST", "/v1/identify", body=body, headers={"Content-Type": ctype})
            r = self.conn.getresponse()
            raw = r.read()
            s = Sample(name, t0, time.perf_counter(), r.status)
            if r.status == 200:
                ans = json.loads(raw)
                s.answer = ans.get("answer") or ans.get("status")
                s.server_s = (ans.get("timings") or {}).get("total")
        except (OSError, http.client.HTTPException, ValueError):
            s = Sample(name, t0, time.perf_counter(), 0)
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        self.samples.append(s)
        return s

    def loop(self, start: threading.Barrier, deadline: list[float]) -> None:
        start.wait()
        k = self.offset
        while time.perf_counter() < deadline[0]:
            self.one(k)
            k += self.step
        if self.conn is not None:
            self.conn.close()


def sequential(port: int, bodies, n: int) -> list[Sample]:
    """One client, ``n`` requests one after the other over the photos in turn (after one warm-up pass)."""
    c = Client(port, bodies)
    for k in range(len(bodies)):
        c.one(k)
    c.samples.clear()
    for k in range(n):
        c.one(k)
    return c.samples


def concurrent(port: int, bodies, clients: int, seconds: float) -> tuple[list[Sample], float]:
    """``clients`` threads, each looping for ``seconds`` (a request under way at the deadline finishes);
    returns the samples and the wall time from the start to the last answer."""
    start = threading.Barrier(clients + 1)
    deadline = [float("inf")]
    cs = [Client(port, bodies, offset=i, step=clients) for i in range(clients)]
    threads = [threading.Thread(target=c.loop, args=(start, deadline), daemon=True) for c in cs]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    samples = sorted((s for c in cs for s in c.samples), key=lambda s: s.t0)
    wall = max((s.t1 for s in samples), default=t0) - t0
    return samples, wall


def quantile(values: list[float], q: float) -> float | None:
    v = sorted(values)
    if not v:
        return None
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarise(samples: list[Sample], wall: float | None, reference: dict[str, str | None]) -> dict:
    ok = [s for s in samples if s.status == 200]
    lat = [s.latency for s in ok]
    wall = wall if wall is not None else sum(s.latency for s in samples)
    differ = [s for s in ok if s.photo in reference and s.answer != reference[s.photo]]
    return {
        "requests": len(samples), "ok": len(ok), "errors": len(samples) - len(ok),
        "error_statuses": sorted({s.status for s in samples if s.status != 200}),
        "wall_s": round(wall, 2), "photos_per_s": round(len(ok) / wall, 3) if wall > 0 else None,
        "p50_s": _r(quantile(lat, 0.5)), "p95_s": _r(quantile(lat, 0.95)), "max_s": _r(max(lat, default=None)),
        "server_p50_s": _r(quantile([s.server_s for s in ok if s.server_s is not None], 0.5)),
        "answers_differ": len(differ),  # from the one-client answer of the same photo
    }


def _r(x: float | None, d: int = 3) -> float | None:
    return None if x is None else round(x, d)


# ---- processes timed end to end ------------------------------------------------------------------------------------
def time_cli(argv: list[str], repeat: int) -> dict:
    """Wall time of ``logoid ARGV`` as a new process, median of ``repeat`` (after one untimed run: the files are in
    the page cache for every timed one); the first answer's JSON is checked."""
    times, answer = [], None
    for i in range(repeat + 1):
        t = time.perf_counter()
        r = subprocess.run([LOGOID, *argv], capture_output=True, text=True, env={**os.environ, **ENV}, timeout=600)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"logoid {' '.join(argv)} failed ({r.returncode}): {r.stderr[-1000:]}")
        if i == 0:
            answer = json.loads(r.stdout).get("answer")
        else:
            times.append(dt)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": repeat, "answer": answer}


def cold_query(key: str, home: Path, photo: Path, repeat: int) -> dict:
    """Cold `logoid query PHOTO --json` (no server), by bench/serve/cold.py: median of ``repeat`` new processes, and
    where the time goes (its step-by-step split, median)."""
    from bench.serve import cold

    r = cold.run([(key, home, photo, [photo])], runs=repeat)["homes"][key]["new"]
    return {"median_s": r["total_s"], "min_s": min(r["totals_s"]), "max_s": max(r["totals_s"]), "runs": repeat,
            "totals_s": r["totals_s"], "split_s": r["split_s"], "answer": r["answer"], "by": "bench/serve/cold.py"}


def direct(home: Path, photos: list[Path], seconds: float, *, threads: int = 1, processes: int = 0,
           workdir: Path | None = None) -> dict:
    """The library without HTTP (bench/serve/direct.py): one process of ``threads`` threads, or ``processes``
    processes of one thread each (torch's threads shared out among them) started together."""
    base = [sys.executable, "-m", "bench.serve.direct", "--home", str(home), "--seconds", str(seconds)]
    photo_args = [str(p) for p in photos]
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": ROOT,
          "env": {**os.environ, **ENV}}
    if not processes:
        r = subprocess.run([*base, "--threads", str(threads), *photo_args], timeout=seconds + 600, **kw)
        if r.returncode != 0:
            raise RuntimeError(f"bench.serve.direct failed ({r.returncode}): {r.stderr[-2000:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out.pop("latencies")
        return {"mode": f"1 process × {threads} thread(s)", **out}
    go = workdir / "go"
    for f in workdir.glob("go*"):
        f.unlink()
    per = max(1, (os.cpu_count() or 1) // processes)
    procs = [subprocess.Popen([*base, "--threads", "1", "--torch-threads", str(per), "--go", str(go), *photo_args],
                              **kw) for _ in range(processes)]
    t0 = time.time()
    while len(list(workdir.glob("go.ready-*"))) < processes:
        if any(p.poll() is not None for p in procs) or time.time() - t0 > 600:
            for p in procs:
                p.kill()
            raise RuntimeError("bench.serve.direct: a process exited (or none warmed in 600 s) before the start")
        time.sleep(0.05)
    tmp = workdir / "go.tmp"
    tmp.write_text(repr(time.time() + 0.5))
    tmp.rename(go)
    runs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=seconds + 600)
        if p.returncode != 0:
            raise RuntimeError(f"bench.serve.direct failed ({p.returncode}): {stderr[-2000:]}")
        runs.append(json.loads(stdout.strip().splitlines()[-1]))
    lat = [x for r in runs for x in r["latencies"]]
    start, end = min(r["start"] for r in runs), max(r["end"] for r in runs)
    return {"mode": f"{processes} processes × 1 thread (torch {per} thread(s) each)", "threads": processes,
            "seconds": seconds, "wall_s": round(end - start, 3), "photos": len(lat),
            "photos_per_s": round(len(lat) / (end - start), 3), "p50_s": _r(quantile(lat, 0.5), 4),
            "p95_s": _r(quantile(lat, 0.95), 4), "load_s": max(r["load_s"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "error_samples": [e for r in runs for e in r["error_samples"]]}


# ---- one home ----------------------------------------------------------------------------------------------------
def run_home(key: str, args) -> dict:
    root, photos = HOME_MAKERS[key]()
    work = WORK / "serve" / key
    work.mkdir(parents=True, exist_ok=True)
    bodies = [(p.name, *multipart(p)) for p in photos]
    cores = os.cpu_count() or 1
    out: dict = {"home": key, "references": references(root), "photos": len(photos), "cores": cores,
                 "loadavg_1min": [round(os.getloadavg()[0], 2)]}
    print(f"[{key}] {out['references']} references, {len(photos)} photos: starting logoid serve", file=sys.stderr)
    server = start_server(root, work)
    try:
        out["ready_s"] = round(server.ready_s, 2)
        stats = json.loads(get(server.port, "/v1/stats")[1])
        out["server_ready_after_s"] = stats.get("ready_after_s")
        out["server_threads"] = stats.get("threads")
        out["rss_ready_mib"] = proc_memory(server.proc.pid)
        print(f"[{key}] ready in {server.ready_s:.1f} s; 1 client, {args.requests} requests", file=sys.stderr)
        seq = sequential(server.port, bodies, args.requests)
        reference = {}
        for s in seq:
            reference.setdefault(s.photo, s.answer)
        out["clients"] = {"1": summarise(seq, None, {})}
        for n, seconds in ((4, args.seconds_4), (16, args.seconds)):
            print(f"[{key}] {n} clients for {seconds:.0f} s", file=sys.stderr)
            samples, wall = concurrent(server.port, bodies, n, seconds)
            out["clients"][str(n)] = {"seconds": seconds, **summarise(samples, wall, reference)}
        out["rss_after_load_mib"] = proc_memory(server.proc.pid)
        print(f"[{key}] logoid query --server ×{args.repeat}", file=sys.stderr)
        out["server_query"] = time_cli(["query", str(photos[0]), "--server", server.url, "--json"], args.repeat)
        out["server_answer_first_photo"] = reference.get(photos[0].name)
    finally:
        server.stop()
    print(f"[{key}] the library without HTTP: 1 and {cores} threads, {cores} processes", file=sys.stderr)
    out["direct"] = {f"{t} threads": direct(root, photos, args.direct_seconds, threads=t) for t in sorted({1, cores})}
    if cores > 1:
        out["direct"][f"{cores} processes"] = direct(root, photos, args.direct_seconds, processes=cores, workdir=work)
    print(f"[{key}] cold logoid query ×{args.repeat}", file=sys.stderr)
    out["cold_query"] = cold_query(key, root, photos[0], args.repeat)
    out["loadavg_1min"].append(round(os.getloadavg()[0], 2))

    best = max(out["direct"].values(), key=lambda d: d["photos_per_s"] or 0)
    one = out["direct"]["1 threads"]
    out["limit"] = {
        "photos_per_s": best["photos_per_s"], "by": best["mode"],
        "cores_over_service_s": round(cores / one["p50_s"], 3) if one.get("p50_s") else None,
        "server_16_share": (round(out["clients"]["16"]["photos_per_s"] / best["photos_per_s"], 3)
                            if best["photos_per_s"] else None),
    }
    return out


# ---- reporting -------------------------------------------------------------------------------------------------
def targets(h: dict) -> list[dict]:
    c1, c16 = h["clients"]["1"], h["clients"]["16"]
    share = h["limit"]["server_16_share"]
    rows = [
        ("warm p50, one client", f"≤ {TARGETS['warm_p50_s']} s", f"{c1['p50_s']} s",
         c1["p50_s"] <= TARGETS["warm_p50_s"]),
        (f"16 clients for {c16['seconds']:.0f} s: errors", "0", f"{c16['errors']} of {c16['requests']}",
         c16["errors"] == 0 and c16["seconds"] >= 60),
        ("16 clients: throughput / the cores' limit", f"≥ {TARGETS['limit_share']:.0%}",
         f"{share:.0%}" if share is not None else "n/a", share is not None and share >= TARGETS["limit_share"]),
        ("cold `logoid query`", f"≤ {TARGETS['cold_s']} s", f"{h['cold_query']['median_s']} s",
         h["cold_query"]["median_s"] <= TARGETS["cold_s"]),
        ("`logoid query --server`", f"≤ {TARGETS['server_query_s']} s", f"{h['server_query']['median_s']} s",
         h["server_query"]["median_s"] <= TARGETS["server_query_s"]),
    ]
    return [{"what": w, "target": t, "measured": m, "met": bool(ok)} for w, t, m, ok in rows]


def markdown(homes: dict[str, dict], target_home: str) -> str:
    keys = list(homes)
    head = ["", *(f"{k} ({homes[k]['references']} refs)" for k in keys)]

    def row(label, fn):
        return [label, *(fn(homes[k]) for k in keys)]

    server = table(head, [
        row("ready: process start → `GET /v1/health` 200", lambda h: f"{h['ready_s']} s"),
        row("  the server's own warm-up (models, indexes, one photo per thread)",
            lambda h: f"{h['server_ready_after_s']} s"),
        row("resident memory, peak (VmHWM) when ready", lambda h: f"{h['rss_ready_mib']['peak']:.0f} MiB"),
        row("resident memory, peak (VmHWM) after all the load", lambda h: f"{h['rss_after_load_mib']['peak']:.0f} MiB"),
        row("resident memory now (VmRSS) after the load", lambda h: f"{h['rss_after_load_mib']['now']:.0f} MiB"),
        row("server threads (photos in parallel)", lambda h: h["server_threads"]),
    ])
    load_rows = []
    for k in keys:
        h = homes[k]
        for n, c in h["clients"].items():
            load_rows.append([k, n, c["requests"] if n == "1" else f"{c['requests']} in {c['seconds']:.0f} s",
                              c["photos_per_s"], f"**{c['errors']}**", c["p50_s"], c["p95_s"], c["server_p50_s"],
                              c["answers_differ"] if n != "1" else "—"])
    load = table(["home", "clients", "requests", "photos/s", "errors", "p50 s", "p95 s", "identify p50 s (server)",
                  "answers ≠ 1-client answer"], load_rows)
    modes = list(homes[keys[0]]["direct"])
    limit = table(head, [
        *(row(f"library, no HTTP, {m}: photos/s (p50 s)",
              lambda h, m=m: f"{h['direct'][m]['photos_per_s']} ({h['direct'][m]['p50_s']})") for m in modes),
        row("  cores ÷ the 1-thread p50, photos/s (an upper bound only: one photo already uses several cores)",
            lambda h: h["limit"]["cores_over_service_s"]),
        row("**the cores' limit**: the best of those, photos/s", lambda h: h["limit"]["photos_per_s"]),
        row("server, 16 clients: photos/s", lambda h: h["clients"]["16"]["photos_per_s"]),
        row("server ÷ the limit", lambda h: f"**{h['limit']['server_16_share']:.0%}**"),
    ])
    query = table(head, [
        row("cold `logoid query --json` (new process, no server): median s",
            lambda h: f"{h['cold_query']['median_s']} (of {h['cold_query']['runs']})"),
        row("  of which (median steps): CLI import / index load / torch import / model build / OCR load / query / "
            "Python start and exit", lambda h: " / ".join(str(h["cold_query"]["split_s"].get(k)) for k in (
                "cli_import", "index_load", "torch_import", "model_build", "ocr_load", "query", "startup_and_exit"))),
        row("`logoid query --server URL --json`, whole process: median s",
            lambda h: f"{h['server_query']['median_s']} (of {h['server_query']['runs']})"),
    ])
    tgt = table(["target (issue 23)", "wanted", "measured", "met"],
                [[t["what"], t["target"], t["measured"], "yes" if t["met"] else "**no**"]
                 for t in homes[target_home]["targets"]])
    return (f"The server:\n\n{server}\n\nWarm `POST /v1/identify` over loopback:\n\n{load}\n\nThe cores' limit "
            f"(the same photos through `Identifier.identify`, no HTTP):\n\n{limit}\n\nOne query, end to end:\n\n"
            f"{query}\n\nTargets, on the {target_home} home ({homes[target_home]['references']} references):\n\n{tgt}")


def summary(homes: dict[str, dict], target_home: str) -> str:
    h = homes[target_home]
    c1, c16 = h["clients"]["1"], h["clients"]["16"]
    met = sum(t["met"] for t in h["targets"])
    return (f"{target_home} ({h['references']} refs): ready {h['ready_s']} s, peak RSS "
            f"{h['rss_after_load_mib']['peak']:.0f} MiB; warm p50 **{c1['p50_s']} s** (1 client); 16 clients "
            f"{c16['seconds']:.0f} s: **{c16['errors']} errors**, {c16['photos_per_s']} photos/s = "
            f"**{h['limit']['server_16_share']:.0%}** of the cores' limit; cold query "
            f"**{h['cold_query']['median_s']} s** vs --server **{h['server_query']['median_s']} s**; "
            f"{met}/{len(h['targets'])} targets met")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--homes", default="demo,logos-1000",
                    help=f"comma-separated, of: {', '.join(HOME_MAKERS)} (targets are read on the last)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the 16 clients run (the issue: a minute)")
    ap.add_argument("--seconds-4", type=float, default=20.0, help="how long the 4 clients run")
    ap.add_argument("--requests", type=int, default=40, help="one client's sequential requests")
    ap.add_argument("--direct-seconds", type=float, default=20.0,
                    help="how long each library run (no HTTP) measures the cores' limit")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each end-to-end `logoid query` (median)")
    add_no_write(ap)
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.homes.split(",") if k.strip()]
    unknown = [k for k in keys if k not in HOME_MAKERS]
    if unknown or not keys:
        ap.error(f"unknown home(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(HOME_MAKERS)}")
    t0 = time.time()
    homes = {k: run_home(k, args) for k in keys}
    target_home = keys[-1]
    for h in homes.values():
        h["targets"] = targets(h)
    md = markdown(homes, target_home)
    numbers = {"homes": homes, "target_home": target_home, "targets": TARGETS, "cpu": cpu_model(),
               "wall_s": round(time.time() - t0, 1),
               "settings": {k: getattr(args, k) for k in ("seconds", "seconds_4", "requests", "direct_seconds",
                                                          "repeat")}}
    print(md)
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; {numbers['wall_s']} s in all")
    if not args.no_write:
        save_record("serve", "warm", numbers, md, summary=summary(homes, target_home),
                    notes="Load average (1 min) before / after each home: "
                          + "; ".join(f"{k} {' / '.join(map(str, h['loadavg_1min']))}" for k, h in homes.items()))
    errors = sum(c["errors"] for h in homes.values() for c in h["clients"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
