r"""Calibration of predicted probabilities and decision-curve analysis.

* Reliability curve: cases are grouped into bins of predicted probability, and the mean
  prediction :math:`\bar p_b` of each bin is plotted against its observed event fraction
  :math:`\bar o_b` (with a Wilson interval). Bins are equal-width on [0, 1]
  (``strategy="uniform"``) or hold equal numbers of cases (``strategy="quantile"``).
* Brier score (Brier 1950), :math:`BS = \frac1n\sum_i (p_i - y_i)^2`, and Murphy's (1973)
  decomposition over the same bins,

  .. math::

      BS = \underbrace{\tfrac1n\textstyle\sum_b n_b(\bar p_b - \bar o_b)^2}_{\text{reliability}}
         - \underbrace{\tfrac1n\textstyle\sum_b n_b(\bar o_b - \bar o)^2}_{\text{resolution}}
         + \underbrace{\bar o(1 - \bar o)}_{\text{uncertainty}}
         + \text{within-bin term},

  where the within-bin term :math:`\frac1n\sum_b\sum_{i\in b}(p_i - \bar p_b)^2 -
  \frac2n\sum_b\sum_{i\in b}(p_i - \bar p_b)(y_i - \bar o_b)` vanishes when the predictions are
  constant within each bin (then the decomposition is exact). We report it so the parts sum to BS.
* Expected calibration error (Naeini et al. 2015; Guo et al. 2017),
  :math:`ECE = \sum_b \frac{n_b}{n}|\bar o_b - \bar p_b|`, with 10 equal-width bins by
  default (this work's default, as in Guo et al. 2017). ECE depends on the binning: always
  report it with the bins used.
* Decision-curve analysis (Vickers & Elkin 2006): at threshold probability :math:`p_t`,
  treating cases with :math:`p_i \ge p_t`,

  .. math::

      NB(p_t) = \frac{TP}{n} - \frac{FP}{n}\,\frac{p_t}{1 - p_t},

  compared with treat-all, :math:`\pi - (1-\pi)\,p_t/(1-p_t)` (:math:`\pi` the prevalence),
  and treat-none, 0.

Bin edges: a case with probability :math:`p` falls in bin :math:`b` when
:math:`e_b \le p < e_{b+1}`, the last bin closed on the right; quantile edges are
:func:`numpy.quantile` of the predictions, with duplicate edges merged (this work).

References
----------
Brier GW. Verification of forecasts expressed in terms of probability. Mon Weather Rev
1950;78:1-3.
Murphy AH. A new vector partition of the probability score. J Appl Meteorol
1973;12:595-600.
Naeini MP, Cooper GF, Hauskrecht M. Obtaining well calibrated probabilities using Bayesian
binning. Proc AAAI Conf Artif Intell 2015:2901-2907.
Guo C, Pleiss G, Sun Y, Weinberger KQ. On calibration of modern neural networks. ICML 2017.
Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction
models. Med Decis Making 2006;26:565-574.
"""

from __future__ import annotations

import numpy as np

from core.errors import InputError
from core.evaluation.metrics import check_alpha, check_labels, check_probabilities, wilson_interval

__all__ = [
    "bin_edges",
    "reliability_curve",
    "brier_score",
    "brier_decomposition",
    "expected_calibration_error",
    "net_benefit",
]


def _check_inputs(y_true, prob, *, require_both: bool = False) -> tuple[np.ndarray, np.ndarray]:
    y = check_labels(y_true, require_both=require_both)
    return y, check_probabilities(prob, y.shape[0])


def bin_edges(prob, *, n_bins: int = 10, strategy: str = "uniform") -> np.ndarray:
    """Bin edges on [0, 1] for calibration summaries.

    Parameters
    ----------
    prob : array-like of shape (n_samples,)
        Predicted probabilities (used by ``strategy="quantile"`` only).
    n_bins : int, default=10
        Number of bins (fewer after merging duplicate quantile edges).
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or bins with (about) equal numbers of cases.

    Returns
    -------
    ndarray of shape (n_bins + 1,)
        Increasing edges; the first is 0 (uniform) or min(prob), the last 1 or max(prob).

    Examples
    --------
    >>> bin_edges([0.2, 0.7], n_bins=4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise InputError(f"n_bins must be a positive integer, got {n_bins!r}", fix="Use e.g. n_bins=10.")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, int(n_bins) + 1)
    if strategy == "quantile":
        p = np.asarray(prob, float)
        return np.unique(np.quantile(p, np.linspace(0.0, 1.0, int(n_bins) + 1)))
    raise InputError(f'strategy must be "uniform" or "quantile", got {strategy!r}',
                     fix='Use strategy="uniform" (equal width) or "quantile" (equal counts).')


def _bin_index(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: e_b <= p < e_{b+1}, last bin closed on the right."""
    return np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(edges.size - 2, 0))


