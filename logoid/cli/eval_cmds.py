"""eval, calibrate."""

from __future__ import annotations

from pathlib import Path

import click

from logoid import LogoidError
from logoid.build.steps import gallery_calibration
from logoid.eval.manifest import load_queries
from logoid.eval.metrics import evaluate
from logoid.eval.report import write_report
from logoid.eval.run import collect, fit, text_only_flags, to_results, with_rule_scores
from logoid.index.store import IndexStore

from ._common import emit_json, json_option, pass_state, progress, reads, warn
from .album_eval import album_eval_options, eval_album_task
from .query_cmds import identifier


def _load(state, queries: Path, split: str | None, channels: str, embedder=None):
    qs = load_queries(queries, split=split)
    if not qs:
        raise LogoidError(f"{queries}: no query photos" + (f" with split={split}" if split else ""),
                          "check the manifest's photo/label/split columns")
    ident = identifier(state, channels=channels)
    if embedder is not None:
        ident._embedder = embedder
    collected = collect(ident, qs, progress=lambda it: progress(it, "querying", total=len(qs)),
                        on_skip=lambda p, r: warn(f"skipping {p}: {r}"))
    return ident, collected


@click.command("eval")
@click.argument("queries", type=click.Path(exists=True, path_type=Path))
@click.option("--split", default=None, help="Only rows of this split (e.g. test).")
@click.option("--channels", default="global,local,text", show_default=True)
@click.option("--threshold", type=float, default=None, help="Override the index's calibrated threshold.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write metrics.json, report.md/html, confusion.png, scores.png and failure thumbnails here.")
@album_eval_options
@json_option
@pass_state
@reads
def eval_cmd(state, queries, split, channels, threshold, report_dir, task, method, use_model, model, features, columns,
             as_json):
    """Measure accuracy on QUERIES: a CSV (photo,label[,split]) or a folder tree label/photo.jpg.

    With --task genre / artist, QUERIES is a cover manifest (albums-dev's columns; see `--column`).
    """
    if task != "identify":
        return eval_album_task(state, task, queries, split, report_dir, method, use_model, model, features, columns,
                               as_json)

    ident, collected = _load(state, queries, split, channels)
    if threshold is not None:
        ident._threshold_override = threshold
    results = to_results(ident, collected, state.catalog)

    # Answers supported by text alone are accepted by their own threshold, so metrics read each accept decision.
    results = with_rule_scores(results, ident.rule, ident.threshold, text_only_flags(ident, collected),
                               ident.text_only_threshold)
    metrics = evaluate(results, None)
    metrics.update(rule=ident.rule, channels=channels, queries=str(queries), split=split, threshold=ident.threshold,
                   text_only_threshold=ident.text_only_threshold)
    if report_dir:
        cat = state.catalog
        names = {r.top1: _name(cat, r.top1) for r in results if r.top1}
        names.update({r.label: _name(cat, r.label) for r in results if r.label})

        def thumb_for(key):
            etype, eid = key.split(":")
            imgs = cat.images(etype, int(eid))
            return imgs[0].path if imgs else None

        write_report(report_dir, metrics, results, threshold=ident.threshold, label_names=names, thumb_for=thumb_for,
                     scores_rule_name=ident.rule)
    if as_json:
        emit_json(metrics)
        return
    click.echo(_summary(metrics))
    if report_dir:
        click.echo(f"report: {report_dir / 'report.html'}")


def _name(cat, key: str) -> str:
    etype, eid = key.split(":")
    return cat.entity_name(etype, int(eid))


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _summary(m: dict) -> str:
    keys = ["n_known", "n_unknown", "top1", "top5", "weighted_f1", "auroc", "fpr_at_95tpr", "open_set_accuracy",
            "confident_wrong_rate", "threshold"]
    return "\n".join(f"{k:>22}: {_fmt(m.get(k))}" for k in keys if k in m)


@click.command("calibrate")
@click.argument("queries", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--split", default="calib", show_default=True,
              help="Rows of this split are used when the manifest has a split column.")
@click.option("--objective", type=click.Choice(["open_set_accuracy", "max_false_accept"]),
              default="open_set_accuracy", show_default=True)
@click.option("--max-false-accept", type=float, default=0.05, show_default=True,
              help="With --objective max_false_accept: the highest unknown acceptance rate allowed.")
@click.option("--gallery", is_flag=True, help="No photos: calibrate the global channel from the gallery itself.")
@json_option
@pass_state
def calibrate_cmd(state, queries, split, objective, max_false_accept, gallery, as_json):
    """Fit the fusion model and the rejection rule/threshold on labelled photos (known and unknown)."""
    if gallery or queries is None:
        out = _calibrate_gallery(state)
    else:
        out = _calibrate_photos(state, queries, split, objective, max_false_accept)
    if as_json:
        emit_json(out)
        return
    cal = out["calibration"]
    click.echo(f"calibrated on {out['source']}: rule {cal['rule']}, threshold {cal['threshold']:.4f}")
    for rule, d in cal.get("per_rule", {}).items():
        click.echo(f"  {rule:>10}: AUROC {_fmt(d.get('auroc'))}  {cal.get('objective', '')} {_fmt(d.get('value'))}"
                   f" at {_fmt(d.get('threshold'))}")
    t_only = cal.get("text_only")
    if t_only:
        how = ("calibrated on" if t_only["source"] == "calibrated" else "too few for a threshold of their own:")
        click.echo(f"  text-only answers: threshold {t_only['threshold']:.4f} ({how} {t_only['n']} text-only "
                   f"calibration answers, {t_only['n_right']} right)")
    click.echo(f"stored in {state.home.index_dir / 'logoid-index.json'}")


def _calibrate_photos(state, queries, split, objective, max_false_accept, embedder=None) -> dict:
    has_split = any(q.split for q in load_queries(queries))
    ident, collected = _load(state, queries, split if has_split else None, "global,local,text", embedder)
    labels = [c.query.label for c in collected]
    if all(lbl is None for lbl in labels):
        raise LogoidError(f"{queries}: every photo is labelled unknown", "add photos of catalog entities")
    model, cal = fit(ident, collected, state.catalog, objective=objective, max_false_accept=max_false_accept)
    if cal.n_unknown == 0:
        warn("no unknown photos: the threshold cannot be checked against impostors; add photos of things not in "
             "the catalog")

    upd = {"fusion": model.to_dict(),
           "calibration": {**cal.to_dict(), "source": f"{queries}" + (f" split={split}" if has_split else "")}}
    with state.writing():  # only the sidecar's entries change: vectors another command added meanwhile stay
        ident.store.meta = IndexStore.patch_meta(state.home.index_dir, upd)
    return {"source": upd["calibration"]["source"], "calibration": upd["calibration"], "fusion": upd["fusion"],
            "queries": len(collected)}


def _calibrate_gallery(state) -> dict:
    import numpy as np

    with state.writing():  # the vectors read are the ones the sidecar keeps
        store = IndexStore.load(state.home.index_dir)
        vecs, ids = store.vectors.vectors_and_ids()  # every backend (FAISS flat/IVF, Milvus) provides this
        upd = gallery_calibration(state.catalog, np.asarray(vecs, np.float32), ids)
        if not upd:
            raise LogoidError("the gallery has too few entities to calibrate from",
                              "add at least two bands with images")
        IndexStore.patch_meta(state.home.index_dir, upd)
    return {"source": "gallery leave-one-out", "calibration": upd["calibration"]["global"], "fusion": upd["fusion"]}


COMMANDS = [eval_cmd, calibrate_cmd]
