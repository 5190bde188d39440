"""Photo size: one scene as an 800×600, a 4000×3000 and an 8000×6000 JPEG through `logoid query` on the demo home.

    python -m bench photo-size [--home DIR] [--reps 5] [--no-write]

Each query is its own process (a cold `logoid query --json`, as a user runs it); wall time, CPU time (user + system)
and peak resident memory come from ``wait4``. Every size is run twice, interleaved: as shipped (decoded straight to
the size the channels read it at) and with that turned off (decoded at full size, as before), so both columns come
from the same run of the same machine. The answer, score and inliers of each are kept to show they agree. A cold
query is mostly loading the models; the per-photo cost a `logoid batch` pays is measured too, warm: one
``Identifier`` in this process, each photo identified ``--reps`` times after a warm-up, medians per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import ROOT, WORK, fmt, table
from bench.record import add_no_write, save_record

SIZES = ((800, 600), (4000, 3000), (8000, 6000))
FULL_DECODE = ("import sys, logoid.identify.pipeline as p;"
               " p.Identifier.decode_size = lambda self, find_all=False: None;"  # min_size=None: full size
               " from logoid.cli import main; sys.argv[0] = 'logoid'; main()")
MODES = {"working size": [sys.executable, "-m", "logoid"], "full size": [sys.executable, "-c", FULL_DECODE]}


def demo_home(home: Path | None) -> Path:
    """The demo home (``make demo``'s ./demo-home when it exists, else one built under bench/work)."""
    for h in (home, ROOT / "demo-home", WORK / "photo-size" / "demo-home"):
        if h is not None and (h / "index").is_dir():
            return h
    h = home or WORK / "photo-size" / "demo-home"
    subprocess.run([sys.executable, "-m", "logoid", "--home", str(h), "demo"], check=True, cwd=ROOT)
    return h


def photos(folder: Path) -> dict[tuple[int, int], Path]:
    """The scene (the demo's Starbucks print on a shirt) at each size: rendered at 4000×3000, shrunk to 800×600,
    and enlarged to 8000×6000 with fresh sensor noise (a phone's 48 MP has its own noise, not smooth enlargement)."""
    import numpy as np
    from PIL import Image

    from logoid.demo.icons import render_icon
    from logoid.demo.photo import make_demo_photo

    folder.mkdir(parents=True, exist_ok=True)
    out = {s: folder / f"starbucks-{s[0]}x{s[1]}.jpg" for s in SIZES}
    if all(p.exists() for p in out.values()):
        return out
    make_demo_photo(render_icon("starbucks"), out[(4000, 3000)], seed=1, size=(4000, 3000), quality=90)
    mid = Image.open(out[(4000, 3000)]).convert("RGB")
    mid.resize((800, 600), Image.Resampling.LANCZOS).save(out[(800, 600)], quality=90)
    arr = np.asarray(mid.resize((8000, 6000), Image.Resampling.BICUBIC)).copy()
    rng = np.random.default_rng(1)
    for y in range(0, 6000, 500):  # in strips: the noise of a whole 48 MP frame at once would cost GBs here
        strip = arr[y:y + 500].astype(np.int16) + rng.normal(0, 3, arr[y:y + 500].shape).astype(np.int16)
        arr[y:y + 500] = strip.clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(out[(8000, 6000)], quality=90)
    return out


def query(cmd: list[str], home: Path, photo: Path) -> dict:
    """One `logoid query --json` process: wall s, CPU s, peak RSS MB, and what it answered."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen([*cmd, "--home", str(home), "query", str(photo), "--json"], stdout=out, stderr=err,
                                cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{photo}: `logoid query` failed: {stderr[-2000:]}")
    a = json.loads(stdout)
    best = a["candidates"][0] if a["candidates"] else {}
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
            "answer": a["answer"], "score": a["score"], "inliers": best.get("inliers"), "polygon": best.get("polygon"),
            "decode_s": a["timings"].get("decode"), "timings": a["timings"]}


def warm(home: Path, shots: dict, reps: int) -> dict:
    """Per-photo seconds of a warm identifier (each step's median), as shipped and decoded at full size."""
    from logoid.catalog import Catalog
    from logoid.core.paths import Home
    from logoid.identify import Identifier

    h = Home.resolve(home)
    ident = Identifier(h, Catalog.open(h))
    shipped = ident.decode_size
    ident.identify(shots[SIZES[0]])  # load the models, the index and the OCR engine
    out: dict = {}
    for mode, size_of in (("working size", shipped), ("full size", lambda find_all=False: None)):
        ident.decode_size = size_of  # type: ignore[method-assign]
        for (w, h_), photo in shots.items():
            times = [ident.identify(photo).timings for _ in range(reps)]
            out.setdefault(mode, {})[f"{w}x{h_}"] = {
                k: statistics.median(t.get(k, 0.0) for t in times) for k in ("decode", "global", "local", "text",
                                                                               "total")}
    return out


def run(home: Path, reps: int) -> dict:
    shots = photos(WORK / "photo-size")
    runs: dict[str, dict[str, list[dict]]] = {m: {f"{w}x{h}": [] for w, h in SIZES} for m in MODES}
    load0 = os.getloadavg()[0]
    for _ in range(reps):  # interleaved, so a busy spell of a shared machine hits every column alike
        for (w, h), photo in shots.items():
            for mode, cmd in MODES.items():
                runs[mode][f"{w}x{h}"].append(query(cmd, home, photo))
    med = {m: {s: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "rss_mb", "decode_s")}
               for s, rs in sizes.items()} for m, sizes in runs.items()}
    answers = {m: {s: sorted({(r["answer"], r["score"], r["inliers"]) for r in rs}) for s, rs in sizes.items()}
               for m, sizes in runs.items()}
    return {"reps": reps, "median": med, "answers": answers, "runs": runs, "warm": warm(home, shots, reps),
            "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "cores": os.cpu_count(),
            "files_mb": {f"{w}x{h}": round(p.stat().st_size / 2**20, 2) for (w, h), p in shots.items()}}


