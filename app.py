"""TheraBoard: entry point. Registers every page (grouped by clinical task) and the sidebar."""

import streamlit as st

from core import __version__, config

st.set_page_config(page_title="TheraBoard", page_icon="assets/logo.svg", layout="wide")

pages = {
    "Review": [
        st.Page("pages/worklist.py", title="Worklist", icon=":material/list_alt:", default=True),
        st.Page("pages/viewer.py", title="Case viewer", icon=":material/view_in_ar:", url_path="viewer"),
        st.Page("pages/kinetics.py", title="PET kinetics", icon=":material/monitoring:", url_path="kinetics"),
        st.Page("pages/diagnosis.py", title="AI diagnosis", icon=":material/psychology:", url_path="diagnosis"),
        st.Page("pages/dosimetry.py", title="Dosimetry", icon=":material/radiology:", url_path="dosimetry"),
        st.Page("pages/drug_release.py", title="Drug release", icon=":material/science:", url_path="drug-release"),
    ],
    "Cohorts and models": [
        st.Page("pages/cohort.py", title="Radiomics cohort", icon=":material/query_stats:", url_path="cohort"),
    ],
}

st.logo("assets/logo.svg")
with st.sidebar:
    st.caption(f"TheraBoard {__version__} · data: `{config.data_dir()}`")
    st.caption("Clinical decision support for research use; not a certified medical device.")

st.navigation(pages).run()
