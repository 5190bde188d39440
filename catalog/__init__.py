"""The catalog: bands, albums and reference images in SQLite, with importers and caption templates."""

from .captions import CaptionTemplates, caption, captions
from .db import SCHEMA_VERSION, Catalog
from .importers import ImportReport, import_album_manifest, import_bands_csv
from .models import Album, Band, RefImage, normalise_name, slugify

__all__ = [
    "SCHEMA_VERSION", "Album", "Band", "CaptionTemplates", "Catalog", "ImportReport", "RefImage", "caption", "captions",
    "import_album_manifest", "import_bands_csv", "normalise_name", "slugify",
]
