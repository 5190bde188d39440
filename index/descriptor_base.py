"""What the FAISS and Milvus descriptor indexes share: the owner encoded in each descriptor id, each reference's
keypoint coordinates and size (:class:`DescriptorBase`), and the ratio-test matching of a k-NN result.

Each descriptor's id encodes its owner: ``(image_id << 21) | (variant << 20) | keypoint``. The owner of any search
hit is therefore read off its id (no side array to keep in step), and removing a reference image is one id-range
removal, not a rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from logoid.core.errors import ConfigError, IndexMismatchError
from logoid.engine.local import DESC_DIM, INVERTED_ORDER, VARIANT_INVERTED, ExtractConfig, Features
from logoid.index.descriptor_layout import KeyedRows, entry_key

KP_BITS = 20  # up to 1,048,576 keypoints per (image, variant)
VARIANT_BITS = 1  # 0 normal, 1 inverted
OWNER_SHIFT = KP_BITS + VARIANT_BITS
MAX_IMAGE_ID = (1 << (63 - OWNER_SHIFT)) - 1


def encode_ids(image_id: int, variant: int, n: int) -> np.ndarray:
    """FAISS ids of keypoints ``0..n-1`` of one (image, variant)."""
    base = (int(image_id) << OWNER_SHIFT) | (int(variant) << KP_BITS)
    return base + np.arange(n, dtype=np.int64)


def decode_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image_id, variant, keypoint) of FAISS ids; -1 ids (no hit) decode to -1 everywhere."""
    ids = np.asarray(ids, dtype=np.int64)
    miss = ids < 0
    img = np.where(miss, -1, ids >> OWNER_SHIFT)
    var = np.where(miss, -1, (ids >> KP_BITS) & 1)
    kp = np.where(miss, -1, ids & ((1 << KP_BITS) - 1))
    return img, var, kp


def geometry_rows(spill: Path | None = None) -> KeyedRows:
    """An empty table of keypoint coordinates per (image, variant): (n, 2) float32 original px, aux (w, h)."""
    return KeyedRows(2, np.float32, aux=2, spill=spill)


