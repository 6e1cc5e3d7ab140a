r"""Classical machine-learning baseline on a radiomics feature table, with honest evaluation.

A feature table has one row per patient and one numeric column per radiomics feature
(e.g. the IBSI tags of :func:`core.radiomics.extract`); labels (1 = true progression,
0 = radionecrosis) and centres are passed separately. The baseline pipeline is

1. :class:`~sklearn.impute.SimpleImputer` with the **training median** (features that are
   missing for every training case are dropped);
2. :class:`VarianceFilter`: drop (near-)constant features;
3. :class:`CorrelationFilter`: of every pair with :math:`|r_s| > 0.9` (Spearman), keep the
   feature more correlated with the label (a greedy, deterministic rule, see the class);
4. :class:`~sklearn.preprocessing.StandardScaler` (z-scores from the training folds);
5. L1-penalised logistic regression inside :class:`L1Selection` (LASSO-type selection, as is
   customary in radiomics, Gillies et al. 2016; the most label-correlated feature is kept
   when the penalty removes all);
6. a classifier: logistic regression, random forest (Breiman 2001) or histogram gradient
   boosting (Friedman 2001), with balanced class weights and fixed seeds.

Every step is fitted inside the training folds only: :func:`evaluate_models` runs
:func:`core.evaluation.nested_cross_validation` (Varma & Simon 2006) per model and reports
the out-of-fold AUC with its DeLong interval, sensitivity/specificity/... at the
classifier's own 0.5 probability cut, and DeLong's test of every model against the best.
:func:`explain` gives SHAP values (Lundberg & Lee 2017; Lundberg et al. 2020) in the
space of the selected features.

Optional ComBat harmonisation of the sites (``evaluate_models(..., harmonise=True)``,
:func:`make_pipeline` with ``sites``) uses ``combatlearn`` (a scikit-learn ComBat that
fits on training rows only); ``neuroHarmonize`` 2.5.2 pins ``numpy<2`` and ``pandas<3``,
which conflict with this project's stack. mRMR selection is not included (this work).

References
----------
Gillies RJ, Kinahan PE, Hricak H. Radiomics: images are more than pictures, they are data.
Radiology 2016;278:563-577.
Varma S, Simon R. Bias in error estimation when using cross-validation for model
selection. BMC Bioinformatics 2006;7:91.
Breiman L. Random forests. Mach Learn 2001;45:5-32.
Friedman JH. Greedy function approximation: a gradient boosting machine. Ann Stat
2001;29:1189-1232.
Tibshirani R. Regression shrinkage and selection via the lasso. J R Stat Soc B
1996;58:267-288.
Johnson WE, Li C, Rabinovic A. Adjusting batch effects in microarray expression data
using empirical Bayes methods. Biostatistics 2007;8:118-127.
Orlhac F, Boughdad S, Philippe C, et al. A postreconstruction harmonization method for
multicenter radiomic studies in PET. J Nucl Med 2018;59:1321-1328.
Lundberg SM, Lee SI. A unified approach to interpreting model predictions. NeurIPS 2017.
Lundberg SM, Erion G, Chen H, et al. From local explanations to global understanding with
explainable AI for trees. Nat Mach Intell 2020;2:56-67.
DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics 1988;44:837-845.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectFromModel
from sklearn.feature_selection._base import SelectorMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from core.errors import InputError
from core.evaluation import binary_metrics, delong_test, nested_cross_validation, roc_auc_ci
from core.evaluation.metrics import check_labels

__all__ = [
    "VarianceFilter",
    "CorrelationFilter",
    "MODELS",
    "PARAM_GRIDS",
    "SELECTION_C",
    "L1Selection",
    "check_feature_table",
    "make_pipeline",
    "evaluate_models",
    "Explanation",
    "explain",
]

MODELS = ("logistic", "random_forest", "gradient_boosting")
SELECTION_C = 1.0  # inverse L1 strength of the selector on z-scored features (this work)

PARAM_GRIDS = {  # small grids for the inner loop of nested CV (this work)
    "logistic": {"select__estimator__C": [0.1, 1.0], "clf__C": [0.1, 1.0]},
    "random_forest": {"clf__max_depth": [3, None], "clf__min_samples_leaf": [1, 5]},
    "gradient_boosting": {"clf__learning_rate": [0.05, 0.1], "clf__max_depth": [2, 3]},
}


# ----------------------------------------------------------------------------- filters

class _NanTolerantSelector(SelectorMixin, BaseEstimator):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


class VarianceFilter(_NanTolerantSelector):
    r"""Drop constant and near-constant features (scale-free rule).

    A feature :math:`x` is kept iff it has at least two distinct finite values and

    .. math::

        \operatorname{sd}(x) > \tau \cdot \max_i |x_i|,

    with :math:`\tau` = ``rel_threshold``. The rule does not depend on the feature's unit,
    which matters for raw radiomics features spanning many orders of magnitude (this work).
    NaN are ignored; a feature with no finite value is dropped.

    Parameters
    ----------
    rel_threshold : float, default=1e-6
        Relative spread below which a feature counts as constant (this work).

    Attributes
    ----------
    support_ : ndarray of shape (n_features_in_,), bool
        Kept features.
    std_ : ndarray of shape (n_features_in_,)
        Standard deviation of each feature on the training data.

    Examples
    --------
    >>> VarianceFilter().fit([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]).get_support().tolist()
    [True, False]
    """

    def __init__(self, rel_threshold: float = 1e-6):
        self.rel_threshold = rel_threshold

    def fit(self, X, y=None):
        if not (np.isscalar(self.rel_threshold) and 0 <= float(self.rel_threshold) < 1):
            raise InputError(f"rel_threshold must be in [0, 1), got {self.rel_threshold!r}",
                             fix="Use e.g. rel_threshold=1e-6.")
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64)
        finite = np.isfinite(X)
        Xn = np.where(finite, X, np.nan)
        n_finite = finite.sum(axis=0)
        with np.errstate(invalid="ignore"):
            std = np.where(n_finite > 0, np.nanstd(np.where(n_finite > 0, Xn, 0.0), axis=0), 0.0)
            scale = np.where(n_finite > 0, np.nanmax(np.abs(np.where(n_finite > 0, Xn, 0.0)), axis=0), 0.0)
        self.std_ = std
        self.support_ = (n_finite >= 2) & (std > float(self.rel_threshold) * scale) & (std > 0)
        return self


def _abs_corr(X: np.ndarray, y, method: str) -> tuple[np.ndarray, np.ndarray]:
    """|r| between features (p, p) and of each feature with y (p,); NaN (constant) -> 0."""
    Z = np.column_stack([X, np.asarray(y, dtype=float)]) if y is not None else X
    if method == "spearman":
        Z = stats.rankdata(Z, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.atleast_2d(np.corrcoef(Z, rowvar=False))
    r = np.nan_to_num(np.abs(r), nan=0.0)
    p = X.shape[1]
    return r[:p, :p], (r[:p, p] if y is not None else np.zeros(p))


class CorrelationFilter(_NanTolerantSelector):
    r"""Drop redundant features: of each highly correlated pair keep one (deterministic rule).

    Features are ranked by their absolute correlation with the label :math:`|r(x_j, y)|`
    (descending; ties and ``y=None`` keep the column order). Walking down that ranking, a
    feature is kept iff :math:`|r(x_j, x_k)| \le` ``threshold`` for every feature
    :math:`x_k` already kept. Hence of a redundant pair the one more correlated with the
    label survives, and of exact duplicates the first column (this work).

    Parameters
    ----------
    threshold : float, default=0.9
        Largest tolerated :math:`|r|` between kept features (this work).
    method : {"spearman", "pearson"}, default="spearman"
        Correlation coefficient; Spearman is robust to the skew of radiomics features.

    Attributes
    ----------
    support_ : ndarray of shape (n_features_in_,), bool
        Kept features.
    order_ : ndarray of shape (n_features_in_,), int
        Ranking used by the greedy walk.

    Notes
    -----
    Input must be finite (put an imputer before it, as :func:`make_pipeline` does).

    Examples
    --------
    >>> X = [[1.0, 2.0, 0.0], [2.0, 4.0, 1.0], [3.0, 6.0, 0.0], [4.0, 8.0, 1.0]]
    >>> CorrelationFilter().fit(X, [0, 0, 1, 1]).get_support().tolist()
    [True, False, True]
    """

    def __init__(self, threshold: float = 0.9, method: str = "spearman"):
        self.threshold = threshold
        self.method = method

    def fit(self, X, y=None):
        if self.method not in ("spearman", "pearson"):
            raise InputError(f'method must be "spearman" or "pearson", got {self.method!r}',
                             fix='Use method="spearman".')
        if not (np.isscalar(self.threshold) and 0 < float(self.threshold) <= 1):
            raise InputError(f"threshold must be in (0, 1], got {self.threshold!r}", fix="Use e.g. threshold=0.9.")
        X = validate_data(self, X, dtype=np.float64)
        if y is not None and np.asarray(y).shape[0] != X.shape[0]:
            raise InputError(f"y has {np.asarray(y).shape[0]} labels but X has {X.shape[0]} rows",
                             fix="Pass one label per row.")
        rxx, rxy = _abs_corr(X, y, self.method)
        order = np.lexsort((np.arange(X.shape[1]), -np.round(rxy, 12)))
        kept: list[int] = []
        for j in order:
            if all(rxx[j, k] <= float(self.threshold) for k in kept):
                kept.append(int(j))
        self.order_ = order
        self.support_ = np.isin(np.arange(X.shape[1]), kept)
        return self


# ----------------------------------------------------------------------------- pipelines

class L1Selection(SelectFromModel):
    """LASSO-type selection that never returns an empty feature set.

    As :class:`~sklearn.feature_selection.SelectFromModel` (features with a non-zero
    coefficient of the fitted L1 model are kept), except that when the penalty zeroes
    every coefficient the single feature with the largest absolute Pearson correlation
    with the label is kept, so that a strong penalty on a small training fold degrades to
    a one-feature model instead of failing the fit (this work).

    Examples
    --------
    >>> X = np.c_[np.arange(6.0), np.ones(6) + [0, 0, 0, 0, 0, 0.1]]
    >>> sel = L1Selection(LogisticRegression(l1_ratio=1.0, C=1e-4, solver="liblinear"), threshold=1e-10)
    >>> sel.fit(X, [0, 0, 0, 1, 1, 1]).get_support().tolist()
    [True, False]
    """

    def fit(self, X, y=None, **fit_params):
        super().fit(X, y, **fit_params)
        Xa, ya = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            xc = Xa - Xa.mean(axis=0)
            r = (xc * (ya - ya.mean())[:, None]).sum(0) / np.sqrt((xc ** 2).sum(0) * ((ya - ya.mean()) ** 2).sum())
        self.fallback_ = int(np.nanargmax(np.abs(r))) if np.isfinite(r).any() else 0
        return self

    def _get_support_mask(self):
        mask = super()._get_support_mask()
        if not mask.any():
            mask = np.zeros_like(mask)
            mask[self.fallback_] = True
        return mask


def _classifier(model: str, seed: int):
    if model == "logistic":
        return LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, random_state=seed)
    if model == "random_forest":
        return RandomForestClassifier(n_estimators=200, class_weight="balanced", random_state=seed, n_jobs=1)
    if model == "gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=100, class_weight="balanced", early_stopping=False,
                                              random_state=seed)
    raise InputError(f"unknown model {model!r}", fix=f"Use one of {list(MODELS)}.")


def make_pipeline(model: str = "logistic", seed: int = 0, *, sites: pd.Series | None = None) -> Pipeline:
    """Baseline pipeline: impute, filter, (harmonise,) standardise, L1-select, classify.

    Steps (names used in :data:`PARAM_GRIDS`): ``impute`` (training median), ``variance``
    (:class:`VarianceFilter`), ``correlation`` (:class:`CorrelationFilter`, Spearman 0.9),
    ``scale`` (z-score), ``select`` (:class:`L1Selection` of an L1 logistic regression,
    ``C`` = :data:`SELECTION_C` = 1.0 on z-scored features, liblinear solver; features with
    a non-zero coefficient are kept), ``clf``: the classifier, with balanced class weights:

    * ``"logistic"``: L2 logistic regression, ``C=1``;
    * ``"random_forest"``: 200 trees;
    * ``"gradient_boosting"``: :class:`~sklearn.ensemble.HistGradientBoostingClassifier`,
      100 iterations, no early stopping (it supports class weights and NaN, unlike
      ``GradientBoostingClassifier``).

    With ``sites``, a ``harmonise`` step after the variance filter removes additive and
    multiplicative site effects per feature by ComBat (Johnson et al. 2007; parametric
    empirical Bayes, as used for radiomics by Orlhac et al. 2018), learned on the training
    rows only (``combatlearn.ComBat``). Every step then passes DataFrames, because ComBat
    finds each row's site through the row index.

    Parameters
    ----------
    model : {"logistic", "random_forest", "gradient_boosting"}, default="logistic"
        Classifier.
    seed : int, default=0
        Seed of every random step.
    sites : pandas.Series, optional
        Site of every row the pipeline will see (training and test), indexed like the
        DataFrames passed to ``fit``/``predict``. A site must have at least two training
        rows; rows of a site not seen in training cannot be harmonised (ComBat estimates
        each site's effect from that site's training data) and raise an error.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted; accepts a DataFrame (feature names are kept through ``get_feature_names_out``).

    References
    ----------
    Tibshirani R. J R Stat Soc B 1996;58:267-288. Breiman L. Mach Learn 2001;45:5-32.

    Examples
    --------
    >>> [name for name, _ in make_pipeline("random_forest").steps]
    ['impute', 'variance', 'correlation', 'scale', 'select', 'clf']
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}", fix="Use e.g. seed=0.")
    clf = _classifier(model, int(seed))
    selector = LogisticRegression(l1_ratio=1.0, C=SELECTION_C, solver="liblinear", class_weight="balanced",
                                  random_state=int(seed))
    steps = [("impute", SimpleImputer(strategy="median")), ("variance", VarianceFilter())]
    if sites is not None:
        from combatlearn import ComBat

        if not isinstance(sites, pd.Series) or not sites.index.is_unique or sites.isna().any():
            raise InputError("sites must be a pandas Series with a unique index and no missing site",
                             fix="Pass pd.Series(site_per_row, index=X.index).")
        steps.append(("harmonise", ComBat(batch=sites.astype(str), method="johnson", parametric=True)))
    steps += [("correlation", CorrelationFilter()), ("scale", StandardScaler()),
              ("select", L1Selection(selector, threshold=1e-10)), ("clf", clf)]
    pipe = Pipeline(steps)
    return pipe.set_output(transform="pandas") if sites is not None else pipe


