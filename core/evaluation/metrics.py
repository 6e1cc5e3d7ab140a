r"""Binary classification metrics with confidence intervals, and McNemar's paired test.

A binary classifier (e.g. radionecrosis = 0 vs true progression = 1) is summarised by its
2x2 table of true/false positives/negatives (TP, FP, TN, FN). Each proportion

.. math::

    \text{sensitivity} = \frac{TP}{TP + FN},\quad
    \text{specificity} = \frac{TN}{TN + FP},\quad
    \text{PPV} = \frac{TP}{TP + FP},\quad
    \text{NPV} = \frac{TN}{TN + FN},\quad
    \text{accuracy} = \frac{TP + TN}{n}

gets a Wilson score interval (Wilson 1927), which Newcombe (1998) found to keep close to
nominal coverage for small :math:`n` and proportions near 0 or 1, where the Wald interval
fails. The F1 score, :math:`F_1 = 2TP / (2TP + FP + FN)`, is not a binomial proportion;
its interval is a percentile bootstrap over cases (Efron & Tibshirani 1993), drawn as
multinomial resamples of the four cells of the 2x2 table, which is the same as resampling
cases with replacement (this work).

Two classifiers read on the same cases are compared with McNemar's test (McNemar 1947)
on the discordant pairs: exact binomial when there are fewer than 25 discordant pairs,
otherwise the chi-square statistic with continuity correction (Edwards 1948). The cut-off
of 25 is a common rule of thumb (this work's choice).

The ``check_*`` helpers at the top validate labels, scores and probabilities for the
whole :mod:`core.evaluation` package and raise :class:`core.errors.InputError` with a fix.

References
----------
Wilson EB. Probable inference, the law of succession, and statistical inference.
J Am Stat Assoc 1927;22:209-212.
Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of
seven methods. Stat Med 1998;17:857-872.
McNemar Q. Note on the sampling error of the difference between correlated proportions
or percentages. Psychometrika 1947;12:153-157.
Edwards AL. Note on the "correction for continuity" in testing the significance of the
difference between correlated proportions. Psychometrika 1948;13:185-187.
Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall 1993.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from core.errors import InputError

__all__ = [
    "check_labels",
    "check_scores",
    "check_probabilities",
    "check_binary_predictions",
    "check_alpha",
    "Estimate",
    "wilson_interval",
    "binary_metrics",
    "mcnemar_test",
]


# ----------------------------------------------------------------------------- input checks

def check_labels(y, *, name: str = "y_true", require_both: bool = True) -> np.ndarray:
    """Return binary labels as an int array of 0/1, or raise InputError.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels: bool, or numbers that are all 0 or 1 (1 = positive, e.g. true progression).
    name : str, default="y_true"
        Name used in the error message.
    require_both : bool, default=True
        Whether both classes must be present (needed for sensitivity, AUC ...).

    Returns
    -------
    ndarray of shape (n_samples,), dtype int8

    Examples
    --------
    >>> check_labels([0, 1, 1]).tolist()
    [0, 1, 1]
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"{name} has shape {arr.shape}, not one label per case",
                         fix=f"Pass {name} as a 1-D array of 0/1 labels.")
    if arr.size == 0:
        raise InputError(f"{name} is empty", fix="Pass at least one case of each class.")
    if arr.dtype == bool:
        out = arr.astype(np.int8)
    else:
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{name} holds non-numeric labels (e.g. {arr[0]!r})",
                             fix="Encode the labels as 0 (negative) and 1 (positive).")
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            values = np.unique(arr[bad])[:5].tolist()
            raise InputError(f"{name} is not binary: it holds {values}",
                             fix="Encode the labels as 0 (negative) and 1 (positive).")
        out = arr.astype(np.int8)
    if require_both and np.unique(out).size < 2:
        raise InputError(f"{name} holds one class only ({int(out[0])} for all {out.size} cases)",
                         fix="Evaluate on a set that contains both positive and negative cases.")
    return out


