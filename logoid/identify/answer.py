"""What identification answers: :class:`Candidate`, :class:`Answer`, and the one JSON form of an answer.

``answer_json`` builds the JSON that ``logoid query --json``, ``logoid batch`` and the coming HTTP API return;
``error_json`` is the same shape for a photo that could not be read. The schema is
``docs/answer.schema.json`` (described in ``docs/answer.md``); ``SCHEMA`` names its version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The answer schema's name and version (``"schema"`` in every answer); bump on an incompatible change.
SCHEMA = "logoid.answer/1"

#: ``status`` of an answer: an accepted band or album, a rejection, or a photo that could not be read.
STATUSES = ("ok", "unknown", "error")


@dataclass
class Candidate:
    entity_key: str  # "band:12" / "album:3"
    name: str
    score: float  # fused score; the rejection threshold applies to it
    features: dict  # per-channel features (see logoid.scoring.fusion.FEATURES)
    channels: list[str]  # the channels that support this candidate
    meta: dict = field(default_factory=dict)  # catalog metadata
    image_id: int | None = None  # the reference image that matched best
    polygon: list[list[float]] | None = None  # the reference's outline in the photo (local channel)
    text: str | None = None  # the read text that matched the name
    inliers: int = 0  # verified inliers of the best local match

    def to_dict(self) -> dict:
        return {
            "entity": self.entity_key, "name": self.name, "score": round(self.score, 4),
            "channels": self.channels, "inliers": self.inliers, "image_id": self.image_id, "polygon": self.polygon,
            "text": self.text, "features": {k: round(v, 4) for k, v in self.features.items()}, "meta": self.meta,
        }


@dataclass
class Answer:
    """The whole answer for one photo: the band or album (or unknown), every logo found, the album extras,
    what was read and how long each step took."""

    path: str
    accepted: bool
    best: Candidate | None  # the top candidate (also when rejected, for inspection)
    candidates: list[Candidate]
    threshold: float
    logos: list[Candidate] = field(default_factory=list)  # every verified logo (find_all mode)
    read: list[dict] = field(default_factory=list)  # OCR lines
    timings: dict = field(default_factory=dict)  # seconds per step: decode, global, local, text, text_verify (names read, verified), albums, total
    rejection_score: float = 0.0  # what the threshold was compared with (per the calibrated rule)
    rule: str = "max_score"
    # album extras (logoid.albums.AlbumStep): the artist model's guess when no album was accepted, and the genre
    artist_guess: dict | None = None
    genre: dict | None = None
    notes: list[str] = field(default_factory=list)  # why a model was not used (e.g. OCR unavailable)
    size: tuple[int, int] | None = None  # the photo's own (width, height), upright: the space of every polygon

    @property
    def status(self) -> str:
        return "ok" if self.accepted else "unknown"

    @property
    def label(self) -> str | None:
        return self.best.entity_key if (self.accepted and self.best) else None

    @property
    def artist(self) -> str | None:
        """The accepted album's artist (None for bands and rejections)."""
        ok = self.accepted and self.best is not None and self.best.entity_key.startswith("album:")
        return self.best.meta.get("artist") if ok and self.best is not None else None

    def to_dict(self, k: int = 5) -> dict:
        return answer_json(self, k)


def answer_json(answer: Answer, k: int = 5, *, explain: bool = False) -> dict:
    """The JSON of one answer (``docs/answer.schema.json``), with the ``k`` best candidates; ``explain`` adds
    ``"explain"``: the lines of :func:`explain_lines` (what ``logoid query --explain`` prints)."""
    best = answer.best
    out = {
        "schema": SCHEMA, "path": answer.path, "status": answer.status, "error": None,
        "accepted": answer.accepted, "answer": best.name if (answer.accepted and best) else "unknown",
        "entity": answer.label, "score": round(best.score, 4) if best else 0.0,
        "threshold": answer.threshold, "rule": answer.rule,
        "rejection_score": round(answer.rejection_score, 4) if best else None,
        "artist": answer.artist, "artist_guess": answer.artist_guess, "genre": answer.genre,
        "candidates": [c.to_dict() for c in answer.candidates[:k]],
        "logos": [c.to_dict() for c in answer.logos], "read": answer.read,
        "timings": {name: round(v, 4) for name, v in answer.timings.items()}, "notes": list(answer.notes),
        "width": answer.size[0] if answer.size else None, "height": answer.size[1] if answer.size else None,
    }
    if explain:
        out["explain"] = explain_lines(answer)
    return out


def explain_lines(answer: Answer, n: int = 5) -> list[str]:
    """What each channel said about the ``n`` best candidates, what was read, and each step's time."""
    out = ["channels:"]
    for c in answer.candidates[:n]:
        f = c.features
        out.append(f"  {c.name}: global cos {f['cos']:.3f} (rank {int(f['rank_global'])}, margin {f['cos_margin']:+.3f});"
                   f" local log-inliers {f['log_inliers']:.2f} (ratio {f['inlier_ratio']:.2f});"
                   f" text {f['text_sim']:.2f}" + (f" '{c.text}'" if c.text else ""))
        if c.polygon:
            out.append(f"    outline in photo: {c.polygon}")
    out.append("read: " + (", ".join(f"'{r['text']}' ({r['conf']:.2f})" for r in answer.read) or "nothing"))
    out.append("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in answer.timings.items()))
    return out


def error_json(path: str, reason: str) -> dict:
    """The JSON of a photo that could not be answered (unreadable, not an image...): same keys, ``status`` error."""
    return {
        "schema": SCHEMA, "path": str(path), "status": "error", "error": reason,
        "accepted": False, "answer": "unknown", "entity": None, "score": 0.0, "threshold": None, "rule": None,
        "rejection_score": None, "artist": None, "artist_guess": None, "genre": None,
        "candidates": [], "logos": [], "read": [], "timings": {}, "notes": [], "width": None, "height": None,
    }


def batch_summary(results: list[dict]) -> dict:
    """What ``logoid batch --json`` and ``POST /v1/identify/batch`` say of a batch's answers (and errors)."""
    counts = {st: sum(1 for r in results if r["status"] == st) for st in STATUSES}
    return {
        "photos": len(results), "identified": counts["ok"], "unknown": counts["unknown"], "skipped": counts["error"],
        "skipped_files": [{"path": r["path"], "reason": r["error"]} for r in results if r["status"] == "error"],
    }
