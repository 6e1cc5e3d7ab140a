"""AppTest: the PET kinetics page computes once, stores, and shows curves, parameters, maps and exports."""

from streamlit.testing.v1 import AppTest

from core.cases.repository import CaseRepository
from tests.demo_store import ROOT

KINETICS = str(ROOT / "pages" / "kinetics.py")


def test_kinetics_page_runs_stores_and_reuses(demo_store):
    at = AppTest.from_file(KINETICS, default_timeout=180).run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 3  # curves, fused maps, 3D scene
    assert any("values in SUV" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert {"parameter", "value", "cut-off", "source"} <= set(table.columns)
    assert "TBRmax" in set(table.parameter)
    assert any("Biopsy target" in m.value and "mm (scanner RAS)" in m.value for m in at.markdown)
    assert len(at.get("download_button")) == 2

    repo = CaseRepository(demo_store["THERABOARD_DB_URL"], demo_store["THERABOARD_DATA_DIR"])
    study = int(at.selectbox(key="case").value)
    stored = repo.list_results(study, "kinetics.analysis")
    assert len(stored) == 1
    again = AppTest.from_file(KINETICS, default_timeout=60).run()  # a new visit loads, it does not recompute
    assert not again.exception and len(repo.list_results(study, "kinetics.analysis")) == 1


def test_overlay_and_model_choices_rerun_cleanly(demo_store):
    at = AppTest.from_file(KINETICS, default_timeout=180).run()
    for label in at.selectbox(key="overlay").options:
        at.selectbox(key="overlay").set_value(label).run()
        assert not at.exception, label
    at.selectbox(key="model").set_value("none").run()
    at.multiselect(key="regions").set_value(["tumour", "cluster 1"]).run()
    assert not at.exception
    at.selectbox(key="reference_region").set_value("cerebellum").run()   # new settings: a new stored analysis
    assert not at.exception and not at.error
    assert "srtm" in at.selectbox(key="fit_model").options


def test_page_says_why_when_the_case_has_no_dynamic_pet(empty_store):
    at = AppTest.from_file(KINETICS, default_timeout=60).run()
    assert not at.exception
    assert any("No case yet" in i.value for i in at.info)
