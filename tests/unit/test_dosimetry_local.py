"""Local energy deposition: units, energy conservation, photons optional, density, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.dosimetry.local import DECAYS_PER_MBQ_H, JOULE_PER_MEV, local_deposition_dose
from core.dosimetry.nuclides import NON_PENETRATING, nuclide_data
from core.errors import InputError


def test_deposited_energy_equals_the_emitted_non_penetrating_energy():
    rng = np.random.default_rng(0)
    tia = rng.uniform(0, 50, size=(5, 6, 7))
    rho = rng.uniform(0.3, 1.9, size=tia.shape)
    dose = local_deposition_dose(tia, "Lu-177", (4.0, 4.0, 2.0), rho)
    mass_kg = rho * (4 * 4 * 2 / 1000) / 1000
    emitted = tia.sum() * DECAYS_PER_MBQ_H * nuclide_data("Lu-177").mean_energy_mev(*NON_PENETRATING) * JOULE_PER_MEV
    assert float((dose * mass_kg).sum()) == pytest.approx(emitted, rel=1e-12)


def test_photons_density_and_air():
    one = np.ones((2, 2, 2))
    beta = local_deposition_dose(one, "I-131", 4.8)
    allin = local_deposition_dose(one, "I-131", 4.8, include_photons=True)
    lu = nuclide_data("I-131")
    assert allin[0, 0, 0] / beta[0, 0, 0] == pytest.approx(lu.mean_energy_mev() / lu.mean_energy_mev(
        "beta-", "beta+", "IE", "auger", "alpha", "alpha recoil"))
    assert local_deposition_dose(one, "Lu-177", 4.0, 2.0)[0, 0, 0] == pytest.approx(
        local_deposition_dose(one, "Lu-177", 4.0)[0, 0, 0] / 2)
    rho = np.ones((2, 2, 2))
    rho[0] = 0.001  # air
    assert np.all(local_deposition_dose(one, "Lu-177", 4.0, rho)[0] == 0)


def test_bad_input():
    with pytest.raises(InputError, match="negative or non-finite"):
        local_deposition_dose(np.array([[[-1.0]]]), "Lu-177", 4.0)
    with pytest.raises(InputError, match="different grids"):
        local_deposition_dose(np.ones((2, 2, 2)), "Lu-177", 4.0, np.ones((3, 3, 3)))
    with pytest.raises(InputError, match="not positive"):
        local_deposition_dose(np.ones((2, 2, 2)), "Lu-177", 0.0)
    with pytest.raises(InputError, match="Did you mean"):
        local_deposition_dose(np.ones((2, 2, 2)), "Lu-171x", 4.0)