def check_scores(score, n: int, *, name: str = "score") -> np.ndarray:
    """Return finite scores as a float array of length ``n``, or raise InputError.

    Parameters
    ----------
    score : array-like of shape (n_samples,)
        Classifier scores; higher means more likely positive.
    n : int
        Expected number of cases (length of the labels).
    name : str, default="score"
        Name used in the error message.

    Returns
    -------
    ndarray of shape (n_samples,), dtype float64

    Examples
    --------
    >>> check_scores([0.2, 3.0], 2).tolist()
    [0.2, 3.0]
    """
    arr = np.asarray(score)
    if arr.ndim != 1:
        raise InputError(f"{name} has shape {arr.shape}, not one value per case",
                         fix=f"Pass {name} as a 1-D array.")
    if arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} values but there are {n} labels",
                         fix="Pass one value per case, in the same order as the labels.")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise InputError(f"{name} is not numeric (dtype {arr.dtype})", fix=f"Pass {name} as numbers.")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise InputError(f"{name} holds {idx.size} NaN or infinite values (first at case {idx[0]}: {arr[idx[0]]})",
                         fix="Remove these cases or fill in their scores before evaluating.")
    return arr


def check_probabilities(prob, n: int, *, name: str = "prob") -> np.ndarray:
    """Return predicted probabilities in [0, 1] as a float array, or raise InputError.

    Parameters
    ----------
    prob : array-like of shape (n_samples,)
        Predicted probability of the positive class.
    n : int
        Expected number of cases.
    name : str, default="prob"
        Name used in the error message.

    Returns
    -------
    ndarray of shape (n_samples,), dtype float64

    Examples
    --------
    >>> check_probabilities([0.1, 0.9], 2).tolist()
    [0.1, 0.9]
    """
    arr = check_scores(prob, n, name=name)
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise InputError(f"{name} holds {idx.size} values outside [0, 1] (first at case {idx[0]}: {arr[idx[0]]})",
                         fix="Pass probabilities (e.g. predict_proba[:, 1]), not raw scores or logits.")
    return arr