def _binned(y: np.ndarray, p: np.ndarray, edges: np.ndarray):
    idx = _bin_index(p, edges)
    n_b = np.bincount(idx, minlength=max(edges.size - 1, 1))
    sum_p = np.bincount(idx, weights=p, minlength=n_b.size)
    sum_y = np.bincount(idx, weights=y, minlength=n_b.size)
    return idx, n_b, sum_p, sum_y


def reliability_curve(y_true, prob, *, n_bins: int = 10, strategy: str = "quantile", alpha: float = 0.05) -> dict:
    r"""Reliability (calibration) curve: observed event fraction per bin of predicted probability.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1.
    prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].
    n_bins : int, default=10
        Number of bins.
    strategy : {"quantile", "uniform"}, default="quantile"
        Equal-count or equal-width bins (see :func:`bin_edges`).
    alpha : float, default=0.05
        Coverage 1 - alpha of the Wilson intervals of the observed fractions.

    Returns
    -------
    dict
        ``mean_predicted``, ``observed``, ``observed_low``, ``observed_high``, ``count`` (one entry
        per non-empty bin), ``bin_low``, ``bin_high`` (edges of those bins) and ``edges`` (all edges).

    References
    ----------
    Wilson EB. J Am Stat Assoc 1927;22:209-212.

    Examples
    --------
    >>> r = reliability_curve([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2, strategy="uniform")
    >>> r["observed"].tolist(), r["count"].tolist()
    ([0.5, 0.5], [2, 2])
    """
    alpha = check_alpha(alpha)
    y, p = _check_inputs(y_true, prob)
    edges = bin_edges(p, n_bins=n_bins, strategy=strategy)
    _, n_b, sum_p, sum_y = _binned(y, p, edges)
    keep = n_b > 0
    ci = np.array([wilson_interval(int(k), int(n), alpha) for k, n in zip(sum_y[keep].round(), n_b[keep])])
    return {"mean_predicted": sum_p[keep] / n_b[keep], "observed": sum_y[keep] / n_b[keep],
            "observed_low": ci[:, 0], "observed_high": ci[:, 1], "count": n_b[keep],
            "bin_low": edges[:-1][keep] if edges.size > 1 else edges[:1],
            "bin_high": edges[1:][keep] if edges.size > 1 else edges[:1], "edges": edges}


def brier_score(y_true, prob) -> float:
    r"""Brier score, the mean squared error of predicted probabilities.

    .. math::

        BS = \frac1n \sum_{i=1}^n (p_i - y_i)^2

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1.
    prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].

    Returns
    -------
    float
        0 is perfect; 0.25 is what always predicting 0.5 scores.

    References
    ----------
    Brier GW. Mon Weather Rev 1950;78:1-3.

    Examples
    --------
    >>> brier_score([0, 1], [0.2, 0.6])
    0.1
    """
    y, p = _check_inputs(y_true, prob)
    return float(np.round(np.mean((p - y) ** 2), 15))


