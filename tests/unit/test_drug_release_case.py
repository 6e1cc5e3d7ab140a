"""The drug-release case pipeline on imported demo studies: maps, inverse, prediction, Result round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cases.db import init_db
from core.cases.repository import CaseRepository
from core.drug_release.case import (DRUG_RELEASE_KIND, case_inputs, compute_drug_release, find_drug_release,
                                    load_drug_release, perfusion_maps, ph_from_cest)
from core.errors import InputError
from core.phantoms.drug_cohort import drug_import_manifest
from core.phantoms.drug_tumour import generate_drug_study, write_drug_study


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two small studies (liposome, thermosensitive; 32 x 32 voxels of 100 µm) imported into a fresh store."""
    root = tmp_path_factory.mktemp("drug-case")
    studies = [generate_drug_study(1, 3, sc, size=32, with_micro=False) for sc in ("liposome", "thermosensitive")]
    entries = [write_drug_study(s, root / "gen") for s in studies]
    (root / "gen" / "manifest.json").write_text(json.dumps({"generator": "test", "seed": 3, "synthetic": True,
                                                            "studies": entries}))
    url = f"sqlite:///{root / 'cases.db'}"
    init_db(url)
    repo = CaseRepository(url, root / "data")
    ids = repo.import_cohort(drug_import_manifest(root / "gen" / "manifest.json"))
    yield repo, dict(zip(("liposome", "thermosensitive"), ids)), dict(zip(("liposome", "thermosensitive"), studies))
    repo.close()


def test_imaging_maps_recover_the_phantom_truth(store):
    repo, ids, studies = store
    truth = studies["liposome"]
    inputs = case_inputs(repo, ids["liposome"])
    assert inputs.scenario == "liposome" and inputs.spacing_um == 100.0
    np.testing.assert_allclose(inputs.imaging_times_h, truth.imaging_times_h)
    perf = perfusion_maps(inputs)
    ok = perf["ok"] & truth.tumour & (truth.ktrans_per_min > 0)
    assert ok.sum() > 0.5 * truth.tumour.sum()
    rel = np.abs(perf["ktrans_per_min"][ok] - truth.ktrans_per_min[ok]) / truth.ktrans_per_min[ok]
    assert np.median(rel) < 0.10                                   # SNR 40, population AIF shifted to arrival
    assert abs(perf["delay_min"] - 0.3) < 0.1                       # the phantom's bolus delay
    np.testing.assert_allclose(np.nanmedian(perf["t1_ms"][truth.tumour]), np.median(truth.t1_ms[truth.tumour]),
                               rtol=0.05)
    ph, ph_ok = ph_from_cest(inputs)
    good = ph_ok & truth.tumour
    assert good.mean() > 0.8 * truth.tumour.mean()
    assert np.median(np.abs(ph[good] - truth.ph[good])) < 0.1


def test_liposome_case_is_computed_stored_and_read_back(store):
    repo, ids, studies = store
    sid = ids["liposome"]
    seen = []
    record = compute_drug_release(repo, sid, methods=("classical",), threshold_uM_h=0.5,
                                  progress=lambda f, m: seen.append(f))
    assert record.kind == DRUG_RELEASE_KIND and seen[-1] == 1.0 and seen == sorted(seen)
    assert find_drug_release(repo, sid, methods=("classical",), threshold_uM_h=0.5).id == record.id
    assert find_drug_release(repo, sid, methods=("classical",), threshold_uM_h=0.7) is None
    case = load_drug_release(repo, record)
    s = case.summary
    assert case.maps["ktrans_per_min"].shape == (32, 32) and case.carrier_uM.shape[1:] == (32, 32)
    assert case.carrier_uM.shape[0] == case.times_h.size <= 48 and case.times_h[-1] == pytest.approx(48.0)
    # the release-rate map is the liposome's constant leak
    np.testing.assert_allclose(case.maps["release_per_h"][case.tumour], 0.004)
    # the classical inverse ran and its estimates sit next to the label's truth
    est = case.inverse["classical"]["estimates"]
    assert set(est) == set(case.truth) == {"release_per_h", "diffusion_free_um2_per_h",
                                           "permeability_carrier_um_per_h", "vascular_pressure_mmhg"}
    assert case.truth["release_per_h"] == pytest.approx(studies["liposome"].truth["release_per_h"])
    assert 0.25 < est["release_per_h"] / case.truth["release_per_h"] < 4       # model mismatch: same order
    # exposure and lethal fraction agree with the stored prediction
    assert s["lethal_fraction"] == pytest.approx(np.mean(case.maps["exposure_uM_h"][case.tumour] >= 0.5))
    names = [x["name"] for x in case.scenarios]
    assert names == ["free", "liposome", "ph_sensitive", "thermosensitive", "liposome_rt"]
    lf = {x["name"]: x["lethal_fraction_voxel"] for x in case.scenarios}
    assert lf["free"] > lf["liposome"]                 # 48 h of a 0.004/h leak frees little drug
    assert case.profile["distance_um"].size == case.profile["auc_uM_h"].size > 3
    assert s["mass_imbalance"] < 1e-9


def test_thermosensitive_case_has_no_inverse_and_a_heated_release_map(store):
    repo, ids, studies = store
    record = compute_drug_release(repo, ids["thermosensitive"], methods=("classical",))
    case = load_drug_release(repo, record)
    assert case.inverse == {} and "thermosensitive" in case.summary["inverse_note"]
    rate = case.maps["release_per_h"]
    temp = studies["thermosensitive"].temperature_c
    assert np.median(rate[temp > 41.5]) > 10 * np.median(rate[temp < 37.5])


def test_bad_inputs_are_refused_with_a_fix(store, tmp_path):
    repo, ids, _ = store
    with pytest.raises(InputError, match="not known"):
        compute_drug_release(repo, ids["liposome"], methods=("magic",))
    with pytest.raises(InputError, match="threshold"):
        compute_drug_release(repo, ids["liposome"], methods=(), threshold_uM_h=-1.0)
    # a study without the drug series
    series = repo.import_series(_nifti(tmp_path), pseudonym="ONLY-T1", role="t1")
    with pytest.raises(InputError, match="no dce, vfa, cest"):
        compute_drug_release(repo, series.study_id)


def _nifti(tmp_path):
    from core.imaging.nifti import write_nifti
    from core.imaging.volume import Volume

    return write_nifti(Volume(np.ones((8, 8, 1), np.float32), np.eye(4), "MR", "a.u."), tmp_path / "t1.nii.gz")
