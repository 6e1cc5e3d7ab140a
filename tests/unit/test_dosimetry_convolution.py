"""VSV convolution: FFT against direct sums, kernel reproduction, linearity, energy, density, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.dosimetry.convolution import full_kernel, vsv_dose
from core.errors import InputError


def _octant(size=3, seed=0):
    """A monotone-decreasing, non-symmetric-looking octant in mGy/(MBq s)."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*[np.arange(size)] * 3, indexing="ij")
    return np.exp(-(i**2 + 1.3 * j**2 + 0.7 * k**2)) * (1 + 0.1 * rng.random((size,) * 3))


def _brute_force(tia, octant):
    """Sum over every source voxel and every target voxel, MIRD 17 written out."""
    out = np.zeros_like(tia)
    n = octant.shape[0]
    for src in zip(*np.nonzero(tia)):
        for tgt in np.ndindex(tia.shape):
            off = tuple(abs(a - b) for a, b in zip(tgt, src))
            if max(off) < n:
                out[tgt] += tia[src] * 3600 * octant[off] * 1e-3
    return out


def test_full_kernel_mirrors_the_octant():
    octant = _octant(3)
    k = full_kernel(octant)
    assert k.shape == (5, 5, 5)
    for idx in np.ndindex(k.shape):
        assert k[idx] == octant[tuple(abs(i - 2) for i in idx)]
    assert np.array_equal(k, k[::-1]) and np.array_equal(k, k[:, ::-1]) and np.array_equal(k, k[:, :, ::-1])


def test_fft_and_torch_equal_direct_convolution_on_random_maps():
    rng = np.random.default_rng(1)
    octant = _octant(4)
    for shape in [(9, 10, 11), (3, 4, 5)]:  # the second is smaller than the 7^3 kernel
        tia = rng.uniform(0, 10, size=shape)
        direct = vsv_dose(tia, octant, method="direct")
        for method in ("fft", "torch"):
            np.testing.assert_allclose(vsv_dose(tia, octant, method=method), direct, rtol=1e-10, atol=0)


def test_against_a_brute_force_sum_with_zero_boundary():
    rng = np.random.default_rng(2)
    tia = np.zeros((6, 5, 4))
    tia[rng.integers(0, 6, 5), rng.integers(0, 5, 5), rng.integers(0, 4, 5)] = rng.uniform(1, 5, 5)
    tia[0, 0, 0] = 2.0  # a corner source: its kernel is cut by the map edge, nothing wraps around
    octant = _octant(3)
    np.testing.assert_allclose(vsv_dose(tia, octant), _brute_force(tia, octant), rtol=1e-10, atol=1e-15)


def test_a_single_hot_voxel_reproduces_the_kernel_and_energy_is_conserved():
    octant = _octant(3)
    tia = np.zeros((9, 9, 9))
    tia[4, 4, 4] = 2.5  # MBq h
    dose = vsv_dose(tia, octant)
    expected = np.zeros_like(tia)
    expected[2:7, 2:7, 2:7] = full_kernel(octant) * 2.5 * 3600 * 1e-3
    np.testing.assert_allclose(dose, expected, rtol=1e-10, atol=1e-14)
    # energy per unit mass: sum(dose) = A * 3600 * sum(full kernel) * 1e-3 in a homogeneous medium
    assert dose.sum() == pytest.approx(2.5 * 3600 * full_kernel(octant).sum() * 1e-3, rel=1e-12)
    # with mass correction, dose x mass is unchanged by any density (> air)
    rho = np.random.default_rng(3).uniform(0.2, 2.0, size=tia.shape)
    voxel_ml = 0.064
    hetero = vsv_dose(tia, octant, rho, reference_density=1.04)
    assert (hetero * rho * voxel_ml).sum() == pytest.approx((dose * 1.04 * voxel_ml).sum(), rel=1e-12)


def test_linearity():
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 3, size=(2, 7, 6, 5))
    octant = _octant(3)
    np.testing.assert_allclose(vsv_dose(2 * a + 3 * b, octant),
                               2 * vsv_dose(a, octant) + 3 * vsv_dose(b, octant), rtol=1e-10, atol=1e-14)


def test_density_scaling_and_air():
    rng = np.random.default_rng(5)
    tia = rng.uniform(0, 3, size=(6, 6, 6))
    octant = _octant(3)
    soft = vsv_dose(tia, octant, np.full(tia.shape, 1.04))
    np.testing.assert_allclose(soft, vsv_dose(tia, octant), rtol=1e-14)
    np.testing.assert_allclose(vsv_dose(tia, octant, np.full(tia.shape, 2.08)), soft / 2, rtol=1e-14)
    rho = np.full(tia.shape, 1.04)
    rho[0] = 0.001
    d = vsv_dose(tia, octant, rho)
    assert np.all(d[0] == 0) and np.allclose(d[1:], soft[1:])
    same = vsv_dose(tia, octant, np.full(tia.shape, 2.08), density_correction="none")
    np.testing.assert_allclose(same, soft, rtol=1e-14)


def test_bad_input():
    octant = _octant(2)
    with pytest.raises(InputError, match="negative or non-finite"):
        vsv_dose(np.full((2, 2, 2), np.nan), octant)
    with pytest.raises(InputError, match="negative or non-finite"):
        vsv_dose(-np.ones((2, 2, 2)), octant)
    with pytest.raises(InputError, match="different grids"):
        vsv_dose(np.ones((2, 2, 2)), octant, np.ones((2, 2, 3)))
    with pytest.raises(InputError, match="more than 1 % apart"):
        vsv_dose(np.ones((2, 2, 2)), octant, voxel_mm=4.8, kernel_voxel_mm=4.0)
    vsv_dose(np.ones((2, 2, 2)), octant, voxel_mm=(4.02, 4.0, 3.98), kernel_voxel_mm=4.0)  # within 1 %
    with pytest.raises(InputError, match="not 3-D"):
        vsv_dose(np.ones((2, 2)), octant)
    with pytest.raises(InputError, match="kernel"):
        vsv_dose(np.ones((2, 2, 2)), -octant)
    with pytest.raises(InputError, match="method"):
        vsv_dose(np.ones((2, 2, 2)), octant, method="spline")
