"""Everything that turns pixels or words into vectors.

``create_embedder`` / ``list_models`` are the dual-encoder registry (cheap to import: torch and open_clip
load only when a model is first used).
"""

from .embedder import Embedder
from .registry import DEFAULT_MODEL, ModelSpec, create_embedder, list_models, save_checkpoint, weights_sha256

__all__ = ["DEFAULT_MODEL", "Embedder", "ModelSpec", "create_embedder", "list_models", "save_checkpoint",
           "weights_sha256"]
