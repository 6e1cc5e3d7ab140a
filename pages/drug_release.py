"""Drug release: DCE-MRI perfusion and CEST pH maps of a preclinical tumour, the release-rate map, the predicted
encapsulated and free drug over time, exposure against distance from vessels, scenarios and the inverse."""

import streamlit as st

from core.drug_release.case import INVERSE_METHODS, INVERSE_NAMES, compute_drug_release, find_drug_release
from core.drug_release.outcomes import DEFAULT_LETHAL_AUC_UM_H
from core.errors import InputError
from pages._drug_release_parts import (distance_panel, drug_release_of, drug_time_panel, inverse_panel,
                                       perfusion_panel, release_panel, scenarios_panel)
from pages._shared import choose_case, repository, show_input_error

st.title("Drug release")
st.caption("Research software: predicted drug delivery in a preclinical tumour, to weigh with the images and the "
           "experiment.")
repo = repository()
cases = {c.study_id: c for c in repo.list_cases() if "dce" in c.roles and "cest" in c.roles}
if not cases:
    st.info("No preclinical study with DCE-MRI and CEST yet: generate the demo cohort on the Worklist (it holds "
            "the drug-release tumours) or import the DCE series (role 'dce') and the CEST series (role 'cest').")
    st.stop()
study_id = choose_case(repo, cases)
if cases[study_id].synthetic:
    st.warning("Synthetic demo case: simulated images, not animal data.", icon=":material/science:")

with st.sidebar:
    methods = st.multiselect("Inverse methods", list(INVERSE_METHODS), default=list(INVERSE_METHODS),
                             format_func=INVERSE_NAMES.get, key="methods",
                             help="Estimate the release rate and transport parameters from the imaging time "
                                  "points; none: only the forward prediction.")
    threshold = st.number_input("Lethal exposure threshold, µM·h", min_value=0.001, value=DEFAULT_LETHAL_AUC_UM_H,
                                step=0.1, format="%.3g", key="threshold",
                                help="Free-drug AUC per tissue volume at which a voxel counts as killed; set it "
                                     "from the cell line's clonogenic data when known.")
methods = tuple(m for m in INVERSE_METHODS if m in methods)

case = None
try:
    record = find_drug_release(repo, study_id, methods=methods, threshold_uM_h=threshold)
    if record is None:
        st.info("Not computed yet with these settings.")
        if st.button("Compute the drug release", type="primary", key="compute"):
            with st.status("Fitting the maps, solving the transport and the inverse…", expanded=True) as status:
                bar = st.progress(0.0)
                compute_drug_release(repo, study_id, methods=methods, threshold_uM_h=threshold,
                                     progress=lambda f, m: bar.progress(f, m))
                status.update(label="Drug release done and stored", state="complete", expanded=False)
            st.rerun()  # draw the page from the stored result
    if record is not None:
        case = drug_release_of(repo.url, record.id)
except InputError as err:
    show_input_error(err)

if case is not None:
    s = case.summary
    for warning in s.get("warnings", []):
        st.info(warning, icon=":material/info:")
    times = ", ".join(f"{t:g}" for t in s.get("imaging_times_h", []))
    plasma = s.get("plasma") or {}
    dose = (f"doxorubicin {plasma['dose_uM']:g} µM in plasma at injection"
            + (f", plasma half-life {plasma['half_life_h']:g} h" if plasma.get("half_life_h") else "") + "; "
            if plasma.get("dose_uM") else "")
    st.markdown(f"**{s.get('scenario_label', s.get('scenario', ''))}**; {dose}"
                + (f"imaging at {times} h; " if times else "") + f"pixels {case.spacing_um:g} µm.")
    tabs = st.tabs(["Perfusion and pH", "Release rate", "Drug over time", "Distance from vessels", "Scenarios",
                    "Inverse"])
    for tab, panel in zip(tabs, (perfusion_panel, release_panel, drug_time_panel, distance_panel,
                                 scenarios_panel, inverse_panel)):
        with tab:
            panel(case)
