"""Reference features on disk, keyed on the image's content and the extraction settings."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .config import ExtractConfig
from .extract import extract_reference, reference_variants
from .features import VARIANT_NORMAL, Features


class FeatureCache:
    """Reference features on disk, one ``.npz`` per (image sha256, extraction config, variant)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _path(self, sha256: str, cfg: ExtractConfig, variant: int) -> Path:
        return self.dir / cfg.ref_hash() / sha256[:2] / f"{sha256}-{variant}.npz"

    def get(self, sha256: str, cfg: ExtractConfig, variant: int = VARIANT_NORMAL) -> Features | None:
        p = self._path(sha256, cfg, variant)
        if not p.exists():
            return None
        try:
            return Features.from_npz(p)
        except (OSError, ValueError, KeyError):
            # A corrupt entry is a cache miss; the caller re-extracts and overwrites it.
            return None

    def put(self, sha256: str, cfg: ExtractConfig, feats: Features, variant: int = VARIANT_NORMAL) -> None:
        feats.to_npz(self._path(sha256, cfg, variant))

    def lookup_reference(self, sha256: str, cfg: ExtractConfig, variants: int | None = None) -> list[Features] | None:
        """The first ``variants`` (default :func:`reference_variants`) of a reference's features from the cache, or
        None when any is missing."""
        n = variants or reference_variants(cfg)
        got = [g for g in (self.get(sha256, cfg, v) for v in range(n)) if g is not None]
        return got if len(got) == n else None

    def keypoint_count(self, sha256: str, cfg: ExtractConfig, variants: int | None = None) -> int | None:
        """Keypoints of a cached reference over its first ``variants``, reading only their coordinates; None when any
        of them is missing or unreadable (a build checks a reference without loading its descriptors)."""
        total = 0
        for v in range(variants or reference_variants(cfg)):
            try:
                with np.load(self._path(sha256, cfg, v)) as z:
                    total += int(z["xy"].shape[0])
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                return None
        return total

    def put_reference(self, sha256: str, cfg: ExtractConfig, feats: list[Features]) -> None:
        # One atomic file per variant: a build killed between two leaves a miss, never a torn entry.
        for v, f in enumerate(feats):
            self.put(sha256, cfg, f, v)

    def sweep_partial(self, cfg: ExtractConfig) -> int:
        """Delete temp files that a killed writer left beside the entries (``logoid.core.atomic`` names them
        ``.NAME.*.tmp``); call only while no other process writes this cache (under the home's write lock)."""
        gone = 0
        for tmp in (self.dir / cfg.ref_hash()).glob("*/.*.tmp"):
            tmp.unlink(missing_ok=True)
            gone += 1
        return gone

    def get_reference(self, sha256: str, img_loader, cfg: ExtractConfig, variants: int | None = None
                      ) -> list[Features]:
        """Cached :func:`extract_reference`; ``img_loader()`` is called only on a miss."""
        got = self.lookup_reference(sha256, cfg, variants)
        if got is not None:
            return got
        feats = extract_reference(img_loader(), cfg, variants)
        self.put_reference(sha256, cfg, feats)
        return feats


__all__ = ["FeatureCache"]
