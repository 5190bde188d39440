"""Benchmark the text channel on band-logos: clean logos, simulated prints on photos, a 200k-name roster.

    python -m bench text-cache clean && python -m bench text-cache prints     # OCR once (slow; cached)
    python -m bench text [--no-write]                                         # everything else (seconds)
    python -m bench text --publish-only                                       # record the last result (--out)

The run is recorded (bench/results/text/) and BENCHMARKS.md regenerated; ``--no-write`` only prints.

Reports: text-only top-1 among all 1,206 band names on the clean logos and on simulated prints of them
(bench/_prints.py); the same with a roster of distractor names (real names where the shared data has them,
generated to fill); name-match latency and memory at roster size; OCR time per logo and per photo; the rejection
side on the prints (a seeded part of the bands held out of the catalog: AUROC of the text score, and the
false-accept rate at the text-only threshold that `logoid calibrate` would choose on a calibration half).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench._common import DATA, read_manifest
from bench._ocr import RESULTS, STRATEGY, OcrCache, _alnum, read_cached, strategy_lines
from bench.record import add_no_write
from logoid.engine.ocr import OcrConfig
from logoid.index.names import NameIndex, normalise

STRATEGIES = ("plain", "invert-if-little", "union")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def strategy_time(rec: dict, strategy: str = STRATEGY, below: int = 4) -> float:
    if strategy == "plain":
        return rec["t_plain"]
    if strategy == "union" or _alnum(rec["plain"]) < below:
        return rec["t_plain"] + rec["t_inv"]
    return rec["t_plain"]


def match(index: NameIndex, rec: dict, k: int = 5, strategy: str = STRATEGY):
    lines = strategy_lines(rec, strategy)
    return index.match([ln[0] for ln in lines], k=k, line_confs=[ln[1] for ln in lines])


def real_roster_names(data_root: Path) -> list[str]:
    """Real names the shared data holds besides band-logos: albums-dev artists and album titles."""
    out: list[str] = []
    man = data_root / "albums-dev" / "manifest.csv"
    if man.exists():
        for r in read_manifest(man):
            out += [r["artist"], r["album"].strip('"')]
    return sorted(set(out))


def generated_roster(real_names: list[str], n: int, seed: int) -> list[str]:
    """``n`` band-like distractor names: 1-3 words drawn from the real names' words, sometimes "The"; seeded."""
    rng = random.Random(seed)
    words = sorted({w for nm in real_names for w in nm.split() if w.casefold() != "the"})

    # Compare without a leading "The" too: the index aliases "The X" as "X", which must not duplicate a real name.
    def key(name: str) -> str:
        return normalise(name[4:] if name.casefold().startswith("the ") else name)

    taken = {key(nm) for nm in real_names}
    out: list[str] = []
    while len(out) < n:
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
    """Seeded images with no lettering: noise, gradients, stripes, blobs, circles (a photo's clutter)."""
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


def top1(index: NameIndex, recs: dict, rows, strategy: str = STRATEGY) -> tuple[float, list, list]:
    """Top-1 accuracy, each logo's (correct, best sim) and the best wrong match's sim (as if its band were absent)."""
    ok, per, wrong = 0, [], []
    for r in rows:
        ms = match(index, recs[r["id"]], k=3, strategy=strategy)
        hit = bool(ms) and ms[0].entity_key == r["id"]
        ok += hit
        per.append((hit, ms[0].similarity if ms else 0.0))
        others = [m.similarity for m in ms if m.entity_key != r["id"]]
        wrong.append(others[0] if others else 0.0)
    return ok / max(1, len(rows)), per, wrong


def cutoff_curve(per, wrong, notext) -> list[dict]:
    curve = []
    for cut in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        curve.append({
            "cutoff": cut,
            "correct_accepted": round(sum(h and s >= cut for h, s in per) / len(per), 4),
            "wrong_accepted_known": round(sum((not h) and s >= cut for h, s in per) / len(per), 4),
            "unknown_band_false_match": round(sum(s >= cut for s in wrong) / len(wrong), 4),
            "no_text_false_match": round(sum(s >= cut for s in notext) / max(1, len(notext)), 4),
        })
    return curve


