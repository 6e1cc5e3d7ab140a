"""Time-integrated activity: exponential fits with the physical-decay bound, AICc selection,
trapezoid with tail, Hänscheid's single time point; bad series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.dosimetry.tia import fit_tia, single_time_point_tia, trapezoid_tia
from core.errors import InputError, TimingError

T_LU = 6.647 * 24  # Lu-177 half-life, h
TIMES = np.array([1.0, 4.0, 24.0, 48.0, 96.0, 168.0])


def test_mono_exponential_is_recovered_exactly():
    lam = math.log(2) / 60.0
    fit = fit_tia(TIMES, 50 * np.exp(-lam * TIMES), T_LU, models=("mono-exp",))
    assert fit.method == "mono-exp" and fit.tia_mbq_h == pytest.approx(50 / lam, rel=1e-6)
    assert fit.params["lambda_per_h"] == pytest.approx(lam, rel=1e-6) and fit.r2 == pytest.approx(1.0)


def test_uptake_and_washout_selects_the_bi_exponential_by_aicc():
    l1, l2 = math.log(2) / 70.0, math.log(2) / 3.0
    a = 40 * (np.exp(-l1 * TIMES) - np.exp(-l2 * TIMES))
    fit = fit_tia(TIMES, a, T_LU)
    assert fit.method == "bi-exp", fit.candidates
    assert fit.tia_mbq_h == pytest.approx(40 * (1 / l1 - 1 / l2), rel=1e-4)
    assert fit.candidates["bi-exp"] < fit.candidates["mono-exp"]
    np.testing.assert_allclose(fit.curve(TIMES), a, rtol=1e-4)


def test_tri_exponential_with_enough_points():
    t = np.array([0.5, 1, 2, 4, 8, 24, 48, 72, 120, 168.0])
    a = 30 * np.exp(-0.01 * t) + 20 * np.exp(-0.2 * t) - 50 * np.exp(-1.5 * t)
    fit = fit_tia(t, a, T_LU, models=("tri-exp",))
    assert fit.tia_mbq_h == pytest.approx(30 / 0.01 + 20 / 0.2 - 50 / 1.5, rel=1e-3)


def test_elimination_is_never_slower_than_physical_decay():
    # activity that rises at the end (noise or redistribution) would extrapolate to infinity without the bound
    a = np.array([5.0, 8.0, 10.0, 10.5, 11.0, 11.2])
    fit = fit_tia(TIMES, a, T_LU, models=("mono-exp",))
    assert fit.params["lambda_per_h"] >= math.log(2) / T_LU - 1e-12
    tr = trapezoid_tia(TIMES, a, T_LU)
    assert tr.params["tail_rate_per_h"] == pytest.approx(math.log(2) / T_LU)
    assert tr.params["tail_mbq_h"] == pytest.approx(11.2 * T_LU / math.log(2))


def test_trapezoid_converges_to_the_integral_with_dense_points():
    lam = math.log(2) / 40.0
    t = np.linspace(0.25, 400, 800)
    fit = trapezoid_tia(t, 20 * np.exp(-lam * t), T_LU, start="constant")
    assert fit.tia_mbq_h == pytest.approx(20 / lam, rel=1e-3)


def test_single_time_point_is_exact_at_one_and_two_effective_half_lives():
    lam = math.log(2) / 60.0
    truth = 50 / lam
    for t in (60.0, 120.0):
        assert single_time_point_tia(t, 50 * math.exp(-lam * t)).tia_mbq_h == pytest.approx(truth, rel=1e-9)
    mid = single_time_point_tia(60 / math.log(2), 50 * math.exp(-1.0), effective_half_life_h=60.0)
    assert mid.params["bias"] == pytest.approx(2 / (math.e * math.log(2)) - 1, rel=1e-9)  # the +6.1 % maximum
    assert mid.tia_mbq_h / truth - 1 == pytest.approx(mid.params["bias"], rel=1e-9)


def test_bad_series_are_refused():
    with pytest.raises(TimingError, match="not increasing"):
        fit_tia([24, 4, 48], [1, 2, 3], T_LU)
    with pytest.raises(TimingError, match="after injection"):
        trapezoid_tia([0, 4], [1, 2], T_LU)
    with pytest.raises(InputError, match="3 time points but 2"):
        fit_tia([1, 2, 3], [1, 2], T_LU)
    with pytest.raises(InputError, match="negative"):
        fit_tia([1, 2, 3], [1, -2, 3], T_LU)
    with pytest.raises(InputError, match="not finite"):
        fit_tia([1, 2, 3], [1, np.nan, 3], T_LU)
    with pytest.raises(InputError, match="half-life"):
        fit_tia([1, 2, 3], [1, 2, 3], -5)
    with pytest.raises(InputError, match="no exponential model"):
        fit_tia([24.0, 48.0], [10.0, 5.0], T_LU)
    with pytest.raises(InputError, match="unknown TIA models"):
        fit_tia(TIMES, np.ones(6), T_LU, models=("gamma-variate",))


def test_voxel_tia_matches_the_region_methods_and_bounds_the_tail():
    from core.dosimetry.tia import voxel_tia

    lam = math.log(2) / 60.0
    t = TIMES[2:]  # 24, 48, 96, 168 h
    curves = np.stack([50 * np.exp(-lam * t), 50 * np.exp(-lam * t) * 2, np.array([1.0, 2.0, 3.0, 4.0]),
                       np.array([5.0, 4.0, 0.0, 0.0])], axis=1)  # (T, 4 voxels)
    maps = curves.reshape(4, 2, 2)
    trap = voxel_tia(t, maps, T_LU, method="trapezoid").ravel()
    for v in range(4):
        assert trap[v] == pytest.approx(trapezoid_tia(t, curves[:, v], T_LU).tia_mbq_h, rel=1e-9)
    mono = voxel_tia(t, maps, T_LU, n_tail=4).ravel()
    a0 = 50 * math.exp(-lam * 24)
    assert mono[0] == pytest.approx(0.5 * a0 * 24 + a0 / lam, rel=1e-9)  # exact tail of a mono-exponential
    assert mono[1] == pytest.approx(2 * mono[0], rel=1e-9)  # linear in activity
    lp = math.log(2) / T_LU
    assert mono[2] == pytest.approx(0.5 * 1.0 * 24 + voxel_tail(t, curves[:, 2], lp), rel=1e-6)
    assert mono[3] == pytest.approx(0.5 * 5.0 * 24 + 5.0 / lp)  # empty late points: physical decay fallback
    with pytest.raises(InputError, match="4 time points but activity"):
        voxel_tia(t, maps[:3], T_LU)
    with pytest.raises(InputError, match="NaN"):
        voxel_tia(t, np.where(maps > 3, np.nan, maps), T_LU)


def voxel_tail(t, y, lp):
    """Rising activity: the fitted rate hits the physical bound; amplitude by weighted least squares."""
    tt = t - t[0]
    w = y ** 2
    decay = np.exp(-lp * tt)
    return float((w * y * decay).sum() / (w * decay ** 2).sum()) / lp
