"""Classical inverse of drug release (least squares through the forward solver) and its synthetic data."""

import dataclasses

import numpy as np
import pytest

from core.drug_release.inverse import InverseProblem, Unknown, relative_errors, with_parameters
from core.drug_release.inverse_classical import ForwardModel, estimate_noise_sd, fit_classical
from core.drug_release.inverse_demo import DEFAULT_TRUTH, synthetic_grid, synthetic_problem
from core.drug_release.pressure import FluidParams, interstitial_pressure
from core.drug_release.transport import PlasmaInput, TransportParams, simulate
from core.errors import InputError


def test_synthetic_noise_has_the_stated_sd():
    clean, _ = synthetic_problem(16, noise_fraction=0.0, times_h=(1.0, 4.0))
    noisy, _ = synthetic_problem(16, noise_fraction=0.05, times_h=(1.0, 4.0))
    peak = max(float(v.max()) for v in clean.observed.values())
    assert noisy.noise_sd_uM == pytest.approx(0.05 * peak, rel=1e-12)
    d = np.concatenate([(noisy.observed[k] - clean.observed[k]).ravel() for k in clean.observed])
    assert np.std(d) == pytest.approx(0.05 * peak, rel=0.05)      # 1 024 samples: SE of the SD 2.2 %
    assert abs(np.mean(d)) < 4 * 0.05 * peak / np.sqrt(d.size)


def test_synthetic_problem_keeps_the_truth_out_of_the_unknowns():
    prob, truth = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",), initial_factor=3.0)
    assert prob.unknowns[0].initial == pytest.approx(3 * truth["release_per_h"])
    assert prob.base.diffusion_free_um2_per_h == truth["diffusion_free_um2_per_h"]
    assert prob.base.release_per_h == TransportParams().release_per_h       # not the truth
    with pytest.raises(InputError, match="noise_fraction"):
        synthetic_problem(12, noise_fraction=-0.1)
    with pytest.raises(InputError, match="size"):
        synthetic_grid(4)


@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_noise_free_recovers_all_four_unknowns(factor):
    prob, truth = synthetic_problem(16, noise_fraction=0.0, initial_factor=factor)
    start = relative_errors(dict(zip(prob.names, prob.initial_vector())), truth)
    assert min(abs(v) for v in start.values()) >= 0.5                     # starts really are a factor off
    res = fit_classical(prob)
    err = relative_errors(res.estimates, truth)
    assert max(abs(v) for v in err.values()) < 0.01, err
    assert res.history[-1] < 1e-6 * res.history[0]
    assert res.extra["forward_solves"] == res.extra["nfev"] + 4 * res.extra["njev"] + 1   # + the final prediction
    p_true = interstitial_pressure(prob.grid, with_parameters(prob.base, truth).fluid)
    np.testing.assert_allclose(res.pressure_mmhg, p_true, rtol=1e-3, atol=1e-6)


def test_two_percent_noise_default_problem():
    """The benchmark problem: 24 x 100 µm, three imaging times, 2 % of the maximum as noise.

    Measured over noise seeds 0-7: RMS relative error release 4.1 % (max 7.8 %), carrier
    permeability 0.5 % (max 0.9 %), vascular pressure 0.7 % (max 1.4 %); the free-drug
    diffusion coefficient is not identifiable at 100 µm voxels (its penetration length ~20 µm)
    and is flagged; |error| < 3 std for every parameter and seed.
    """
    prob, truth = synthetic_problem(noise_fraction=0.02, seed=0)
    res = fit_classical(prob)
    err = relative_errors(res.estimates, truth)
    assert abs(err["release_per_h"]) < 0.10
    assert abs(err["permeability_carrier_um_per_h"]) < 0.02
    assert abs(err["vascular_pressure_mmhg"]) < 0.02
    for k in ("release_per_h", "permeability_carrier_um_per_h", "vascular_pressure_mmhg"):
        assert abs(res.estimates[k] - truth[k]) < 3 * res.std[k], (k, res.std[k])
        assert res.std[k] < 0.1 * truth[k]
    assert any("diffusion_free_um2_per_h" in w for w in res.extra["warnings"])
    assert abs(res.extra["chi2_reduced"] - 1) < 0.1                     # ~2 700 residuals: SD of chi2 0.03


def test_single_unknown_is_exact_noise_free():
    prob, truth = synthetic_problem(16, noise_fraction=0.0, unknowns=("release_per_h",), initial_factor=3.0)
    calls = []
    res = fit_classical(prob, progress=lambda i, cost: calls.append((i, cost)))
    assert abs(res.estimates["release_per_h"] / truth["release_per_h"] - 1) < 1e-3
    assert len(calls) == res.extra["nfev"] == res.history.size
    assert [c for _, c in calls] == list(res.history)
    assert res.extra["warnings"] == []


