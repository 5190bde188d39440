"""logoid: recognise band logos and album covers in real photos.

The public API (everything in ``__all__``; the rest of the package may change between versions)::

    import logoid

    home = logoid.open_home("my-home")                      # catalog, images and index live here
    catalog = logoid.Catalog.open(home)
    band = catalog.add_band("Mayhem", genre="Black Metal", country="Norway")
    catalog.add_image("band", band.id, "mayhem.png")
    logoid.build_index(home, catalog, logoid.create_embedder(logoid.DEFAULT_MODEL))
    answer = logoid.Identifier(home, catalog).identify("photo.jpg")
    result = logoid.answer_json(answer)                     # the JSON `logoid query --json` prints
    print(result["status"], result["answer"], result["score"])   # ok Mayhem 1.0

(the README's "From Python" example, run by tests/test_readme_api.py).

Names load on first use, so ``import logoid`` stays cheap (no torch, FAISS or OpenCV until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "DEFAULT_MODEL": "logoid.engine.registry",
    "create_embedder": "logoid.engine.registry",
    "list_models": "logoid.engine.registry",
    "Home": "logoid.core.paths",
    "open_home": "logoid.core.paths",
    "Catalog": "logoid.catalog.db",
    "Band": "logoid.catalog.models",
    "Album": "logoid.catalog.models",
    "RefImage": "logoid.catalog.models",
    "BuildOptions": "logoid.build.steps",
    "BuildReport": "logoid.build.steps",
    "build_index": "logoid.build.steps",
    "add_images": "logoid.build.steps",
    "remove_images": "logoid.build.steps",
    "Identifier": "logoid.identify.pipeline",
    "IdentifyConfig": "logoid.identify.pipeline",
    "Answer": "logoid.identify.answer",
    "Candidate": "logoid.identify.answer",
    "answer_json": "logoid.identify.answer",
    "error_json": "logoid.identify.answer",
    "LogoidError": "logoid.core.errors",
    "ImageError": "logoid.core.errors",
    "CatalogError": "logoid.core.errors",
    "ConfigError": "logoid.core.errors",
    "IndexMissingError": "logoid.core.errors",
    "IndexMismatchError": "logoid.core.errors",
    "ModelError": "logoid.core.errors",
}

__all__ = [
    "__version__",
    "Album",
    "Answer",
    "Band",
    "BuildOptions",
    "BuildReport",
    "Candidate",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "DEFAULT_MODEL",
    "Home",
    "Identifier",
    "IdentifyConfig",
    "ImageError",
    "IndexMismatchError",
    "IndexMissingError",
    "LogoidError",
    "ModelError",
    "RefImage",
    "add_images",
    "answer_json",
    "build_index",
    "create_embedder",
    "error_json",
    "list_models",
    "open_home",
    "remove_images",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'logoid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names above load lazily
    from logoid.build.steps import BuildOptions, BuildReport, add_images, build_index, remove_images
    from logoid.catalog.db import Catalog
    from logoid.catalog.models import Album, Band, RefImage
    from logoid.core.errors import (
        CatalogError,
        ConfigError,
        ImageError,
        IndexMismatchError,
        IndexMissingError,
        LogoidError,
        ModelError,
    )
    from logoid.core.paths import Home, open_home
    from logoid.engine.registry import DEFAULT_MODEL, create_embedder, list_models
    from logoid.identify.answer import Answer, Candidate, answer_json, error_json
    from logoid.identify.pipeline import Identifier, IdentifyConfig
