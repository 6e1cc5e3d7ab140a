"""Model evaluation: metrics with confidence intervals, ROC/DeLong, calibration, decision curves, validation.

Modules
-------
metrics      sensitivity, specificity, PPV, NPV, accuracy, F1 with intervals; McNemar's test.
roc          AUC with DeLong or BCa bootstrap intervals, DeLong's test, ROC bands, thresholds.
calibration  reliability curves, Brier score, ECE, decision-curve net benefit.
validation   nested cross-validation and leave-one-site-out with out-of-fold predictions.
comparison   several models on the same cases: metrics, DeLong vs a reference, curves.

Inputs are numpy arrays (labels 0/1, 1 = positive); bad input raises
:class:`core.errors.InputError` with a fix.
"""

from core.evaluation.calibration import (brier_decomposition, brier_score, expected_calibration_error,
                                         net_benefit, reliability_curve)
from core.evaluation.comparison import compare_models, model_curves
from core.evaluation.metrics import Estimate, binary_metrics, mcnemar_test, wilson_interval
from core.evaluation.roc import choose_threshold, delong_covariance, delong_test, roc_auc_ci, roc_curve_with_band
from core.evaluation.validation import leave_one_site_out, nested_cross_validation

__all__ = [
    "Estimate",
    "wilson_interval",
    "binary_metrics",
    "mcnemar_test",
    "delong_covariance",
    "roc_auc_ci",
    "delong_test",
    "roc_curve_with_band",
    "choose_threshold",
    "reliability_curve",
    "brier_score",
    "brier_decomposition",
    "expected_calibration_error",
    "net_benefit",
    "nested_cross_validation",
    "leave_one_site_out",
    "compare_models",
    "model_curves",
]
