"""The mosaic bench's ``--set KEY=VALUE``: local-channel settings changed for one run, in memory only."""

from __future__ import annotations


def parse_value(current, text: str):
    """``text`` as the type of the setting's ``current`` value (``false``/``0`` is False for a bool field)."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    return type(current)(text)


def apply_local_set(cfg, local_set: dict[str, str]):
    """``cfg`` (a ``LocalConfig``) with ``local_set``'s fields changed, each value parsed by its field's type.

    Refuses (SystemExit) a field that does not exist and one that would change the reference features: those are
    fixed by the built index."""
    if not local_set:
        return cfg
    cur = cfg.flat()
    unknown = sorted(k for k in local_set if k not in cur)
    if unknown:
        raise SystemExit(f"--set: {', '.join(unknown)} unknown or fixed by the built index (reference settings)")
    changes = {}
    for k, v in local_set.items():
        try:
            changes[k] = parse_value(cur[k], v)
        except (SystemExit, ValueError) as e:
            raise SystemExit(f"--set {k}: {e}") from None
    ref = cfg.extract.ref_hash()
    fixed = sorted(k for k, v in changes.items() if cfg.override(**{k: v}).extract.ref_hash() != ref)
    if fixed:
        raise SystemExit(f"--set: {', '.join(fixed)} unknown or fixed by the built index (reference settings)")
    return cfg.override(**changes)
