"""The AI opinion on a stored case with the shipped classifiers: computed once, stored, explained; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError, MaskError
from tests.support.phantom_store import one_patient_store
from core.learning.diagnosis import (CLASSIFIERS, DIAGNOSIS_KIND, diagnose_case, find_diagnosis, load_diagnosis)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diagnosis_store")
    repo, sid = one_patient_store(tmp, seed=4, site="A")
    yield repo, sid, tmp
    repo.close()


def test_cnn_diagnosis_is_calibrated_explained_stored_and_found_again(store):
    repo, sid, _ = store
    assert find_diagnosis(repo, sid, "classifier_scratch") is None
    diag = diagnose_case(repo, sid, "classifier_scratch", methods=["saliency", "grad_cam", "lrp"])
    p = diag.prediction
    assert 0 <= p["interval"][0] <= p["probability"] <= p["interval"][1] <= 1
    assert p["call"] == ("progression" if p["probability"] >= p["threshold"] else "radionecrosis")
    assert set(diag.held_out) == {"internal test", "external"} and diag.held_out["internal test"]["n"] == 60
    assert set(diag.ood) == {"error", "percentile", "unusual", "reasons"} and diag.ood["error"] > 0
    assert not diag.ood["unusual"], diag.ood["reasons"]  # a phantom patient like the training ones
    assert diag.image.shape == (4, 32, 32, 32) and diag.masks["tumour"].any()
    for method in diag.methods:
        assert diag.maps[method].shape == (32, 32, 32) and np.isfinite(diag.maps[method]).all()
        assert abs(sum(diag.channel_share[method].values()) - 1) < 1e-6
        regions = {r["region"] for r in diag.regions[method]}
        assert {"tumour", "rest of brain"} <= regions and diag.evidence[method]
    record = find_diagnosis(repo, sid, "classifier_scratch")
    assert record is not None and record.id == diag.result_id
    back = load_diagnosis(repo, record)
    np.testing.assert_array_equal(back.maps["lrp"], diag.maps["lrp"])
    np.testing.assert_allclose(back.affine, diag.affine)
    assert back.prediction["call"] == p["call"] and back.prediction["probability"] == pytest.approx(p["probability"])
    assert len(repo.list_results(sid, DIAGNOSIS_KIND)) == 1


def test_vit_diagnosis_uses_only_methods_that_apply(store):
    repo, sid, _ = store
    diag = diagnose_case(repo, sid, "classifier_ssl", methods=["saliency"], store=False)
    assert diag.methods == ["saliency"] and diag.result_id is None
    with pytest.raises(InputError, match="do not apply"):
        diagnose_case(repo, sid, "classifier_ssl", methods=["grad_cam"], store=False)
    with pytest.raises(InputError, match="unknown classifier"):
        diagnose_case(repo, sid, "svm")
    assert set(CLASSIFIERS) == {"classifier_ssl", "classifier_scratch"}


def test_a_case_without_mri_or_mask_is_refused_with_the_fix(store):
    from tests.support import case_data as cd

    repo, _, tmp = store
    pet = cd.pet_dynamic()
    series = repo.import_series(cd.write_nifti_file(pet, tmp / "pet_only.nii.gz"), pseudonym="PET-ONLY")
    with pytest.raises(MaskError, match="no tumour mask"):
        diagnose_case(repo, series.study_id, "classifier_scratch", store=False)
    repo.add_mask(series.study_id, cd.mask_on(pet), "tumour")
    with pytest.raises(InputError, match="no T1C or FLAIR series") as err:
        diagnose_case(repo, series.study_id, "classifier_scratch")
    assert "Worklist" in str(err.value)
    assert repo.list_results(series.study_id, DIAGNOSIS_KIND) == []  # nothing half-written


def test_embedding_subregions_are_compared_with_the_stored_kinetic_clusters(store):
    from core.kinetics.analysis import KineticsSettings, analyse_case

    repo, sid, _ = store
    before = diagnose_case(repo, sid, "classifier_scratch", methods=["saliency"], store=False)
    assert before.subregions["kinetic"] is None and "kinetic_clusters" not in before.region_maps
    target = before.subregions["target"]
    assert before.region_maps["embedding_aggressive"][tuple(target["ijk"])]  # the target lies in its region
    assert set(before.signature) >= {"score", "probability", "evidence"} and "signature:idh" in before.maps
    analyse_case(repo, sid, KineticsSettings())
    after = diagnose_case(repo, sid, "classifier_scratch", methods=["saliency"], store=False)
    kin = after.subregions["kinetic"]
    assert -1 <= kin["ari"] <= 1 and 0 <= kin["aggressive_dice"] <= 1 and len(kin["kinetic_target_mm"]) == 3
    assert after.region_maps["kinetic_clusters"].shape == after.region_maps["embedding_clusters"].shape
