"""One place that answers a photo: shortlist from every channel, verify, fuse, reject, add the album extras."""

from .answer import SCHEMA, Answer, Candidate, answer_json, error_json
from .pipeline import CHANNELS, Evidence, Identifier, IdentifyConfig

__all__ = ["CHANNELS", "SCHEMA", "Answer", "Candidate", "Evidence", "IdentifyConfig", "Identifier", "answer_json",
           "error_json"]
