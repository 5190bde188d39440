"""Typed errors. The library raises these; only the CLI turns them into one-line messages."""

from __future__ import annotations


class LogoidError(Exception):
    """Base class. ``hint`` says what fixes it (a flag, a command); the CLI prints it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} ({self.hint})" if self.hint else msg


class ImageError(LogoidError):
    """An image file that cannot be used: missing, empty, corrupt, unsupported or too large."""

    #: What went wrong, for callers that map it (the HTTP API's status codes): ``unreadable`` (no such file, no
    #: permission, corrupt or truncated), ``not_image`` (another kind of file, an unsupported format), ``too_large``
    #: (over the pixel or byte limit).
    KINDS = ("unreadable", "not_image", "too_large")

    def __init__(self, path, reason: str, hint: str | None = None, *, kind: str = "unreadable"):
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{path}: {reason}", hint)


class CatalogError(LogoidError):
    """Catalog input or state problems (unknown band, bad CSV, ...)."""


class IndexMissingError(LogoidError):
    """No index built yet in this home."""


class IndexMismatchError(LogoidError):
    """The index was built by another model, preprocessing or schema version."""


class ModelError(LogoidError):
    """Unknown model name, unreadable checkpoint, missing weights package."""


class ConfigError(LogoidError):
    """Invalid configuration value."""
