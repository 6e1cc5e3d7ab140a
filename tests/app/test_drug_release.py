"""The drug-release page on the demo store: compute a liposome study once, read it back, every tab draws."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.cases.repository import CaseRepository
from core.drug_release.case import DRUG_RELEASE_KIND
from tests.demo_store import ROOT

PAGE = str(ROOT / "pages" / "drug_release.py")
VIEWER = str(ROOT / "pages" / "viewer.py")


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _study(repo, label):
    return next(c.study_id for c in repo.list_cases() if c.label == label)


def test_drug_release_is_computed_once_and_every_tab_draws(demo_store):
    repo = CaseRepository(demo_store["THERABOARD_DB_URL"], demo_store["THERABOARD_DATA_DIR"])
    study = _study(repo, "liposomal doxorubicin")
    at = AppTest.from_file(PAGE, default_timeout=600)
    at.query_params["study"] = str(study)
    at.run()
    _ok(at)
    assert at.title[0].value == "Drug release"
    assert len(at.selectbox(key="case").options) == 3                # the three demo drug studies
    at.multiselect(key="methods").set_value(["classical"]).run()
    _ok(at)
    before = len(repo.list_results(study, DRUG_RELEASE_KIND))
    at.button(key="compute").click().run()
    _ok(at)
    assert len(repo.list_results(study, DRUG_RELEASE_KIND)) == before + 1
    record = repo.list_results(study, DRUG_RELEASE_KIND)[-1]
    assert not [b for b in at.button if b.key == "compute"]
    assert len(at.tabs) == 6 and len(at.get("plotly_chart")) >= 6
    # the inverse table sets the classical estimate beside the generator's truth
    table = next(d.value for d in at.dataframe if any("truth" in str(c).lower() for c in d.value.columns))
    assert len(table) == 4
    assert abs(record.summary["truth"]["release_per_h"] - 0.004) < 1e-12      # release_law("liposome")
    # the time slider moves through the stored prediction
    slider = at.select_slider(key="time_h")
    assert slider.options[0] == "0 h" and slider.options[-1] == "48 h"
    slider.set_value(0.0).run()
    _ok(at)
    assert at.select_slider(key="time_h").value == 0.0
    # a new visit reads the stored result: nothing recomputed
    again = AppTest.from_file(PAGE, default_timeout=120)
    again.query_params["study"] = str(study)
    again.session_state["methods"] = ["classical"]
    again.run()
    _ok(again)
    assert not [b for b in again.button if b.key == "compute"]
    assert len(repo.list_results(study, DRUG_RELEASE_KIND)) == before + 1


def test_empty_store_says_what_to_do(empty_store):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert "No preclinical study" in at.info[0].value


def test_the_viewer_opens_a_drug_study(demo_store):
    repo = CaseRepository(demo_store["THERABOARD_DB_URL"], demo_store["THERABOARD_DATA_DIR"])
    at = AppTest.from_file(VIEWER, default_timeout=60)
    at.query_params["study"] = str(_study(repo, "thermosensitive liposomes with heating"))
    at.run()
    assert not at.exception, at.exception
