"""Evaluation: fits (fusion, rejection rule) on labelled photos, open-set metrics, reports.

The decision rules themselves (``FusionModel``, ``Calibration``, ``rule_score``) are run-time parts of
identification and live in :mod:`logoid.scoring`, beside the threshold search that fits a ``Calibration``
(the album models fit theirs at ``artist fit``, below this layer). This package collects labelled photos'
evidence, fits the fusion by grouped cross-validation, calls that threshold search, and measures and reports.
"""

from .fusion import fit_fusion
from .manifest import LabelledQuery, load_queries
from .metrics import evaluate
from .report import write_report

__all__ = ["LabelledQuery", "evaluate", "fit_fusion", "load_queries", "write_report"]
