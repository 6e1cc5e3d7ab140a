"""Figures of the AI diagnosis page: attribution over fused slices, evidence in 3D, label efficiency.

Pure functions: arrays and tables in, plotly figures out (nothing is computed that the
engine has not already stored).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.errors import InputError

__all__ = ["attribution_slice_figure", "label_slice_figure", "evidence_mask", "label_efficiency_figure",
           "loss_curve_figure",
           "ARM_COLOURS", "AXES", "CLUSTER_COLOURS"]

#: Colours of the label-efficiency arms.
ARM_COLOURS = {"ssl_vit": "#4e79a7", "cnn_scratch": "#f28e2b", "radiomics": "#59a14f"}
#: Slicing axes of the model grid (RAS+, axis-aligned).
AXES = {0: "sagittal (x)", 1: "coronal (y)", 2: "axial (z)"}
_BACKGROUND = "#0e1117"
#: Colours of cluster labels 1, 2, ... (label 0, outside the tumour, is transparent).
CLUSTER_COLOURS = ("#4e79a7", "#59a14f", "#edc948", "#b07aa1", "#76b7b2", "#ff9da7")


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The plane of a (D, H, W) volume, oriented for display (rows = second remaining axis, flipped up)."""
    plane = np.take(volume, index, axis=axis)
    return plane.T  # rows along the later axis (y or z), shown with the origin at the bottom


