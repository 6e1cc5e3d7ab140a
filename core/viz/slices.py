"""Orthogonal slices of a PET (or any overlay) fused over an anatomical background.

The display grid is the background volume on its closest RAS+ axes
(:func:`core.imaging.planes.to_canonical`); the overlay is sampled on each displayed
plane (:func:`core.imaging.planes.sample_plane`), so the PET keeps its own grid and
nothing is resampled in advance.

Display conventions: axial and coronal planes are shown in the radiological convention
(patient right on the viewer's left) unless ``radiological=False``; sagittal planes
show anterior to the left. Every axis is in scanner millimetres and labelled with its
orientation letters, so no convention is implicit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.imaging.planes import AXES, sample_plane
from core.imaging.volume import Volume

__all__ = ["PlaneImage", "orthogonal_planes", "window_from_level", "robust_range", "fusion_figure",
           "OVERLAY_COLORMAPS"]

#: Colour maps offered for PET overlays (plotly names); "Hot" and "Inferno" read well on a projector.
OVERLAY_COLORMAPS = ("Hot", "Inferno", "Jet", "Viridis", "Greys")

# For each plane: (horizontal voxel axis, vertical voxel axis) on a canonical grid, and the
# letters at the low/high end of each screen axis before any radiological flip.
_LAYOUT = {
    "axial": ((0, 1), ("L", "R"), ("P", "A")),
    "coronal": ((0, 2), ("L", "R"), ("I", "S")),
    "sagittal": ((1, 2), ("P", "A"), ("I", "S")),
}


@dataclass(frozen=True)
class PlaneImage:
    """One displayed plane: background and overlay values on the same pixels.

    ``background`` and ``overlay`` have shape (n_vertical, n_horizontal); ``x_mm`` and
    ``y_mm`` are the scanner coordinates of the pixel centres along the screen axes.
    """

    plane: str
    index: int
    background: np.ndarray
    overlay: np.ndarray | None
    x_mm: np.ndarray
    y_mm: np.ndarray


def _axis_mm(grid: Volume, axis: int) -> np.ndarray:
    n = grid.data.shape[axis]
    ijk = np.zeros((n, 3))
    ijk[:, axis] = np.arange(n)
    return grid.voxel_to_mm(ijk)[:, axis]


def orthogonal_planes(grid: Volume, cursor_ijk, overlay: Volume | None = None,
                      overlay_scale: float = 1.0) -> dict[str, PlaneImage]:
    """Sagittal, coronal and axial planes through ``cursor_ijk`` of a canonical ``grid``.

    Parameters
    ----------
    grid : Volume
        Background on a canonical (RAS+) grid, 3D.
    cursor_ijk : sequence of 3 int
        Voxel index of the cursor on ``grid``.
    overlay : Volume, optional
        A 3D image in the same scanner space (for example one PET frame).
    overlay_scale : float, default=1.0
        Multiplies the overlay values (for example the SUV factor in g/Bq).
    """
    out = {}
    for plane, axis in AXES.items():
        index = int(cursor_ijk[axis])
        (h, v), _, _ = _LAYOUT[plane]
        bg = sample_plane(grid, grid, plane, index)
        ov = None
        if overlay is not None:
            ov = sample_plane(overlay, grid, plane, index) * np.float32(overlay_scale)
        # plane arrays are indexed [other0, other1] with other0 < other1 == (h, v): transpose to [v, h]
        out[plane] = PlaneImage(plane, index, bg.T, None if ov is None else ov.T,
                                _axis_mm(grid, h), _axis_mm(grid, v))
    return out


def window_from_level(level: float, width: float) -> tuple[float, float]:
    """Display range (min, max) of a window given its centre ``level`` and ``width``."""
    return level - width / 2.0, level + width / 2.0


def robust_range(values: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.5) -> tuple[float, float]:
    """Percentile range of the finite, non-zero values, a sensible default window."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v != 0)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [low_pct, high_pct])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def fusion_figure(planes: dict[str, PlaneImage], *, background_range: tuple[float, float],
                  overlay_range: tuple[float, float] | None = None, overlay_threshold: float | None = None,
                  colormap: str = "Hot", opacity: float = 0.5, overlay_label: str = "PET",
                  background_label: str = "MRI", radiological: bool = True,
                  cursor_mm=None, height: int = 380) -> go.Figure:
    """Three fused planes side by side (axial, coronal, sagittal) as one plotly figure.

    Overlay values below ``overlay_threshold`` are left transparent so that the
    anatomy shows through; the hover label gives the position in mm and both values.
    """
    order = ["axial", "coronal", "sagittal"]
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.03,
                        subplot_titles=[f"{p} ({planes[p].index})" for p in order])
    bmin, bmax = background_range
    for col, name in enumerate(order, start=1):
        p = planes[name]
        fig.add_trace(go.Heatmap(
            z=p.background, x=p.x_mm, y=p.y_mm, colorscale="Greys", reversescale=True,
            zmin=bmin, zmax=bmax, showscale=False, name=background_label,
            hovertemplate=f"%{{x:.1f}}, %{{y:.1f}} mm<br>{background_label} %{{z:.3g}}<extra></extra>",
        ), row=1, col=col)
        if p.overlay is not None:
            ov = p.overlay
            if overlay_threshold is not None:
                ov = np.where(ov >= overlay_threshold, ov, np.nan)
            omin, omax = overlay_range if overlay_range is not None else robust_range(p.overlay)
            fig.add_trace(go.Heatmap(
                z=ov, x=p.x_mm, y=p.y_mm, colorscale=colormap, zmin=omin, zmax=omax, opacity=opacity,
                showscale=(col == 3), name=overlay_label, customdata=p.background,
                colorbar=dict(title=dict(text=overlay_label), thickness=12, len=0.9),
                hovertemplate=(f"%{{x:.1f}}, %{{y:.1f}} mm<br>{overlay_label} %{{z:.3g}}"
                               f"<br>{background_label} %{{customdata:.3g}}<extra></extra>"),
            ), row=1, col=col)
        _, (h_lo, h_hi), (v_lo, v_hi) = _LAYOUT[name]
        reverse_h = (radiological and name != "sagittal") or name == "sagittal"
        left, right = (h_hi, h_lo) if reverse_h else (h_lo, h_hi)
        xref = "x" if col == 1 else f"x{col}"
        fig.update_xaxes(autorange="reversed" if reverse_h else True, showgrid=False, zeroline=False,
                         title_text=f"{left} ← mm → {right}", row=1, col=col)
        fig.update_yaxes(scaleanchor=xref, scaleratio=1, showgrid=False, zeroline=False,
                         title_text=f"{v_lo} ← mm → {v_hi}" if col == 1 else None, row=1, col=col)
        if cursor_mm is not None:
            h_axis, v_axis = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[name]
            line = dict(color="rgba(0,200,255,0.7)", width=1, dash="dot")
            fig.add_vline(x=float(cursor_mm[h_axis]), line=line, row=1, col=col)
            fig.add_hline(y=float(cursor_mm[v_axis]), line=line, row=1, col=col)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10),
                      plot_bgcolor="black", paper_bgcolor="rgba(0,0,0,0)", uirevision="fusion")
    return fig
