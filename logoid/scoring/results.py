"""The scored candidate list of one photo: what calibration, fusion fitting and evaluation read."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class QueryResult:
    """One query photo's ranked answer, as the identify step hands it to evaluation."""

    # the photo (kept as a string so results serialise as plain JSON)
    path: str
    # truth entity key such as "band:12"; None when the photo shows nothing in the catalog
    label: str | None
    # candidate entity keys, best first
    ranked: list[str]
    # fused / rejection score of each ranked entity (same length as ranked)
    scores: list[float]
    # per ranked candidate, the raw per-channel features ({"cos": .83, "log_inliers": 3.5, ...})
    features: list[dict[str, float]] | None = None
    # the identify step's own accept decision, when it made one
    accepted: bool | None = None

    @property
    def top1(self) -> str | None:
        """The best candidate's key, or None when there were no candidates."""
        return self.ranked[0] if self.ranked else None

    @property
    def top1_score(self) -> float:
        """The best candidate's score; -inf when there were no candidates (always rejected)."""
        return float(self.scores[0]) if self.scores else -math.inf

    @property
    def is_known(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> QueryResult:
        return cls(
            path=str(d["path"]),
            label=d.get("label"),
            ranked=list(d.get("ranked", [])),
            scores=[float(s) for s in d.get("scores", [])],
            features=d.get("features"),
            accepted=d.get("accepted"),
        )
