r"""Image signatures of the self-supervised encoder and their association with molecular status.

Does the MAE encoder (:mod:`core.learning.mae`), pretrained without any label, encode
information about a tumour's IDH mutation or 1p/19q codeletion? This module answers with
the usual steps of an imaging-genomics association study, kept small and explicit:

1. **Signatures** (:func:`patient_signatures`): each patient's tumour-centred crop
   (:func:`core.learning.training.tumour_crop`, edge = the encoder's image size) goes
   through the encoder in eval mode; the output tokens are pooled (central patch tokens by
   default, as :class:`~core.learning.mae.ViTClassifier` does) into one vector
   :math:`f \in \mathbb{R}^D` per patient, columns ``f000 .. f{D-1}``.
2. **Univariate tests** (:func:`association_tests`, :func:`association_table`): per
   feature, the two-sided Mann-Whitney U test [1]_ between patients with status 1 and 0,
   the area under the ROC curve as effect size,

   .. math:: \mathrm{AUC} = \frac{U_1}{n_1 n_0}, \qquad
             U_1 = \sum_{i \in 1}\sum_{j \in 0} \bigl[\,[f_i > f_j] + \tfrac12 [f_i = f_j]\,\bigr],

   (0.5: no association; above: higher in status 1), and p-values adjusted for the
   number of tests (:func:`adjust_pvalues`): Benjamini-Hochberg false discovery rate [2]_
   by default, or Bonferroni / Holm [3]_ family-wise error control. Encoder features are
   correlated; BH stays valid under positive regression dependence [4]_, which we assume
   rather than prove (this work).
3. **Multivariate signature** (:func:`multivariate_signature`): standardisation and an
   L2-penalised logistic regression with a *fixed* :math:`C = 1` (this work: no inner
   search, so that the permutation test stays cheap and the estimate has no tuning
   optimism), scored by stratified k-fold cross-validation. The out-of-fold scores give
   one pooled AUC with a DeLong interval (:func:`core.evaluation.roc.roc_auc_ci`); the
   permutation test of Ojala & Garriga [5]_ (:func:`sklearn.model_selection.permutation_test_score`,
   the mean fold AUC refitted on permuted labels) gives
   :math:`p = (1 + \#\{\text{perm} \ge \text{obs}\}) / (1 + n_\text{perm})`.
   The final fit on all patients is returned as a direction in raw feature units:
   :math:`s(f) = f \cdot w + b`.
4. **Where in the image** (:func:`signature_attribution`, :func:`signature_regions`):
   encoder, pooling and the linear signature are one differentiable function of the
   crop, explained with :func:`core.explain.attributions.attribute` (integrated gradients
   by default), then summed over tumour, its aggressive part and the rest of the brain.
5. **Study** (:func:`signature_study`): all of it for a list of markers on one cohort
   cache, optionally among progression patients only (in the FDOPA phantom the molecular
   status changes kinetics only in progression lesions, :mod:`core.phantoms.kinetics_fdopa`),
   summarised by :meth:`SignatureStudy.to_dict` for a model card.

What a positive result means: the encoder's features separate the groups *in this
synthetic cohort*. It says nothing about real patients, and an association found among all
patients can be confounded by the diagnosis (progression vs necrosis) when the marker's
prevalence differs between them.

References
----------
.. [1] Mann HB, Whitney DR. On a test of whether one of two random variables is
   stochastically larger than the other. Ann Math Stat 1947;18:50-60.
.. [2] Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and
   powerful approach to multiple testing. J R Stat Soc B 1995;57:289-300.
.. [3] Holm S. A simple sequentially rejective multiple test procedure. Scand J Stat
   1979;6:65-70.
.. [4] Benjamini Y, Yekutieli D. The control of the false discovery rate in multiple
   testing under dependency. Ann Stat 2001;29:1165-1188.
.. [5] Ojala M, Garriga GC. Permutation tests for studying classifier performance.
   J Mach Learn Res 2010;11:1833-1863.
.. [6] Sundararajan M, Taly A, Yan Q. Axiomatic attribution for deep networks. ICML 2017.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> sig = pd.DataFrame(rng.normal(size=(40, 3)), columns=["f000", "f001", "f002"],
...                    index=pd.Index([f"P{i}" for i in range(40)], name="patient_id"))
>>> status = pd.Series([0, 1] * 20, index=sig.index)
>>> sig.loc[status == 1, "f001"] += 2.0
>>> association_tests(sig, status)["significant"].tolist()
[False, True, False]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.errors import InputError

__all__ = [
    "POOLS",
    "CORRECTIONS",
    "SUBGROUPS",
    "pool_tokens",
    "patient_signatures",
    "adjust_pvalues",
    "association_tests",
    "association_table",
    "SignatureModel",
    "multivariate_signature",
    "SignatureNet",
    "signature_attribution",
    "signature_regions",
    "SignatureStudy",
    "signature_study",
]

#: Token pooling of :func:`pool_tokens` (as :class:`~core.learning.mae.ViTClassifier`).
POOLS = ("centre", "mean", "cls")
#: Multiple-testing corrections of :func:`adjust_pvalues`.
CORRECTIONS = ("fdr_bh", "bonferroni", "holm")
#: Patient subgroups of :func:`signature_study`: cache label 1 / 0.
SUBGROUPS = {"progression": 1, "radionecrosis": 0}

_MIN_PER_CLASS = 5


# ----------------------------------------------------------------------- signatures


def _check_pool(pool: str) -> str:
    if pool not in POOLS:
        raise InputError(f"pool={pool!r} is not understood", fix=f"Use one of {list(POOLS)}.")
    return pool


def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int, int], pool: str = "centre") -> torch.Tensor:
    """Pool encoder tokens ``(B, 1 + N, D)`` (``[cls]`` first) into ``(B, D)``.

    ``"centre"``: mean of the central patch tokens (:func:`~core.learning.mae.central_tokens`);
    ``"mean"``: mean of all patch tokens; ``"cls"``: the ``[cls]`` token. The same pooling
    as :meth:`core.learning.mae.ViTClassifier.features`.

    Parameters
    ----------
    tokens : torch.Tensor of shape (B, 1 + N, D)
    grid : tuple of 3 int
        Patch grid, ``prod(grid) = N``.
    pool : {"centre", "mean", "cls"}, default="centre"

    Returns
    -------
    torch.Tensor of shape (B, D)

    Examples
    --------
    >>> pool_tokens(torch.ones(2, 9, 6), (2, 2, 2)).shape
    torch.Size([2, 6])
    """
    from core.learning.mae import central_tokens

    _check_pool(pool)
    if pool == "cls":
        return tokens[:, 0]
    patches = tokens[:, 1:]
    if pool == "mean":
        return patches.mean(dim=1)
    return patches[:, central_tokens(grid).to(patches.device)].mean(dim=1)


def _crop_edge(encoder) -> int:
    size = tuple(int(s) for s in encoder.config.image_size)
    if len(set(size)) != 1:
        raise InputError(f"the encoder's image size {size} is not a cube",
                         fix="Use an encoder pretrained on cubic crops (MAEConfig image_size=32).")
    return size[0]


def _check_ids(ids, cache_dir) -> list[str]:
    from core.learning.data import read_index

    ids = [str(i) for i in ids]
    if not ids:
        raise InputError("no patient ids given", fix="Pass at least one patient id.")
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise InputError(f"patient {dup!r} is listed more than once", fix="Give each patient once.")
    known = set(read_index(cache_dir)["patient_id"])
    missing = [i for i in ids if i not in known]
    if missing:
        raise InputError(f"patients {missing[:5]} are not in this cache", path=cache_dir,
                         fix="Use ids from index.csv, or rebuild the cache with more patients.")
    return ids


def _device(device) -> torch.device:
    if device is None:
        from core.config import device as default_device

        return default_device()
    return torch.device(device)


def patient_signatures(encoder, cache_dir, ids: Sequence[str], *, pool: str = "centre", batch_size: int = 8,
                       device=None) -> pd.DataFrame:
    """Pooled encoder features of each patient's tumour-centred crop.

    Each crop (:func:`core.learning.training.tumour_crop`, edge = the encoder's image
    size, voxels) is encoded without masking, in eval mode and without gradients; tokens
    are pooled with :func:`pool_tokens`. The encoder is moved to ``device`` and its
    training flag restored afterwards.

    Parameters
    ----------
    encoder : MaskedAutoencoder3D
        With ``.encode(x)`` -> (B, 1 + N, D) and ``.config`` (cubic ``image_size``).
    cache_dir : str or PathLike
        A cohort cache (:func:`core.learning.data.build_cohort_cache`).
    ids : sequence of str
        Patients, each once, all in the cache's index.
    pool : {"centre", "mean", "cls"}, default="centre"
    batch_size : int, default=8
        Crops per forward pass; does not change the result beyond float rounding.
    device : torch.device or str, optional
        Default :func:`core.config.device`.

    Returns
    -------
    pandas.DataFrame of float64, shape (len(ids), D)
        Index ``patient_id`` (in the order of ``ids``), columns ``f000, f001, ...``
        (encoder output units, no normalisation).

    Raises
    ------
    InputError
        Unknown pool, empty or duplicated ids, ids not in the cache, a non-cubic encoder.

    Examples
    --------
    >>> from core.learning.bundles import load_encoder                         # doctest: +SKIP
    >>> enc = load_encoder("data/models_session3/ssl_encoder")                  # doctest: +SKIP
    >>> patient_signatures(enc, "data/learning/seed1", ["DEMO-A-S1-000"]).shape  # doctest: +SKIP
    (1, 96)
    """
    from core.learning.training import tumour_crop

    _check_pool(pool)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} is not a positive integer", fix="Use batch_size >= 1.")
    ids = _check_ids(ids, cache_dir)
    size = _crop_edge(encoder)
    device = _device(device)
    was_training = encoder.training
    encoder = encoder.to(device).eval()
    rows = []
    try:
        with torch.no_grad():
            for start in range(0, len(ids), int(batch_size)):
                chunk = ids[start:start + int(batch_size)]
                x = torch.from_numpy(np.stack([tumour_crop(cache_dir, pid, size)[0] for pid in chunk]))
                tokens = encoder.encode(x.to(device))
                rows.append(pool_tokens(tokens, encoder.config.grid, pool).double().cpu().numpy())
    finally:
        encoder.train(was_training)
    values = np.concatenate(rows)
    columns = [f"f{k:03d}" for k in range(values.shape[1])]
    return pd.DataFrame(values, index=pd.Index(ids, name="patient_id"), columns=columns)


# ----------------------------------------------------------------------- univariate tests


def _check_correction(correction: str) -> str:
    if correction not in CORRECTIONS:
        raise InputError(f"correction={correction!r} is not understood", fix=f"Use one of {list(CORRECTIONS)}.")
    return correction


def adjust_pvalues(p, correction: str = "fdr_bh") -> np.ndarray:
    r"""p-values adjusted for multiple testing (q-values), as :func:`statsmodels.stats.multitest.multipletests`.

    For :math:`m` p-values sorted :math:`p_{(1)} \le \dots \le p_{(m)}`:

    * ``"fdr_bh"`` (Benjamini-Hochberg [2]_): :math:`q_{(i)} = \min_{k \ge i} \min(1, m p_{(k)} / k)`
      (:func:`scipy.stats.false_discovery_control`);
    * ``"bonferroni"``: :math:`q_i = \min(1, m p_i)`;
    * ``"holm"`` [3]_: :math:`q_{(i)} = \max_{k \le i} \min(1, (m - k + 1) p_{(k)})`.

    A test is significant at level :math:`\alpha` when :math:`q \le \alpha`. Holm is never
    larger than Bonferroni, BH never larger than Holm.

    Parameters
    ----------
    p : array-like of shape (m,)
        p-values in [0, 1].
    correction : {"fdr_bh", "bonferroni", "holm"}, default="fdr_bh"

    Returns
    -------
    ndarray of float64, shape (m,)

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.02, 0.04], "bonferroni").round(2).tolist()
    [0.03, 0.06, 0.12]
    >>> adjust_pvalues([0.01, 0.02, 0.04], "fdr_bh").round(2).tolist()
    [0.03, 0.03, 0.04]
    """
    from scipy.stats import false_discovery_control

    _check_correction(correction)
    p = np.asarray(p, dtype=float).reshape(-1)
    if p.size == 0:
        return p.copy()
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise InputError(f"p-values must lie in [0, 1], got range [{np.nanmin(p)}, {np.nanmax(p)}]",
                         fix="Pass p-values of tests.")
    m = p.size
    if correction == "fdr_bh":
        return np.asarray(false_discovery_control(p, method="bh"), dtype=float)
    if correction == "bonferroni":
        return np.minimum(1.0, m * p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    q = np.empty(m)
    q[order] = stepped
    return q


def _align(signatures: pd.DataFrame, status: pd.Series, name: str = "status") -> tuple[np.ndarray, np.ndarray]:
    """Features (n, D) and 0/1 status (n,) in the order of ``signatures``; refuses bad input."""
    if not isinstance(signatures, pd.DataFrame) or signatures.shape[1] == 0:
        raise InputError("signatures must be a DataFrame with one column per feature",
                         fix="Use the output of patient_signatures.")
    if not isinstance(status, pd.Series):
        raise InputError(f"{name} must be a pandas Series indexed by patient_id, got {type(status).__name__}",
                         fix="Index the status by patient_id, e.g. read_index(cache).set_index('patient_id')['idh'].")
    for what, index in (("signatures", signatures.index), (name, status.index)):
        if index.has_duplicates:
            raise InputError(f"patient {index[index.duplicated()][0]!r} appears more than once in {what}",
                             fix="Keep one row per patient.")
    only_sig = signatures.index.difference(status.index)
    only_status = status.index.difference(signatures.index)
    if len(only_sig) or len(only_status):
        raise InputError(f"signatures and {name} are not indexed by the same patients "
                         f"(only in signatures: {list(only_sig[:3])}, only in {name}: {list(only_status[:3])})",
                         fix="Select the same patients in both (signatures.loc[ids], status.loc[ids]).")
    y = status.reindex(signatures.index)
    if y.isna().any():
        raise InputError(f"{name} is missing (NaN) for patients {list(y.index[y.isna()][:3])}",
                         fix="Leave patients of unknown status out of the test.")
    values = np.asarray(y.to_numpy(), dtype=float)
    bad = sorted(set(np.unique(values)) - {0.0, 1.0})
    if bad:
        raise InputError(f"{name} must be 0/1, got values {bad[:3]}", fix="Code the status as 1 (present) / 0.")
    counts = {c: int((values == c).sum()) for c in (0.0, 1.0)}
    if min(counts.values()) == 0:
        raise InputError(f"{name} has one class only ({counts[1.0]} with status 1, {counts[0.0]} with 0)",
                         fix="Test a group with both statuses.")
    if min(counts.values()) < _MIN_PER_CLASS:
        raise InputError(f"{name} has {counts[1.0]} patients with status 1 and {counts[0.0]} with 0; "
                         f"at least {_MIN_PER_CLASS} per class are needed",
                         fix="Use a larger cohort or leave this marker out.")
    x = signatures.to_numpy(dtype=float)
    if not np.all(np.isfinite(x)):
        raise InputError("signatures hold NaN or infinite values", fix="Recompute them or drop those patients.")
    return x, values.astype(int)


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    from scipy.stats import mannwhitneyu

    pos, neg = x[y == 1], x[y == 0]
    res = mannwhitneyu(pos, neg, alternative="two-sided", axis=0, method="auto")
    u = np.asarray(res.statistic, dtype=float)
    p = np.nan_to_num(np.asarray(res.pvalue, dtype=float), nan=1.0)  # constant feature: no evidence
    return pd.DataFrame({"n_pos": len(pos), "n_neg": len(neg), "u": u, "auc": u / (len(pos) * len(neg)), "p": p})


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InputError(f"alpha={alpha!r} is not in (0, 1)", fix="Use a significance level such as 0.05.")
    return float(alpha)


def association_tests(signatures: pd.DataFrame, status: pd.Series, *, correction: str = "fdr_bh",
                      alpha: float = 0.05) -> pd.DataFrame:
    """Per-feature Mann-Whitney U test of one binary status, corrected for the number of features.

    Parameters
    ----------
    signatures : pandas.DataFrame of shape (n_patients, n_features)
        From :func:`patient_signatures`; finite.
    status : pandas.Series of 0/1
        Indexed by the same patients (any order), no NaN, at least 5 per class.
    correction : {"fdr_bh", "bonferroni", "holm"}, default="fdr_bh"
        See :func:`adjust_pvalues`.
    alpha : float, default=0.05
        Level for ``significant`` (``q <= alpha``).

    Returns
    -------
    pandas.DataFrame
        Indexed by feature: ``n_pos``, ``n_neg``, ``u`` (U of status 1), ``auc``
        (:math:`U/(n_1 n_0)`, > 0.5: higher with status 1), ``p`` (two-sided), ``q``,
        ``significant``.

    Raises
    ------
    InputError
        NaN or non-0/1 status, one class only, fewer than 5 patients in a class, patients
        that differ between ``signatures`` and ``status``, non-finite features, bad
        ``correction`` or ``alpha``.

    Examples
    --------
    >>> sig = pd.DataFrame({"f000": np.arange(10.0)}, index=[f"P{i}" for i in range(10)])
    >>> res = association_tests(sig, pd.Series([0] * 5 + [1] * 5, index=sig.index))
    >>> float(res.loc["f000", "auc"]), round(float(res.loc["f000", "p"]), 4)
    (1.0, 0.0079)
    """
    _check_correction(correction)
    alpha = _check_alpha(alpha)
    x, y = _align(signatures, status)
    table = _mann_whitney(x, y)
    table.index = pd.Index(signatures.columns, name="feature")
    table["q"] = adjust_pvalues(table["p"].to_numpy(), correction)
    table["significant"] = table["q"] <= alpha
    return table


def association_table(signatures: pd.DataFrame, markers: Mapping[str, pd.Series], *, correction: str = "fdr_bh",
                      alpha: float = 0.05) -> pd.DataFrame:
    """:func:`association_tests` for several markers, corrected across all marker x feature tests.

    Parameters
    ----------
    signatures : pandas.DataFrame of shape (n_patients, n_features)
    markers : dict of str to pandas.Series of 0/1
        E.g. ``{"idh": ..., "codeletion": ...}``, each indexed by the patients of ``signatures``.
    correction : {"fdr_bh", "bonferroni", "holm"}, default="fdr_bh"
        Applied once to all ``len(markers) * n_features`` p-values.
    alpha : float, default=0.05

    Returns
    -------
    pandas.DataFrame
        One row per marker and feature: ``marker``, ``feature``, then the columns of
        :func:`association_tests`.

    Examples
    --------
    >>> sig = pd.DataFrame({"f000": np.arange(10.0)}, index=[f"P{i}" for i in range(10)])
    >>> m = {"a": pd.Series([0, 1] * 5, index=sig.index), "b": pd.Series([0] * 5 + [1] * 5, index=sig.index)}
    >>> association_table(sig, m)[["marker", "significant"]].values.tolist()
    [['a', False], ['b', True]]
    """
    _check_correction(correction)
    alpha = _check_alpha(alpha)
    if not isinstance(markers, Mapping) or not markers:
        raise InputError("markers must be a non-empty dict of marker name to status Series",
                         fix='Pass e.g. {"idh": status_idh, "codeletion": status_codel}.')
    parts = []
    for name, status in markers.items():
        x, y = _align(signatures, status, name=f"marker {name!r}")
        part = _mann_whitney(x, y)
        part.insert(0, "feature", list(signatures.columns))
        part.insert(0, "marker", str(name))
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table["q"] = adjust_pvalues(table["p"].to_numpy(), correction)
    table["significant"] = table["q"] <= alpha
    return table


# ----------------------------------------------------------------------- multivariate signature


@dataclass
class SignatureModel:
    """A linear signature of a binary status and its cross-validated performance.

    Attributes
    ----------
    features : list of str
        Feature names, in the order of ``weights``.
    weights : ndarray of float64, shape (n_features,)
        Direction in raw feature units: ``score = features @ weights + intercept`` equals
        the decision function (log-odds) of the final fit on all patients.
    intercept : float
    auc, ci_low, ci_high, se : float
        Out-of-fold AUC pooled over the folds, DeLong interval (logit scale) and SE.
    perm_auc : float
        Mean AUC over the folds (the statistic of the permutation test).
    perm_p : float
        Permutation p-value, :math:`(1 + \\#\\{\\text{perm} \\ge \\text{obs}\\})/(1 + n_\\text{perm})`.
    perm_null_mean : float
        Mean of the permutation null distribution (about 0.5).
    oof_scores : pandas.Series
        Out-of-fold decision values per patient.
    n_pos, n_neg, n_splits, n_permutations, seed : int
    C : float
        Inverse L2 penalty strength (fixed).
    """

    features: list[str]
    weights: np.ndarray
    intercept: float
    auc: float
    ci_low: float
    ci_high: float
    se: float
    perm_auc: float
    perm_p: float
    perm_null_mean: float
    oof_scores: pd.Series
    n_pos: int
    n_neg: int
    n_splits: int
    n_permutations: int
    seed: int
    C: float = 1.0

    def score(self, signatures: pd.DataFrame) -> pd.Series:
        """The signature score :math:`f \\cdot w + b` (log-odds) of each row of ``signatures``."""
        missing = [f for f in self.features if f not in signatures.columns]
        if missing:
            raise InputError(f"signatures lack the features {missing[:3]}",
                             fix="Compute them with the same encoder and pooling.")
        x = signatures[self.features].to_numpy(dtype=float)
        return pd.Series(x @ self.weights + self.intercept, index=signatures.index, name="score")

    def to_dict(self) -> dict:
        """Summary figures (JSON-able; no weights or scores)."""
        return {"auc": float(self.auc), "ci_low": float(self.ci_low), "ci_high": float(self.ci_high),
                "se": float(self.se), "perm_auc": float(self.perm_auc), "perm_p": float(self.perm_p),
                "perm_null_mean": float(self.perm_null_mean), "n_pos": int(self.n_pos), "n_neg": int(self.n_neg),
                "n_features": len(self.features), "n_splits": int(self.n_splits),
                "n_permutations": int(self.n_permutations), "seed": int(self.seed), "C": float(self.C),
                "model": "StandardScaler + L2 logistic regression (fixed C)"}


def _pipeline(C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=float(C), max_iter=2000))


def _check_positive_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name}={value!r} is not an integer >= {low}", fix=f"Use {name} >= {low}.")
    return int(value)


def multivariate_signature(signatures: pd.DataFrame, status: pd.Series, *, n_splits: int = 5,
                           n_permutations: int = 200, seed: int = 0, C: float = 1.0) -> SignatureModel:
    """Cross-validated L2 logistic signature of a binary status, with a permutation test.

    Standardisation and logistic regression are refitted inside each fold of a stratified,
    shuffled k-fold split (``StratifiedKFold(n_splits, shuffle=True, random_state=seed)``),
    so no test fold informs its own scaling. See the module docstring for the AUC, its
    DeLong interval and the permutation p-value [5]_.

    Parameters
    ----------
    signatures : pandas.DataFrame of shape (n_patients, n_features)
    status : pandas.Series of 0/1
        Indexed by the same patients; at least ``max(5, n_splits)`` per class.
    n_splits : int, default=5
        Folds (>= 2).
    n_permutations : int, default=200
        Label permutations (>= 1); the smallest attainable p is ``1 / (n_permutations + 1)``.
    seed : int, default=0
        Folds and permutations.
    C : float, default=1.0
        Inverse L2 penalty on standardised features, fixed (this work).

    Returns
    -------
    SignatureModel

    Raises
    ------
    InputError
        As :func:`association_tests`; also too few patients per class for ``n_splits``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sig = pd.DataFrame(rng.normal(size=(40, 4)), index=[f"P{i}" for i in range(40)])
    >>> status = pd.Series([0, 1] * 20, index=sig.index)
    >>> sig.loc[status == 1, 0] += 3.0
    >>> m = multivariate_signature(sig, status, n_permutations=19)
    >>> m.auc > 0.9, m.perm_p
    (True, 0.05)
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, permutation_test_score

    from core.evaluation.roc import roc_auc_ci

    n_splits = _check_positive_int(n_splits, "n_splits", 2)
    n_permutations = _check_positive_int(n_permutations, "n_permutations", 1)
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not np.isfinite(C) or C <= 0:
        raise InputError(f"C={C!r} is not a positive number", fix="Use C > 0, e.g. 1.0.")
    x, y = _align(signatures, status)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if min(n_pos, n_neg) < n_splits:
        raise InputError(f"{min(n_pos, n_neg)} patients in the smaller class cannot fill n_splits={n_splits} folds",
                         fix="Use fewer folds or more patients.")
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=int(seed))
    oof = cross_val_predict(_pipeline(C), x, y, cv=cv, method="decision_function")
    roc = roc_auc_ci(y, oof)
    perm_auc, null, perm_p = permutation_test_score(_pipeline(C), x, y, cv=cv, n_permutations=n_permutations,
                                                    scoring="roc_auc", random_state=int(seed), n_jobs=None)
    final = _pipeline(C).fit(x, y)
    scaler, logit = final[0], final[-1]
    weights = logit.coef_[0] / scaler.scale_
    intercept = float(logit.intercept_[0] - np.dot(weights, scaler.mean_))
    return SignatureModel(features=[str(c) for c in signatures.columns], weights=weights, intercept=intercept,
                          auc=float(roc["auc"]), ci_low=float(roc["ci_low"]), ci_high=float(roc["ci_high"]),
                          se=float(roc["se"]), perm_auc=float(perm_auc), perm_p=float(perm_p),
                          perm_null_mean=float(np.mean(null)),
                          oof_scores=pd.Series(oof, index=signatures.index, name="oof_score"),
                          n_pos=n_pos, n_neg=n_neg, n_splits=n_splits, n_permutations=n_permutations,
                          seed=int(seed), C=float(C))


