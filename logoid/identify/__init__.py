"""One place that answers a photo: shortlist from every channel, verify, fuse, reject."""

from .pipeline import CHANNELS, Answer, Candidate, Evidence, Identifier, IdentifyConfig

__all__ = ["CHANNELS", "Answer", "Candidate", "Evidence", "IdentifyConfig", "Identifier"]
