"""Cohort-level sanity study of attribution methods, and where a map puts its evidence.

A single cascading randomisation test (:func:`~core.explain.sanity.cascading_randomisation`)
looks at one patient. :func:`sanity_study` runs it for every attribution method on a few
test patients and summarises, per method, the *final similarity*: the Spearman rank
correlation between the map of the trained model and the map of the same model after
every layer with parameters has been re-initialised (Adebayo et al. [1]_).

Pass rule (this work, after [1]_): a method *passes* when the mean final similarity over
the cases is below ``threshold`` (0.5 by default),

.. math::

    \\bar s = \\frac{1}{n}\\sum_{k=1}^{n} s_k^{\\text{final}} < \\text{threshold},

where :math:`s_k^{\\text{final}}` is :func:`~core.explain.sanity.map_similarity` (the rank
correlation of the absolute channel-summed maps) for case :math:`k`. Adebayo et al. read a
high similarity after randomisation as a failure: the map then shows the input (edges,
bright structures), not what the model learnt. The fraction of single cases that pass is
reported beside it. The optional *data randomisation* arm (:func:`label_randomisation`)
compares with a model of the same architecture trained on shuffled labels.

Not every method applies to every architecture (:func:`applicable_methods`): Grad-CAM
needs a last convolution with spatial feature maps (``model.last_conv``) and LRP needs a
propagation rule for every layer (:func:`~core.explain.attributions.set_lrp_rules`), which
a vision transformer (attention, layer normalisation) does not have. Those methods are
reported as "not applicable", never as failures.

:func:`attribution_regions` says how the absolute attribution divides between the tumour,
its aggressive part and the rest of the brain (reusing
:func:`~core.explain.attributions.region_summary`), and :func:`where_evidence_lies` turns
that into one sentence for a physician.

References
----------
.. [1] Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity checks for
   saliency maps. NeurIPS 2018.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.errors import InputError, MaskError
from core.explain.attributions import (METHODS, Attribution, attribute, channel_sum, check_target, region_summary,
                                       set_lrp_rules)
from core.explain.sanity import cascading_randomisation, map_similarity

__all__ = ["CHEAP_OPTIONS", "MethodSanity", "SanityStudy", "applicable_methods", "attribution_regions",
           "inapplicable_reasons", "label_randomisation", "sanity_study", "where_evidence_lies"]

#: Default options per method, cheap enough for a few patients on a CPU (this work).
CHEAP_OPTIONS = {"integrated_gradients": {"n_steps": 16}, "gradient_shap": {"n_samples": 8},
                 "occlusion": {"window": 8}}

_SCHEMA = "theraboard.explain.sanity_study/1"

_VERDICT_PASS = "passes: the map changes when the model's weights are randomised"
_VERDICT_PASS_MOSTLY = ("passes on average ({k} of {n} cases): the map mostly changes when the model's weights "
                        "are randomised, but not for every patient")
_VERDICT_FAIL = "fails: the map barely depends on what the model learned - treat it as an edge detector"
_VERDICT_LABEL_FAIL = "; but it stays similar for a model trained on shuffled labels - read it with care"


# --------------------------------------------------------------------------------------------
# applicability
# --------------------------------------------------------------------------------------------
def inapplicable_reasons(model: nn.Module) -> dict[str, str]:
    """The attribution methods that do not apply to ``model``, with the reason in words.

    * ``grad_cam`` needs ``model.last_conv``, a convolution whose feature maps keep a spatial
      layout (Selvaraju et al. 2017). A vision transformer's only convolution is its patch
      embedding; the map would then ignore everything the transformer blocks compute.
    * ``lrp`` needs a propagation rule for every layer of the (batch-norm folded) model,
      as :func:`~core.explain.attributions.set_lrp_rules` checks; attention and layer
      normalisation have none here.

    Parameters
    ----------
    model : nn.Module
        A classifier such as :class:`~core.learning.cnn.CNN3D` or
        :class:`~core.learning.mae.ViTClassifier`.

    Returns
    -------
    dict of str to str
        Method name to reason; empty when every method of :data:`METHODS` applies.

    Examples
    --------
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> inapplicable_reasons(CNN3D(CNNConfig(in_channels=1, widths=(4,))))
    {}
    """
    reasons = {}
    if not isinstance(getattr(model, "last_conv", None), nn.Conv3d):
        reasons["grad_cam"] = ("the model has no last convolution layer with spatial feature maps (last_conv); "
                               "Grad-CAM weights such maps, so it does not apply to this architecture")
    from core.learning.cnn import fold_batchnorm

    try:
        set_lrp_rules(fold_batchnorm(model))
    except InputError as err:
        reasons["lrp"] = (f"layer-wise relevance propagation has no rule for every layer of this architecture "
                          f"({err.problem})")
    return reasons


def applicable_methods(model: nn.Module) -> list[str]:
    """The methods of :data:`~core.explain.attributions.METHODS` that make sense for ``model``.

    See :func:`inapplicable_reasons` for the others.

    Examples
    --------
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> applicable_methods(CNN3D(CNNConfig(in_channels=1, widths=(4,))))[:2]
    ['integrated_gradients', 'gradient_shap']
    """
    skip = inapplicable_reasons(model)
    return [m for m in METHODS if m not in skip]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
def _nan_to_none(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def _none_to_nan(v):
    return float("nan") if v is None else float(v)


@dataclass
class MethodSanity:
    """The sanity checks of one attribution method over the cases of a study.

    Attributes
    ----------
    method : str
        One of :data:`~core.explain.attributions.METHODS`.
    reason : str, default=""
        Why the method does not apply to the model; empty when it does.
    curves : list of list of (str, float)
        Per case, the cascading randomisation curve (layer re-initialised, similarity),
        top layer first.
    seconds : float, default=0
        Wall-clock time of the method's tests over all cases, s.
    label_similarities : list of float or None
        Per case, the similarity to the map of the model trained on shuffled labels;
        ``None`` when that arm was not run.
    """

    method: str
    reason: str = ""
    curves: list[list[tuple[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    label_similarities: list[float] | None = None

    @property
    def applicable(self) -> bool:
        """Whether the method applies to the model."""
        return not self.reason

    @property
    def final_similarities(self) -> list[float]:
        """Per case, the similarity after the last (full) randomisation step."""
        return [c[-1][1] for c in self.curves]


def _verdict(res: MethodSanity, threshold: float) -> tuple[object, str]:
    if not res.applicable:
        return None, f"not applicable: {res.reason}"
    finals = np.asarray(res.final_similarities, dtype=float)
    passed = bool(np.nanmean(finals) < threshold)
    k, n = int((finals < threshold).sum()), len(finals)
    if not passed:
        text = _VERDICT_FAIL
    elif k == n:
        text = _VERDICT_PASS
    else:
        text = _VERDICT_PASS_MOSTLY.format(k=k, n=n)
    if passed and res.label_similarities and float(np.nanmean(res.label_similarities)) >= threshold:
        text += _VERDICT_LABEL_FAIL
    return passed, text


_TABLE_COLUMNS = ["method", "applicable", "n", "mean_similarity", "min_similarity", "max_similarity",
                  "pass_fraction", "passed", "label_similarity", "seconds", "verdict"]


@dataclass
class SanityStudy:
    """Cascading randomisation (and optionally label randomisation) of several methods on several cases.

    Attributes
    ----------
    results : dict of str to MethodSanity
        One entry per requested method, in the requested order.
    threshold : float
        The mean final similarity must fall below it for a method to pass.
    target : int
        Logit explained.
    seed : int
        Seed of the re-initialisations.
    options : dict of str to dict
        Attribution options used per method.
    architecture : str
        Class name of the model.

    Examples
    --------
    >>> s = SanityStudy({"saliency": MethodSanity("saliency", curves=[[("classifier", 0.8), ("conv", 0.1)]])},
    ...                 threshold=0.5)
    >>> s.table()["verdict"][0]
    "passes: the map changes when the model's weights are randomised"
    """

    results: dict[str, MethodSanity]
    threshold: float = 0.5
    target: int = 1
    seed: int = 0
    options: dict[str, dict] = field(default_factory=dict)
    architecture: str = ""

    def table(self) -> pd.DataFrame:
        """One row per method.

        Returns
        -------
        pandas.DataFrame
            ``method``, ``applicable``, ``n`` (cases), ``mean_similarity``,
            ``min_similarity``, ``max_similarity`` (final similarities, rank correlation),
            ``pass_fraction`` (cases below the threshold), ``passed`` (mean below the
            threshold; ``None`` when not applicable), ``label_similarity`` (mean of the
            label randomisation arm, NaN when not run), ``seconds`` and ``verdict`` (text).
        """
        rows = []
        for res in self.results.values():
            passed, verdict = _verdict(res, self.threshold)
            finals = np.asarray(res.final_similarities, dtype=float)
            have = res.applicable and finals.size > 0
            labels = res.label_similarities
            rows.append({
                "method": res.method, "applicable": res.applicable, "n": int(finals.size),
                "mean_similarity": float(np.nanmean(finals)) if have else float("nan"),
                "min_similarity": float(np.nanmin(finals)) if have else float("nan"),
                "max_similarity": float(np.nanmax(finals)) if have else float("nan"),
                "pass_fraction": float((finals < self.threshold).mean()) if have else float("nan"),
                "passed": passed,
                "label_similarity": float(np.nanmean(labels)) if labels else float("nan"),
                "seconds": float(res.seconds), "verdict": verdict})
        return pd.DataFrame(rows, columns=_TABLE_COLUMNS)

    def curves(self) -> pd.DataFrame:
        """The mean cascading randomisation curve of each applicable method, for a plot.

        Returns
        -------
        pandas.DataFrame
            Long format: ``method``, ``step`` (1 = top layer re-initialised), ``layer``,
            ``similarity`` (mean over cases), ``similarity_min``, ``similarity_max``.
        """
        rows = []
        for res in self.results.values():
            if not res.applicable or not res.curves:
                continue
            sims = np.asarray([[s for _, s in c] for c in res.curves], dtype=float)
            for step, (layer, _) in enumerate(res.curves[0], start=1):
                col = sims[:, step - 1]
                rows.append({"method": res.method, "step": step, "layer": layer,
                             "similarity": float(np.nanmean(col)), "similarity_min": float(np.nanmin(col)),
                             "similarity_max": float(np.nanmax(col))})
        return pd.DataFrame(rows, columns=["method", "step", "layer", "similarity", "similarity_min",
                                           "similarity_max"])

    def to_dict(self) -> dict:
        """A JSON-able dict (NaN as ``None``), for storage in a model bundle; see :meth:`from_dict`."""
        return {
            "schema": _SCHEMA, "threshold": float(self.threshold), "target": int(self.target),
            "seed": int(self.seed), "architecture": self.architecture,
            "options": {k: dict(v) for k, v in self.options.items()},
            "results": [{"method": r.method, "reason": r.reason, "seconds": float(r.seconds),
                         "curves": [[[str(layer), _nan_to_none(float(s))] for layer, s in c] for c in r.curves],
                         "label_similarities": None if r.label_similarities is None
                         else [_nan_to_none(float(s)) for s in r.label_similarities]}
                        for r in self.results.values()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SanityStudy":
        """Rebuild a study from :meth:`to_dict`.

        Raises
        ------
        InputError
            ``data`` is not a stored sanity study.
        """
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise InputError(f"this is not a stored sanity study (schema {got!r}, expected {_SCHEMA!r})",
                             fix="Pass the dict written by SanityStudy.to_dict().")
        try:
            results = {}
            for r in data["results"]:
                labels = r.get("label_similarities")
                results[r["method"]] = MethodSanity(
                    method=r["method"], reason=r.get("reason", ""), seconds=float(r.get("seconds", 0.0)),
                    curves=[[(str(layer), _none_to_nan(s)) for layer, s in c] for c in r["curves"]],
                    label_similarities=None if labels is None else [_none_to_nan(s) for s in labels])
            return cls(results=results, threshold=float(data["threshold"]), target=int(data["target"]),
                       seed=int(data["seed"]), options={k: dict(v) for k, v in data.get("options", {}).items()},
                       architecture=str(data.get("architecture", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"the stored sanity study is incomplete or malformed ({err!r})",
                             fix="Pass the dict written by SanityStudy.to_dict().") from None


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_images(images) -> list[np.ndarray]:
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__") or len(images) == 0:
        raise InputError(f"no images to study ({type(images).__name__} of length "
                         f"{len(images) if hasattr(images, '__len__') else 'unknown'})",
                         fix="Pass a list of one or more volumes of shape (C, D, H, W).")
    out = []
    for i, img in enumerate(images):
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if arr.ndim == 5 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 4:
            raise InputError(f"image {i} has shape {arr.shape}, not (C, D, H, W)",
                             fix="Pass a list of multi-channel volumes (wrap a single volume in a list).")
        if out and arr.shape != out[0].shape:
            raise InputError(f"image {i} has shape {arr.shape}, image 0 {out[0].shape}",
                             fix="Crop every case to the same grid (e.g. core.learning.training.crop_case).")
        if not np.isfinite(arr).all():
            raise InputError(f"image {i} holds NaN or infinite values", fix="Replace them before explaining.")
        out.append(arr.astype(np.float32, copy=False))
    return out


def _check_methods(methods) -> list[str]:
    if methods is None:
        return list(METHODS)
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown attribution method(s) {unknown or methods!r}", fix=f"Use {list(METHODS)}.")
    if len(set(methods)) != len(methods):
        raise InputError(f"methods {methods!r} repeat a method", fix="Name each method once.")
    return methods


def _check_options(options, methods: list[str], seed: int) -> dict[str, dict]:
    options = {} if options is None else dict(options)
    unknown = [m for m in options if m not in METHODS]
    if unknown:
        raise InputError(f"options given for unknown method(s) {unknown!r}",
                         fix=f"Key the options by method name, one of {list(METHODS)}.")
    merged = {}
    for m in methods:
        opts = {**CHEAP_OPTIONS.get(m, {}), **dict(options.get(m, {}))}
        if m == "gradient_shap":
            opts.setdefault("seed", int(seed))
        merged[m] = opts
    return merged


def _check_model_reads(model: nn.Module, image: np.ndarray, target: int) -> None:
    param = next(model.parameters(), None)
    x = torch.as_tensor(image)[None]
    if param is not None:
        x = x.to(param.device)
    try:
        check_target(model, x, target)
    except InputError:
        raise
    except (RuntimeError, ValueError) as err:
        raise InputError(f"the model cannot read images of shape {tuple(image.shape)} ({str(err)[:160]})",
                         fix="Give volumes with the channels and grid the model was trained on.") from None


def _method_fn(name: str, opts: dict) -> Callable:
    # A callable rather than the name: cascading_randomisation has its own ``seed`` argument,
    # which would swallow gradient SHAP's ``seed`` option.
    def fn(model, x, target):
        return attribute(model, x, name, target=target, **opts)

    fn.__name__ = name
    return fn


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------
def _label_similarities(model_trained, model_random_labels, images, name, opts, target) -> list[float]:
    fn = _method_fn(name, opts)
    return [map_similarity(fn(model_trained, x[None], target), fn(model_random_labels, x[None], target))
            for x in images]


def label_randomisation(model_trained: nn.Module, model_random_labels: nn.Module, images: Sequence[np.ndarray],
                        methods: Sequence[str] | None = None, *, target: int = 1,
                        options: dict[str, dict] | None = None) -> pd.DataFrame:
    """Data randomisation test of Adebayo et al. [1]_: maps of a trained model versus one trained on shuffled labels.

    Train the same architecture with the same recipe on randomly permuted labels (e.g.
    :func:`~core.learning.training.train_classifier` on a shuffled label table); a map
    that stays similar does not depend on what the model learnt from the labels.

    Parameters
    ----------
    model_trained, model_random_labels : nn.Module
        Same architecture, trained on true and on shuffled labels.
    images : sequence of array of shape (C, D, H, W)
        The cases, all on one grid.
    methods : sequence of str, optional
        Default: the methods applicable to ``model_trained`` (:func:`applicable_methods`).
    target : int, default=1
        Logit explained.
    options : dict of str to dict, optional
        Attribution options per method, over :data:`CHEAP_OPTIONS`.

    Returns
    -------
    pandas.DataFrame
        One row per applicable method: ``method``, ``n``, ``mean_similarity``,
        ``min_similarity``, ``max_similarity`` (:func:`~core.explain.sanity.map_similarity`;
        high means the map fails the test).

    Raises
    ------
    InputError
        No images, images of different shapes, an unknown or inapplicable method, a model
        that cannot read the images.

    References
    ----------
    .. [1] Adebayo J et al. Sanity checks for saliency maps. NeurIPS 2018.

    Examples
    --------
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> net = CNN3D(CNNConfig(in_channels=1, widths=(4,))).eval()
    >>> x = np.random.default_rng(0).random((1, 4, 4, 4))
    >>> label_randomisation(net, net, [x], ["saliency"])["mean_similarity"].round(6).tolist()
    [1.0]
    """
    imgs = _check_images(images)
    methods = applicable_methods(model_trained) if methods is None else _check_methods(methods)
    skip = inapplicable_reasons(model_trained)
    bad = [m for m in methods if m in skip]
    if bad:
        raise InputError(f"method(s) {bad!r} do not apply to this model ({skip[bad[0]]})",
                         fix=f"Use {applicable_methods(model_trained)}.")
    opts = _check_options(options, methods, seed=0)
    for model in (model_trained, model_random_labels):
        _check_model_reads(model, imgs[0], target)
    rows = []
    for m in methods:
        sims = np.asarray(_label_similarities(model_trained, model_random_labels, imgs, m, opts[m], target))
        rows.append({"method": m, "n": len(sims), "mean_similarity": float(np.nanmean(sims)),
                     "min_similarity": float(np.nanmin(sims)), "max_similarity": float(np.nanmax(sims))})
    return pd.DataFrame(rows, columns=["method", "n", "mean_similarity", "min_similarity", "max_similarity"])


def sanity_study(model: nn.Module, images: Sequence[np.ndarray], methods: Sequence[str] | None = None, *,
                 target: int = 1, threshold: float = 0.5, seed: int = 0,
                 options: dict[str, dict] | None = None, model_random_labels: nn.Module | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> SanityStudy:
    """Cascading randomisation of every method on every case, summarised per method.

    For each applicable method and each image, :func:`~core.explain.sanity.cascading_randomisation`
    re-initialises the layers from the classifier down (seeded) and records the similarity
    to the trained model's map after each step. A method passes when the mean final
    similarity is below ``threshold`` (see the module docstring; this work after [1]_).
    Methods that do not apply to the architecture (:func:`inapplicable_reasons`) are kept
    as "not applicable" rows and cost nothing.

    Parameters
    ----------
    model : nn.Module
        The trained classifier, taking (1, C, D, H, W). It is not changed.
    images : sequence of array of shape (C, D, H, W)
        A few test cases, all on one grid (e.g. :func:`~core.learning.training.crop_case`).
    methods : sequence of str, optional
        Default: all of :data:`~core.explain.attributions.METHODS`.
    target : int, default=1
        Logit explained.
    threshold : float, default=0.5
        Rank correlation in [-1, 1] that the mean final similarity must fall below (this work).
    seed : int, default=0
        Seed of the re-initialisation (and of gradient SHAP unless its options say otherwise).
    options : dict of str to dict, optional
        Attribution options per method, merged over :data:`CHEAP_OPTIONS`
        (integrated gradients 16 steps, gradient SHAP 8 samples, occlusion window 8 voxels).
    model_random_labels : nn.Module, optional
        The same architecture trained on shuffled labels: adds the data randomisation arm
        (``label_similarity`` in the table).
    progress : callable, optional
        Called as ``progress(done, total, message)`` after each method and case.

    Returns
    -------
    SanityStudy

    Raises
    ------
    InputError
        No images, images of different shapes or not (C, D, H, W), an unknown method or
        option, a bad target or threshold, a model that cannot read the images.

    References
    ----------
    .. [1] Adebayo J, Gilmer J, Muelly M, Goodfellow I, Hardt M, Kim B. Sanity checks for
       saliency maps. NeurIPS 2018.

    Examples
    --------
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> net = CNN3D(CNNConfig(in_channels=1, widths=(4,))).eval()
    >>> study = sanity_study(net, [np.random.default_rng(0).random((1, 4, 4, 4))], ["saliency"])
    >>> study.table()[["method", "n"]].values.tolist()
    [['saliency', 1]]
    """
    imgs = _check_images(images)
    methods = _check_methods(methods)
    if not -1.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold={threshold!r} is outside [-1, 1]", fix="Use a rank correlation such as 0.5.")
    opts = _check_options(options, methods, seed)
    _check_model_reads(model, imgs[0], target)
    if model_random_labels is not None:
        _check_model_reads(model_random_labels, imgs[0], target)
    skip = inapplicable_reasons(model)
    todo = [m for m in methods if m not in skip]
    total, done = len(todo) * len(imgs), 0
    results = {}
    for m in methods:
        if m in skip:
            results[m] = MethodSanity(method=m, reason=skip[m])
            continue
        fn, start, curves = _method_fn(m, opts[m]), time.perf_counter(), []
        for i, x in enumerate(imgs):
            res = cascading_randomisation(model, x[None], fn, target=int(target), seed=int(seed),
                                          threshold=float(threshold))
            curves.append([(str(layer), float(s)) for layer, s in res.curve])
            done += 1
            if progress is not None:
                progress(done, total, f"{m}: case {i + 1} of {len(imgs)}")
        labels = None
        if model_random_labels is not None:
            labels = [float(s) for s in _label_similarities(model, model_random_labels, imgs, m, opts[m], target)]
        results[m] = MethodSanity(method=m, curves=curves, seconds=time.perf_counter() - start,
                                  label_similarities=labels)
    return SanityStudy(results=results, threshold=float(threshold), target=int(target), seed=int(seed),
                       options=opts, architecture=type(model).__name__)


# --------------------------------------------------------------------------------------------
# where the evidence lies
# --------------------------------------------------------------------------------------------
_REGION_COLUMNS = ["region", "n_voxels", "abs_sum", "share", "mean_per_voxel", "relative_density"]


def attribution_regions(attribution, masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """How the absolute attribution divides between tumour, aggressive part, rest of brain and outside.

    The map is summed over channels and its absolute value :math:`|a_v|` is passed to
    :func:`~core.explain.attributions.region_summary`, so that evidence for and against
    the class both count (as in :func:`~core.explain.sanity.map_similarity`; this work):

    .. math::

        \\mathrm{share}(M) = \\frac{\\sum_{v\\in M}|a_v|}{\\sum_v |a_v|}, \\qquad
        \\mathrm{relative\\_density}(M) = \\frac{\\mathrm{mean}_{v\\in M}|a_v|}
        {\\mathrm{mean}_{v\\in B\\setminus T}|a_v|},

    with :math:`T` the tumour and :math:`B` the brain. The tumour, the rest of the brain
    (:math:`B \\setminus T`) and ``"outside the brain"`` are disjoint, so their shares add
    up to 1; the aggressive part lies inside the tumour and is counted in both.

    Parameters
    ----------
    attribution : Attribution or array of shape (C, D, H, W) or (D, H, W)
        The map.
    masks : dict of str to bool array of shape (D, H, W)
        ``tumour`` and ``brain`` (required), ``aggressive`` (optional; left out when
        empty), as :func:`~core.learning.training.crop_case` returns them.

    Returns
    -------
    pandas.DataFrame
        Rows ``tumour``, ``aggressive`` (when given and not empty), ``rest of brain``,
        ``outside the brain`` (when not empty); columns ``region``, ``n_voxels``, ``abs_sum`` (attribution
        units), ``share`` (NaN for an all-zero map), ``mean_per_voxel`` and
        ``relative_density`` (mean per voxel over that of the rest of the brain).

    Raises
    ------
    MaskError
        A required mask is missing or empty, or masks do not match the map's grid.

    Examples
    --------
    >>> a = np.zeros((4, 4, 4)); a[0] = 3.0; a[1:] = 0.5
    >>> t = np.zeros((4, 4, 4), bool); t[0] = True
    >>> df = attribution_regions(a, {"tumour": t, "brain": np.ones((4, 4, 4), bool)})
    >>> df["share"].round(2).tolist(), round(float(df["relative_density"][0]), 1)
    ([0.67, 0.33], 6.0)
    """
    values = attribution.values if isinstance(attribution, Attribution) else attribution
    a = np.abs(channel_sum(values))
    missing = [k for k in ("tumour", "brain") if k not in masks]
    if missing:
        raise MaskError(f"masks {missing!r} are missing (got {sorted(masks)!r})",
                        fix="Pass the masks of crop_case: tumour, aggressive and brain.")
    tm = np.asarray(masks["tumour"])
    for name in ("tumour", "brain", "aggressive"):
        if name in masks and np.asarray(masks[name]).shape != a.shape:
            raise MaskError(f"mask {name!r} has shape {np.asarray(masks[name]).shape}, the attribution {a.shape}",
                            fix="Cut the masks with the same crop as the model input (crop_case).")
    tumour, brain = tm.astype(bool), np.asarray(masks["brain"]).astype(bool)
    if not tumour.any():
        raise MaskError("the tumour mask is empty", fix="Pass the tumour mask of this case's crop.")
    regions = {"tumour": tumour}
    aggressive = np.asarray(masks.get("aggressive", np.zeros(a.shape, bool))).astype(bool)
    if aggressive.any():
        regions["aggressive"] = aggressive
    regions["rest of brain"] = brain & ~tumour
    outside = ~(brain | tumour)
    if outside.any():
        regions["outside the brain"] = outside
    summary = region_summary(a, regions, include_outside=False)
    summary = summary.rename(columns={"positive_sum": "abs_sum", "share_positive": "share"})
    rest = float(summary.loc[summary["region"] == "rest of brain", "mean_per_voxel"].iloc[0])
    summary["relative_density"] = summary["mean_per_voxel"] / rest if rest > 0 else float("nan")
    return summary[_REGION_COLUMNS].reset_index(drop=True)


def _times(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def _density_phrase(r: float) -> str:
    if not np.isfinite(r):
        return "the rest of the brain holds no evidence to compare with"
    if r >= 1.05:
        return f"{_times(r)} denser than in the rest of the brain"
    if r <= 0.95:
        return f"less dense per voxel than the rest of the brain ({_times(r)})"
    return "about as dense as in the rest of the brain"


def where_evidence_lies(summary: pd.DataFrame) -> str:
    """One sentence on where the attribution lies, from :func:`attribution_regions`.

    Parameters
    ----------
    summary : pandas.DataFrame
        The table of :func:`attribution_regions`.

    Returns
    -------
    str
        E.g. "Most of the evidence (62 %) lies in the tumour, 4.0x denser than in the rest of
        the brain." Shares are rounded to whole percent.

    Examples
    --------
    >>> a = np.zeros((4, 4, 4)); a[0] = 3.0; a[1:] = 0.5
    >>> t = np.zeros((4, 4, 4), bool); t[0] = True
    >>> where_evidence_lies(attribution_regions(a, {"tumour": t, "brain": np.ones((4, 4, 4), bool)}))
    'Most of the evidence (67 %) lies in the tumour, 6.0x denser than in the rest of the brain.'
    """
    if not isinstance(summary, pd.DataFrame) or not {"region", "share", "relative_density"} <= set(summary):
        raise InputError("the summary is not a table of attribution_regions",
                         fix="Pass the DataFrame returned by attribution_regions().")
    by = summary.set_index("region")
    if "tumour" not in by.index or "rest of brain" not in by.index:
        raise InputError(f"the summary has regions {list(by.index)!r}, without tumour or rest of brain",
                         fix="Pass the DataFrame returned by attribution_regions().")
    share = by["share"]
    if not np.isfinite(share["tumour"]):
        return "The map holds no evidence: it is zero everywhere."
    disjoint = [r for r in ("tumour", "rest of brain", "outside the brain") if r in by.index]
    top = max(disjoint, key=lambda r: share[r])
    lead = "Most of the evidence" if share[top] > 0.5 else "The largest share of the evidence"
    pct = lambda r: f"{100 * share[r]:.0f} %"  # noqa: E731
    aggressive = f", with {pct('aggressive')} in its aggressive part" if "aggressive" in by.index else ""
    density = _density_phrase(float(by.loc["tumour", "relative_density"]))
    if top == "tumour":
        return f"{lead} ({pct('tumour')}) lies in the tumour, {density}{aggressive}."
    place = "in the rest of the brain" if top == "rest of brain" else "outside the brain"
    return f"{lead} ({pct(top)}) lies {place}; the tumour holds {pct('tumour')}, {density}{aggressive}."
