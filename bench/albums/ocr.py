"""OCR every albums-dev cover once (one thread) and cache the read lines: bench/work/albums_ocr.json.

    OMP_NUM_THREADS=1 python -m bench albums-ocr --data ../shared/data/albums-dev

Resumable: covers already in the cache are skipped, so it can be stopped and restarted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench._common import DATA, WORK, read_manifest  # noqa: E402
from logoid.core.imageio import load_image  # noqa: E402
from logoid.engine.ocr import OcrConfig, TextReader  # noqa: E402

CACHE = WORK / "albums_ocr.json"


def ocr_covers(rows: list[dict], data: Path, cache: Path = CACHE, cfg: OcrConfig | None = None) -> dict:
    """Per cover id: ``{"lines": [[text, conf], ...], "t": seconds}``; cached and resumable."""
    cfg = cfg or OcrConfig(threads=1)
    done = json.loads(cache.read_text()) if cache.exists() else {}
    if done.get("_config") != cfg.to_dict():
        done = {"_config": cfg.to_dict()}
    reader = TextReader(cfg)
    todo = [r for r in rows if r["id"] not in done]
    for j, r in enumerate(todo):
        img = load_image(data / r["cover"])
        t0 = time.perf_counter()
        lines = reader.read(img)
        done[r["id"]] = {"lines": [[x.text, round(float(x.conf), 4)] for x in lines], "t": time.perf_counter() - t0}
        if j % 25 == 24 or j == len(todo) - 1:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(done))
            tmp.replace(cache)
            print(f"ocr {j + 1}/{len(todo)}", file=sys.stderr, flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA / "albums-dev")
    a = ap.parse_args(argv)
    ocr_covers(read_manifest(a.data), a.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
