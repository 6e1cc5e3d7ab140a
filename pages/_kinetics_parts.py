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
                ("tumour_volume_ml", "Tumour mask (ml)"), ("background_mean", "Background mean"),
                ("tsr_max", "Tumour/striatum max"), ("tsr_mean", "Tumour/striatum mean"))
_DYNAMIC_ROWS = (("ttp_min", "Time to peak (min)"), ("slope_per_h", "Slope (/h)"),
                 ("early_late_ratio", "Early/late ratio"), ("pattern", "Curve pattern"))


def _protocol_or_fdopa(tracer):
    """The tracer's protocol for widget defaults (FDOPA's when unknown: the analysis then says why)."""
    from core.errors import InputError
    from core.kinetics.parameters import protocol_for

    try:
        return protocol_for(tracer)
    except InputError:
        return protocol_for("FDOPA")


def settings_sidebar(settings_type, repo, case):
    """The analysis settings chosen in the sidebar (an uploaded input CSV becomes a choice)."""
    from core.kinetics.analysis import INPUT_FILE_KIND

    files = {r.parameters["sha256"]: r.parameters.get("name", "input.csv")
             for r in repo.list_results(case.study_id, INPUT_FILE_KIND)}
    with st.sidebar:
        st.subheader("Kinetic analysis")
        tracer = st.selectbox("Tracer", ["from the image", "FDOPA", "FET"], key="tracer")
        sources = ["auto", "arterial", "population", "image-derived", "none"] + [f"file: {n}" for n in files.values()]
        source = st.selectbox("Input function", sources, key="input_function",
                              help="auto: measured arterial curve, else population, else image-derived (a mask "
                                   "called 'vessel' when the case has one). Upload a CSV below the tabs.")
        masks = [m.name for m in case.masks if m.name not in ("tumour", "aggressive")]
        background = st.selectbox("Background", ["contralateral"] + masks, key="background_region",
                                  help="contralateral: crescent of grey and white matter opposite the tumour.")
        reference = st.selectbox("SRTM reference", ["background", "cerebellum", "occipital_cortex", "striatum"],
                                 key="reference_region")
        map_model = st.selectbox("Voxel-wise model", ["2tcm_irr", "srtm", "1tcm", "patlak", "logan", "2tcm", "none"],
                                 key="map_model")
        method = st.selectbox("Clustering", ["kmeans", "gmm"], key="cluster_method")
        with st.expander("Windows and thresholds"):
            default = _protocol_or_fdopa(tracer if tracer != "from the image" else
                                         (case.pet.dose or {}).get("tracer") if case.pet else None)
            window = st.slider("Static window (min p.i.)", 0.0, 90.0, tuple(default.static_window_min), 5.0,
                               key=f"window_{default.name}")
            btv = st.number_input("BTV threshold (TBR)", 1.1, 5.0, float(default.btv_tbr_threshold), 0.1,
                                  key=f"btv_{default.name}")
    file_sha = next((h for h, n in files.items() if source == f"file: {n}"), None)
    return settings_type(
        tracer=None if tracer == "from the image" else tracer, background=background, reference=reference,
        input_function="file" if file_sha else source, input_file=file_sha, map_model=map_model,
        cluster_method=method, btv_threshold=None if btv == default.btv_tbr_threshold else float(btv),
        static_window_min=None if tuple(window) == tuple(default.static_window_min) else tuple(window))


def upload_panel(repo, case) -> None:
    """Add a mask (tumour, background, vessel) or an input-function CSV to the case."""
    import tempfile
    from pathlib import Path

    from core.errors import InputError
    from core.imaging.uploads import stage_uploads
    from core.kinetics.analysis import store_input_csv
    from pages._shared import show_input_error

    with st.expander("Add a mask or an input function to this case"):
        left, right = st.columns(2)
        mask_file = left.file_uploader("Mask (NIfTI, 0/1)", type=["nii", "gz"], key="mask_upload")
        name = left.selectbox("Mask name", ["tumour", "background", "vessel"], key="mask_name")
        if left.button("Add mask", disabled=mask_file is None, key="add_mask"):
            try:
                with stage_uploads([(mask_file.name, mask_file.getvalue())]) as paths:
                    repo.add_mask(case.study_id, paths[0], name, user="kinetics")
                st.rerun()
            except InputError as err:
                show_input_error(err)
        csv_file = right.file_uploader("Input function (CSV: time and plasma columns with units)",
                                       type=["csv", "tsv", "txt"], key="csv_upload")
        if right.button("Add input function", disabled=csv_file is None, key="add_csv"):
            with tempfile.TemporaryDirectory(prefix="theraboard-input-") as tmp:
                path = Path(tmp) / Path(csv_file.name).name
                path.write_bytes(csv_file.getvalue())
                try:
                    store_input_csv(repo, case.study_id, path, name=csv_file.name, user="kinetics")
                    st.rerun()
                except InputError as err:
                    show_input_error(err)


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


def curves_view(result, protocol) -> None:
    """Region curves with a chosen model's fitted curves."""
    from core.viz.kinetics import tac_figure

    names = list(result.tacs)
    shown = st.multiselect("Regions", names, [n for n in ("tumour", "background", "cluster 1", "hotspot") if n in names],
                           key="regions")
    models = list(result.model_curves)
    model = st.selectbox("Model curve", ["none"] + models,
                         index=1 + models.index("2tcm_irr") if "2tcm_irr" in models else 0, key="model")
    st.plotly_chart(tac_figure(result.frame_start_min, result.frame_end_min,
                               {n: result.tacs[n].mean for n in shown}, unit=result.unit,
                               model_curves=result.model_curves.get(model), model_name=model,
                               window_min=protocol.static_window_min), key="tac_chart")
    st.caption("Markers: frame averages, bars span each frame; dashed: fitted model; shaded: static window.")


def target_view(repo, case, result) -> None:
    """The biopsy target with its reasons, and a chosen map fused over the first background series."""
    import numpy as np

    from core.imaging.planes import to_canonical
    from core.viz.slices import fusion_figure, orthogonal_planes
    from pages._shared import display_range, load_series

    target = result.target
    st.markdown(f"**Biopsy target** · x {target['xyz_mm'][0]:.1f}, y {target['xyz_mm'][1]:.1f}, "
                f"z {target['xyz_mm'][2]:.1f} mm (scanner RAS) · voxel {tuple(target['ijk'])}")
    for reason in target["reasons"]:
        st.caption(reason)
    label = st.selectbox("Overlay", [k for k, v in OVERLAYS.items() if v[0] in result.maps], key="overlay")
    background = case.backgrounds()[0]
    grid = to_canonical(load_series(repo.url, background.id))
    grid = grid.frame(grid.n_frames - 1) if grid.data.ndim == 4 else grid
    overlay, value_range, colormap = overlay_of(result, label)
    cursor = np.clip(np.round(grid.mm_to_voxel(target["xyz_mm"])), 0, np.array(grid.shape) - 1).astype(int)
    st.plotly_chart(fusion_figure(orthogonal_planes(grid, cursor, overlay), background_range=display_range(
        repo.url, background.id), overlay_range=value_range, overlay_threshold=value_range[0] + 1e-9,
        colormap=colormap, opacity=0.6, overlay_label=label, background_label=background.role,
        cursor_mm=target["xyz_mm"]), config={"displaylogo": False})


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