def _free_drug_problem(unknowns):
    """Free doxorubicin only in plasma: no carrier anywhere, so release and carrier permeability do nothing."""
    grid = synthetic_grid(12, seed=3)
    base = TransportParams(fluid=FluidParams.tumour_and_host(grid.tumour))
    plasma = PlasmaInput.free_drug(10.0)
    times = np.array([0.5, 2.0])
    sol = simulate(grid, base, plasma, t_end_h=2.0, dt_h=0.05, save_times_h=times)
    obs = {"encapsulated": sol.encapsulated, "released": sol.free + sol.bound}
    unk = tuple(Unknown(n, DEFAULT_TRUTH[n] * 1.5) for n in unknowns)
    return InverseProblem(grid, plasma, base, times, obs, unk, noise_sd_uM=0.01)


def test_non_identifiable_parameters_are_reported():
    prob = _free_drug_problem(("release_per_h", "permeability_carrier_um_per_h", "vascular_pressure_mmhg"))
    res = fit_classical(prob, max_nfev=20)
    assert np.isinf(res.std["release_per_h"]) and np.isinf(res.std["permeability_carrier_um_per_h"])
    assert np.isfinite(res.std["vascular_pressure_mmhg"])
    assert res.estimates["vascular_pressure_mmhg"] == pytest.approx(FluidParams().vascular_pressure_mmhg, rel=1e-3)
    assert any("singular" in w and "release_per_h" in w for w in res.extra["warnings"])


def test_forward_model_residuals_vanish_at_the_truth():
    prob, truth = synthetic_problem(12, noise_fraction=0.0, times_h=(1.0, 3.0))
    fm = ForwardModel(prob)
    r = fm.residuals(np.log([truth[k] for k in prob.names]))
    assert r.size == 2 * 2 * int(prob.grid.tumour.sum())
    assert np.abs(r).max() < 1e-8
    fm_all = ForwardModel(prob, voxels="all")
    assert fm_all.residuals(np.log(prob.initial_vector())).size == 2 * 2 * 144


def test_invalid_input_raises():
    prob, _ = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",))
    with pytest.raises(InputError, match="InverseProblem"):
        fit_classical({"observed": prob.observed})
    with pytest.raises(InputError, match="'lm'"):
        fit_classical(prob, method="lm")
    with pytest.raises(InputError, match="max_nfev"):
        fit_classical(prob, max_nfev=0)
    with pytest.raises(InputError, match="diff_step"):
        fit_classical(prob, diff_step=0.5)
    with pytest.raises(InputError, match="'brain'"):
        fit_classical(prob, voxels="brain")
    with pytest.raises(InputError, match="progress"):
        fit_classical(prob, progress=3)
    fast = dataclasses.replace(prob, unknowns=(Unknown("release_per_h", 0.1, (1e-4, 20.0)),))
    with pytest.raises(InputError, match="dt_h"):                       # 0.05 h > 0.5 / 20 /h
        fit_classical(fast)
    no_tumour = dataclasses.replace(prob, grid=dataclasses.replace(prob.grid, tumour=np.zeros((12, 12), bool),
                                                                   lymphatic_surface_per_um=0.0))
    with pytest.raises(InputError, match="observations for 1 unknowns"):
        fit_classical(no_tumour)
    bad = dict(prob.observed, released=np.where(prob.grid.tumour, np.nan, prob.observed["released"]))
    with pytest.raises(InputError, match="NaN"):
        dataclasses.replace(prob, observed=bad)


# ----------------------------------------------------------------------------- noise SD per species
def _two_noise_problem(seed, sd):
    """12 x 12 problem, release and carrier permeability unknown, observations with ``sd`` per species."""
    clean, truth = synthetic_problem(12, noise_fraction=0.0,
                                     unknowns=("release_per_h", "permeability_carrier_um_per_h"))
    rng = np.random.default_rng(100 + seed)
    obs = {k: v + sd[k] * rng.standard_normal(v.shape) for k, v in clean.observed.items()}
    return dataclasses.replace(clean, observed=obs, noise_sd_uM=sd), truth


def test_float_noise_sd_gives_the_same_numbers_as_before():
    prob, _ = synthetic_problem(12, times_h=(1.0, 4.0), unknowns=("release_per_h", "permeability_carrier_um_per_h"))
    res = fit_classical(prob)
    # values of this fit before the per-species noise model was added (same machine, float SD)
    assert res.estimates["release_per_h"] == pytest.approx(0.05757743323433132, rel=1e-6)
    assert res.estimates["permeability_carrier_um_per_h"] == pytest.approx(1.0856394119838377, rel=1e-6)
    sd = prob.noise_sd_uM
    assert isinstance(sd, float) and prob.noise_sd("encapsulated") == prob.noise_sd("released") == sd
    same = fit_classical(dataclasses.replace(prob, noise_sd_uM={"encapsulated": sd, "released": sd}))
    np.testing.assert_array_equal(same.history, res.history)
    assert same.estimates == res.estimates and same.std == res.std


