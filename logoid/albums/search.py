"""Search by words: rank catalog images by the similarity of a sentence's text vector to their image vectors.

The image side is each catalog image's *original* variant vector as stored in the index (one per
image, no re-embedding). Only as good as the model's shared text-image space: the default
``logoid-effl0-minilm`` ships with untrained projections, so before ``logoid finetune`` the ranking is
close to arbitrary; a fine-tuned checkpoint (or a real CLIP) makes it meaningful.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from logoid.core.errors import ConfigError, IndexMissingError
from logoid.index.vectors import decode_ids


@dataclass
class SearchHit:
    rank: int
    score: float  # cosine between the text vector and the image vector
    image_id: int
    entity: str  # "band:3" / "album:7"
    name: str  # display name (album: "Artist - Title")
    path: str  # the stored reference image

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(self.score, 4)
        return d


def original_vectors(store) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, vectors)``: the variant-0 (original image) vector of every indexed image."""
    mat, ids = store.require_vectors().vectors_and_ids()
    image_ids, variant = decode_ids(ids)
    keep = variant == 0
    if not keep.any():
        raise IndexMissingError(f"the index in {store.root} holds no image vectors", "run `logoid build-index`")
    return image_ids[keep], np.asarray(mat, np.float32)[keep]


def search(text: str, store, catalog, embedder, k: int = 10, entity_type: str | None = None) -> list[SearchHit]:
    """The ``k`` catalog images (of ``entity_type`` 'band'/'album', or all) most similar to ``text``."""
    text = (text or "").strip()
    if not text:
        raise ConfigError("empty search text", 'write what to look for, e.g. logoid search "a jazz album cover"')
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    store.check_model(embedder.info)
    image_ids, mat = original_vectors(store)
    refs = {r.id: r for r in catalog.images(entity_type)}
    keep = np.array([int(i) in refs for i in image_ids], bool)
    image_ids, mat = image_ids[keep], mat[keep]
    if not len(image_ids):
        return []
    sims = mat @ embedder.embed_texts([text])[0]
    order = np.argsort(-sims, kind="stable")[:k]
    hits = []
    for rank, j in enumerate(order, 1):
        ref = refs[int(image_ids[j])]
        hits.append(SearchHit(rank, float(sims[j]), ref.id, f"{ref.entity_type}:{ref.entity_id}",
                              catalog.entity_name(ref.entity_type, ref.entity_id), str(ref.path)))
    return hits
