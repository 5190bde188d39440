"""Benchmark the text channel on band-logos: OCR the clean logos, match against the catalog's names.

    python bench/bench_text.py --data ../shared/data/band-logos [--limit 300] [--roster 200000]

Reports: top-1 by text among all band names; the same with a generated distractor roster; match latency and
index memory at roster size; OCR seconds per logo; the effect of also reading the inverted logo; and a
similarity cut-off curve (true accepts vs false accepts on no-text images and on logos of bands left out of
the index). OCR results are cached in bench/results/ so matching experiments rerun in seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from logoid._imageio import load_image
from logoid.engine.ocr import OcrConfig, TextReader
from logoid.index.names import NameIndex, normalise


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def ocr_all(rows, data: Path, cache: Path, cfg: OcrConfig) -> dict:
    """Per logo: plain lines, inverted-image lines, and the time of each read (cached by logo id)."""
    done = json.loads(cache.read_text()) if cache.exists() else {}
    if done.get("_config") != cfg.to_dict():
        done = {"_config": cfg.to_dict()}
    plain = TextReader(OcrConfig(**{**cfg.to_dict(), "try_inverted": False}))
    todo = [r for r in rows if r["id"] not in done]
    for j, r in enumerate(todo):
        img = load_image(data / r["image"])
        t0 = time.perf_counter()
        a = plain.read(img)
        t1 = time.perf_counter()
        b = plain.read(Image.fromarray(255 - np.asarray(img)))
        t2 = time.perf_counter()
        done[r["id"]] = {"plain": [[x.text, x.conf] for x in a], "inv": [[x.text, x.conf] for x in b],
                         "t_plain": t1 - t0, "t_inv": t2 - t1}
        if j % 50 == 49:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(done))
            print(f"  ocr {j + 1}/{len(todo)}", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(done))
    return done


def _alnum(lines) -> int:
    return sum(ch.isalnum() for t, _ in lines for ch in t)


def strategy_lines(rec: dict, strategy: str, below: int) -> list:
    """Which lines a strategy feeds the matcher: plain only, inverted when plain reads little, or both."""
    if strategy == "plain":
        return rec["plain"]
    if strategy == "union":
        return rec["plain"] + rec["inv"]
    if _alnum(rec["plain"]) < below and _alnum(rec["inv"]) > _alnum(rec["plain"]):
        return rec["inv"]
    return rec["plain"]


def strategy_time(rec: dict, strategy: str, below: int) -> float:
    if strategy == "plain":
        return rec["t_plain"]
    if strategy == "union" or _alnum(rec["plain"]) < below:
        return rec["t_plain"] + rec["t_inv"]
    return rec["t_plain"]


def generated_roster(real_names: list[str], n_total: int, seed: int) -> list[str]:
    """Band-like distractor names: 1-3 words drawn from the real names' words, sometimes with "The"; seeded."""
    rng = random.Random(seed)
    words = sorted({w for nm in real_names for w in nm.split() if w.casefold() != "the"})
    # Compare without a leading "The" too: the index aliases "The X" as "X", which must not duplicate a real name.
    def key(n: str) -> str:
        return normalise(n[4:] if n.casefold().startswith("the ") else n)

    taken = {key(n) for n in real_names}
    out: list[str] = []
    while len(out) < n_total - len(real_names):
        k = rng.choices([1, 2, 3], weights=[2, 5, 3])[0]
        name = " ".join(rng.choice(words) for _ in range(k))
        if rng.random() < 0.15:
            name = "The " + name
        norm = key(name)
        if norm and norm not in taken:
            taken.add(norm)
            out.append(name)
    return out


def no_text_images(n: int, seed: int) -> list[Image.Image]:
    """Seeded images with no lettering: noise, gradients, stripes, blobs, circles (what a photo's clutter looks like)."""
    rng = np.random.default_rng(seed)
    imgs = []
    for j in range(n):
        kind = j % 5
        if kind == 0:
            arr = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            im = Image.fromarray(arr).filter(ImageFilter.GaussianBlur(rng.uniform(0, 3)))
        elif kind == 1:
            g = np.linspace(0, 255, 640)[None, :, None] * rng.uniform(0.2, 1, 3)
            im = Image.fromarray(np.broadcast_to(g, (480, 640, 3)).astype(np.uint8))
        else:
            im = Image.new("RGB", (640, 480), tuple(int(x) for x in rng.integers(0, 256, 3)))
            d = ImageDraw.Draw(im)
            for _ in range(int(rng.integers(5, 40))):
                col = tuple(int(x) for x in rng.integers(0, 256, 3))
                x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 440))
                x1, y1 = x0 + int(rng.integers(5, 200)), y0 + int(rng.integers(5, 200))
                if kind == 2:
                    d.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, 8)))
                elif kind == 3:
                    d.ellipse([x0, y0, x1, y1], outline=col, width=int(rng.integers(1, 6)))
                else:
                    d.rectangle([x0, y0, x1, y1], fill=col)
        imgs.append(im)
    return imgs


