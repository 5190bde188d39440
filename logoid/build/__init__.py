"""Building and updating an index: the stage above ``index`` that reads the catalog, augments, embeds,
extracts local features and commits a new index generation."""

from .steps import (
           BuildOptions,
           BuildReport,
           add_images,
           build_index,
           current_backend,
           gallery_calibration,
           remove_images,
)

__all__ = ["BuildOptions", "BuildReport", "add_images", "build_index", "current_backend", "gallery_calibration",
           "remove_images"]
