"""Dosimetry: absorbed dose of a radionuclide therapy from SPECT/CT at several time points, by local
deposition, voxel S-values, Monte Carlo and deep learning, with DVHs, organ limits and the cycle planner."""

import streamlit as st

from core.dosimetry.case import METHOD_NAMES, METHODS, compute_dosimetry, find_dosimetry
from core.errors import InputError
from pages._dosimetry_parts import (comparison_panel, cycle_planner_panel, dose_map_panel, dosimetry_of, dvh_panel,
                                    fits_panel, organ_limits_panel)
from pages._shared import choose_case, repository, show_input_error

#: Monte Carlo statistics offered: (photons, electrons).
STATISTICS = {"quick": (400_000, 200_000), "reference": (4_000_000, 2_000_000)}

st.title("Dosimetry")
st.caption("Research software: absorbed-dose estimates to weigh with the images and the clinical picture.")
repo = repository()
cases = {c.study_id: c for c in repo.list_cases() if "spect" in c.roles and "ct" in c.roles}
if not cases:
    st.info("No therapy case with SPECT and CT yet: generate the demo cohort on the Worklist (it holds three "
            "177Lu-PSMA patients) or import the SPECT time series (role 'spect') and the CT of a case.")
    st.stop()
study_id = choose_case(repo, cases)
if cases[study_id].synthetic:
    st.warning("Synthetic demo case: simulated images, not patient data.", icon=":material/science:")

with st.sidebar:
    methods = st.multiselect("Dose methods", list(METHODS), default=list(METHODS), format_func=METHOD_NAMES.get,
                             key="methods")
    statistics = st.radio("Monte Carlo statistics", list(STATISTICS), horizontal=True, key="statistics",
                          help="quick: 0.4 M photons and 0.2 M electrons; reference: 4 M and 2 M (about 2 % "
                               "in organs on the demo torso, a minute or two on a CPU)")
    st.caption("Nuclide and administered activity are read from the SPECT header; enter them when it lacks "
               "them or is wrong.")
    nuclide = st.text_input("Nuclide (blank: from the header)", key="nuclide", placeholder="e.g. Lu-177").strip()
    administered = st.number_input("Administered activity, MBq (0: from the header)", min_value=0.0,
                                   value=0.0, step=100.0, key="administered")
overrides = {"nuclide": nuclide or None, "administered_mbq": administered or None}
methods = tuple(m for m in METHODS if m in methods)
if not methods:
    st.info("Select at least one dose method in the sidebar.")
    st.stop()

dosimetry = None
try:
    record = find_dosimetry(repo, study_id, methods=methods, mc_histories=STATISTICS[statistics], **overrides)
    if record is None:
        st.info("Not computed yet with these settings.")
        if st.button("Compute the dosimetry", type="primary", key="compute"):
            with st.status("Computing the time-integrated activity and the absorbed dose…", expanded=True) as status:
                bar = st.progress(0.0)
                compute_dosimetry(repo, study_id, methods=methods, mc_histories=STATISTICS[statistics],
                                  progress=lambda f, m: bar.progress(f, m), **overrides)
                status.update(label="Dosimetry done and stored", state="complete", expanded=False)
            st.rerun()  # draw the page from the stored result
    if record is not None:
        dosimetry = dosimetry_of(repo.url, record.id)
except InputError as err:
    show_input_error(err)

if dosimetry is not None:
    s = dosimetry.summary
    for warning in s["warnings"]:
        st.info(warning, icon=":material/info:")
    st.markdown(f"**{s['nuclide']}**, {s['administered_mbq']:g} MBq administered; scans at "
                f"{', '.join(f'{t:g}' for t in s['times_h'])} h; voxels {s['voxel_mm'][0]:.2f} mm.")
    shown = st.radio("Dose shown", list(dosimetry.doses_gy), format_func=METHOD_NAMES.get, horizontal=True,
                     key="shown", index=list(dosimetry.doses_gy).index("mc") if "mc" in dosimetry.doses_gy else 0)
    map_tab, dvh_tab, organ_tab, cycle_tab, fit_tab, compare_tab = st.tabs(
        ["Dose map", "DVH", "Organs and limits", "Cycle planner", "Time-activity fits", "Compare methods"])
    with map_tab:
        dose_map_panel(dosimetry, shown)
    with dvh_tab:
        dvh_panel(dosimetry, shown)
    with organ_tab:
        organ_limits_panel(dosimetry, shown)
    with cycle_tab:
        cycle_planner_panel(dosimetry, shown)
    with fit_tab:
        fits_panel(dosimetry)
    with compare_tab:
        comparison_panel(dosimetry)
