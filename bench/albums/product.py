"""The albums-dev protocols through the product commands users run (``logoid eval --task genre|artist``).

    OMP_NUM_THREADS=1 python -m bench albums-product --data ../shared/data/albums-dev [--only KEY,...] [--no-write]

Runs each command in a subprocess against a bench home (bench/work/albums-product-home, its embedding and
OCR caches kept between runs) and collects the ``--json`` metrics into bench/work/albums_product.json; the run is
recorded (bench/results/albums/) and BENCHMARKS.md regenerated (``--no-write``: not).
The OCR line cache of that home is seeded from bench/work/albums_ocr.json (``python -m bench albums-ocr``, the
same RapidOCR configuration but for its thread count) so the covers are read once for both. ``python -m bench
albums`` calls :func:`run_product` and reports these rows beside the research ablation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import DATA, ROOT, WORK
from bench.albums.report import product_lines, summary
from bench.record import add_no_write, save_record
from logoid import DEFAULT_MODEL

RESULTS = WORK
HOME = RESULTS / "albums-product-home"
CATALOG_HOME = RESULTS / "albums-catalog-home"  # the gallery imported as catalog albums (rebuilt each run)
LOGOID = [sys.executable, "-m", "logoid"]

# (key, what it measures, task, extra arguments)
RUNS = [
    ("genre_style_text", "genre, default (style+colour+text; logreg / kNN / zero-shot compared, best kept)",
     "genre", []),
    ("genre_style_colour", "genre, --features style+colour (no text)", "genre", ["--features", "style+colour"]),
    ("genre_style", "genre, --features style (GeM only)", "genre", ["--features", "style"]),
    ("genre_embedding", "genre, --features embedding (the index's 512-d vectors)", "genre",
     ["--features", "embedding"]),
    ("artist_style_text", "artist, default (style + names read on the cover, fused; calibrated on split=calib)",
     "artist", ["--split", "test"]),
    ("artist_style", "artist, --features style (style alone)", "artist", ["--split", "test", "--features", "style"]),
    ("artist_style_colour_text", "artist, --features style+colour+text (colour in the style part)", "artist",
     ["--split", "test", "--features", "style+colour+text"]),
    ("artist_embedding", "artist, --features embedding (style alone, 512-d vectors)", "artist",
     ["--split", "test", "--features", "embedding"]),
]


def seed_ocr_cache(data: Path, home: Path) -> int:
    """Copy the bench's OCR lines into the product's per-file cache (keyed by content hash); returns how many."""
    from logoid.albums.covers import ocr_cache_path, set_text_reader
    from logoid.core.atomic import write_json_atomic
    from logoid.core.imageio import file_hash
    from logoid.engine.ocr import OcrConfig, TextReader

    src = RESULTS / "albums_ocr.json"
    if not src.exists():
        return 0
    done = json.loads(src.read_text())
    cfg = done.get("_config") or {}
    if {k: v for k, v in cfg.items() if k != "threads"} != \
            {k: v for k, v in OcrConfig().to_dict().items() if k != "threads"}:
        return 0  # read with another configuration: let the product read the covers itself
    import csv

    with open(data / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    set_text_reader(TextReader())  # the product's reader: its cache tag names the file
    path = ocr_cache_path(home / "cache")
    have = json.loads(path.read_text()) if path.exists() else {}
    n = 0
    for r in rows:
        if r["id"] in done:
            have[file_hash(data / r["cover"])] = done[r["id"]]["lines"]
            n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, have)
    return n


def command(task: str, extra: list[str], data: Path, model: str) -> list[str]:
    return [*LOGOID, "eval", str(data / "manifest.csv"), "--task", task, "--model", model, "--json", *extra]


def shown(cmd: list[str]) -> str:
    return "logoid " + " ".join(cmd[3:])


def run_product(data: Path, model: str = DEFAULT_MODEL, only: set[str] | None = None) -> dict:
    """Run each product command of RUNS (or those in ``only``); returns key → {metrics, command, seconds}."""
    HOME.mkdir(parents=True, exist_ok=True)
    seeded = seed_ocr_cache(data, HOME)
    env = {**os.environ, "LOGOID_HOME": str(HOME), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "HF_HUB_OFFLINE": "1"}
    out_path = RESULTS / "albums_product.json"
    out: dict = json.loads(out_path.read_text()) if only is not None and out_path.exists() else {}
    out["_seeded_ocr"] = seeded
    for key, what, task, extra in RUNS:
        if only is not None and key not in only:
            continue
        cmd = command(task, extra, data, model)
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        secs = time.perf_counter() - t0
        if res.returncode != 0:
            print(res.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{shown(cmd)} failed ({res.returncode})")
        m = json.loads(res.stdout)
        out[key] = {"what": what, "command": shown(cmd), "seconds": round(secs, 1), "metrics": m,
                    "warnings": [ln for ln in res.stderr.splitlines() if ln.startswith("warning")][:5]}
        print(f"{key}: {secs:.0f} s", file=sys.stderr, flush=True)
        out_path.write_text(json.dumps(out, indent=1, default=float))
    return out


def _write_csv(path: Path, rows: list[dict], data: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["cover", "artist", "split"])
        w.writeheader()
        for r in rows:
            w.writerow({"cover": str((data / r["cover"]).resolve()), "split": r["split"],
                        "artist": "unknown" if r["artist_role"] == "unknown" else r["artist"]})


def run_catalog(data: Path, model: str = DEFAULT_MODEL) -> dict:
    """The user's path: gallery covers imported as catalog albums (JSON manifest), `logoid artist fit`
    (leave-one-album-out, no photos), eval on the test queries; then `logoid artist calibrate` on the calib
    queries and eval again."""
    import csv
    import shutil

    with open(data / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for sub in ("catalog.db", "images", "albums", "index"):
        p = CATALOG_HOME / sub
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    CATALOG_HOME.mkdir(parents=True, exist_ok=True)
    seed_ocr_cache(data, CATALOG_HOME)
    work = CATALOG_HOME / "manifests"
    work.mkdir(exist_ok=True)
    gallery = [{"title": r["album"], "artist": r["artist"], "year": r["year"] or None, "genre": r["genre"],
                "cover": str((data / r["cover"]).resolve())} for r in rows if r["artist_role"] == "gallery"]
    (work / "gallery.json").write_text(json.dumps(gallery))
    queries = [r for r in rows if r["artist_role"] != "gallery"]
    _write_csv(work / "calib.csv", [r for r in queries if r["split"] == "calib"], data)
    _write_csv(work / "test.csv", [r for r in queries if r["split"] == "test"], data)
    env = {**os.environ, "LOGOID_HOME": str(CATALOG_HOME), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    steps = [("import", ["catalog", "import", str(work / "gallery.json"), "--json"]),
             ("fit", ["artist", "fit", "--model", model, "--json"]),
             ("eval_loao", ["eval", str(work / "test.csv"), "--task", "artist", "--model", model, "--json"]),
             ("calibrate", ["artist", "calibrate", str(work / "calib.csv"), "--json"]),
             ("eval_calibrated", ["eval", str(work / "test.csv"), "--task", "artist", "--model", model, "--json"])]
    out: dict = {}
    for key, args in steps:
        t0 = time.perf_counter()
        res = subprocess.run([*LOGOID, *args], env=env, capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            print(res.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"logoid {' '.join(args)} failed ({res.returncode})")
        out[key] = {"command": "logoid " + " ".join(args).replace(str(work) + "/", ""),
                    "seconds": round(time.perf_counter() - t0, 1), "result": json.loads(res.stdout)}
        print(f"catalog {key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA / "albums-dev")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--only", default="", help="comma list of run keys (and `catalog`)")
    add_no_write(ap)
    a = ap.parse_args(argv)
    only = set(filter(None, a.only.split(","))) or None
    out = run_product(a.data, a.model, only)
    if only is None or "catalog" in only:
        out["catalog"] = run_catalog(a.data, a.model)
        (RESULTS / "albums_product.json").write_text(json.dumps(out, indent=1, default=float))
    md = "\n".join(product_lines(out)).strip()
    print(md)
    if not a.no_write:
        save_record("albums", "product", {"model": a.model, **out}, md, summary=summary({"product": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
