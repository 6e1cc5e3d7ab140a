"""Drug-release scenarios, piecewise transport and the micro window (core.drug_release.scenarios/microwindow)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from core.drug_release.microwindow import (default_window_voxel, expected_vessels_per_voxel, micro_window, params_at,
                                           vessel_centres_um, window_outcomes, window_periods)
from core.drug_release.outcomes import exposure_auc, lethal_fraction
from core.drug_release.piecewise import simulate_piecewise
from core.drug_release.pressure import FluidParams, TissueGrid
from core.drug_release.release import release_law
from core.drug_release.scenarios import (DEFAULT_SETTINGS, SCENARIOS, ScenarioSettings, compare_scenarios,
                                         run_scenario, run_window, scenario_setup)
from core.drug_release.transport import PlasmaInput, TransportParams, simulate
from core.errors import InputError

N = 24


@pytest.fixture(scope="module")
def tumour_grid():
    """A 24 x 24 grid of 100 µm voxels: a disc tumour of radius 8 voxels, denser vessels at its rim."""
    y, x = np.indices((N, N)) - (N - 1) / 2
    r = np.hypot(y, x)
    tum = r < 8.0
    sv = np.where(tum, 0.008 + 0.02 * (r / 8.0) ** 2, 0.012)
    grid = TissueGrid(100.0, sv, tum, lymphatic_surface_per_um=np.where(tum, 0.0, 0.005))
    base = TransportParams(interstitial_fraction=np.where(tum, 0.4, 0.2), fluid=FluidParams.tumour_and_host(tum))
    return grid, base


def _short(name, t_end_h):
    return dataclasses.replace(DEFAULT_SETTINGS[name], t_end_h=t_end_h)


# ----------------------------------------------------------------------------- piecewise
def _window_grid():
    sv = np.zeros((12, 12))
    sv[6, 6] = 0.3
    return TissueGrid(5.0, sv, np.ones((12, 12), bool))


def test_piecewise_one_period_equals_simulate_and_two_periods_equal_a_manual_chain():
    g = _window_grid()
    p = TransportParams(release_per_h=0.5)
    plasma = PlasmaInput.liposomal(50.0, half_life_h=2.0)
    save = np.round(np.arange(0.0, 1.0 + 1e-9, 0.1), 9)
    one = simulate(g, p, plasma, t_end_h=1.0, dt_h=0.05, save_times_h=save, pressure_mmhg=0.0)
    pw1 = simulate_piecewise(g, plasma, [(1.0, p, 0.05)], save_times_h=save, pressure_mmhg=0.0)
    for k in ("encapsulated", "free", "bound"):
        np.testing.assert_allclose(getattr(pw1, k), getattr(one, k), rtol=0, atol=1e-10)
    # two periods with the same parameters = two simulate runs chained by hand (shifted plasma)
    pw2 = simulate_piecewise(g, plasma, [(0.4, p, 0.05), (1.0, p, 0.05)], save_times_h=save, pressure_mmhg=0.0)
    a = simulate(g, p, plasma, t_end_h=0.4, dt_h=0.05, save_times_h=save[save <= 0.4 + 1e-9], pressure_mmhg=0.0)
    shifted = PlasmaInput(lambda t: plasma.carrier_uM(np.asarray(t) + 0.4), plasma.free_uM)
    b = simulate(g, p, shifted, t_end_h=0.6, dt_h=0.05, save_times_h=save[save > 0.4 + 1e-9] - 0.4,
                 pressure_mmhg=0.0, initial={k: getattr(a, k)[-1] for k in ("encapsulated", "free", "bound")})
    np.testing.assert_allclose(pw2.times_h, save, atol=1e-12)
    for k in ("encapsulated", "free", "bound"):
        np.testing.assert_allclose(getattr(pw2, k), np.concatenate([getattr(a, k), getattr(b, k)]), rtol=0, atol=1e-10)
    assert pw2.ledger.relative_imbalance() < 1e-10
    # ... and equal to one simulate up to the BDF2 restart at 0.4 h (first order in dt), which shrinks with dt
    errs = []
    for dt in (0.05, 0.0125):
        one = simulate(g, p, plasma, t_end_h=1.0, dt_h=dt, save_times_h=save, pressure_mmhg=0.0)
        two = simulate_piecewise(g, plasma, [(0.4, p, dt), (1.0, p, dt)], save_times_h=save, pressure_mmhg=0.0)
        errs.append(np.abs(two.free - one.free).max() / one.free.max())
    assert errs[0] < 2e-3 and errs[1] < errs[0] / 4


# ----------------------------------------------------------------------------- micro window
def test_vessel_count_matches_poisson_mean_and_coverage_matches_boolean_model():
    sv = np.array([[0.0, 0.01, 0.02], [0.03, 0.02, 0.005], [0.015, 0.0, 0.025]])
    lam = expected_vessels_per_voxel(sv, 100.0, 6.0)
    assert lam[1, 1] == pytest.approx(0.02 * 1e4 / (2 * math.pi * 6.0))
    counts = np.array([len(vessel_centres_um(sv, (1, 1), np.random.default_rng(s), voxel_um=100.0, n_voxels=3))
                       for s in range(400)])
    mean_total = float(lam.sum())                         # Poisson: mean = variance
    assert abs(counts.mean() - mean_total) < 4 * math.sqrt(mean_total / counts.size)
    assert counts.var() == pytest.approx(mean_total, rel=0.25)
    # uniform S/V: P(pixel centre covered) = 1 - exp(-f_v), f_v = (S/V) r_c / 2 (Boolean model)
    uni = np.full((7, 7), 0.02)
    frac = [micro_window(uni, (3, 3), voxel_um=100.0, seed=s).vessels[50:75, 50:75].mean() for s in range(150)]
    expect = 1 - math.exp(-0.02 * 6.0 / 2)
    assert abs(np.mean(frac) - expect) < 4 * np.std(frac) / math.sqrt(len(frac))
    g = micro_window(uni, (3, 3), voxel_um=100.0, seed=3)
    assert set(np.unique(g.vessel_surface_per_um)) == {0.0, 2.0 / 6.0} and g.shape == (125, 125)
    np.testing.assert_array_equal(g.vessel_surface_per_um,
                                  micro_window(uni, (3, 3), voxel_um=100.0, seed=3).vessel_surface_per_um)
    assert not micro_window(np.zeros((5, 5)), (2, 2), voxel_um=100.0, seed=0).vessels.any()


def test_window_parameters_are_those_of_the_voxel(tumour_grid):
    grid, base = tumour_grid
    ph = np.where(grid.tumour, 6.4 + 0.05 * np.arange(N)[None, :] / N, 7.4)
    setup = scenario_setup("ph_sensitive", grid, base, ph=ph, settings=_short("ph_sensitive", 2.0))
    ij = (12, 5)
    (t_end, p, dt), = window_periods(setup.pieces, ij, 1.0)
    assert t_end == 1.0 and dt == 0.05
    assert p.release_per_h == pytest.approx(float(setup.release_per_h[ij]))
    assert p.interstitial_fraction == 0.4 and p.fluid.osmotic_reflection == 0.82
    assert params_at(base, (0, 0)).fluid.osmotic_reflection == 0.91


# ----------------------------------------------------------------------------- scenarios
def test_ph_sensitive_release_is_faster_in_acid(tumour_grid):
    grid, base = tumour_grid
    released, rates = [], []
    for ph_t in (6.2, 6.6, 7.0, 7.4):
        ph = np.where(grid.tumour, ph_t, np.nan)              # NaN outside the tumour is allowed
        s = scenario_setup("ph_sensitive", grid, base, ph=ph, settings=_short("ph_sensitive", 3.0))
        rates.append(float(s.release_per_h[grid.tumour].mean()))
        released.append(float(run_scenario(s, grid).ledger.released[-1]))
    assert np.all(np.diff(rates) < 0) and np.all(np.diff(released) < 0)
    assert released[0] > 5 * released[-1]


def test_free_drug_has_no_carrier(tumour_grid):
    grid, base = tumour_grid
    s = scenario_setup("free", grid, base)
    sol = run_scenario(s, grid)
    assert np.all(sol.encapsulated == 0) and sol.ledger.carrier_from_plasma[-1] == 0
    assert np.all(s.release_per_h == 0) and sol.free.max() > 0
    assert sol.ledger.relative_imbalance() < 1e-8


def test_thermosensitive_raises_free_drug_exposure_in_the_heated_tumour(tumour_grid):
    grid, base = tumour_grid
    lip = scenario_setup("liposome", grid, base, settings=_short("liposome", 3.0))
    hot = scenario_setup("thermosensitive", grid, base, settings=_short("thermosensitive", 3.0))
    heated = hot.temperature_c > 41.0
    assert heated.sum() >= 8 and np.all(grid.tumour[heated])
    # intravascular release in the hottest voxel: c_pL(t) (1 - exp(-k(T) tau)), plasma half-life 2 h
    ij = np.unravel_index(np.argmax(hot.temperature_c), grid.shape)
    k = float(hot.release_per_h[ij])
    expect = 100.0 * 2 ** (-0.5 / 2.0) * -math.expm1(-k * 10.0 / 3600.0)
    assert hot.local_plasma_free(0.5)[ij] == pytest.approx(expect, rel=1e-12)
    law = release_law("thermosensitive").parameters             # logistic in T, 50 % in 20 s at 42 °C
    t = float(hot.temperature_c[ij])
    assert 41.0 < t < 42.0
    assert k == pytest.approx(law["k_low_per_h"] + (law["k_high_per_h"] - law["k_low_per_h"])
                              / (1 + math.exp(-(t - law["tm_c"]) / law["width_c"])), rel=1e-12)
    a_lip = exposure_auc(run_scenario(lip, grid), "free")
    sol_hot = run_scenario(hot, grid)
    a_hot = exposure_auc(sol_hot, "free")
    assert a_hot[heated].mean() > 5 * a_lip[heated].mean()
    assert sol_hot.ledger.relative_imbalance() < 1e-8


def test_radiotherapy_lowers_ifp_and_raises_carrier_extravasation(tumour_grid):
    grid, base = tumour_grid
    lip = scenario_setup("liposome", grid, base, settings=_short("liposome", 4.0))
    rt = scenario_setup("liposome_rt", grid, base, settings=_short("liposome_rt", 4.0))
    np.testing.assert_allclose(rt.pressure_mmhg, 0.7 * lip.pressure_mmhg, rtol=1e-14)
    assert rt.pressure_mmhg[grid.tumour].mean() < lip.pressure_mmhg[grid.tumour].mean() - 1.0
    s_lip, s_rt = run_scenario(lip, grid), run_scenario(rt, grid)
    assert s_rt.ledger.carrier_from_plasma[-1] > 1.2 * s_lip.ledger.carrier_from_plasma[-1]
    # independent: the carrier inflow rate at t=0 is sum[(P S/V + (1 - sigma) J_v+) c_p0] V
    fl = base.fluid
    pe = fl.vascular_pressure_mmhg - fl.osmotic_reflection * (fl.plasma_oncotic_mmhg - fl.interstitial_oncotic_mmhg)
    sv = grid.vessel_surface_per_um

    def inflow(p):
        jv = np.maximum(fl.vessel_conductivity_um_per_mmhg_h * sv * (pe - p), 0)
        return float(np.sum(base.permeability_carrier_um_per_h * sv + 0.1 * jv)) * 100.0 * 1e4
    ratio = inflow(rt.pressure_mmhg) / inflow(lip.pressure_mmhg)
    early = s_rt.ledger.carrier_from_plasma[1] / s_lip.ledger.carrier_from_plasma[1]
    assert early == pytest.approx(ratio, rel=1e-6)


def test_compare_scenarios_outcomes_are_consistent(tumour_grid):
    grid, base = tumour_grid
    seen = []
    out = compare_scenarios(grid, base, ph=None, names=["free", "thermosensitive"], window_voxels=3, seed=2,
                            settings={"thermosensitive": _short("thermosensitive", 2.0)},
                            progress=lambda f, m: seen.append(f))
    assert [o.name for o in out] == ["free", "thermosensitive"] and seen[-1] == 1.0
    ij = default_window_voxel(grid)
    vals = grid.vessel_surface_per_um[grid.tumour]
    assert grid.vessel_surface_per_um[ij] == np.sort(vals)[(vals.size - 1) // 2]
    for o in out:
        assert o.label == SCENARIOS[o.name] and o.window_ij == ij
        assert o.lethal_fraction_voxel == lethal_fraction(o.auc_uM_h, grid.tumour, 1.0)
        assert o.median_auc_uM_h == pytest.approx(np.median(o.auc_uM_h[grid.tumour]))
        w = o.window
        assert w["window_auc_uM_h"].shape == (75, 75)
        assert 0 <= o.lethal_fraction_window <= 1 and np.nansum(w["n"]) > 0
    # the free-drug window profile falls with distance from vessels
    prof = out[0].window["auc_uM_h"]
    assert prof[0] == np.nanmax(prof) and prof[0] > 1.5 * np.nanmin(prof)
    # run_window reproduces the window of the comparison
    win = micro_window(grid.vessel_surface_per_um, ij, voxel_um=100.0, n_voxels=3, seed=2)
    sol = run_window(scenario_setup("free", grid, base), win, ij)
    again = window_outcomes(win, sol, threshold_uM_h=1.0)
    assert again["lethal_fraction"] == out[0].lethal_fraction_window


def test_phantom_settings_agree_with_the_scenario_defaults():
    from core.phantoms.drug_tumour import SCENARIO_SETTINGS
    from core.phantoms.drug_tumour_vessels import HEATING, TRANSIT_TIME_S
    for name, s in SCENARIO_SETTINGS.items():
        d = DEFAULT_SETTINGS[name]
        assert (s["dose_uM"], s["half_life_h"], s["t_end_h"]) == (d.dose_uM, d.half_life_h, d.t_end_h)
    h = DEFAULT_SETTINGS["thermosensitive"].heating
    assert HEATING == dict(temperature_c=h.temperature_c, heating_h=h.duration_h, radius_frac=h.radius_frac,
                           edge_mm=h.edge_mm) and TRANSIT_TIME_S == h.transit_time_s


def test_bad_inputs_say_what_to_fix(tumour_grid):
    grid, base = tumour_grid
    with pytest.raises(InputError, match="unknown scenario"):
        scenario_setup("hyperthermia", grid, base)
    with pytest.raises(InputError, match="needs an extracellular pH"):
        scenario_setup("ph_sensitive", grid, base)
    ph = np.full(grid.shape, 6.8)
    ph[12, 12] = np.nan
    with pytest.raises(InputError, match="NaN or infinite in 1 tumour"):
        scenario_setup("ph_sensitive", grid, base, ph=ph)
    with pytest.raises(InputError, match="pH map has shape"):
        scenario_setup("ph_sensitive", grid, base, ph=np.full((5, 5), 7.0))
    with pytest.raises(InputError, match="shape"):
        scenario_setup("liposome", grid, dataclasses.replace(base, interstitial_fraction=np.full((3, 3), 0.3)))
    with pytest.raises(InputError, match="ifp_reduction"):
        ScenarioSettings(dose_uM=100.0, half_life_h=20.0, t_end_h=48.0, ifp_reduction=1.5)
    small = TissueGrid(100.0, np.full((6, 6), 0.01), np.ones((6, 6), bool))
    with pytest.raises(InputError, match="set up on"):
        run_scenario(scenario_setup("free", grid, base), small)
    with pytest.raises(InputError, match="unknown scenario"):
        compare_scenarios(grid, base, names=["liposome", "laser"])
    with pytest.raises(InputError, match="not a whole multiple"):
        micro_window(grid.vessel_surface_per_um, (12, 12), voxel_um=100.0, spacing_um=3.0)
    with pytest.raises(InputError, match="outside"):
        micro_window(grid.vessel_surface_per_um, (30, 2), voxel_um=100.0)
