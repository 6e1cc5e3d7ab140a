"""Pieces of the PET kinetics page: settings, cached results, tables, overlays, exports.

Not a page (``app.py`` registers pages explicitly).
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from core.kinetics.parameters import PATTERN_NAMES

#: Overlay label -> (map key, colour map, value range or None for a robust range).
OVERLAYS = {
    "SUV (static window)": ("static", "Hot", None),
    "TBR": ("tbr", "Hot", (1.0, 3.0)),
    "Time to peak (min)": ("ttp_min", "Jet", None),
    "Slope (per h)": ("slope_per_h", "Jet", None),
    "Ki map (2TCM irreversible)": ("2tcm_irr_Ki", "Inferno", None),
    "K1 map (2TCM irreversible)": ("2tcm_irr_K1", "Inferno", None),
    "BPND map (SRTM)": ("srtm_BPND", "Inferno", None),
    "Kinetic clusters (1 = aggressive)": ("mask_clusters", "Jet", None),
    "Aggressive sub-region": ("mask_aggressive", "Hot", (0.0, 1.0)),
    "Dynamic hotspot": ("mask_hotspot", "Hot", (0.0, 1.0)),
    "Biological tumour volume": ("mask_btv", "Hot", (0.0, 1.0)),
    "Background region": ("mask_background", "Viridis", (0.0, 1.0)),
}
_STATIC_ROWS = (("uptake_max", "max"), ("uptake_mean", "mean"), ("uptake_peak", "peak (1 ml)"),
                ("tbr_max", "TBRmax"), ("tbr_mean", "TBRmean"), ("tbr_peak", "TBRpeak"), ("btv_ml", "BTV (ml)"),
                ("tumour_volume_ml", "Tumour mask (ml)"), ("background_mean", "Background mean"))
_DYNAMIC_ROWS = (("ttp_min", "Time to peak (min)"), ("slope_per_h", "Slope (/h)"),
                 ("early_late_ratio", "Early/late ratio"), ("pattern", "Curve pattern"))


def settings_sidebar(settings_type):
    """The analysis settings chosen in the sidebar."""
    with st.sidebar:
        st.subheader("Kinetic analysis")
        tracer = st.selectbox("Tracer", ["from the image", "FDOPA", "FET"], key="tracer")
        source = st.selectbox("Input function", ["auto", "arterial", "population", "image-derived", "none"],
                              key="input_function", help="auto: measured arterial curve, else population, "
                              "else image-derived.")
        map_model = st.selectbox("Voxel-wise model", ["2tcm_irr", "srtm", "1tcm", "patlak", "logan", "2tcm", "none"],
                                 key="map_model")
        method = st.selectbox("Clustering", ["kmeans", "gmm"], key="cluster_method")
    return settings_type(tracer=None if tracer == "from the image" else tracer, input_function=source,
                         map_model=map_model, cluster_method=method)


@st.cache_resource(max_entries=4, show_spinner="Loading the stored analysis…")
def analysis_of(db_url: str, result_id: int):
    """A stored kinetic analysis (read-only, shared across reruns)."""
    from core.kinetics.analysis import load_analysis
    from pages._shared import repository

    repo = repository()
    return load_analysis(repo, repo.get_result(result_id))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def parameter_rows(result, protocol) -> pd.DataFrame:
    """Static and dynamic tumour parameters with the published cut-offs beside them."""
    cutoffs: dict[str, list] = {}
    for c in protocol.cutoffs:
        cutoffs.setdefault(c.parameter, []).append(c)
    unit = result.unit
    rows = []
    values = {**result.static, **result.dynamic["tumour"]}
    for key, label in _STATIC_ROWS + _DYNAMIC_ROWS:
        if key not in values:
            continue
        value = values[key]
        shown = PATTERN_NAMES.get(int(value), "?") if key == "pattern" and value is not None else _fmt(value)
        if key.startswith("uptake") or key == "background_mean":
            label = f"{label} ({unit})"
        found = cutoffs.get(key, [])
        rows.append({"parameter": label, "value": shown,
                     "cut-off": "; ".join(f"{c.direction} {c.threshold:g} → {c.positive}" for c in found) or "",
                     "source": "; ".join(c.short for c in found)})
    return pd.DataFrame(rows)


def fit_table(result, model: str) -> pd.DataFrame:
    """Fitted parameters of every region for one model (rows: regions)."""
    table = pd.DataFrame(result.fits[model]).T
    table.index.name = "region"
    return table.reset_index()


def overlay_of(result, label: str):
    """The map Volume, its display range and colour map for an overlay label."""
    import numpy as np

    from core.viz.slices import robust_range

    key, colormap, value_range = OVERLAYS[label]
    volume = result.maps[key]
    if value_range is None:
        values = np.asarray(volume.data, dtype=float)
        finite = values[np.isfinite(values)]
        value_range = robust_range(finite, 1.0, 99.0) if finite.size else (0.0, 1.0)
        if key == "mask_clusters":
            value_range = (0.0, float(np.nanmax(values)))
    data = np.nan_to_num(np.asarray(volume.data, dtype=np.float32), nan=value_range[0] - 1.0)
    return volume.with_data(data), (float(value_range[0]), float(value_range[1])), colormap


@st.cache_data(max_entries=4, show_spinner="Building the 3D scene…")
def scene_of(db_url: str, result_id: int):
    """Brain surface, tumour, aggressive sub-region and biopsy target (plotly 3D)."""
    from core.viz.scene3d import SceneStructure, scene_figure

    result = analysis_of(db_url, result_id)
    maps = result.maps
    structures = [SceneStructure("brain", maps["mask_brain"], "#9aa5b1", 0.12),
                  SceneStructure("tumour", maps["mask_tumour"], "#ff7f0e", 0.45),
                  SceneStructure("aggressive sub-region", maps["mask_aggressive"], "#d62728", 0.9)]
    return scene_figure(structures, target_mm=result.target["xyz_mm"])


@st.cache_data(max_entries=4, show_spinner="Preparing the exports…")
def exports(db_url: str, result_id: int) -> tuple[bytes, bytes]:
    from core.kinetics.analysis import export_csv, export_nifti_zip

    result = analysis_of(db_url, result_id)
    return export_csv(result), export_nifti_zip(result)