def brier_decomposition(y_true, prob, *, n_bins: int = 10, strategy: str = "uniform") -> dict:
    """Murphy (1973) decomposition of the Brier score over probability bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1.
    prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].
    n_bins : int, default=10
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Binning (see :func:`bin_edges`).

    Returns
    -------
    dict
        ``brier``, ``reliability``, ``resolution``, ``uncertainty``, ``within_bin`` with
        ``brier = reliability - resolution + uncertainty + within_bin`` (see the module docstring).

    References
    ----------
    Murphy AH. J Appl Meteorol 1973;12:595-600.

    Examples
    --------
    >>> d = brier_decomposition([0, 0, 1, 1], [0.25, 0.25, 0.75, 0.75], n_bins=4)
    >>> d["reliability"], d["resolution"], d["uncertainty"]
    (0.0625, 0.25, 0.25)
    """
    y, p = _check_inputs(y_true, prob)
    edges = bin_edges(p, n_bins=n_bins, strategy=strategy)
    idx, n_b, sum_p, sum_y = _binned(y, p, edges)
    n = y.size
    keep = n_b > 0
    pbar = np.zeros(n_b.size)
    obar = np.zeros(n_b.size)
    pbar[keep], obar[keep] = sum_p[keep] / n_b[keep], sum_y[keep] / n_b[keep]
    o_all = y.mean()
    rel = float(np.sum(n_b * (pbar - obar) ** 2) / n)
    res = float(np.sum(n_b * (obar - o_all) ** 2) / n)
    unc = float(o_all * (1 - o_all))
    dp, dy = p - pbar[idx], y - obar[idx]
    within = float(np.mean(dp ** 2) - 2 * np.mean(dp * dy))
    return {"brier": float(np.mean((p - y) ** 2)), "reliability": rel, "resolution": res, "uncertainty": unc,
            "within_bin": within}


def expected_calibration_error(y_true, prob, *, n_bins: int = 10, strategy: str = "uniform") -> float:
    r"""Expected calibration error over probability bins.

    .. math::

        ECE = \sum_b \frac{n_b}{n}\,\lvert \bar o_b - \bar p_b \rvert

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1.
    prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].
    n_bins : int, default=10
        Number of bins (this work's default, as in Guo et al. 2017).
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-count bins (see :func:`bin_edges`).

    Returns
    -------
    float
        0 for perfect calibration within bins; in [0, 1].

    References
    ----------
    Naeini MP, Cooper GF, Hauskrecht M. AAAI 2015:2901-2907. Guo C et al. ICML 2017.

    Examples
    --------
    >>> expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.9, 0.9], n_bins=2)
    0.2
    """
    y, p = _check_inputs(y_true, prob)
    edges = bin_edges(p, n_bins=n_bins, strategy=strategy)
    _, n_b, sum_p, sum_y = _binned(y, p, edges)
    return float(np.round(np.sum(np.abs(sum_y - sum_p)) / y.size, 15))


def net_benefit(y_true, prob, thresholds) -> dict:
    r"""Decision-curve analysis: net benefit of the model, treat-all and treat-none.

    A case is treated when :math:`p_i \ge p_t`:

    .. math::

        NB_\text{model}(p_t) = \frac{TP}{n} - \frac{FP}{n}\frac{p_t}{1 - p_t},\quad
        NB_\text{all}(p_t) = \pi - (1 - \pi)\frac{p_t}{1 - p_t},\quad
        NB_\text{none} = 0.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1.
    prob : array-like of shape (n_samples,)
        Predicted probability of the positive class, in [0, 1].
    thresholds : array-like of shape (n_thresholds,)
        Threshold probabilities :math:`p_t`, each in (0, 1).

    Returns
    -------
    dict
        ``thresholds``, ``model``, ``treat_all``, ``treat_none`` (each shape (n_thresholds,)).

    References
    ----------
    Vickers AJ, Elkin EB. Med Decis Making 2006;26:565-574.

    Examples
    --------
    >>> r = net_benefit([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], [0.5])
    >>> r["model"].tolist(), r["treat_all"].tolist()
    ([0.0], [0.0])
    """
    y, p = _check_inputs(y_true, prob)
    t = np.atleast_1d(np.asarray(thresholds, float))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any((t <= 0) | (t >= 1)):
        raise InputError(f"thresholds must be probabilities strictly between 0 and 1, got {np.asarray(thresholds)!r}",
                         fix="Pass e.g. thresholds=np.linspace(0.01, 0.99, 99).")
    n = y.size
    treat = p[None, :] >= t[:, None]
    tp = np.sum(treat & (y[None, :] == 1), axis=1)
    fp = np.sum(treat & (y[None, :] == 0), axis=1)
    odds = t / (1 - t)
    prev = y.mean()
    return {"thresholds": t, "model": tp / n - fp / n * odds, "treat_all": prev - (1 - prev) * odds,
            "treat_none": np.zeros_like(t)}
