"""Forward compartment models against closed forms and a numerical ODE solution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from core.errors import InputError, TimingError
from core.kinetics import (convolve_exponentials, frame_average, irreversible_two_tissue_tac, macro_parameters,
                           model_tac, one_tissue_irf, one_tissue_tac, two_tissue_irf, two_tissue_tac)

# A realistic bolus input on a non-uniform grid (fine early, coarse late), minutes.
T = np.concatenate([np.arange(0.0, 3.0, 0.02), np.arange(3.0, 60.0001, 0.25)])
CP = np.where(T > 0.3, 40.0 * (T - 0.3) * np.exp(-2.0 * (T - 0.3)) + 2.0 * np.exp(-0.01 * (T - 0.3)), 0.0)


def _ode_reference(K1, k2, k3, k4, t=T, cp=CP):
    """Two-tissue ODEs integrated by solve_ivp with the same piecewise-linear input."""

    def rhs(tt, y):
        c = np.interp(tt, t, cp)
        return [K1 * c - (k2 + k3) * y[0] + k4 * y[1], k3 * y[0] - k4 * y[1]]

    sol = solve_ivp(rhs, (t[0], t[-1]), [0.0, 0.0], t_eval=t, rtol=1e-10, atol=1e-12, max_step=0.02,
                    method="LSODA")
    return sol.y.sum(axis=0)


@pytest.mark.parametrize("params", [
    (0.10, 0.15, 0.0, 0.0),        # one-tissue as a 2TCM with k3 = 0
    (0.10, 0.15, 0.05, 0.0),       # irreversible
    (0.08, 0.20, 0.06, 0.015),     # reversible
    (0.03, 0.04, 0.05, 0.004),     # FDOPA striatum (Huang 1991)
])
def test_two_tissue_matches_ode(params):
    ref = _ode_reference(*params)
    got = two_tissue_tac(T, CP, *params)
    assert np.max(np.abs(got - ref)) <= 1e-6 * np.max(ref)


def test_one_tissue_matches_ode():
    ref = _ode_reference(0.12, 0.3, 0.0, 0.0)
    got = one_tissue_tac(T, CP, 0.12, 0.3)
    assert np.max(np.abs(got - ref)) <= 1e-6 * np.max(ref)


def test_constant_input_closed_forms():
    t = np.linspace(0.0, 30.0, 31)
    c0 = 7.0
    cp = np.full_like(t, c0)
    K1, k2, k3 = 0.1, 0.2, 0.05
    one = one_tissue_tac(t, cp, K1, k2)
    np.testing.assert_allclose(one, K1 * c0 * (1 - np.exp(-k2 * t)) / k2, rtol=1e-12, atol=1e-14)
    irr = irreversible_two_tissue_tac(t, cp, K1, k2, k3)
    s = k2 + k3
    expected = K1 * c0 * (k3 * t / s + k2 / s**2 * (1 - np.exp(-s * t)))
    np.testing.assert_allclose(irr, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("theta", [0.0, 1e-9, 1e-4, 0.03, 0.7, 25.0])
def test_ramp_input_is_exact_for_all_rates(theta):
    """C(t) = t is piecewise linear, so the convolution is exact (series branch included)."""
    t = np.array([0.0, 0.5, 1.7, 4.0, 10.0, 33.0])
    got = convolve_exponentials(t, t, theta)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50  # the closed form cancels badly for small theta: evaluate it exactly
    th = mpmath.mpf(theta)
    expected = [float(x * x / 2 if theta == 0 else x / th - (1 - mpmath.exp(-th * x)) / th**2)
                for x in map(mpmath.mpf, t.tolist())]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_exponential_input_against_analytic_convolution():
    t = np.linspace(0.0, 20.0, 20001)
    lam, theta = 0.5, 0.2
    got = convolve_exponentials(t, np.exp(-lam * t), theta)
    expected = (np.exp(-theta * t) - np.exp(-lam * t)) / (lam - theta)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_frame_averages_are_exact_integrals():
    fs = np.array([0.0, 0.1, 0.37, 1.0, 5.0, 10.0, 30.0])
    fe = np.array([0.1, 0.37, 1.0, 5.0, 10.0, 30.0, 60.0])
    params = (0.08, 0.20, 0.06, 0.015)
    frames = two_tissue_tac(T, CP, *params, vB=0.05, frame_start_min=fs, frame_end_min=fe)
    # reference: the ODE on a very fine grid, integrated by the trapezoid rule
    fine_t = np.unique(np.concatenate([np.linspace(0, 60, 120001), fs, fe]))
    fine_cp = np.interp(fine_t, T, CP)
    curve = 0.95 * _ode_reference(*params, t=fine_t, cp=fine_cp) + 0.05 * fine_cp
    ref = [np.trapezoid(curve[(fine_t >= a) & (fine_t <= b)], fine_t[(fine_t >= a) & (fine_t <= b)]) / (b - a)
           for a, b in zip(fs, fe)]
    np.testing.assert_allclose(frames, ref, rtol=2e-5)


def test_frame_average_of_a_line():
    np.testing.assert_allclose(frame_average([0.0, 10.0], [0.0, 20.0], [1.0, 2.5], [3.0, 7.5]), [4.0, 10.0])


def test_vectorised_over_parameter_sets_equals_loop():
    K1 = np.array([[0.05, 0.1, 0.2], [0.02, 0.03, 0.04]])
    k2 = np.array([0.1, 0.2, 0.3])
    k3 = 0.04
    k4 = np.array([[0.0], [0.01]])
    vB = np.array([[0.0, 0.03, 0.1], [0.05, 0.05, 0.05]])
    fs, fe = np.array([0.0, 1.0, 10.0]), np.array([1.0, 10.0, 60.0])
    batch = two_tissue_tac(T, CP, K1, k2, k3, k4, vB=vB, frame_start_min=fs, frame_end_min=fe)
    assert batch.shape == (2, 3, 3)
    for i in range(2):
        for j in range(3):
            one = two_tissue_tac(T, CP, K1[i, j], k2[j], k3, k4[i, 0], vB=vB[i, j], frame_start_min=fs,
                                 frame_end_min=fe)
            np.testing.assert_allclose(batch[i, j], one, rtol=1e-12)


def test_batched_inputs_broadcast_against_parameters():
    cps = np.stack([CP, 2 * CP])
    out = one_tissue_tac(T, cps, np.array([0.1, 0.1]), 0.2)
    np.testing.assert_allclose(out[1], 2 * out[0], rtol=1e-12)


def test_blood_volume_term_and_separate_blood_curve():
    blood = 0.9 * CP
    only_blood = two_tissue_tac(T, CP, 0.0, 0.1, 0.0, vB=0.2, blood=blood)
    np.testing.assert_allclose(only_blood, 0.2 * blood, rtol=1e-12)


def test_irf_forms():
    amp, rate = two_tissue_irf(0.1, 0.15, 0.05, 0.0)
    np.testing.assert_allclose(rate, [0.0, 0.2])
    np.testing.assert_allclose(amp, [0.1 * 0.05 / 0.2, 0.1 * 0.15 / 0.2])
    amp, rate = two_tissue_irf(0.1, 0.15, 0.05, 0.01)
    assert amp.sum() == pytest.approx(0.1)                      # h(0) = K1
    assert rate.sum() == pytest.approx(0.15 + 0.05 + 0.01)      # alpha1 + alpha2 = k2 + k3 + k4
    assert rate.prod() == pytest.approx(0.15 * 0.01)            # alpha1 * alpha2 = k2 k4
    amp1, rate1 = one_tissue_irf(0.1, 0.3)
    assert amp1.shape == rate1.shape == (1,)


def test_degenerate_two_tissue_equals_one_tissue():
    """k3 = 0 and k2 = k4: the two rates coincide; the model is a one-tissue model."""
    a = two_tissue_tac(T, CP, 0.1, 0.2, 0.0, 0.2)
    b = one_tissue_tac(T, CP, 0.1, 0.2)
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_generic_model_tac_matches_two_tissue():
    amp, rate = two_tissue_irf(0.08, 0.2, 0.06, 0.015)
    np.testing.assert_allclose(model_tac(T, CP, amp, rate, vB=0.04),
                               two_tissue_tac(T, CP, 0.08, 0.2, 0.06, 0.015, vB=0.04), rtol=1e-12)


def test_macro_parameters():
    m = macro_parameters(0.1, 0.15, 0.05, 0.0)
    assert float(m["Ki"]) == pytest.approx(0.025)
    assert float(m["VND"]) == pytest.approx(0.1 / 0.15)
    assert np.isinf(m["VT"])
    m = macro_parameters(0.1, 0.2, 0.05, 0.01)
    assert float(m["VT"]) == pytest.approx(0.5 * 6.0)


def test_input_validation():
    with pytest.raises(TimingError):
        two_tissue_tac([0.0, 2.0, 1.0], [0, 1, 2], 0.1, 0.1, 0.0)
    with pytest.raises(TimingError):
        two_tissue_tac([-1.0, 2.0], [0, 1], 0.1, 0.1, 0.0)
    with pytest.raises(InputError):
        two_tissue_tac(T, CP, 0.1, -0.1, 0.0)
    with pytest.raises(InputError):
        two_tissue_tac(T, CP, 0.1, 0.1, 0.0, vB=1.5)
    with pytest.raises(InputError):
        two_tissue_tac(T, CP[:-1], 0.1, 0.1, 0.0)
    with pytest.raises(TimingError, match="stops at"):
        two_tissue_tac(T, CP, 0.1, 0.1, 0.0, frame_start_min=[50.0], frame_end_min=[70.0])
    with pytest.raises(TimingError):
        two_tissue_tac(T, CP, 0.1, 0.1, 0.0, frame_start_min=[5.0], frame_end_min=[5.0])