def test_per_species_weighting_beats_a_pooled_sd():
    """Carrier map 5 % of its peak (0.23 µM), released map 1 % of its (0.001 µM): SDs 200x apart.

    Measured over seeds 0-3: RMS error of the release rate 0.33 % weighted, 7.8 % with the
    pooled SD sqrt(mean of the variances); the pooled fit's reported std (43 %) was 5x its
    actual scatter, the weighted one's (0.6 %) within 2x.
    """
    sd = {"encapsulated": 0.05 * 4.5988, "released": 0.01 * 0.10382}
    pooled = float(np.sqrt(0.5 * (sd["encapsulated"] ** 2 + sd["released"] ** 2)))
    err_w, err_p = [], []
    for seed in range(3):
        prob, truth = _two_noise_problem(seed, sd)
        res_w = fit_classical(prob)
        res_p = fit_classical(dataclasses.replace(prob, noise_sd_uM=pooled))
        e_w = relative_errors(res_w.estimates, truth)
        err_w.append(e_w["release_per_h"])
        err_p.append(relative_errors(res_p.estimates, truth)["release_per_h"])
        for k in prob.names:
            assert abs(res_w.estimates[k] - truth[k]) < 3 * res_w.std[k], (seed, k)
        for s, c2 in res_w.extra["chi2_reduced_per_species"].items():
            assert abs(c2 - 1) < 0.25, (s, c2)                      # ~340 residuals each: SD of chi2 0.08
        if seed == 0:                                               # residual SDs of a well-weighted fit
            est = estimate_noise_sd(prob, res_w)
            for s in sd:
                assert est[s] == pytest.approx(sd[s], rel=0.15), (s, est[s] / sd[s])
            assert res_p.extra["chi2_reduced_per_species"]["released"] < 0.01     # pooled SD far too large
    rms_w, rms_p = np.sqrt(np.mean(np.square(err_w))), np.sqrt(np.mean(np.square(err_p)))
    assert rms_w < 0.2 * rms_p, (rms_w, rms_p)
    assert rms_w < 0.02


def test_residuals_are_divided_by_each_species_sd():
    prob, truth = synthetic_problem(12, times_h=(1.0, 3.0), unknowns=("release_per_h",), initial_factor=2.0)
    theta = np.log(prob.initial_vector())
    base = ForwardModel(dataclasses.replace(prob, noise_sd_uM=1.0))
    two = ForwardModel(dataclasses.replace(prob, noise_sd_uM={"encapsulated": 2.0, "released": 0.5}))
    r1, r2 = base.residuals(theta), two.residuals(theta)
    enc, rel = two.species_slices["encapsulated"], two.species_slices["released"]
    np.testing.assert_allclose(r2[enc], r1[enc] / 2.0, rtol=1e-12)
    np.testing.assert_allclose(r2[rel], r1[rel] / 0.5, rtol=1e-12)
    assert rel.stop == r1.size == 2 * enc.stop


@pytest.mark.parametrize("sd, word", [
    ({"encapsulated": 0.1}, "lacks the key 'released'"),
    ({"encapsulated": 0.1, "released": 0.1, "free": 0.1}, "key 'free'"),
    ({"encapsulated": 0.1, "released": -0.2}, r"noise_sd_uM\['released'\] = -0.2"),
    ({"encapsulated": float("nan"), "released": 0.1}, r"noise_sd_uM\['encapsulated'\] = nan"),
    (0.0, "noise_sd_uM = 0.0"), (float("inf"), "noise_sd_uM = inf"), ("0.1 uM", "noise_sd_uM = '0.1 uM'"),
    (True, "noise_sd_uM = True"),
])
def test_bad_noise_sd_raises_naming_the_key(sd, word):
    prob, _ = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",))
    with pytest.raises(InputError, match=word):
        dataclasses.replace(prob, noise_sd_uM=sd)
    with pytest.raises(InputError, match="observed species"):
        prob.noise_sd("free")


def test_estimate_noise_sd_rejects_other_results():
    prob, _ = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",))
    res = fit_classical(prob, max_nfev=3)
    with pytest.raises(InputError, match="classical InverseResult"):
        estimate_noise_sd(prob, dataclasses.replace(res, method="pinn"))
    with pytest.raises(InputError, match="classical InverseResult"):
        estimate_noise_sd(prob, {"estimates": {}})
    clean, _ = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",), noise_fraction=0.0)
    exact = dataclasses.replace(res, extra=dict(res.extra, predicted=clean.observed))
    with pytest.raises(InputError, match="exactly zero"):
        estimate_noise_sd(clean, exact)
