"""Shared config plumbing: ``from_dict`` that names unknown settings instead of failing with a TypeError."""

from __future__ import annotations

from dataclasses import fields

from logoid.core.errors import ConfigError


def checked_kwargs(cls, d: dict, what: str) -> dict:
    """``d`` as keyword arguments for dataclass ``cls``; unknown keys raise ConfigError listing the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown {what} settings {sorted(unknown)}", f"known: {', '.join(sorted(known))}")
    return dict(d)
