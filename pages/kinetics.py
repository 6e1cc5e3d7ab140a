"""PET kinetics: curves, guideline parameters, kinetic maps, aggressive sub-region and biopsy target."""

import numpy as np
import streamlit as st

from core.errors import InputError
from core.imaging.planes import to_canonical
from core.kinetics.analysis import KineticsSettings, analyse_case, find_analysis
from core.kinetics.parameters import protocol_for
from core.viz.kinetics import tac_figure
from core.viz.slices import fusion_figure, orthogonal_planes
from pages._kinetics_parts import (OVERLAYS, analysis_of, exports, fit_table, overlay_of, parameter_rows, scene_of,
                                   settings_sidebar, upload_panel)
from pages._shared import choose_case, display_range, load_series, repository, show_input_error

st.title("PET kinetics")
repo = repository()
cases = {c.study_id: c for c in repo.list_cases()}
if not cases:
    st.info("No case yet: import images or generate the demo cohort on the Worklist.")
    st.stop()
study_id = choose_case(repo, cases)
case = repo.get_case(study_id)
if case.synthetic:
    st.warning("Synthetic demo case: simulated images, not patient data.", icon=":material/science:")
upload_panel(repo, case)
try:
    settings = settings_sidebar(KineticsSettings, repo, case)
    record = find_analysis(repo, study_id, settings)
    if record is None:  # first visit with these settings: compute once, then it is stored
        with st.status("Running the kinetic analysis…", expanded=True) as status:
            bar = st.progress(0.0)
            record_id = analyse_case(repo, study_id, settings, progress=lambda f, m: bar.progress(f, m)).result_id
            status.update(label="Kinetic analysis done and stored", state="complete", expanded=False)
    else:
        record_id = record.id
    result = analysis_of(repo.url, record_id)
except InputError as err:
    show_input_error(err)
    st.stop()

protocol = protocol_for(result.tracer)
st.caption(f"{protocol.name} · values in {result.unit} · {result.input_note}")
for note in result.notes:
    st.caption(f"ⓘ {note}")
curves_tab, params_tab, maps_tab, scene_tab, export_tab = st.tabs(
    ["Curves", "Parameters", "Maps and target", "3D", "Export"])

with curves_tab:
    names = list(result.tacs)
    shown = st.multiselect("Regions", names, [n for n in ("tumour", "background", "cluster 1", "hotspot") if n in names],
                           key="regions")
    models = [m for m in result.model_curves]
    model = st.selectbox("Model curve", ["none"] + models, index=1 + models.index("2tcm_irr") if "2tcm_irr" in models
                         else 0, key="model")
    st.plotly_chart(tac_figure(result.frame_start_min, result.frame_end_min,
                               {n: result.tacs[n].mean for n in shown}, unit=result.unit,
                               model_curves=result.model_curves.get(model), model_name=model,
                               window_min=protocol.static_window_min), key="tac_chart")
    st.caption("Markers: frame averages, bars span each frame; dashed: fitted model; shaded: static window.")

with params_tab:
    st.dataframe(parameter_rows(result, protocol), hide_index=True, key="parameter_table")
    for line in result.readings:
        st.markdown(f"- {line['text']}")
    fit_model = st.selectbox("Model fits", list(result.fits), key="fit_model")
    if fit_model:
        st.dataframe(fit_table(result, fit_model), hide_index=True)

with maps_tab:
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

with scene_tab:
    st.plotly_chart(scene_of(repo.url, record_id), key="scene")

with export_tab:
    csv_zip, nifti_zip = exports(repo.url, record_id)
    st.download_button("Parameters and TACs (CSV, zip)", csv_zip, f"{case.pseudonym}_kinetics_csv.zip",
                       "application/zip", key="export_csv")
    st.download_button("Maps and masks (NIfTI, zip)", nifti_zip, f"{case.pseudonym}_kinetics_nifti.zip",
                       "application/zip", key="export_nifti")
