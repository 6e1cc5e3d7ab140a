"""AppTest: the worklist lists, filters and opens cases, and says what to do when empty."""

from streamlit.testing.v1 import AppTest

from tests.demo_store import ROOT

APP = str(ROOT / "app.py")
WORKLIST = str(ROOT / "pages" / "worklist.py")


def test_empty_store_explains_what_to_do(empty_store):
    at = AppTest.from_file(WORKLIST, default_timeout=60).run()
    assert not at.exception
    assert any("case store is empty" in i.value for i in at.info)
    assert at.button(key="demo_button") is not None


def test_generate_demo_cohort_from_an_empty_store_and_refuse_duplicates(empty_store):
    at = AppTest.from_file(WORKLIST, default_timeout=180).run()
    at.number_input(key="demo_n").set_value(2)
    at.button(key="demo_button").click().run()
    assert not at.exception
    table = at.dataframe[0].value
    therapy = ["DEMO-PSMA-000", "DEMO-PSMA-001", "DEMO-PSMA-002"]  # core.demo.N_THERAPY therapy patients
    assert {"DEMO-A-000", "DEMO-A-001", *therapy} <= set(table["Pseudonym"]) and table["Synthetic"].all()
    assert set(table.loc[table["Pseudonym"].isin(therapy), "Label"]) == {"mCRPC"}
    assert all(s == "ct, spect, other" for s in table.loc[table["Pseudonym"].isin(therapy), "Series"])
    drug = ["DEMO-DRUG-FREE-000", "DEMO-DRUG-LIPOSOME-001", "DEMO-DRUG-THERMOSENSITIVE-002"]  # core.demo.N_DRUG
    assert set(drug) <= set(table["Pseudonym"]) and len(table) == 8
    assert all(s.startswith("dce, vfa, cest, delta_r2star, delta_r1, vessel_map")
               for s in table.loc[table["Pseudonym"].isin(drug), "Series"])
    at.number_input(key="demo_n").set_value(2)
    at.number_input(key="demo_seed").set_value(0)
    at.button(key="demo_button").click().run()
    assert any("already in the store" in i.value for i in at.info)
    assert len(at.dataframe[0].value) == 8


def test_lists_filters_and_opens_a_case(demo_store):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Worklist"
    table = at.dataframe[0].value
    # 2 FDOPA patients, the 3 177Lu-PSMA therapy patients and the 3 drug studies of `python -m core demo`
    assert len(table) == 8 and set(table["Label"]) == {"progression", "radionecrosis", "mCRPC", "free doxorubicin",
                                                       "liposomal doxorubicin",
                                                       "thermosensitive liposomes with heating"}
    assert table["Synthetic"].all()

    at.multiselect(key="label_filter").select("radionecrosis").run()
    assert list(at.dataframe[0].value["Label"]) == ["radionecrosis"]
    at.text_input(key="search").input("no-such-case").run()
    assert at.dataframe[0].value.empty
    at.text_input(key="search").input("").run()
    at.multiselect(key="label_filter").unselect("radionecrosis").run()

    rows = at.dataframe[0].value
    study = int(rows.loc[rows["Label"] == "mCRPC", "Study"].iloc[-1])      # a therapy patient: CT and SPECT, no PET
    at.selectbox(key="open_case").select(study).run()
    at.button(key="open_button").click().run()
    assert not at.exception
    assert at.title[0].value == "Case viewer"
    assert at.query_params["study"] == [str(study)] or at.query_params["study"] == str(study)


def test_unreachable_database_is_reported_without_a_traceback(empty_store, monkeypatch):
    monkeypatch.setenv("THERABOARD_DB_URL", "postgresql+psycopg://tb:secret@127.0.0.1:1/nowhere")
    at = AppTest.from_file(WORKLIST, default_timeout=60).run()
    assert not at.exception
    message = at.error[0].value
    assert "cannot be reached" in message and "THERABOARD_DB_URL" in message and "secret" not in message
