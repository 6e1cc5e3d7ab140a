r"""Figures and tables of the model-evaluation (cohort) page: ROC, calibration, decision curves, SHAP.

Pure functions: the dictionaries returned by :mod:`core.evaluation` (and SHAP values from
:func:`core.radiomics.baseline.explain`) in, :class:`plotly.graph_objects.Figure` or
:class:`pandas.DataFrame` out. Nothing is recomputed here: every number drawn comes from
the engine's result, so a page can draw a reloaded result as it is. The classifier is
read as radionecrosis = 0 vs true progression = 1.

* :func:`roc_figure`: ROC curves with their pointwise bootstrap bands
  (:func:`core.evaluation.roc_curve_with_band`), the chance diagonal and optional
  operating points.
* :func:`calibration_figure`: reliability curves (:func:`core.evaluation.reliability_curve`)
  with Wilson intervals and the identity line.
* :func:`decision_curve_figure`: net benefit (:func:`core.evaluation.net_benefit`) with
  treat-all and treat-none (Vickers & Elkin 2006).
* :func:`comparison_table`, :func:`format_estimate`, :func:`format_p`: the model comparison
  as strings ready to show.
* :func:`shap_importance_table`, :func:`shap_summary_figure`, :func:`shap_waterfall_figure`:
  global (mean :math:`|\phi_j|`) and local (one case) SHAP views (Lundberg & Lee 2017;
  Lundberg et al. 2020). The layouts follow the beeswarm and waterfall plots of the
  ``shap`` package; the drawing is ours (this work).

Interval labels say "95% CI": the engine's default ``alpha=0.05``.

References
----------
Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction
models. Med Decis Making 2006;26:565-574.
Lundberg SM, Lee SI. A unified approach to interpreting model predictions. NeurIPS 2017.
Lundberg SM, Erion G, Chen H, et al. From local explanations to global understanding with
explainable AI for trees. Nat Mach Intell 2020;2:56-67.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.errors import InputError

__all__ = [
    "MODEL_LABELS",
    "MODEL_COLORS",
    "model_label",
    "model_colour",
    "roc_figure",
    "calibration_figure",
    "decision_curve_figure",
    "format_estimate",
    "format_p",
    "comparison_table",
    "COLUMNS",
    "shap_importance_table",
    "shap_summary_figure",
    "shap_waterfall_figure",
]

#: Display names of the baseline models (fallback: the key itself).
MODEL_LABELS = {"logistic": "Logistic regression", "random_forest": "Random forest",
                "gradient_boosting": "Gradient boosting"}
#: Stable colours of the baseline models; other names cycle through ``_CYCLE``.
MODEL_COLORS = {"logistic": "#1f77b4", "random_forest": "#2ca02c", "gradient_boosting": "#ff7f0e"}
_CYCLE = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")
_REFERENCE = "#9a9a9a"            # chance / identity / treat-none lines
_HIGH, _LOW = "#ff0051", "#008bfb"  # SHAP: high feature value / positive push (red), low / negative (blue)
_LAYOUT = dict(template="plotly_dark", margin=dict(l=60, r=20, t=40, b=50), hovermode="closest",
               legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))


def model_label(name: str) -> str:
    """Display name of a model key, e.g. ``"random_forest"`` -> ``"Random forest"``.

    Examples
    --------
    >>> model_label("logistic"), model_label("my_net")
    ('Logistic regression', 'my_net')
    """
    return MODEL_LABELS.get(name, str(name))


def model_colour(name: str, n: int = 0) -> str:
    """Colour of a model: fixed for the baseline models, else the ``n``-th colour of a cycle.

    Parameters
    ----------
    name : str
        Model key.
    n : int, default=0
        Position of the model among the unknown ones (cycles through 6 colours).

    Examples
    --------
    >>> model_colour("logistic"), model_colour("other", 1)
    ('#1f77b4', '#8c564b')
    """
    return MODEL_COLORS.get(name, _CYCLE[n % len(_CYCLE)])


def _colours(names) -> dict[str, str]:
    unknown = [m for m in names if m not in MODEL_COLORS]
    return {m: model_colour(m, unknown.index(m) if m in unknown else 0) for m in names}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# ----------------------------------------------------------------------------- input checks

def _check_curves(curves, what: str, producer: str) -> None:
    if not isinstance(curves, Mapping) or len(curves) == 0:
        raise InputError(f"{what} needs at least one model, got {curves!r}",
                         fix=f"Pass a dict {{model name: result of {producer}}}.")


def _array(entry: Mapping, key: str, model: str, producer: str, *, finite: bool = True,
           unit_interval: bool = False) -> np.ndarray:
    if not isinstance(entry, Mapping) or key not in entry:
        keys = list(entry) if isinstance(entry, Mapping) else type(entry).__name__
        raise InputError(f"model {model!r} has no {key!r} (got {keys})",
                         fix=f"Pass the dict returned by {producer}.")
    try:
        arr = np.asarray(entry[key], dtype=float)
    except (TypeError, ValueError) as err:
        raise InputError(f"{key!r} of model {model!r} is not numeric", fix=f"Pass the dict returned by {producer}.") \
            from err
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{key!r} of model {model!r} has shape {arr.shape}, not a non-empty 1-D array",
                         fix=f"Pass the dict returned by {producer}.")
    if finite and not np.all(np.isfinite(arr)):
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputError(f"{key!r} of model {model!r} holds NaN or infinite values (first at index {i}: {arr[i]})",
                         fix=f"Recompute it with {producer}.")
    if unit_interval and (np.any(arr < 0) | np.any(arr > 1)):
        i = int(np.flatnonzero((arr < 0) | (arr > 1))[0])
        raise InputError(f"{key!r} of model {model!r} holds values outside [0, 1] (index {i}: {arr[i]})",
                         fix="Pass rates and probabilities, not percentages or scores.")
    return arr


def _arrays(entry, keys, model, producer, **kw) -> list[np.ndarray]:
    out = [_array(entry, k, model, producer, **kw) for k in keys]
    sizes = {k: a.size for k, a in zip(keys, out)}
    if len(set(sizes.values())) != 1:
        raise InputError(f"model {model!r} has arrays of different lengths {sizes}",
                         fix=f"Pass the dict returned by {producer} unchanged.")
    return out


def _number(value, what: str, *, allow_nan: bool = True) -> float:
    if value is None and allow_nan:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)):
        raise InputError(f"{what} must be a number, got {value!r}", fix="Pass a float (NaN where undefined).")
    v = float(value)
    if math.isinf(v) or (math.isnan(v) and not allow_nan):
        raise InputError(f"{what} must be finite, got {v}", fix="Pass a finite number.")
    return v


# ----------------------------------------------------------------------------- formatting

def format_estimate(value, lo, hi, digits: int = 2) -> str:
    """Format an estimate with its interval, e.g. ``"0.83 (0.75-0.90)"``.

    Parameters
    ----------
    value, lo, hi : float or None
        Estimate and interval bounds; NaN or None read as undefined.
    digits : int, default=2
        Decimals.

    Returns
    -------
    str
        ``"n/a"`` when the value is undefined, ``"0.80 (n/a)"`` when only the interval is.
        When a bound is negative (e.g. a difference of AUCs) the bounds are joined by
        " to " instead of a hyphen, so that minus signs stay readable (this work).

    Examples
    --------
    >>> format_estimate(0.8, 0.7, 0.9)
    '0.80 (0.70-0.90)'
    >>> format_estimate(-0.05, -0.12, 0.021)
    '-0.05 (-0.12 to 0.02)'
    >>> format_estimate(float("nan"), 0.1, 0.2)
    'n/a'
    """
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 0:
        raise InputError(f"digits must be a non-negative integer, got {digits!r}", fix="Use e.g. digits=2.")
    v, a, b = (_number(x, name) for x, name in ((value, "value"), (lo, "ci_low"), (hi, "ci_high")))
    if math.isnan(v):
        return "n/a"
    text = f"{v:.{digits}f}"
    if math.isnan(a) or math.isnan(b):
        return f"{text} (n/a)"
    sep = " to " if min(a, b) < 0 else "-"
    return f"{text} ({a:.{digits}f}{sep}{b:.{digits}f})"


def format_p(p) -> str:
    """Format a p-value: three decimals, ``"<0.001"`` below 0.001, ``"n/a"`` when undefined.

    Parameters
    ----------
    p : float or None
        p-value in [0, 1]; NaN or None read as undefined.

    Examples
    --------
    >>> format_p(0.0123), format_p(0.0004), format_p(None)
    ('0.012', '<0.001', 'n/a')
    """
    v = _number(p, "p-value")
    if math.isnan(v):
        return "n/a"
    if not 0.0 <= v <= 1.0:
        raise InputError(f"p-value must be in [0, 1], got {v}", fix="Pass the p of core.evaluation.delong_test.")
    return "<0.001" if v < 0.001 else f"{v:.3f}"


# ----------------------------------------------------------------------------- ROC

_ROC_KEYS = ("fpr", "tpr", "tpr_low", "tpr_high")
_ROC_PRODUCER = "core.evaluation.roc_curve_with_band"


def _roc_legend(name: str, entry: Mapping) -> str:
    if "auc" not in entry:
        raise InputError(f"model {name!r} has no 'auc'", fix=f"Pass the dict returned by {_ROC_PRODUCER}.")
    auc = _number(entry["auc"], f"auc of model {name!r}")
    ci = entry.get("auc_ci")
    if ci is None or math.isnan(auc):
        return f"{model_label(name)} (AUC {'n/a' if math.isnan(auc) else f'{auc:.2f}'})"
    if not isinstance(ci, (tuple, list, np.ndarray)) or len(ci) != 2:
        raise InputError(f"auc_ci of model {name!r} must be a pair (low, high), got {ci!r}",
                         fix='Pass e.g. auc_ci=(r["ci_low"], r["ci_high"]) from core.evaluation.roc_auc_ci.')
    lo, hi = (_number(c, f"auc_ci of model {name!r}") for c in ci)
    ci_text = "n/a" if math.isnan(lo) or math.isnan(hi) else f"{lo:.2f}-{hi:.2f}"
    return f"{model_label(name)} (AUC {auc:.2f}, 95% CI {ci_text})"


def _check_point(points, name) -> tuple[float, float]:
    pt = points[name]
    if not isinstance(pt, (tuple, list, np.ndarray)) or len(pt) != 2:
        raise InputError(f"operating point of model {name!r} must be (fpr, tpr), got {pt!r}",
                         fix="Pass e.g. (1 - specificity, sensitivity) at the chosen threshold.")
    f, t = (_number(v, f"operating point of model {name!r}", allow_nan=False) for v in pt)
    if not (0.0 <= f <= 1.0 and 0.0 <= t <= 1.0):
        raise InputError(f"operating point of model {name!r} is outside [0, 1]: {(f, t)}",
                         fix="Pass rates (fpr, tpr) between 0 and 1.")
    return f, t


def roc_figure(curves: Mapping[str, dict], *, points: Mapping[str, tuple[float, float]] | None = None,
               height: int = 420) -> go.Figure:
    """ROC curves with their pointwise confidence bands, the chance diagonal and operating points.

    Parameters
    ----------
    curves : dict of str to dict
        Per model key, the dict of :func:`core.evaluation.roc_curve_with_band` (``fpr``,
        ``tpr``, ``tpr_low``, ``tpr_high`` on one FPR grid, ``auc``), optionally with
        ``auc_ci`` = (low, high), e.g. the DeLong interval of :func:`core.evaluation.roc_auc_ci`.
    points : dict of str to (float, float), optional
        Operating point (false-positive rate, true-positive rate) per model, e.g. at the
        chosen threshold; drawn as a marker in the model's colour.
    height : int, default=420
        Figure height in pixels; the plot area is kept square.

    Returns
    -------
    plotly.graph_objects.Figure
        Per model, in order: the band (a closed polygon along ``tpr_high`` and back along
        ``tpr_low``, translucent, no legend entry) and the curve, legend
        ``"Logistic regression (AUC 0.83, 95% CI 0.75-0.90)"``; then the dashed chance
        diagonal; then the operating points.

    Examples
    --------
    >>> from core.evaluation import roc_curve_with_band
    >>> c = roc_curve_with_band([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], n_boot=100)
    >>> fig = roc_figure({"logistic": c})
    >>> [t.name for t in fig.data][1]
    'Logistic regression (AUC 0.75)'
    """
    _check_curves(curves, "roc_figure", _ROC_PRODUCER)
    points = dict(points or {})
    for name in points:
        if name not in curves:
            raise InputError(f"operating point given for {name!r}, which has no ROC curve",
                             fix=f"Use one of {list(curves)}.")
    colours = _colours(list(curves))
    fig = go.Figure()
    for name, entry in curves.items():
        fpr, tpr, low, high = _arrays(entry, _ROC_KEYS, name, _ROC_PRODUCER, unit_interval=True)
        legend = _roc_legend(name, entry)
        colour = colours[name]
        fig.add_trace(go.Scatter(
            x=np.r_[fpr, fpr[::-1]], y=np.r_[high, low[::-1]], fill="toself", mode="lines",
            fillcolor=_rgba(colour, 0.2), line=dict(width=0, color=colour), hoverinfo="skip",
            name=f"{model_label(name)} 95% band", legendgroup=name, showlegend=False))
        fig.add_trace(go.Scatter(
            x=fpr, y=tpr, mode="lines", name=legend, legendgroup=name, line=dict(color=colour, width=2),
            hovertemplate=f"{model_label(name)}<br>1 - specificity %{{x:.2f}}<br>sensitivity %{{y:.2f}}"
                          "<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Chance (AUC 0.50)",
                             line=dict(color=_REFERENCE, width=1, dash="dash"), hoverinfo="skip"))
    for name in points:
        f, t = _check_point(points, name)
        fig.add_trace(go.Scatter(
            x=[f], y=[t], mode="markers", name=f"{model_label(name)} operating point", legendgroup=name,
            showlegend=False,  # same colour as its curve; the hover names it (keeps the legend short)
            marker=dict(color=colours[name], size=11, symbol="diamond", line=dict(color="white", width=1)),
            hovertemplate=f"{model_label(name)}<br>sensitivity {t:.2f}<br>specificity {1 - f:.2f}<extra></extra>"))
    fig.update_layout(height=height, **_LAYOUT, xaxis_title="1 - specificity (false-positive rate)",
                      yaxis_title="Sensitivity (true-positive rate)")
    fig.update_xaxes(range=[0, 1], constrain="domain")
    fig.update_yaxes(range=[0, 1], scaleanchor="x", scaleratio=1, constrain="domain")
    return fig


# ----------------------------------------------------------------------------- calibration

_CAL_KEYS = ("mean_predicted", "observed", "observed_low", "observed_high", "count")
_CAL_PRODUCER = "core.evaluation.reliability_curve"


def _calibration_legend(name: str, entry: Mapping) -> str:
    parts = []
    for key, label in (("brier", "Brier"), ("ece", "ECE")):
        if key in entry:
            v = _number(entry[key], f"{key} of model {name!r}")
            parts.append(f"{label} {'n/a' if math.isnan(v) else f'{v:.3f}'}")
    return f"{model_label(name)} ({', '.join(parts)})" if parts else model_label(name)


def calibration_figure(curves: Mapping[str, dict], *, height: int = 420) -> go.Figure:
    """Reliability diagram: observed fraction with progression against mean predicted probability.

    Parameters
    ----------
    curves : dict of str to dict
        Per model key, the dict of :func:`core.evaluation.reliability_curve`
        (``mean_predicted``, ``observed``, ``observed_low``, ``observed_high``, ``count``, one
        entry per non-empty bin), optionally with ``brier`` and ``ece`` (floats, shown in the
        legend with 3 decimals).
    height : int, default=420
        Figure height in pixels; the plot area is kept square.

    Returns
    -------
    plotly.graph_objects.Figure
        One trace per model (markers joined by lines, asymmetric vertical error bars from
        ``observed_low`` to ``observed_high``, the bin count in ``customdata`` and the hover),
        then the dashed identity line "Perfect calibration".

    Examples
    --------
    >>> from core.evaluation import reliability_curve
    >>> r = reliability_curve([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2, strategy="uniform")
    >>> fig = calibration_figure({"logistic": {**r, "brier": 0.255}})
    >>> fig.data[0].name
    'Logistic regression (Brier 0.255)'
    """
    _check_curves(curves, "calibration_figure", _CAL_PRODUCER)
    colours = _colours(list(curves))
    fig = go.Figure()
    for name, entry in curves.items():
        pred, obs, low, high, count = _arrays(entry, _CAL_KEYS, name, _CAL_PRODUCER, unit_interval=False)
        for key, arr in (("mean_predicted", pred), ("observed", obs), ("observed_low", low),
                         ("observed_high", high)):
            if np.any(arr < 0) or np.any(arr > 1):
                raise InputError(f"{key!r} of model {name!r} holds values outside [0, 1]: {arr.tolist()}",
                                 fix=f"Pass the dict returned by {_CAL_PRODUCER}.")
        if np.any(low > obs + 1e-12) or np.any(high < obs - 1e-12):
            raise InputError(f"the interval of model {name!r} does not contain the observed fractions",
                             fix=f"Pass observed_low <= observed <= observed_high, as {_CAL_PRODUCER} returns.")
        if np.any(count < 0) or np.any(count != np.round(count)):
            raise InputError(f"'count' of model {name!r} must hold non-negative integers, got {count.tolist()}",
                             fix=f"Pass the dict returned by {_CAL_PRODUCER}.")
        colour = colours[name]
        fig.add_trace(go.Scatter(
            x=pred, y=obs, mode="lines+markers", name=_calibration_legend(name, entry),
            line=dict(color=colour, width=1.5), marker=dict(color=colour, size=8),
            error_y=dict(type="data", symmetric=False, array=high - obs, arrayminus=obs - low, visible=True,
                         thickness=1.2, width=4, color=colour),
            customdata=count.astype(int),
            hovertemplate=f"{model_label(name)}<br>predicted %{{x:.2f}}<br>observed %{{y:.2f}}"
                          "<br>n = %{customdata} cases<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfect calibration",
                             line=dict(color=_REFERENCE, width=1, dash="dash"), hoverinfo="skip"))
    fig.update_layout(height=height, **_LAYOUT, xaxis_title="Predicted probability of progression",
                      yaxis_title="Observed fraction with progression")
    fig.update_xaxes(range=[0, 1], constrain="domain")
    fig.update_yaxes(range=[0, 1], scaleanchor="x", scaleratio=1, constrain="domain")
    return fig


# ----------------------------------------------------------------------------- decision curves

_DCA_KEYS = ("thresholds", "model", "treat_all", "treat_none")
_DCA_PRODUCER = "core.evaluation.net_benefit"


def _net_benefit_range(models: list[np.ndarray], treat_all: np.ndarray) -> tuple[float, float]:
    """y range (this work): top = max(treat-all, models, 0.01); bottom = min(-0.05, lowest model
    value) but not below -top; 5 % of the span added on both sides."""
    model_values = np.concatenate(models)
    top = max(float(treat_all.max()), float(model_values.max()), 0.01)
    bottom = max(min(-0.05, float(model_values.min())), -top)
    pad = 0.05 * (top - bottom)
    return bottom - pad, top + pad


def decision_curve_figure(curves: Mapping[str, dict], *, height: int = 420) -> go.Figure:
    r"""Decision curves: net benefit of each model, treat-all and treat-none, against threshold probability.

    .. math::

        NB(p_t) = \frac{TP}{n} - \frac{FP}{n}\,\frac{p_t}{1 - p_t}

    (Vickers & Elkin 2006; computed by :func:`core.evaluation.net_benefit`).

    Parameters
    ----------
    curves : dict of str to dict
        Per model key, the dict of :func:`core.evaluation.net_benefit` (``thresholds``,
        ``model``, ``treat_all``, ``treat_none``). All models must share the thresholds
        and the cohort (the same ``treat_all``), because treat-all and treat-none are
        drawn once, from the first entry.
    height : int, default=420
        Figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure
        One line per model, then "Treat all" (dotted) and "Treat none" (dashed). The
        y axis is clipped (this work's choice) so that the steep negative tail of
        treat-all at high thresholds does not squash the plot: the top is the largest of
        treat-all (about the prevalence), the models and 0.01; the bottom is -0.05, or
        the lowest model value when lower, but never below minus the top; 5 % of the span
        is added at both ends.

    References
    ----------
    Vickers AJ, Elkin EB. Med Decis Making 2006;26:565-574.

    Examples
    --------
    >>> from core.evaluation import net_benefit
    >>> nb = net_benefit([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], [0.1, 0.3, 0.5])
    >>> [t.name for t in decision_curve_figure({"logistic": nb}).data]
    ['Logistic regression', 'Treat all', 'Treat none']
    """
    _check_curves(curves, "decision_curve_figure", _DCA_PRODUCER)
    colours = _colours(list(curves))
    first = next(iter(curves))
    ref_t, _, ref_all, ref_none = _arrays(curves[first], _DCA_KEYS, first, _DCA_PRODUCER)
    if np.any(ref_t <= 0) or np.any(ref_t >= 1):
        raise InputError(f"thresholds of model {first!r} must lie strictly between 0 and 1, got {ref_t.tolist()}",
                         fix=f"Pass the dict returned by {_DCA_PRODUCER}.")
    fig = go.Figure()
    models = []
    for name, entry in curves.items():
        t, nb, treat_all, _ = _arrays(entry, _DCA_KEYS, name, _DCA_PRODUCER)
        if t.shape != ref_t.shape or not np.allclose(t, ref_t) or not np.allclose(treat_all, ref_all):
            raise InputError(f"model {name!r} has other thresholds or another cohort than model {first!r}",
                             fix="Compute every model's net benefit on the same cases and thresholds.")
        models.append(nb)
        fig.add_trace(go.Scatter(
            x=t, y=nb, mode="lines", name=model_label(name), line=dict(color=colours[name], width=2),
            hovertemplate=f"{model_label(name)}<br>threshold %{{x:.2f}}<br>net benefit %{{y:.3f}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=ref_t, y=ref_all, mode="lines", name="Treat all",
                             line=dict(color="#d0d0d0", width=1.5, dash="dot"),
                             hovertemplate="Treat all<br>threshold %{x:.2f}<br>net benefit %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=ref_t, y=ref_none, mode="lines", name="Treat none",
                             line=dict(color=_REFERENCE, width=1.5, dash="dash"), hoverinfo="skip"))
    fig.update_layout(height=height, **_LAYOUT, xaxis_title="Threshold probability", yaxis_title="Net benefit")
    fig.update_xaxes(range=[float(ref_t.min()), float(ref_t.max())])
    fig.update_yaxes(range=list(_net_benefit_range(models, ref_all)))
    return fig


# ----------------------------------------------------------------------------- comparison table

COLUMNS = ("Model", "AUC (95% CI)", "Sensitivity (95% CI)", "Specificity (95% CI)", "Precision (95% CI)",
           "NPV (95% CI)", "F1 (95% CI)", "DeLong p vs best", "ΔAUC vs best (95% CI)")
_METRIC_COLUMNS = (("sensitivity", "Sensitivity (95% CI)"), ("specificity", "Specificity (95% CI)"),
                   ("ppv", "Precision (95% CI)"), ("npv", "NPV (95% CI)"), ("f1", "F1 (95% CI)"))


def _triple(obj, what: str, keys=("value", "ci_low", "ci_high")) -> tuple:
    """(value, low, high) of an Estimate-like object or a dict with those keys."""
    if isinstance(obj, Mapping):
        if all(k in obj for k in keys):
            return tuple(obj[k] for k in keys)
    elif all(hasattr(obj, k) for k in keys):
        return tuple(getattr(obj, k) for k in keys)
    raise InputError(f"{what} must have {list(keys)}, got {obj!r}",
                     fix="Pass the results of core.radiomics.baseline.evaluate_models (or their JSON reload).")


def _row(name: str, result, is_best: bool) -> dict:
    if not isinstance(result, Mapping) or "auc" not in result or "metrics" not in result:
        raise InputError(f"result of model {name!r} needs 'auc' and 'metrics', got {result!r:.200}",
                         fix="Pass results['models'] of core.radiomics.baseline.evaluate_models.")
    row = {"Model": model_label(name),
           "AUC (95% CI)": format_estimate(*_triple(result["auc"], f"auc of {name!r}", ("auc", "ci_low", "ci_high")))}
    metrics = result["metrics"]
    if not isinstance(metrics, Mapping):
        raise InputError(f"metrics of model {name!r} must be a dict, got {metrics!r:.200}",
                         fix="Pass the dict of core.evaluation.binary_metrics.")
    for key, column in _METRIC_COLUMNS:
        if key not in metrics:
            raise InputError(f"metrics of model {name!r} have no {key!r}",
                             fix="Pass the dict of core.evaluation.binary_metrics.")
        row[column] = format_estimate(*_triple(metrics[key], f"{key} of {name!r}"))
    delong = result.get("delong_vs_best")
    if is_best:
        row["DeLong p vs best"], row["ΔAUC vs best (95% CI)"] = "best", "—"
    elif delong is None:
        row["DeLong p vs best"], row["ΔAUC vs best (95% CI)"] = "n/a", "n/a"
    else:
        if not isinstance(delong, Mapping) or not all(k in delong for k in ("p", "ci_low", "ci_high")):
            raise InputError(f"delong_vs_best of model {name!r} needs p, ci_low, ci_high, got {delong!r:.200}",
                             fix="Pass the dict of core.evaluation.delong_test.")
        if "difference" in delong:
            diff = delong["difference"]
        elif "auc_a" in delong and "auc_b" in delong:
            a, b = (_number(delong[k], f"{k} of {name!r}") for k in ("auc_a", "auc_b"))
            diff = a - b
        else:
            raise InputError(f"delong_vs_best of model {name!r} has neither 'difference' nor auc_a/auc_b",
                             fix="Pass the dict of core.evaluation.delong_test.")
        row["DeLong p vs best"] = format_p(delong["p"])
        row["ΔAUC vs best (95% CI)"] = format_estimate(diff, delong["ci_low"], delong["ci_high"])
    return row


def comparison_table(results: Mapping[str, dict], best: str) -> pd.DataFrame:
    """Model comparison as display strings: AUC, metrics at the cut, DeLong against the best model.

    Parameters
    ----------
    results : dict of str to dict
        Per model key, a dict with ``auc`` (``auc``, ``ci_low``, ``ci_high`` as from
        :func:`core.evaluation.roc_auc_ci`), ``metrics`` (:func:`core.evaluation.binary_metrics`:
        ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``f1`` as
        :class:`core.evaluation.Estimate` or as dicts with ``value``, ``ci_low``, ``ci_high``,
        as after a JSON reload) and ``delong_vs_best`` (:func:`core.evaluation.delong_test` of
        this model against the best: ``p``, ``ci_low``, ``ci_high`` and ``difference`` or
        ``auc_a``/``auc_b``; None for the best model), e.g. ``evaluate_models(...)["models"]``.
    best : str
        Key of the best model (``evaluate_models(...)["best"]``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; the best model first, the others in the given order.
        Estimates read ``"0.83 (0.75-0.90)"`` (see :func:`format_estimate`), undefined ones
        ``"n/a"``; p-values as :func:`format_p`, ``"best"`` for the best model. ΔAUC is this
        model's AUC minus the best's, with DeLong's interval; ``"—"`` for the best model.

    Examples
    --------
    >>> e = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    >>> r = {"auc": {"auc": 0.83, "ci_low": 0.75, "ci_high": 0.9},
    ...      "metrics": dict.fromkeys(["sensitivity", "specificity", "ppv", "npv", "f1"], e),
    ...      "delong_vs_best": None}
    >>> comparison_table({"logistic": r}, "logistic").iloc[0, :3].tolist()
    ['Logistic regression', '0.83 (0.75-0.90)', '0.80 (0.70-0.90)']
    """
    _check_curves(results, "comparison_table", "core.radiomics.baseline.evaluate_models")
    if best not in results:
        raise InputError(f"best model {best!r} is not among the results {list(results)}",
                         fix="Pass best=evaluate_models(...)['best'].")
    order = [best] + [m for m in results if m != best]
    return pd.DataFrame([_row(m, results[m], m == best) for m in order], columns=list(COLUMNS))


# ----------------------------------------------------------------------------- SHAP

def _check_max_features(max_features) -> int:
    if isinstance(max_features, bool) or not isinstance(max_features, (int, np.integer)) or max_features < 1:
        raise InputError(f"max_features must be a positive integer, got {max_features!r}",
                         fix="Use e.g. max_features=15.")
    return int(max_features)


def _check_names(feature_names, n_features: int) -> np.ndarray:
    names = np.asarray(feature_names, dtype=object).astype(str)
    if names.ndim != 1 or names.size != n_features:
        raise InputError(f"feature_names has shape {names.shape} but there are {n_features} features",
                         fix="Pass one name per column of the SHAP values.")
    uniq, counts = np.unique(names, return_counts=True)
    if np.any(counts > 1):
        raise InputError(f"feature names are not unique: {uniq[counts > 1][:5].tolist()}",
                         fix="Give every feature its own name.")
    return names


def _check_shap(values, feature_names) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise InputError(f"SHAP values have shape {v.shape}, not (n_cases, n_features)",
                         fix="Pass Explanation.values of core.radiomics.baseline.explain.")
    if not np.all(np.isfinite(v)):
        r, c = np.argwhere(~np.isfinite(v))[0]
        raise InputError(f"SHAP values hold NaN or infinite values (case {r}, feature {c}: {v[r, c]})",
                         fix="Explain cases after imputation (as explain() does).")
    return v, _check_names(feature_names, v.shape[1])


def _ranking(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k features with the largest mean |SHAP| (ties: column order) and that mean."""
    importance = np.abs(values).mean(axis=0)
    order = np.argsort(-importance, kind="stable")[:k]
    return order, importance[order]


def shap_importance_table(values, feature_names, max_features: int = 15) -> pd.DataFrame:
    r"""Global SHAP importance: mean absolute SHAP value per feature, largest first.

    .. math::

        I_j = \frac1n \sum_{i=1}^n \lvert \phi_{ij} \rvert

    Parameters
    ----------
    values : array-like of shape (n_cases, n_features)
        SHAP values (finite).
    feature_names : array-like of shape (n_features,)
        Unique feature names.
    max_features : int, default=15
        Number of rows kept.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature`` and ``mean |SHAP|`` (in the units of the model output); ties
        keep the column order.

    References
    ----------
    Lundberg SM et al. Nat Mach Intell 2020;2:56-67.

    Examples
    --------
    >>> shap_importance_table([[0.1, -0.5], [0.3, 0.1]], ["a", "b"])["feature"].tolist()
    ['b', 'a']
    """
    v, names = _check_shap(values, feature_names)
    order, importance = _ranking(v, _check_max_features(max_features))
    return pd.DataFrame({"feature": names[order], "mean |SHAP|": importance})


def _beeswarm_offsets(x: np.ndarray, n_bins: int = 40, half_width: float = 0.4) -> np.ndarray:
    """Vertical offsets of a beeswarm row (deterministic, this work): cases are binned along x;
    within a bin, in order of x, they take offsets 0, +d, -d, +2d, -2d, ...; d is chosen so
    that the widest bin spans at most +-half_width."""
    span = float(x.max() - x.min())
    if span == 0:
        bins = np.zeros(x.size, int)
    else:
        bins = np.minimum(((x - x.min()) / span * n_bins).astype(int), n_bins - 1)
    order = np.lexsort((np.arange(x.size), x, bins))
    layer = np.empty(x.size)
    sorted_bins = bins[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_bins)) + 1]
    rank = np.arange(x.size) - np.repeat(starts, np.diff(np.r_[starts, x.size]))
    layer[order] = np.where(rank % 2 == 1, 1.0, -1.0) * ((rank + 1) // 2)
    widest = max(float(np.abs(layer).max()), 1.0)
    return layer * (half_width / widest)


def _rescale(column: np.ndarray) -> np.ndarray:
    """Feature value rescaled to [0, 1] between its 5th and 95th percentiles (clipped); NaN stays NaN;
    a constant feature maps to 0.5."""
    finite = column[np.isfinite(column)]
    if finite.size == 0:
        return np.full(column.shape, np.nan)
    lo, hi = np.percentile(finite, [5, 95])
    if hi <= lo:
        lo, hi = finite.min(), finite.max()
    if hi <= lo:
        return np.where(np.isfinite(column), 0.5, np.nan)
    return np.clip((column - lo) / (hi - lo), 0.0, 1.0)


def shap_summary_figure(values, feature_values, feature_names, *, max_features: int = 15,
                        height: int | None = None) -> go.Figure:
    """Beeswarm SHAP summary: one row per feature, one dot per case, coloured by the feature's value.

    Features are ranked by mean :math:`|\\phi_j|` (:func:`shap_importance_table`), the most
    important at the top. Each case is a dot at x = its SHAP value, in its feature's row
    with a deterministic vertical spread (cases binned along x, stacked alternately above
    and below the row within a bin; at most +-0.4 row, this work). The colour is the
    feature's value rescaled to [0, 1] between its 5th and 95th percentiles across cases
    (clipped), blue (low) to red (high); missing feature values are grey.

    Parameters
    ----------
    values : array-like of shape (n_cases, n_features)
        SHAP values (finite), in the units of the model output.
    feature_values : array-like of shape (n_cases, n_features)
        The feature values the model saw (e.g. the z-scored selected features); NaN allowed.
    feature_names : array-like of shape (n_features,)
        Unique feature names.
    max_features : int, default=15
        Number of feature rows.
    height : int, optional
        Figure height in pixels; default 140 + 28 per row.

    Returns
    -------
    plotly.graph_objects.Figure
        One scatter trace of all dots (``marker.color`` in [0, 1] with the colour bar
        "Feature value (low to high)"), plus a grey trace "feature value missing" when
        there are NaN feature values. Row r (0 = top) sits at y = n_rows - 1 - r; the y
        tick labels are the feature names.

    References
    ----------
    Lundberg SM et al. Nat Mach Intell 2020;2:56-67.

    Examples
    --------
    >>> fig = shap_summary_figure([[0.1, -0.5], [0.3, 0.4]], [[1.0, 2.0], [3.0, 5.0]], ["a", "b"])
    >>> list(fig.layout.yaxis.ticktext)
    ['b', 'a']
    """
    v, names = _check_shap(values, feature_names)
    fv = np.asarray(feature_values, dtype=float)
    if fv.shape != v.shape:
        raise InputError(f"feature_values have shape {fv.shape} but the SHAP values {v.shape}",
                         fix="Pass the feature values the model saw, one row per case, in the same columns.")
    if np.any(np.isinf(fv)):
        raise InputError("feature_values hold infinite values", fix="Replace them by NaN or fix the features.")
    order, _ = _ranking(v, _check_max_features(max_features))
    n_rows = order.size
    xs, ys, colours, raw, labels = [], [], [], [], []
    for r, j in enumerate(order):
        row_y = n_rows - 1 - r
        xs.append(v[:, j])
        ys.append(row_y + _beeswarm_offsets(v[:, j]))
        colours.append(_rescale(fv[:, j]))
        raw.append(fv[:, j])
        labels.append(np.full(v.shape[0], names[j], dtype=object))
    x, y, c, raw, lab = (np.concatenate(a) for a in (xs, ys, colours, raw, labels))
    ok = np.isfinite(c)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x[ok], y=y[ok], mode="markers", name="cases", showlegend=False,
        marker=dict(color=c[ok], colorscale=[[0, _LOW], [1, _HIGH]], cmin=0, cmax=1, size=6, opacity=0.85,
                    colorbar=dict(title=dict(text="Feature value (low to high)", side="right"),
                                  tickvals=[0, 1], ticktext=["low", "high"], thickness=12)),
        customdata=np.column_stack([lab[ok], raw[ok]]),
        hovertemplate="%{customdata[0]} = %{customdata[1]:.3g}<br>SHAP %{x:.3f}<extra></extra>"))
    if not ok.all():
        fig.add_trace(go.Scatter(
            x=x[~ok], y=y[~ok], mode="markers", name="feature value missing",
            marker=dict(color="#888888", size=6, opacity=0.85), customdata=lab[~ok],
            hovertemplate="%{customdata} missing<br>SHAP %{x:.3f}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color=_REFERENCE, width=1))
    fig.update_layout(height=height or 140 + 28 * n_rows, **_LAYOUT,
                      xaxis_title="SHAP value (impact on model output)")
    fig.update_yaxes(tickmode="array", tickvals=list(range(n_rows - 1, -1, -1)), ticktext=names[order].tolist(),
                     range=[-0.6, n_rows - 0.4], showgrid=False, zeroline=False)
    return fig


_OUTPUTS = {"log-odds": "log-odds of progression", "probability": "probability of progression"}


def _feature_label(name: str, value: float) -> str:
    return f"{name} = {'n/a' if not np.isfinite(value) else f'{value:.3g}'}"


def _waterfall_range(base: float, deltas: list[float]) -> tuple[float, float]:
    """x range covering 0 (where the first and last bars start) and every running sum, with 20 % of
    the span on each side for the bar texts (this work)."""
    running = base + np.cumsum(np.r_[0.0, deltas])
    lo, hi = min(float(running.min()), 0.0), max(float(running.max()), 0.0)
    pad = 0.2 * max(hi - lo, 1e-3)
    return lo - pad, hi + pad


def shap_waterfall_figure(values_row, feature_values_row, feature_names, base_value, *, output: str = "log-odds",
                          max_features: int = 10, height: int | None = None) -> go.Figure:
    r"""SHAP waterfall of one case: from the expected output to this case's output, feature by feature.

    Additivity (Lundberg & Lee 2017):

    .. math::

        f(x) = \mathbb{E}[f(X)] + \sum_j \phi_j(x).

    The ``max_features`` largest :math:`|\phi_j|` get their own bar (labelled
    "feature = value"); the others are summed into one "N other features" bar.

    Parameters
    ----------
    values_row : array-like of shape (n_features,)
        SHAP values of the case (finite), on the scale ``output``.
    feature_values_row : array-like of shape (n_features,)
        Feature values the model saw for the case (NaN shown as "n/a").
    feature_names : array-like of shape (n_features,)
        Unique feature names.
    base_value : float
        Expected model output :math:`\mathbb{E}[f(X)]` over the background
        (``Explanation.base_value``).
    output : {"log-odds", "probability"}, default="log-odds"
        Scale of the values (``Explanation.output``); named in the title and axis.
    max_features : int, default=10
        Number of single-feature bars.
    height : int, optional
        Figure height in pixels; default 140 + 30 per bar.

    Returns
    -------
    plotly.graph_objects.Figure
        One horizontal :class:`plotly.graph_objects.Waterfall`, bottom to top:
        ``E[f(x)]`` (absolute), the "other features" bar (when any), the single features in
        increasing :math:`|\phi_j|` (the largest just below the end), and ``f(x)`` (total,
        whose ``x`` holds the value base + sum). Positive contributions red, negative blue.

    References
    ----------
    Lundberg SM, Lee SI. NeurIPS 2017.

    Examples
    --------
    >>> fig = shap_waterfall_figure([0.5, -0.2, 0.1], [1.0, 2.0, 3.0], ["a", "b", "c"], -1.0, max_features=2)
    >>> list(fig.data[0].y)
    ['E[f(x)]', '1 other feature', 'b = 2', 'a = 1', 'f(x)']
    """
    if output not in _OUTPUTS:
        raise InputError(f"output must be 'log-odds' or 'probability', got {output!r}",
                         fix="Pass Explanation.output.")
    v = np.asarray(values_row, dtype=float)
    fv = np.asarray(feature_values_row, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise InputError(f"values_row has shape {v.shape}, not (n_features,)",
                         fix="Pass one case: Explanation.values[i].")
    if fv.shape != v.shape:
        raise InputError(f"feature_values_row has shape {fv.shape} but values_row {v.shape}",
                         fix="Pass the same case's feature values, in the same columns.")
    if not np.all(np.isfinite(v)):
        i = int(np.flatnonzero(~np.isfinite(v))[0])
        raise InputError(f"values_row holds NaN or infinite values (feature {i}: {v[i]})",
                         fix="Explain cases after imputation (as explain() does).")
    names = _check_names(feature_names, v.size)
    base = _number(base_value, "base_value", allow_nan=False)
    k = _check_max_features(max_features)
    order = np.argsort(-np.abs(v), kind="stable")
    top, rest = order[:k], order[k:]
    labels, deltas = ["E[f(x)]"], [base]
    if rest.size:
        labels.append(f"{rest.size} other feature{'s' if rest.size > 1 else ''}")
        deltas.append(float(v[rest].sum()))
    for j in top[::-1]:
        labels.append(_feature_label(names[j], fv[j]))
        deltas.append(float(v[j]))
    fx = base + float(v.sum())
    labels.append("f(x)")
    measure = ["absolute"] + ["relative"] * (len(labels) - 2) + ["total"]
    text = [f"{base:.3f}"] + [f"{d:+.3f}" for d in deltas[1:]] + [f"{fx:.3f}"]
    fig = go.Figure(go.Waterfall(
        orientation="h", measure=measure, y=labels, x=deltas + [fx], text=text, textposition="outside",
        increasing=dict(marker=dict(color=_HIGH)), decreasing=dict(marker=dict(color=_LOW)),
        totals=dict(marker=dict(color="#9a9a9a")), connector=dict(line=dict(color=_REFERENCE, width=1)),
        name="SHAP", hovertemplate="%{y}<br>%{text}<extra></extra>"))
    scale = _OUTPUTS[output]
    fig.update_layout(height=height or 140 + 30 * len(labels), **_LAYOUT, showlegend=False,
                      title=dict(text=f"E[f(x)] = {base:.3f} → f(x) = {fx:.3f} ({scale})", font=dict(size=14)),
                      xaxis_title=f"Model output ({scale})")
    fig.update_yaxes(type="category", automargin=True)
    fig.update_xaxes(range=list(_waterfall_range(base, deltas[1:])))
    return fig
