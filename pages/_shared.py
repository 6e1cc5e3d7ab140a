"""What the pages share: the cached case repository, cached volumes, error display.

Not a page (``app.py`` registers pages explicitly, so ``pages/`` is not auto-discovered).
"""

from __future__ import annotations

import streamlit as st

from core import config
from core.errors import InputError

# Imported here, on the first page a user sees, so that opening the first case does not
# also pay for loading the imaging and plotting stack (scipy.ndimage, nibabel, plotly, PIL).
import core.imaging.planes  # noqa: E402,F401
import core.viz.slices  # noqa: E402,F401


@st.cache_resource(show_spinner=False)
def _repository(db_url: str, data_dir: str):
    from core.cases.db import init_db
    from core.cases.repository import CaseRepository

    init_db(db_url)
    return CaseRepository(url=db_url, data_dir=data_dir)


def repository():
    """The case repository for the configured database and data directory (shared, cached).

    When the database cannot be reached the page says so, names the URL (without its
    password) and stops, instead of showing a traceback.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    url = config.db_url()
    try:
        return _repository(url, str(config.data_dir()))
    except OperationalError as err:
        shown = make_url(url).render_as_string(hide_password=True)
        st.error(f"The case database at {shown} cannot be reached ({err.orig}). Check THERABOARD_DB_URL "
                 "and that the database server is running.", icon=":material/database:")
        st.stop()


@st.cache_resource(max_entries=6, show_spinner="Loading images…")
def load_series(db_url: str, series_id: int):
    """A stored series as a Volume/DynamicVolume; read-only, shared across reruns."""
    return repository().load_series(series_id)


@st.cache_data(max_entries=64, show_spinner=False)
def display_range(db_url: str, series_id: int, low_pct: float = 1.0, high_pct: float = 99.5) -> tuple[float, float]:
    """Default display range of a stored series (its last frame when dynamic), computed once."""
    from core.viz.slices import robust_range

    volume = load_series(db_url, series_id)
    return robust_range(volume.data[..., -1] if volume.data.ndim == 4 else volume.data, low_pct, high_pct)


@st.cache_resource(max_entries=6, show_spinner=False)
def load_mask(db_url: str, mask_id: int):
    return repository().load_mask(mask_id)


def show_input_error(err: InputError) -> None:
    """Show an input problem as a physician-readable message; the app keeps running."""
    st.error(str(err), icon=":material/error:")


def choose_case(repo, cases: dict):
    """Case picker shared by the review pages; the choice travels in the URL (``?study=``)."""
    wanted = str(st.query_params.get("study") or st.session_state.get("study_id") or "")
    ids = list(cases)
    index = ids.index(int(wanted)) if wanted.isdigit() and int(wanted) in cases else 0
    study_id = st.selectbox("Case", ids, index=index, key="case",
                            format_func=lambda s: f"{cases[s].pseudonym} · {cases[s].label or 'no label'}")
    st.query_params["study"] = str(study_id)
    st.session_state["study_id"] = study_id
    return study_id
