"""Catalog records: plain dataclasses, and the name normalisation every lookup shares."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENTITY_TYPES = ("band", "album")
IMAGE_KINDS = ("logo", "cover")
SCHEMES = ("color", "bw")


def normalise_name(name: str) -> str:
    """Key for matching names: NFKD without accents, case-folded, single spaces ("Motörhead" == "motorhead ")."""
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", text).strip().casefold()


def slugify(name: str) -> str:
    """File-name key: ASCII letters and digits only ("Dark Funeral" → "darkfuneral"), for matching image files."""
    return re.sub(r"[^a-z0-9]", "", normalise_name(name))


@dataclass
class Band:
    """A band (artist). ``external_ids`` maps a source to its id, e.g. ``{"ma": "1234"}``."""

    id: int
    name: str
    genre: str | None = None
    country: str | None = None
    location: str | None = None
    status: str | None = None
    formed_year: int | None = None
    themes: str | None = None
    label: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Album:
    """An album of one band; ``artist_name`` is the band's name, denormalised for display."""

    id: int
    title: str
    artist_id: int
    artist_name: str
    year: int | None = None
    genre: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RefImage:
    """A reference image in the content-addressed store."""

    id: int
    entity_type: str  # 'band' | 'album'
    entity_id: int
    sha256: str
    path: Path  # absolute path of the stored copy
    kind: str  # 'logo' | 'cover'
    scheme: str  # 'color' | 'bw'
    width: int
    height: int
    source: str  # the original file name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d
