"""AI diagnosis: radionecrosis versus true progression, with the model's uncertainty, its explanation
(attribution maps with their sanity checks), the radiomics baseline on the same case, and the cohort
evidence (ROC with DeLong tests, label efficiency)."""

import streamlit as st

from core.errors import InputError
from core.learning.diagnosis import diagnose_case, find_diagnosis
from pages._diagnosis_parts import (METHOD_NAMES, cohort_panel, diagnosis_of, explanation_panel, ood_panel,
                                    opinion_panel, radiomics_panel, scene_panel, shipped_models, signature_panel,
                                    subregions_panel)
from pages._shared import choose_case, repository, show_input_error

st.title("AI diagnosis")
st.caption("Research software on synthetic data: an opinion to weigh with the images, never a decision.")
repo = repository()
models = shipped_models()
if not models:
    st.error("No deep classifier is shipped in assets/models: run `python -m core train label-efficiency`.")
    st.stop()
cases = {c.study_id: c for c in repo.list_cases()}
if cases:
    study_id = choose_case(repo, cases)
    case = repo.get_case(study_id)
    if case.synthetic:
        st.warning("Synthetic demo case: simulated images, not patient data.", icon=":material/science:")
    model = st.radio("Model", list(models), format_func=models.get, horizontal=True, key="model")
else:
    st.info("No case yet: import images or generate the demo cohort on the Worklist. The cohort evidence is below.")

diag = None
if cases:
    try:
        record = find_diagnosis(repo, study_id, model)
        if record is None:  # first visit with this model and these inputs: compute once, then it is stored
            with st.status("Running the model and its explanations…", expanded=True) as status:
                bar = st.progress(0.0)
                result_id = diagnose_case(repo, study_id, model, progress=lambda f, m: bar.progress(f, m)).result_id
                status.update(label="Diagnosis done and stored", state="complete", expanded=False)
        else:
            result_id = record.id
        diag = diagnosis_of(repo.url, study_id, result_id)
    except InputError as err:
        show_input_error(err)

if diag is not None:
    opinion_panel(diag)
    ood_panel(diag)
    explain_tab, scene_tab, regions_tab, signature_tab, radiomics_tab, cohort_tab = st.tabs(
        ["Explanation", "3D", "Sub-regions", "Molecular signature", "Radiomics baseline", "Cohort evidence"])
    with explain_tab:
        explanation_panel(diag, model)
    with scene_tab:
        method = st.session_state.get("method") or diag.methods[0]
        st.plotly_chart(scene_panel(diag, method), key="evidence_scene")
        st.caption(f"Tumour (grey) and the 5 % of brain voxels with the strongest positive "
                   f"{METHOD_NAMES.get(method, method)} attribution (red), in scanner millimetres.")
    with regions_tab:
        subregions_panel(diag)
    with signature_tab:
        signature_panel(diag)
    with radiomics_tab:
        radiomics_panel(repo, case, diag)
    with cohort_tab:
        cohort_panel()
else:
    st.subheader("Cohort evidence")
    cohort_panel()
