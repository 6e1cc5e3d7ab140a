"""Relaxometry: SPGR model, variable-flip-angle T1, signal to concentration, R2* carriers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.drug_release.relaxometry import (delta_r2star_to_concentration, signal_to_concentration,
                                           signal_to_delta_r2star, spgr_signal, vfa_t1)
from core.errors import InputError

TR = 5.0  # ms
ANGLES = np.array([2.0, 5.0, 10.0, 15.0])


def test_spgr_peaks_at_the_ernst_angle():
    t1 = 1200.0
    angles = np.linspace(0.5, 30.0, 2000)
    s = spgr_signal(1.0, t1, angles, TR)
    ernst = math.degrees(math.acos(math.exp(-TR / t1)))
    assert angles[np.argmax(s)] == pytest.approx(ernst, abs=0.02)


def test_vfa_t1_exact_and_noisy():
    t1 = np.linspace(300.0, 3000.0, 12).reshape(3, 4)
    m0 = np.linspace(500.0, 1500.0, 12).reshape(3, 4)
    s = spgr_signal(m0[..., None], t1[..., None], ANGLES, TR)
    t1_fit, m0_fit, ok = vfa_t1(s, ANGLES, TR)
    assert ok.all() and t1_fit.shape == (3, 4)
    np.testing.assert_allclose(t1_fit, t1, rtol=1e-9)
    np.testing.assert_allclose(m0_fit, m0, rtol=1e-9)
    rng = np.random.default_rng(0)
    sn = spgr_signal(1000.0, np.full(500, 1000.0)[:, None], ANGLES, TR)
    sn = sn + rng.normal(0, sn.max() / 200, sn.shape)  # SNR 200 at the best angle
    t1n, _, okn = vfa_t1(sn, ANGLES, TR)
    assert okn.all() and abs(np.median(t1n) / 1000.0 - 1) < 0.02


def test_vfa_flags_non_physical_voxels():
    s = spgr_signal(1000.0, 1000.0, ANGLES, TR)
    growing = np.array([1.0, 8.0, 27.0, 64.0])  # rises faster than any SPGR curve: slope E1 > 1
    bad = np.stack([s, growing, np.where(np.arange(4) == 2, np.nan, s), np.zeros(4)])
    t1, m0, ok = vfa_t1(bad, ANGLES, TR)
    assert ok.tolist() == [True, False, False, False]
    assert np.isnan(t1[1:]).all() and np.isnan(m0[1:]).all()


def test_vfa_input_errors():
    s = spgr_signal(1000.0, 1000.0, ANGLES, TR)
    with pytest.raises(InputError, match="two distinct"):
        vfa_t1(s[:1], ANGLES[:1], TR)
    with pytest.raises(InputError, match="degrees"):
        vfa_t1(s, [2.0, 5.0, 10.0, 120.0], TR)
    with pytest.raises(InputError, match="4 flip angles"):
        vfa_t1(s[:3], ANGLES, TR)
    with pytest.raises(InputError, match="tr_ms"):
        vfa_t1(s, ANGLES, -5.0)


def test_signal_to_concentration_round_trip():
    r1 = 4.1  # 1/(mM s), Gd-DTPA in plasma at 1.5 T (Rohrer et al. 2005)
    conc = np.concatenate([np.zeros(4), np.linspace(0.0, 2.0, 20)])
    t1_0 = np.array([800.0, 1500.0])
    r1_t = 1000.0 / t1_0[:, None] + r1 * conc  # 1/s
    s = spgr_signal(700.0, 1000.0 / r1_t, 15.0, TR)
    c, ok = signal_to_concentration(s, t1_0, 15.0, TR, r1, baseline_frames=4)
    assert ok.all()
    np.testing.assert_allclose(c, np.broadcast_to(conc, c.shape), atol=1e-9)
    c2, ok2 = signal_to_concentration(s, t1_0, 15.0, TR, r1, m0=700.0)
    np.testing.assert_allclose(c2, c, atol=1e-9)
    # a frame at or above the fully relaxed signal M0 sin(flip): R1 undefined, flagged
    s_bad = s.copy()
    s_bad[1, 10] = 700.0 * math.sin(math.radians(15.0)) * 1.01
    c3, ok3 = signal_to_concentration(s_bad, t1_0, 15.0, TR, r1, baseline_frames=[0, 1, 2, 3])
    assert ok3.tolist() == [True, False] and np.isnan(c3[1]).all()


def test_signal_to_concentration_errors():
    s = np.ones((2, 10))
    with pytest.raises(InputError, match="baseline_frames"):
        signal_to_concentration(s, 1000.0, 15.0, TR, 4.1, baseline_frames=10)
    with pytest.raises(InputError, match="t1_0_ms"):
        signal_to_concentration(s, np.ones(3), 15.0, TR, 4.1)
    with pytest.raises(InputError, match="r1_per_mM_s"):
        signal_to_concentration(s, 1000.0, 15.0, TR, 0.0)


def test_r2star_carrier_concentration():
    te, r2s = 8.0, 120.0  # ms, 1/(mM s) (test values)
    conc = np.array([0.0, 0.0, 0.0, 0.05, 0.2])
    s = 900.0 * np.exp(-te / 1000.0 * r2s * conc)
    d, ok = signal_to_delta_r2star(s, te)
    c, okc = delta_r2star_to_concentration(d, r2s)
    assert ok and okc.all()
    np.testing.assert_allclose(c, conc, atol=1e-12)
    d2, ok2 = signal_to_delta_r2star(np.array([[1.0, 1.0, 1.0, -1.0]]), te)
    assert not ok2[0] and np.isnan(d2).all()
    with pytest.raises(InputError, match="r2star_per_mM_s"):
        delta_r2star_to_concentration(d, -1.0)
