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

import base64
import functools
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale

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


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _scaled(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    return np.clip((np.nan_to_num(values, nan=vmin) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)


@functools.lru_cache(maxsize=16)
def _lut(colormap: str) -> np.ndarray:
    """256 x 3 uint8 lookup table of a plotly colour scale."""
    colours = sample_colorscale(get_colorscale(colormap), np.linspace(0.0, 1.0, 256), colortype="tuple")
    return np.rint(np.asarray(colours) * 255).astype(np.uint8)


def grey_png(values: np.ndarray, vmin: float, vmax: float) -> str:
    """Greyscale PNG data URI of ``values`` windowed to [vmin, vmax] (NaN black).

    Images are drawn as PNG: the browser paints a PNG far faster than a heatmap pixel by
    pixel, which is what keeps a slice change interactive. Row 0 of ``values`` is the
    lowest screen row (plotly draws image row i at ``y0 + i * dy`` on a rising y axis).
    """
    return _png((_scaled(values, vmin, vmax) * 255).astype(np.uint8))


def fused_png(background: np.ndarray, background_range: tuple[float, float], overlay: np.ndarray,
              overlay_range: tuple[float, float], *, colormap: str = "Hot", opacity: float = 0.5,
              threshold: float | None = None) -> str:
    """RGB PNG data URI of an overlay blended over a greyscale background.

    .. math:: \\mathrm{rgb} = (1 - \\alpha)\\,g + \\alpha\\,\\mathrm{LUT}(o),
              \\quad \\alpha = \\text{opacity where } o \\ge \\text{threshold, else } 0

    with ``g`` the windowed background grey level and ``LUT`` the plotly colour scale
    over ``overlay_range``. NaN overlay pixels (outside the PET field of view) stay grey.
    """
    grey = (_scaled(background, *background_range) * 255)[..., None]
    colour = _lut(colormap)[(_scaled(overlay, *overlay_range) * 255).astype(np.uint8)].astype(np.float32)
    visible = np.isfinite(overlay)
    if threshold is not None:
        visible &= np.nan_to_num(overlay, nan=-np.inf) >= threshold
    alpha = (np.float32(opacity) * visible)[..., None]
    return _png(np.rint((1 - alpha) * grey + alpha * colour).astype(np.uint8))


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

    Each plane is one PNG image of the overlay blended over the background
    (:func:`fused_png`); overlay values below ``overlay_threshold`` are left clear so
    that the anatomy shows through. A slice change rebuilds the figure, so it is kept
    cheap to build, to send and to draw: one data list and one layout dict (no
    ``make_subplots``), PNG images instead of heatmaps painted pixel by pixel in the
    browser, and no per-pixel hover data.
    """
    order = ("axial", "coronal", "sagittal")
    gap = 0.03
    width = (1.0 - 2 * gap) / 3
    bmin, bmax = background_range
    data, layout, shapes, titles, colour_bar = [], {}, [], [], None
    line = dict(color="rgba(0,200,255,0.7)", width=1, dash="dot")
    for n, name in enumerate(order, start=1):
        p = planes[name]
        xa, ya = ("x", "y") if n == 1 else (f"x{n}", f"y{n}")
        image_geometry = dict(x0=float(p.x_mm[0]), y0=float(p.y_mm[0]), dx=float(p.x_mm[1] - p.x_mm[0]),
                              dy=float(p.y_mm[1] - p.y_mm[0]), xaxis=xa, yaxis=ya)
        if p.overlay is None:
            source, label = grey_png(p.background, bmin, bmax), background_label
        else:
            omin, omax = overlay_range if overlay_range is not None else robust_range(p.overlay)
            source = fused_png(p.background, (bmin, bmax), p.overlay, (omin, omax), colormap=colormap,
                               opacity=opacity, threshold=overlay_threshold)
            label = overlay_label
            if n == 3:  # the colour bar rides on a one-pixel, fully transparent heatmap
                colour_bar = (go.Heatmap(
                    z=[[omin]], zmin=omin, zmax=omax, colorscale=colormap, showscale=True, hoverinfo="skip",
                    opacity=0.0,
                    colorbar=dict(title=dict(text=overlay_label), thickness=12, len=0.9), xaxis=xa, yaxis=ya,
                    x=[float(p.x_mm[0])], y=[float(p.y_mm[0])]))
        # Hover gives the position only: per-pixel values as customdata double what the browser
        # decodes on every slice change; the value under the cursor is shown by the page.
        data.append(go.Image(source=source, name=label, hovertemplate="%{x:.1f}, %{y:.1f} mm<extra></extra>",
                             **image_geometry))
        _, (h_lo, h_hi), (v_lo, v_hi) = _LAYOUT[name]
        # sagittal: anterior on the left; axial/coronal: patient right on the left (radiological)
        reverse_h = name == "sagittal" or radiological
        left, right = (h_hi, h_lo) if reverse_h else (h_lo, h_hi)
        x0 = (n - 1) * (width + gap)
        layout[f"xaxis{'' if n == 1 else n}"] = dict(
            domain=[x0, x0 + width], anchor=ya, autorange="reversed" if reverse_h else True,
            showgrid=False, zeroline=False, title=dict(text=f"{left} ← mm → {right}"))
        layout[f"yaxis{'' if n == 1 else n}"] = dict(
            domain=[0.0, 1.0], autorange=True, anchor=xa, scaleanchor=xa, scaleratio=1, showgrid=False, zeroline=False,
            title=dict(text=f"{v_lo} ← mm → {v_hi}") if n == 1 else None)
        titles.append(dict(text=f"{name} ({p.index})", x=x0 + width / 2, y=1.0, xref="paper", yref="paper",
                           xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=14)))
        if cursor_mm is not None:
            h_axis, v_axis = _LAYOUT[name][0]
            shapes.append(dict(type="line", xref=xa, yref=f"{ya} domain", x0=float(cursor_mm[h_axis]),
                               x1=float(cursor_mm[h_axis]), y0=0, y1=1, line=line))
            shapes.append(dict(type="line", xref=f"{xa} domain", yref=ya, y0=float(cursor_mm[v_axis]),
                               y1=float(cursor_mm[v_axis]), x0=0, x1=1, line=line))
    if colour_bar is not None:
        data.append(colour_bar)
    layout.update(height=height, margin=dict(l=10, r=10, t=30, b=10), annotations=titles, shapes=shapes,
                  plot_bgcolor="black", paper_bgcolor="rgba(0,0,0,0)", uirevision="fusion", showlegend=False)
    return go.Figure(data=data, layout=layout)
