"""Evaluation: metrics, reports and plots."""

from ferlab.evaluation.evaluate import EvaluationResult, evaluate
from ferlab.evaluation.metrics import classification_metrics, confusion_matrix, expected_calibration_error
from ferlab.evaluation.plots import plot_confusion, plot_training_curves

__all__ = ["EvaluationResult", "classification_metrics", "confusion_matrix", "evaluate",
           "expected_calibration_error", "plot_confusion", "plot_training_curves"]
