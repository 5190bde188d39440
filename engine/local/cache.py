"""Reference features on disk, keyed on the image's content and the extraction settings."""

from __future__ import annotations

from pathlib import Path

from .config import ExtractConfig
from .extract import extract_reference
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

    def get_reference(self, sha256: str, img_loader, cfg: ExtractConfig) -> list[Features]:
        """Cached :func:`extract_reference`; ``img_loader()`` is called only on a miss."""
        n = 2 if cfg.enrol_inverted else 1
        got = [g for g in (self.get(sha256, cfg, v) for v in range(n)) if g is not None]
        if len(got) == n:
            return got
        feats = extract_reference(img_loader(), cfg)
        for v, f in enumerate(feats):
            self.put(sha256, cfg, f, v)
        return feats


__all__ = ["FeatureCache"]
