"""Worklist: the cases in the store, search and filter, open one, import files, demo cohort."""

import pandas as pd
import streamlit as st

from core.demo import create_demo_cohort
from core.errors import InputError
from core.imaging.uploads import stage_uploads
from core.phantoms import SITES
from pages._shared import repository, show_input_error

st.title("Worklist")
if "worklist_message" in st.session_state:  # set by an import just before its rerun
    st.success(st.session_state.pop("worklist_message"), icon=":material/check_circle:")
repo = repository()
cases = repo.list_cases()

table = pd.DataFrame([c.as_row() for c in cases], columns=repo.CASE_COLUMNS)
left, mid, right = st.columns([3, 2, 2])
query = left.text_input("Search", placeholder="pseudonym, site, modality…", key="search")
labels = mid.multiselect("Label", sorted(table["Label"].dropna().unique()), key="label_filter")
roles = right.multiselect("Has series", sorted({r for c in cases for r in c.roles}), key="role_filter")
shown = table[table.apply(lambda row: query.lower() in " ".join(map(str, row.values)).lower(), axis=1)] if query else table
if labels:
    shown = shown[shown["Label"].isin(labels)]
if roles:
    shown = shown[shown["Series"].apply(lambda s: all(r in s.split(", ") for r in roles))]

if table.empty:
    st.info("The case store is empty. Import images below or generate the synthetic demo cohort.")
else:
    st.dataframe(shown, hide_index=True, width="stretch")
    pick = st.selectbox("Case", shown["Study"].tolist(), key="open_case",
                        format_func=lambda sid: table.set_index("Study").loc[sid, "Pseudonym"])
    if st.button("Open in viewer", type="primary", disabled=pick is None, key="open_button"):
        st.session_state["study_id"] = int(pick)
        st.switch_page("pages/viewer.py", query_params={"study": str(pick)})

with st.expander("Import images (NIfTI + PET-BIDS sidecar, or a DICOM zip)"):
    files = st.file_uploader("Files", accept_multiple_files=True, type=["nii", "gz", "json", "zip"], key="upload")
    pseudonym = st.text_input("Pseudonym (leave empty to create one)", key="upload_pseudonym") or None
    role = st.selectbox("Role", [None, *repo.SERIES_ROLES], key="upload_role",
                        format_func=lambda r: r or "detect from the file")
    if st.button("Import", disabled=not files, key="import_button"):
        bar = st.progress(0.0, "Importing…")
        study_id, done = None, 0  # every file of one upload belongs to one case
        try:
            with stage_uploads([(f.name, f.getvalue()) for f in files]) as paths:
                for path in paths:
                    series = repo.import_series(path, pseudonym=pseudonym, study_id=study_id, role=role,
                                                user="worklist",
                                                progress=lambda f, m: bar.progress((done + f) / len(paths), m))
                    study_id, done = series.study_id, done + 1
            st.session_state["worklist_message"] = f"Imported {done} series into case {study_id}."
            st.rerun()  # the table now lists the case
        except InputError as err:
            show_input_error(err)
            if done:  # each series is imported whole or not at all; say which ones made it
                st.warning(f"{done} series of this upload were imported into case {study_id} before the error.")

with st.expander("Synthetic demo cohort"):
    st.caption("Simulated 18F-FDOPA glioma cases and three [177Lu]Lu-PSMA-617 therapy patients with SPECT/CT "
               "(see core/phantoms/README.md). Marked synthetic everywhere. "
               "Another seed gives other patients; another site rescans the same patients.")
    n_col, seed_col, site_col = st.columns(3)
    n = n_col.number_input("Patients", 2, 200, 20, step=2, key="demo_n")
    seed = seed_col.number_input("Seed", 0, 10_000, 0 if table.empty else 1, key="demo_seed")
    site = site_col.selectbox("Site", list(SITES), key="demo_site")
    if st.button("Generate demo cohort", key="demo_button"):
        bar = st.progress(0.0, "Generating…")
        try:
            ids = create_demo_cohort(repo, n=int(n), seed=int(seed), site=site,
                                     progress=lambda f, m: bar.progress(f, m))
        except InputError as err:
            show_input_error(err)
            st.stop()
        if ids:
            st.rerun()  # the table now lists them
        st.info("These patients are already in the store: choose another seed or site.")
