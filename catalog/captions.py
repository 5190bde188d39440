"""Caption templates: turn an entity's metadata into sentences for the text side of the dual encoder.

Template syntax: ``{field}`` is replaced by the metadata value; ``[ ... ]`` is an optional phrase,
kept only when every field directly inside it is known (and, for a phrase with no field of its
own, when at least one of its inner phrases is kept). So
``"logo for {name}[, who are a[ {genre}] band[ from {country}]]."`` gives "logo for Mayhem, who are
a band from Norway." without a genre and "logo for Mayhem." with neither. A literal word "a" / "A"
becomes "an" / "An" before a vowel ("an industrial band", "an album").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from logoid.core.errors import ConfigError

DEFAULT_BAND_TEMPLATES = ["This is an image of the logo for {name}[, who are a[ {genre}] band[ from {country}]]."]
DEFAULT_ALBUM_TEMPLATES = ["The cover of {title}[, a[ {year}][ {genre}] album[ by {artist}]]."]

_TOKEN = re.compile(r"\[|\]|\{(\w+)\}|[^\[\]{]+|\{")
_ARTICLE = re.compile(r"\b([Aa])\b")
_A, _CAP_A = "\x00", "\x01"  # stand-ins for template articles, resolved once the next word is known
_MISSING = {"", "none", "n/a", "na", "unknown", "null", "?", "-"}


def _parse(template: str) -> list:
    """Nested list: strings are literal text, ``("field", name)`` tuples are fields, lists are phrases."""
    stack: list[list] = [[]]
    for m in _TOKEN.finditer(template):
        tok = m.group(0)
        if tok == "[":
            stack.append([])
        elif tok == "]":
            if len(stack) == 1:
                raise ConfigError(f"unbalanced ']' in caption template {template!r}", "match every '[' with ']'")
            inner = stack.pop()
            stack[-1].append(inner)
        elif m.group(1):
            stack[-1].append(("field", m.group(1)))
        else:
            # Literal text: mark standalone articles so "a" can become "an" before a vowel.
            stack[-1].append(_ARTICLE.sub(lambda a: _A if a.group(1) == "a" else _CAP_A, tok))
    if len(stack) != 1:
        raise ConfigError(f"unbalanced '[' in caption template {template!r}", "match every '[' with ']'")
    return stack[0]


def _fields(node: list) -> set[str]:
    out: set[str] = set()
    for part in node:
        if isinstance(part, tuple):
            out.add(part[1])
        elif isinstance(part, list):
            out |= _fields(part)
    return out


def _value(meta: dict, name: str) -> str | None:
    v = meta.get(name)
    if v is None or isinstance(v, (dict, list)):
        return None
    text = re.sub(r"\s+", " ", str(v)).strip()
    return None if text.casefold() in _MISSING else text


def _render(node: list, meta: dict) -> str | None:
    """The phrase's text, or None when it must be dropped."""
    out, own_fields, kept_inner, has_inner = [], False, False, False
    for part in node:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, tuple):
            own_fields = True
            v = _value(meta, part[1])
            if v is None:
                return None
            out.append(v)
        else:
            has_inner = True
            text = _render(part, meta)
            if text is not None:
                kept_inner = True
                out.append(text)
    if has_inner and not own_fields and not kept_inner:
        return None
    return "".join(out)


def _finish(text: str) -> str:
    text = re.sub(f"[{_A}{_CAP_A}](?=\\s+[AEIOUaeiou])", lambda m: "an" if m.group(0) == _A else "An", text)
    text = text.replace(_A, "a").replace(_CAP_A, "A")
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return text.strip()


@dataclass
class CaptionTemplates:
    """Sentence templates per entity kind; several per kind give several captions (all are used in training)."""

    # Templates for band logos; fields: the keys of Catalog.entity_meta('band', id) (name, genre, country, ...).
    band: list[str] = field(default_factory=lambda: list(DEFAULT_BAND_TEMPLATES))
    # Templates for album covers; fields: title, artist, year, genre, country (the artist's), ...
    album: list[str] = field(default_factory=lambda: list(DEFAULT_ALBUM_TEMPLATES))

    def __post_init__(self) -> None:
        for kind in ("band", "album"):
            templates = getattr(self, kind)
            if isinstance(templates, str):
                templates = [templates]
                setattr(self, kind, templates)
            if not templates:
                raise ConfigError(f"no {kind} caption template", "give at least one template")
            for t in templates:
                _parse(t)  # fail now, not at the first caption

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CaptionTemplates:
        return cls(band=list(d.get("band", DEFAULT_BAND_TEMPLATES)), album=list(d.get("album", DEFAULT_ALBUM_TEMPLATES)))

    def _kind(self, meta: dict, kind: str | None) -> str:
        kind = kind or meta.get("type") or "band"
        if kind not in ("band", "album"):
            raise ConfigError(f"unknown caption kind {kind!r}", "use 'band' or 'album'")
        return kind

    def captions(self, entity_meta: dict, kind: str | None = None) -> list[str]:
        """One caption per template of ``kind`` (default: ``entity_meta['type']``)."""
        out = []
        for template in getattr(self, self._kind(entity_meta, kind)):
            text = _render(_parse(template), entity_meta)
            if text is not None:
                out.append(_finish(text))
        return out

    def caption(self, entity_meta: dict, kind: str | None = None) -> str:
        """The first template's caption."""
        return self.captions(entity_meta, kind)[0] if self.captions(entity_meta, kind) else ""


def captions(entity_meta: dict, kind: str | None = None, templates: CaptionTemplates | None = None) -> list[str]:
    """Every caption of an entity with ``templates`` (default templates if None)."""
    return (templates or CaptionTemplates()).captions(entity_meta, kind)


def caption(entity_meta: dict, kind: str | None = None, templates: CaptionTemplates | None = None) -> str:
    """The main caption of an entity, e.g. "This is an image of the logo for Mayhem, who are a black metal band ..."."""
    return (templates or CaptionTemplates()).caption(entity_meta, kind)


def template_fields(template: str) -> set[str]:
    """The field names a template uses (for validation in configs and CLIs)."""
    return _fields(_parse(template))
