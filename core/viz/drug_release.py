"""Figures and tables of the drug-release page: perfusion and pH maps, release rate, drug over time,
exposure against distance from vessels, scenario comparison and the inverse results.

Pure functions: arrays (or a :class:`~core.drug_release.case.CaseDrugRelease`, read by attribute) in,
plotly figures or pandas tables out; nothing here reads files or session state.

Display conventions: maps are (H, W) arrays shown as images, row 0 at the top; both axes are
lengths from the first pixel centre, ``index * spacing_um`` converted to mm (whole tumour) or kept
in µm (micro-window). NaN pixels (failed DCE fit, pH outside the CEST calibration) are left NaN, which
plotly draws transparent. Log colour scales show :math:`\\log_{10}` of the value, with the colour bar
labelled in the value's unit.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.drug_release.inverse import relative_errors

__all__ = ["MAP_LABELS", "UNKNOWN_LABELS", "PRIMEAU_DISTANCE_UM", "PRIMEAU_LABEL", "axis_coordinates",
           "fixed_range", "masked_maps", "tumour_statistics", "maps_figure", "tumour_mean_curves",
           "drug_curves_figure", "profile_figure", "scenario_figure", "scenario_table", "inverse_table",
           "inverse_ratio_figure", "inverse_timing_table", "median_relative_errors", "better_method"]

#: Map key -> (display name, unit) of the maps of a CaseDrugRelease.
MAP_LABELS = {
    "ktrans_per_min": ("Ktrans", "1/min"), "ve": ("ve", ""), "vp": ("vp", ""), "ph": ("pH", ""),
    "t1_ms": ("T1", "ms"), "release_per_h": ("release rate", "1/h"), "ifp_mmhg": ("IFP", "mmHg"),
    "exposure_uM_h": ("free-drug AUC", "µM·h"), "distance_to_vessel_um": ("distance to vessel", "µm"),
}
#: Unknown of the inverse problem -> display name with unit (keys of core.drug_release.inverse.UNKNOWNS).
UNKNOWN_LABELS = {
    "release_per_h": "release rate (1/h)",
    "diffusion_free_um2_per_h": "free-drug diffusion (µm²/h)",
    "permeability_carrier_um_per_h": "carrier permeability (µm/h)",
    "vascular_pressure_mmhg": "vascular pressure (mmHg)",
}
#: Distance from vessels over which free doxorubicin fluorescence fell off in tumour xenografts
#: (order of magnitude, Primeau et al. 2005, Clin Cancer Res 11:8782).
PRIMEAU_DISTANCE_UM = 50.0
PRIMEAU_LABEL = "50 µm (free doxorubicin penetration, Primeau 2005)"

_MARGIN = dict(l=10, r=10, t=40, b=10)
_METHOD_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


# --- maps -----------------------------------------------------------------------------------------

def axis_coordinates(n: int, spacing_um: float, unit: str = "mm") -> np.ndarray:
    """Pixel-centre positions ``index * spacing_um`` of ``n`` pixels, in mm (``unit="mm"``) or µm.

    Examples
    --------
    >>> axis_coordinates(3, 250.0).tolist()
    [0.0, 0.25, 0.5]
    """
    scale = {"mm": 1e-3, "µm": 1.0}[unit]
    return np.arange(int(n)) * float(spacing_um) * scale


def fixed_range(*stacks: np.ndarray) -> tuple[float, float]:
    """Colour range (0, largest finite value) over whole stacks, so every time frame shares one scale.

    Examples
    --------
    >>> fixed_range(np.array([[1.0, np.nan], [3.0, 2.0]]))
    (0.0, 3.0)
    """
    finite = [np.asarray(s, float)[np.isfinite(s)] for s in stacks]
    top = max((float(f.max()) for f in finite if f.size), default=0.0)
    return 0.0, top if top > 0 else 1.0


def masked_maps(case, keys: Sequence[str] = ("ktrans_per_min", "ve", "vp", "ph")) -> dict[str, np.ndarray]:
    """The case's maps with failed voxels set to NaN: DCE maps where ``fit_ok`` is False, pH where
    ``ph_ok`` is False (the engine already writes NaN there; this keeps the flags authoritative)."""
    out = {}
    for key in keys:
        if key not in case.maps:
            continue
        values = np.array(case.maps[key], dtype=float)
        flag = case.ph_ok if key == "ph" else case.fit_ok if key in ("ktrans_per_min", "ve", "vp") else None
        if flag is not None:
            values[~np.asarray(flag, bool)] = np.nan
        out[key] = values
    return out


def tumour_statistics(maps: Mapping[str, np.ndarray], tumour: np.ndarray) -> pd.DataFrame:
    """Median and interquartile range of each map over the tumour's finite voxels.

    Returns a table indexed by map name with columns ``unit``, ``median``, ``Q1``, ``Q3``,
    ``valid voxels`` (finite tumour voxels) and ``tumour voxels``; NaN statistics when none is finite.
    """
    mask = np.asarray(tumour, bool)
    rows = []
    for key, values in maps.items():
        name, unit = MAP_LABELS.get(key, (key, ""))
        v = np.asarray(values, float)[mask]
        v = v[np.isfinite(v)]
        q1, med, q3 = np.percentile(v, [25, 50, 75]) if v.size else (np.nan,) * 3
        rows.append({"map": name, "unit": unit, "median": float(med), "Q1": float(q1), "Q3": float(q3),
                     "valid voxels": int(v.size), "tumour voxels": int(mask.sum())})
    return pd.DataFrame(rows).set_index("map")


def _log10(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def _outline(mask, x, y, xa, ya, colour, name):
    return go.Contour(z=np.asarray(mask, float), x=x, y=y, xaxis=xa, yaxis=ya, showscale=False, name=name,
                      contours=dict(start=0.5, end=0.5, size=1, coloring="lines"), line=dict(width=1.5),
                      colorscale=[[0, colour], [1, colour]], hoverinfo="skip", showlegend=False)


def maps_figure(maps: Mapping[str, np.ndarray], spacing_um: float, *, tumour: np.ndarray | None = None,
                vessels: np.ndarray | None = None, titles: Mapping[str, str] | None = None,
                units: Mapping[str, str] | None = None, ranges: Mapping[str, tuple] | None = None,
                log: Sequence[str] = (), colorscales: Mapping[str, str] | None = None, length_unit: str = "mm",
                title: str = "", height: int = 360) -> go.Figure:
    """Maps side by side as heatmaps with equal aspect, axes in mm (or µm), NaN left transparent.

    Parameters
    ----------
    maps : dict of str to ndarray (H, W)
        Panels in order; keys are looked up in :data:`MAP_LABELS` for the title and unit.
    spacing_um : float
        Pixel size, µm.
    tumour, vessels : bool ndarray (H, W), optional
        Outlined in white (tumour) and cyan (vessels) on every panel.
    titles, units : dict of str to str, optional
        Override the panel titles and colour-bar units.
    ranges : dict of str to (float, float), optional
        Fixed colour range per panel (in the value's unit, also for log panels).
    log : sequence of str, default=()
        Panels drawn on a log10 colour scale (non-positive values become NaN).
    colorscales : dict of str to str, optional
        Plotly colour scale per panel; default "Viridis".
    length_unit : {'mm', 'µm'}, default='mm'
    """
    keys = list(maps)
    n = len(keys)
    gap = 0.04
    width = (1.0 - gap * (n - 1)) / max(n, 1)
    titles, units, ranges = dict(titles or {}), dict(units or {}), dict(ranges or {})
    colorscales = dict(colorscales or {})
    data, layout, annotations = [], {}, []
    for i, key in enumerate(keys):
        values = np.asarray(maps[key], float)
        name, unit = MAP_LABELS.get(key, (key, ""))
        name, unit = titles.get(key, name), units.get(key, unit)
        xa, ya = ("x", "y") if i == 0 else (f"x{i + 1}", f"y{i + 1}")
        x = axis_coordinates(values.shape[1], spacing_um, length_unit)
        y = axis_coordinates(values.shape[0], spacing_um, length_unit)
        x0 = i * (width + gap)
        bar = dict(orientation="h", x=x0 + width / 2, xanchor="center", y=-0.14, yanchor="top", len=min(width, 0.5),
                   thickness=10, title=dict(text=unit, side="top"))
        zmin, zmax = ranges.get(key, (None, None))
        if key in log:
            z = _log10(values)
            finite = z[np.isfinite(z)]
            lo = np.log10(zmin) if zmin else (float(finite.min()) if finite.size else 0.0)
            hi = np.log10(zmax) if zmax else (float(finite.max()) if finite.size else 1.0)
            decades = np.arange(np.floor(lo), np.ceil(hi) + 1)
            bar.update(tickvals=decades.tolist(), ticktext=[f"{10 ** d:g}" for d in decades])
            trace = go.Heatmap(z=z, x=x, y=y, zmin=lo, zmax=hi, customdata=values,
                               hovertemplate=f"%{{customdata:.3g}} {unit}<extra>{name}</extra>")
        else:
            trace = go.Heatmap(z=values, x=x, y=y, zmin=zmin, zmax=zmax,
                               hovertemplate=f"%{{z:.3g}} {unit}<extra>{name}</extra>")
        trace.update(xaxis=xa, yaxis=ya, colorscale=colorscales.get(key, "Viridis"), colorbar=bar, name=name,
                     hoverongaps=False)
        data.append(trace)
        if tumour is not None:
            data.append(_outline(tumour, x, y, xa, ya, "white", "tumour"))
        if vessels is not None:
            data.append(_outline(vessels, x, y, xa, ya, "cyan", "vessels"))
        layout[f"xaxis{'' if i == 0 else i + 1}"] = dict(domain=[x0, x0 + width], anchor=ya, showgrid=False,
                                                          zeroline=False, constrain="domain",
                                                          title=dict(text=length_unit))
        layout[f"yaxis{'' if i == 0 else i + 1}"] = dict(anchor=xa, scaleanchor=xa, scaleratio=1, showgrid=False,
                                                          zeroline=False, autorange="reversed", constrain="domain")
        annotations.append(dict(text=name, x=x0 + width / 2, y=1.0, xref="paper", yref="paper", xanchor="center",
                                yanchor="bottom", showarrow=False, font=dict(size=14)))
    layout.update(title=title or None, height=height, margin=dict(l=10, r=10, t=50 if title else 30, b=80),
                  annotations=annotations, showlegend=False, plot_bgcolor="rgba(0,0,0,0)")
    return go.Figure(data=data, layout=layout)


# --- drug over time ------------------------------------------------------------------------------

def tumour_mean_curves(times_h, fields: Mapping[str, np.ndarray], tumour: np.ndarray) -> pd.DataFrame:
    """Mean over the tumour of each (T, H, W) field at each time (finite voxels), indexed by hours."""
    mask = np.asarray(tumour, bool)
    return pd.DataFrame({name: np.nanmean(np.asarray(f, float)[:, mask], axis=1) if mask.any()
                         else np.full(len(times_h), np.nan) for name, f in fields.items()},
                        index=pd.Index(np.asarray(times_h, float), name="hours after injection"))


def drug_curves_figure(curves: pd.DataFrame, *, current_h: float | None = None, unit: str = "µM",
                       height: int = 340) -> go.Figure:
    """Tumour-mean concentration against time, one line per column; the shown time as a dashed line."""
    fig = go.Figure()
    for n, name in enumerate(curves.columns):
        fig.add_trace(go.Scatter(x=curves.index.to_numpy(), y=curves[name].to_numpy(), mode="lines+markers",
                                 name=name, line=dict(color=_METHOD_COLOURS[n % len(_METHOD_COLOURS)]),
                                 hovertemplate=f"{name}<br>%{{x:.3g}} h<br>%{{y:.3g}} {unit}<extra></extra>"))
    if current_h is not None:
        fig.add_vline(x=float(current_h), line=dict(dash="dash", color="grey", width=1),
                      annotation_text=f"{current_h:g} h", annotation_position="top right")
    fig.update_layout(xaxis_title="hours after injection", yaxis_title=f"tumour mean ({unit})", height=height,
                      margin=_MARGIN, legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_yaxes(rangemode="tozero")
    return fig


# --- distance from vessels -----------------------------------------------------------------------

def profile_figure(profile: Mapping, *, reference_um: float = PRIMEAU_DISTANCE_UM,
                   reference_label: str = PRIMEAU_LABEL, height: int = 380) -> go.Figure:
    """Free-drug exposure per distance bin from the nearest vessel (bars, pixel count in the hover),
    with the literature mark at ``reference_um`` and the model's penetration distance as vertical lines.

    Parameters
    ----------
    profile : dict
        ``"distance_um"`` (B,) bin centres, ``"auc_uM_h"`` (B,) mean exposure per bin, µM·h,
        ``"n"`` (B,) pixels per bin, optional ``"penetration_um"``.
    reference_um : float, default=50.0
    """
    d = np.asarray(profile["distance_um"], float)
    auc = np.asarray(profile["auc_uM_h"], float)
    n = np.asarray(profile["n"], int)
    width = float(np.median(np.diff(d))) * 0.9 if d.size > 1 else None
    fig = go.Figure(go.Bar(x=d, y=auc, customdata=n, width=width, name="free-drug AUC", marker_color="#ff7f0e",
                           hovertemplate="%{x:.0f} µm<br>%{y:.3g} µM·h<br>%{customdata} pixels<extra></extra>"))
    fig.add_vline(x=float(reference_um), line=dict(dash="dash", color="grey", width=1.5),
                  annotation_text=reference_label, annotation_position="top right")
    penetration = profile.get("penetration_um")
    if penetration is not None and np.isfinite(penetration):
        fig.add_vline(x=float(penetration), line=dict(dash="dot", color="#d62728", width=1.5),
                      annotation_text=f"penetration {float(penetration):.0f} µm (model)",
                      annotation_position="bottom right")
    fig.update_layout(xaxis_title="distance from the nearest vessel (µm)", yaxis_title="free-drug AUC (µM·h)",
                      height=height, margin=_MARGIN, showlegend=False, bargap=0.05)
    fig.update_xaxes(rangemode="tozero")
    return fig


# --- scenarios -----------------------------------------------------------------------------------

def scenario_figure(scenarios: Sequence[Mapping], threshold_uM_h: float, *, height: int = 380) -> go.Figure:
    """Grouped bars of the lethal fraction per scenario, voxel scale and micro-window (fractions, 0-1)."""
    labels = [s.get("label") or s["name"] for s in scenarios]
    fig = go.Figure()
    for key, name, colour in (("lethal_fraction_voxel", "voxel scale (whole tumour)", "#1f77b4"),
                              ("lethal_fraction_window", "micro-window (µm scale)", "#ff7f0e")):
        y = [float(s[key]) if s.get(key) is not None else np.nan for s in scenarios]
        fig.add_trace(go.Bar(x=labels, y=y, name=name, marker_color=colour,
                             hovertemplate="%{x}<br>%{y:.1%}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=f"Tumour fraction with free-drug AUC ≥ {threshold_uM_h:g} µM·h",
                      yaxis=dict(title="lethal fraction", tickformat=".0%", range=[0, 1.02]),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


def scenario_table(scenarios: Sequence[Mapping]) -> pd.DataFrame:
    """Median exposure, penetration distance and lethal fractions per scenario, indexed by label."""
    rows = [{"scenario": s.get("label") or s["name"], "median AUC (µM·h)": s.get("median_auc_uM_h"),
             "penetration (µm)": s.get("penetration_um"),
             "lethal fraction, voxel": s.get("lethal_fraction_voxel"),
             "lethal fraction, window": s.get("lethal_fraction_window")} for s in scenarios]
    return pd.DataFrame(rows).set_index("scenario").astype(float)


# --- inverse -------------------------------------------------------------------------------------

def _unknowns(inverse: Mapping, truth: Mapping | None) -> list[str]:
    names = [k for r in inverse.values() for k in r.get("estimates", {})]
    names += list(truth or {})
    return list(dict.fromkeys(k for k in names if any(k in r.get("estimates", {}) for r in inverse.values())))


def inverse_table(inverse: Mapping, truth: Mapping | None = None,
                  method_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per unknown: truth (when known), each method's estimate, its std and relative error.

    Relative error is signed, (estimate - truth) / truth (:func:`core.drug_release.inverse.relative_errors`);
    NaN where a method did not estimate the unknown or no truth is known.
    """
    names = method_names or {}
    rows = []
    for key in _unknowns(inverse, truth):
        row = {"unknown": UNKNOWN_LABELS.get(key, key)}
        if truth:
            row["truth"] = float(truth[key]) if key in truth else np.nan
        for method, r in inverse.items():
            label = names.get(method, method)
            est, std = r.get("estimates", {}), r.get("std", {}) or {}
            row[f"{label} estimate"] = float(est[key]) if key in est else np.nan
            row[f"{label} std"] = float(std[key]) if std.get(key) is not None else np.nan
            if truth:
                err = relative_errors({key: est[key]}, truth) if key in est and key in truth else {}
                row[f"{label} rel. error"] = err.get(key, np.nan)
        rows.append(row)
    return pd.DataFrame(rows).set_index("unknown")


def inverse_ratio_figure(inverse: Mapping, truth: Mapping, method_names: Mapping[str, str] | None = None, *,
                         height: int = 380) -> go.Figure:
    """Estimate / truth per unknown and method with 2-sigma error bars (2 · std / truth), a line at 1."""
    names = method_names or {}
    keys = [k for k in _unknowns(inverse, truth) if k in truth and float(truth[k]) != 0]
    labels = [UNKNOWN_LABELS.get(k, k) for k in keys]
    fig = go.Figure()
    for n, (method, r) in enumerate(inverse.items()):
        est, std = r.get("estimates", {}), r.get("std", {}) or {}
        ratio = [float(est[k]) / float(truth[k]) if k in est else np.nan for k in keys]
        bars = [2.0 * float(std[k]) / abs(float(truth[k])) if std.get(k) is not None else np.nan for k in keys]
        label = names.get(method, method)
        fig.add_trace(go.Scatter(x=labels, y=ratio, mode="markers", name=label,
                                 marker=dict(size=10, color=_METHOD_COLOURS[n % len(_METHOD_COLOURS)]),
                                 error_y=dict(type="data", array=bars, visible=True, thickness=1.5, width=6),
                                 hovertemplate="%{x}<br>estimate/truth %{y:.3f}<extra>" + label + "</extra>"))
    fig.add_hline(y=1.0, line=dict(color="grey", dash="dash", width=1), annotation_text="truth",
                  annotation_position="top left")
    fig.update_layout(yaxis_title="estimate / truth (±2σ)", height=height, margin=_MARGIN, scattermode="group",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    return fig


def inverse_timing_table(inverse: Mapping, method_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Wall time, success flag and message per inverse method."""
    names = method_names or {}
    rows = [{"method": names.get(m, m), "wall time (s)": r.get("wall_s"), "converged": bool(r.get("ok")),
             "message": r.get("message", "")} for m, r in inverse.items()]
    return pd.DataFrame(rows).set_index("method")


def median_relative_errors(inverse: Mapping, truth: Mapping) -> dict[str, float]:
    """Median absolute relative error over the unknowns with a truth, per method (NaN when none)."""
    out = {}
    for method, r in inverse.items():
        est = {k: v for k, v in r.get("estimates", {}).items() if k in truth and float(truth[k]) != 0}
        errors = np.abs(list(relative_errors(est, truth).values()))
        out[method] = float(np.median(errors)) if errors.size else float("nan")
    return out


def better_method(inverse: Mapping, truth: Mapping | None) -> tuple[str | None, dict[str, float]]:
    """The method with the lowest median absolute relative error among those that converged, and all
    medians; ``(None, {...})`` without a truth, with fewer than two comparable methods, or on a tie."""
    if not truth:
        return None, {}
    medians = median_relative_errors(inverse, truth)
    usable = {m: e for m, e in medians.items() if np.isfinite(e) and inverse[m].get("ok", True)}
    if len(usable) < 2:
        return None, medians
    ranked = sorted(usable, key=usable.get)
    return (None if usable[ranked[0]] == usable[ranked[1]] else ranked[0]), medians