def top1(index: NameIndex, recs: dict, rows, strategy: str, below: int) -> tuple[float, list, list]:
    """Top-1 accuracy, each logo's (correct, sim) and the best wrong match's sim (the band left out)."""
    ok, per, wrong = 0, [], []
    for r in rows:
        ms = index.match([t for t, _ in strategy_lines(recs[r["id"]], strategy, below)],
                         k=3, line_confs=[c for _, c in strategy_lines(recs[r["id"]], strategy, below)])
        hit = bool(ms) and ms[0].entity_key == r["id"]
        ok += hit
        per.append((hit, ms[0].similarity if ms else 0.0))
        others = [m.similarity for m in ms if m.entity_key != r["id"]]
        wrong.append(others[0] if others else 0.0)
    return ok / max(1, len(rows)), per, wrong


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/band-logos"))
    ap.add_argument("--limit", type=int, default=0, help="seeded sample of this many logos (0 = all)")
    ap.add_argument("--roster", type=int, default=200_000, help="names in the distractor roster")
    ap.add_argument("--no-text", type=int, default=60, help="synthetic no-text images for the false-match curve")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "results" / "ocr_cache.json")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_text.json")
    args = ap.parse_args(argv)

    with open(args.data / "manifest.csv", newline="") as f:
        all_rows = list(csv.DictReader(f))
    rows = all_rows
    if args.limit:
        rows = random.Random(args.seed).sample(all_rows, min(args.limit, len(all_rows)))
    cfg = OcrConfig()
    below = cfg.invert_below_chars
    print(f"OCR of {len(rows)} logos ({'seeded sample' if args.limit else 'all'}) ...", file=sys.stderr)
    recs = ocr_all(rows, args.data, args.cache, cfg)
    report: dict = {"n_logos": len(rows), "sample": bool(args.limit), "ocr_config": cfg.to_dict()}

    pairs = [(r["id"], r["band"]) for r in all_rows]
    small = NameIndex(pairs)
    for strategy in ("plain", "invert-if-little", "union"):
        acc, _, _ = top1(small, recs, rows, strategy, below)
        t = sorted(strategy_time(recs[r["id"]], strategy, below) for r in rows)
        report[f"top1_{len(all_rows)}_{strategy}"] = round(acc, 4)
        report[f"ocr_s_median_{strategy}"] = round(statistics.median(t), 3)
        report[f"ocr_s_p90_{strategy}"] = round(t[int(0.9 * (len(t) - 1))], 3)
    strategy = "invert-if-little"  # what TextReader does
    exact = sum(normalise(" ".join(t for t, _ in strategy_lines(recs[r["id"]], strategy, below))).replace(" ", "")
                == normalise(r["band"]).replace(" ", "") for r in rows)
    report["ocr_exact_read"] = exact

    # Cut-off curve on the small index: accepted correct vs falsely accepted.
    _, per, wrong = top1(small, recs, rows, strategy, below)
    reader = TextReader(cfg)
    notext_best = []
    for im in no_text_images(args.no_text, args.seed):
        ms = small.match(reader.read(im), k=1)
        notext_best.append(ms[0].similarity if ms else 0.0)
    curve = []
    for cut in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        curve.append({
            "cutoff": cut,
            "correct_accepted": round(sum(h and s >= cut for h, s in per) / len(per), 4),
            "wrong_accepted_known": round(sum((not h) and s >= cut for h, s in per) / len(per), 4),
            "unknown_band_false_match": round(sum(s >= cut for s in wrong) / len(wrong), 4),
            "no_text_false_match": round(sum(s >= cut for s in notext_best) / max(1, len(notext_best)), 4),
        })
    report["cutoff_curve"] = curve
    report["no_text_images_with_any_line"] = sum(s > 0 for s in notext_best)

    # Roster of distractors.
    extra = generated_roster([r["band"] for r in all_rows], args.roster, args.seed)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    big = NameIndex(pairs + [(f"gen{j}", n) for j, n in enumerate(extra)])
    big.match("warm up")  # builds the trigram postings
    report["roster_build_s"] = round(time.perf_counter() - t0, 2)
    report["roster_names"] = len(big)
    report["roster_index_rss_mb"] = round(_rss_mb() - rss0, 1)
    lat, ok = [], 0
    for r in rows:
        lines = strategy_lines(recs[r["id"]], strategy, below)
        t = time.perf_counter()
        ms = big.match([x for x, _ in lines], k=5, line_confs=[c for _, c in lines])
        lat.append(time.perf_counter() - t)
        ok += bool(ms) and ms[0].entity_key == r["id"]
    lat.sort()
    report[f"top1_roster_{len(big)}"] = round(ok / len(rows), 4)
    report["match_ms_p50"] = round(1000 * lat[len(lat) // 2], 2)
    report["match_ms_p99"] = round(1000 * lat[int(0.99 * (len(lat) - 1))], 2)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
