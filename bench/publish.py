"""Turn a bench script's JSON result into a dated BENCHMARKS.md section (the numbers are never typed by hand).

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
    p.add_argument("which", choices=["finetune"])
    a = p.parse_args()
    path = RESULTS / f"bench_{a.which}.json"
    d = json.loads(path.read_text())
    title, cmd, body = _finetune(d)
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"(measured {when}, result file `{path.relative_to(ROOT)}`)\n\n" + body
    print(body)
    append_section(title, cmd, body)


if __name__ == "__main__":
    main()
