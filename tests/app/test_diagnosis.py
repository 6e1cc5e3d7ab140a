"""AppTest: the AI diagnosis page computes the opinion once, explains it with a sanity verdict per method,
compares with the radiomics baseline, shows the cohort evidence, and names what is missing in bad cases."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.cases.repository import CaseRepository
from core.learning.diagnosis import DIAGNOSIS_KIND
from tests.demo_store import ROOT, store_env

DIAGNOSIS = str(ROOT / "pages" / "diagnosis.py")


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _tables_with(at, column):
    return [d.value for d in at.dataframe if column in d.value.columns]


def test_opinion_is_computed_once_explained_and_compared(demo_store):
    at = AppTest.from_file(DIAGNOSIS, default_timeout=600).run()
    _ok(at)
    repo = CaseRepository(demo_store["THERABOARD_DB_URL"], demo_store["THERABOARD_DATA_DIR"])
    sid = int(at.selectbox(key="case").value)
    assert len(repo.list_results(sid, DIAGNOSIS_KIND)) == 1
    labels = [m.label for m in at.metric]
    assert "P(progression), calibrated" in labels and "Call at the operating point" in labels
    held = _tables_with(at, "Sensitivity")[0]
    assert list(held["Held-out patients"]) == ["internal test", "external"]
    options = at.selectbox(key="method").options  # labels, with the sanity verdict when one is shipped
    assert any(o.startswith("Integrated Gradients") for o in options) and len(options) == 4
    assert not any(o.startswith(("Grad-CAM", "LRP")) for o in options)  # no convolutions in a ViT
    for method in ("integrated_gradients", "gradient_shap", "occlusion", "saliency"):
        at.selectbox(key="method").set_value(method).run()
        assert not at.exception, at.exception
        verdicts = [m.value for m in list(at.success) + list(at.warning) + list(at.info)
                    if "anity check" in m.value]
        assert len(verdicts) == 1  # every method shows its sanity result (or says none is shipped)
        assert any(m.value.startswith("**Where the evidence lies:**") for m in at.markdown)
    region = _tables_with(at, "share")[0]
    assert "tumour" in set(region["region"])
    assert any(e.label == "Self-supervised pretraining of the encoder" for e in at.expander)
    cohort = _tables_with(at, "DeLong p vs radiomics")[0]
    assert len(cohort) == 3 and cohort["AUC internal test"].str.match(r"0\.\d\d").all()
    again = AppTest.from_file(DIAGNOSIS, default_timeout=300).run()  # a revisit reads, never recomputes
    _ok(again)
    assert len(repo.list_results(sid, DIAGNOSIS_KIND)) == 1


def test_the_cnn_and_the_radiomics_baseline_on_the_same_case(demo_store):
    at = AppTest.from_file(DIAGNOSIS, default_timeout=600).run()
    at.radio(key="model").set_value("classifier_scratch").run()
    _ok(at)
    assert any(o.startswith("Grad-CAM") for o in at.selectbox(key="method").options)
    compute = [b for b in at.button if b.key == "compute_radiomics"]
    if compute:
        compute[0].click().run()
        assert not at.exception, at.exception
    agreement = [m.value for m in list(at.success) + list(at.warning) if "radiomics baseline calls" in m.value]
    assert agreement and ("agree" in agreement[0])


def test_empty_store_shows_the_cohort_evidence(empty_store):
    at = AppTest.from_file(DIAGNOSIS, default_timeout=300).run()
    _ok(at)
    assert any("No case yet" in i.value for i in at.info)
    assert _tables_with(at, "DeLong p vs radiomics")


def test_a_case_without_mri_gets_a_message_and_the_page_keeps_running(tmp_path, monkeypatch):
    from tests.support import case_data as cd

    env = store_env(tmp_path / "petonly")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from core.cases.db import init_db

    init_db(env["THERABOARD_DB_URL"])
    repo = CaseRepository(env["THERABOARD_DB_URL"], env["THERABOARD_DATA_DIR"])
    pet = cd.pet_dynamic()
    series = repo.import_series(cd.write_nifti_file(pet, tmp_path / "pet.nii.gz"), pseudonym="PET-ONLY")
    repo.add_mask(series.study_id, cd.mask_on(pet), "tumour")
    at = AppTest.from_file(DIAGNOSIS, default_timeout=300).run()
    assert not at.exception, at.exception
    assert any("no T1C or FLAIR series" in e.value for e in at.error)
    assert _tables_with(at, "DeLong p vs radiomics")  # the rest of the page still works
    assert repo.list_results(series.study_id, DIAGNOSIS_KIND) == []