def clean_part(rows, recs, small: NameIndex, notext_best: list[float]) -> dict:
    rep: dict = {}
    for strategy in STRATEGIES:
        acc, _, _ = top1(small, recs, rows, strategy)
        t = sorted(strategy_time(recs[r["id"]], strategy) for r in rows)
        rep[f"top1_{strategy}"] = round(acc, 4)
        rep[f"ocr_s_median_{strategy}"] = round(statistics.median(t), 3)
        rep[f"ocr_s_p90_{strategy}"] = round(t[int(0.9 * (len(t) - 1))], 3)
    rep["exact_read"] = sum(
        normalise(" ".join(ln[0] for ln in strategy_lines(recs[r["id"]]))).replace(" ", "")
        == normalise(r["band"]).replace(" ", "") for r in rows)
    _, per, wrong = top1(small, recs, rows)
    rep["cutoff_curve"] = cutoff_curve(per, wrong, notext_best)
    return rep


def roster_part(all_rows, pairs, extra_real, n_total, seed, parts: dict[str, tuple[list, dict]]) -> dict:
    """Index of the real names plus distractors up to ``n_total`` names; top-1 per part, latency, memory."""
    taken = {normalise(r["band"]) for r in all_rows}
    real = [n for n in extra_real if normalise(n) not in taken]
    gen = generated_roster([r["band"] for r in all_rows] + real, max(0, n_total - len(pairs) - len(real)), seed)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    big = NameIndex(pairs + [(f"real{j}", n) for j, n in enumerate(real)] + [(f"gen{j}", n) for j, n in enumerate(gen)])
    big.match("warm up")  # builds the trigram postings
    rep = {"build_s": round(time.perf_counter() - t0, 2), "names": len(big), "entities": big.entity_count,
           "real_names": len(pairs) + len(real), "real_extra": len(real), "generated": len(gen),
           "index_rss_mb": round(_rss_mb() - rss0, 1)}
    lat: list[float] = []
    for part, (rows, recs) in parts.items():
        ok = 0
        for r in rows:
            t = time.perf_counter()
            ms = match(big, recs[r["id"]])
            lat.append(time.perf_counter() - t)
            ok += bool(ms) and ms[0].entity_key == r["id"]
        rep[f"top1_{part}"] = round(ok / len(rows), 4)
    lat.sort()
    rep["match_ms_p50"] = round(1000 * lat[len(lat) // 2], 2)
    rep["match_ms_p99"] = round(1000 * lat[int(0.99 * (len(lat) - 1))], 2)
    return rep, big


def timing_part(images, big: NameIndex, threads: int) -> dict:
    """End to end per photo as the identify step runs it: TextReader.read (inverted too when it reads little) and
    the match against the roster; the load average says how busy the shared machine was."""
    import os

    from logoid.engine.ocr import TextReader

    reader = TextReader(OcrConfig(threads=threads))
    reader.read(Image.new("RGB", (64, 64)))  # engine start-up is not per photo
    load0 = os.getloadavg()[0]
    ocr, tot = [], []
    for img in images:
        t0 = time.perf_counter()
        lines = reader.read(img)
        t1 = time.perf_counter()
        big.match(lines, k=20)
        t2 = time.perf_counter()
        ocr.append(t1 - t0)
        tot.append(t2 - t0)
    tot.sort()
    return {"n": len(tot), "ocr_s_median": round(statistics.median(ocr), 3),
            "total_s_median": round(statistics.median(tot), 3), "total_s_p90": round(tot[int(0.9 * (len(tot) - 1))], 3),
            "threads": threads, "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def prints_part(all_rows, recs, facts, small: NameIndex, seed: int, unknown_fraction: float) -> dict:
    """Prints: top-1 among all names (by polarity too), then the rejection side with held-out bands."""
    from logoid.scoring.fusion import DefaultRule
    from logoid.scoring.results import QueryResult
    from logoid.scoring.rules import Calibration, calibrate_text_only
    from logoid.scoring.stats import auroc

    rep: dict = {}
    acc, per, _ = top1(small, recs, all_rows)
    rep["top1"] = round(acc, 4)
    for ink in (True, False):
        sub = [r for r in all_rows if facts[r["id"]]["light_ink"] == ink]
        rep[f"top1_{'light' if ink else 'dark'}_ink"] = round(top1(small, recs, sub)[0], 4)
        rep[f"n_{'light' if ink else 'dark'}_ink"] = len(sub)
    t = sorted(strategy_time(recs[r["id"]]) for r in all_rows)
    rep["ocr_s_median"] = round(statistics.median(t), 3)
    rep["ocr_s_p90"] = round(t[int(0.9 * (len(t) - 1))], 3)
    rep["exact_read_anywhere"] = sum(
        normalise(r["band"]).replace(" ", "") in normalise(" ".join(ln[0] for ln in strategy_lines(recs[r["id"]])))
        .replace(" ", "") for r in all_rows)

    # Rejection: a seeded share of the bands is left out of the catalog; their prints must be answered unknown.
    rng = random.Random(seed + 1)
    ids = [r["id"] for r in all_rows]
    unknown = set(rng.sample(ids, round(unknown_fraction * len(ids))))
    cat = NameIndex([(r["id"], r["band"]) for r in all_rows if r["id"] not in unknown])
    rule = DefaultRule()
    results = []
    for r in all_rows:
        ms = match(cat, recs[r["id"]])
        results.append(QueryResult(r["id"], None if r["id"] in unknown else r["id"], [m.entity_key for m in ms],
                                   [rule.score({"text_sim": m.similarity}) for m in ms]))
    known = np.array([q.label is not None for q in results])
    sims = np.array([q.top1_score for q in results])
    rep["reject_n_catalog"], rep["reject_n_unknown"] = int(known.sum()), int((~known).sum())
    rep["reject_auroc"] = round(auroc(sims[known], sims[~known]), 4)
    right = np.array([q.label is not None and q.top1 == q.label for q in results])
    rep["reject_auroc_right_vs_unknown"] = round(auroc(sims[right], sims[~known]), 4)
    # Calibrate the text-only threshold on a seeded half (as `logoid calibrate` does), report on the other half.
    order = list(range(len(results)))
    rng.shuffle(order)
    calib, test = order[: len(order) // 2], order[len(order) // 2:]
    main = Calibration(rule="max_score", threshold=rule.threshold)
    chosen = {}
    for objective in ("open_set_accuracy", "max_false_accept"):
        t_only = calibrate_text_only([results[i] for i in calib], [True] * len(calib), main, objective=objective,
                                     max_false_accept=0.05)
        chosen[objective] = t_only
    for name, thr in [("default", rule.threshold)] + [(o, c["threshold"]) for o, c in chosen.items()]:
        tq = [results[i] for i in test]
        acc_ = np.array([bool(q.ranked) and q.top1_score >= thr for q in tq])
        kn = np.array([q.label is not None for q in tq])
        ok = np.array([q.label is not None and q.top1 == q.label for q in tq])
        rep[f"at_{name}"] = {
            "threshold": round(float(thr), 4),
            "sim_at_threshold": round(_sim_for_score(rule, thr), 4),
            "false_accept_unknown": round(float((acc_ & ~kn).sum() / max(1, (~kn).sum())), 4),
            "right_accepted_known": round(float((acc_ & ok).sum() / max(1, kn.sum())), 4),
            "wrong_accepted_known": round(float((acc_ & kn & ~ok).sum() / max(1, kn.sum())), 4),
            "open_set_accuracy": round(float(((acc_ & ok) | (~acc_ & ~kn)).sum() / len(tq)), 4),
            "source": "DefaultRule text_mid" if name == "default" else chosen[name]["source"],
        }
    rep["reject_n_test"] = len(test)
    return rep


def _sim_for_score(rule, score: float) -> float:
    """The text similarity at which a text-only candidate's default-rule score equals ``score``."""
    if not 0 < score < 1:
        return float("nan")
    return rule.text_mid + float(np.log(score / (1 - score))) / rule.text_slope


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "band-logos")
    ap.add_argument("--photos", type=Path, default=DATA / "threadless-dev")
    ap.add_argument("--roster", type=int, default=200_000, help="names in the roster (real + generated)")
    ap.add_argument("--no-text", type=int, default=60, help="synthetic no-text images for the false-match curve")
    ap.add_argument("--unknown-fraction", type=float, default=0.25, help="bands held out of the catalog (prints)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_text.json")
    add_no_write(ap)
    ap.add_argument("--publish-only", action="store_true", help="record the result in --out (no run) and stop")
    ap.add_argument("--time-sample", type=int, default=40, help="prints timed end to end (OCR + match), uncached")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for the timed sample")
    ap.add_argument("--trust-names", action="store_true",
                    help="reuse the OCR cache's logo → image key map instead of re-making every image to hash it")
    args = ap.parse_args(argv)
    if args.publish_only:
        from bench.text.report import publish

        publish(json.loads(args.out.read_text()), args.out)
        return 0

    from logoid.core.imageio import load_image

    rows = read_manifest(args.data)
    cfg = OcrConfig()
    clean = read_cached(OcrCache(RESULTS / "ocr_cache_clean.json", cfg.to_dict()),
                        [(r["id"], lambda r=r: load_image(args.data / r["image"])) for r in rows], label="clean",
                        trust_names=args.trust_names)
    notext = read_cached(OcrCache(RESULTS / "ocr_cache_notext.json", cfg.to_dict()),
                         [(str(j), lambda im=im: im) for j, im in enumerate(no_text_images(args.no_text, args.seed))],
                         label="no-text")
    facts_path = RESULTS / f"prints_facts_seed{args.seed}.json"
    prints = None
    if facts_path.exists():
        from bench._prints import PrintMaker

        maker = PrintMaker(args.data, args.photos, args.seed)
        facts = json.loads(facts_path.read_text())
        prints = read_cached(OcrCache(RESULTS / "ocr_cache_prints.json", cfg.to_dict()),
                             [(r["id"], lambda r=r: maker.make(r["id"], r["image"])[0]) for r in rows],
                             label="prints", trust_names=args.trust_names)

    pairs = [(r["id"], r["band"]) for r in rows]
    small = NameIndex(pairs)
    notext_best = []
    for j in range(args.no_text):
        ms = match(small, notext[str(j)], k=1)
        notext_best.append(ms[0].similarity if ms else 0.0)
    report: dict = {"n_logos": len(rows), "ocr_config": cfg.to_dict(), "seed": args.seed,
                    "clean": clean_part(rows, clean, small, notext_best),
                    "no_text_images_with_any_line": sum(bool(strategy_lines(notext[str(j)]))
                                                        for j in range(args.no_text))}
    parts = {"clean": (rows, clean)}
    if prints is not None:
        report["prints"] = prints_part(rows, prints, facts, small, args.seed, args.unknown_fraction)
        parts["prints"] = (rows, prints)
    report["roster"], big = roster_part(rows, pairs, real_roster_names(args.data.parent), args.roster, args.seed,
                                        parts)
    if prints is not None and args.time_sample:
        sample = random.Random(args.seed + 2).sample(rows, min(args.time_sample, len(rows)))
        report["timing"] = timing_part([maker.make(r["id"], r["image"])[0] for r in sample], big, args.threads)
    thr = RESULTS / "text_threadless.json"  # from `python -m bench text-fused` (its own, slower run)
    if thr.exists():
        report["threadless"] = json.loads(thr.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if not args.no_write:
        from bench.text.report import publish

        publish(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
