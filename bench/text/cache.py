"""OCR results cached per image under bench/work/, keyed by the image's content hash.

OCR is the slow part of every text benchmark (~0.4 s an image), so each image is read once, plain and inverted,
and every matching experiment afterwards reruns in seconds. A cache file is only reused with the same reading
settings (the thread count does not change what is read, so it is left out of the comparison).

    python -m bench text-cache clean --data ../shared/data/band-logos      # fill the clean-logo cache
    python -m bench text-cache prints                                      # and the simulated prints' cache
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench._common import DATA, read_manifest
from bench._ocr import RESULTS, OcrCache, read_cached


def main(argv=None) -> int:
    from logoid.core.imageio import load_image
    from logoid.engine.ocr import OcrConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["clean", "prints"])
    ap.add_argument("--data", type=Path, default=DATA / "band-logos")
    ap.add_argument("--photos", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    rows = read_manifest(args.data)
    cache = OcrCache(RESULTS / f"ocr_cache_{args.which}.json", OcrConfig().to_dict())
    if args.which == "clean":
        read_cached(cache, [(r["id"], lambda r=r: load_image(args.data / r["image"])) for r in rows], args.threads,
                    "clean")
        return 0
    from bench._prints import PrintMaker

    maker = PrintMaker(args.data, args.photos, args.seed)
    facts: dict[str, dict] = {}

    def load(r):
        img, facts[r["id"]] = maker.make(r["id"], r["image"])
        return img

    read_cached(cache, [(r["id"], lambda r=r: load(r)) for r in rows], args.threads, "prints")
    (RESULTS / f"prints_facts_seed{args.seed}.json").write_text(json.dumps(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
