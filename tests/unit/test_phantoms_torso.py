"""The therapy torso phantom: anatomy, CT numbers, kinetics, SPECT physics and the round trip through the store."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, ndimage

from core.errors import InputError
from core.phantoms.torso import (CT_GRID, SPECT_GRID, Kinetics, generate_therapy_cohort, generate_therapy_patient,
                                 label_activity_mbq)


@pytest.fixture(scope="module")
def cases():
    return [generate_therapy_patient(i, seed=0) for i in range(2)]


def _expected_total(case) -> np.ndarray:
    decay = np.exp(-math.log(2) / case.half_life_h * case.times_h)
    return case.administered_mbq * decay * case.retained_fraction


def test_same_seed_same_patient_other_seed_other_patient(cases):
    again = generate_therapy_patient(0, seed=0)
    a = cases[0]
    assert np.array_equal(a.ct.data, again.ct.data) and np.array_equal(a.spect.data, again.spect.data)
    assert np.array_equal(a.true_activity_mbq, again.true_activity_mbq) and a.truth == again.truth
    assert not np.array_equal(a.ct.data, cases[1].ct.data)
    assert a.patient_id == "DEMO-PSMA-000" and cases[1].patient_id == "DEMO-PSMA-001"


def test_organ_volumes_are_those_of_an_adult(cases):
    for case in cases:
        v = case.truth["volumes_ml_spect_grid"]
        assert 1200 <= v["liver"] <= 2000, v["liver"]
        assert 250 <= v["kidneys"] <= 400, v["kidneys"]
        assert 100 <= v["spleen"] <= 250, v["spleen"]
        assert 30 <= v["salivary glands"] <= 100 and 2000 <= v["lungs"] <= 7000
        tumours = case.truth["tumours"]
        assert 2 <= len(tumours) <= 5 and all(10 <= t["diameter_mm"] <= 50 for t in tumours)
        # the CT-grid labels (centre sampling, 3 mm) agree with the SPECT-grid fractions within 8 %
        ct_ml = np.prod(case.ct.spacing) / 1000.0
        inv = {name: k for k, name in case.label_names.items()}
        for organ in ("liver", "kidneys", "spleen"):
            assert np.count_nonzero(case.labels_ct.data == inv[organ]) * ct_ml == pytest.approx(v[organ], rel=0.08)


def test_ct_numbers_per_tissue(cases):
    case = cases[0]
    hu, lab = case.ct.data, case.labels_ct.data
    inv = {name: k for k, name in case.label_names.items()}
    inner = lambda name: ndimage.binary_erosion(lab == inv[name], iterations=2)  # noqa: E731  away from edges
    med = lambda mask: float(np.median(hu[mask]))  # noqa: E731
    assert -1010 <= med(lab == 0) <= -990
    assert -870 <= med(inner("lungs")) <= -730
    assert 45 <= med(inner("liver")) <= 70 and 20 <= med(inner("kidneys")) <= 45 and 35 <= med(inner("spleen")) <= 55
    assert -5 <= med(inner("bladder")) <= 20
    bone = hu[lab == inv["bone"]]
    assert np.percentile(bone, 99) >= 700 and 150 <= np.percentile(bone, 25) <= 400  # cortex and spongiosa
    body = hu[lab == inv["body"]]
    assert np.mean(body < -50) > 0.05 and 30 <= np.median(body[body > -20]) <= 60  # fat layer and soft tissue
    assert float(np.std(hu[:10, :10, :10])) == pytest.approx(10.0, rel=0.1)  # CT noise in air: SD 10 HU


def test_spect_grid_differs_from_the_ct_grid(cases):
    case = cases[0]
    assert case.spect.shape[:3] == SPECT_GRID[0] and case.ct.shape == CT_GRID[0]
    assert case.spect.spacing == (4.8, 4.8, 4.8) and case.ct.spacing == (3.0, 3.0, 3.0)
    assert case.labels.shape == case.spect.shape[:3] and case.labels_ct.shape == case.ct.shape
    assert case.spect.n_frames == 5 and case.spect.modality == "NM" and case.spect.units == "Bq/ml"
    assert np.allclose(case.spect.frame_mid_s / 3600.0, [4, 24, 48, 96, 168])
    assert np.all(case.spect.frame_duration_s == 1200.0) and not case.spect.decay_corrected
    # the SPECT field of view holds the whole CT field of view: nothing is cut off
    corners = np.array([[i, j, k] for i in (0, 159) for j in (0, 99) for k in (0, 283)])
    ijk = case.spect.mm_to_voxel(case.ct.voxel_to_mm(corners))
    assert np.all(ijk > 0) and np.all(ijk < np.array(SPECT_GRID[0]) - 1)


def test_activity_is_conserved(cases):
    for case in cases:
        expected = _expected_total(case)
        true_total = case.true_activity_mbq.sum(axis=(0, 1, 2), dtype=np.float64)
        assert np.allclose(true_total, expected, rtol=1e-4)
        sigma = 11.0 / (2 * math.sqrt(2 * math.log(2))) / 4.8
        blurred = ndimage.gaussian_filter(case.true_activity_mbq[..., 0].astype(np.float64), sigma, mode="constant")
        assert blurred.sum() == pytest.approx(expected[0], rel=0.01)
        voxel_ml = np.prod(case.spect.spacing) / 1000.0
        measured = case.spect.data.sum(axis=(0, 1, 2), dtype=np.float64) * voxel_ml / 1e6
        assert np.allclose(measured, expected, rtol=0.02)
    # retention starts at 1 and only falls (urine leaves, nothing comes back)
    t = np.linspace(0.0, 400.0, 4001)
    for case in cases:
        r = sum(k.fraction(t) for k in case.kinetics.values())
        assert r[0] == pytest.approx(1.0) and np.all(np.diff(r) <= 1e-12)
    # whole-body retention about 50 % at 4 h (Kurth et al. 2018)
    assert 0.35 <= np.mean([c.retained_fraction[0] for c in cases]) <= 0.65


def test_outside_the_body_is_near_zero(cases):
    case = cases[0]
    body = ndimage.binary_dilation(case.labels.data > 0, iterations=6)
    frame = case.spect.data[..., 1]
    assert frame[~body].mean() < 1e-3 * frame[case.labels.data > 0].mean()


def test_tia_truth_equals_the_integral_of_the_noise_free_curves(cases):
    case = cases[0]
    t = np.concatenate([np.linspace(0.0, 10.0, 2001), np.linspace(10.0, 3000.0, 20000)[1:]])
    curves = label_activity_mbq(case, t)
    lam_p = math.log(2) / case.half_life_h
    for name, tia in case.true_tia_mbq_h.items():
        a = curves[name]
        numeric = integrate.trapezoid(a, t) + a[-1] / lam_p
        assert numeric == pytest.approx(tia, rel=2e-3), name
    # the maps at the time points hold the same activities, and the TIA map sums to the total
    at_points = label_activity_mbq(case, case.times_h)
    assert np.allclose(sum(at_points.values()), case.true_activity_mbq.sum(axis=(0, 1, 2), dtype=np.float64), rtol=1e-4)
    assert case.true_tia_map_mbq_h.sum(dtype=np.float64) == pytest.approx(sum(case.true_tia_mbq_h.values()), rel=1e-4)
    # an independent estimate: core.dosimetry's bi-exponential fit of the five kidney values
    from core.dosimetry.tia import fit_tia

    fit = fit_tia(case.times_h, at_points["kidneys"], case.half_life_h)
    assert fit.tia_mbq_h == pytest.approx(case.true_tia_mbq_h["kidneys"], rel=0.05)


def test_kinetics_tia_is_analytic():
    k = Kinetics.uptake_washout(0.03, 1.0, 50.0)
    lam_p = math.log(2) / 159.5
    numeric, _ = integrate.quad(lambda t: float(k.fraction(t)) * math.exp(-lam_p * t), 0, np.inf, limit=200)
    assert k.tia_h(lam_p) == pytest.approx(numeric, rel=1e-6)
    assert float(k.fraction(0.0)) == 0.0 and Kinetics.two_phase(0.2, 1.5, 40.0).fraction(0.0) == pytest.approx(1.0)


def test_bad_input_is_explained():
    with pytest.raises(InputError, match="Lu-177"):
        generate_therapy_patient(0, nuclide="Lu-178x")
    with pytest.raises(InputError, match="strictly increasing"):
        generate_therapy_patient(0, times_h=(24, 4, 48))
    with pytest.raises(InputError, match="MBq"):
        generate_therapy_patient(0, administered_mbq=7.4e9)  # Bq given for MBq
    with pytest.raises(InputError, match="agent"):
        generate_therapy_patient(0, agent="FDG")


def test_written_case_reimports_through_the_store(tmp_path, cases):
    from core.cases.repository import CaseRepository

    manifest = generate_therapy_cohort(tmp_path / "cohort", n=1, seed=0)
    repo = CaseRepository(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "data")
    try:
        (study,) = repo.import_cohort(manifest)
        case = repo.get_case(study)
        assert case.pseudonym == "DEMO-PSMA-000" and case.label == "mCRPC" and case.synthetic
        assert [s.role for s in case.series] == ["ct", "spect", "other"]
        spect_rec = case.series_by_role("spect")
        assert spect_rec.timing["frame_start_s"] == pytest.approx(list(cases[0].spect.frame_start_s))
        spect = repo.load_series(spect_rec.id)
        assert np.array_equal(spect.data, cases[0].spect.data) and np.allclose(spect.affine, SPECT_GRID[1])
        assert spect.meta["sidecar"]["AdministeredActivityMBq"] == 7400.0
        assert spect.meta["sidecar"]["Radionuclide"] == "Lu-177" and "InjectionDateTime" in spect.meta["sidecar"]
        ct = repo.load_series(case.series_by_role("ct").id)
        assert np.array_equal(ct.data, cases[0].ct.data)
        kidneys = case.mask_by_name("kidneys")
        assert kidneys.volume_ml == pytest.approx(cases[0].truth["volumes_ml_spect_grid"]["kidneys"], rel=0.05)
        assert case.mask_by_name("tumour") is not None
        assert repo.import_cohort(manifest) == []  # a second import skips the patient
    finally:
        repo.close()
