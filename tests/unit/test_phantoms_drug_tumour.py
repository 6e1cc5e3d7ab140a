"""Preclinical drug-release phantom (core.phantoms.drug_tumour)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.drug_release.dce import fit_tofts
from core.drug_release.inverse import UNKNOWNS, observe, with_parameters
from core.drug_release.outcomes import concentration_vs_distance, distance_to_vessel_um, exposure_auc, \
    penetration_distance_um
from core.drug_release.transport import simulate
from core.errors import InputError
from core.imaging.nifti import read_nifti
from core.phantoms.drug_tumour import (SCENARIO_SETTINGS, SCENARIOS, generate_drug_cohort, generate_drug_study,
                                       inverse_problem, write_drug_study)

SMALL = dict(size=32, window_px=64)


@pytest.fixture(scope="module")
def studies():
    return {sc: generate_drug_study(1, 0, sc, **SMALL) for sc in SCENARIOS}


def test_same_seed_same_study_other_seed_differs():
    a = generate_drug_study(0, 3, "free", size=24, window_px=48)
    b = generate_drug_study(0, 3, "free", size=24, window_px=48)
    c = generate_drug_study(0, 4, "free", size=24, window_px=48)
    for name in ("vessel_surface_per_um", "ph", "dce_signal", "cest_z", "obs_released_uM", "pressure_mmhg"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.micro_solution.free, b.micro_solution.free)
    assert a.truth == b.truth
    assert not np.array_equal(a.vessel_surface_per_um, c.vessel_surface_per_um)


def test_shapes_units_and_settings(studies):
    s = studies["liposome"]
    n = 32
    assert s.tumour.shape == (n, n) and s.tumour.dtype == bool and 200 < s.tumour.sum() < 0.7 * n * n
    assert s.obs_encapsulated_uM.shape == s.obs_released_uM.shape == (3, n, n)
    assert s.dce_signal.shape == s.dce_ct_mM.shape == (n, n, s.dce_t_min.size)
    assert 0.08 <= np.diff(s.dce_t_min).mean() <= 0.17 and 4.9 <= s.dce_t_min[-1] <= 10  # minutes
    assert s.cest_z.shape == (n, n, s.cest_offsets_ppm.size) and s.vfa_signal.shape == (n, n, 5)
    assert s.micro_grid.shape == (64, 64) and s.micro_grid.spacing_um == 4.0
    for sc in SCENARIOS:
        st = studies[sc]
        np.testing.assert_allclose(st.imaging_times_h, SCENARIO_SETTINGS[sc]["imaging_times_h"])
        assert st.solution.times_h[-1] == pytest.approx(SCENARIO_SETTINGS[sc]["t_end_h"])
        assert set(UNKNOWNS) <= set(st.truth)
    # vessel surface density: S/V = 2 f_v / r_c, tumour mean of the order of Baxter & Jain's 200 /cm
    np.testing.assert_allclose(s.vessel_surface_per_um, 2 * s.vessel_fraction / 6.0)
    assert 0.01 < s.vessel_surface_per_um[s.tumour].mean() < 0.04
    assert studies["free"].truth["release_per_h"] is None
    assert studies["liposome"].truth["release_per_h"] == pytest.approx(0.004)


def test_ph_in_calibrated_range_and_acidic_core(studies):
    s = studies["liposome"]
    ph = s.ph[s.tumour]
    assert ph.min() >= 6.0 and ph.max() <= 7.4
    rn = _radius(s)
    assert s.ph[s.tumour & (rn < 0.3)].mean() < 6.8 < 7.1 < s.ph[s.tumour & (rn > 0.85)].mean()


def _radius(s):
    # a proxy of the normalised radius: distance from the tumour centroid over the equivalent radius
    ij = np.argwhere(s.tumour).mean(axis=0)
    r = np.hypot(*(np.indices(s.tumour.shape) - ij[:, None, None]))
    return r / np.sqrt(s.tumour.sum() / np.pi)


def test_ifp_higher_in_centre_than_at_rim(studies):
    s = studies["free"]
    rn = _radius(s)
    centre = s.pressure_mmhg[s.tumour & (rn < 0.3)].mean()
    rim = s.pressure_mmhg[s.tumour & (rn > 0.85)].mean()
    assert centre > rim + 0.5 and centre < 11.5 + 1e-9      # below the effective pressure p_e


def test_dce_truth_recovered_by_tofts_fit(studies):
    s = studies["free"]
    sel = s.tumour & (s.vessel_fraction > 0)          # avascular voxels do not enhance (Ktrans = 0)
    fit = fit_tofts(s.dce_ct_mM[sel], s.dce_t_min, s.dce_cp_mM, extended=True)
    assert sel.sum() > 100 and fit["ok"].all()
    np.testing.assert_allclose(fit["Ktrans"], s.ktrans_per_min[sel], atol=1e-3)
    np.testing.assert_allclose(fit["vp"], s.vp[sel], atol=1e-3)
    assert np.all(s.ktrans_per_min[s.tumour & (s.vessel_fraction == 0)] == 0)
    # Ktrans is the small-agent permeability-surface product (µm/h x 1/µm, per minute)
    k = 600.0 * s.vessel_surface_per_um / 60.0
    assert np.all(s.ktrans_per_min <= 1.3 * 1.01 * np.exp(1.5) * k + 1e-12)


def test_free_drug_penetration_in_micro_window(studies):
    s = studies["free"]
    d = distance_to_vessel_um(s.micro_grid)
    c, m, _ = concentration_vs_distance(exposure_auc(s.micro_solution, "free"), d, np.arange(0, 205, 8.0))
    pen = penetration_distance_um(c, m)
    assert 30.0 <= pen <= 100.0
    assert s.truth["micro_free_penetration_um"] == pytest.approx(pen)


def test_thermosensitive_releases_more_in_heated_region(studies):
    tsl, lip = studies["thermosensitive"], studies["liposome"]
    np.testing.assert_array_equal(tsl.vessel_surface_per_um, lip.vessel_surface_per_um)   # same animal
    hot = tsl.tumour & (tsl.temperature_c > 41.5)
    assert hot.sum() > 10
    assert np.all(lip.temperature_c == 37.0)
    for t in (1.0, 4.0):
        j, k = (int(np.argmin(np.abs(x.solution.times_h - t))) for x in (tsl, lip))
        rel_t = (tsl.solution.free[j] + tsl.solution.bound[j])[hot].mean()
        rel_l = (lip.solution.free[k] + lip.solution.bound[k])[hot].mean()
        assert rel_t > 20 * rel_l
    assert tsl.release_per_h[hot].min() > 10 * tsl.release_per_h[tsl.tumour & ~(tsl.temperature_c > 39)].max()


def test_mass_ledger_balanced(studies):
    for s in studies.values():
        assert s.solution.ledger.relative_imbalance() < 1e-9
        assert s.micro_solution.ledger.relative_imbalance() < 1e-9
        res = s.solution.ledger.residuals()["total"]
        assert np.all(np.isfinite(res))
    led = studies["thermosensitive"].solution.ledger
    assert np.all(np.diff(led.free_from_plasma) >= -1e-9) and led.free_from_plasma[-1] > 0


def test_observations_carry_the_stated_noise(studies):
    s = studies["liposome"]
    truth = observe(s.solution, s.imaging_times_h)
    err = s.obs_encapsulated_uM - truth["encapsulated"]
    assert err.std() == pytest.approx(s.noise_sd_uM, rel=0.1)
    np.testing.assert_allclose(s.obs_encapsulated_uM, s.obs_delta_r2star_per_s / 50.0 * 1000.0, rtol=1e-12)
    np.testing.assert_allclose(s.obs_released_uM, s.obs_delta_r1_per_s / 4.0 * 1000.0, rtol=1e-12)


def test_inverse_problem_forward_at_truth_fits_the_data():
    s = generate_drug_study(0, 0, "liposome", size=24, heterogeneous=False, with_micro=False)
    prob = inverse_problem(s)
    assert prob.names == tuple(UNKNOWNS)
    values = {k: s.truth[k] for k in UNKNOWNS}
    sol = simulate(prob.grid, with_parameters(prob.base, values), prob.plasma, t_end_h=float(prob.times_h[-1]),
                   dt_h=prob.dt_h, save_times_h=prob.times_h)
    pred = observe(sol, prob.times_h)
    for name in ("encapsulated", "released"):
        res = prob.observed[name] - pred[name]
        assert res.std() == pytest.approx(prob.noise_sd_uM, rel=0.1) and abs(res.mean()) < 0.01
    with pytest.raises(InputError, match="thermosensitive"):
        inverse_problem(generate_drug_study(0, 0, "thermosensitive", size=24, with_micro=False))
    with pytest.raises(InputError, match="carrier"):
        inverse_problem(generate_drug_study(0, 0, "free", size=24, with_micro=False), ["release_per_h"])


def test_bad_arguments_say_what_to_fix():
    with pytest.raises(InputError, match="scenario"):
        generate_drug_study(0, 0, "ph_sensitive")
    with pytest.raises(InputError, match="size"):
        generate_drug_study(0, 0, "free", size=8)
    with pytest.raises(InputError, match="noise_sd_uM"):
        generate_drug_study(0, 0, "free", size=24, noise_sd_uM=-1.0)


def test_writer_round_trip(studies, tmp_path):
    s = studies["thermosensitive"]
    entry = write_drug_study(s, tmp_path)
    assert {"dce_signal", "vfa_signal", "t1_map", "cest_z", "obs_encapsulated", "obs_released", "truth_ktrans",
            "truth_free", "truth_micro_free", "release_rate", "temperature", "ifp", "ph"} <= set(entry["files"])
    ph = read_nifti(tmp_path / entry["files"]["ph"])
    assert ph.shape == (32, 32, 1) and ph.units == "pH" and ph.spacing == pytest.approx((0.1, 0.1, 1.0))
    np.testing.assert_allclose(ph.data[:, :, 0], s.ph, rtol=1e-6)
    obs = read_nifti(tmp_path / entry["files"]["obs_released"])
    np.testing.assert_allclose(obs.frame_start_s / 3600.0, s.imaging_times_h)
    np.testing.assert_allclose(obs.data[:, :, 0, :], np.moveaxis(s.obs_released_uM, 0, -1), rtol=1e-6, atol=1e-6)
    dce = read_nifti(tmp_path / entry["files"]["dce_signal"])
    np.testing.assert_allclose(dce.frame_start_min, s.dce_t_min, atol=1e-9)
    assert dce.meta["sidecar"]["FlipAngle"] == 15.0 and dce.meta["sidecar"]["Scenario"] == "thermosensitive"
    mic = read_nifti(tmp_path / entry["files"]["truth_micro_free"])
    assert mic.spacing[0] == pytest.approx(0.004) and mic.data.shape == (64, 64, 1, s.micro_solution.times_h.size)
    info = json.loads((tmp_path / s.study_id / "study.json").read_text())
    assert info["truth"]["scenario"] == "thermosensitive" and info["noise_sd_uM"] == s.noise_sd_uM


def test_cohort_has_one_study_per_scenario(tmp_path):
    path = generate_drug_cohort(tmp_path, n=3, seed=0, size=24, window_px=48)
    manifest = json.loads(path.read_text())
    assert [e["scenario"] for e in manifest["studies"]] == list(SCENARIOS)
    for e in manifest["studies"]:
        assert all((tmp_path / f).exists() for f in e["files"].values())
