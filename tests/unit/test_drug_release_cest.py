"""CEST pH mapping: forward model, B0 correction, ratiometric index, calibration, pH maps."""

from __future__ import annotations

import numpy as np
import pytest

from core.drug_release.cest import (
    DEFAULT_OFFSETS_PPM,
    GAMMA_RAD_S_T,
    IOPAMIDOL_POOLS,
    CestCalibration,
    CestPool,
    calibrate_ph,
    cest_ratio,
    correct_b0,
    default_calibration,
    ph_map,
    ph_map_from_z,
    simulate_z_spectrum,
    st_effect,
)
from core.errors import InputError

OFF = DEFAULT_OFFSETS_PPM


# ----------------------------------------------------------------------------- forward model

def test_shapes_broadcast_over_voxels():
    z = simulate_z_spectrum(OFF, np.full((2, 1), 7.0), np.array([5.0, 10.0, 20.0]))
    assert z.shape == (2, 3, OFF.size)
    assert simulate_z_spectrum(OFF, 7.0, 10.0).shape == (OFF.size,)


def test_water_direct_saturation_matches_closed_form():
    # Without agent: Z = R1 dw^2 / (R1 dw^2 + R2 w1^2) (steady state, cos^2 = dw^2/(dw^2 + w1^2)).
    t1, t2, b1, field = 1.5, 0.05, 1.0, 9.4
    z = simulate_z_spectrum(OFF, 7.0, 0.0, b1_uT=b1, t1_s=t1, t2_s=t2, field_t=field)
    dw = OFF * GAMMA_RAD_S_T * field * 1e-6
    w1 = GAMMA_RAD_S_T * b1 * 1e-6
    ref = (dw**2 / t1) / (dw**2 / t1 + w1**2 / t2)
    np.testing.assert_allclose(z, ref, rtol=1e-12, atol=1e-15)
    assert z[OFF.size // 2] == 0.0                                  # on resonance: fully saturated


def test_single_pool_exchange_term_at_resonance():
    # 1/Z - 1/Z_ref = R_ex / (R1 cos^2 theta); at the pool's resonance R_ex = f k w1^2/(w1^2 + k(k + R2s)).
    pool = CestPool("test", 3.0, 1.0, 200.0, 0.0, r2_per_s=50.0)
    conc, b1, t1 = 50.0, 1.5, 2.0
    off = np.array([-3.0, -1.0, 0.5, 1.0, 3.0])
    z = simulate_z_spectrum(off, 7.0, conc, b1_uT=b1, t1_s=t1, pools=(pool,))
    z0 = simulate_z_spectrum(off, 7.0, 0.0, b1_uT=b1, t1_s=t1, pools=(pool,))
    w1 = GAMMA_RAD_S_T * b1 * 1e-6
    dw = 3.0 * GAMMA_RAD_S_T * 7.0 * 1e-6
    cos2 = dw**2 / (dw**2 + w1**2)
    f, k = conc * 1e-3 / 111.0, 200.0
    rex = f * k * w1**2 / (w1**2 + k * (k + 50.0))
    assert 1 / z[-1] - 1 / z0[-1] == pytest.approx(rex / (cos2 / t1), rel=1e-9)


def test_exchange_rate_is_base_catalysed():
    pool = IOPAMIDOL_POOLS[1]
    k6, k7 = pool.exchange_rate_per_s(6.0), pool.exchange_rate_per_s(7.0)
    assert (k7 - pool.k0_per_s) / (k6 - pool.k0_per_s) == pytest.approx(10.0, rel=1e-12)


def test_noise_is_seeded():
    a = simulate_z_spectrum(OFF, 7.0, 10.0, noise_sd=0.01, rng=3)
    b = simulate_z_spectrum(OFF, 7.0, 10.0, noise_sd=0.01, rng=3)
    np.testing.assert_array_equal(a, b)
    assert np.std(a - simulate_z_spectrum(OFF, 7.0, 10.0)) == pytest.approx(0.01, rel=0.2)


# ----------------------------------------------------------------------------- analysis

def test_b0_correction_recovers_shift_and_spectrum():
    shifts = np.array([-0.43, -0.1, 0.0, 0.27, 0.6])
    z = simulate_z_spectrum(OFF, 6.9, 20.0, b0_shift_ppm=shifts)
    zc, est = correct_b0(z, OFF)
    np.testing.assert_allclose(est, shifts, atol=0.01)
    truth = simulate_z_spectrum(OFF, 6.9, 20.0)
    inner = np.abs(OFF) <= 7.0                                       # edges are held, not extrapolated
    np.testing.assert_allclose(zc[:, inner], np.broadcast_to(truth[inner], zc[:, inner].shape), atol=0.01)


def test_st_effect_is_asymmetry():
    z = simulate_z_spectrum(OFF, 7.0, 0.0)
    np.testing.assert_allclose(st_effect(z, OFF, 4.2), 0.0, atol=1e-12)   # water alone is symmetric
    z = simulate_z_spectrum(OFF, [6.5, 7.0], 20.0)
    i_neg, i_pos = np.argmin(np.abs(OFF + 4.2)), np.argmin(np.abs(OFF - 4.2))
    np.testing.assert_allclose(st_effect(z, OFF, 4.2), z[:, i_neg] - z[:, i_pos], atol=1e-12)
    # between samples: linear interpolation
    assert st_effect(z, OFF, 4.25)[0] == pytest.approx(
        0.5 * (z[0, i_neg] + z[0, i_neg - 1]) - 0.5 * (z[0, i_pos] + z[0, i_pos + 1]), abs=1e-12)


def test_ratio_is_concentration_independent_and_better_than_simple_ratio():
    ph = np.linspace(6.0, 7.4, 8)
    z5, z40 = simulate_z_spectrum(OFF, ph, 5.0), simulate_z_spectrum(OFF, ph, 40.0)
    r5, r40 = cest_ratio(z5, OFF), cest_ratio(z40, OFF)
    ratiometric = np.max(np.abs(r40 / r5 - 1))
    simple = np.max(np.abs((st_effect(z40, OFF, 4.2) / st_effect(z40, OFF, 5.5))
                           / (st_effect(z5, OFF, 4.2) / st_effect(z5, OFF, 5.5)) - 1))
    assert ratiometric < 0.02
    assert simple > 3 * ratiometric
    # and it encodes pH: strictly increasing over the calibrated range
    assert np.all(np.diff(r5) > 0)


def test_ratio_undefined_without_effect():
    z = simulate_z_spectrum(OFF, [7.0, 7.0], [0.0, 20.0])
    r = cest_ratio(z, OFF)
    assert np.isnan(r[0]) and np.isfinite(r[1])


# ----------------------------------------------------------------------------- calibration and pH maps

def test_calibration_recovers_log_linear_law():
    ph = np.linspace(6.0, 7.4, 8)
    cal = calibrate_ph(ph, 10 ** (-3.5 + 0.5 * ph), degree=1)
    # polynomial in (pH - 7): slope 0.5, value at pH 7 = 0
    np.testing.assert_allclose(cal.coefficients, [0.5, 0.0], atol=1e-10)
    assert cal.ratio_range == pytest.approx((10 ** -0.5, 10 ** 0.2))
    ph_back, ok = ph_map(10 ** (-3.5 + 0.5 * np.array([6.3, 7.1])), cal)
    np.testing.assert_allclose(ph_back, [6.3, 7.1], atol=1e-3)
    assert ok.all()


def test_default_calibration_is_simulated_and_monotonic():
    cal = default_calibration()
    assert isinstance(cal, CestCalibration) and cal.ph_range == (6.0, 7.4)
    assert "simulated" in cal.source
    fine = np.linspace(6.0, 7.4, 57)
    truth = cest_ratio(simulate_z_spectrum(OFF, fine, 20.0), OFF)
    ph_back, ok = ph_map(truth, cal)
    inner = (fine > 6.0) & (fine < 7.4)
    assert ok[inner].all()
    assert np.max(np.abs(ph_back[inner] - fine[inner])) < 0.01


def test_round_trip_with_noise_and_b0_shift():
    rng = np.random.default_rng(7)
    n = 400
    ph = rng.uniform(6.1, 7.3, n)
    conc = rng.uniform(20.0, 40.0, n)
    shift = rng.uniform(-0.4, 0.4, n)
    z = simulate_z_spectrum(OFF, ph, conc, b0_shift_ppm=shift, noise_sd=0.001, rng=rng)
    est, ok = ph_map_from_z(z, OFF)
    assert ok.mean() > 0.97
    err = np.abs(est[ok] - ph[ok])
    assert np.percentile(err, 95) < 0.1
    assert np.mean(err) < 0.04
    # region means (what a physician reads) are well within 0.1 pH
    for lo in (6.1, 6.5, 6.9):
        sel = ok & (ph >= lo) & (ph < lo + 0.4)
        assert abs(np.mean(est[sel] - ph[sel])) < 0.03


def test_out_of_range_and_absent_agent_are_flagged():
    z = simulate_z_spectrum(OFF, [5.7, 5.9, 7.5, 7.8, 7.0], 20.0)
    ph, ok = ph_map_from_z(z, OFF)
    assert ok.tolist() == [False, False, False, False, True]
    assert np.isnan(ph[:4]).all() and np.isfinite(ph[4])
    z0 = simulate_z_spectrum(OFF, np.full(200, 7.0), 0.0, noise_sd=0.001, rng=11)
    ph0, ok0 = ph_map_from_z(z0, OFF)
    assert not ok0.any() and np.isnan(ph0).all()


def test_ph_map_flags_small_effect_and_nan_ratio():
    cal = calibrate_ph([6.0, 6.4, 6.8, 7.2], [0.2, 0.5, 1.2, 3.0], degree=1)
    ph, ok = ph_map([1.0, 1.0, np.nan], cal, st_a=[0.05, 0.002, 0.05], st_b=[0.05, 0.05, 0.05])
    assert ok.tolist() == [True, False, False]
    assert np.isfinite(ph[0]) and np.isnan(ph[1:]).all()


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, text", [
    (dict(ph=np.nan), "pH contains NaN"),
    (dict(ph=10.0), "got 10"),
    (dict(agent_mM=-1.0), "agent concentration"),
    (dict(b1_uT=0.0), "B1"),
    (dict(t2_s=3.0), "T2 must not exceed T1"),
])
def test_simulate_rejects_bad_input(kwargs, text):
    args = dict(ph=7.0, agent_mM=10.0) | kwargs
    with pytest.raises(InputError, match=text):
        simulate_z_spectrum(OFF, args.pop("ph"), args.pop("agent_mM"), **args)


