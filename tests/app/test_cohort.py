"""AppTest: the radiomics cohort page computes features once, explains a case, shows the
shipped baseline's held-out tests, and stores a model comparison on the store's cases."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.cases.repository import CaseRepository
from core.radiomics.cases import EVALUATION_KIND, FEATURES_KIND
from tests.demo_store import ROOT, store_env
from tests.support.radiomics_store import seed_radiomics_store

COHORT = str(ROOT / "pages" / "cohort.py")


def _tables_with(at, column):
    return [d.value for d in at.dataframe if column in d.value.columns]


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_features_are_computed_once_and_the_case_is_explained(demo_store):
    at = AppTest.from_file(COHORT, default_timeout=300).run()
    _ok(at)
    repo = CaseRepository(demo_store["THERABOARD_DB_URL"], demo_store["THERABOARD_DATA_DIR"])
    cases = [c.study_id for c in repo.list_cases() if "dynamic_pet" in c.roles]      # not the therapy patients
    if any(not repo.list_results(s, FEATURES_KIND) for s in cases):
        at.button(key="compute").click().run()
        _ok(at)
    assert [len(repo.list_results(s, FEATURES_KIND)) for s in cases] == [1] * len(cases)
    table = _tables_with(at, "P(progression)")[0]
    assert len(table) == len(cases) and {"P(progression)", "Model call", "SUVmax"} <= set(table.columns)
    assert table["P(progression)"].between(0, 1).all()
    assert any("f(x)" in c.value for c in at.caption)                      # the waterfall's caption
    again = AppTest.from_file(COHORT, default_timeout=120).run()          # a new visit reads, never recomputes
    _ok(again)
    assert [len(repo.list_results(s, FEATURES_KIND)) for s in cases] == [1] * len(cases)
    assert not [b for b in again.button if b.key == "compute"]


def test_shipped_baseline_tab_shows_every_split(demo_store):
    at = AppTest.from_file(COHORT, default_timeout=300).run()
    _ok(at)
    radio = at.radio(key="split")
    assert radio.options[:2] == ["Internal test (held-out patients)", "External test (unseen site)"]
    for split in ("internal_test", "external_test", "train"):
        at.radio(key="split").set_value(split).run()
        _ok(at)
        table = _tables_with(at, "DeLong p vs best")[-1]                  # the shipped tab comes last
        assert "DeLong p vs best" in table.columns and (table["DeLong p vs best"] == "best").sum() == 1
    assert any("Model card" in e.label for e in at.expander)


def test_model_comparison_on_the_store_is_run_once_and_stored(tmp_path, monkeypatch):
    env = store_env(tmp_path / "rad")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from core.cases.db import init_db

    init_db(env["THERABOARD_DB_URL"])
    repo = CaseRepository(env["THERABOARD_DB_URL"], env["THERABOARD_DATA_DIR"])
    seed_radiomics_store(repo, tmp_path, n=12)
    at = AppTest.from_file(COHORT, default_timeout=300).run()
    _ok(at)
    at.button(key="run_store_eval").click().run()
    _ok(at)
    [record] = repo.list_cohort_results(EVALUATION_KIND)
    table = _tables_with(at, "DeLong p vs best")[0]                       # the store tab comes first
    assert len(table) == 3 and (table["DeLong p vs best"] == "best").sum() == 1
    again = AppTest.from_file(COHORT, default_timeout=120).run()
    _ok(again)
    assert len(repo.list_cohort_results(EVALUATION_KIND)) == 1
    assert not [b for b in again.button if b.key == "run_store_eval"]
    assert _tables_with(again, "DeLong p vs best")[0].equals(table)


def test_empty_store_says_so(empty_store):
    at = AppTest.from_file(COHORT, default_timeout=120).run()
    _ok(at)
    assert any("No PET study yet" in i.value for i in at.info)
