"""core.kinetics.fit against an independent ODE integration (scipy solve_ivp).

The reference curves never touch the analytic convolution: the compartment equations
are integrated numerically with the piecewise-linear input (the same samples that are
handed to ``fit``), with extra states holding the running integrals from which exact
frame averages follow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from core.errors import InputError, TimingError
from core.kinetics import fit
from core.kinetics._basis import ExponentialTable
from core.kinetics.compartment import convolve_exponentials
from core.phantoms.frames import frame_schedule

FS_S, FD_S = frame_schedule(((12, 10), (6, 30), (5, 60), (5, 240)))  # demo site A: 28 frames, 30 min
FS, FE = FS_S / 60.0, (FS_S + FD_S) / 60.0


def _input(t_end: float):
    """Feng-model bolus (Feng et al. 1993 form), sampled densely as a measured input would be."""
    t = np.unique(np.concatenate([np.arange(0, 3, 0.02), np.arange(3, 15, 0.1), np.arange(15, t_end + 1e-9, 0.5)]))
    s = np.maximum(t - 0.3, 0.0)
    a1, a2, a3, l1, l2, l3 = 60.0, 1.4, 8.0, 1.5, 0.008, 0.3
    c = (a1 * s - a2 - a3) * np.exp(-l1 * s) + a2 * np.exp(-l2 * s) + a3 * np.exp(-l3 * s)
    return t, np.where(t >= 0.3, np.maximum(c, 0.0), 0.0) * 100.0


def _ode_frames(t_in, c_in, rhs, n_states, fs, fe, vB=0.0, blood=None):
    """Frame averages of (1 - vB) * sum(states) + vB * blood by numerical integration."""
    b_in = c_in if blood is None else blood

    def f(t, x):
        cp = np.interp(t, t_in, c_in)
        cb = np.interp(t, t_in, b_in)
        d = rhs(cp, x[:n_states])
        return np.concatenate([d, [np.sum(x[:n_states]), cb]])

    edges = np.union1d(fs, fe)
    sol = solve_ivp(f, (0.0, edges[-1]), np.zeros(n_states + 2), method="DOP853", t_eval=edges,
                    rtol=1e-11, atol=1e-12, max_step=0.02)
    assert sol.success
    cum_t = np.interp(fe, sol.t, sol.y[n_states]) - np.interp(fs, sol.t, sol.y[n_states])
    cum_b = np.interp(fe, sol.t, sol.y[n_states + 1]) - np.interp(fs, sol.t, sol.y[n_states + 1])
    return ((1.0 - vB) * cum_t + vB * cum_b) / (fe - fs)


def _two_tissue(K1, k2, k3, k4):
    return lambda cp, x: np.array([K1 * cp - (k2 + k3) * x[0] + k4 * x[1], k3 * x[0] - k4 * x[1]])


def _one_tissue(K1, k2):
    return lambda cp, x: np.array([K1 * cp - k2 * x[0]])


@pytest.fixture(scope="module")
def plasma():
    return _input(30.0)


def _close(out, truth, rtol=0.01):
    assert bool(np.all(out["ok"])), out
    for key, value in truth.items():
        assert out[key] == pytest.approx(value, rel=rtol), (key, float(out[key]), value)


# ------------------------------------------------------------------ compartment models


def test_1tcm_recovers_parameters(plasma):
    t, c = plasma
    truth = {"K1": 0.12, "k2": 0.2, "vB": 0.05}
    tac = _ode_frames(t, c, _one_tissue(0.12, 0.2), 1, FS, FE, vB=0.05)
    out = fit("1tcm", tac, FS, FE, input_time=t, input_conc=c, device="cpu")
    _close(out, {**truth, "VT": 0.6})


@pytest.mark.parametrize("K1,k2,k3,vB", [(0.12, 0.17, 0.02, 0.07), (0.03, 0.05, 0.03, 0.04), (0.3, 0.6, 0.1, 0.1)])
def test_irreversible_2tcm_recovers_parameters(plasma, K1, k2, k3, vB):
    t, c = plasma
    tac = _ode_frames(t, c, _two_tissue(K1, k2, k3, 0.0), 2, FS, FE, vB=vB)
    out = fit("2tcm_irr", tac, FS, FE, input_time=t, input_conc=c, device="cpu")
    _close(out, {"K1": K1, "k2": k2, "k3": k3, "vB": vB, "Ki": K1 * k3 / (k2 + k3)})


@pytest.mark.parametrize("K1,k2,k3,k4,vB", [(0.12, 0.17, 0.02, 0.025, 0.07), (0.032, 0.04, 0.05, 0.004, 0.05),
                                            (0.25, 0.3, 0.08, 0.05, 0.03)])
def test_reversible_2tcm_recovers_parameters(K1, k2, k3, k4, vB):
    t, c = _input(60.0)
    fs_s, fd_s = frame_schedule(((12, 10), (6, 30), (5, 60), (10, 300)))  # 60 min: k4 needs time to show
    fs, fe = fs_s / 60.0, (fs_s + fd_s) / 60.0
    tac = _ode_frames(t, c, _two_tissue(K1, k2, k3, k4), 2, fs, fe, vB=vB)
    out = fit("2tcm", tac, fs, fe, input_time=t, input_conc=c, device="cpu")
    _close(out, {"K1": K1, "k2": k2, "k3": k3, "k4": k4, "vB": vB, "VT": K1 / k2 * (1 + k3 / k4)})


def test_whole_blood_curve_is_used_for_vB(plasma):
    t, c = plasma
    blood = 1.3 * c
    tac = _ode_frames(t, c, _one_tissue(0.1, 0.15), 1, FS, FE, vB=0.08, blood=blood)
    out = fit("1tcm", tac, FS, FE, input_time=t, input_conc=c, blood=blood, device="cpu")
    _close(out, {"K1": 0.1, "k2": 0.15, "vB": 0.08})
    wrong = fit("1tcm", tac, FS, FE, input_time=t, input_conc=c, device="cpu")  # plasma taken as blood
    assert abs(float(wrong["vB"]) / 0.08 - 1.0) > 0.05


def test_srtm_recovers_binding(plasma):
    t, c = plasma
    ref = _ode_frames(t, c, _one_tissue(0.05, 0.1), 1, FS, FE)          # VT' = 0.5
    target = _ode_frames(t, c, _one_tissue(0.08, 0.08), 1, FS, FE)      # VT = 1.0
    out = fit("srtm", target, FS, FE, reference=ref, device="cpu")
    # SRTM's k2 is the free-compartment efflux: the one-tissue target's 0.08/min is k2a = k2 / (1 + BPND),
    # and k2 / R1 is the reference region's efflux (0.1/min)
    _close(out, {"R1": 0.08 / 0.05, "BPND": 1.0 / 0.5 - 1.0, "k2a": 0.08, "k2": 0.16})
    assert float(out["k2"] / out["R1"]) == pytest.approx(0.1, rel=0.01)


# ------------------------------------------------------------------ graphical methods


def _late_constant_input(t_end):
    t = np.unique(np.concatenate([np.arange(0, 3, 0.02), np.arange(3, t_end + 1e-9, 0.25)]))
    s = np.maximum(t - 0.3, 0.0)
    c = np.where(t >= 0.3, (60.0 * s - 9.0) * np.exp(-1.5 * s) + 8.0 * np.exp(-0.3 * s) + 1.0, 0.0)
    return t, np.maximum(c, 0.0)


def _long_frames(t_end):
    edges = np.concatenate([np.arange(0, 2, 1 / 6), np.arange(2, 10, 1.0), np.arange(10, t_end + 1e-9, 5.0)])
    return edges[:-1], edges[1:]


def test_patlak_recovers_net_influx():
    t, c = _late_constant_input(90.0)
    fs, fe = _long_frames(90.0)
    K1, k2, k3 = 0.1, 0.2, 0.1
    tac = _ode_frames(t, c, _two_tissue(K1, k2, k3, 0.0), 2, fs, fe, vB=0.05)
    out = fit("patlak", tac, fs, fe, input_time=t, input_conc=c, t_star=30.0)
    _close(out, {"Ki": (1 - 0.05) * K1 * k3 / (k2 + k3)})   # the slope carries the tissue fraction 1 - vB


def test_logan_recovers_distribution_volume(plasma):
    t, c = _input(60.0)
    fs, fe = _long_frames(60.0)
    tac = _ode_frames(t, c, _one_tissue(0.1, 0.125), 1, fs, fe)
    out = fit("logan", tac, fs, fe, input_time=t, input_conc=c, t_star=10.0)
    _close(out, {"VT": 0.8})


def test_reference_logan_gives_dvr():
    t, c = _input(60.0)
    fs, fe = _long_frames(60.0)
    ref = _ode_frames(t, c, _one_tissue(0.05, 0.1), 1, fs, fe)
    target = _ode_frames(t, c, _one_tissue(0.09, 0.1), 1, fs, fe)
    out = fit("logan", target, fs, fe, reference=ref, k2_ref=0.1, t_star=10.0)
    _close(out, {"DVR": 0.9 / 0.5})


def test_reference_patlak_gives_relative_influx():
    t, c = _late_constant_input(90.0)
    fs, fe = _long_frames(90.0)
    ref = _ode_frames(t, c, _one_tissue(0.05, 0.1), 1, fs, fe)         # reversible, VT' = 0.5
    K1, k2, k3 = 0.1, 0.2, 0.1
    target = _ode_frames(t, c, _two_tissue(K1, k2, k3, 0.0), 2, fs, fe)
    out = fit("patlak", target, fs, fe, reference=ref, t_star=40.0)
    _close(out, {"Ki": K1 * k3 / (k2 + k3) / 0.5}, rtol=0.01)


# ------------------------------------------------------------------ batching and internals


def test_spline_table_matches_exact_convolution(plasma):
    t, c = plasma
    table = ExponentialTable.build(t, c, FS, FE, theta_max=4.0)
    rng = np.random.default_rng(0)
    theta = np.concatenate([[0.0, 4.0], rng.uniform(0, 4, 300), np.exp(rng.uniform(-9, 0, 300))])
    exact = convolve_exponentials(t, c, theta, frame_start_min=FS, frame_end_min=FE)
    value, deriv = table.evaluate(torch.as_tensor(theta))
    assert np.max(np.abs(value.numpy() - exact)) <= 1e-7 * np.abs(exact).max()
    h = 1e-6
    fd = (convolve_exponentials(t, c, theta + h, frame_start_min=FS, frame_end_min=FE)
          - convolve_exponentials(t, c, np.maximum(theta - h, 0), frame_start_min=FS, frame_end_min=FE)) \
        / (theta + h - np.maximum(theta - h, 0))[:, None]
    assert np.max(np.abs(deriv.numpy() - fd)) <= 1e-4 * np.abs(fd).max()


def test_jacobian_matches_finite_differences(plasma):
    from core.kinetics.fitting import _PREDICT, _Context

    t, c = plasma
    table = ExponentialTable.build(t, c, FS, FE, theta_max=4.0)
    ctx = _Context(table, table.input_average, table.input_average * 0.7)
    cases = {"1tcm": [0.1, 0.2, 0.05], "2tcm_irr": [0.1, 0.2, 0.05, 0.05], "2tcm": [0.1, 0.2, 0.05, 0.02, 0.05],
             "srtm": [1.4, 0.15, 0.8]}
    for model, p in cases.items():
        p = torch.tensor([p], dtype=torch.float64)
        _, J = _PREDICT[model](p, ctx)
        for i in range(p.shape[1]):
            h = 1e-6 * max(abs(float(p[0, i])), 1e-3)
            up, down = p.clone(), p.clone()
            up[0, i] += h
            down[0, i] -= h
            fd = (_PREDICT[model](up, ctx, False)[0] - _PREDICT[model](down, ctx, False)[0]) / (2 * h)
            assert torch.allclose(J[0, i], fd[0], rtol=1e-4, atol=1e-6 * float(fd.abs().max())), (model, i)


def test_batches_keep_their_shape_and_mark_failures(plasma):
    t, c = plasma
    good = _ode_frames(t, c, _two_tissue(0.1, 0.15, 0.03, 0.0), 2, FS, FE, vB=0.05)
    tacs = np.stack([good, np.full_like(good, np.nan), np.zeros_like(good), np.full_like(good, 3.0),
                     good * 2.0, good]).reshape(2, 3, -1)
    out = fit("2tcm_irr", tacs, FS, FE, input_time=t, input_conc=c, device="cpu", chunk_size=2)
    assert out["K1"].shape == (2, 3) and out["ok"].dtype == bool
    assert out["ok"].tolist() == [[True, False, False], [False, True, True]]
    assert np.isnan(out["K1"][0, 1]) and np.isnan(out["rss"][0, 2])
    # doubling the curve doubles the blood term too: vB -> 0.1 and (1 - vB) K1 doubles
    assert out["vB"][1, 1] == pytest.approx(0.1, rel=1e-3)
    assert out["K1"][1, 1] == pytest.approx(2 * 0.95 * 0.1 / 0.9, rel=1e-3)
    assert out["K1"][1, 2] == pytest.approx(out["K1"][0, 0], rel=1e-9)


def test_noisy_curves_scatter_around_truth(plasma):
    t, c = plasma
    clean = _ode_frames(t, c, _two_tissue(0.1, 0.15, 0.03, 0.0), 2, FS, FE, vB=0.05)
    rng = np.random.default_rng(1)
    sd = 0.03 * clean.max() / np.sqrt((FE - FS) / (FE - FS).mean())
    noisy = clean + rng.normal(size=(400, clean.size)) * sd
    out = fit("2tcm_irr", noisy, FS, FE, input_time=t, input_conc=c, device="cpu")
    assert out["ok"].mean() > 0.98
    assert np.median(out["Ki"][out["ok"]]) == pytest.approx(0.1 * 0.03 / 0.18, rel=0.05)


def test_float32_path_agrees(plasma):
    t, c = plasma
    tac = _ode_frames(t, c, _two_tissue(0.1, 0.15, 0.03, 0.0), 2, FS, FE, vB=0.05)
    out = fit("2tcm_irr", tac, FS, FE, input_time=t, input_conc=c, device="cpu", dtype=torch.float32)
    assert bool(out["ok"]) and out["Ki"] == pytest.approx(0.1 * 0.03 / 0.18, rel=0.01)


# ------------------------------------------------------------------ bad input


def test_bad_input_is_refused(plasma):
    t, c = plasma
    tac = np.ones(FS.size)
    with pytest.raises(InputError, match="unknown kinetic model"):
        fit("3tcm", tac, FS, FE, input_time=t, input_conc=c)
    with pytest.raises(TimingError, match="out of order"):
        fit("1tcm", tac, FS[::-1], FE[::-1], input_time=t, input_conc=c)
    with pytest.raises(TimingError, match="ends at 20 min but the scan runs to 30 min"):
        fit("1tcm", tac, FS, FE, input_time=t[t <= 20], input_conc=c[t <= 20])
    with pytest.raises(InputError, match="needs an input function"):
        fit("2tcm", tac, FS, FE)
    with pytest.raises(InputError, match="NaN"):
        fit("1tcm", tac, FS, FE, input_time=t, input_conc=np.where(t > 5, np.nan, c))
    with pytest.raises(InputError, match="last axis"):
        fit("1tcm", np.ones(5), FS, FE, input_time=t, input_conc=c)
    with pytest.raises(InputError, match="SRTM needs a reference"):
        fit("srtm", tac, FS, FE)
    with pytest.raises(InputError, match="reference-region TAC holds NaN"):
        fit("srtm", tac, FS, FE, reference=np.full(FS.size, np.nan))
    with pytest.raises(InputError, match="bounds given for"):
        fit("1tcm", tac, FS, FE, input_time=t, input_conc=c, bounds={"k4": (0, 1)})
    with pytest.raises(TimingError, match="at least 3"):
        fit("patlak", tac, FS, FE, input_time=t, input_conc=c, t_star=29.0)


def test_predict_reproduces_the_fitted_curve(plasma):
    from core.kinetics import predict

    t, c = plasma
    tac = _ode_frames(t, c, _two_tissue(0.1, 0.15, 0.03, 0.0), 2, FS, FE, vB=0.05)
    out = fit("2tcm_irr", tac, FS, FE, input_time=t, input_conc=c, device="cpu")
    curve = predict("2tcm_irr", out, FS, FE, input_time=t, input_conc=c)
    assert np.allclose(curve, tac, rtol=1e-5, atol=1e-6 * tac.max())
    ref = _ode_frames(t, c, _one_tissue(0.05, 0.1), 1, FS, FE)
    target = _ode_frames(t, c, _one_tissue(0.08, 0.08), 1, FS, FE)
    srtm = fit("srtm", target, FS, FE, reference=ref, device="cpu")
    assert np.allclose(predict("srtm", srtm, FS, FE, reference=ref), target, rtol=1e-3, atol=1e-3 * target.max())
    nan = predict("1tcm", {"K1": [0.1, np.nan], "k2": 0.1, "vB": 0.0}, FS, FE, input_time=t, input_conc=c)
    assert np.isfinite(nan[0]).all() and np.isnan(nan[1]).all()
