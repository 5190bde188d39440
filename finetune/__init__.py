"""Contrastive fine-tuning of the dual encoder (projections, optionally the last image-trunk blocks)."""

from .checkpoint import load_run_info, save_checkpoint
from .config import FinetuneConfig
from .data import TrainItem, entity_batches, split_entities
from .train import FinetuneResult, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainItem", "entity_batches", "finetune", "load_run_info",
           "save_checkpoint", "split_entities"]
