"""Nuclear data from radioactivedecay and ICRP-107: names, half-lives, daughters, emitted energies."""

from __future__ import annotations

import numpy as np
import pytest

from core.dosimetry.nuclides import (KINDS, PENETRATING, canonical_name, decay_factor, known_nuclides,
                                     nuclide_data)
from core.errors import InputError


@pytest.mark.parametrize("spelling", ["Lu-177", "Lu177", "177Lu", "lu-177", " Lu-177 "])
def test_spellings_give_one_name(spelling):
    assert canonical_name(spelling) == "Lu-177"


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(InputError, match="Did you mean Lu-178"):
        canonical_name("Lu-178x")
    with pytest.raises(InputError, match="element-mass"):
        canonical_name("Lutetium")
    with pytest.raises(InputError, match="stable"):
        nuclide_data("Hf-177")
    assert "Ac-225" in known_nuclides() and len(known_nuclides()) > 1000


# ICRP Publication 107 (2008): half-lives, and mean energies per decay in MeV
@pytest.mark.parametrize("name, half_life_d, kind, energy_mev", [
    ("Lu-177", 6.647, "beta-", 0.1333),
    ("Y-90", 64.10 / 24, "beta-", 0.9327),
    ("I-131", 8.0207, "gamma", 0.3812),
    ("Ac-225", 10.0, "alpha", 5.787),
])
def test_half_lives_and_mean_energies_match_icrp107(name, half_life_d, kind, energy_mev):
    d = nuclide_data(name)
    assert d.half_life_s / 86400 == pytest.approx(half_life_d, rel=1e-3)
    assert d.mean_energy_mev(kind) == pytest.approx(energy_mev, rel=5e-3)


def test_emissions_daughters_and_photon_fraction():
    lu = nuclide_data("Lu-177")
    assert lu.progeny == (("Hf-177", 1.0),)
    gamma = lu.emissions["gamma"]
    assert gamma.per_decay == pytest.approx(0.18, abs=0.01)  # 113 and 208 keV lines, about 6.4 % + 11 %
    top = np.argsort(gamma.yields)[-2:]
    assert sorted(np.round(gamma.energies_mev[top], 3)) == [0.113, 0.208]
    assert lu.mean_energy_mev() == pytest.approx(sum(e.energy_per_decay_mev for e in lu.emissions.values()))
    assert nuclide_data("Y-90").penetrating_fraction < 1e-3 < lu.penetrating_fraction < 0.25
    assert nuclide_data("I-131").penetrating_fraction > 0.6
    branches = dict(nuclide_data("I-131").progeny)
    assert sum(branches.values()) == pytest.approx(1.0, abs=1e-5) and "Xe-131m" in branches
    assert set(lu.emissions) <= set(KINDS) and set(PENETRATING) <= set(KINDS)
    with pytest.raises(InputError, match="unknown radiation kinds"):
        lu.mean_energy_mev("neutrino")


def test_decay_factor():
    t_half = nuclide_data("Y-90").half_life_s
    np.testing.assert_allclose(decay_factor("Y-90", [0, t_half, 2 * t_half]), [1.0, 0.5, 0.25])
    with pytest.raises(InputError, match=">= 0"):
        decay_factor("Y-90", -1.0)


def test_equilibrium_chain_of_ac225_carries_four_alphas():
    from core.dosimetry.nuclides import chain_mean_energy_mev, equilibrium_chain

    chain = dict(equilibrium_chain("Ac-225"))
    assert {"Fr-221", "At-217", "Bi-213", "Po-213", "Tl-209", "Pb-209"} <= set(chain)
    # Bi-213 branches 97.9 % to Po-213 and 2.1 % to Tl-209 (ICRP-107 via radioactivedecay)
    assert chain["Po-213"] + chain["Tl-209"] == pytest.approx(chain["Bi-213"], rel=1e-3)
    # four alphas per Ac-225 decay, about 27.5 MeV (Ac-225 5.8, Fr-221 6.3, At-217 7.1, Bi/Po-213 8.4)
    assert 27.0 < chain_mean_energy_mev("Ac-225", "alpha") < 28.0
    n_alpha = sum(a * nuclide_data(m).emissions["alpha"].per_decay
                  for m, a in chain.items() if "alpha" in nuclide_data(m).emissions)
    assert n_alpha == pytest.approx(4.0, abs=0.03)


def test_equilibrium_chain_leaves_out_long_lived_daughters():
    from core.dosimetry.nuclides import equilibrium_chain

    assert dict(equilibrium_chain("I-131")) == {"I-131": 1.0}     # Xe-131m (11.8 d) outlives I-131
    assert dict(equilibrium_chain("Lu-177")) == {"Lu-177": 1.0}
    with pytest.raises(InputError):
        equilibrium_chain("Lu-177", max_half_life_fraction=2.0)


def test_imaging_half_lives_agree_with_the_dosimetry_nuclear_data():
    """The image readers' NuDat table and radioactivedecay (ICRP 107) agree for therapy nuclides."""
    from core.dosimetry.nuclides import nuclide_data
    from core.imaging.decay import HALF_LIFE_S

    for imaging, dosimetry in (("90Y", "Y-90"), ("131I", "I-131"), ("177Lu", "Lu-177")):
        assert nuclide_data(dosimetry).half_life_s == pytest.approx(HALF_LIFE_S[imaging], rel=1e-3)
