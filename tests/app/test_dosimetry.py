"""The dosimetry page on the demo store: compute once, read back, every panel draws."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.cases.repository import CaseRepository
from core.dosimetry.case import DOSIMETRY_KIND
from tests.demo_store import ROOT

PAGE = str(ROOT / "pages" / "dosimetry.py")


def _table(at, column):
    """The first dataframe with this column (AppTest finds dataframes by content, not key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_dosimetry_is_computed_once_and_every_panel_draws(demo_store):
    at = AppTest.from_file(PAGE, default_timeout=600).run()
    _ok(at)
    assert at.title[0].value == "Dosimetry"
    repo = CaseRepository(demo_store["THERABOARD_DB_URL"], demo_store["THERABOARD_DATA_DIR"])
    therapy = [c.study_id for c in repo.list_cases() if "spect" in c.roles]
    assert len(therapy) == 3 and at.selectbox(key="case").options and len(at.selectbox(key="case").options) == 3
    at.multiselect(key="methods").set_value(["local", "vsv", "mc"]).run()
    at.radio(key="statistics").set_value("quick").run()
    _ok(at)
    study = int(at.query_params["study"][0] if isinstance(at.query_params["study"], list) else at.query_params["study"])
    before = len(repo.list_results(study, DOSIMETRY_KIND))
    at.button(key="compute").click().run()
    _ok(at)
    assert len(repo.list_results(study, DOSIMETRY_KIND)) == before + 1
    organs = _table(at, "limit (cumulative)")
    assert {"kidneys", "liver", "salivary glands"} <= set(organs.index)
    assert (organs["mean (Gy)"] > 0).all() and "BED 40 Gy" in organs.loc["kidneys", "limit (cumulative)"]
    errors = _table(at, "Voxel S-values")
    assert list(errors.columns) == ["Local deposition", "Voxel S-values"]
    assert errors.loc["kidneys"].abs().max() < 15                     # the three methods agree on the kidneys
    cycles = _table(at, "cycles within the limit")
    assert cycles.loc["kidneys", "cycles within the limit"] >= 1
    gamma = [m for m in at.metric if "Gamma pass rate" in m.label]
    assert gamma and 0 < float(gamma[0].value.rstrip(" %")) <= 100
    for method in ("local", "vsv", "mc"):
        at.radio(key="shown").set_value(method).run()
        _ok(at)
    # a new visit reads the stored result: no button, nothing recomputed
    again = AppTest.from_file(PAGE, default_timeout=120)
    again.query_params["study"] = str(study)
    again.session_state["methods"] = ["local", "vsv", "mc"]
    again.run()
    _ok(again)
    assert not [b for b in again.button if b.key == "compute"]
    assert len(repo.list_results(study, DOSIMETRY_KIND)) == before + 1


def test_empty_store_says_what_to_do(empty_store):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    _ok(at)
    assert "No therapy case" in at.info[0].value


def test_a_wrong_nuclide_entry_is_explained_and_the_page_keeps_running(demo_store):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    _ok(at)
    at.text_input(key="nuclide").input("Lu177m2").run()
    assert not at.exception
    assert any("unknown nuclide" in e.value and "Did you mean" in e.value for e in at.error)
    at.text_input(key="nuclide").input("").run()
    _ok(at)
