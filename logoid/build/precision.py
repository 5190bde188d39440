"""Which arithmetic and which image tower a build embeds in: a home keeps its index's, a new index gets
:func:`~logoid.engine.embedder.default_precision` (``auto`` with the frozen tower on a CPU), and a defaulted frozen
tower that TorchScript cannot trace falls back to the eager one."""

from __future__ import annotations

import numpy as np

from logoid.core.errors import ConfigError, ModelError
from logoid.core.paths import Home
from logoid.engine.embedder import FROZEN, default_precision, resolve_precision, split_precision
from logoid.index.store import IndexStore

from .embedding import batch_size_for


def built_precision(home: Home) -> str | None:
    """The precision the home's current index was built in (its sidecar's ``model.precision``; fp32 for indexes
    older than the record), or None without an index."""
    if not IndexStore.exists(home.index_dir):
        return None
    return (IndexStore.load_meta_only(home.index_dir).get("model") or {}).get("precision") or "fp32"


def index_precision(meta: dict, device: str) -> str:
    """The precision an index's vectors were made in (its sidecar ``meta``), resolved, to embed more of them alike:
    fp32 where it cannot run here (fp16 of a GPU build on a CPU) and for indexes older than the record."""
    try:
        return resolve_precision((meta.get("model") or {}).get("precision") or "fp32", device)
    except ConfigError:
        return "fp32"


def _kept(home: Home, device: str) -> str | None:
    """The home's index's precision where it runs on ``device``; None without an index or where it cannot run."""
    recorded = built_precision(home)
    if recorded is None:
        return None
    try:
        resolve_precision(recorded, device)
    except ConfigError:
        return None
    return recorded


def build_precision(home: Home, device: str, precision: str | None = None, frozen: bool | None = None) -> str:
    """The precision a build of ``home`` runs in, unresolved (``"auto+frozen"``; :func:`resolve_precision` next).

    ``precision`` (auto | fp32 | bf16) and ``frozen`` (the TorchScript tower) where given; what is not given comes from
    the home's index (a rebuild then finds its vectors in the cache: indexes older than the record are fp32, eager),
    or, for a new index or one whose precision cannot run on ``device`` (fp16 on a CPU), from
    :func:`~logoid.engine.embedder.default_precision`."""
    base, tower = split_precision(_kept(home, device) or default_precision(device))
    return (precision or base) + (FROZEN if (tower if frozen is None else frozen) else "")


def frozen_by_default(home: Home, device: str, frozen: bool | None = None) -> bool:
    """True where :func:`build_precision` takes the tower from :func:`~logoid.engine.embedder.default_precision`
    (nothing asked, no index whose precision runs here) and that tower is the frozen one: a tower that does not
    trace then falls back to the eager one (:func:`eager_unless_it_freezes`) instead of stopping the build."""
    return frozen is None and _kept(home, device) is None and split_precision(default_precision(device))[1]


def eager_unless_it_freezes(embedder, precision: str, batch: int | None = None) -> tuple[str, str | None]:
    """A frozen-tower ``precision`` (resolved) as it is when its tower traces, else its eager twin and why. The tower
    is traced here at the embedding stage's input shape, so the build reuses it."""
    base, frozen = split_precision(precision)
    if not frozen:
        return precision, None
    side = embedder.input_side
    try:
        embedder.embed_inputs(np.zeros((batch_size_for(embedder.device, batch), side, side, 3), np.float32), precision)
    except ModelError as e:
        return base, f"{e.args[0]}; building with the eager tower instead"
    return precision, None
