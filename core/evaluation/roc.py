r"""ROC analysis: AUC with confidence intervals, DeLong's test, ROC bands and thresholds.

The area under the ROC curve of a score :math:`s` (higher = more likely positive) on
:math:`m` positives :math:`X_i` and :math:`n` negatives :math:`Y_j` is the Mann-Whitney
statistic (Bamber 1975; Hanley & McNeil 1982)

.. math::

    \hat A = \frac{1}{mn}\sum_{i=1}^m\sum_{j=1}^n \psi(X_i, Y_j),\qquad
    \psi(x, y) = \begin{cases}1 & x > y\\ \tfrac12 & x = y\\ 0 & x < y.\end{cases}

DeLong, DeLong & Clarke-Pearson (1988) estimate its variance (and the covariance of
AUCs of several scores on the same cases) from the structural components
:math:`V_{10}(X_i) = \frac1n\sum_j \psi(X_i, Y_j)` and
:math:`V_{01}(Y_j) = \frac1m\sum_i \psi(X_i, Y_j)`:

.. math::

    S = \frac{S_{10}}{m} + \frac{S_{01}}{n},

with :math:`S_{10}, S_{01}` the sample covariance matrices (denominator :math:`m-1`,
:math:`n-1`) of the components over scores. We compute the components from mid-ranks in
:math:`O(N \log N)` with the algorithm of Sun & Xu (2014).

Confidence intervals for one AUC:

* ``method="delong"``: normal interval on the logit scale by default (delta method,
  :math:`\mathrm{SE}[\mathrm{logit}\,\hat A] = \mathrm{SE}[\hat A] / (\hat A(1-\hat A))`),
  back-transformed so that it stays inside (0, 1) (this work's default); ``transform="none"``
  gives the plain :math:`\hat A \pm z\,\mathrm{SE}` clipped to [0, 1].
* ``method="bootstrap"``: stratified bootstrap (positives and negatives resampled
  separately, keeping the class sizes) with the bias-corrected and accelerated (BCa)
  interval of Efron (1987), via :func:`scipy.stats.bootstrap`.

Two correlated AUCs are compared by DeLong's z test,
:math:`z = (\hat A_a - \hat A_b)/\sqrt{S_{aa} + S_{bb} - 2S_{ab}}`.

References
----------
DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach. Biometrics
1988;44:837-845.
Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas under
correlated receiver operating characteristic curves. IEEE Signal Process Lett
2014;21:1389-1393.
Efron B. Better bootstrap confidence intervals. J Am Stat Assoc 1987;82:171-185.
Hanley JA, McNeil BJ. The meaning and use of the area under a receiver operating
characteristic (ROC) curve. Radiology 1982;143:29-36.
Youden WJ. Index for rating diagnostic tests. Cancer 1950;3:32-35.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from core.errors import InputError
from core.evaluation.metrics import check_alpha, check_labels, check_scores

__all__ = [
    "delong_covariance",
    "roc_auc_ci",
    "delong_test",
    "roc_curve_with_band",
    "choose_threshold",
]


def _check_n_boot(n_boot) -> int:
    if int(n_boot) != n_boot or n_boot < 100:
        raise InputError(f"n_boot must be an integer >= 100, got {n_boot!r}",
                         fix="Use e.g. n_boot=2000 bootstrap resamples.")
    return int(n_boot)


# ----------------------------------------------------------------------------- DeLong (Sun & Xu 2014)

def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    r"""AUCs of ``k`` scores on the same cases and their DeLong covariance matrix.

    Fast algorithm of Sun & Xu (2014): with mid-ranks :math:`T_X` among positives,
    :math:`T_Y` among negatives and :math:`T_Z` among all cases,
    :math:`V_{10}(X_i) = (T_Z(X_i) - T_X(X_i))/n`,
    :math:`V_{01}(Y_j) = 1 - (T_Z(Y_j) - T_Y(Y_j))/m`, and
    :math:`\hat A = \overline{V_{10}}`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1, both classes present.
    scores : array-like of shape (n_samples,) or (k, n_samples)
        One or several scores (higher = more likely positive).

    Returns
    -------
    auc : ndarray of shape (k,)
    cov : ndarray of shape (k, k)
        :math:`S_{10}/m + S_{01}/n` (needs at least 2 positives and 2 negatives, else NaN).

    References
    ----------
    DeLong ER et al. Biometrics 1988;44:837-845. Sun X, Xu W. IEEE Signal Process Lett
    2014;21:1389-1393.

    Examples
    --------
    >>> auc, cov = delong_covariance([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> float(auc[0])
    0.75
    """
    y = check_labels(y_true).astype(bool)
    s = np.atleast_2d(np.asarray(scores))
    s = np.stack([check_scores(row, y.shape[0], name="score") for row in s])
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    auc = v10.mean(axis=1)
    if m < 2 or n < 2:
        return auc, np.full((s.shape[0], s.shape[0]), np.nan)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return auc, cov


def _normal_ci(est: float, se: float, alpha: float, transform: str) -> tuple[float, float]:
    z = stats.norm.ppf(1 - alpha / 2)
    if not np.isfinite(se):
        return (float("nan"), float("nan"))
    if transform == "logit" and 0.0 < est < 1.0:
        centre = np.log(est / (1 - est))
        half = z * se / (est * (1 - est))
        lo, hi = centre - half, centre + half
        return (float(1 / (1 + np.exp(-lo))), float(1 / (1 + np.exp(-hi))))
    return (float(max(0.0, est - z * se)), float(min(1.0, est + z * se)))


def _auc_along(pos, neg, axis=-1):
    """Mann-Whitney AUC along ``axis`` (vectorised for scipy.stats.bootstrap)."""
    pos = np.moveaxis(np.asarray(pos, float), axis, -1)
    neg = np.moveaxis(np.asarray(neg, float), axis, -1)
    m, n = pos.shape[-1], neg.shape[-1]
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    return (ranks[..., :m].sum(axis=-1) - m * (m + 1) / 2) / (m * n)


def roc_auc_ci(y_true, score, *, method: str = "delong", alpha: float = 0.05, n_boot: int = 2000,
               seed: int = 0, transform: str = "logit") -> dict:
    r"""AUC with a confidence interval (DeLong or stratified BCa bootstrap).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1, both classes present.
    score : array-like of shape (n_samples,)
        Classifier score, higher = more likely positive; finite.
    method : {"delong", "bootstrap"}, default="delong"
        Interval method (see the module docstring).
    alpha : float, default=0.05
        Coverage 1 - alpha.
    n_boot : int, default=2000
        Bootstrap resamples (``method="bootstrap"`` only).
    seed : int, default=0
        Bootstrap seed.
    transform : {"logit", "none"}, default="logit"
        Scale of the DeLong normal interval (this work's default: logit).

    Returns
    -------
    dict
        ``auc``, ``ci_low``, ``ci_high``, ``se`` (DeLong standard error; also reported for the
        bootstrap), ``method``, ``n_pos``, ``n_neg``. An AUC of exactly 0 or 1 has SE 0 and a
        degenerate interval.

    References
    ----------
    DeLong ER et al. Biometrics 1988;44:837-845. Sun X, Xu W. IEEE Signal Process Lett
    2014;21:1389-1393. Efron B. J Am Stat Assoc 1987;82:171-185.

    Examples
    --------
    >>> r = roc_auc_ci([0, 0, 0, 1, 1, 1], [0.1, 0.3, 0.6, 0.4, 0.8, 0.9])
    >>> round(r["auc"], 4)
    0.8889
    """
    if method not in ("delong", "bootstrap"):
        raise InputError(f'method must be "delong" or "bootstrap", got {method!r}',
                         fix='Use method="delong" (fast) or method="bootstrap".')
    if transform not in ("logit", "none"):
        raise InputError(f'transform must be "logit" or "none", got {transform!r}', fix='Use transform="logit".')
    alpha = check_alpha(alpha)
    y = check_labels(y_true)
    s = check_scores(score, y.shape[0])
    auc, cov = delong_covariance(y, s)
    auc, se = float(auc[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
    out = {"auc": auc, "se": se, "method": method, "n_pos": int(y.sum()), "n_neg": int((1 - y).sum())}
    if method == "delong":
        out["ci_low"], out["ci_high"] = _normal_ci(auc, se, alpha, transform)
        return out
    n_boot = _check_n_boot(n_boot)
    pos, neg = s[y == 1], s[y == 0]
    if auc in (0.0, 1.0) or np.ptp(s) == 0:  # every resample gives the same AUC: BCa undefined
        out["ci_low"] = out["ci_high"] = auc
        return out
    res = stats.bootstrap((pos, neg), _auc_along, n_resamples=n_boot, vectorized=True, paired=False,
                          confidence_level=1 - alpha, method="BCa", rng=np.random.default_rng(seed), batch=500)
    out["ci_low"], out["ci_high"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return out


def delong_test(y_true, score_a, score_b, *, alpha: float = 0.05) -> dict:
    r"""DeLong's test of two correlated AUCs (two scores on the same cases).

    .. math::

        z = \frac{\hat A_a - \hat A_b}{\sqrt{S_{aa} + S_{bb} - 2 S_{ab}}},\qquad
        p = 2\,\Phi(-|z|),

    and the interval of the difference is :math:`\hat A_a - \hat A_b \pm z_{1-\alpha/2}\,\mathrm{SE}`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1, at least 2 of each class.
    score_a, score_b : array-like of shape (n_samples,)
        Scores of the two classifiers, same case order.
    alpha : float, default=0.05
        Coverage of the difference interval, 1 - alpha.

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``difference`` (a - b), ``se``, ``z``, ``p``, ``ci_low``,
        ``ci_high``. When the difference has zero variance (e.g. identical scores),
        z = 0 and p = 1 if the AUCs are equal.

    References
    ----------
    DeLong ER et al. Biometrics 1988;44:837-845. Sun X, Xu W. IEEE Signal Process Lett
    2014;21:1389-1393.

    Examples
    --------
    >>> r = delong_test([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.1, 0.2, 0.8, 0.9])
    >>> r["z"], r["p"]
    (0.0, 1.0)
    """
    alpha = check_alpha(alpha)
    y = check_labels(y_true)
    if min(int(y.sum()), int((1 - y).sum())) < 2:
        raise InputError("DeLong's test needs at least 2 positive and 2 negative cases",
                         fix="Evaluate on a larger set.")
    a = check_scores(score_a, y.shape[0], name="score_a")
    b = check_scores(score_b, y.shape[0], name="score_b")
    auc, cov = delong_covariance(y, np.stack([a, b]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(var, 0.0)))
    if se <= 1e-15:
        z = 0.0 if abs(diff) <= 1e-15 else float(np.sign(diff) * np.inf)
    else:
        z = diff / se
    p = float(2 * stats.norm.sf(abs(z)))
    half = stats.norm.ppf(1 - alpha / 2) * se
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": diff, "se": se, "z": float(z),
            "p": min(1.0, p), "ci_low": diff - half, "ci_high": diff + half}


# ----------------------------------------------------------------------------- ROC curve and thresholds

def _roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC: (fpr, tpr, threshold) for "positive iff score >= threshold", from +inf down."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    n_pos, n_neg = y.sum(), y.size - y.sum()
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    return fpr, tpr, np.r_[np.inf, s_sorted[last]]


def _tpr_on_grid(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Highest TPR reachable at FPR <= grid value (step interpolation of the empirical ROC)."""
    return tpr[np.searchsorted(fpr, grid, side="right") - 1]


def roc_curve_with_band(y_true, score, *, fpr_grid=None, n_boot: int = 1000, alpha: float = 0.05,
                        seed: int = 0) -> dict:
    """Empirical ROC curve on an FPR grid with a pointwise stratified-bootstrap band.

    At each grid FPR :math:`f`, the TPR is the highest TPR of the empirical ROC with
    FPR :math:`\\le f` (step interpolation). The band is the pointwise
    :math:`[\\alpha/2, 1-\\alpha/2]` percentile of the TPR over ``n_boot`` stratified bootstrap
    resamples (positives and negatives resampled separately) (this work). Pointwise bands
    do not cover the whole curve simultaneously; use them for plotting.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1, both classes present.
    score : array-like of shape (n_samples,)
        Classifier score, higher = more likely positive.
    fpr_grid : array-like of shape (n_grid,), default=None
        Increasing FPR values in [0, 1]; default 101 points ``np.linspace(0, 1, 101)``.
    n_boot : int, default=1000
        Bootstrap resamples.
    alpha : float, default=0.05
        The band has pointwise coverage 1 - alpha.
    seed : int, default=0
        Bootstrap seed.

    Returns
    -------
    dict
        ``fpr`` (the grid), ``tpr``, ``tpr_low``, ``tpr_high`` (each shape (n_grid,)), ``auc``.

    References
    ----------
    Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall 1993.

    Examples
    --------
    >>> r = roc_curve_with_band([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], fpr_grid=[0, 0.5, 1], n_boot=100)
    >>> r["tpr"].tolist()
    [0.5, 1.0, 1.0]
    """
    alpha = check_alpha(alpha)
    n_boot = _check_n_boot(n_boot)
    y = check_labels(y_true)
    s = check_scores(score, y.shape[0])
    grid = np.linspace(0, 1, 101) if fpr_grid is None else np.asarray(fpr_grid, float)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0) \
            or grid[0] < 0 or grid[-1] > 1:
        raise InputError(f"fpr_grid must be increasing values in [0, 1], got {np.asarray(fpr_grid)!r}",
                         fix="Pass e.g. fpr_grid=np.linspace(0, 1, 101).")
    fpr, tpr, _ = _roc_points(y, s)
    pos_idx, neg_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, grid.size))
    y_boot = np.r_[np.ones(pos_idx.size, np.int8), np.zeros(neg_idx.size, np.int8)]
    for b in range(n_boot):
        idx = np.r_[rng.choice(pos_idx, pos_idx.size), rng.choice(neg_idx, neg_idx.size)]
        f_b, t_b, _ = _roc_points(y_boot, s[idx])
        boot[b] = _tpr_on_grid(f_b, t_b, grid)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return {"fpr": grid, "tpr": _tpr_on_grid(fpr, tpr, grid), "tpr_low": low, "tpr_high": high,
            "auc": float(_auc_along(s[y == 1], s[y == 0]))}


