"""The text benchmark's OCR cache, shared by the subjects that read the same images (text, local's prints).

Each image is read once, plain and inverted, and cached under bench/work/ by the content hash of its pixels; a cache
file is only reused with the same reading settings. ``strategy_lines`` picks the lines a reading strategy would
feed the name matcher (``invert-if-little``: what ``TextReader`` does).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from bench._common import WORK

STRATEGY = "invert-if-little"  # what TextReader does
RESULTS = WORK


def image_key(img: Image.Image) -> str:
    """sha256 of the decoded pixels (plus size): the same image read twice, or regenerated, has one key."""
    arr = np.asarray(img.convert("RGB"))
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class OcrCache:
    """{image key: {"plain": [[text, conf, box]], "inv": [...], "t_plain": s, "t_inv": s}} in one JSON file."""

    def __init__(self, path: Path, cfg_dict: dict):
        self.path = path
        self.cfg = {k: v for k, v in cfg_dict.items() if k != "threads"}
        self.data: dict = {}
        if path.exists():
            d = json.loads(path.read_text())
            if d.get("_config") == self.cfg:
                self.data = d
        self.data["_config"] = self.cfg
        self._dirty = 0

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> dict:
        return self.data[key]

    def put(self, key: str, rec: dict) -> None:
        self.data[key] = rec
        self._dirty += 1
        if self._dirty >= 25:
            self.flush()

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)
        self._dirty = 0


def _lines(lines) -> list:
    return [[x.text, round(x.conf, 4), np.asarray(x.box).round(1).tolist()] for x in lines]


def read_cached(cache: OcrCache, items: Iterable[tuple[str, Callable[[], Image.Image]]], threads: int = 1,
                label: str = "ocr", trust_names: bool = False) -> dict[str, dict]:
    """OCR every (name, image loader) not yet cached (plain and inverted, timed); returns {name: record}.

    Images are keyed by content, so each is loaded (or generated) and hashed; with ``trust_names`` a name seen in
    an earlier run of the same cache file reuses that run's key without making the image again (fast reruns;
    leave it off after changing how the images are made).
    """
    from logoid.engine.ocr import OcrConfig, TextReader

    cfg = OcrConfig(**{**cache.cfg, "try_inverted": False, "threads": threads})
    reader = TextReader(cfg)
    out: dict[str, dict] = {}
    items = list(items)
    names = cache.data.setdefault("_names", {})
    t_start = time.perf_counter()
    n_new = 0
    for j, (name, load) in enumerate(items):
        if trust_names and names.get(name) in cache:
            out[name] = cache.get(names[name])
            continue
        img = load()
        key = image_key(img)
        names[name] = key
        if key not in cache:
            t0 = time.perf_counter()
            a = reader.read(img)
            t1 = time.perf_counter()
            b = reader.read(Image.fromarray(255 - np.asarray(img.convert("RGB"))))
            t2 = time.perf_counter()
            cache.put(key, {"plain": _lines(a), "inv": _lines(b), "t_plain": t1 - t0, "t_inv": t2 - t1,
                            "size": list(img.size)})
            n_new += 1
        out[name] = cache.get(key)
        if j % 50 == 49 and n_new:
            el = time.perf_counter() - t_start
            print(f"  {label} {j + 1}/{len(items)} ({n_new} read, {el:.0f} s)", file=sys.stderr, flush=True)
    cache.flush()
    return out


def _alnum(lines) -> int:
    return sum(ch.isalnum() for ln in lines for ch in ln[0])


def strategy_lines(rec: dict, strategy: str = STRATEGY, below: int = 4) -> list:
    """Which lines a strategy feeds the matcher: plain only, inverted when plain reads little, or both."""
    if strategy == "plain":
        return rec["plain"]
    if strategy == "union":
        return rec["plain"] + rec["inv"]
    if _alnum(rec["plain"]) < below and _alnum(rec["inv"]) > _alnum(rec["plain"]):
        return rec["inv"]
    return rec["plain"]