# ----------------------------------------------------------------------------- evaluation

def check_feature_table(X, y, sites=None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Check a radiomics feature table, its labels and centres; raise InputError if bad.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_patients, n_features)
        Numeric features (NaN allowed here; infinite values are not).
    y : array-like of shape (n_patients,)
        Labels 0/1 (1 = true progression), both classes present, no NaN.
    sites : array-like of shape (n_patients,), default=None
        Centre of each patient.

    Returns
    -------
    (DataFrame, ndarray, ndarray or None)
        Features (column names as strings), labels (int8), sites.

    Examples
    --------
    >>> X, y, s = check_feature_table([[1.0], [2.0]], [0, 1])
    >>> list(X.columns), y.tolist(), s
    (['x0'], [0, 1], None)
    """
    if not isinstance(X, pd.DataFrame):
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise InputError(f"feature table has shape {arr.shape}, not (n_patients, n_features)",
                             fix="Pass one row of features per patient.")
        X = pd.DataFrame(arr, columns=[f"x{j}" for j in range(arr.shape[1])])
    X = X.rename(columns=str)
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])]
    if bad:
        raise InputError(f"feature columns {bad[:5]} are not numeric",
                         fix="Drop identifier/label/site columns from the table and pass y and sites separately.")
    if X.shape[1] == 0:
        raise InputError("feature table has no columns", fix="Pass at least one feature.")
    y_arr = np.asarray(y)
    if y_arr.ndim != 1 or y_arr.shape[0] != X.shape[0]:
        raise InputError(f"y has shape {y_arr.shape} but the table has {X.shape[0]} rows",
                         fix="Pass one label per patient, in the row order of the table.")
    if y_arr.dtype.kind == "f" and np.isnan(y_arr).any():
        rows = np.flatnonzero(np.isnan(y_arr))
        raise InputError(f"y has {rows.size} missing labels (first: row {rows[0]})",
                         fix="Remove the patients without a reference diagnosis.")
    y_arr = check_labels(y_arr, name="y")
    values = X.to_numpy(dtype=float)
    if np.isinf(values).any():
        r, c = np.argwhere(np.isinf(values))[0]
        raise InputError(f"feature {X.columns[c]!r} is infinite in row {r}",
                         fix="Replace infinite values by NaN (they are imputed) or fix the extraction.")
    s = None
    if sites is not None:
        s = np.asarray(sites)
        if s.ndim != 1 or s.shape[0] != X.shape[0]:
            raise InputError(f"sites has shape {s.shape} but the table has {X.shape[0]} rows",
                             fix="Pass one centre per patient, in the row order of the table.")
    return X, y_arr, s


def _per_site_auc(y: np.ndarray, score: np.ndarray, sites: np.ndarray) -> dict:
    out = {}
    for site in np.unique(sites):
        m = sites == site
        key = site.item() if hasattr(site, "item") else site
        out[key] = roc_auc_ci(y[m], score[m]) if np.unique(y[m]).size == 2 else None
    return out


def evaluate_models(X, y, sites=None, *, models=MODELS, outer: int = 5, inner: int = 3, seed: int = 0,
                    param_grids: dict | None = None, alpha: float = 0.05, harmonise: bool = False) -> dict:
    """Nested cross-validation of the baseline models, with intervals and DeLong comparisons.

    For each model, :func:`core.evaluation.nested_cross_validation` (stratified folds,
    ``groups=None``) tunes :data:`PARAM_GRIDS` by inner-fold AUC and returns one out-of-fold
    score per patient. On these scores we report the AUC with its DeLong interval
    (:func:`core.evaluation.roc_auc_ci`), :func:`core.evaluation.binary_metrics` of the
    out-of-fold ``predict`` (i.e. probability >= 0.5 with balanced class weights; **no
    threshold is tuned**, so no optimism from choosing a cut on the evaluation data), and
    DeLong's test (:func:`core.evaluation.delong_test`) of each model against the model
    with the highest out-of-fold AUC. The "best" model is thus selected on the same
    out-of-fold scores: its advantage is optimistic and the p-values are descriptive.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_patients, n_features)
        Feature table, finite (see Notes).
    y : array-like of shape (n_patients,)
        Labels 0/1.
    sites : array-like of shape (n_patients,), default=None
        Centre of each patient; used only for per-site AUCs of the out-of-fold scores
        (the folds are not split by site; use :func:`core.evaluation.leave_one_site_out`
        for transport to a new centre).
    models : sequence of str, default=MODELS
        Names accepted by :func:`make_pipeline`.
    outer, inner : int, default=5, 3
        Outer and inner folds.
    seed : int, default=0
        Seed of the folds and of the models.
    param_grids : dict, default=None
        Grid per model name; :data:`PARAM_GRIDS` where missing.
        OpenMP is limited to one thread during the fits: on patient-sized tables the
        gradient-boosting threads cost more than they gain (about 15x slower on 2 cores, this work).
    alpha : float, default=0.05
        Interval coverage 1 - alpha.
    harmonise : bool, default=False
        ComBat-harmonise the features by ``sites`` inside every training fold
        (:func:`make_pipeline` with ``sites``). Folds are stratified by label, so every
        site is present in training folds when it has a few patients.

    Returns
    -------
    dict
        ``best`` (name), ``models``: per name a dict with ``oof_score``, ``oof_pred``,
        ``fold``, ``fold_scores``, ``best_params`` (from nested CV), ``auc`` (roc_auc_ci),
        ``metrics`` (binary_metrics at 0.5), ``delong_vs_best`` (delong_test of this model
        against the best, None for the best itself) and ``per_site_auc`` ({site: roc_auc_ci
        or None}, empty without sites).

    Notes
    -----
    Missing feature values (NaN: features undefined for a case) are imputed by the
    pipeline's median imputer, learned inside each training fold, so no test case informs
    its own imputation.

    References
    ----------
    Varma S, Simon R. BMC Bioinformatics 2006;7:91. DeLong ER et al. Biometrics 1988;44:837-845.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(60, 6, random_state=0)
    >>> r = evaluate_models(X, y, models=("logistic",), outer=3, inner=3)
    >>> r["best"], r["models"]["logistic"]["oof_score"].shape
    ('logistic', (60,))
    """
    X, y, s = check_feature_table(X, y, sites)
    models = tuple(models)
    if not models or len(set(models)) != len(models):
        raise InputError(f"models must be distinct names, got {models!r}", fix=f"Choose from {list(MODELS)}.")
    grids = {**PARAM_GRIDS, **(param_grids or {})}
    batch = None
    if harmonise:
        if s is None:
            raise InputError("harmonisation needs the site of every patient", fix="Pass sites=... or harmonise=False.")
        X = X.reset_index(drop=True)
        batch = pd.Series(s, index=X.index).astype(str)
        small = batch.value_counts()
        if small.size < 2:
            raise InputError(f"all patients come from one site ({small.index[0]!r}): nothing to harmonise",
                             fix="Run without harmonisation.")
        if (small < 4).any():
            raise InputError(f"sites {small[small < 4].index.tolist()} have fewer than 4 patients, too few to "
                             "estimate their ComBat site effects within training folds",
                             fix="Merge small sites with a similar scanner, or run without harmonisation.")
    results = {}
    for name in models:
        pipe = make_pipeline(name, seed=seed, sites=batch)
        with threadpool_limits(limits=1, user_api="openmp"):  # small tables: threads only add overhead
            r = nested_cross_validation(pipe, grids[name], X, y, groups=None, outer=outer, inner=inner, seed=seed,
                                        allow_nan=True)
        r["auc"] = roc_auc_ci(y, r["oof_score"], alpha=alpha)
        r["metrics"] = binary_metrics(y, r["oof_pred"], alpha=alpha, seed=seed)
        r["per_site_auc"] = _per_site_auc(y, r["oof_score"], s) if s is not None else {}
        results[name] = r
    best = max(models, key=lambda m: (results[m]["auc"]["auc"], -models.index(m)))
    for name in models:
        results[name]["delong_vs_best"] = (None if name == best else
                                           delong_test(y, results[name]["oof_score"], results[best]["oof_score"],
                                                       alpha=alpha))
    return {"best": best, "models": results}


# ----------------------------------------------------------------------------- SHAP

@dataclass(frozen=True)
class Explanation:
    """SHAP values of a fitted baseline pipeline in the space of its selected features.

    Attributes
    ----------
    values : ndarray of shape (n_samples, n_selected)
        SHAP value of each selected (imputed, z-scored) feature for each case.
    feature_names : ndarray of shape (n_selected,), str
        Names of the selected features.
    base_value : float
        Expected model output over the background data.
    output : str
        Scale of ``values`` and ``base_value``: "log-odds" (logistic regression, gradient
        boosting) or "probability" (random forest).
    model_output : ndarray of shape (n_samples,)
        The model output on that scale; ``values.sum(1) + base_value`` equals it (additivity).
    """

    values: np.ndarray
    feature_names: np.ndarray
    base_value: float
    output: str
    model_output: np.ndarray


def explain(pipeline: Pipeline, X_background, X) -> Explanation:
    r"""SHAP values of a fitted :func:`make_pipeline` pipeline for the cases ``X``.

    The cases are passed through every step but the classifier, then explained with
    ``shap.LinearExplainer`` (logistic regression; interventional, exact for a linear model:
    :math:`\phi_j = w_j (x_j - \bar x_j)`) or ``shap.TreeExplainer`` (random forest,
    gradient boosting; interventional with ``X_background``). Additivity:

    .. math::

        f(x) = \phi_0 + \sum_j \phi_j(x),

    with :math:`\phi_0` the mean output over the background.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted pipeline from :func:`make_pipeline`.
    X_background : DataFrame or array-like of shape (n_background, n_features)
        Reference cases (training data, e.g. up to 100 rows), in the raw feature space.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Cases to explain, raw feature space.

    Returns
    -------
    Explanation

    References
    ----------
    Lundberg SM, Lee SI. NeurIPS 2017. Lundberg SM et al. Nat Mach Intell 2020;2:56-67.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(80, 5, random_state=0)
    >>> pipe = make_pipeline("logistic").fit(X, y)
    >>> e = explain(pipe, X[:40], X[40:])
    >>> bool(abs(e.values.sum(1) + e.base_value - e.model_output).max() < 1e-6)
    True
    """
    import shap  # optional heavy dependency (numba): imported only here

    if not isinstance(pipeline, Pipeline) or "clf" not in pipeline.named_steps:
        raise InputError(f"expected a pipeline from make_pipeline, got {type(pipeline).__name__}",
                         fix="Build it with core.radiomics.baseline.make_pipeline and fit it.")
    clf = pipeline.named_steps["clf"]
    try:
        check_is_fitted(clf)
    except Exception as err:
        raise InputError("the pipeline is not fitted", fix="Call pipeline.fit(X, y) first.") from err
    front = pipeline[:-1]
    B, Z = front.transform(X_background), front.transform(X)
    names = np.asarray(front.get_feature_names_out(), dtype=str)
    if isinstance(clf, LogisticRegression):
        ex = shap.LinearExplainer(clf, shap.maskers.Independent(B, max_samples=B.shape[0]))  # whole background
        values, base = np.asarray(ex.shap_values(Z)), float(np.ravel(ex.expected_value)[0])
        output, f = "log-odds", clf.decision_function(Z)
    elif isinstance(clf, (RandomForestClassifier, HistGradientBoostingClassifier)):
        ex = shap.TreeExplainer(clf, B, feature_perturbation="interventional")
        values, base = np.asarray(ex.shap_values(Z)), np.ravel(ex.expected_value)
        if isinstance(clf, RandomForestClassifier):
            k = list(clf.classes_).index(1)
            values, base = (values[..., k] if values.ndim == 3 else values), float(base[k])
            output, f = "probability", clf.predict_proba(Z)[:, k]
        else:
            base = float(base[0])
            output, f = "log-odds", clf.decision_function(Z)
    else:
        raise InputError(f"no SHAP explainer for {type(clf).__name__}", fix=f"Use one of {list(MODELS)}.")
    return Explanation(values=values.reshape(Z.shape[0], -1), feature_names=names, base_value=base,
                       output=output, model_output=np.asarray(f, dtype=float))
