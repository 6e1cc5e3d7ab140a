"""DCE-MRI: population AIFs, exact Tofts convolution, vectorised Tofts/Patlak fits, bolus delay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from core.drug_release.aif import PARKER_2006, estimate_bolus_arrival, mouse_aif, parker_aif, shift_aif
from core.drug_release.dce import (_predict, curve_fit_tofts_loop, fit_patlak, fit_tofts, tofts_model)
from core.errors import InputError, TimingError

T5 = np.arange(0, 5.0 + 1e-9, 5.0 / 60.0)  # 5 s sampling for 5 min
CP = parker_aif(T5, delay_min=0.25, hct=0.42)


def _truth(n, seed, extended=True):
    rng = np.random.default_rng(seed)
    kt = rng.uniform(0.1, 0.6, n)
    ve = rng.uniform(0.15, 0.6, n)
    vp = rng.uniform(0.01, 0.1, n) if extended else np.zeros(n)
    return kt, ve, vp, rng


# ------------------------------------------------------------------ AIFs


def test_parker_published_values_and_hct():
    p = PARKER_2006
    assert (p["A1"], p["A2"], p["T1"], p["T2"]) == (0.809, 0.330, 0.17046, 0.365)
    # late tail is the sigmoid-modulated exponential alpha * exp(-beta t)
    assert parker_aif([5.0])[0] == pytest.approx(1.050 * math.exp(-0.1685 * 5.0), rel=1e-6)
    # first-pass peak: first Gaussian height plus the second's value there (hand computed)
    peak = 0.809 / (0.0563 * math.sqrt(2 * math.pi)) + 0.330 / (0.132 * math.sqrt(2 * math.pi)) * math.exp(
        -((0.17046 - 0.365) ** 2) / (2 * 0.132**2))
    assert parker_aif([0.17046])[0] == pytest.approx(peak, rel=1e-4)
    assert parker_aif([1.0], hct=0.4)[0] == pytest.approx(parker_aif([1.0])[0] / 0.6)
    t = np.linspace(0, 3, 31)
    d = parker_aif(t, delay_min=0.5)
    assert np.all(d[t < 0.5] == 0)
    np.testing.assert_allclose(d[t >= 0.5], parker_aif(t[t >= 0.5] - 0.5), rtol=1e-12)
    assert parker_aif(t).dtype == np.float64


def test_mouse_aif_shape():
    w = 0.1
    t = np.array([0.0, 0.05, 0.1, 1.0, 10.0])
    c = mouse_aif(t, injection_min=w)
    assert c[0] == 0.0 and np.all(np.diff(c[:3]) > 0)
    # after the injection: sum a_i exp(-m_i t) (exp(m_i w) - 1) / (m_i w)
    expected = sum(a * math.exp(-m * 10.0) * math.expm1(m * w) / (m * w) for a, m in ((1.5, 2.0), (0.7, 0.05)))
    assert c[-1] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bad", [[0.0, np.nan, 1.0], [[0.0, 1.0]], [0.0, 2.0, 1.0]])
def test_aif_time_validation(bad):
    with pytest.raises(TimingError):
        parker_aif(bad)
    with pytest.raises(TimingError):
        mouse_aif(bad)


def test_shift_and_bolus_arrival():
    np.testing.assert_allclose(shift_aif(CP, T5, 3 * (T5[1] - T5[0]))[3:], CP[:-3], rtol=1e-12)
    b1 = estimate_bolus_arrival(parker_aif(T5, delay_min=0.25), T5)
    b2 = estimate_bolus_arrival(parker_aif(T5, delay_min=0.75), T5)
    assert b2 - b1 == pytest.approx(0.5, abs=0.25 * (T5[1] - T5[0]))
    # an ideal linear-quadratic curve: exact knot, vectorised over curves
    c = np.stack([np.where(T5 > k, (T5 - k) ** 2, 0.0) for k in (0.5, 1.0)])
    np.testing.assert_allclose(estimate_bolus_arrival(c, T5), [0.5, 1.0], atol=1e-9)


# ------------------------------------------------------------------ forward model


def test_tofts_model_analytic_on_nonuniform_grid():
    t = np.concatenate([[0.0], np.sort(np.random.default_rng(1).uniform(0.01, 6.0, 40))])
    kt = np.array([1e-5, 0.2, 3.0])  # tiny, moderate and fast rates (series and closed form)
    ve = np.array([0.5, 0.4, 0.3])
    kep = (kt / ve)[:, None]
    step = tofts_model(t, np.ones_like(t), kt, ve)  # I = (1 - e^{-k t}) / k
    np.testing.assert_allclose(step, ve[:, None] * -np.expm1(-kep * t), rtol=1e-11, atol=1e-15)
    ramp = tofts_model(t, 2.0 * t, kt, ve, vp=0.05)  # I = 2 (t/k - (1 - e^{-kt})/k^2)
    np.testing.assert_allclose(ramp, kt[:, None] * 2 * (t / kep + np.expm1(-kep * t) / kep**2) + 0.1 * t,
                               rtol=1e-7, atol=1e-12)


def test_tofts_model_matches_quadrature_of_interpolated_aif():
    t = np.array([0.0, 0.1, 0.15, 0.2, 0.4, 0.45, 1.0, 2.0, 2.5, 4.0])
    cp = parker_aif(t, delay_min=0.05, hct=0.42)
    kt, ve = 0.35, 0.25
    ref = [quad(lambda s, tn=tn: np.interp(s, t, cp) * math.exp(-kt / ve * (tn - s)), 0, tn,
                points=t[t < tn], limit=200, epsabs=1e-13)[0] for tn in t]
    np.testing.assert_allclose(tofts_model(t, cp, kt, ve), kt * np.array(ref), rtol=1e-8, atol=1e-12)
    assert tofts_model(t, cp, np.ones((2, 3)) * 0.1, 0.3, vp=np.array([0.0, 0.1, 0.2])).shape == (2, 3, t.size)


def test_jacobian_matches_finite_differences():
    p = np.array([[0.3, 0.4, 0.05], [1.2, 0.2, 0.1]])
    _, J = _predict(p, T5, CP, True)
    for k in range(3):
        h = np.zeros_like(p)
        h[:, k] = 1e-6
        fd = (_predict(p + h, T5, CP, True)[0] - _predict(p - h, T5, CP, True)[0]) / 2e-6
        np.testing.assert_allclose(J[:, k], fd, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ fits


@pytest.mark.parametrize("extended", [False, True])
def test_noise_free_recovery(extended):
    kt, ve, vp, _ = _truth(40, 2, extended)
    ct = tofts_model(T5, CP, kt, ve, vp).reshape(5, 8, -1)
    fit = fit_tofts(ct, T5, CP, extended=extended)
    assert fit["Ktrans"].shape == (5, 8) and fit["ok"].all()
    np.testing.assert_allclose(fit["Ktrans"].ravel(), kt, rtol=1e-3)
    np.testing.assert_allclose(fit["ve"].ravel(), ve, rtol=1e-3)
    if extended:
        np.testing.assert_allclose(fit["vp"].ravel(), vp, rtol=1e-3)
    else:
        assert "vp" not in fit


@pytest.mark.parametrize("extended", [False, True])
def test_noisy_recovery(extended):
    # noise 0.02 mM: tissue curves peak at 0.3-1.5 mM, i.e. peak SNR about 15-75
    kt, ve, vp, rng = _truth(400, 3, extended)
    ct = tofts_model(T5, CP, kt, ve, vp) + rng.normal(0.0, 0.02, (400, T5.size))
    fit = fit_tofts(ct, T5, CP, extended=extended)
    assert fit["ok"].mean() > 0.97
    ok = fit["ok"]
    err_k = fit["Ktrans"][ok] / kt[ok] - 1
    err_v = fit["ve"][ok] / ve[ok] - 1
    assert np.median(np.abs(err_k)) < 0.03 and abs(np.mean(err_k)) < 0.01
    assert np.median(np.abs(err_v)) < 0.03 and abs(np.mean(err_v)) < 0.01
    if extended:
        assert np.median(np.abs(fit["vp"][ok] - vp[ok])) < 0.005


def test_noise_free_recovery_on_nonuniform_grid():
    t = np.concatenate([np.arange(0, 1.0, 2 / 60), np.arange(1.0, 10.01, 0.5)])  # fast, then slow frames
    cp = mouse_aif(t, delay_min=0.2)
    kt, ve, vp, _ = _truth(20, 8, True)
    fit = fit_tofts(tofts_model(t, cp, kt, ve, vp), t, cp, extended=True)
    assert fit["ok"].all()
    np.testing.assert_allclose(np.stack([fit["Ktrans"], fit["ve"], fit["vp"]]), np.stack([kt, ve, vp]), rtol=1e-3)


@pytest.mark.parametrize("extended", [False, True])
def test_agrees_with_scipy_curve_fit(extended):
    kt, ve, vp, rng = _truth(6, 4, extended)
    ct = tofts_model(T5, CP, kt, ve, vp) + rng.normal(0.0, 0.02, (6, T5.size))
    ours = fit_tofts(ct, T5, CP, extended=extended)
    ref = curve_fit_tofts_loop(ct, T5, CP, extended=extended)
    assert ours["ok"].all() and ref["ok"].all()
    np.testing.assert_allclose(ours["Ktrans"], ref["Ktrans"], rtol=1e-4)
    np.testing.assert_allclose(ours["ve"], ref["ve"], rtol=1e-4)
    assert np.all(ours["rss"] <= ref["rss"] * (1 + 1e-8))


def test_patlak_recovery_and_flags():
    rng = np.random.default_rng(5)
    kt, vp = rng.uniform(0.01, 0.2, 30), rng.uniform(0.0, 0.2, 30)
    icp = np.concatenate([[0.0], np.cumsum(0.5 * (CP[1:] + CP[:-1]) * np.diff(T5))])
    ct = kt[:, None] * icp + vp[:, None] * CP
    ct[3] = -0.3 * icp  # uptake "negative": non-physical, flagged
    ct[4, 7] = np.nan
    fit = fit_patlak(ct, T5, CP)
    good = np.ones(30, bool)
    good[[3, 4]] = False
    np.testing.assert_allclose(fit["Ktrans"][good], kt[good], rtol=1e-9)
    np.testing.assert_allclose(fit["vp"][good], vp[good], rtol=1e-9, atol=1e-12)
    assert fit["ok"][good].all() and not fit["ok"][3] and not fit["ok"][4] and np.isnan(fit["Ktrans"][4])


def test_global_delay_recovery():
    kt, ve, vp, rng = _truth(150, 6, True)
    delay = 0.25  # three frames: the shifted sampled AIF equals the delayed one
    cp_late = parker_aif(T5, delay_min=0.25 + delay, hct=0.42)
    ct = tofts_model(T5, cp_late, kt, ve, vp) + rng.normal(0.0, 0.02, (150, T5.size))
    fit = fit_tofts(ct, T5, CP, extended=True, fit_delay=True)
    assert float(fit["delay_min"][0]) == pytest.approx(delay, abs=0.01)
    assert np.median(np.abs(fit["Ktrans"] / kt - 1)) < 0.03
    no_delay = fit_tofts(ct, T5, CP, extended=True)
    assert np.median(np.abs(no_delay["Ktrans"] / kt - 1)) > 0.1  # the delay matters


# ------------------------------------------------------------------ bad input


def test_per_voxel_flags():
    kt, ve, _, rng = _truth(6, 7, False)
    ct = tofts_model(T5, CP, kt, ve) + rng.normal(0, 0.01, (6, T5.size))
    ct[1, 10] = np.nan
    ct[2, 20] = np.inf
    ct[3, 30:33] = -1.0  # negative far beyond noise
    ct[4] = rng.normal(0, 0.01, T5.size) * 0  # no enhancement: ve undefined
    fit = fit_tofts(ct, T5, CP)
    assert fit["ok"].tolist() == [True, False, False, False, False, True]
    assert np.isnan(fit["Ktrans"][1]) and np.isnan(fit["ve"][4])


def test_input_errors():
    ct = tofts_model(T5, CP, [0.2, 0.3], [0.3, 0.4])
    with pytest.raises(InputError, match="61 samples.*has 60"):
        fit_tofts(ct[:, :60], T5[:60], CP)  # cp 61, t 60
    with pytest.raises(InputError, match="60 time points.*t has 61"):
        fit_tofts(ct[:, :60], T5, CP)
    bad_cp = CP.copy()
    bad_cp[5] = np.nan
    with pytest.raises(InputError, match="cp\\[5\\]"):
        fit_tofts(ct, T5, bad_cp)
    bad_t = T5.copy()
    bad_t[3] = np.nan
    with pytest.raises(TimingError):
        fit_tofts(ct, bad_t, CP)
    with pytest.raises(TimingError, match="increase"):
        fit_tofts(ct, T5[::-1], CP)
    with pytest.raises(InputError, match="3 time points cannot determine 3"):
        fit_tofts(ct[:, :3], T5[:3], CP[:3], extended=True)
    with pytest.raises(InputError, match="negative"):
        fit_tofts(ct, T5, -CP)
    with pytest.raises(InputError, match="negative beyond"):
        fit_tofts(-np.tile(ct, (3, 1)), T5, CP)
    with pytest.raises(InputError):
        tofts_model(T5, CP, 0.2, 1.5)
    with pytest.raises(InputError):
        fit_patlak(ct, T5, CP[:-1])