class DescriptorBase:
    """What the FAISS and Milvus descriptor indexes share: each reference's keypoint positions and image size (read
    by geometric verification of a shortlisted candidate), the checks an added reference passes, and the ratio-test
    matching over ``search``. ``_geo``: (image_id, variant) -> (n, 2) float32 original px with aux (w, h), in
    arrays (:class:`~logoid.index.descriptor_layout.KeyedRows`, no Python object per reference);
    ``feature_config``: the reference extraction's ExtractConfig dict."""

    _geo: KeyedRows
    feature_config: dict

    @property
    def flip_inverted(self) -> bool:
        """Whether only references' normal variant is stored and inverted prints are found by searching each
        photo descriptor contrast-flipped too (``DescriptorConfig.flip_inverted``)."""
        return False

    def search(self, desc: np.ndarray, k: int = 2, restrict: Iterable[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Squared L2 distances (nq, k) and owners (nq, k, 3) = (image_id, variant, keypoint); -1 = none.

        ``restrict``: only these reference image ids are searched. With :attr:`flip_inverted`, the k nearest of
        each descriptor and of its contrast-flipped copy (one search of both), merged: a flipped hit is the
        reference's inverted variant (1) at the same keypoint.
        """
        desc = np.ascontiguousarray(np.asarray(desc, np.float32).reshape(-1, DESC_DIM))
        if not self.flip_inverted or desc.shape[0] == 0:
            return self._search(desc, k, restrict)
        n = desc.shape[0]
        D, owners = self._search(np.concatenate([desc, desc[:, INVERTED_ORDER]]), k, restrict)
        flipped = owners[n:].copy()
        flipped[..., 1] = np.where(flipped[..., 0] >= 0, VARIANT_INVERTED, -1)
        D2, own2 = np.concatenate([D[:n], D[n:]], axis=1), np.concatenate([owners[:n], flipped], axis=1)
        order = np.argsort(D2, axis=1, kind="stable")[:, :k]  # ties: the normal variant first
        return np.take_along_axis(D2, order, 1), np.take_along_axis(own2, order[..., None], 1)

    def _search(self, desc: np.ndarray, k: int, restrict: Iterable[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of the stored descriptors alone (``desc``: (nq, 128) float32, contiguous)."""
        raise NotImplementedError

    def _stored(self, feats_list: list[Features]) -> list[Features]:
        """The variants of a reference that are stored: all, or with :attr:`flip_inverted` the normal one."""
        return feats_list[:1] if self.flip_inverted else feats_list

    def image_ids(self) -> list[int]:
        """Sorted ids of the indexed reference images."""
        return np.unique(self._geo.live_sorted()[0] >> 1).tolist()

    def contains(self, image_id: int) -> bool:
        return self._geo.slot(entry_key(image_id, 0)) >= 0

    def ref_xy(self, image_id: int, variant: int = 0) -> np.ndarray:
        """Keypoint coordinates (original px) of one reference image and variant (read-only when memory-mapped)."""
        return self._geo.get(entry_key(image_id, 0 if self.flip_inverted else variant))

    def ref_size(self, image_id: int, variant: int = 0) -> tuple[int, int]:
        w, h = self._geo.aux(entry_key(image_id, 0 if self.flip_inverted else variant))
        return w, h

    @staticmethod
    def _validate(image_id: int, feats_list: list[Features]) -> None:
        """Raise before anything changes if one image's features cannot be indexed under its id."""
        if not 0 <= image_id <= MAX_IMAGE_ID:
            raise ConfigError(f"image_id must be in [0, {MAX_IMAGE_ID}], got {image_id}")
        if len(feats_list) > 1 << VARIANT_BITS:
            raise ConfigError(f"at most {1 << VARIANT_BITS} variants per image, got {len(feats_list)}")
        for f in feats_list:
            if len(f) >= 1 << KP_BITS:
                raise ConfigError(f"image {image_id} has {len(f)} keypoints; the limit is {(1 << KP_BITS) - 1}")
            if f.desc.shape != (len(f), DESC_DIM):
                raise ConfigError(f"descriptors must be ({len(f)}, {DESC_DIM}), got {f.desc.shape}")

    def _keep(self, image_id: int, feats_list: list[Features]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keep one (validated) image's coordinates and sizes; its (descriptors, ids) to index, per variant."""
        out = []
        for variant, f in enumerate(feats_list):
            self._geo.put(entry_key(image_id, variant), np.asarray(f.xy, np.float32).reshape(-1, 2),
                          (int(f.size[0]), int(f.size[1])))
            if len(f):
                out.append((np.asarray(f.desc, np.float32), encode_ids(image_id, variant, len(f))))
        return out

    def match(self, query: Features, ratio: float = 0.9, k: int = 8, restrict: Iterable[int] | None = None
              ) -> np.ndarray:
        """Ratio-test matches of the query's keypoints: (m, 4) int64 rows (query_kp, image_id, variant, ref_kp).

        The second neighbour of the ratio test is the nearest one owned by a DIFFERENT reference image:
        repeated strokes within one logo (the two Ms of MAYHEM) must not cancel each other. A keypoint
        whose k neighbours all belong to one image is kept (its neighbourhood is that image's alone).
        """
        D, owners = self.search(query.desc, k=max(2, k), restrict=restrict)
        return ratio_matches(D, owners, ratio)

    def votes(self, query: Features, ratio: float = 0.9, k: int = 8, restrict: Iterable[int] | None = None
              ) -> dict[tuple[int, int], np.ndarray]:
        """Ratio-test matches grouped by owner: ``(image_id, variant) -> (m, 2) int64 (query_kp, ref_kp)``."""
        return group_matches(self.match(query, ratio, k, restrict))

    def check_features(self, cfg: ExtractConfig) -> None:
        """Raise if queries extracted with ``cfg`` would not be comparable with the indexed references."""
        built = ExtractConfig.from_dict(self.feature_config) if self.feature_config else None
        if built is not None and built.extract_hash() != cfg.extract_hash():
            raise IndexMismatchError("the descriptor index was built with other local-feature settings",
                                     "rebuild with `logoid build-index` or use the index's settings")


def ratio_matches(D: np.ndarray, owners: np.ndarray, ratio: float) -> np.ndarray:
    """Ratio test on a k-NN search result (see :meth:`DescriptorIndex.match`): (m, 4) rows.

    The second neighbour is the nearest one owned by another reference image; a keypoint whose k
    neighbours all belong to one image is kept.
    """
    if D.shape[0] == 0:
        return np.zeros((0, 4), np.int64)
    img = owners[..., 0]
    valid = img[:, 0] >= 0
    other = (img != img[:, :1]) & (img >= 0)
    has_other = other.any(axis=1)
    j = other.argmax(axis=1)
    d1 = np.sqrt(np.maximum(D[:, 0], 0))
    d2 = np.sqrt(np.maximum(D[np.arange(len(j)), j], 0))
    keep = valid & (~has_other | (d1 < ratio * d2))
    q = np.nonzero(keep)[0]
    return np.column_stack([q, owners[q, 0, 0], owners[q, 0, 1], owners[q, 0, 2]]).astype(np.int64)


def group_matches(matches: np.ndarray, top: int | None = None) -> dict[tuple[int, int], np.ndarray]:
    """Group (query_kp, image_id, variant, ref_kp) rows by (image_id, variant) -> (m, 2) (query_kp, ref_kp).

    Groups come in (image_id, variant) order; with ``top``, only the ``top`` largest groups, largest first
    (ties in (image_id, variant) order), which is all that a shortlist of candidates needs.
    """
    out: dict[tuple[int, int], np.ndarray] = {}
    if len(matches) == 0:
        return out
    nvar = int(matches[:, 2].max()) + 1
    code = matches[:, 1] * nvar + matches[:, 2]  # (image_id, variant) as one sortable int64
    keys, inv, counts = np.unique(code, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    pick = np.arange(len(keys)) if top is None else np.argsort(-counts, kind="stable")[:top]
    for i in pick:
        rows = matches[order[bounds[i]:bounds[i + 1]]]
        out[(int(keys[i] // nvar), int(keys[i] % nvar))] = rows[:, [0, 3]]
    return out


def _fc_dict(fc: ExtractConfig | dict | None) -> dict:
    if fc is None:
        return {}
    return fc.to_dict() if isinstance(fc, ExtractConfig) else dict(fc)


__all__ = ["KP_BITS", "MAX_IMAGE_ID", "OWNER_SHIFT", "VARIANT_BITS", "DescriptorBase", "decode_ids", "encode_ids",
           "geometry_rows", "group_matches", "ratio_matches"]
