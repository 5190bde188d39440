"""Evaluation reports: metrics.json, report.md, report.html, confusion and score plots, failure thumbnails."""

from __future__ import annotations

import html
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from logoid.core.atomic import atomic_path, write_json_atomic
from logoid.core.errors import LogoidError
from logoid.core.imageio import load_image
from logoid.scoring.results import QueryResult

from .metrics import UNKNOWN, accepted_mask, answers

MAX_FAILURES = 24
MAX_CONFUSION_CLASSES = 20
_PANEL = 240  # failure thumbnail panel height and max width, pixels
_CAPTION = 64  # caption strip height under each panel
_NAME_CHARS = 28

#: Failure categories, worst first.
CONFIDENT_WRONG = "confident_wrong"
REJECTED_KNOWN = "rejected_known"
ACCEPTED_UNKNOWN = "accepted_unknown"


def _display(key: str | None, label_names: dict[str, str] | None) -> str:
    if key is None:
        return UNKNOWN
    name = (label_names or {}).get(key, key)
    if len(name) <= _NAME_CHARS:
        return name
    # Cut the middle: names often share a prefix ("The ...") and differ at the end.
    head = (_NAME_CHARS - 1) // 2
    return name[:head] + "…" + name[len(name) - (_NAME_CHARS - 1 - head):]


def failure_cases(
    results: Sequence[QueryResult], accepted: np.ndarray, limit: int = MAX_FAILURES
) -> list[tuple[str, QueryResult]]:
    """The worst failures, at most ``limit``: confident wrong ids (highest score first), then rejected
    knowns (lowest score first), then accepted unknowns (highest score first).

    Each category is guaranteed a third of ``limit`` when it has that many, so a flood of one kind of
    failure does not hide the others; unused places go to the earlier categories.
    """
    groups: dict[str, list[QueryResult]] = {CONFIDENT_WRONG: [], REJECTED_KNOWN: [], ACCEPTED_UNKNOWN: []}
    for r, a in zip(results, accepted, strict=True):
        if r.is_known and a and r.top1 != r.label:
            groups[CONFIDENT_WRONG].append(r)
        elif r.is_known and not a:
            groups[REJECTED_KNOWN].append(r)
        elif not r.is_known and a:
            groups[ACCEPTED_UNKNOWN].append(r)
    groups[CONFIDENT_WRONG].sort(key=lambda r: -r.top1_score)
    groups[REJECTED_KNOWN].sort(key=lambda r: r.top1_score)
    groups[ACCEPTED_UNKNOWN].sort(key=lambda r: -r.top1_score)
    share = limit // len(groups)
    take = {c: min(len(g), share) for c, g in groups.items()}
    for c, g in groups.items():
        take[c] += min(len(g) - take[c], limit - sum(take.values()))
    return [(c, r) for c, g in groups.items() for r in g[: take[c]]]


def _savefig(fig, target: Path) -> None:
    with atomic_path(target, suffix=target.suffix) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def confusion_classes(truth: Sequence[str], pred: Sequence[str], max_classes: int = MAX_CONFUSION_CLASSES) -> list[str]:
    """Classes for the confusion plot: all when few, else the most confused (``unknown`` always kept, last)."""
    classes = sorted((set(truth) | set(pred)) - {UNKNOWN})
    if len(classes) + 1 > max_classes:
        errors: Counter[str] = Counter()
        support = Counter(truth)
        for t, p in zip(truth, pred, strict=True):
            if t != p:
                errors[t] += 1
                errors[p] += 1
        classes.sort(key=lambda c: (-errors[c], -support[c], c))
        classes = sorted(classes[: max_classes - 1])
    return classes + [UNKNOWN]


