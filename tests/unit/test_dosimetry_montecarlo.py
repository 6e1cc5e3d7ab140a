"""Monte Carlo dose engine: energy bookkeeping, limits against local deposition, seeding, uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from core.dosimetry.local import DECAYS_PER_MBQ_H, local_deposition_dose
from core.dosimetry.materials import MATERIALS
from core.dosimetry.montecarlo import chain_electrons, monte_carlo_dose, photon_lines
from core.dosimetry.nuclides import chain_mean_energy_mev
from core.errors import InputError

TISSUE = MATERIALS.index("soft tissue")
BONE = MATERIALS.index("bone")


def _phantom(n=16):
    tia = np.zeros((n, n, n))
    tia[6:10, 6:10, 6:10] = 2.0
    tia[3, n - 4, n // 2] = 5.0
    density = np.full((n, n, n), 1.04)
    material = np.full((n, n, n), TISSUE)
    density[:, :, :3], material[:, :, :3] = 1.8, BONE
    return tia, density, material


@pytest.mark.parametrize("nuclide", ["Lu-177", "I-131"])
def test_energy_is_deposited_or_escapes(nuclide):
    tia, density, material = _phantom()
    r = monte_carlo_dose(tia, nuclide, density, material, 4.0, n_photons=20_000, n_electrons=20_000, n_batches=4,
                         electrons="transport", seed=1, device="cpu")
    e = r.energy_mev
    assert e["deposited"] + e["escaped"] == pytest.approx(e["emitted"], rel=1e-9)
    # the sampled emission matches the expected emission of the map (ICRP-107 chain energy per decay)
    expected = tia.sum() * DECAYS_PER_MBQ_H * chain_mean_energy_mev(nuclide)
    assert e["emitted"] + e["local"] == pytest.approx(expected, rel=0.05)   # 20 000 sampled energies
    # the dose integrates to the deposited energy
    mass_kg = density * 0.064 / 1000
    assert np.sum(r.dose_gy * mass_kg) / 1.602176634e-13 == pytest.approx(e["deposited"] + e["local"], rel=1e-9)


def test_same_seed_same_dose_and_uncertainty_shrinks_with_histories():
    tia, density, material = _phantom(12)
    kw = dict(n_batches=4, electrons="transport", device="cpu")
    a = monte_carlo_dose(tia, "Lu-177", density, material, 4.0, n_photons=4000, n_electrons=4000, seed=3, **kw)
    b = monte_carlo_dose(tia, "Lu-177", density, material, 4.0, n_photons=4000, n_electrons=4000, seed=3, **kw)
    np.testing.assert_array_equal(a.dose_gy, b.dose_gy)
    big = monte_carlo_dose(tia, "Lu-177", density, material, 4.0, n_photons=64_000, n_electrons=64_000, seed=4,
                           **kw)
    hot = tia > 1
    # 16 times the histories: the uncertainty in the source about 4 times smaller
    assert big.uncertainty_in(hot) < 0.4 * a.uncertainty_in(hot)
    assert 0 < big.uncertainty_in(hot) < 0.05


def test_large_voxels_converge_to_local_deposition_for_pure_beta():
    """Y-90 in 5-cm voxels: most beta energy stays in the source voxel, some crosses its faces."""
    tia = np.zeros((5, 5, 5))
    tia[2, 2, 2] = 1.0
    r = monte_carlo_dose(tia, "Y-90", 1.04, TISSUE, 50.0, n_photons=0, n_electrons=20_000, n_batches=4,
                         electrons="transport", seed=0, device="cpu")
    local = local_deposition_dose(tia, "Y-90", 50.0, 1.04)
    # mean beta range about 4 mm: roughly S/(4V) * range = 3/5/4 * 0.4 cm, some 6 %, escapes the cube
    assert 0.88 < r.dose_gy[2, 2, 2] / local[2, 2, 2] < 0.98
    assert r.dose_gy[1, 2, 2] > 0


def test_alpha_emitter_chain_is_local_and_complete():
    tia = np.zeros((6, 6, 6))
    tia[3, 3, 3] = 1.0
    r = monte_carlo_dose(tia, "Ac-225", 1.0, TISSUE, 4.0, n_photons=5000, n_electrons=5000, n_batches=2,
                         electrons="local", seed=0, device="cpu")
    assert r.electrons == "local"
    alphas = chain_mean_energy_mev("Ac-225", "alpha", "alpha recoil")
    assert r.energy_mev["local"] >= DECAYS_PER_MBQ_H * alphas
    share = r.dose_gy[3, 3, 3] * 0.064e-3 / 1.602176634e-13 / DECAYS_PER_MBQ_H
    assert share > 0.95 * alphas                                    # about 27.5 MeV per decay stay in the voxel


def test_chain_sources():
    energies, yields = photon_lines("Ac-225")
    assert np.any(np.isclose(energies, 0.440, atol=0.001))           # Bi-213 gamma
    assert chain_electrons("Ac-225").energy_per_decay_mev > 0.5      # Bi-213, Pb-209 and Tl-209 betas
    e, y = photon_lines("Y-90")
    assert np.sum(e * y) < 1e-3                                      # a pure beta emitter


def test_bad_inputs():
    tia, density, material = _phantom(8)
    with pytest.raises(InputError, match="different grids"):
        monte_carlo_dose(tia, "Lu-177", density[:4], material, 4.0, device="cpu")
    with pytest.raises(InputError, match="empty"):
        monte_carlo_dose(np.zeros_like(tia), "Lu-177", density, material, 4.0, device="cpu")
    with pytest.raises(InputError, match="Did you mean"):
        monte_carlo_dose(tia, "Lu177m2", density, material, 4.0, device="cpu")
    with pytest.raises(InputError, match="materials"):
        monte_carlo_dose(tia, "Lu-177", density, material + 10, 4.0, device="cpu")
