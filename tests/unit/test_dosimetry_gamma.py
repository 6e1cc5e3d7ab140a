"""Gamma index: identical maps, scaling, shifts, brute-force references in 1-D and 3-D, subsets, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from core.dosimetry.gamma import gamma_index
from core.errors import InputError


def _field(shape, voxel_mm, shift_mm=0.0):
    """A smooth two-Gaussian dose field (Gy), optionally shifted along the first axis."""
    axes = [np.arange(n) * voxel_mm for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    c = [n * voxel_mm / 2 for n in shape]
    r2 = sum((g - ci - (shift_mm if a == 0 else 0.0)) ** 2 for a, (g, ci) in enumerate(zip(grids, c)))
    r2b = sum((g - 0.3 * ci - (shift_mm if a == 0 else 0.0)) ** 2 for a, (g, ci) in enumerate(zip(grids, c)))
    return 10 * np.exp(-r2 / (2 * 12.0**2)) + 3 * np.exp(-r2b / (2 * 5.0**2))


def _brute_gamma(ref, ev, voxel_mm, dose_percent, distance_mm, step_mm, radius_mm):
    """Global gamma by exhaustive search over a fine lattice of offsets, evaluated map interpolated linearly."""
    axes = [np.arange(n) * voxel_mm for n in ref.shape]
    interp = RegularGridInterpolator(axes, ev, bounds_error=False, fill_value=np.nan)
    o = np.arange(-radius_mm, radius_mm + step_mm / 2, step_mm)
    offsets = np.stack(np.meshgrid(*[o] * ref.ndim, indexing="ij"), -1).reshape(-1, ref.ndim)
    dist2 = (offsets**2).sum(1) / distance_mm**2
    dd = dose_percent / 100 * ref.max()
    out = np.full(ref.shape, np.nan)
    for idx in np.ndindex(ref.shape):
        p = np.array([a[i] for a, i in zip(axes, idx)])
        vals = interp(p + offsets)
        out[idx] = np.sqrt(np.nanmin(dist2 + ((vals - ref[idx]) / dd) ** 2))
    return out


def test_identical_maps_pass_and_scaling():
    ref = _field((24, 24, 24), 2.5)
    same = gamma_index(ref, ref, 2.5)
    assert same.pass_rate == 1.0 and np.nanmax(same.gamma) == 0.0
    assert same.n_evaluated == int((ref >= 0.1 * ref.max()).sum())
    assert np.all(np.isnan(same.gamma[ref < 0.1 * ref.max()]))
    scaled = 1.02 * ref
    assert gamma_index(ref, scaled, 2.5).pass_rate == 1.0
    strict = gamma_index(ref, scaled, 2.5, dose_percent=1, distance_mm=1)
    assert 0.0 < strict.pass_rate < 1.0
    # at the flat peak 10 Gy -> 10.2 Gy: the evaluated map (linear between voxels) reaches 10 Gy only
    # 2.3 mm away, so gamma > 1 there
    peak = np.unravel_index(np.argmax(ref), ref.shape)
    assert strict.gamma[peak] > 1.0


def test_one_voxel_shift_passes_when_the_voxel_is_within_the_distance_criterion():
    ref = _field((24, 24, 24), 2.5)
    shifted = _field((24, 24, 24), 2.5, shift_mm=2.5)
    assert gamma_index(ref, shifted, 2.5).pass_rate == 1.0
    ref4, shifted4 = _field((16, 16, 16), 4.0), _field((16, 16, 16), 4.0, shift_mm=4.0)
    assert gamma_index(ref4, shifted4, 4.0).pass_rate < 1.0  # 4 mm shift, 3 mm criterion


def test_1d_against_brute_force():
    # pymedphys searches at radii in steps of distance / interp_fraction, so its gamma is a minimum over
    # fewer points than the exhaustive one: never below it, and above it by at most about
    # gradient * step / dose criterion (0.6 Gy/mm * 0.03 mm / 0.3 Gy = 0.06 in the worst case)
    x = np.arange(30) * 2.0
    ref = 10 * np.exp(-((x - 30) / 9) ** 2)
    ev = 10.3 * np.exp(-((x - 31.5) / 9) ** 2)
    got = gamma_index(ref, ev, 2.0, lower_percent_cutoff=10, interp_fraction=100, max_gamma=3)
    brute = _brute_gamma(ref, ev, 2.0, 3.0, 3.0, step_mm=0.001, radius_mm=9.0)
    m = ~np.isnan(got.gamma)
    assert m.sum() == 13 and got.gamma[m].max() > 0.5  # a case that is not trivially zero
    diff = got.gamma[m] - brute[m]
    assert diff.min() > -1e-6 and diff.max() < 0.02


def test_3d_against_brute_force():
    ref = _field((6, 6, 6), 3.0)
    ev = 1.01 * _field((6, 6, 6), 3.0, shift_mm=1.3)
    got = gamma_index(ref, ev, 3.0, lower_percent_cutoff=30, interp_fraction=30)
    brute = _brute_gamma(ref, ev, 3.0, 3.0, 3.0, step_mm=0.125, radius_mm=1.5)
    m = ~np.isnan(got.gamma) & (brute < 0.45)  # the exhaustive search covers radii up to 0.5 * 3 mm
    assert m.sum() >= 100
    np.testing.assert_allclose(got.gamma[m], brute[m], atol=0.03)  # measured: -0.017 to +0.026


def test_seeded_subset():
    ref = _field((16, 16, 16), 4.0)
    ev = 1.02 * ref
    full = gamma_index(ref, ev, 4.0, dose_percent=1, distance_mm=1)
    sub = gamma_index(ref, ev, 4.0, dose_percent=1, distance_mm=1, max_points=300, seed=3)
    again = gamma_index(ref, ev, 4.0, dose_percent=1, distance_mm=1, max_points=300, seed=3)
    m = ~np.isnan(sub.gamma)
    assert sub.n_evaluated == m.sum() == 300
    np.testing.assert_array_equal(sub.gamma, again.gamma)
    np.testing.assert_allclose(sub.gamma[m], full.gamma[m])  # the subset sees the same normalisation
    assert sub.pass_rate == pytest.approx(np.mean(full.gamma[m] <= 1))


def test_bad_input():
    ref = np.ones((4, 4, 4))
    with pytest.raises(InputError, match="different grids"):
        gamma_index(ref, np.ones((4, 4, 5)), 4.0)
    with pytest.raises(InputError, match="NaN"):
        gamma_index(ref, np.full((4, 4, 4), np.nan), 4.0)
    with pytest.raises(InputError, match="zero everywhere"):
        gamma_index(np.zeros((4, 4, 4)), ref, 4.0)
    with pytest.raises(InputError, match="voxel size"):
        gamma_index(ref, ref, (4.0, 4.0))