def plot_confusion(truth: Sequence[str], pred: Sequence[str], target: Path,
                   label_names: dict[str, str] | None = None, max_classes: int = MAX_CONFUSION_CLASSES) -> Path:
    """Confusion matrix PNG (rows truth, columns answer); colour is the share of the row, numbers are counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = confusion_classes(truth, pred, max_classes)
    pos = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        if t in pos and p in pos:
            m[pos[t], pos[p]] += 1
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = max(4.5, 0.42 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = [_display(c, label_names) if c != UNKNOWN else UNKNOWN for c in classes]
    ax.set_xticks(range(n), names, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("answer (rejected = unknown)")
    ax.set_ylabel("truth")
    total = len(set(truth) | set(pred))
    title = "confusion" if total <= n else f"confusion: the {n} most-confused of {total} classes"
    ax.set_title(title, fontsize=10)
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    _savefig(fig, target)
    plt.close(fig)
    return target


def plot_scores(results: Sequence[QueryResult], threshold: float | None, target: Path,
                rule_name: str = "score") -> Path:
    """Histogram of top-1 scores: known with right top-1, known with wrong top-1, unknown; threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = {
        "known, right top-1": [r.top1_score for r in results if r.is_known and r.top1 == r.label],
        "known, wrong top-1": [r.top1_score for r in results if r.is_known and r.top1 != r.label],
        "unknown": [r.top1_score for r in results if not r.is_known],
    }
    groups = {k: np.asarray([s for s in v if math.isfinite(s)]) for k, v in raw.items()}
    every = np.concatenate(list(groups.values()))
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    if every.size:
        lo, hi = float(every.min()), float(every.max())
        if threshold is not None and math.isfinite(threshold):
            lo, hi = min(lo, threshold), max(hi, threshold)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31).tolist()
        colours = {"known, right top-1": "tab:green", "known, wrong top-1": "tab:orange", "unknown": "tab:red"}
        for name, vals in groups.items():
            if vals.size:
                ax.hist(vals, bins=bins, alpha=0.45, color=colours[name], label=f"{name} (n={vals.size})")
                ax.hist(vals, bins=bins, histtype="step", color=colours[name])
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.5, label=f"threshold = {threshold:.3g}")
    no_cand = sum(1 for r in results if not r.ranked)
    ax.set_xlabel(f"top-1 {rule_name}")
    ax.set_ylabel("queries")
    ax.set_title("top-1 scores" + (f" ({no_cand} queries without candidates not shown)" if no_cand else ""),
                 fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", framealpha=0.85)
    _savefig(fig, target)
    plt.close(fig)
    return target


def _font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _panel(img: Image.Image | None, lines: Sequence[str], missing: str) -> Image.Image:
    """One image scaled into a _PANEL box with caption lines under it; a grey box saying ``missing`` if None."""
    if img is None:
        img = Image.new("RGB", (_PANEL, _PANEL), (200, 200, 200))
        ImageDraw.Draw(img).text((10, _PANEL // 2 - 8), missing, fill=(60, 60, 60), font=_font())
    else:
        img = img.copy()
        img.thumbnail((_PANEL, _PANEL))
    width = max(img.width, 200)
    out = Image.new("RGB", (width, _PANEL + _CAPTION), (255, 255, 255))
    out.paste(img, ((width - img.width) // 2, (_PANEL - img.height) // 2))
    draw = ImageDraw.Draw(out)
    font = _font()
    for i, line in enumerate(lines[:3]):
        draw.text((4, _PANEL + 4 + 19 * i), line, fill=(0, 0, 0), font=font)
    return out


def _try_load(path: Path | str | None) -> Image.Image | None:
    if path is None:
        return None
    try:
        return load_image(path)
    except LogoidError:
        return None


def _reference(key: str | None, thumb_for: Callable[[str], Path | None] | None) -> Image.Image | None:
    if key is None or thumb_for is None:
        return None
    try:
        return _try_load(thumb_for(key))
    except (LogoidError, OSError, KeyError):
        return None


def failure_image(category: str, r: QueryResult, *, threshold: float | None,
                  label_names: dict[str, str] | None = None,
                  thumb_for: Callable[[str], Path | None] | None = None) -> Image.Image:
    """Query photo beside the reference image of its top-1 answer (and of the truth, when that differs)."""
    score = f"{r.top1_score:.3f}" if r.ranked else "no candidates"
    thr = "" if threshold is None else f" (thr {threshold:.3f})"
    panels = [
        _panel(_try_load(r.path), [category.replace("_", " "), _display(Path(r.path).name, None),
                                   f"truth: {_display(r.label, label_names)}"], "cannot load photo"),
        _panel(_reference(r.top1, thumb_for), ["matched:", _display(r.top1, label_names), f"score {score}{thr}"],
               "no reference image"),
    ]
    if r.label is not None and r.label != r.top1:
        panels.append(_panel(_reference(r.label, thumb_for), ["should be:", _display(r.label, label_names)],
                             "no reference image"))
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), _PANEL + _CAPTION), (255,) * 3)
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 8
    return sheet


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


_SUMMARY_KEYS = ("n", "n_known", "n_unknown", "threshold", "top1", "top5", "weighted_f1", "auroc", "fpr_at_95tpr",
                 "open_set_accuracy", "known_accept_rate", "known_correct_accept_rate", "unknown_accept_rate",
                 "confident_wrong_rate", "confident_wrong_rate_known")


def _summary_rows(metrics: dict) -> list[tuple[str, str]]:
    keys = [k for k in _SUMMARY_KEYS if k in metrics]
    keys += [k for k in metrics if k not in keys and k != "per_class" and not isinstance(metrics[k], (dict, list))]
    return [(k, _fmt(metrics[k])) for k in keys]


def _class_rows(metrics: dict, label_names: dict[str, str] | None, limit: int = 60) -> list[list[str]]:
    table = metrics.get("per_class") or {}
    # Worst classes first (lowest F1, then most support), so the table shows what to fix.
    order = sorted(table, key=lambda c: (table[c]["f1"], -table[c]["support"], c))[:limit]
    return [[_display(c, label_names) if c != UNKNOWN else UNKNOWN, f"{table[c]['precision']:.3f}",
             f"{table[c]['recall']:.3f}", f"{table[c]['f1']:.3f}", str(table[c]["support"])] for c in order]


def _markdown(metrics: dict, failures: list[tuple[str, str, QueryResult]], label_names, n_classes: int) -> str:
    lines = ["# logoid evaluation", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _summary_rows(metrics)]
    lines += ["", "![top-1 scores](scores.png)", "", "![confusion](confusion.png)", ""]
    rows = _class_rows(metrics, label_names)
    if rows:
        lines += [f"## Per class (worst {len(rows)} of {n_classes})", "",
                  "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"## Failures ({len(failures)} shown)", ""]
    for cat, fname, r in failures:
        lines.append(f"- **{cat.replace('_', ' ')}** `{r.path}` truth {_display(r.label, label_names)}, "
                     f"answer {_display(r.top1, label_names)} ({_fmt(r.top1_score if r.ranked else None)}) "
                     f"![]({fname})")
    return "\n".join(lines) + "\n"


def _html(metrics: dict, failures: list[tuple[str, str, QueryResult]], label_names, n_classes: int) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>logoid evaluation</title>",
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%}"
           ".fail{display:inline-block;margin:6px;vertical-align:top}</style></head><body>",
           "<h1>logoid evaluation</h1><table><tr><th>metric</th><th>value</th></tr>"]
    out += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in _summary_rows(metrics)]
    out += ["</table>", "<h2>Top-1 scores</h2><img src='scores.png' alt='top-1 scores'>",
            "<h2>Confusion</h2><img src='confusion.png' alt='confusion matrix'>"]
    rows = _class_rows(metrics, label_names)
    if rows:
        out.append(f"<h2>Per class (worst {len(rows)} of {n_classes})</h2><table><tr><th>class</th>"
                   "<th>precision</th><th>recall</th><th>f1</th><th>support</th></tr>")
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        out.append("</table>")
    out.append(f"<h2>Failures ({len(failures)} shown)</h2>")
    for cat, fname, r in failures:
        href = Path(r.path).resolve().as_uri() if Path(r.path).is_absolute() or Path(r.path).exists() else r.path
        out.append(f"<div class='fail'><a href='{e(href)}'><img src='{e(fname)}' alt='{e(cat)}'></a>"
                   f"<br>{e(cat.replace('_', ' '))}: {e(r.path)}</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(
    out_dir: str | os.PathLike,
    metrics: dict,
    results: Sequence[QueryResult],
    *,
    threshold: float | None,
    label_names: dict[str, str] | None = None,
    thumb_for: Callable[[str], Path | None] | None = None,
    scores_rule_name: str = "score",
    max_failures: int = MAX_FAILURES,
) -> Path:
    """Write the evaluation report into ``out_dir`` and return the path of ``report.html``.

    Writes ``metrics.json``, ``report.md``, ``report.html``, ``confusion.png``, ``scores.png`` and
    ``failures/NN_<category>.jpg``, plus ``results.json`` (the inputs, for re-plotting). Accept/reject follows :func:`~logoid.eval.metrics.accepted_mask`
    (top-1 score ≥ ``threshold``; each result's own flag when ``threshold`` is None). ``thumb_for(key)``
    gives a reference image path for an entity key; without it the failure sheets show placeholders.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = list(results)
    accepted = accepted_mask(results, threshold)
    truth, pred = answers(results, accepted)

    write_json_atomic(out / "metrics.json", metrics)
    plot_confusion(truth, pred, out / "confusion.png", label_names)
    plot_scores(results, threshold, out / "scores.png", scores_rule_name)

    fail_dir = out / "failures"
    fail_dir.mkdir(exist_ok=True)
    for old in fail_dir.glob("*.jpg"):  # a re-run must not leave stale sheets from the last one
        old.unlink()
    failures = []
    for i, (cat, r) in enumerate(failure_cases(results, accepted, max_failures)):
        fname = f"failures/{i:02d}_{cat}.jpg"
        sheet = failure_image(cat, r, threshold=threshold, label_names=label_names, thumb_for=thumb_for)
        with atomic_path(out / fname, suffix=".jpg") as tmp:
            sheet.save(tmp, format="JPEG", quality=85)
        failures.append((cat, fname, r))

    n_classes = len(metrics.get("per_class") or {})
    with atomic_path(out / "report.md", suffix=".md") as tmp:
        tmp.write_text(_markdown(metrics, failures, label_names, n_classes), encoding="utf-8")
    with atomic_path(out / "report.html", suffix=".html") as tmp:
        tmp.write_text(_html(metrics, failures, label_names, n_classes), encoding="utf-8")
    with atomic_path(out / "results.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps([r.to_dict() for r in results], indent=1, default=float), encoding="utf-8")
    return out / "report.html"