def check_binary_predictions(pred, n: int, *, name: str = "y_pred") -> np.ndarray:
    """Return 0/1 predictions of length ``n`` (both classes need not occur)."""
    out = check_labels(pred, name=name, require_both=False)
    if out.shape[0] != n:
        raise InputError(f"{name} has {out.shape[0]} values but there are {n} labels",
                         fix="Pass one prediction per case, in the same order as the labels.")
    return out


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` if 0 < alpha < 1, else raise InputError."""
    if not (np.isscalar(alpha) and 0.0 < float(alpha) < 1.0):
        raise InputError(f"alpha must be in (0, 1), got {alpha!r}", fix="Use e.g. alpha=0.05 for 95 % intervals.")
    return float(alpha)


# ----------------------------------------------------------------------------- estimates

@dataclass(frozen=True)
class Estimate:
    """A point estimate with its two-sided confidence interval.

    Attributes
    ----------
    value, ci_low, ci_high : float
        Estimate and interval bounds (NaN when undefined, e.g. PPV with no positive calls).
    numerator, denominator : int or None
        Counts behind a proportion (None for F1).
    method : str
        How the interval was computed ("wilson" or "bootstrap-percentile").
    """

    value: float
    ci_low: float
    ci_high: float
    numerator: int | None
    denominator: int | None
    method: str


def wilson_interval(k, n, alpha: float = 0.05) -> tuple[float, float]:
    r"""Wilson score interval for a binomial proportion :math:`k/n`.

    .. math::

        \frac{\hat p + \frac{z^2}{2n}}{1 + \frac{z^2}{n}} \pm
        \frac{z}{1 + \frac{z^2}{n}} \sqrt{\frac{\hat p (1 - \hat p)}{n} + \frac{z^2}{4 n^2}},
        \qquad \hat p = k/n,\ z = \Phi^{-1}(1 - \alpha/2).

    Parameters
    ----------
    k : int
        Number of successes, 0 <= k <= n.
    n : int
        Number of trials; ``n = 0`` gives (NaN, NaN).
    alpha : float, default=0.05
        Two-sided level: the interval has coverage 1 - alpha.

    Returns
    -------
    (low, high) : tuple of float

    References
    ----------
    Wilson EB. J Am Stat Assoc 1927;22:209-212. Newcombe RG. Stat Med 1998;17:857-872.

    Examples
    --------
    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    alpha = check_alpha(alpha)
    if int(n) != n or int(k) != k or n < 0 or not 0 <= k <= n:
        raise InputError(f"wilson_interval needs integers 0 <= k <= n, got k={k!r}, n={n!r}",
                         fix="Pass counts of successes k and trials n.")
    k, n = int(k), int(n)
    if n == 0:
        return (float("nan"), float("nan"))
    z = stats.norm.ppf(1.0 - alpha / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def _proportion(k: int, n: int, alpha: float) -> Estimate:
    low, high = wilson_interval(k, n, alpha)
    return Estimate(k / n if n else float("nan"), low, high, k, n, "wilson")


def _f1_from_counts(tp, fp, fn):
    tp, fp, fn = (np.asarray(v, dtype=float) for v in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def _f1_bootstrap(tp: int, fp: int, tn: int, fn: int, alpha: float, n_boot: int, seed: int) -> Estimate:
    n = tp + fp + tn + fn
    value = float(_f1_from_counts(tp, fp, fn))
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, np.array([tp, fp, tn, fn]) / n, size=n_boot)
    f1 = _f1_from_counts(cells[:, 0], cells[:, 1], cells[:, 3])
    f1 = f1[np.isfinite(f1)]
    if f1.size == 0 or not np.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), None, None, "bootstrap-percentile")
    low, high = np.quantile(f1, [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(low), float(high), None, None, "bootstrap-percentile")


def binary_metrics(y_true, y_pred, *, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> dict:
    r"""Sensitivity, specificity, PPV, NPV, accuracy and F1 with confidence intervals.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1 (1 = positive); both classes must be present.
    y_pred : array-like of shape (n_samples,)
        Predicted labels, 0/1 (threshold scores first, e.g. with
        :func:`core.evaluation.roc.choose_threshold`).
    alpha : float, default=0.05
        Intervals have coverage 1 - alpha.
    n_boot : int, default=2000
        Bootstrap resamples for the F1 interval.
    seed : int, default=0
        Seed of the F1 bootstrap.

    Returns
    -------
    dict
        ``tp, fp, tn, fn, n`` (int) and ``sensitivity, specificity, ppv, npv, accuracy`` (Wilson
        :class:`Estimate`) and ``f1`` (percentile-bootstrap :class:`Estimate`). A proportion with
        an empty denominator (e.g. PPV when nothing is called positive) is NaN.

    Notes
    -----
    :math:`F_1 = 2TP/(2TP + FP + FN)`; its interval is the percentile interval of F1 over
    ``n_boot`` multinomial resamples of the 2x2 table (resampling cases with replacement;
    resamples where F1 is undefined are dropped) (this work).

    References
    ----------
    Wilson EB. J Am Stat Assoc 1927;22:209-212. Newcombe RG. Stat Med 1998;17:857-872.

    Examples
    --------
    >>> m = binary_metrics([1, 1, 1, 0, 0], [1, 1, 0, 0, 1])
    >>> m["tp"], m["fn"], round(m["sensitivity"].value, 3)
    (2, 1, 0.667)
    """
    alpha = check_alpha(alpha)
    y = check_labels(y_true)
    p = check_binary_predictions(y_pred, y.shape[0])
    tp = int(np.sum((y == 1) & (p == 1)))
    fp = int(np.sum((y == 0) & (p == 1)))
    tn = int(np.sum((y == 0) & (p == 0)))
    fn = int(np.sum((y == 1) & (p == 0)))
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": int(y.shape[0]),
        "sensitivity": _proportion(tp, tp + fn, alpha),
        "specificity": _proportion(tn, tn + fp, alpha),
        "ppv": _proportion(tp, tp + fp, alpha),
        "npv": _proportion(tn, tn + fn, alpha),
        "accuracy": _proportion(tp + tn, y.shape[0], alpha),
        "f1": _f1_bootstrap(tp, fp, tn, fn, alpha, n_boot, seed),
    }


# ----------------------------------------------------------------------------- McNemar

_COMPARE = {"sensitivity": 1, "specificity": 0, "accuracy": None}
EXACT_BELOW = 25  # discordant pairs; exact binomial test below this (this work)


def mcnemar_test(y_true, pred_a, pred_b, *, compare: str = "accuracy", exact: bool | None = None) -> dict:
    r"""McNemar's test of two classifiers read on the same cases.

    Cases are restricted by ``compare``: the positives (paired sensitivity), the negatives
    (paired specificity) or all cases (paired accuracy). Among them, :math:`b` cases are
    classified correctly by A only and :math:`c` by B only. Under the null hypothesis
    :math:`b \sim \mathrm{Bin}(b + c, 1/2)`:

    * exact: two-sided binomial test of :math:`b` out of :math:`b + c` with p = 1/2;
    * asymptotic: :math:`\chi^2 = (|b - c| - 1)^2 / (b + c)` on 1 degree of freedom
      (continuity correction of Edwards 1948).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1.
    pred_a, pred_b : array-like of shape (n_samples,)
        Predicted labels of classifiers A and B, 0/1.
    compare : {"accuracy", "sensitivity", "specificity"}, default="accuracy"
        Which paired proportion to test.
    exact : bool or None, default=None
        None: exact when :math:`b + c < 25` (this work's rule), chi-square otherwise.

    Returns
    -------
    dict
        ``statistic`` (chi-square value, or ``b`` for the exact test), ``p``, ``b``, ``c``,
        ``n_discordant``, ``n`` (cases compared), ``proportion_a``, ``proportion_b``
        (the compared proportion for A and B) and ``method`` ("exact" or "chi2-cc").
        With no discordant pairs, p = 1.

    References
    ----------
    McNemar Q. Psychometrika 1947;12:153-157. Edwards AL. Psychometrika 1948;13:185-187.

    Examples
    --------
    >>> r = mcnemar_test([1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0], compare="sensitivity")
    >>> r["b"], r["c"], round(r["p"], 3)
    (3, 0, 0.25)
    """
    if compare not in _COMPARE:
        raise InputError(f"compare must be one of {sorted(_COMPARE)}, got {compare!r}",
                         fix='Use compare="sensitivity", "specificity" or "accuracy".')
    y = check_labels(y_true, require_both=compare == "accuracy")
    a = check_binary_predictions(pred_a, y.shape[0], name="pred_a")
    b_pred = check_binary_predictions(pred_b, y.shape[0], name="pred_b")
    keep = np.ones(y.shape[0], bool) if _COMPARE[compare] is None else (y == _COMPARE[compare])
    if not keep.any():
        raise InputError(f"there are no {'positive' if _COMPARE[compare] else 'negative'} cases to compare {compare}",
                         fix="Evaluate on a set that contains both positive and negative cases.")
    ok_a = (a == y)[keep]
    ok_b = (b_pred == y)[keep]
    b = int(np.sum(ok_a & ~ok_b))
    c = int(np.sum(~ok_a & ok_b))
    nd = b + c
    use_exact = (nd < EXACT_BELOW) if exact is None else bool(exact)
    if nd == 0:
        statistic, p = 0.0, 1.0
    elif use_exact:
        statistic, p = float(b), float(stats.binomtest(b, nd, 0.5).pvalue)
    else:
        statistic = (abs(b - c) - 1.0) ** 2 / nd if abs(b - c) >= 1 else 0.0
        p = float(stats.chi2.sf(statistic, 1))
    if not use_exact and nd < EXACT_BELOW:
        warnings.warn(f"chi-square McNemar test with only {nd} discordant pairs; the exact test is preferable",
                      stacklevel=2)
    return {
        "statistic": float(statistic), "p": min(1.0, p), "b": b, "c": c, "n_discordant": nd,
        "n": int(keep.sum()), "proportion_a": float(ok_a.mean()), "proportion_b": float(ok_b.mean()),
        "method": "exact" if use_exact else "chi2-cc",
    }
