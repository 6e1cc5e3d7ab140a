"""Several models' scores on the same labelled cases: metrics, tests and curves in one place.

:func:`compare_models` gives, per model, the AUC with its DeLong interval, the 2x2
metrics at a given operating threshold with Wilson intervals, DeLong's test against a
reference model, Brier score and expected calibration error. :func:`model_curves` gives
what the figures need: the ROC curve with a pointwise bootstrap band, the reliability
curve and the decision curve. Both serve the shipped baseline's held-out tests and the
evaluations a user runs on the case store.

References
----------
.. [1] DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 1988;44:837-845.
.. [2] Vickers AJ, Elkin EB. Decision curve analysis. Med Decis Making 2006;26:565-574.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.errors import InputError
from core.evaluation.calibration import brier_score, expected_calibration_error, net_benefit, reliability_curve
from core.evaluation.metrics import binary_metrics, check_labels, check_probabilities
from core.evaluation.roc import delong_test, roc_auc_ci, roc_curve_with_band

__all__ = ["compare_models", "model_curves", "DECISION_THRESHOLDS"]

#: Threshold probabilities of the decision curves, 0.05 to 0.95 (this work).
DECISION_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def _check_scores(y, scores: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y = check_labels(np.asarray(y), name="y_true")
    if not scores:
        raise InputError("no model scores given", fix="Pass {model name: scores}.")
    return y, {str(name): check_probabilities(s, y.size, name=f"scores of {str(name)!r}")
               for name, s in scores.items()}


def compare_models(y_true, scores: Mapping[str, np.ndarray], thresholds: Mapping[str, float], reference: str, *,
                   alpha: float = 0.05, seed: int = 0) -> dict:
    """Metrics of several models on the same cases, each against a reference model.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels 0/1, both classes present.
    scores : dict of str to array-like of shape (n,)
        Predicted probability of the positive class per model, in [0, 1] (Brier score and
        ECE need probabilities).
    thresholds : dict of str to float
        Operating threshold per model; a case is called positive iff ``score >= threshold``.
        Choose it on other data than these cases.
    reference : str
        Model the others are compared with by DeLong's test (e.g. the model selected on
        the training data).
    alpha : float, default=0.05
        Interval coverage 1 - alpha.
    seed : int, default=0
        Seed of the F1 bootstrap.

    Returns
    -------
    dict
        Per model: ``auc`` (:func:`~core.evaluation.roc_auc_ci`), ``metrics``
        (:func:`~core.evaluation.binary_metrics` at the threshold), ``threshold``,
        ``delong_vs_best`` (:func:`~core.evaluation.delong_test` of the model against the
        reference; None for the reference itself), ``brier``, ``ece``.

    Examples
    --------
    >>> r = compare_models([0, 0, 1, 1], {"a": [0.1, 0.4, 0.35, 0.8], "b": [0.2, 0.3, 0.6, 0.9]},
    ...                    {"a": 0.5, "b": 0.5}, reference="b")
    >>> r["a"]["auc"]["auc"], r["b"]["delong_vs_best"] is None
    (0.75, True)
    """
    y, scores = _check_scores(y_true, scores)
    if reference not in scores:
        raise InputError(f"reference model {reference!r} has no scores", fix=f"Choose one of {list(scores)}.")
    missing = sorted(set(scores) - set(thresholds))
    if missing:
        raise InputError(f"no threshold for {missing}", fix="Pass one threshold per model.")
    bad = {m: thresholds[m] for m in scores if not np.isfinite(float(thresholds[m]))}
    if bad:
        raise InputError(f"thresholds {bad} are not finite", fix="Pass a finite operating threshold per model.")
    out = {}
    for name, s in scores.items():
        pred = (s >= float(thresholds[name])).astype(np.int8)
        out[name] = {
            "auc": roc_auc_ci(y, s, alpha=alpha),
            "metrics": binary_metrics(y, pred, alpha=alpha, seed=seed),
            "threshold": float(thresholds[name]),
            "delong_vs_best": None if name == reference else delong_test(y, s, scores[reference], alpha=alpha),
            "brier": brier_score(y, s),
            "ece": expected_calibration_error(y, s),
        }
    return out


def model_curves(y_true, scores: Mapping[str, np.ndarray], *, thresholds: Mapping[str, float] | None = None,
                 n_boot: int = 1000, n_bins: int = 10, alpha: float = 0.05, seed: int = 0) -> dict:
    """ROC band, reliability curve and decision curve of each model's probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels 0/1, both classes present.
    scores : dict of str to array-like of shape (n,)
        Predicted probabilities in [0, 1] per model.
    thresholds : dict of str to float, optional
        Operating threshold per model; gives the ROC operating points.
    n_boot : int, default=1000
        Bootstrap resamples of the ROC band.
    n_bins : int, default=10
        Quantile bins of the reliability curve (fewer when there are few cases: at most
        ``n // 10``, at least 2; this work).
    alpha : float, default=0.05
    seed : int, default=0

    Returns
    -------
    dict
        ``roc``: {model: :func:`~core.evaluation.roc_curve_with_band` + ``auc_ci``},
        ``calibration``: {model: :func:`~core.evaluation.reliability_curve` + ``brier``, ``ece``},
        ``decision``: {model: :func:`~core.evaluation.net_benefit` at :data:`DECISION_THRESHOLDS`},
        ``points``: {model: (1 - specificity, sensitivity) at its threshold} (empty without
        ``thresholds``).
    """
    y, scores = _check_scores(y_true, scores)
    points = {}
    for name, t in (thresholds or {}).items():
        if name in scores:
            call = scores[name] >= float(t)
            points[name] = (float(call[y == 0].mean()), float(call[y == 1].mean()))
    bins = int(max(2, min(n_bins, y.size // 10)))
    out = {"roc": {}, "calibration": {}, "decision": {}, "points": points}
    for name, s in scores.items():
        auc = roc_auc_ci(y, s, alpha=alpha)
        out["roc"][name] = roc_curve_with_band(y, s, n_boot=n_boot, alpha=alpha, seed=seed) | {
            "auc_ci": (auc["ci_low"], auc["ci_high"])}
        out["calibration"][name] = reliability_curve(y, s, n_bins=bins, alpha=alpha) | {
            "brier": brier_score(y, s), "ece": expected_calibration_error(y, s, n_bins=bins)}
        out["decision"][name] = net_benefit(y, s, DECISION_THRESHOLDS)
    return out
