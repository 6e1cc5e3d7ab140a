"""Forward solver of liposomal/free doxorubicin transport and the steady IFP (core.drug_release.transport/pressure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage
from scipy.special import i0

from core.drug_release.outcomes import concentration_vs_distance, exposure_auc, penetration_distance_um
from core.drug_release.pressure import (CM2_PER_MMHG_S, CM_PER_MMHG_S, FluidParams, TissueGrid,
                                        effective_pressure_mmhg, filtration_rate_per_h, interstitial_pressure,
                                        interstitial_velocity, lymph_drainage_per_h)
from core.drug_release.transport import PlasmaInput, TransportParams, simulate
from core.errors import InputError

NO_UPTAKE = dict(uptake_per_h=0.0, efflux_per_h=0.0, release_per_h=0.0)


def _closed_grid(shape, h=5.0):
    return TissueGrid(h, np.zeros(shape), np.ones(shape, bool))


def _ball(dim, n, radius_vox):
    g = np.indices((n,) * dim) - (n - 1) / 2
    return np.sqrt((g ** 2).sum(0)), radius_vox


def _gaussian(r2, sigma, dim):
    return np.exp(-r2 / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2) ** (dim / 2)


# ----------------------------------------------------------------------------- units and IFP
def test_unit_conversions_of_baxter_jain_defaults():
    f = FluidParams()
    assert f.hydraulic_conductivity_um2_per_mmhg_h / (1e8 * 3600) == pytest.approx(4.13e-8)   # cm²/(mmHg s)
    assert f.vessel_conductivity_um_per_mmhg_h / (1e4 * 3600) == pytest.approx(2.8e-7)         # cm/(mmHg s)
    assert CM2_PER_MMHG_S == pytest.approx(3.6e11) and CM_PER_MMHG_S == pytest.approx(3.6e7)
    assert effective_pressure_mmhg(f) == pytest.approx(15.6 - 0.82 * 5)
    # alpha of a 1 cm tumour with S/V = 200 /cm, computed in cgs and in the module's units
    alpha_cgs = 1.0 * math.sqrt(2.8e-7 * 200 / 4.13e-8)
    alpha_um = 1e4 * math.sqrt(f.vessel_conductivity_um_per_mmhg_h * 200e-4 / f.hydraulic_conductivity_um2_per_mmhg_h)
    assert alpha_um == pytest.approx(alpha_cgs) and alpha_cgs == pytest.approx(36.8, abs=0.1)
    p = TransportParams()
    assert p.diffusion_free_um2_per_h / (1e8 * 3600) == pytest.approx(1e-7)


def _isolated_tumour(dim, n, radius_vox, alpha, h=50.0):
    """Uniform tumour with p ~ 0 just outside it (very conductive, strongly drained host)."""
    r, _ = _ball(dim, n, radius_vox)
    tum = r < radius_vox
    k = 14868.0
    lp = FluidParams().vessel_conductivity_um_per_mmhg_h
    radius = radius_vox * h
    sv = np.where(tum, k * alpha ** 2 / radius ** 2 / lp, 0.0)
    lym = np.where(tum, 0.0, 1e4 * k / h ** 2 / FluidParams().lymphatic_conductivity_um_per_mmhg_h)
    fluid = FluidParams(hydraulic_conductivity_um2_per_mmhg_h=np.where(tum, k, 100 * k))
    grid = TissueGrid(h, sv, tum, lym)
    return grid, fluid, r / radius_vox


@pytest.mark.parametrize("dim,n,radius,alpha", [(3, 24, 10.5, 3.0), (2, 64, 28.0, 5.0)])
def test_ifp_matches_baxter_jain_analytic(dim, n, radius, alpha):
    grid, fluid, x = _isolated_tumour(dim, n, radius, alpha)
    p = interstitial_pressure(grid, fluid)
    pe = effective_pressure_mmhg(fluid)
    xs = np.maximum(x, 1e-9)
    ana = pe * (1 - np.sinh(alpha * xs) / (xs * np.sinh(alpha))) if dim == 3 else pe * (1 - i0(alpha * xs) / i0(alpha))
    inner = x <= 0.8
    assert np.max(np.abs(p - ana)[inner]) / pe < 0.03
    centre = (1 - alpha / math.sinh(alpha)) if dim == 3 else (1 - 1 / i0(alpha))
    assert p.max() / pe == pytest.approx(centre, rel=0.02)


def test_ifp_plateau_rises_with_alpha_and_falls_at_periphery():
    cent = []
    for alpha in (2.0, 6.0):
        grid, fluid, x = _isolated_tumour(3, 20, 8.5, alpha)
        p = interstitial_pressure(grid, fluid)
        cent.append(p[x <= 0.2].mean())
        assert p[x <= 0.3].mean() > 2 * p[(x > 0.85) & (x < 1)].mean()
    assert cent[1] > cent[0] * 1.5            # analytic 0.72 vs 0.45 of p_e
    assert cent[1] / effective_pressure_mmhg() == pytest.approx(1 - 6 / math.sinh(6), abs=0.05)


def test_darcy_velocity_balances_filtration_and_lymph():
    rng = np.random.default_rng(0)
    shape = (20, 24)
    tum = np.zeros(shape, bool)
    tum[4:16, 5:18] = True
    sv = np.where(tum, rng.uniform(0, 0.04, shape), 0.0)
    grid = TissueGrid(40.0, sv, tum, np.where(tum, 0.0, 0.01))
    fluid = FluidParams.tumour_and_host(tum)
    p = interstitial_pressure(grid, fluid)
    uy, ux = interstitial_velocity(p, grid, fluid)
    div = (np.diff(uy, axis=0) + np.diff(ux, axis=1)) / grid.spacing_um
    source = filtration_rate_per_h(p, grid, fluid) - lymph_drainage_per_h(p, grid, fluid)
    assert np.allclose(div, source, atol=1e-9 * np.abs(source).max())
    assert p.min() >= 0 and p[tum].mean() > p[~tum].mean()


# ----------------------------------------------------------------------------- analytic transport
@pytest.mark.parametrize("dim,n,tol", [(2, 64, 0.01), (3, 24, 0.03)])
def test_diffusion_from_point_source_matches_gaussian(dim, n, tol):
    h, d = 5.0, 36000.0
    sigma0 = 2.0 * h
    sigma1 = 5.0 * h if dim == 2 else 3.5 * h
    t_end = (sigma1 ** 2 - sigma0 ** 2) / (2 * d)
    r, _ = _ball(dim, n, 0)
    r2 = (r * h) ** 2
    c0 = 1e6 * _gaussian(r2, sigma0, dim)
    params = TransportParams(diffusion_free_um2_per_h=d, **NO_UPTAKE)
    sol = simulate(_closed_grid((n,) * dim), params, t_end_h=t_end, dt_h=t_end / 80, initial={"free": c0})
    ana = 1e6 * _gaussian(r2, sigma1, dim)
    assert np.max(np.abs(sol.free[-1] - ana)) / ana.max() < tol
    # and it is not trivially close: the initial field is far from the final one
    assert np.max(np.abs(c0 - ana)) / ana.max() > 1.0


def test_mass_conserved_without_sources():
    rng = np.random.default_rng(1)
    shape = (30, 34)
    params = TransportParams(diffusion_free_um2_per_h=rng.uniform(1e3, 5e4, shape),
                             diffusion_carrier_um2_per_h=rng.uniform(10, 500, shape),
                             interstitial_fraction=rng.uniform(0.2, 0.6, shape),
                             release_per_h=rng.uniform(0, 0.5, shape), uptake_per_h=3.0, efflux_per_h=0.5)
    init = {"encapsulated": rng.uniform(0, 5, shape), "free": rng.uniform(0, 2, shape)}
    sol = simulate(_closed_grid(shape), params, t_end_h=2.0, dt_h=0.05, initial=init)
    total = sol.species("total").sum(axis=(1, 2))
    assert np.max(np.abs(total / total[0] - 1)) < 1e-10
    assert sol.encapsulated[-1].sum() < 0.9 * init["encapsulated"].sum()       # release did happen
    assert sol.bound[-1].sum() > 0


@pytest.mark.parametrize("dim,n", [(2, 40), (3, 24)])
def test_ledger_balances_with_plasma_sources(dim, n):
    rng = np.random.default_rng(2)
    shape = (n,) * dim
    r, _ = _ball(dim, n, 0)
    tum = r < n / 3
    sv = np.where(rng.random(shape) < 0.15, rng.uniform(0.005, 0.05, shape), 0.0)
    grid = TissueGrid(30.0, sv, tum, np.where(tum, 0.0, 0.005))
    params = TransportParams(release_per_h=np.where(tum, 0.3, 0.02), fluid=FluidParams.tumour_and_host(tum))
    plasma = PlasmaInput(PlasmaInput.liposomal(50.0, 15.0).carrier_uM, PlasmaInput.free_drug(20.0).free_uM)
    sol = simulate(grid, params, plasma, t_end_h=1.5, dt_h=0.05)
    led = sol.ledger
    assert led.relative_imbalance() < 1e-8
    assert led.carrier_from_plasma[-1] > 0 and led.free_to_boundary[-1] > 0 and led.carrier_to_lymph[-1] > 0
    # amounts of the ledger are the saved fields summed
    assert led.free[-1] == pytest.approx(sol.free[-1].sum() * grid.voxel_volume)
    # an independently wrong ledger would be caught: dropping an outflow breaks the balance
    res = led.residuals()["total"] - led.free_to_boundary
    assert np.max(np.abs(res)) > 1e3 * led.relative_imbalance() * led.free_from_plasma[-1]


def test_first_order_release_alone():
    k = 0.7
    shape = (6, 6)
    params = TransportParams(release_per_h=k, uptake_per_h=0.0, efflux_per_h=0.0)
    t = np.linspace(0, 3, 13)
    errors = []
    for dt in (0.02, 0.01):
        sol = simulate(_closed_grid(shape), params, t_end_h=3.0, dt_h=dt, save_times_h=t, initial={"encapsulated": 2.0})
        assert np.allclose(sol.free[:, 3, 3], 2.0 * (1 - np.exp(-k * t)), rtol=1e-3, atol=1e-6)
        assert np.allclose(sol.encapsulated[:, 0, 0], 2.0 * np.exp(-k * t), rtol=1e-3)
        errors.append(np.max(np.abs(sol.free[:, 3, 3] - 2.0 * (1 - np.exp(-k * t)))))
    assert 3.0 < errors[0] / errors[1] < 5.0          # second order in time (BDF2)


def test_release_uptake_efflux_match_matrix_exponential():
    kr, kon, koff = 0.4, 3.0, 0.5
    params = TransportParams(release_per_h=kr, uptake_per_h=kon, efflux_per_h=koff)
    sol = simulate(_closed_grid((5, 5)), params, t_end_h=2.0, dt_h=0.01, save_times_h=[2.0],
                   initial={"encapsulated": 1.0})
    a = np.array([[-kr, 0, 0], [kr, -kon, koff], [0, kon, -koff]])
    ref = scipy.linalg.expm(2.0 * a) @ np.array([1.0, 0, 0])
    got = [sol.encapsulated[0, 2, 2], sol.free[0, 2, 2], sol.bound[0, 2, 2]]
    assert np.allclose(got, ref, rtol=1e-3)


def test_free_drug_penetration_distance():
    n, h = 64, 5.0
    r = np.hypot(*(np.indices((n, n)) - (n - 1) / 2)) * h
    vessel = r <= 10.0
    grid = TissueGrid(h, np.where(vessel, 2 / 10.0, 0.0), np.ones((n, n), bool))   # S/V = 2/r of a capillary
    sol = simulate(grid, TransportParams(), PlasmaInput.free_drug(100.0), t_end_h=2.0, dt_h=0.02)
    dist = ndimage.distance_transform_edt(~vessel) * h
    centres, prof, _ = concentration_vs_distance(exposure_auc(sol, "free"), dist, np.arange(2.5, 160, 5.0))
    pen = penetration_distance_um(centres, prof)
    assert 30.0 <= pen <= 100.0
    assert np.all(np.diff(prof[np.isfinite(prof)]) < 0)       # falls monotonically away from the vessel


# ----------------------------------------------------------------------------- bad input
def test_input_errors_say_what_to_fix():
    grid = _closed_grid((8, 8))
    with pytest.raises(InputError, match="uptake_per_h = -1"):
        simulate(grid, TransportParams(uptake_per_h=-1.0), t_end_h=1, dt_h=0.01)
    with pytest.raises(InputError, match="NaN"):
        simulate(grid, TransportParams(diffusion_free_um2_per_h=float("nan")), t_end_h=1, dt_h=0.01)
    with pytest.raises(InputError, match="fastest reaction time scale"):
        simulate(grid, TransportParams(uptake_per_h=20.0), t_end_h=1, dt_h=0.1)
    with pytest.raises(InputError, match=r"shape \(4, 4\)"):
        simulate(grid, TransportParams(release_per_h=np.ones((4, 4))), t_end_h=1, dt_h=0.01)
    with pytest.raises(InputError, match="tumour mask"):
        interstitial_pressure(TissueGrid(5.0, np.zeros((8, 8)), np.ones((8, 9), bool)))
    with pytest.raises(InputError, match="inside the tumour"):
        interstitial_pressure(TissueGrid(5.0, np.zeros((8, 8)), np.ones((8, 8), bool), 0.1))
    with pytest.raises(InputError, match="spacing_um"):
        interstitial_pressure(TissueGrid(0.0, np.zeros((8, 8)), np.ones((8, 8), bool)))
    with pytest.raises(InputError, match="plasma free"):
        simulate(grid, plasma=PlasmaInput(free_uM=lambda t: -np.ones_like(t)), t_end_h=1, dt_h=0.01)
    with pytest.raises(InputError, match="save_times_h"):
        simulate(grid, t_end_h=1, dt_h=0.01, save_times_h=[0.0, 2.0])
    with pytest.raises(InputError, match="pressure_mmhg"):
        simulate(grid, t_end_h=1, dt_h=0.01, pressure_mmhg=np.zeros((3, 3)))
    with pytest.raises(InputError, match="dose_uM0"):
        PlasmaInput.liposomal(-5.0)
    with pytest.raises(InputError, match="fractions"):
        PlasmaInput.free_drug(5.0, half_lives_h=(0.1, 5.0), fractions=(0.5, 0.7))