# ----------------------------------------------------------------------- attribution


class SignatureNet(nn.Module):
    """Encoder, token pooling and a linear signature as one network with logits ``[-s, s]``.

    :math:`s(x) = \\mathrm{pool}(\\mathrm{encode}(x)) \\cdot w + b`; logit 1 is the
    signature score, so explaining target 1 explains the score (and target 0 its negative).

    Parameters
    ----------
    encoder : MaskedAutoencoder3D
        Shared, not copied.
    model : SignatureModel
        Its ``weights`` have the encoder's width.
    pool : {"centre", "mean", "cls"}, default="centre"
        The pooling the signatures were computed with.

    Examples
    --------
    >>> from core.learning.mae import MAEConfig, MaskedAutoencoder3D
    >>> cfg = MAEConfig(in_channels=1, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2,
    ...                 decoder_dim=12, decoder_depth=1, decoder_heads=2)
    >>> m = SignatureModel([f"f{k:03d}" for k in range(12)], np.ones(12), 0.0, 0.5, 0.4, 0.6, 0.05, 0.5, 1.0,
    ...                    0.5, pd.Series(dtype=float), 5, 5, 5, 1, 0)
    >>> SignatureNet(MaskedAutoencoder3D(cfg), m)(torch.zeros(2, 1, 8, 8, 8)).shape
    torch.Size([2, 2])
    """

    def __init__(self, encoder, model: SignatureModel, pool: str = "centre"):
        super().__init__()
        self.pool = _check_pool(pool)
        width = int(encoder.config.embed_dim)
        weights = np.asarray(model.weights, dtype=float).reshape(-1)
        if weights.size != width:
            raise InputError(f"the signature has {weights.size} weights but the encoder {width} features",
                             fix="Use the signature fitted on this encoder's features.")
        self.encoder = encoder
        ref = next(encoder.parameters())
        self.register_buffer("weights", torch.as_tensor(weights, dtype=ref.dtype, device=ref.device))
        self.register_buffer("intercept", torch.tensor(float(model.intercept), dtype=ref.dtype, device=ref.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2)`` = ``[-s, s]``."""
        pooled = pool_tokens(self.encoder.encode(x), self.encoder.config.grid, self.pool)
        s = pooled @ self.weights + self.intercept
        return torch.stack([-s, s], dim=1)


def signature_attribution(encoder, image, model: SignatureModel, *, method: str = "integrated_gradients",
                          pool: str = "centre", **options):
    """Voxel attribution of the signature score of one crop.

    With integrated gradients (default) and its zero baseline [6]_, the map sums to
    :math:`s(x) - s(0)`, the score relative to an empty crop, in log-odds units.

    Parameters
    ----------
    encoder : MaskedAutoencoder3D
        Its training flag is restored afterwards.
    image : array-like or torch.Tensor of shape (C, D, H, W) or (1, C, D, H, W)
        A crop of the encoder's image size (e.g. from :func:`core.learning.training.crop_case`).
    model : SignatureModel
        From :func:`multivariate_signature` on this encoder's features.
    method : str, default="integrated_gradients"
        Any of :data:`core.explain.attributions.METHODS` except ``grad_cam`` and ``lrp``
        (they need a CNN).
    pool : {"centre", "mean", "cls"}, default="centre"
    **options
        Passed to :func:`core.explain.attributions.attribute` (e.g. ``n_steps``).

    Returns
    -------
    core.explain.attributions.Attribution
        Target 1 (the score), ``values`` of shape (C, D, H, W).

    Examples
    --------
    >>> a = signature_attribution(enc, image, model, n_steps=16)   # doctest: +SKIP
    >>> a.values.shape                                             # doctest: +SKIP
    (4, 32, 32, 32)
    """
    from core.explain.attributions import attribute

    if method in ("grad_cam", "lrp"):
        raise InputError(f"method={method!r} needs a convolutional network, not a transformer encoder",
                         fix="Use integrated_gradients, gradient_shap, occlusion or saliency.")
    x = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image, dtype=np.float32))
    spatial = tuple(int(s) for s in x.shape[-3:])
    expected = tuple(int(s) for s in encoder.config.image_size)
    if x.ndim not in (4, 5) or spatial != expected or int(x.shape[-4]) != int(encoder.config.in_channels):
        raise InputError(f"image of shape {tuple(x.shape)} does not fit the encoder "
                         f"({encoder.config.in_channels} channels, {expected} voxels)",
                         fix="Pass a crop from core.learning.training.crop_case with the encoder's image size.")
    was_training = encoder.training
    net = SignatureNet(encoder, model, pool).eval()
    try:
        return attribute(net, x, method, target=1, **options)
    finally:
        encoder.train(was_training)


def signature_regions(attribution, masks: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Share of the positive signature attribution in tumour, aggressive part and rest of brain.

    Regions: ``tumour``; ``aggressive`` (inside the tumour, so it overlaps it); ``rest of
    brain`` = brain minus tumour; plus ``outside masks`` (:func:`core.explain.attributions.region_summary`).

    Parameters
    ----------
    attribution : Attribution or array of shape (C, D, H, W) or (D, H, W)
    masks : dict with ``tumour``, ``aggressive`` and ``brain`` bool arrays of shape (D, H, W)
        E.g. from :func:`core.learning.training.crop_case`.

    Returns
    -------
    pandas.DataFrame
        As :func:`~core.explain.attributions.region_summary`.

    Examples
    --------
    >>> a = np.zeros((4, 4, 4)); a[0] = 1.0
    >>> t = np.zeros((4, 4, 4), bool); t[0] = True
    >>> b = np.zeros((4, 4, 4), bool); b[:2] = True
    >>> signature_regions(a, {"tumour": t, "aggressive": t, "brain": b})["share_positive"].tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    from core.explain.attributions import region_summary

    missing = [k for k in ("tumour", "aggressive", "brain") if k not in masks]
    if missing:
        raise InputError(f"masks lack {missing}",
                         fix="Pass the masks of core.learning.training.crop_case (tumour, aggressive, brain).")
    tumour = np.asarray(masks["tumour"]).astype(bool)
    regions = {"tumour": tumour, "aggressive": np.asarray(masks["aggressive"]).astype(bool),
               "rest of brain": np.asarray(masks["brain"]).astype(bool) & ~tumour}
    return region_summary(attribution, regions)


# ----------------------------------------------------------------------- study


@dataclass
class SignatureStudy:
    """Outcome of :func:`signature_study`.

    Attributes
    ----------
    n : int
        Patients analysed.
    subgroup : str or None
    markers : dict of str to dict
        Per marker: ``n_pos``, ``n_neg``, the multivariate figures (:meth:`SignatureModel.to_dict`),
        ``n_significant`` (features with ``q <= alpha`` after correction across all markers
        and features), ``top_features`` (lowest p: feature, auc, p, q).
    table : pandas.DataFrame
        :func:`association_table` of all markers.
    models : dict of str to SignatureModel
    signatures : pandas.DataFrame
    settings : dict
    """

    n: int
    subgroup: str | None
    markers: dict
    table: pd.DataFrame
    models: dict
    signatures: pd.DataFrame
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able summary for a model card (no arrays)."""
        return {"n": int(self.n), "subgroup": self.subgroup, "n_features": int(self.signatures.shape[1]),
                "settings": dict(self.settings), "markers": {k: dict(v) for k, v in self.markers.items()}}


def signature_study(encoder, cache_dir, ids: Sequence[str] | None = None, *,
                    markers: Sequence[str] = ("idh", "codeletion"), subgroup: str | None = None,
                    pool: str = "centre", correction: str = "fdr_bh", alpha: float = 0.05, n_splits: int = 5,
                    n_permutations: int = 200, seed: int = 0, top_k: int = 5, batch_size: int = 8,
                    device=None) -> SignatureStudy:
    """Association of encoder signatures with molecular markers on one cohort cache.

    Patients are ``ids`` (default: the whole index), restricted to ``subgroup``; their
    signatures (:func:`patient_signatures`) are tested per feature for every marker
    (:func:`association_table`, one correction over all tests) and by a cross-validated
    multivariate signature per marker (:func:`multivariate_signature`).

    Parameters
    ----------
    encoder : MaskedAutoencoder3D
    cache_dir : str or PathLike
    ids : sequence of str, optional
    markers : sequence of str, default=("idh", "codeletion")
        0/1 columns of the cache index.
    subgroup : {None, "progression", "radionecrosis"}, default=None
        Keep the patients with cache label 1 / 0 only.
    pool, correction, alpha
        As :func:`patient_signatures` and :func:`association_table`.
    n_splits, n_permutations, seed
        As :func:`multivariate_signature`.
    top_k : int, default=5
        Features listed per marker (lowest p).
    batch_size, device
        As :func:`patient_signatures`.

    Returns
    -------
    SignatureStudy

    Examples
    --------
    >>> study = signature_study(enc, "data/learning/seed1", subgroup="progression")   # doctest: +SKIP
    >>> study.to_dict()["markers"]["idh"]["auc"]                                        # doctest: +SKIP
    """
    from core.learning.data import read_index

    index = read_index(cache_dir).set_index("patient_id")
    ids = list(index.index) if ids is None else _check_ids(ids, cache_dir)
    if subgroup is not None:
        if subgroup not in SUBGROUPS:
            raise InputError(f"subgroup={subgroup!r} is not understood",
                             fix=f"Use None or one of {list(SUBGROUPS)}.")
        ids = [i for i in ids if int(index.loc[i, "label"]) == SUBGROUPS[subgroup]]
    markers = [str(m) for m in markers]
    unknown = [m for m in markers if m not in index.columns]
    if not markers or unknown:
        raise InputError(f"markers {unknown or markers} are not columns of the cache index",
                         fix="Use columns such as 'idh' and 'codeletion'.")
    top_k = _check_positive_int(top_k, "top_k", 1)
    sig = patient_signatures(encoder, cache_dir, ids, pool=pool, batch_size=batch_size, device=device)
    status = {m: index.loc[sig.index, m].astype(int) for m in markers}
    table = association_table(sig, status, correction=correction, alpha=alpha)
    models, summary = {}, {}
    for m in markers:
        models[m] = multivariate_signature(sig, status[m], n_splits=n_splits, n_permutations=n_permutations,
                                           seed=seed)
        rows = table[table["marker"] == m]
        top = rows.sort_values("p", kind="stable").head(top_k)
        summary[m] = {"n_pos": int(status[m].sum()), "n_neg": int((status[m] == 0).sum()),
                      **models[m].to_dict(), "n_significant": int(rows["significant"].sum()),
                      "top_features": [{"feature": str(r.feature), "auc": float(r.auc), "p": float(r.p),
                                        "q": float(r.q)} for r in top.itertuples()]}
    settings = {"pool": pool, "correction": correction, "correction_scope": "all markers x features",
                "alpha": float(alpha), "crop_voxels": _crop_edge(encoder), "n_splits": int(n_splits),
                "n_permutations": int(n_permutations), "seed": int(seed), "cache": str(cache_dir)}
    return SignatureStudy(n=len(sig), subgroup=subgroup, markers=summary, table=table, models=models,
                          signatures=sig, settings=settings)
