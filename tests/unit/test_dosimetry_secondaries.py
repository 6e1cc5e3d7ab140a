"""Class-II electron physics: Møller delta rays, bremsstrahlung and their place in the walk."""

import math

import numpy as np
import pytest
import torch

import core.dosimetry.electrons as el
import core.dosimetry.secondaries as sec

_MC2 = 0.51099895


def _moller_numeric(t, delta):
    """Direct quadrature of the Møller cross section (per electron) and its energy moment."""
    tau = t / _MC2
    beta2 = tau * (tau + 2) / (tau + 1) ** 2
    eps = np.geomspace(delta / t, 0.5, 200_001)
    g = (1 / eps ** 2 + 1 / (1 - eps) ** 2 + (tau / (tau + 1)) ** 2
         - (2 * tau + 1) / (tau + 1) ** 2 / (eps * (1 - eps)))
    k = 2 * math.pi * (2.8179403262e-13) ** 2 * _MC2 / beta2
    return k / t * np.trapezoid(g, eps), k * np.trapezoid(eps * g, eps)


@pytest.mark.parametrize("t", [0.1, 0.5, 2.0])
def test_moller_closed_forms_match_quadrature(t):
    sigma, hard = sec.moller_hard(t, 0.03)
    s_num, h_num = _moller_numeric(t, 0.03)
    assert sigma[0] == pytest.approx(s_num, rel=1e-6)
    assert hard[0] == pytest.approx(h_num, rel=1e-6)


def test_restricted_loss_plus_hard_losses_is_the_total_stopping_power():
    log_e, log_r, *_ = el._tables_np("water", True)
    _, log_r_total, *_ = el._tables_np("water", False)
    t = np.exp(log_e)
    # the restricted range is longer (hard losses are not in it), by a few per cent at 1 MeV
    i = np.searchsorted(t, 1.0)
    ratio = math.exp(log_r[i] - log_r_total[i])
    assert 1.02 < ratio < 1.25
    # mean loss is conserved: L + n_e H_M + hard radiative part = S_col + S_rad
    n_e = el._NA * el._z_over_a("water")
    _, hard = sec.moller_hard(1.0)
    s_rad = el.radiative_stopping_power(1.0)
    restricted = el.collision_stopping_power(1.0) - n_e * hard[0] + s_rad * sec.PHOTON_CUTOFF_MEV
    assert restricted + n_e * hard[0] + s_rad * (1 - sec.PHOTON_CUTOFF_MEV) == pytest.approx(
        float(el.stopping_power(1.0)), rel=1e-12)


def test_sampled_moller_fractions_follow_the_cross_section():
    gen = torch.Generator().manual_seed(3)
    t = 1.0
    eps = sec.sample_moller_fraction(torch.full((200_000,), t, dtype=torch.float64), gen, 0.03).numpy()
    assert eps.min() >= 0.03 and eps.max() <= 0.5
    # mean transfer against the ratio of the closed-form integrals
    sigma, hard = sec.moller_hard(t, 0.03)
    assert eps.mean() * t == pytest.approx(hard[0] / sigma[0], rel=0.01)


def test_kinematics_and_photon_sampling():
    t = torch.tensor([1.0, 1.0], dtype=torch.float64)
    w = torch.tensor([0.5, 0.03], dtype=torch.float64)
    cos_p, cos_s = sec.moller_cosines(t, w)
    assert float(cos_p[0]) == pytest.approx(float(cos_s[0]))      # symmetric split: same angle
    assert float(cos_s[1]) < float(cos_p[1])                       # a soft delta ray goes sideways
    gen = torch.Generator().manual_seed(1)
    e = torch.full((100_000,), 2.0, dtype=torch.float64)
    k = sec.sample_brems_energy(e, gen).numpy()
    assert k.min() >= sec.PHOTON_CUTOFF_MEV and k.max() <= 2.0
    # flat k dsigma/dk: mean (T - kc)/ln(T/kc)
    kc = sec.PHOTON_CUTOFF_MEV
    assert k.mean() == pytest.approx((2.0 - kc) / math.log(2.0 / kc), rel=0.02)
    fast = sec.sample_brems_cosine(e, gen).numpy().mean()
    slow = sec.sample_brems_cosine(torch.full((100_000,), 0.01, dtype=torch.float64), gen).numpy().mean()
    assert fast > 0.8 and abs(slow) < 0.25                         # forward at 2 MeV, broad at 10 keV


def _yield(t):
    """Radiation yield Y(T) = (1/T) int_0^T S_rad/S_tot dT' (the ESTAR definition)."""
    e = np.linspace(1e-3, t, 4000)
    return float(np.trapezoid(el.radiative_stopping_power(e) / el.stopping_power(e), e) / t)


def _point_source(n, energy, secondaries, split=1, seed=5):
    gen = torch.Generator().manual_seed(seed)
    r0 = float(el.csda_range_g_cm2(energy, "water"))
    size = 31
    vox = 2.4 * r0 / size
    edep = torch.zeros(size, size, size, dtype=torch.float64)
    c = torch.randn(n, 3, generator=gen)
    bank: list = []
    escaped = el.transport_electrons(torch.full((n, 3), size * vox / 2), c / c.norm(dim=1, keepdim=True),
                                     torch.full((n,), energy), density=torch.ones(size, size, size),
                                     voxel_cm=(vox,) * 3, edep=edep, generator=gen, material="water",
                                     secondaries=secondaries, photon_bank=bank, brems_split=split)
    radiated = sum(float((e.double() * w).sum()) for _, _, e, w in bank)
    return edep, escaped, radiated, vox, r0


def test_energy_is_conserved_with_delta_rays_and_photons():
    for split in (1, 4):
        edep, escaped, radiated, *_ = _point_source(3000, 2.0, True, split)
        assert float(edep.sum()) + escaped + radiated == pytest.approx(3000 * 2.0, rel=1e-9)


def test_radiated_energy_matches_the_radiation_yield():
    _, _, radiated, *_ = _point_source(20_000, 2.0, True, split=4)
    assert radiated / (20_000 * 2.0) == pytest.approx(_yield(2.0), rel=0.1)


def test_straggling_puts_energy_beyond_the_csda_range():
    out = {}
    for secondaries in (False, True):
        edep, _, _, vox, r0 = _point_source(6000, 1.0, secondaries)
        size = edep.shape[0]
        c = (np.arange(size) + 0.5) * vox - size * vox / 2
        r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2) / r0
        out[secondaries] = float(edep.numpy()[r > 0.95].sum() / edep.sum())
    assert out[False] < 0.002 < out[True]
