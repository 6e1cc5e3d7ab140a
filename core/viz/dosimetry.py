"""Figures of the dosimetry page: dose over CT with isodose lines, DVHs, organ time-activity fits,
method comparison. Pure functions: arrays in, plotly figures out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

__all__ = ["dose_slice_figure", "dvh_figure", "tac_fit_figure", "difference_slice_figure", "ISODOSE_FRACTIONS",
           "take_slice"]

#: Isodose lines drawn, as fractions of the displayed maximum.
ISODOSE_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9)
_AXES = {"axial": 2, "coronal": 1, "sagittal": 0}


def take_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D slice of ``volume`` (indexed i, j, k) in ``plane`` at ``index``, rows up the image."""
    axis = _AXES[plane]
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    sl = np.take(volume, index, axis=axis)
    return sl.T   # rows = second remaining axis (y or z), columns = first (x or y)


def _extent(shape_2d, spacing):
    ny, nx = shape_2d
    return np.arange(nx) * spacing[0], np.arange(ny) * spacing[1]


def dose_slice_figure(ct_hu: np.ndarray, dose_gy: np.ndarray, plane: str, index: int, voxel_mm, *,
                      dose_max: float | None = None, title: str = "", ct_window=(-400.0, 600.0)) -> go.Figure:
    """CT in grey, the dose as a translucent colour wash above 5 % of ``dose_max``, isodose lines."""
    axes = [a for a in range(3) if a != _AXES[plane]]
    spacing = (float(voxel_mm[axes[0]]), float(voxel_mm[axes[1]]))
    ct = take_slice(ct_hu, plane, index)
    dose = take_slice(dose_gy, plane, index)
    top = float(dose_max if dose_max is not None else max(float(np.percentile(dose_gy, 99.95)), 1e-12))
    x, y = _extent(ct.shape, spacing)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=ct, x=x, y=y, colorscale="gray", zmin=ct_window[0], zmax=ct_window[1],
                             showscale=False, hoverinfo="skip"))
    wash = np.where(dose >= 0.05 * top, dose, np.nan)
    fig.add_trace(go.Heatmap(z=wash, x=x, y=y, colorscale="Jet", zmin=0, zmax=top, opacity=0.45,
                             colorbar=dict(title="Gy"), hovertemplate="%{z:.3g} Gy<extra></extra>", name="dose"))
    for frac in ISODOSE_FRACTIONS:
        level = frac * top
        fig.add_trace(go.Contour(z=dose, x=x, y=y, showscale=False, contours=dict(start=level, end=level, size=1,
                                 coloring="lines", showlabels=True, labelfont=dict(size=9, color="white")),
                                 line=dict(width=1.2), colorscale=[[0, "white"], [1, "white"]], hoverinfo="skip",
                                 name=f"{level:.3g} Gy"))
    fig.update_layout(title=title, height=520, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="mm", scaleanchor="y", constrain="domain"), yaxis=dict(title="mm"))
    return fig


def difference_slice_figure(reference: np.ndarray, other: np.ndarray, plane: str, index: int, voxel_mm, *,
                            floor_fraction: float = 0.1, title: str = "") -> go.Figure:
    """(other - reference) / reference in %, where the reference is above ``floor_fraction`` of its maximum."""
    axes = [a for a in range(3) if a != _AXES[plane]]
    spacing = (float(voxel_mm[axes[0]]), float(voxel_mm[axes[1]]))
    ref, oth = take_slice(reference, plane, index), take_slice(other, plane, index)
    floor = floor_fraction * float(reference.max())
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(ref > floor, 100.0 * (oth - ref) / ref, np.nan)
    x, y = _extent(diff.shape, spacing)
    fig = go.Figure(go.Heatmap(z=diff, x=x, y=y, colorscale="RdBu", reversescale=True, zmin=-20, zmax=20,
                               colorbar=dict(title="%"), hovertemplate="%{z:.1f} %<extra></extra>"))
    fig.update_layout(title=title, height=420, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="mm", scaleanchor="y", constrain="domain"), yaxis=dict(title="mm"))
    return fig


def dvh_figure(dvhs: dict) -> go.Figure:
    """Cumulative DVHs: ``{name: DVH}`` (core.dosimetry.dvh), volume in % against dose in Gy."""
    fig = go.Figure()
    for name, dvh in dvhs.items():
        fig.add_trace(go.Scatter(x=dvh.dose_gy, y=100.0 * dvh.volume_fraction, mode="lines", name=name))
    fig.update_layout(xaxis_title="absorbed dose (Gy)", yaxis_title="volume (%)", height=420,
                      margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 101]))
    return fig


def tac_fit_figure(times_h, fits: dict) -> go.Figure:
    """Organ activities at the scan times (markers) and their fitted curves (lines), MBq."""
    from core.dosimetry.tia import MODELS, fitted_curve

    t = np.asarray(times_h, float)
    grid = np.linspace(0.0, max(float(t.max()) * 1.5, 1.0), 300)
    fig = go.Figure()
    for name, fit in fits.items():
        fig.add_trace(go.Scatter(x=t, y=fit["activity_mbq"], mode="markers", name=name, legendgroup=name))
        if fit.get("model") in MODELS:
            curve = fitted_curve(fit["model"], fit["params"], grid)
            fig.add_trace(go.Scatter(x=grid, y=curve, mode="lines", name=f"{name} ({fit['model']})",
                                     legendgroup=name, showlegend=False, line=dict(width=1.5)))
    fig.update_layout(xaxis_title="hours after injection", yaxis_title="activity (MBq)", yaxis_type="log",
                      height=420, margin=dict(l=10, r=10, t=30, b=10))
    return fig
