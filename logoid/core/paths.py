"""Where logoid keeps its state: ``--home`` flag → ``LOGOID_HOME`` → the platform's user data dir."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "LOGOID_HOME"


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("logoid", appauthor=False))


@dataclass(frozen=True)
class Home:
    """The layout of one logoid home folder."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> Home:
        root = Path(home).expanduser() if home else default_home()
        return cls(root)

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.db"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def ensure(self) -> Home:
        for p in (self.root, self.images, self.index_dir, self.cache_dir):
            p.mkdir(parents=True, exist_ok=True)
        return self


def open_home(home: str | os.PathLike | None = None) -> Home:
    """The home folder ``home`` (else ``LOGOID_HOME``, else the user data dir), created if missing."""
    return Home.resolve(home).ensure()
