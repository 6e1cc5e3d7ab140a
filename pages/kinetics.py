"""PET kinetics: curves, guideline parameters, kinetic maps, aggressive sub-region and biopsy target."""

import streamlit as st

from core.errors import InputError
from core.kinetics.analysis import KineticsSettings, analyse_case, find_analysis
from core.kinetics.parameters import protocol_for
from pages._kinetics_parts import (analysis_of, curves_view, exports, fit_table, parameter_rows, scene_of,
                                   settings_sidebar, target_view, upload_panel)
from pages._shared import choose_case, repository, show_input_error

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
    curves_view(result, protocol)

with params_tab:
    st.dataframe(parameter_rows(result, protocol), hide_index=True, key="parameter_table")
    for line in result.readings:
        st.markdown(f"- {line['text']}")
    fit_model = st.selectbox("Model fits", list(result.fits), key="fit_model")
    if fit_model:
        st.dataframe(fit_table(result, fit_model), hide_index=True)

with maps_tab:
    target_view(repo, case, result)

with scene_tab:
    st.plotly_chart(scene_of(repo.url, record_id), key="scene")

with export_tab:
    csv_zip, nifti_zip = exports(repo.url, record_id)
    st.download_button("Parameters and TACs (CSV, zip)", csv_zip, f"{case.pseudonym}_kinetics_csv.zip",
                       "application/zip", key="export_csv")
    st.download_button("Maps and masks (NIfTI, zip)", nifti_zip, f"{case.pseudonym}_kinetics_nifti.zip",
                       "application/zip", key="export_nifti")
