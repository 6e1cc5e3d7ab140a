"""Figures of the PET kinetics page: time-activity curves with model fits, and tables.

Pure functions: arrays in, plotly figures or pandas tables out.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go

__all__ = ["tac_figure", "REGION_COLORS"]

#: Stable colours per region (clusters cycle through the rest).
REGION_COLORS = {
    "tumour": "#ff7f0e", "background": "#7f7f7f", "cluster 1": "#d62728", "hotspot": "#e377c2",
    "striatum": "#17becf", "cerebellum": "#8c564b", "occipital_cortex": "#bcbd22",
}
_CYCLE = ("#1f77b4", "#2ca02c", "#9467bd", "#aec7e8", "#98df8a")


def _colour(name: str, n: int) -> str:
    return REGION_COLORS.get(name, _CYCLE[n % len(_CYCLE)])


def tac_figure(frame_start_min, frame_end_min, curves: Mapping[str, np.ndarray], *, unit: str,
               model_curves: Mapping[str, np.ndarray] | None = None, model_name: str | None = None,
               window_min: tuple[float, float] | None = None, window_label: str = "static window",
               height: int = 420) -> go.Figure:
    """Time-activity curves against frame mid-times, with frame durations as horizontal bars.

    Parameters
    ----------
    frame_start_min, frame_end_min : array-like of shape (T,)
    curves : dict of str to array-like of shape (T,)
        Measured frame averages per region (markers; each marker's horizontal error bar
        spans its frame, so the frame timing is visible).
    unit : str
        ``"SUV"`` or ``"Bq/ml"``.
    model_curves : dict of str to array-like of shape (T,), optional
        Fitted frame-averaged model curves (dashed lines in the region's colour).
    model_name : str, optional
        Shown in the legend of the model curves.
    window_min : (float, float), optional
        A shaded time window (e.g. the static summation window).
    """
    fs = np.asarray(frame_start_min, float)
    fe = np.asarray(frame_end_min, float)
    mid = 0.5 * (fs + fe)
    half = 0.5 * (fe - fs)
    fig = go.Figure()
    for n, (name, values) in enumerate(curves.items()):
        colour = _colour(name, n)
        fig.add_trace(go.Scatter(
            x=mid, y=np.asarray(values, float), mode="markers+lines", name=name,
            line=dict(color=colour, width=1), marker=dict(color=colour, size=6),
            error_x=dict(type="data", array=half, visible=True, thickness=1, width=0, color=colour),
            hovertemplate=f"{name}<br>%{{x:.2f}} min<br>%{{y:.3g}} {unit}<extra></extra>"))
        if model_curves and name in model_curves and model_curves[name] is not None:
            fig.add_trace(go.Scatter(
                x=mid, y=np.asarray(model_curves[name], float), mode="lines", name=f"{name} · {model_name or 'model'}",
                line=dict(color=colour, width=2, dash="dash"),
                hovertemplate=f"{name} {model_name or 'model'}<br>%{{x:.2f}} min<br>%{{y:.3g}} {unit}<extra></extra>"))
    if window_min is not None:
        fig.add_vrect(x0=window_min[0], x1=window_min[1], fillcolor="rgba(120,120,160,0.15)", line_width=0,
                      annotation_text=window_label, annotation_position="top left")
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=30, b=50), template="plotly_dark",
                      xaxis_title="time after injection (min)", yaxis_title=f"activity ({unit})",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), hovermode="closest")
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero")
    return fig
