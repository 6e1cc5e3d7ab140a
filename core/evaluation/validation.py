"""Resampling schemes for honest performance estimates: nested CV and leave-one-site-out.

* Nested cross-validation (Varma & Simon 2006): hyper-parameters are tuned by a grid search
  in an inner cross-validation that sees only the outer training folds, so the outer-fold
  estimates are not biased by the tuning. Folds are stratified by class
  (:class:`sklearn.model_selection.StratifiedKFold`), or, when ``groups`` is given (e.g.
  patient id with several lesions each), also kept whole per group
  (:class:`~sklearn.model_selection.StratifiedGroupKFold`).
* Leave-one-site-out (:class:`~sklearn.model_selection.LeaveOneGroupOut` over centres):
  each centre is predicted by a model trained on all other centres, the usual check of
  transport to an unseen site in multicentre studies (this work's default external
  validation scheme).

Both return out-of-fold scores and predictions for every case exactly once, so the
metrics in :mod:`core.evaluation.metrics`, :mod:`~core.evaluation.roc` and
:mod:`~core.evaluation.calibration` can be applied to them.

References
----------
Varma S, Simon R. Bias in error estimation when using cross-validation for model
selection. BMC Bioinformatics 2006;7:91.
Pedregosa F et al. Scikit-learn: machine learning in Python. J Mach Learn Res
2011;12:2825-2830.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import (GridSearchCV, LeaveOneGroupOut, StratifiedGroupKFold,
                                     StratifiedKFold)

from core.errors import InputError
from core.evaluation.metrics import binary_metrics, check_labels
from core.evaluation.roc import roc_auc_ci

__all__ = ["nested_cross_validation", "leave_one_site_out"]


def _rows(X, index: np.ndarray):
    """Rows of an array or DataFrame by position (a DataFrame keeps its index and columns)."""
    return X.iloc[index] if hasattr(X, "iloc") else X[index]


def _check_xy(X, y, allow_nan: bool = False):
    """Validated (X, y); a DataFrame is returned as it is (estimators may need its index/columns)."""
    y = check_labels(y, name="y")
    frame = X if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 2 else None
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"X has shape {X.shape}, not (n_cases, n_features)",
                         fix="Pass one row of features per case.")
    if X.shape[0] != y.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels",
                         fix="Pass one row of X per label, in the same order.")
    if not np.issubdtype(X.dtype, np.number):
        raise InputError(f"X is not numeric (dtype {X.dtype})", fix="Encode features as numbers.")
    bad = np.isinf(X) if allow_nan else ~np.isfinite(X)
    if bad.any():
        rows = np.unique(np.argwhere(bad)[:, 0])
        raise InputError(f"X holds NaN or infinite values in {rows.size} rows (first: row {rows[0]})",
                         fix="Impute or remove these values first (or put an imputer inside the estimator pipeline).")
    return (frame if frame is not None else X), y


def _check_groups(groups, n: int, name: str) -> np.ndarray:
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise InputError(f"{name} has shape {g.shape} but there are {n} cases",
                         fix=f"Pass one {name} label per case.")
    return g


def _positive_score(model, X: np.ndarray) -> np.ndarray:
    """Score of the positive class: predict_proba[:, 1] if available, else decision_function."""
    if hasattr(model, "predict_proba"):
        classes = list(model.classes_)
        return model.predict_proba(X)[:, classes.index(1)]
    return model.decision_function(X)


def _check_folds(k, name: str) -> int:
    if int(k) != k or k < 2:
        raise InputError(f"{name} must be an integer >= 2, got {k!r}", fix=f"Use e.g. {name}=5.")
    return int(k)


def nested_cross_validation(estimator, param_grid, X, y, *, groups=None, outer: int = 5, inner: int = 5,
                            seed: int = 0, scoring: str = "roc_auc", allow_nan: bool = False) -> dict:
    """Nested cross-validation: grid search in inner folds, out-of-fold predictions in outer folds.

    Parameters
    ----------
    estimator : sklearn estimator
        Binary classifier (a Pipeline is fine); cloned, never fitted in place.
    param_grid : dict or list of dict
        Grid for :class:`sklearn.model_selection.GridSearchCV`.
    X : array-like of shape (n_samples, n_features)
        Features, finite.
    y : array-like of shape (n_samples,)
        Labels 0/1.
    groups : array-like of shape (n_samples,), default=None
        Group of each case (e.g. patient); folds keep groups whole (StratifiedGroupKFold).
    outer, inner : int, default=5
        Numbers of outer and inner folds.
    seed : int, default=0
        Seed of the fold shuffling (outer uses ``seed``, inner ``seed + 1``).
    scoring : str, default="roc_auc"
        scikit-learn scorer name, used for tuning and for the per-fold scores.
    allow_nan : bool, default=False
        Accept missing feature values (NaN, not infinities) when ``estimator`` imputes them
        itself, so that imputation is learned inside each training fold.

    Returns
    -------
    dict
        ``oof_score`` (n_samples,) positive-class score from the outer model that did not see
        the case; ``oof_pred`` (n_samples,) its ``predict``; ``fold`` (n_samples,) outer fold
        of each case; ``fold_scores`` (outer,) outer-fold ``scoring`` (NaN where undefined,
        e.g. a fold with one class); ``best_params`` list of the chosen parameters per fold.

    References
    ----------
    Varma S, Simon R. BMC Bioinformatics 2006;7:91.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = make_classification(60, 4, random_state=0)
    >>> r = nested_cross_validation(LogisticRegression(), {"C": [0.1, 1]}, X, y, outer=3, inner=3)
    >>> r["oof_score"].shape, sorted(set(r["fold"].tolist()))
    ((60,), [0, 1, 2])
    """
    X, y = _check_xy(X, y, allow_nan)
    outer, inner = _check_folds(outer, "outer"), _check_folds(inner, "inner")
    if groups is None:
        outer_cv = StratifiedKFold(outer, shuffle=True, random_state=seed)
        g = None
    else:
        g = _check_groups(groups, y.shape[0], "groups")
        outer_cv = StratifiedGroupKFold(outer, shuffle=True, random_state=seed)
    scorer = get_scorer(scoring)
    n = y.shape[0]
    oof_score = np.full(n, np.nan)
    oof_pred = np.full(n, -1, dtype=np.int8)
    fold = np.full(n, -1, dtype=int)
    fold_scores, best_params = [], []
    for k, (train, test) in enumerate(outer_cv.split(X, y, g)):
        inner_cv = (StratifiedKFold(inner, shuffle=True, random_state=seed + 1) if g is None
                    else StratifiedGroupKFold(inner, shuffle=True, random_state=seed + 1))
        search = GridSearchCV(clone(estimator), param_grid, scoring=scoring, cv=inner_cv, refit=True)
        search.fit(_rows(X, train), y[train], **({} if g is None else {"groups": g[train]}))
        model = search.best_estimator_
        oof_score[test] = _positive_score(model, _rows(X, test))
        oof_pred[test] = model.predict(_rows(X, test))
        fold[test] = k
        best_params.append(search.best_params_)
        if np.unique(y[test]).size < 2 and scoring in ("roc_auc", "average_precision"):
            warnings.warn(f"outer fold {k} holds one class only; its {scoring} is NaN", stacklevel=2)
            fold_scores.append(float("nan"))
        else:
            fold_scores.append(float(scorer(model, _rows(X, test), y[test])))
    return {"oof_score": oof_score, "oof_pred": oof_pred, "fold": fold, "fold_scores": np.array(fold_scores),
            "best_params": best_params}


def leave_one_site_out(estimator, X, y, sites, *, alpha: float = 0.05) -> dict:
    """Train on all sites but one, predict the held-out site; metrics per site.

    Parameters
    ----------
    estimator : sklearn estimator
        Binary classifier; cloned for each site.
    X : array-like of shape (n_samples, n_features)
        Features, finite.
    y : array-like of shape (n_samples,)
        Labels 0/1.
    sites : array-like of shape (n_samples,)
        Centre of each case; at least two distinct sites.
    alpha : float, default=0.05
        Coverage 1 - alpha of the per-site intervals.

    Returns
    -------
    dict
        ``oof_score``, ``oof_pred`` (n_samples,) from the model that did not see the case's
        site, and ``per_site``: a list, one dict per site in sorted order, with ``site``, ``n``,
        ``n_pos``, ``auc`` (:func:`core.evaluation.roc.roc_auc_ci` result, or None when the site
        has one class only) and ``metrics`` (:func:`core.evaluation.metrics.binary_metrics` of
        ``predict``, or None when the site has one class only).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = make_classification(60, 4, random_state=0)
    >>> r = leave_one_site_out(LogisticRegression(), X, y, ["A", "B", "C"] * 20)
    >>> [s["site"] for s in r["per_site"]]
    ['A', 'B', 'C']
    """
    X, y = _check_xy(X, y)
    s = _check_groups(sites, y.shape[0], "sites")
    if np.unique(s).size < 2:
        raise InputError(f"all cases come from one site ({s[0]!r})",
                         fix="Leave-one-site-out needs cases from at least two sites; use nested_cross_validation.")
    n = y.shape[0]
    oof_score = np.full(n, np.nan)
    oof_pred = np.full(n, -1, dtype=np.int8)
    per_site = []
    for train, test in LeaveOneGroupOut().split(X, y, s):
        model = clone(estimator).fit(_rows(X, train), y[train])
        oof_score[test] = _positive_score(model, _rows(X, test))
        oof_pred[test] = model.predict(_rows(X, test))
        yt = y[test]
        both = np.unique(yt).size == 2
        per_site.append({
            "site": s[test[0]].item() if hasattr(s[test[0]], "item") else s[test[0]],
            "n": int(test.size), "n_pos": int(yt.sum()),
            "auc": roc_auc_ci(yt, oof_score[test], alpha=alpha) if both else None,
            "metrics": binary_metrics(yt, oof_pred[test], alpha=alpha) if both else None,
        })
    return {"oof_score": oof_score, "oof_pred": oof_pred, "per_site": per_site}
