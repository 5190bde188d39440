"""What every global-vector backend offers (FAISS in ``vectors.py``, Milvus in ``milvus.py``), and which one a sidecar names.

The index sidecar's ``backend`` entry says where the global vectors live: ``{"kind": "faiss"}`` (the default;
a sidecar without the key is FAISS) or ``{"kind": "milvus", "uri": ..., "collection": ..., ...}``. Names are
a file beside the sidecar whatever the backend; a Milvus build puts the local descriptors in Milvus too
(``milvus_descriptors.py``: their own sidecar names the collection, keypoint coordinates stay a local file).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

FAISS, MILVUS = "faiss", "milvus"
BACKENDS = (FAISS, MILVUS)


@runtime_checkable
class GlobalVectors(Protocol):
    """Cosine (inner product on L2-normalised vectors) search over int64 ids ``image_id * 1024 + variant``."""

    dim: int

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove_images(self, image_ids) -> int: ...

    def ids(self) -> np.ndarray: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def reconstruct_image(self, image_id: int) -> np.ndarray: ...

    def vectors_and_ids(self) -> tuple[np.ndarray, np.ndarray]: ...


def backend_kind(meta: dict) -> str:
    """The backend a sidecar names; sidecars written before backends existed are FAISS."""
    return str((meta.get("backend") or {}).get("kind", FAISS))
