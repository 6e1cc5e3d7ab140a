"""Synthetic FDOPA brain cohort: determinism, design, physics and file round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.errors import InputError
from core.imaging import DynamicVolume, load
from core.phantoms import SITES, cohort_labels, generate_cohort, generate_patient, get_site, pet_grid, write_case_dicom
from core.phantoms.anatomy import load_anatomy
from core.phantoms.brain_fdopa import (GENERATOR, GENERATOR_VERSION, _nice_quantum, _simulate_pet, _to_grid,
                                       simulate_kinetics)
from core.phantoms.frames import F18_HALF_LIFE_S, frame_decay_factors, frame_schedule, input_time_grid_min
from core.phantoms.input_function import FDOPA_POPULATION, fdopa_input_function, feng_input, sample_fdopa_input
from core.phantoms.kinetics_fdopa import NORMAL_TISSUE, region_tacs, sample_lesion
from core.phantoms.sites import site_table_markdown

SEED = 7


@pytest.fixture(scope="module")
def anatomy():
    return load_anatomy()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, anatomy):
    out = tmp_path_factory.mktemp("cohort")
    calls = []
    path = generate_cohort(out, n=2, seed=SEED, site="A", progress=lambda fraction, msg: calls.append((fraction, msg)))
    return out, path, calls


@pytest.fixture(scope="module")
def case(anatomy):
    return generate_patient(1, seed=SEED, site="A", anatomy=anatomy)


# ------------------------------------------------------------------ cohort design


def test_labels_are_balanced_in_pairs_and_not_readable_from_the_index():
    labels = cohort_labels(40, seed=3)
    assert labels.count("progression") == labels.count("radionecrosis") == 20
    for p in range(20):
        assert {labels[2 * p], labels[2 * p + 1]} == {"progression", "radionecrosis"}
    firsts = [labels[2 * p] for p in range(20)]
    assert 0 < firsts.count("progression") < 20          # the order inside a pair is drawn
    assert cohort_labels(40, seed=3) == labels            # and deterministic
    assert cohort_labels(40, seed=4) != labels


def test_patient_is_independent_of_cohort_size_and_seeded(anatomy):
    a = simulate_kinetics(5, seed=SEED, anatomy=anatomy)
    b = simulate_kinetics(5, seed=SEED, anatomy=anatomy)
    c = simulate_kinetics(5, seed=SEED + 1, anatomy=anatomy)
    assert a.label == cohort_labels(6, SEED)[5]
    assert np.array_equal(a.lesion.mask, b.lesion.mask)
    assert a.metrics == b.metrics
    assert not np.array_equal(a.lesion.mask, c.lesion.mask)


@pytest.fixture(scope="module")
def kinetic_cohort(anatomy):
    return [simulate_kinetics(i, seed=11, anatomy=anatomy) for i in range(24)]


def test_progression_has_higher_tbr_and_falling_curves(kinetic_cohort):
    prog = [k.metrics for k in kinetic_cohort if k.label == "progression"]
    rn = [k.metrics for k in kinetic_cohort if k.label == "radionecrosis"]
    assert len(prog) == len(rn) == 12
    assert np.mean([m["tbr_mean_10_30min"] for m in prog]) > np.mean([m["tbr_mean_10_30min"] for m in rn]) + 0.3
    assert (np.mean([m["slope_10_30min_suv_per_h"] for m in prog])
            < np.mean([m["slope_10_30min_suv_per_h"] for m in rn]))


def test_classes_overlap_so_a_single_tbr_threshold_is_imperfect():
    """Over many draws (population normal tissue as background) one TBR cut-off reaches
    roughly the 70-85 % accuracy reported for FDOPA, not 100 %."""
    rng = np.random.default_rng(5)
    site = get_site("A")
    fs = site.frame_start_s / 60
    fe = fs + site.frame_duration_s / 60
    t = input_time_grid_min(30.0)
    cp = feng_input(t, FDOPA_POPULATION)
    params = {}
    for i in range(400):
        if i % 2:
            params[i] = sample_lesion(rng, "radionecrosis", "wildtype", False)
        else:
            idh = "mutant" if rng.random() < 0.4 else "wildtype"
            params[i] = sample_lesion(rng, "progression", idh, bool(idh == "mutant" and rng.random() < 0.4))
    params["gm"], params["wm"] = NORMAL_TISSUE["grey_matter"], NORMAL_TISSUE["white_matter"]
    tacs = region_tacs(params, t, cp, cp, fs, fe)
    late = (fs >= 10) & (fe <= 30)
    background = (0.35 * tacs["gm"] + 0.65 * tacs["wm"])[late].mean()
    tbr = np.array([tacs[i][late].mean() / background for i in range(400)])
    y = np.arange(400) % 2 == 0
    best = max(max(((tbr >= c) == y).mean(), ((tbr < c) == y).mean()) for c in tbr)
    assert 0.68 < best < 0.9


def _lesion_ttp(idh: str, codeleted: bool, n: int, seed: int):
    rng = np.random.default_rng(seed)
    site = get_site("A")
    fs = site.frame_start_s / 60
    fe = fs + site.frame_duration_s / 60
    t = input_time_grid_min(30.0)
    cp = feng_input(t, FDOPA_POPULATION)
    params = {i: sample_lesion(rng, "progression", idh, codeleted) for i in range(n)}
    tacs = region_tacs(params, t, cp, cp, fs, fe)
    mid = 0.5 * (fs + fe)
    late = fs >= 10
    ttp = np.array([mid[np.argmax(v)] for v in tacs.values()])
    suv = np.array([v[late].mean() for v in tacs.values()])
    return ttp, suv


def test_idh_mutant_gliomas_peak_later_and_codeleted_take_up_more():
    ttp_wt, _ = _lesion_ttp("wildtype", False, 300, 0)
    ttp_mut, suv_mut = _lesion_ttp("mutant", False, 300, 1)
    _, suv_codel = _lesion_ttp("mutant", True, 300, 1)
    assert ttp_mut.mean() > ttp_wt.mean() + 5.0
    # Ginet et al. 2020: TTP >= 5.4 min predicts an IDH mutation (accuracy 74 %)
    assert (ttp_mut >= 5.4).mean() > 0.6 and (ttp_wt >= 5.4).mean() < 0.1
    assert suv_codel.mean() > 1.15 * suv_mut.mean()


def test_aggressive_subregion_in_a_fraction_of_progressions(kinetic_cohort):
    prog = [k for k in kinetic_cohort if k.label == "progression"]
    frac = np.mean([k.has_aggressive for k in prog])
    assert 0.2 <= frac <= 0.8
    assert not any(k.has_aggressive for k in kinetic_cohort if k.label == "radionecrosis")
    for k in prog:
        if k.has_aggressive:
            assert k.metrics["aggressive_ttp_min"] <= 6.0           # fast, early-peaking focus
            assert not np.any(k.lesion.aggressive & ~k.lesion.mask)


def test_lesions_stay_in_one_hemisphere_away_from_striatum(kinetic_cohort, anatomy):
    x = anatomy.coordinates_mm()[0]
    striatum = (anatomy.fractions["caudate"] + anatomy.fractions["putamen"]) > 0
    for k in kinetic_cohort:
        m = k.lesion.mask
        xs = np.broadcast_to(x, m.shape)[m]
        assert np.all(xs < 0) or np.all(xs > 0)
        assert not np.any(m & striatum)
        assert not np.any(m & m[::-1])                      # the mirror image is healthy
        assert 1.0 < k.lesion.volume_ml < 60.0


# ------------------------------------------------------------------ frames, sites, input


@pytest.mark.parametrize("name", sorted(SITES))
def test_frame_schedules_are_contiguous_and_realistic(name):
    site = SITES[name]
    start, dur = site.frame_start_s, site.frame_duration_s
    assert start[0] == 0.0 and np.all(dur > 0)
    assert np.all(np.diff(start) > 0)
    np.testing.assert_allclose(start[1:], start[:-1] + dur[:-1])
    assert np.all(np.diff(dur) >= 0)                                      # short early, long late
    assert 17 <= site.n_frames <= 30 and 30.0 <= site.scan_duration_min <= 40.0
    ends = (start + dur) / 60
    assert np.any(np.isclose(ends, 10.0)) and np.any(np.isclose(ends, 30.0))   # 10-30 min static window


def test_sites_and_noise_ordering():
    assert get_site("b") is SITES["B"]
    with pytest.raises(InputError, match="unknown site"):
        get_site("Z")
    assert SITES["A"].noise_cov_ref == pytest.approx(0.10)
    assert SITES["B"].noise_cov_ref > SITES["A"].noise_cov_ref          # lower sensitivity and TOF gain
    assert SITES["C"].noise_cov_ref > SITES["B"].noise_cov_ref          # no TOF
    assert SITES["B"].fwhm_mm > SITES["A"].fwhm_mm
    table = site_table_markdown()
    assert table.count("\n") == len(SITES) + 1


def test_frame_decay_factors_and_schedule_helpers():
    df = frame_decay_factors([0.0, F18_HALF_LIFE_S], [60.0, 60.0])
    assert df[1] == pytest.approx(2.0 * df[0])
    lam_dt = math.log(2) * 60 / F18_HALF_LIFE_S
    assert df[0] == pytest.approx(lam_dt / -math.expm1(-lam_dt), rel=1e-12)
    start, dur = frame_schedule(((3, 10), (2, 60)))
    assert start.tolist() == [0, 10, 20, 30, 90]
    with pytest.raises(InputError):
        frame_schedule(((0, 10),))


def test_input_function_shape_and_scale():
    t = input_time_grid_min(30.0)
    suv = feng_input(t, FDOPA_POPULATION)
    assert suv.min() >= 0 and suv[t < FDOPA_POPULATION.delay_min].max() == 0
    t_peak = t[np.argmax(suv)]
    assert 0.5 < t_peak < 1.5 and 10 < suv.max() < 40                    # bolus peak, SUV units
    assert 1.0 < np.interp(30.0, t, suv) < np.interp(10.0, t, suv) < 3.0
    f = fdopa_input_function(FDOPA_POPULATION, t, 210e6, 70.0)
    np.testing.assert_allclose(f.plasma_bq_per_ml, suv * 3000.0)
    draws = [sample_fdopa_input(np.random.default_rng(i)) for i in range(50)]
    assert len({round(d.a1_per_min, 6) for d in draws}) == 50             # patients differ
    assert all(0.15 <= d.delay_min <= 0.55 for d in draws)


def test_normal_tissue_contrast(anatomy):
    """Striatum > cortex > white matter >> CSF at 10-30 min, with population kinetics."""
    t = input_time_grid_min(30.0)
    cp = feng_input(t, FDOPA_POPULATION)
    tacs = region_tacs(NORMAL_TISSUE, t, cp, cp, [10.0], [30.0])
    s, g, w, c = (float(tacs[n][0]) for n in ("putamen", "grey_matter", "white_matter", "csf"))
    assert 1.4 < s / g < 2.2 and 1.3 < g / w < 2.0 and c < 0.1 * w
    assert 0.9 < g < 1.5                                                   # cortex SUV


# ------------------------------------------------------------------ images


def test_pet_volume_record(case):
    pet = case.pet
    assert isinstance(pet, DynamicVolume) and pet.modality == "PT" and pet.units == "Bq/ml"
    assert pet.decay_corrected and pet.decay_reference == "injection"
    assert pet.suv_available and pet.dose.radionuclide == "18F" and pet.dose.tracer == "FDOPA"
    assert pet.spacing == pytest.approx((2.5, 2.5, 2.5))
    mbq_per_kg = pet.dose.injected_activity_bq / 1e6 / pet.dose.body_weight_kg
    assert 2.0 <= mbq_per_kg <= 4.0 and 55 <= pet.dose.body_weight_kg <= 100
    assert pet.data.dtype == np.float32 and pet.data.min() >= 0 and np.isfinite(pet.data).all()
    shape, affine = pet_grid("A")
    assert pet.shape[:3] == shape and np.allclose(pet.affine, affine)
    centre_x = pet.voxel_to_mm([(shape[0] - 1) / 2, 0, 0])[0]
    assert centre_x == pytest.approx(0.0)                                  # mirror plane = central plane
    assert case.t1.shape == case.t1c.shape == case.flair.shape == (99, 117, 95)


def test_pet_contrast_in_the_image(case, anatomy):
    pet = case.pet
    static = pet.sum_frames(600, 1800).to_suv()
    grid = (pet.shape[:3], pet.affine)
    put = _to_grid(anatomy.fractions["putamen"], anatomy.affine, *grid) > 0.9
    cortex = _to_grid(anatomy.fractions["grey_matter"], anatomy.affine, *grid) > 0.9
    csf = _to_grid(anatomy.fractions["csf"] * anatomy.brain, anatomy.affine, *grid) > 0.95
    assert static[put].mean() > 1.3 * static[cortex].mean() > 1.3 * static[csf].mean()
    tumour = case.tumour_mask.data > 0
    mirror = tumour[::-1]
    tbr = static[tumour].mean() / static[mirror].mean()
    assert tbr > 1.0
    # the noiseless truth agrees with the image within partial-volume and noise effects
    assert tbr == pytest.approx(case.truth["metrics_noiseless"]["tbr_mean_10_30min"], rel=0.5)


def test_noise_follows_the_poisson_like_model(anatomy):
    """A uniform 5 kBq/ml brain: voxel CoV of a 240 s frame at 10 min matches the site model."""
    site = SITES["A"]
    maps = {"brain": anatomy.brain.astype(np.float32)}
    level = 5000.0
    tacs = {"brain": np.full(site.n_frames, level)}
    data, shape, affine = _simulate_pet(maps, tacs, anatomy, site, 3000.0, np.random.default_rng(0))
    inner = _to_grid((anatomy.brain_depth_mm > 20).astype(np.float32), anatomy.affine, shape, affine) > 0.5
    frame = int(np.argmax(site.frame_start_s >= 600))
    values = data[..., frame][inner]
    df = frame_decay_factors(site.frame_start_s, site.frame_duration_s)[frame]
    expected = site.noise_cov_ref * math.sqrt(df * 300.0 / site.frame_duration_s[frame])
    assert values.std() / values.mean() == pytest.approx(expected, rel=0.15)
    assert values.mean() == pytest.approx(level, rel=0.02)
    short = data[..., 0][inner]
    assert short.std() / short.mean() > 3 * values.std() / values.mean()   # 10 s frames are noisier


def test_masks_and_mri(case):
    tumour = case.tumour_mask_mri.data > 0
    assert case.tumour_mask.data.any() and case.tumour_mask.modality == "SEG"
    if case.aggressive_mask_mri is not None:
        assert not np.any((case.aggressive_mask_mri.data > 0) & ~tumour)
    t1, t1c, flair = case.t1.data, case.t1c.data, case.flair.data
    assert t1c[tumour].mean() > t1[tumour].mean() + 50                      # enhancement
    mirror = tumour[::-1]
    assert flair[tumour].mean() > 1.2 * flair[mirror].mean()               # FLAIR hyperintense lesion
    assert t1[tumour].mean() < t1[mirror].mean()                           # T1 hypointense


# ------------------------------------------------------------------ files


def test_manifest_schema(cohort):
    out, path, calls = cohort
    assert calls == [(0.5, "DEMO-A-S7-000 (1/2)"), (1.0, "DEMO-A-S7-001 (2/2)")]   # seed 7: its own patients
    manifest = json.loads(path.read_text())
    assert manifest["generator"] == GENERATOR and manifest["version"] == GENERATOR_VERSION
    assert manifest["seed"] == SEED and manifest["site"] == "A" and manifest["synthetic"] is True
    patients = manifest["patients"]
    assert [p["id"] for p in patients] == ["DEMO-A-S7-000", "DEMO-A-S7-001"]
    assert sorted(p["label"] for p in patients) == ["progression", "radionecrosis"]
    for p in patients:
        assert p["idh"] in ("mutant", "wildtype") and isinstance(p["codeletion_1p19q"], bool)
        assert not (p["codeletion_1p19q"] and p["idh"] == "wildtype")
        assert set(p["files"]) >= {"dynamic_pet", "t1", "t1c", "flair"}
        assert p["files"]["dynamic_pet"] == f"{p['id']}/pet.nii.gz"
        for rel in [*p["files"].values(), *p["masks"].values()]:
            assert (out / rel).is_file(), rel
        assert "tumour" in p["masks"]
        assert ("aggressive" in p["masks"]) == p["truth"]["has_aggressive_subregion"]
        assert p["truth"]["label"] == p["label"]
        assert set(p["truth"]["kinetics"]["tumour"]) >= {"K1", "k2", "k3", "k4", "vB", "Ki"}
        assert (out / p["id"] / "pet.json").is_file()
        size_mb = sum(f.stat().st_size for f in (out / p["id"]).iterdir()) / 1e6
        assert size_mb < 20


def test_files_round_trip_and_match_a_fresh_generation(cohort, case):
    out, path, _ = cohort
    entry = json.loads(path.read_text())["patients"][1]
    pet = load(out / entry["files"]["dynamic_pet"])
    assert isinstance(pet, DynamicVolume) and pet.n_frames == case.pet.n_frames
    assert np.array_equal(pet.data, case.pet.data)                         # same seed -> identical arrays
    np.testing.assert_allclose(pet.affine, case.pet.affine)
    np.testing.assert_allclose(pet.frame_start_s, case.pet.frame_start_s)
    np.testing.assert_allclose(pet.frame_duration_s, case.pet.frame_duration_s)
    assert pet.suv_available and pet.dose.injected_activity_bq == pytest.approx(case.pet.dose.injected_activity_bq)
    for key, vol in (("t1", case.t1), ("t1c", case.t1c), ("flair", case.flair)):
        img = load(out / entry["files"][key])
        assert img.modality == "MR" and np.array_equal(img.data, vol.data)
        np.testing.assert_allclose(img.affine, vol.affine)
    mask = load(out / entry["masks"]["tumour"])
    assert mask.modality == "SEG" and np.array_equal(mask.data > 0, case.tumour_mask.data > 0)
    blood = np.loadtxt(out / entry["files"]["blood"], skiprows=1)
    np.testing.assert_allclose(blood[:, 1], case.input_function.plasma_bq_per_ml, rtol=1e-6, atol=1e-3)


def test_worker_processes_give_identical_patients(tmp_path, cohort):
    out, path, _ = cohort
    path2 = generate_cohort(tmp_path, n=3, seed=SEED, site="A", workers=2)
    m1, m2 = json.loads(path.read_text()), json.loads(path2.read_text())
    assert [p["label"] for p in m2["patients"][:2]] == [p["label"] for p in m1["patients"]]
    for i in range(2):
        a = load(out / m1["patients"][i]["files"]["dynamic_pet"]).data
        b = load(tmp_path / m2["patients"][i]["files"]["dynamic_pet"]).data
        assert np.array_equal(a, b)


def test_write_case_dicom_round_trip(case, tmp_path):
    series = write_case_dicom(case, tmp_path / "dicom")
    assert set(series) == {"pet", "t1", "t1c", "flair", "ct"}
    pet = load(series["pet"])
    assert isinstance(pet, DynamicVolume) and pet.n_frames == case.pet.n_frames
    np.testing.assert_allclose(pet.frame_start_s, case.pet.frame_start_s)
    np.testing.assert_allclose(pet.data, case.pet.data, atol=1e-4 * float(case.pet.data.max()))
    assert pet.to_suv().max() == pytest.approx(case.pet.to_suv().max(), rel=1e-3)
    ct = load(series["ct"])
    assert ct.modality == "CT" and ct.data.min() == -1000 and ct.data.max() > 900
    import pydicom

    first = sorted(series["t1"].iterdir())[0]
    ds = pydicom.dcmread(first)
    assert "^" in str(ds.PatientName) and str(ds.PatientID).startswith("NCY")   # identifying-looking
    assert str(ds.PatientName) != case.patient_id


def test_invalid_requests():
    with pytest.raises(InputError):
        generate_patient(-1)
    with pytest.raises(InputError):
        generate_cohort("/tmp/never-written", n=0)
    assert _nice_quantum(37.0) == 20.0 and _nice_quantum(0.01) == 0.1 and _nice_quantum(100.0) == 100.0


def test_patient_ids_name_site_and_seed():
    from core.phantoms.brain_fdopa import patient_id

    assert patient_id(3, "A") == "DEMO-A-003"                 # seed 0: the default cohort
    assert patient_id(3, "B", seed=0) == "DEMO-B-003"         # same patient rescanned at site B
    assert patient_id(3, "A", seed=7) == "DEMO-A-S7-003"      # another seed: another patient
