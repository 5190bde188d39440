"""Turn a bench script's JSON result into a dated BENCHMARKS.md section (the numbers are never typed by hand).

    python bench/publish.py text       # bench/results/bench_text.json (from bench/bench_text.py)
    python bench/publish.py finetune   # bench/results/bench_finetune.json (from bench/bench_finetune.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, append_section, fmt, table  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _text(d: dict) -> tuple[str, str, str]:
    sample = f"a seeded sample of {d['n_logos']} of the 1,206 logos" if d.get("sample") else "all 1,206 logos"
    rows = [
        ["text-only top-1 among 1,206 names (clean logos)", fmt(d["top1_1206_invert-if-little"]), "≥ 0.80"],
        [f"text-only top-1 with a {d['roster_names']:,}-name roster as distractors", fmt(d["top1_roster_230160"]),
         "≥ 0.70"],
        ["name matching latency p50 / p99 at that roster", f"{fmt(d['match_ms_p50'], 1)} / {fmt(d['match_ms_p99'], 1)} ms",
         "p50 ≤ 20 ms"],
        ["name index build time / memory at that roster", f"{fmt(d['roster_build_s'], 1)} s / "
         f"{fmt(d['roster_index_rss_mb'], 0)} MB", ""],
        ["OCR median / p90 per logo (read inverted too when < 4 letters)",
         f"{fmt(d['ocr_s_median_invert-if-little'], 2)} / {fmt(d['ocr_s_p90_invert-if-little'], 2)} s", "≤ 0.5 s"],
        ["logos read exactly", str(d["ocr_exact_read"]), ""],
    ]
    modes = [[m, fmt(d[f"top1_1206_{m}"]), f"{fmt(d[f'ocr_s_median_{m}'], 2)} s"]
             for m in ("plain", "invert-if-little", "union")]
    curve = [[c["cutoff"], c["correct_accepted"], c["wrong_accepted_known"], c["unknown_band_false_match"],
              c["no_text_false_match"]] for c in d["cutoff_curve"]]
    body = "\n\n".join([
        f"band-logos, {sample}; clean logos (no simulated prints). The roster is the 1,206 real names plus "
        "generated band-like names (1–3 words drawn from the real names, seeded).",
        table(["what", "measured", "target"], rows),
        "Reading the inverted image:",
        table(["strategy", "top-1 (1,206 names)", "OCR median"], modes),
        "Similarity cut-off (unknown band = a logo whose band is removed from the index; no-text = 60 synthetic "
        "images):",
        table(["cut-off", "right band accepted", "wrong band accepted", "unknown band matched", "no-text matched"],
              curve),
    ])
    return "Text channel on band-logos", "python bench/bench_text.py --limit 300 && python bench/publish.py text", body


def _finetune(d: dict) -> tuple[str, str, str]:
    b, a = d["before"], d["after"]
    rows = []
    for part, label in (("seen", "designs trained on"), ("heldout", "designs held out of training")):
        for m in ("top1", "top5", "auroc", "open_set", "text_r5"):
            if f"{part}_{m}" not in b:
                continue
            rows.append([label, m.replace("_r5", " R@5").replace("top", "top-").replace("open_set", "open-set accuracy (vs unknowns)"), b[f"{part}_{m}"], a[f"{part}_{m}"]])
    body = "\n\n".join([
        f"Global channel alone on threadless-dev photos (split=test; {b['seen_n']} photos of trained designs, "
        f"{b['heldout_n']} of held-out designs, {b['n_unknown']} unknown), index of every enrolled design at "
        f"{d['variants']} variants. Trained on the gallery designs only (never photos): {d['n_train_designs']} "
        f"designs, {d['n_val_designs']} for validation (early stopping, WiSE-FT), {d['n_heldout_designs']} never "
        "seen. Captions carry only the design id (threadless has no names), so text retrieval can only memorise ids.",
        table(["queries", "metric", "before", "after"], rows),
        f"Best epoch {d['best_epoch']} of {d['epochs_run']} (early stopping), WiSE-FT alpha {d['wise_alpha']}; "
        f"validation image top-1 {fmt(d['val_before']['image_top1'])} → {fmt(d['val_after']['image_top1'])}. "
        f"Time: {fmt(d['feature_seconds_incl_photos'], 0)} s to augment and run the frozen trunk once "
        f"(cached afterwards), {fmt(d['finetune_train_seconds'], 1)} s of training; peak RSS "
        f"{fmt(d['peak_rss_mb'], 0)} MB.",
    ])
    cmd = f"python bench/bench_finetune.py --variants {d['variants']} && python bench/publish.py finetune"
    return "Fine-tuning the global channel (threadless-dev)", cmd, body


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["text", "finetune"])
    a = p.parse_args()
    path = RESULTS / f"bench_{a.which}.json"
    d = json.loads(path.read_text())
    title, cmd, body = (_text if a.which == "text" else _finetune)(d)
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"(measured {when}, result file `{path.relative_to(ROOT)}`)\n\n" + body
    print(body)
    append_section(title, cmd, body)


if __name__ == "__main__":
    main()