def attribution_slice_figure(background, attribution, tumour, *, axis: int = 2, index: int | None = None,
                             background_name: str = "PET late (SUVR)", method: str = "",
                             clip_quantile: float = 0.99, voxel_mm: float = 3.0, height: int = 460) -> go.Figure:
    """One slice of the model input with the attribution as a heat overlay and the tumour outline.

    Parameters
    ----------
    background : ndarray (D, H, W)
        A channel of the model input (e.g. PET late SUVR or T1c z-score).
    attribution : ndarray (D, H, W)
        Channel-summed attribution; positive values (evidence for progression) in red,
        negative (evidence against) in blue, each scaled to the ``clip_quantile`` of its
        absolute values over the volume and transparent near zero.
    tumour : ndarray (D, H, W) of bool
        Drawn as a white contour.
    axis : {0, 1, 2}, default=2
    index : int, optional
        Slice; default the slice with the most tumour voxels.
    background_name, method : str
        Labels.
    clip_quantile : float, default=0.99
    voxel_mm : float, default=3.0
        Axis ticks in mm from the crop's corner.
    height : int, default=460

    Examples
    --------
    >>> a = np.zeros((8, 8, 8)); a[4, 4, 4] = 1.0
    >>> fig = attribution_slice_figure(np.ones((8, 8, 8)), a, a > 0)
    >>> [t.name for t in fig.data]
    ['PET late (SUVR)', 'attribution', 'tumour']
    """
    bg, attr, tum = (np.asarray(v) for v in (background, attribution, tumour))
    if not (bg.shape == attr.shape == tum.shape) or bg.ndim != 3:
        raise InputError(f"background {bg.shape}, attribution {attr.shape} and tumour {tum.shape} must be one "
                         "3D grid", fix="Pass the stored crop, its map and its mask.")
    if axis not in AXES:
        raise InputError(f"axis={axis!r} is not 0, 1 or 2")
    if index is None:
        counts = tum.astype(bool).sum(axis=tuple(a for a in range(3) if a != axis))
        index = int(np.argmax(counts)) if counts.any() else bg.shape[axis] // 2
    if not 0 <= int(index) < bg.shape[axis]:
        raise InputError(f"slice {index} is outside 0-{bg.shape[axis] - 1}")
    scale = float(np.quantile(np.abs(attr), clip_quantile)) if np.any(attr) else 1.0
    scale = scale if scale > 0 else float(np.abs(attr).max() or 1.0)
    shown = np.clip(_plane(attr, axis, int(index)) / scale, -1.0, 1.0)
    base = _plane(bg, axis, int(index))
    lo, hi = np.quantile(bg, [0.01, 0.995]) if np.ptp(bg) > 0 else (0.0, 1.0)
    rows, cols = base.shape
    x, y = np.arange(cols) * voxel_mm, np.arange(rows) * voxel_mm
    heat = [[0.0, "rgba(33,102,172,0.85)"], [0.35, "rgba(103,169,207,0.5)"], [0.5, "rgba(0,0,0,0)"],
            [0.65, "rgba(239,138,98,0.5)"], [1.0, "rgba(178,24,43,0.9)"]]
    fig = go.Figure([
        go.Heatmap(z=base, x=x, y=y, colorscale="gray", zmin=float(lo), zmax=float(hi), showscale=False,
                   name=background_name, hovertemplate=f"{background_name}: %{{z:.2f}}<extra></extra>"),
        go.Heatmap(z=shown, x=x, y=y, colorscale=heat, zmin=-1, zmax=1, name="attribution",
                   colorbar={"title": "evidence", "tickvals": [-1, 0, 1],
                             "ticktext": ["against", "0", "for progression"]},
                   hovertemplate="relative attribution: %{z:.2f}<extra></extra>"),
        go.Contour(z=_plane(tum.astype(float), axis, int(index)), x=x, y=y, showscale=False, name="tumour",
                   contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "lines"},
                   line={"color": "white", "width": 2}, hoverinfo="skip"),
    ])
    fig.update_layout(title=f"{method} over {background_name}, {AXES[axis]} slice {index}", height=height,
                      paper_bgcolor=_BACKGROUND, plot_bgcolor=_BACKGROUND, font={"color": "#fafafa"},
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_xaxes(title="mm", scaleanchor="y", showgrid=False)
    fig.update_yaxes(title="mm", showgrid=False)
    return fig


def label_slice_figure(background, labels, *, highlight=None, target_ijk=None, axis: int = 2,
                       index: int | None = None, background_name: str = "PET late (SUVR)", title: str = "",
                       voxel_mm: float = 3.0, height: int = 460) -> go.Figure:
    """One slice with integer cluster labels as coloured patches, a highlighted region and a target.

    Parameters
    ----------
    background : ndarray (D, H, W)
    labels : ndarray (D, H, W) of int
        0 = unlabelled (transparent), 1..K clusters (:data:`CLUSTER_COLOURS`).
    highlight : ndarray (D, H, W) of bool, optional
        Drawn as a red outline (e.g. the aggressive cluster).
    target_ijk : sequence of 3 int, optional
        A voxel drawn as a cross when it lies in the slice.
    axis, index, background_name, voxel_mm, height
        As :func:`attribution_slice_figure`; default slice: the most labelled voxels.
    title : str

    Examples
    --------
    >>> lab = np.zeros((6, 6, 6), int); lab[2:4, 2:4, 2:4] = 1; lab[3, 3, 3] = 2
    >>> fig = label_slice_figure(np.ones((6, 6, 6)), lab, highlight=lab == 2, target_ijk=(3, 3, 3))
    >>> [t.name for t in fig.data]
    ['PET late (SUVR)', 'cluster 1', 'cluster 2', 'aggressive', 'target']
    """
    bg, lab = np.asarray(background), np.asarray(labels).astype(int)
    if bg.shape != lab.shape or bg.ndim != 3:
        raise InputError(f"background {bg.shape} and labels {lab.shape} must be one 3D grid")
    if axis not in AXES:
        raise InputError(f"axis={axis!r} is not 0, 1 or 2")
    if index is None:
        counts = (lab > 0).sum(axis=tuple(a for a in range(3) if a != axis))
        index = int(np.argmax(counts)) if counts.any() else bg.shape[axis] // 2
    if not 0 <= int(index) < bg.shape[axis]:
        raise InputError(f"slice {index} is outside 0-{bg.shape[axis] - 1}")
    base, plane = _plane(bg, axis, int(index)), _plane(lab, axis, int(index))
    lo, hi = np.quantile(bg, [0.01, 0.995]) if np.ptp(bg) > 0 else (0.0, 1.0)
    rows, cols = base.shape
    x, y = np.arange(cols) * voxel_mm, np.arange(rows) * voxel_mm
    traces = [go.Heatmap(z=base, x=x, y=y, colorscale="gray", zmin=float(lo), zmax=float(hi), showscale=False,
                         name=background_name, hovertemplate=f"{background_name}: %{{z:.2f}}<extra></extra>")]
    for k in sorted(int(v) for v in np.unique(lab) if v > 0):
        colour = CLUSTER_COLOURS[(k - 1) % len(CLUSTER_COLOURS)]
        traces.append(go.Heatmap(z=np.where(plane == k, 1.0, np.nan), x=x, y=y, name=f"cluster {k}",
                                 colorscale=[[0, colour], [1, colour]], showscale=False, opacity=0.55,
                                 hovertemplate=f"cluster {k}<extra></extra>"))
    if highlight is not None:
        hl = np.asarray(highlight, bool)
        if hl.shape != bg.shape:
            raise InputError(f"highlight {hl.shape} is not on the grid {bg.shape}")
        traces.append(go.Contour(z=_plane(hl.astype(float), axis, int(index)), x=x, y=y, showscale=False,
                                 name="aggressive", contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "lines"},
                                 line={"color": "#e15759", "width": 3}, hoverinfo="skip"))
    if target_ijk is not None:
        ijk = [int(v) for v in target_ijk]
        inside = ijk[axis] == int(index)
        other = [a for a in range(3) if a != axis]
        traces.append(go.Scatter(x=[ijk[other[0]] * voxel_mm] if inside else [], y=[ijk[other[1]] * voxel_mm]
                                 if inside else [], mode="markers", name="target",
                                 marker={"symbol": "x-thin", "size": 16, "line": {"width": 3, "color": "#00e5ff"}}))
    fig = go.Figure(traces)
    fig.update_layout(title=title or f"{AXES[axis]} slice {index}", height=height, paper_bgcolor=_BACKGROUND,
                      plot_bgcolor=_BACKGROUND, font={"color": "#fafafa"}, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    fig.update_xaxes(title="mm", scaleanchor="y", showgrid=False)
    fig.update_yaxes(title="mm", showgrid=False)
    return fig


def evidence_mask(attribution, within=None, top_fraction: float = 0.05) -> np.ndarray:
    """Voxels holding the strongest positive evidence: the top ``top_fraction`` of the positive attribution.

    Parameters
    ----------
    attribution : ndarray (D, H, W)
    within : ndarray of bool, optional
        Restrict to these voxels (e.g. the brain).
    top_fraction : float, default=0.05
        Fraction of the candidate voxels kept (those with positive attribution only).

    Examples
    --------
    >>> a = np.arange(100.0).reshape(4, 5, 5) - 50
    >>> int(evidence_mask(a, top_fraction=0.1).sum())
    5
    """
    a = np.asarray(attribution, float)
    if not 0 < top_fraction <= 1:
        raise InputError(f"top_fraction={top_fraction} is not in (0, 1]")
    cand = a > 0
    if within is not None:
        cand &= np.asarray(within, bool)
    if not cand.any():
        return np.zeros(a.shape, bool)
    k = max(1, int(round(top_fraction * cand.sum())))
    cut = np.sort(a[cand])[-k]
    return cand & (a >= cut)


def label_efficiency_figure(table: pd.DataFrame, *, split: str = "test", titles: dict | None = None,
                            height: int = 420) -> go.Figure:
    """Held-out AUC against the number of labelled patients, one line per arm.

    With one seed per point the error bars are the DeLong 95 % CI; with several seeds the
    line joins the mean AUC over seeds, every seed is a small marker and the error bars
    span the seeds' range (training variation), so the reader sees both.

    Parameters
    ----------
    table : DataFrame
        :meth:`core.learning.label_efficiency.LabelEfficiency.table`.
    split : {"test", "external"}, default="test"
    titles : dict, optional
        Arm -> legend name.

    Examples
    --------
    >>> t = pd.DataFrame({"arm": ["cnn_scratch"] * 2, "fraction": [0.5, 1.0], "seed": 0, "n_labels": [50, 100],
    ...                   "test_auc": [0.8, 0.9], "test_ci_low": [0.7, 0.8], "test_ci_high": [0.9, 0.95]})
    >>> len(label_efficiency_figure(t).data)
    1
    """
    auc_col, lo_col, hi_col = f"{split}_auc", f"{split}_ci_low", f"{split}_ci_high"
    need = {"arm", "n_labels", "seed", auc_col, lo_col, hi_col}
    if not need <= set(table.columns):
        raise InputError(f"the label-efficiency table lacks {sorted(need - set(table.columns))}")
    fig = go.Figure()
    for arm, rows in table.groupby("arm", sort=False):
        name, colour = (titles or {}).get(arm, arm), ARM_COLOURS.get(arm)
        g = rows.groupby("n_labels")
        mean = g[auc_col].mean()
        several = bool((g["seed"].nunique() > 1).any())
        if several:
            upper, lower = g[auc_col].max() - mean, mean - g[auc_col].min()
        else:
            upper, lower = g[hi_col].mean() - mean, mean - g[lo_col].mean()
        fig.add_trace(go.Scatter(
            x=mean.index, y=mean.to_numpy(), mode="lines+markers", name=name, line={"color": colour},
            error_y={"type": "data", "symmetric": False, "array": upper.to_numpy(), "arrayminus": lower.to_numpy()},
            hovertemplate="%{x} labelled patients: AUC %{y:.3f}<extra>%{fullData.name}</extra>"))
        if several:
            fig.add_trace(go.Scatter(x=rows["n_labels"], y=rows[auc_col], mode="markers", name=f"{name}, each seed",
                                     marker={"color": colour, "size": 6, "opacity": 0.45}, showlegend=False,
                                     hovertemplate="seed %{text}: AUC %{y:.3f}<extra></extra>",
                                     text=rows["seed"].astype(str)))
    fig.update_layout(height=height, xaxis={"title": "labelled patients (training subset + validation)",
                                            "type": "log"},
                      yaxis={"title": f"AUC, {'internal test' if split == 'test' else 'external site'}",
                             "range": [0.4, 1.0]},
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def loss_curve_figure(history, *, title: str = "Masked-autoencoder pretraining", height: int = 360) -> go.Figure:
    """Training and validation loss per epoch, the best epoch marked.

    Parameters
    ----------
    history : list of dict
        ``epoch``, ``train_loss``, ``val_loss`` per epoch (as stored in a model bundle).

    Examples
    --------
    >>> h = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4}, {"epoch": 2, "train_loss": 0.3, "val_loss": 0.35}]
    >>> [t.name for t in loss_curve_figure(h).data]
    ['training', 'validation', 'best epoch']
    """
    rows = pd.DataFrame(list(history))
    need = {"epoch", "train_loss", "val_loss"}
    if rows.empty or not need <= set(rows.columns):
        raise InputError("the training history has no epochs with train_loss and val_loss",
                         fix="Use the history stored in the model bundle.")
    best = rows.loc[rows["val_loss"].idxmin()]
    fig = go.Figure([
        go.Scatter(x=rows["epoch"], y=rows["train_loss"], mode="lines", name="training"),
        go.Scatter(x=rows["epoch"], y=rows["val_loss"], mode="lines+markers", name="validation"),
        go.Scatter(x=[best["epoch"]], y=[best["val_loss"]], mode="markers", name="best epoch",
                   marker={"symbol": "star", "size": 14}),
    ])
    fig.update_layout(title=title, height=height, xaxis={"title": "epoch"},
                      yaxis={"title": "masked MSE (removed patches)"}, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
