"""How a photo's candidates become one decision: the run-time rules that identification applies.

``FusionModel`` / ``DefaultRule`` score each candidate from its per-channel features; ``rule_score``
and ``Calibration`` turn a ranked list into accept or reject; ``QueryResult`` is the scored list that
calibration and evaluation read. These sit below ``albums`` and ``identify`` because both apply them;
``logoid.eval`` fits them on labelled photos.
"""

from .fusion import FEATURES, DefaultRule, FusionModel, make_scorer
from .results import QueryResult
from .rules import Calibration, calibrate, rule_score
from .stats import auroc, fpr_at_tpr

__all__ = ["FEATURES", "Calibration", "DefaultRule", "FusionModel", "QueryResult", "auroc", "calibrate",
           "fpr_at_tpr", "make_scorer", "rule_score"]
