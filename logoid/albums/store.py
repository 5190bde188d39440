"""Album models on disk, beside the index: ``<home>/albums/<name>.json`` naming ``<name>-<generation>.npz``.

The npz is written first under a new generation name, then the JSON is replaced in one atomic rename
(the commit point), then older generations are removed: a crash leaves the previous model intact.
Each JSON records the model (name, weights hash, embedding size) whose vectors the arrays hold, and
loading refuses another model. A separate folder, because the index folder sweeps files its sidecar
does not name.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from logoid.core.atomic import atomic_path, write_json_atomic
from logoid.core.errors import ConfigError, IndexMismatchError, IndexMissingError
from logoid.core.paths import Home

FORMAT_VERSION = 1


def albums_dir(home: Home) -> Path:
    """Where the album models of ``home`` live (next to ``index/``)."""
    return home.root / "albums"


def model_record(embedder) -> dict:
    """What identifies the vectors' model: recorded with every album model."""
    info = embedder.info
    return {k: info.get(k) for k in ("model", "model_id", "weights_sha256", "embed_dim", "projections")}


def exists(home: Home, name: str) -> bool:
    return (albums_dir(home) / f"{name}.json").is_file()


def save(home: Home, name: str, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``meta`` as the current ``name`` model; returns the JSON path."""
    folder = albums_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    side = folder / f"{name}.json"
    gen = 1
    if side.is_file():
        try:
            gen = int(json.loads(side.read_text()).get("generation", 0)) + 1
        except (OSError, ValueError):
            gen = 1
    npz = f"{name}-{gen:05d}.npz"
    with atomic_path(folder / npz, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    meta = {**meta, "format_version": FORMAT_VERSION, "generation": gen, "arrays": npz,
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    write_json_atomic(side, meta)
    for old in folder.glob(f"{name}-*.npz"):
        if old.name != npz:
            old.unlink(missing_ok=True)
    return side


def load(home: Home, name: str, hint: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The stored ``name`` model's JSON and arrays; :class:`IndexMissingError` (with ``hint``) when absent."""
    side = albums_dir(home) / f"{name}.json"
    if not side.is_file():
        raise IndexMissingError(f"no {name.replace('-', ' ')} in {albums_dir(home)}", hint)
    try:
        meta = json.loads(side.read_text())
        with np.load(albums_dir(home) / meta["arrays"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{side}: unreadable ({e})", hint) from e
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ConfigError(f"{side} was written by a newer logoid", "upgrade logoid")
    return meta, arrays


def check_model(meta: dict, embedder_or_info, what: str, hint: str) -> None:
    """Refuse vectors of one model scored against a model built from another's."""
    info = embedder_or_info if isinstance(embedder_or_info, dict) else embedder_or_info.info
    built = meta.get("model") or {}
    if built.get("weights_sha256") != info.get("weights_sha256") or built.get("embed_dim") != info.get("embed_dim"):
        raise IndexMismatchError(
            f"the {what} was built with model {built.get('model')!r} (weights {str(built.get('weights_sha256'))[:12]}),"
            f" not {info.get('model')!r} (weights {str(info.get('weights_sha256'))[:12]})", hint)
