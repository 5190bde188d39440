"""finetune."""

from __future__ import annotations

from pathlib import Path

import click

from logoid import DEFAULT_MODEL, LogoidError, create_embedder
from logoid.catalog.captions import caption

from ._common import emit_json, json_option, pass_state


def _train_items(cat):
    from logoid.finetune import TrainItem

    items = []
    for ref in cat.images():
        meta = cat.entity_meta(ref.entity_type, ref.entity_id)
        items.append(TrainItem(entity_key=f"{ref.entity_type}:{ref.entity_id}", image=ref.path,
                               caption=caption(meta, ref.entity_type), scheme=ref.scheme))
    return items


@click.command("finetune")
@click.option("--base", "base_model", default=DEFAULT_MODEL, show_default=True, help="Model to start from.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoint folder (default: <home>/models/finetuned).")
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--variants", type=int, default=20, show_default=True, help="Augmented variants per catalog image.")
@click.option("--unlock-image-blocks", type=int, default=0, show_default=True,
              help="Also train the last N blocks of the image trunk (slower on CPU).")
@click.option("--wise-alpha", default="auto", show_default=True,
              help='WiSE-FT mix of fine-tuned and starting weights: a number in [0, 1] or "auto" (chosen on validation).')
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Entities held out for validation.")
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@pass_state
def finetune_cmd(state, base_model, output, epochs, batch_size, lr, variants, unlock_image_blocks, wise_alpha,
                 val_fraction, seed, as_json):
    """Fine-tune the dual encoder on the catalog (variants ↔ captions, contrastive), save a checkpoint.

    Build an index with it afterwards: `logoid build-index --model <checkpoint folder>`.
    """
    from tqdm import tqdm

    from logoid.augment import AugmentConfig
    from logoid.finetune import FinetuneConfig, finetune, save_checkpoint

    cat = state.catalog
    items = _train_items(cat)
    if len({i.entity_key for i in items}) < 4:
        raise LogoidError("fine-tuning needs images of at least 4 bands or albums",
                          "add more with `logoid add-band --image` or `logoid catalog import`")
    try:
        alpha = wise_alpha if wise_alpha == "auto" else float(wise_alpha)
    except ValueError as e:
        raise LogoidError(f"--wise-alpha {wise_alpha!r} is not a number or 'auto'", "use e.g. 0.5 or auto") from e
    cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, unlock_image_blocks=unlock_image_blocks,
                         wise_alpha=alpha, val_fraction=val_fraction, seed=seed,
                         augment=AugmentConfig(n_variants=variants, seed=seed))
    embedder = create_embedder(base_model)
    bars: dict[str, tqdm] = {}

    def progress(stage, done, total, info=None):
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, leave=False)
        bar.n = done
        if info:
            bar.set_postfix({k: round(v, 3) for k, v in dict(info).items() if isinstance(v, float)}, refresh=False)
        bar.refresh()

    result = finetune(items, cfg, embedder, progress=progress, cache_dir=state.home.cache_dir / "finetune")
    for bar in bars.values():
        bar.close()
    out = output or state.home.models_dir / "finetuned"
    save_checkpoint(out, embedder, cfg, result)
    summary = {"checkpoint": str(out), "model_id": embedder.model_id, "best_epoch": result.best_epoch,
               "wise_alpha": result.wise_alpha, "val_before": result.val_before, "val_after": result.val_after,
               "train_seconds": result.train_seconds, "feature_seconds": result.feature_seconds}
    if as_json:
        emit_json(summary)
        return
    click.echo(f"fine-tuned {base_model} on {len(items)} images: best epoch {result.best_epoch}, "
               f"WiSE alpha {result.wise_alpha}; validation {result.val_before} → {result.val_after}")
    click.echo(f"checkpoint: {out}\nnext: logoid build-index --model {out}")


COMMANDS = [finetune_cmd]