def markdown(r: dict) -> str:
    rows = []
    base = r["median"]["working size"]["800x600"]
    for s in (f"{w}x{h}" for w, h in SIZES):
        for mode in MODES:
            m = r["median"][mode][s]
            a = r["answers"][mode][s][0]
            rows.append([s, mode, f"{fmt(m['wall_s'], 2)} s ({fmt(m['wall_s'] / base['wall_s'], 2)}×)",
                         f"{fmt(m['cpu_s'], 2)} s",
                         f"{fmt(m['rss_mb'], 0)} MB ({fmt(m['rss_mb'] / base['rss_mb'], 2)}×)",
                         f"{fmt(m['decode_s'] * 1000, 0)} ms", f"{a[0]} {fmt(a[1], 3)}, {a[2]} inliers"])
    cold = table(["photo", "decoded at", "wall (× 800x600)", "CPU", "peak RSS (× 800x600)", "decode", "answer"], rows)
    wb = r["warm"]["working size"]["800x600"]["total"]
    rows = [[s, mode, f"{fmt(t['total'], 3)} s ({fmt(t['total'] / wb, 2)}×)",
             " / ".join(fmt(t[k], 3) for k in ("decode", "global", "local", "text"))]
            for s in (f"{w}x{h}" for w, h in SIZES) for mode, t in ((m, r["warm"][m][s]) for m in MODES)]
    return (f"`logoid query`, one cold process each (medians of {r['reps']}):\n\n{cold}\n\nWarm identifier, per photo "
            f"(medians of {r['reps']}; what `logoid batch` pays per photo):\n\n"
            + table(["photo", "decoded at", "total (× 800x600)", "decode / global / local / text s"], rows))


def summary(r: dict) -> str:
    w, f = r["median"]["working size"], r["median"]["full size"]

    def per_photo(mode: str) -> str:
        return " / ".join(fmt(t["total"], 2) for t in r["warm"][mode].values())

    return (f"`logoid query` cold, medians of {r['reps']}: 800×600 {fmt(w['800x600']['wall_s'], 2)} s / "
            f"{fmt(w['800x600']['rss_mb'], 0)} MB; 4000×3000 **{fmt(w['4000x3000']['wall_s'], 2)} s / "
            f"{fmt(w['4000x3000']['rss_mb'], 0)} MB** ({fmt(w['4000x3000']['wall_s'] / w['800x600']['wall_s'], 2)}× / "
            f"{fmt(w['4000x3000']['rss_mb'] / w['800x600']['rss_mb'], 2)}×); 8000×6000 "
            f"{fmt(w['8000x6000']['wall_s'], 2)} s / {fmt(w['8000x6000']['rss_mb'], 0)} MB (decoded at full size: "
            f"{fmt(f['8000x6000']['wall_s'], 2)} s / {fmt(f['8000x6000']['rss_mb'], 0)} MB); warm, per photo "
            f"{per_photo('working size')} s (full-size decode {per_photo('full size')} s); load average "
            f"{' → '.join(fmt(v, 1) for v in r['loadavg_1min'])} on {r['cores']} cores")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=None, help="a built demo home (default ./demo-home, else built)")
    ap.add_argument("--reps", type=int, default=5, help="runs of each photo and mode (medians)")
    add_no_write(ap)
    args = ap.parse_args(argv)
    r = run(demo_home(args.home), args.reps)
    md = markdown(r)
    print(md)
    if not args.no_write:
        save_record("speed", "photo-size", r, md, summary=summary(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