def test_analysis_rejects_bad_input():
    z = simulate_z_spectrum(OFF, 7.0, 10.0)
    with pytest.raises(InputError, match="not strictly increasing"):
        correct_b0(z, OFF[::-1])
    with pytest.raises(InputError, match="161 offsets"):
        st_effect(z[:-1], OFF, 4.2)
    with pytest.raises(InputError, match="NaN"):
        cest_ratio(np.where(OFF == 0, np.nan, z), OFF)
    with pytest.raises(InputError, match="do not cover"):
        st_effect(z, OFF, 9.0)
    with pytest.raises(InputError, match="CestCalibration"):
        ph_map([1.0], {"ph_range": (6, 7)})
    with pytest.raises(InputError, match="infinite"):
        ph_map([np.inf], default_calibration())


def test_calibration_rejects_bad_input():
    with pytest.raises(InputError, match="not monotonic"):
        calibrate_ph([6.0, 6.3, 6.6, 6.9, 7.2], [1.0, 2.0, 3.0, 2.0, 1.0], degree=2)
    with pytest.raises(InputError, match="too few"):
        calibrate_ph([6.0, 7.0], [1.0, 2.0], degree=1)
    with pytest.raises(InputError, match="> 0"):
        calibrate_ph([6.0, 6.5, 7.0], [1.0, -2.0, 3.0], degree=1)
    with pytest.raises(InputError, match="3 calibration pH values but 2"):
        calibrate_ph([6.0, 6.5, 7.0], [1.0, 2.0], degree=1)
    with pytest.raises(InputError, match="degree"):
        calibrate_ph([6.0, 6.5, 7.0, 7.2], [1.0, 2.0, 3.0, 4.0], degree=7)
