"""Save a fine-tuned dual encoder as a logoid checkpoint folder that ``create_embedder(folder)`` loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from logoid.engine.registry import CHECKPOINT_CONFIG

from .config import FinetuneConfig
from .train import FinetuneResult

#: Key under the checkpoint config's ``extra`` where the run is recorded.
EXTRA_KEY = "finetune"


def save_checkpoint(out_dir: str | os.PathLike, embedder, cfg: FinetuneConfig, result: FinetuneResult) -> Path:
    """Write ``model.safetensors`` (full CLIP state dict) and ``config.json`` to ``out_dir``.

    ``config.json`` holds base_model, model_cfg, preprocess_cfg and the new weights hash (engine's format),
    with the run under ``extra.finetune``: config, what was trained, data hash, metrics, WiSE-FT alpha.
    The weights hash differs from the base model's, so an index built with the base model is refused for it.
    """
    extra = {
        EXTRA_KEY: {
            "config": cfg.to_dict(),
            "trained": list(result.trained),
            "data_sha256": result.data_sha256,
            "base_weights_sha256": result.base_weights_sha256,
            "wise_alpha": result.wise_alpha,
            "wise_scores": dict(result.wise_scores),
            "best_epoch": result.best_epoch,
            "val_before": dict(result.val_before),
            "val_after": dict(result.val_after),
            "val_entities": list(result.val_entities),
            "history": list(result.history),
        }
    }
    return embedder.save(Path(out_dir), extra=extra)


def load_run_info(folder: str | os.PathLike) -> dict:
    """The ``extra.finetune`` record of a checkpoint folder ({} if it has none)."""

    cfg = json.loads((Path(folder) / CHECKPOINT_CONFIG).read_text())
    return (cfg.get("extra") or {}).get(EXTRA_KEY, {})