def _check_rule(rule) -> tuple[str, float | None]:
    if rule == "youden":
        return "youden", None
    if isinstance(rule, tuple) and len(rule) == 2 and rule[0] in ("sensitivity", "specificity") \
            and np.isscalar(rule[1]) and 0.0 < float(rule[1]) <= 1.0:
        return rule[0], float(rule[1])
    raise InputError(f"unknown threshold rule {rule!r}",
                     fix='Use rule="youden", ("sensitivity", 0.9) or ("specificity", 0.9) with a target in (0, 1].')


def choose_threshold(y_true, score, *, rule="youden") -> dict:
    r"""Choose a score threshold (call positive iff ``score >= threshold``).

    Rules:

    * ``"youden"``: maximise Youden's :math:`J = \text{sens} + \text{spec} - 1` (Youden 1950);
      ties go to the highest threshold.
    * ``("sensitivity", t)``: the highest specificity among thresholds with sensitivity >= t.
    * ``("specificity", t)``: the highest sensitivity among thresholds with specificity >= t.

    Candidate thresholds are the observed scores (and +inf, "call nothing positive").
    A threshold chosen on the evaluation data is optimistic for those data: choose it on
    training or inner-CV folds and report metrics on held-out cases.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels, 0/1, both classes present.
    score : array-like of shape (n_samples,)
        Classifier score, higher = more likely positive.
    rule : "youden" or tuple, default="youden"
        See above.

    Returns
    -------
    dict
        ``threshold``, ``sensitivity``, ``specificity``, ``youden`` (J at the threshold), ``rule``.

    References
    ----------
    Youden WJ. Cancer 1950;3:32-35.

    Examples
    --------
    >>> choose_threshold([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])["threshold"]
    0.9
    """
    kind, target = _check_rule(rule)
    y = check_labels(y_true)
    s = check_scores(score, y.shape[0])
    fpr, tpr, thr = _roc_points(y, s)
    if kind == "youden":
        i = int(np.argmax(tpr - fpr))
    elif kind == "sensitivity":
        i = int(np.flatnonzero(tpr >= target - 1e-12)[0])  # fpr non-decreasing: first index = lowest fpr
    else:
        i = int(np.flatnonzero(1.0 - fpr >= target - 1e-12)[-1])  # tpr non-decreasing: last index = highest tpr
    return {"threshold": float(thr[i]), "sensitivity": float(tpr[i]), "specificity": float(1 - fpr[i]),
            "youden": float(tpr[i] - fpr[i]), "rule": rule}
