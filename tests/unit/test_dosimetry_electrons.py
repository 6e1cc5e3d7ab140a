"""Electrons: ICRP-107 spectra and sampling, Bethe stopping powers and CSDA ranges against NIST ESTAR,
the condensed-history walk (energy conservation, density scaling, range rejection), the 1 MeV point
kernel, absorbed fractions of 177Lu and 90Y in a 3 mm voxel, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.dosimetry import electrons as el
from core.dosimetry.nuclides import nuclide_data
from core.errors import InputError


def _isotropic(n, gen):
    cos_t = 2 * torch.rand(n, generator=gen) - 1
    phi = 2 * math.pi * torch.rand(n, generator=gen)
    sin_t = torch.sqrt(1 - cos_t ** 2)
    return torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], 1)


def _absorbed_fraction(nuclide, side_cm, n, seed=0):
    """Uniform source in one cube of soft tissue (1.04 g/cm^3) in vacuum."""
    gen = torch.Generator().manual_seed(seed)
    energy = el.electron_source(nuclide).sample(n, gen, device="cpu")
    pos = torch.rand(n, 3, generator=gen) * side_cm
    edep = torch.zeros(1, 1, 1, dtype=torch.float64)
    escaped = el.transport_electrons(pos, _isotropic(n, gen), energy, density=torch.full((1, 1, 1), 1.04),
                                     voxel_cm=(side_cm,) * 3, edep=edep, generator=gen)
    emitted = float(energy.sum())
    assert float(edep.sum()) + escaped == pytest.approx(emitted, rel=1e-9)
    return float(edep.sum()) / emitted


# --- spectra -----------------------------------------------------------------------------------
@pytest.mark.parametrize("nuclide", ["Lu-177", "Y-90", "I-131"])
def test_beta_spectrum_integrates_to_the_icrp107_yield_and_mean_energy(nuclide):
    energies, pdf = el.beta_spectrum(nuclide)
    beta = nuclide_data(nuclide).emissions["beta-"]
    assert np.trapezoid(pdf, energies) == pytest.approx(beta.per_decay, rel=5e-3)
    assert np.trapezoid(pdf * energies, energies) == pytest.approx(beta.energy_per_decay_mev, rel=5e-3)
    assert el.beta_spectrum("Ac-225")[0].size == 0      # an alpha emitter: no continuum


def test_sampled_betas_follow_the_spectrum():
    energies, pdf = el.beta_spectrum("Y-90")
    e = el.sample_beta_energies("Y-90", 200_000, torch.Generator().manual_seed(3), device="cpu").numpy()
    mean = np.trapezoid(pdf * energies, energies) / np.trapezoid(pdf, energies)
    assert e.min() >= 0 and e.max() <= energies[-1]
    assert e.mean() == pytest.approx(mean, abs=4 * e.std() / math.sqrt(e.size))
    # empirical CDF against the exact CDF of the piecewise-linear density (Kolmogorov distance)
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(energies))])
    cdf /= cdf[-1]
    empirical = np.searchsorted(np.sort(e), energies) / e.size
    assert np.max(np.abs(empirical - cdf)) < 1.63 / math.sqrt(e.size) * 1.5


def test_electron_source_mixture_of_betas_and_lines():
    data = nuclide_data("Lu-177")
    src = el.electron_source("Lu-177")
    lines = data.emissions["IE"].per_decay + data.emissions["auger"].per_decay
    assert src.per_decay == pytest.approx(data.emissions["beta-"].per_decay + lines, rel=3e-3)
    assert src.energy_per_decay_mev == pytest.approx(data.mean_energy_mev("beta-", "IE", "auger"), rel=3e-3)
    e = src.sample(100_000, torch.Generator().manual_seed(1), device="cpu").numpy()
    assert e.mean() == pytest.approx(src.mean_energy_mev, abs=4 * e.std() / math.sqrt(e.size))
    ac, ac_data = el.electron_source("Ac-225"), nuclide_data("Ac-225")
    ac_lines = ac_data.emissions["IE"].per_decay + ac_data.emissions["auger"].per_decay
    assert ac.beta_per_decay == 0 and ac_lines > 0 and ac.per_decay == pytest.approx(ac_lines)


# --- stopping powers and ranges ------------------------------------------------------------------
def test_collision_stopping_power_and_csda_range_against_nist_estar():
    # NIST ESTAR, liquid water: collision stopping power (MeV cm2/g) and CSDA range (g/cm2)
    assert el.collision_stopping_power([0.01, 0.1, 1.0]) == pytest.approx([22.56, 4.115, 1.849], rel=0.02)
    assert el.csda_range_g_cm2([0.1, 1.0, 2.0]) == pytest.approx([0.0143, 0.437, 0.979], rel=0.03)
    # radiative losses: a small part below 3 MeV
    ratio = el.radiative_stopping_power(2.0) / el.stopping_power(2.0)
    assert 0.005 < ratio < 0.03


def test_mean_excitation_energy_and_density_effect():
    assert el.mean_excitation_energy_ev("water") == 75.0
    assert el.mean_excitation_energy_ev("soft tissue") == pytest.approx(72.3, abs=1.0)   # ESTAR ICRP soft tissue
    # C-bar and a of Sternheimer, Berger & Seltzer (1984) for water follow from I and x0, x1, m
    plasma = 28.816 * math.sqrt(el._z_over_a("water"))
    cbar = 2 * math.log(75.0 / plasma) + 1
    assert cbar == pytest.approx(3.5017, abs=2e-3)
    assert (cbar - 2 * math.log(10) * 0.24) / (2.8004 - 0.24) ** 3.4773 == pytest.approx(0.09116, rel=2e-3)
    no_delta = el.collision_stopping_power([0.1, 2.0], density_effect=False)
    with_delta = el.collision_stopping_power([0.1, 2.0])
    assert with_delta[0] == no_delta[0]                      # below x0 there is no density effect
    assert 0.02 < 1 - with_delta[1] / no_delta[1] < 0.06


def test_screened_rutherford_transport_integral_is_analytic_without_mott_factor():
    eta = np.array([1e-6, 1e-3, 0.1])
    numeric = el._mott_integral(eta, np.zeros(3), 0)
    assert numeric == pytest.approx(2 * (np.log1p(1 / eta) - 1 / (1 + eta)), rel=1e-3)
    # lambda_1 of water at 1 MeV against the closed form (no Mott factor) assembled here by hand:
    # 1/lambda_1 = sum_i N_A w_i / A_i * 2 pi Z(Z+1) (r_e mc^2 / p beta c)^2 [ln(1 + 1/eta) - 1/(1 + eta)]
    t, mc2, r_e, a0, alpha = 1.0, 0.51099895, 2.8179403262e-13, 0.529177210903e-8, 7.2973525693e-3
    pc = math.sqrt(t * (t + 2 * mc2))
    beta = pc / (t + mc2)
    inv = 0.0
    for z, w, a in ((1, 0.111894, 1.008), (8, 0.888106, 15.999)):
        eta = (197.3269804e-13 / (2 * pc * 0.885 * a0 * z ** (-1 / 3))) ** 2 * (1.13 + 3.76 * (alpha * z / beta) ** 2)
        inv += 6.02214076e23 * w / a * 2 * math.pi * z * (z + 1) * (r_e * mc2 / (pc * beta)) ** 2 * (
            math.log1p(1 / eta) - 1 / (1 + eta))
    assert float(el.transport_mean_free_path_g_cm2(1.0)[0]) == pytest.approx(1 / inv, rel=0.1)


# --- transport -----------------------------------------------------------------------------------
def test_energy_is_conserved_in_a_heterogeneous_grid_with_weights():
    gen = torch.Generator().manual_seed(0)
    density = torch.rand(6, 5, 4, generator=gen) * 1.8 + 0.001
    density[0] = 0.0012                                   # a slab of air
    edep = torch.zeros(6, 5, 4, dtype=torch.float64)
    n = 3000
    pos = torch.rand(n, 3, generator=gen) * torch.tensor([1.8, 1.5, 1.2])
    energy = torch.rand(n, generator=gen, dtype=torch.float64) * 2.2
    weight = torch.rand(n, generator=gen, dtype=torch.float64)
    escaped = el.transport_electrons(pos, _isotropic(n, gen), energy, density=density, voxel_cm=(0.3, 0.3, 0.3),
                                     edep=edep, generator=gen, weight=weight)
    assert escaped > 0
    assert float(edep.sum()) + escaped == pytest.approx(float((energy * weight).sum()), rel=1e-9)


def test_density_scaling_is_exact():
    """Twice the density in voxels half as wide: the same walk in mass units, the same edep."""
    out = []
    for scale in (1.0, 2.0):
        gen = torch.Generator().manual_seed(7)
        n = 2000
        pos = torch.full((n, 3), 0.45 / scale)
        edep = torch.zeros(3, 3, 3, dtype=torch.float64)
        esc = el.transport_electrons(pos, _isotropic(n, gen), torch.full((n,), 0.8),
                                     density=torch.full((3, 3, 3), scale), voxel_cm=(0.3 / scale,) * 3,
                                     edep=edep, generator=gen)
        out.append((edep, esc))
    assert torch.allclose(out[0][0], out[1][0], rtol=1e-6) and out[0][1] == pytest.approx(out[1][1], rel=1e-6)


def test_range_rejection_and_escape():
    gen = torch.Generator().manual_seed(2)
    n = 1000
    edep = torch.zeros(3, 3, 3, dtype=torch.float64)
    # 50 keV electrons (range 43 um) at the centre of a 3 mm voxel never leave it
    el.transport_electrons(torch.full((n, 3), 0.45), _isotropic(n, gen), torch.full((n,), 0.05),
                           density=torch.ones(3, 3, 3), voxel_cm=(0.3, 0.3, 0.3), edep=edep, generator=gen)
    emitted = float(torch.full((n,), 0.05).double().sum())
    assert float(edep[1, 1, 1]) == pytest.approx(emitted, rel=1e-12)
    # 2 MeV electrons (range 1 cm) leave a 0.1 mm voxel with nearly all their energy
    edep = torch.zeros(1, 1, 1, dtype=torch.float64)
    esc = el.transport_electrons(torch.full((n, 3), 0.005), _isotropic(n, gen), torch.full((n,), 2.0),
                                 density=torch.ones(1, 1, 1), voxel_cm=(0.01,) * 3, edep=edep, generator=gen)
    assert esc / (2.0 * n) > 0.97


def test_same_seed_same_result():
    def run():
        gen = torch.Generator().manual_seed(11)
        edep = torch.zeros(4, 4, 4, dtype=torch.float64)
        el.transport_electrons(torch.full((500, 3), 0.6), _isotropic(500, gen), torch.full((500,), 1.0),
                               density=torch.ones(4, 4, 4), voxel_cm=(0.3,) * 3, edep=edep, generator=gen)
        return edep
    assert torch.equal(run(), run())


def test_point_kernel_of_1_mev_electrons_in_water_has_berger_shape():
    """Scaled kernel F(x) = dE/d(r/r0) / E0: peak near 0.5-0.7 r0, nothing beyond r0."""
    gen = torch.Generator().manual_seed(5)
    r0 = float(el.csda_range_g_cm2(1.0, "water"))
    size, n = 25, 4000
    vox = 2.4 * r0 / size
    edep = torch.zeros(size, size, size, dtype=torch.float64)
    el.transport_electrons(torch.full((n, 3), size * vox / 2), _isotropic(n, gen), torch.full((n,), 1.0),
                           density=torch.ones(size, size, size), voxel_cm=(vox,) * 3, edep=edep, generator=gen,
                           material="water")
    c = (np.arange(size) + 0.5) * vox - size * vox / 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).ravel() / r0
    w = edep.numpy().ravel() / n
    assert w.sum() == pytest.approx(1.0, rel=1e-9)
    hist, edges = np.histogram(r, np.arange(0, 1.3, 0.1), weights=w)
    assert 0.45 <= edges[np.argmax(hist)] + 0.05 <= 0.75  # peak near 0.5-0.7 r0 (this module: 0.6)
    assert hist[edges[:-1] >= 1.0].sum() < 0.005          # little past r0 (hard-collision straggling only)
    order = np.argsort(r)
    x90 = r[order][np.searchsorted(np.cumsum(w[order]), 0.9)]
    assert 0.7 < x90 < 0.85                              # this module: 0.79 (41^3 grid)


def test_absorbed_fractions_in_a_3_mm_voxel():
    af_lu = _absorbed_fraction("Lu-177", 0.3, 20_000)
    af_y = _absorbed_fraction("Y-90", 0.3, 20_000)
    assert 0.86 < af_lu < 0.91          # this module: 0.880 (1e5 electrons)
    assert 0.26 < af_y < 0.32           # this module: 0.283


def test_electron_is_local_and_escape_estimate():
    assert el.electron_is_local("Lu-177", 4.8) and not el.electron_is_local("Lu-177", 3.0)
    assert not el.electron_is_local("Y-90", 4.8) and el.electron_is_local("Ac-225", 3.0)
    assert el.electron_escape_fraction("Lu-177", 3.0) == pytest.approx(1 - 0.881, abs=0.01)


def test_bad_input():
    with pytest.raises(InputError, match="unknown electron medium"):
        el.csda_range_g_cm2(1.0, "bone")
    with pytest.raises(InputError, match="positive and finite"):
        el.collision_stopping_power(-1.0)
    with pytest.raises(InputError, match="not positive"):
        el.electron_is_local("Lu-177", 0.0)
    with pytest.raises(InputError, match="step_fraction"):
        el.transport_electrons(torch.zeros(1, 3), torch.tensor([[0.0, 0, 1]]), torch.ones(1),
                               density=torch.ones(1, 1, 1), voxel_cm=(1, 1, 1),
                               edep=torch.zeros(1, 1, 1, dtype=torch.float64), generator=torch.Generator(),
                               step_fraction=0.9)
    with pytest.raises(InputError, match="emits no betas"):
        el.sample_beta_energies("Ac-225", 10, torch.Generator())
