"""Embedding cache keyed by (image hash, augmentation config, variant) per model.

A rebuild embeds only what changed: new images, a new augmentation config or a new model.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np


class EmbeddingCache:
    """SQLite table of float32 vectors; one file per model id under ``cache/embeddings``."""

    def __init__(self, cache_dir: Path, model_id: str):
        cache_dir = Path(cache_dir) / "embeddings"
        cache_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)
        self.path = cache_dir / f"{safe}.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A commit survives the process being killed (it is in the OS's hands); only a power cut may lose the last
        # few, which the next build recomputes. FULL's fsync per commit cost 4 ms, one per image a build embeds.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    @staticmethod
    def key(sha256: str, aug_hash: str, variant: int) -> str:
        return f"{sha256}:{aug_hash}:{variant}"

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
            for k, blob in self._db.execute(q, chunk):
                out[k] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def close(self) -> None:
        self._db.close()
