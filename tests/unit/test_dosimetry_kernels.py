"""Voxel S-values of the project's Monte Carlo: folding, physics bounds, caching, shipped kernels."""

from __future__ import annotations

import numpy as np
import pytest

from core.dosimetry import kernels
from core.dosimetry.kernels import (KERNEL_DENSITY_G_ML, SHIPPED_KERNELS, compute_voxel_s_values, fold_octant,
                                    kernel_path, load_kernel, save_kernel, voxel_kernel, voxel_s_values)
from core.dosimetry.local import JOULE_PER_MEV
from core.dosimetry.montecarlo import chain_electrons, photon_lines
from core.errors import InputError


def _full_energy_mgy(nuclide, voxel_mm, electrons_only=True):
    """mGy per MBq s if all (electron) energy of a decay stayed in the source voxel."""
    mev = chain_electrons(nuclide).energy_per_decay_mev
    if not electrons_only:
        e, y = photon_lines(nuclide)
        mev += float(np.sum(e * y))
    mass_kg = KERNEL_DENSITY_G_ML * (voxel_mm / 10) ** 3 / 1000
    return 1e6 * mev * JOULE_PER_MEV / mass_kg * 1000


def test_fold_octant_averages_symmetric_images():
    rng = np.random.default_rng(0)
    cube = rng.random((7, 7, 7))
    octant = fold_octant(cube, 3)
    assert octant[0, 0, 0] == cube[3, 3, 3]
    images = [cube[4, 3, 3], cube[2, 3, 3], cube[3, 4, 3], cube[3, 2, 3], cube[3, 3, 4], cube[3, 3, 2]]
    assert octant[1, 0, 0] == pytest.approx(np.mean(images))
    assert octant[1, 0, 0] == octant[0, 1, 0] == octant[0, 0, 1]
    assert kernels._image_counts(3)[1, 0, 0] == 6 and kernels._image_counts(3)[1, 1, 1] == 8
    assert kernels._image_counts(3)[2, 1, 0] == 24
    with pytest.raises(InputError):
        fold_octant(cube[:6, :6, :6], 3)


def test_small_run_obeys_physics_bounds(tmp_path):
    k = compute_voxel_s_values("Lu-177", 4.8, 3, n_photons=20_000, n_electrons=20_000, n_batches=4, device="cpu")
    full = _full_energy_mgy("Lu-177", 4.8)
    # about 92 % of the Lu-177 electron energy is absorbed in a 4.8 mm voxel (electrons module, this work)
    assert 0.85 * full < k.octant[0, 0, 0] < 1.0 * _full_energy_mgy("Lu-177", 4.8, electrons_only=False)
    assert k.octant[1, 0, 0] < 0.05 * k.octant[0, 0, 0]
    assert k.octant[1, 0, 0] > k.octant[1, 1, 0] > k.octant[1, 1, 1] > k.octant[2, 2, 2] > 0
    assert k.rel_uncertainty[0, 0, 0] < 0.01
    e = k.meta["energy_mev"]
    assert e["deposited"] + e["escaped"] == pytest.approx(e["emitted"], rel=1e-9)
    path = save_kernel(k, kernel_path("Lu-177", 4.8, 3, tmp_path))
    back = load_kernel(path)
    np.testing.assert_array_equal(back.octant, k.octant)
    assert back.meta["histories"] == {"photons": 20_000, "electrons": 20_000}


def test_user_cache_is_used_when_nothing_is_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "SHIPPED_KERNELS", tmp_path / "none")
    monkeypatch.setattr(kernels, "_user_cache", lambda: tmp_path / "cache")
    with pytest.raises(InputError, match="python -m core kernels"):
        voxel_kernel("Lu-177", 4.0, 2, compute=False)
    k = voxel_kernel("Lu-177", 4.0, 2, n_photons=2000, n_electrons=2000, n_batches=2, device="cpu")
    assert (tmp_path / "cache" / "Lu-177_4.000mm_2.npz").exists()
    np.testing.assert_array_equal(voxel_kernel("Lu-177", 4.0, 2, compute=False).octant, k.octant)
    (tmp_path / "cache" / "Lu-177_4.000mm_2.npz").write_bytes(b"not a kernel")
    with pytest.raises(InputError, match="unreadable"):
        voxel_kernel("Lu-177", 4.0, 2, compute=False)


@pytest.mark.parametrize("voxel_mm", [3.0, 4.8])
def test_shipped_kernels(voxel_mm):
    """The shipped kernels: provenance, symmetry, and the absorbed fractions physics demands."""
    for nuclide in ("Lu-177", "Y-90", "I-131", "Ac-225"):
        assert kernel_path(nuclide, voxel_mm, 6).exists(), "run `python -m core kernels`"
        s = voxel_s_values(nuclide, voxel_mm)
        k = load_kernel(kernel_path(nuclide, voxel_mm, 6, SHIPPED_KERNELS))
        assert s.shape == (6, 6, 6) and k.meta["density_g_cm3"] == KERNEL_DENSITY_G_ML
        np.testing.assert_allclose(s, np.transpose(s, (1, 0, 2)))
        assert np.all(np.diff(s[:, 0, 0]) < 0)                      # falls with distance along an axis
        assert k.rel_uncertainty[0, 0, 0] < 0.005 and k.rel_uncertainty[1, 0, 0] < 0.02
    # central-voxel absorbed fraction of the electron energy: Lu-177 high, Y-90 low (range ~ 4 mm)
    lu = voxel_s_values("Lu-177", voxel_mm)[0, 0, 0] / _full_energy_mgy("Lu-177", voxel_mm)
    y = voxel_s_values("Y-90", voxel_mm)[0, 0, 0] / _full_energy_mgy("Y-90", voxel_mm)
    assert 0.85 < lu < 1.0 and 0.25 < y < 0.5
    # Ac-225: four alphas (about 27.5 MeV per decay) stay in the voxel
    ac = voxel_s_values("Ac-225", voxel_mm)[0, 0, 0]
    mass_kg = KERNEL_DENSITY_G_ML * (voxel_mm / 10) ** 3 / 1000
    assert ac > 27.0 * 1e6 * JOULE_PER_MEV / mass_kg * 1000
