"""Evaluation: open-set metrics, calibration of rejection and fusion, reports. Pure numpy / sklearn."""

from .calibrate import Calibration, calibrate, leave_one_out_impostors, leave_one_out_scores, rule_score
from .fusion import FusionModel, fit_fusion
from .manifest import LabelledQuery, load_queries
from .metrics import QueryResult, auroc, evaluate, fpr_at_tpr
from .report import write_report

__all__ = [
    "Calibration",
    "FusionModel",
    "LabelledQuery",
    "QueryResult",
    "auroc",
    "calibrate",
    "evaluate",
    "fit_fusion",
    "fpr_at_tpr",
    "leave_one_out_impostors",
    "leave_one_out_scores",
    "load_queries",
    "rule_score",
    "write_report",
]
