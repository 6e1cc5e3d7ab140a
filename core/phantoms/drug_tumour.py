r"""Preclinical tumour phantom for the drug-release page: imaging data and drug "truth" of a mouse tumour.

One study is a 2D slice (default 64 x 64 voxels of 100 µm) of a subcutaneous mouse tumour
(ellipse of 2.2-2.8 mm semi-axis) in host tissue, with a vessel network drawn at 4 µm and a
128 x 128 micro window at 4 µm (geometry and tissue fields in
:mod:`core.phantoms.drug_tumour_vessels`), given one of :data:`SCENARIOS`:

``"free"``
    free doxorubicin, :meth:`PlasmaInput.free_drug` (20 µM, 95 % cleared with a 5 min and 5 %
    with a 10 h half-life); simulated 0-6 h: free drug leaves plasma within minutes and is
    bound within ~1/k_on = 10 min; 6 h covers its uptake and the slow efflux (k_off 0.3/h).
``"liposome"``
    PEGylated liposomes (100 µM encapsulated in plasma, half-life 20 h), constant slow leak
    ``release_law("liposome")`` (0.004/h); simulated 0-48 h (> two circulation half-lives:
    accumulation by the enhanced permeability and retention effect takes a day or two).
``"thermosensitive"``
    lysolipid thermosensitive liposomes (100 µM, plasma half-life 2 h, this work) under mild
    hyperthermia: ``hyperthermia_temperature`` (42 °C within 0.8 tumour radii, 0.3 mm edge)
    from injection for ``heating_h`` = 1 h, then 37 °C. Release follows
    ``release_law("thermosensitive")`` in the interstitium and, as observed by Manzoor et al.
    (2012), mostly **inside heated vessels**: the free drug released during a transit of
    :data:`TRANSIT_TIME_S` through a voxel's vessels, :math:`c_{pL}(t)(1 - e^{-k(T)\tau})`,
    is added to the plasma free drug of that voxel (``simulate(local_plasma_free=...)``).
    Heating stopping is modelled by running the solver in periods
    (:func:`~core.drug_release.piecewise.simulate_piecewise`); simulated 0-24 h.

Imaging (this work unless cited; all voxel maps (H, W), time on the last axis)
----------------------------------------------------------------------------
* **DCE-MRI** of a small Gd chelate: ``mouse_aif`` (delay 0.3 min), 6 s frames over 5 min.
  True maps from the same vessels: :math:`K^{trans} = P_{Gd}\,m_s\,S/V` (permeability-limited
  exchange, :math:`P_{Gd}` = :data:`GD_PERMEABILITY_UM_PER_H` x the relative small-molecule
  permeability :math:`m_s`; µm/h x 1/µm = 1/h, /60 for 1/min), :math:`v_e = \varphi` (the
  interstitial fraction of the transport model), :math:`v_p = f_v(1 - \mathrm{Hct})` (vascular
  fraction, Hct 0.45). Tissue curves from extended ``tofts_model``, SPGR signals
  (``spgr_signal``, TR 4 ms, 15°, r1 3.0 /(mM s)) from a native T1 map, with VFA acquisitions
  (2, 5, 10, 15, 20°, TR 15 ms) for T1 mapping; Rician noise, SNR 40 (tumour baseline signal
  over the noise SD of each channel).
* **CEST**: ``simulate_z_spectrum`` of the true pH (iopamidol 20 mM in tumour, 10 mM in
  host) on ``DEFAULT_OFFSETS_PPM``, a smooth B0 shift field (+-0.15 ppm) and noise SD 0.003.
* **Drug imaging** at three ``imaging_times_h`` per scenario (:data:`SCENARIO_SETTINGS`): the
  :data:`core.drug_release.inverse.OBSERVED` quantities: encapsulated drug from
  :math:`\Delta R_2^*` of a carrier label (:data:`R2STAR_PER_MM_S` per mM drug) via
  ``delta_r2star_to_concentration``, and released drug (free + bound) from :math:`\Delta R_1`
  of a co-released agent (:data:`R1_RELEASED_PER_MM_S` per mM drug; :math:`C = \Delta R_1/r_1`,
  fast exchange), Gaussian noise of SD ``noise_sd_uM`` on the concentration (the raw maps
  carry it times the relaxivity). Only extravascular drug is observed (the vascular part,
  :math:`v_p c_p`, assumed removed with the blood samples, this work).

Truth: transport from :func:`core.drug_release.transport.simulate` at voxel scale (IFP from
``interstitial_pressure`` with tumour/host fluid parameters, lymphatics in host) and in the
micro window (its IFP uniform, the voxel value, so no flow). ``truth`` holds the four
:data:`core.drug_release.inverse.UNKNOWNS` inside the tumour: ``release_per_h`` (uniform for
the liposome; for the thermosensitive scenario the **tumour mean** during heating, with the
post-heating value apart; ``None`` for free drug), ``diffusion_free_um2_per_h`` (uniform),
``permeability_carrier_um_per_h`` (the S/V-weighted tumour mean of the field, the scalar
that gives the same tumour extravasation per plasma concentration; with
``heterogeneous=False`` it is uniform and the inverse problem is exact) and
``vascular_pressure_mmhg``.

Files (:func:`write_drug_study`, ``<out>/<study_id>/``; 2D images stored (H, W, 1))
-----------------------------------------------------------------------------------
``tumour_mask``, ``vessel_fraction``, ``vessel_surface`` (1/µm), ``ifp`` (mmHg), ``ph``,
``temperature`` (°C), ``release_rate`` (1/h, encapsulated scenarios), ``t1_map`` (ms),
``m0``, ``truth_ktrans`` (1/min), ``truth_ve``, ``truth_vp``, ``b0_shift`` (ppm),
``dce_signal``, ``dce_conc_true`` (mM), ``vfa_signal``, ``cest_z``, ``obs_encapsulated``,
``obs_released`` (µM), ``obs_delta_r2star``, ``obs_delta_r1`` (1/s), ``truth_encapsulated``,
``truth_free``, ``truth_bound`` (µM, saved times), ``micro_vessels``, ``truth_micro_free``,
``truth_micro_encapsulated``, ``truth_micro_bound``; sidecars ``<name>.json`` carry units,
times, flip angles, TR, offsets; ``study.json`` the scenario, imaging times, noise and truth.

References
----------
.. [1] Manzoor AA, Lindner LH, Landon CD, et al. Overcoming limitations in nanoparticle drug
   delivery: triggered, intravascular release to improve drug penetration into tumors. Cancer
   Res 2012;72:5566-5575.
.. [2] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. I. Role of
   interstitial pressure and convection. Microvasc Res 1989;37:77-104.
.. [3] Tofts PS, Brix G, Buckley DL, et al. Estimating kinetic parameters from dynamic
   contrast-enhanced T1-weighted MRI of a diffusable tracer: standardized quantities and
   symbols. J Magn Reson Imaging 1999;10:223-232.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from core.drug_release.aif import mouse_aif
from core.drug_release.cest import DEFAULT_OFFSETS_PPM, simulate_z_spectrum
from core.drug_release.dce import tofts_model
from core.drug_release.inverse import UNKNOWNS, InverseProblem, Unknown
from core.drug_release.outcomes import (concentration_vs_distance, distance_to_vessel_um, exposure_auc,
                                        penetration_distance_um)
from core.drug_release.pressure import TissueGrid, interstitial_pressure
from core.drug_release.relaxometry import delta_r2star_to_concentration, spgr_signal
from core.drug_release.scenarios import DEFAULT_SETTINGS
from core.drug_release.transport import PlasmaInput, TransportParams, TransportSolution, simulate
from core.errors import InputError
from core.phantoms.drug_tumour_vessels import (FINE_UM, HEATING, TRANSIT_TIME_S, VESSEL_RADIUS_UM, make_geometry,
                                               micro_truth, rng_for, simulate_piecewise, slice_affine,
                                               times_volume, transport_setup)

__all__ = ["SCENARIOS", "SCENARIO_SETTINGS", "DrugStudy", "generate_drug_study", "inverse_problem",
           "write_drug_study", "generate_drug_cohort", "drug_study_id", "TRANSIT_TIME_S",
           "GD_PERMEABILITY_UM_PER_H", "R2STAR_PER_MM_S", "R1_RELEASED_PER_MM_S"]

GENERATOR = "core.phantoms.drug_tumour"
GENERATOR_VERSION = "1.0.0"
SCENARIOS = ("free", "liposome", "thermosensitive")
#: Imaging protocol per scenario (this work): save step and imaging times (h after injection),
#: micro-window duration (h), noise SD (µM).
_IMAGING = {
    "free": dict(save_step_h=0.1, imaging_times_h=(0.25, 1.0, 4.0), micro_t_end_h=2.0, noise_sd_uM=0.05),
    "liposome": dict(save_step_h=1.0, imaging_times_h=(6.0, 24.0, 48.0), micro_t_end_h=4.0, noise_sd_uM=0.05),
    "thermosensitive": dict(save_step_h=0.5, imaging_times_h=(1.0, 4.0, 24.0), micro_t_end_h=2.0,
                            noise_sd_uM=0.05),
}
#: Per scenario: dose (µM in plasma at t = 0), carrier half-life (h) and simulated time from the
#: drug protocol of :data:`core.drug_release.scenarios.DEFAULT_SETTINGS` (one place for both),
#: plus the imaging protocol above.
SCENARIO_SETTINGS = {
    name: dict(dose_uM=DEFAULT_SETTINGS[name].dose_uM, half_life_h=DEFAULT_SETTINGS[name].half_life_h,
               t_end_h=DEFAULT_SETTINGS[name].t_end_h, **imaging)
    for name, imaging in _IMAGING.items()
}
#: Vessel permeability to a small Gd chelate, µm/h (this work; 600 µm/h = 1.7e-5 cm/s).
GD_PERMEABILITY_UM_PER_H = 600.0
#: Transverse relaxivity of the carrier label per mM encapsulated drug, 1/(mM s) (this work).
R2STAR_PER_MM_S = 50.0
#: Longitudinal relaxivity of the co-released agent per mM released drug, 1/(mM s) (this work).
R1_RELEASED_PER_MM_S = 4.0
_HCT = 0.45
_DCE = dict(frame_s=6.0, duration_min=5.0, delay_min=0.3, tr_ms=4.0, flip_deg=15.0, r1_per_mM_s=3.0, snr=40.0)
_VFA = dict(flips_deg=(2.0, 5.0, 10.0, 15.0, 20.0), tr_ms=15.0)
_CEST = dict(agent_tumour_mM=20.0, agent_host_mM=10.0, noise_sd=0.003, b0_max_ppm=0.15, b1_uT=2.0, field_t=7.0)


@dataclasses.dataclass(frozen=True, eq=False)
class DrugStudy:
    """One synthetic preclinical drug-release study (see the module docstring).

    Maps are (H, W) arrays; time series have time on the last axis for images
    (``dce_*``, ``vfa_signal``, ``cest_z``) and first for drug fields (``obs_*``, the
    :class:`TransportSolution` arrays), as in :mod:`core.drug_release.inverse`.

    Attributes
    ----------
    study_id, scenario : str
    index, seed : int
    spacing_um, micro_spacing_um : float
    tumour : bool ndarray
    vessel_fraction, vessel_surface_per_um, interstitial_fraction, ph, temperature_c : ndarray
    release_per_h : ndarray
        Release rate during the first period (heating for the thermosensitive scenario), 1/h;
        zeros for free drug.
    pressure_mmhg : ndarray
        Steady IFP, mmHg.
    ktrans_per_min, ve, vp, t1_ms, m0 : ndarray
        True DCE maps, native T1 (ms) and M0.
    dce_t_min, dce_cp_mM : ndarray (T,)
    dce_ct_mM, dce_signal : ndarray (H, W, T)
        Noise-free tissue concentration and noisy SPGR signal.
    vfa_flip_deg : ndarray (F,)
    vfa_signal : ndarray (H, W, F)
    cest_offsets_ppm : ndarray (N,)
    cest_z : ndarray (H, W, N)
    b0_shift_ppm, cest_agent_mM : ndarray
    grid : TissueGrid
    params : TransportParams
        Parameters of the first period.
    plasma : PlasmaInput
    local_plasma_free : callable or None
    solution : TransportSolution
        Voxel-scale truth.
    micro_grid : TissueGrid
    micro_solution : TransportSolution
    micro_origin_um : tuple
    imaging_times_h : ndarray (3,)
    obs_encapsulated_uM, obs_released_uM : ndarray (3, H, W)
    obs_delta_r2star_per_s, obs_delta_r1_per_s : ndarray (3, H, W)
    noise_sd_uM : float
    dt_h : float
        Time step of the voxel-scale truth (after heating for the thermosensitive scenario).
    truth : dict
        JSON-serialisable true values (module docstring).
    """

    study_id: str
    index: int
    seed: int
    scenario: str
    spacing_um: float
    micro_spacing_um: float
    tumour: np.ndarray
    vessel_fraction: np.ndarray
    vessel_surface_per_um: np.ndarray
    interstitial_fraction: np.ndarray
    ph: np.ndarray
    temperature_c: np.ndarray
    release_per_h: np.ndarray
    pressure_mmhg: np.ndarray
    ktrans_per_min: np.ndarray
    ve: np.ndarray
    vp: np.ndarray
    t1_ms: np.ndarray
    m0: np.ndarray
    dce_t_min: np.ndarray
    dce_cp_mM: np.ndarray
    dce_ct_mM: np.ndarray
    dce_signal: np.ndarray
    vfa_flip_deg: np.ndarray
    vfa_signal: np.ndarray
    cest_offsets_ppm: np.ndarray
    cest_z: np.ndarray
    b0_shift_ppm: np.ndarray
    cest_agent_mM: np.ndarray
    grid: TissueGrid
    params: TransportParams
    plasma: PlasmaInput
    local_plasma_free: Callable | None
    solution: TransportSolution
    micro_grid: TissueGrid
    micro_solution: TransportSolution
    micro_origin_um: tuple
    imaging_times_h: np.ndarray
    obs_encapsulated_uM: np.ndarray
    obs_released_uM: np.ndarray
    obs_delta_r2star_per_s: np.ndarray
    obs_delta_r1_per_s: np.ndarray
    noise_sd_uM: float
    dt_h: float
    truth: dict = dataclasses.field(default_factory=dict)

    def inverse_problem(self, unknowns=None) -> InverseProblem:
        """Same as :func:`inverse_problem` (``study.inverse_problem()``)."""
        return inverse_problem(self, unknowns)


def drug_study_id(index: int, seed: int, scenario: str) -> str:
    """``DEMO-DRUG-LIPOSOME-000`` for seed 0, ``DEMO-DRUG-LIPOSOME-S7-000`` for seed 7."""
    seed_part = f"S{int(seed)}-" if int(seed) != 0 else ""
    return f"DEMO-DRUG-{scenario.upper()}-{seed_part}{int(index):03d}"


def _check_args(index, seed, scenario, size):
    if scenario not in SCENARIOS:
        raise InputError(f"unknown scenario {scenario!r}", fix=f"Use one of {', '.join(SCENARIOS)}.")
    for name, v, lo in (("index", index, 0), ("seed", seed, 0), ("size", size, 24)):
        if int(v) != v or v < lo:
            raise InputError(f"{name} = {v!r} must be a whole number >= {lo}", fix=f"Give {name} >= {lo}.")


def _save_times(settings, scenario):
    t_end, step = settings["t_end_h"], settings["save_step_h"]
    t = np.arange(0.0, t_end + 1e-9, step)
    extra = list(settings["imaging_times_h"])
    if scenario == "thermosensitive":
        extra += list(np.arange(0.0, HEATING["heating_h"] + 1e-9, 0.05))
    return np.unique(np.round(np.concatenate([t, extra]), 9))



# ----------------------------------------------------------------------------- imaging
def _rician(rng, s, sigma):
    return np.hypot(s + rng.normal(0.0, sigma, s.shape), rng.normal(0.0, sigma, s.shape))


def _dce(geo, rng, tum):
    t = np.round(np.arange(0.0, _DCE["duration_min"] + 1e-9, _DCE["frame_s"] / 60.0), 9)
    cp = mouse_aif(t, delay_min=_DCE["delay_min"])
    ktrans = GD_PERMEABILITY_UM_PER_H * geo.permeability_factor_small * geo.vessel_surface_per_um / 60.0
    ve = geo.interstitial_fraction
    vp = geo.vessel_fraction * (1 - _HCT)
    ct = tofts_model(t, cp, ktrans, ve, vp)
    r1 = 1000.0 / geo.t1_ms[..., None] + _DCE["r1_per_mM_s"] * ct
    clean = spgr_signal(geo.m0[..., None], 1000.0 / r1, _DCE["flip_deg"], _DCE["tr_ms"])
    sigma = float(clean[..., 0][tum].mean()) / _DCE["snr"]
    signal = _rician(rng, clean, sigma)
    flips = np.asarray(_VFA["flips_deg"])
    vclean = spgr_signal(geo.m0[..., None], geo.t1_ms[..., None], flips, _VFA["tr_ms"])
    vsig = _rician(rng, vclean, float(vclean[tum].mean()) / _DCE["snr"])
    return t, cp, ktrans, ve, vp, ct, signal, flips, vsig


def _cest(geo, rng, tum):
    n = tum.shape[0]
    y, x = (np.indices(tum.shape) - (n - 1) / 2) / (n / 2)
    a, b, c = rng.uniform(-1, 1, 3)
    b0 = a * x + b * y + c * (x ** 2 + y ** 2 - 0.5)
    b0 = _CEST["b0_max_ppm"] * b0 / max(np.abs(b0).max(), 1e-9)
    agent = np.where(tum, _CEST["agent_tumour_mM"], _CEST["agent_host_mM"])
    z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, geo.ph, agent, b1_uT=_CEST["b1_uT"], b0_shift_ppm=b0,
                            field_t=_CEST["field_t"], noise_sd=_CEST["noise_sd"], rng=rng)
    return b0, agent, z


def _observe(sol, times, noise_sd, rng):
    idx = [int(np.argmin(np.abs(sol.times_h - t))) for t in times]
    enc = sol.encapsulated[idx]
    rel = sol.free[idx] + sol.bound[idx]
    dr2 = R2STAR_PER_MM_S * (enc / 1000.0 + rng.normal(0.0, noise_sd / 1000.0, enc.shape))
    dr1 = R1_RELEASED_PER_MM_S * (rel / 1000.0 + rng.normal(0.0, noise_sd / 1000.0, rel.shape))
    enc_obs, _ = delta_r2star_to_concentration(dr2, R2STAR_PER_MM_S)
    rel_obs = dr1 / R1_RELEASED_PER_MM_S
    return enc_obs * 1000.0, rel_obs * 1000.0, dr2, dr1


# ----------------------------------------------------------------------------- generator
def generate_drug_study(index: int = 0, seed: int = 0, scenario: str = "liposome", *, size: int = 64,
                        spacing_um: float = 100.0, window_px: int = 128, heterogeneous: bool = True,
                        noise_sd_uM: float | None = None, with_micro: bool = True) -> DrugStudy:
    """Generate one preclinical drug-release study (see the module docstring), deterministic by seed.

    Parameters
    ----------
    index : int, default=0
        Study number within the cohort (a random stream of its own).
    seed : int, default=0
    scenario : {"free", "liposome", "thermosensitive"}, default="liposome"
    size : int, default=64
        Voxels per side of the slice; the field of view scales with it (6.4 mm at 64).
    spacing_um : float, default=100.0
        Voxel edge, µm (a multiple of 4 µm).
    window_px : int, default=128
        Side of the micro window, pixels of 4 µm.
    heterogeneous : bool, default=True
        Random and rim/core-varying vessel permeability (tumour) and lower host permeability;
        False gives uniform permeabilities, for which the scalar unknowns of
        :func:`inverse_problem` describe the truth exactly.
    noise_sd_uM : float, optional
        Noise SD of the drug observations, µM; default from :data:`SCENARIO_SETTINGS` (0.05).
    with_micro : bool, default=True
        Simulate the micro window (else ``micro_solution`` is None).

    Returns
    -------
    DrugStudy

    Examples
    --------
    >>> s = generate_drug_study(0, 0, "free", size=32, window_px=64)
    >>> s.obs_released_uM.shape, s.truth["scenario"]
    ((3, 32, 32), 'free')
    """
    _check_args(index, seed, scenario, size)
    settings = dict(SCENARIO_SETTINGS[scenario])
    if noise_sd_uM is not None:
        if not (math.isfinite(noise_sd_uM) and noise_sd_uM > 0):
            raise InputError(f"noise_sd_uM = {noise_sd_uM!r} must be > 0 µM", fix="Give the noise SD in µM.")
        settings["noise_sd_uM"] = float(noise_sd_uM)
    geo = make_geometry(rng_for(seed, index, 0), rng_for(seed, index, 1), rng_for(seed, index, 2), size=int(size),
                        spacing_um=spacing_um, window_px=int(window_px), heterogeneous=heterogeneous)
    tum = geo.tumour
    grid, pieces, plasma, local, temp, rate = transport_setup(geo, scenario, settings)
    params0 = pieces[0][1]
    pressure = interstitial_pressure(grid, params0.fluid)
    save = _save_times(settings, scenario)
    if len(pieces) == 1:
        sol = simulate(grid, params0, plasma, t_end_h=pieces[0][0], dt_h=pieces[0][2], save_times_h=save,
                       pressure_mmhg=pressure)
    else:
        sol = simulate_piecewise(grid, plasma, pieces, save_times_h=save, pressure_mmhg=pressure,
                                 local_plasma_free=local)
    mgrid, msol = micro_truth(geo, pieces, plasma, local, pressure, settings) if with_micro else (None, None)
    t, cp, ktrans, ve, vp, ct, signal, flips, vsig = _dce(geo, rng_for(seed, index, 3), tum)
    b0, agent, z = _cest(geo, rng_for(seed, index, 4), tum)
    times = np.asarray(settings["imaging_times_h"], float)
    enc, rel, dr2, dr1 = _observe(sol, times, settings["noise_sd_uM"], rng_for(seed, index, 5))
    study_id = drug_study_id(index, seed, scenario)
    truth = _truth(scenario, settings, geo, grid, pieces, pressure, ktrans, sol, msol, mgrid, temp, study_id)
    return DrugStudy(study_id=study_id, index=int(index), seed=int(seed), scenario=scenario,
                     spacing_um=float(spacing_um), micro_spacing_um=FINE_UM, tumour=tum,
                     vessel_fraction=geo.vessel_fraction, vessel_surface_per_um=geo.vessel_surface_per_um,
                     interstitial_fraction=geo.interstitial_fraction, ph=geo.ph, temperature_c=temp,
                     release_per_h=np.asarray(rate, float), pressure_mmhg=pressure, ktrans_per_min=ktrans, ve=ve,
                     vp=vp, t1_ms=geo.t1_ms, m0=geo.m0, dce_t_min=t, dce_cp_mM=cp, dce_ct_mM=ct, dce_signal=signal,
                     vfa_flip_deg=flips, vfa_signal=vsig, cest_offsets_ppm=DEFAULT_OFFSETS_PPM.copy(), cest_z=z,
                     b0_shift_ppm=b0, cest_agent_mM=agent, grid=grid, params=params0, plasma=plasma,
                     local_plasma_free=local, solution=sol, micro_grid=mgrid, micro_solution=msol,
                     micro_origin_um=geo.micro_origin_um, imaging_times_h=times, obs_encapsulated_uM=enc,
                     obs_released_uM=rel, obs_delta_r2star_per_s=dr2, obs_delta_r1_per_s=dr1,
                     noise_sd_uM=float(settings["noise_sd_uM"]), dt_h=float(pieces[-1][2]), truth=truth)


def _truth(scenario, settings, geo, grid, pieces, pressure, ktrans, sol, msol, mgrid, temp, study_id):
    tum = geo.tumour
    p0 = pieces[0][1]
    sv = geo.vessel_surface_per_um
    pl = np.broadcast_to(np.asarray(p0.permeability_carrier_um_per_h, float), tum.shape)
    rel = np.broadcast_to(np.asarray(p0.release_per_h, float), tum.shape)
    rn = geo.radius_norm
    out = {
        "study_id": study_id, "scenario": scenario, "generator": GENERATOR, "version": GENERATOR_VERSION,
        "release_per_h": None if scenario == "free" else float(rel[tum].mean()),
        "release_per_h_note": {"free": "no carrier: release undefined",
                               "liposome": "uniform constant leak (release_law('liposome'))",
                               "thermosensitive": "tumour mean during heating (a field of temperature); "
                                                  "release_per_h_after_heating applies after"}[scenario],
        "diffusion_free_um2_per_h": float(p0.diffusion_free_um2_per_h),
        "permeability_carrier_um_per_h": float((pl * sv)[tum].sum() / sv[tum].sum()),
        "permeability_carrier_note": "S/V-weighted tumour mean of the permeability field",
        "permeability_carrier_tumour_mean_um_per_h": float(pl[tum].mean()),
        "vascular_pressure_mmhg": float(np.mean(p0.fluid.vascular_pressure_mmhg)),
        "uptake_per_h": float(p0.uptake_per_h), "efflux_per_h": float(p0.efflux_per_h),
        "dose_uM": settings["dose_uM"], "plasma_half_life_h": settings["half_life_h"],
        "imaging_times_h": list(settings["imaging_times_h"]), "noise_sd_uM": settings["noise_sd_uM"],
        "t_end_h": settings["t_end_h"], "dt_h": float(pieces[-1][2]),
        "gd_permeability_um_per_h": GD_PERMEABILITY_UM_PER_H, "hematocrit": _HCT,
        "r2star_per_mM_s": R2STAR_PER_MM_S, "r1_released_per_mM_s": R1_RELEASED_PER_MM_S,
        "ktrans_tumour_mean_per_min": float(ktrans[tum].mean()),
        "ph_tumour_mean": float(geo.ph[tum].mean()),
        "ifp_centre_mmhg": float(pressure[tum & (rn < 0.3)].mean()),
        "ifp_rim_mmhg": float(pressure[tum & (rn > 0.85)].mean()),
        "vessel_surface_tumour_mean_per_um": float(sv[tum].mean()),
        "tumour_voxels": int(tum.sum()), "spacing_um": geo.spacing_um,
        "micro_origin_um": list(geo.micro_origin_um), "micro_voxel": list(geo.micro_voxel),
        "mass_imbalance": float(sol.ledger.relative_imbalance()),
    }
    if scenario == "thermosensitive":
        out.update(release_per_h_after_heating=float(np.mean(pieces[1][1].release_per_h)),
                   heating_h=HEATING["heating_h"], hyperthermia_temperature_c=HEATING["temperature_c"],
                   heated_voxels=int((temp > 41.0).sum()), transit_time_s=TRANSIT_TIME_S)
    if msol is not None:
        d = distance_to_vessel_um(mgrid)
        c, m, _ = concentration_vs_distance(exposure_auc(msol, "free"), d, np.arange(0, 205, 8.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pen = penetration_distance_um(c, m)
        out["micro_free_penetration_um"] = pen if math.isfinite(pen) else None
    return out


# ----------------------------------------------------------------------------- inverse
def inverse_problem(study: DrugStudy, unknowns=None) -> InverseProblem:
    """The inverse problem of a study's drug observations (:mod:`core.drug_release.inverse`).

    Known: the grid (vessel surface map, tumour, lymphatics), the plasma curves and every
    transport parameter of the truth except the unknowns, which replace their (scalar or
    field) truth by one scalar; the carrier permeability keeps the pattern of its field
    (``carrier_permeability_pattern``), the unknown being its S/V-weighted tumour mean. Compare
    the estimates with ``study.truth``. Exact for the ``"liposome"`` scenario.

    Parameters
    ----------
    study : DrugStudy
    unknowns : sequence of str or Unknown, optional
        Names start at the geometric mean of their :data:`~core.drug_release.inverse.UNKNOWNS`
        bounds. Default: the four unknowns (liposome), or diffusion and vascular pressure
        (free drug: no carrier).

    Returns
    -------
    InverseProblem

    Raises
    ------
    InputError
        For the thermosensitive scenario: its release changes in time and its plasma free
        drug varies in space, which the inverse model (time-constant scalar release, one
        plasma curve) cannot represent.

    Examples
    --------
    >>> s = generate_drug_study(0, 0, "liposome", size=32, window_px=64, with_micro=False)
    >>> inverse_problem(s, ["release_per_h"]).names
    ('release_per_h',)
    """
    if not isinstance(study, DrugStudy):
        raise InputError(f"expected a DrugStudy, got {type(study).__name__}", fix="Use generate_drug_study(...).")
    if study.scenario == "thermosensitive":
        raise InputError("the thermosensitive study has time-dependent release and intravascular release, "
                         "which the inverse model cannot represent",
                         fix="Use the 'liposome' (or 'free') scenario for the inverse problem.")
    if unknowns is None:
        unknowns = tuple(UNKNOWNS) if study.scenario == "liposome" else ("diffusion_free_um2_per_h",
                                                                          "vascular_pressure_mmhg")
    items = []
    for u in unknowns:
        if isinstance(u, Unknown):
            items.append(u)
        elif isinstance(u, str) and u in UNKNOWNS:
            lo, hi = UNKNOWNS[u]
            items.append(Unknown(u, math.sqrt(lo * hi)))
        else:
            raise InputError(f"{u!r} is not an unknown the inverse can estimate", fix=f"Use {', '.join(UNKNOWNS)}.")
    if study.scenario == "free" and any(u.name in ("release_per_h", "permeability_carrier_um_per_h") for u in items):
        raise InputError("free drug has no carrier: release and carrier permeability are not identifiable",
                         fix="Estimate diffusion_free_um2_per_h and vascular_pressure_mmhg only.")
    carrier = np.asarray(study.params.permeability_carrier_um_per_h, float)
    pattern = carrier if carrier.ndim else None  # the field's pattern is known, its scale is the unknown
    return InverseProblem(grid=study.grid, plasma=study.plasma, base=study.params, times_h=study.imaging_times_h,
                          observed={"encapsulated": study.obs_encapsulated_uM, "released": study.obs_released_uM},
                          unknowns=tuple(items), noise_sd_uM=study.noise_sd_uM, dt_h=study.dt_h,
                          carrier_permeability_pattern=pattern)




# ----------------------------------------------------------------------------- files
def write_drug_study(study: DrugStudy, out_dir: str | os.PathLike) -> dict:
    """Write one study into ``out_dir/<study_id>/`` (files listed in the module docstring).

    Returns
    -------
    dict
        Manifest entry: ``id``, ``scenario``, ``files`` (name -> path relative to
        ``out_dir``), ``imaging_times_h``, ``noise_sd_uM``, ``truth``.

    Examples
    --------
    >>> entry = write_drug_study(generate_drug_study(0, 0, "free", size=32), "/tmp/drug")  # doctest: +SKIP
    >>> sorted(entry["files"])[:2]                                                     # doctest: +SKIP
    ['b0_shift', 'cest_z']
    """
    from core.imaging.nifti import write_nifti
    from core.imaging.volume import Volume

    out_dir = Path(out_dir)
    folder = out_dir / study.study_id
    folder.mkdir(parents=True, exist_ok=True)
    n = study.tumour.shape[0]
    aff = slice_affine(study.spacing_um / 1000.0, n)
    files = {}
    common = {"Scenario": study.scenario, "StudyID": study.study_id, "Synthetic": True}

    def put(name, vol):
        files[name] = write_nifti(vol, folder / f"{name}.nii.gz").relative_to(out_dir).as_posix()

    def image(name, arr, units, modality="MR", **extra):
        data = np.asarray(arr)[:, :, None]
        data = data.astype(np.uint8) if modality == "SEG" else data.astype(np.float32)
        put(name, Volume(data, aff.copy(), modality, "label" if modality == "SEG" else units,
                         meta={"sidecar": {**common, "Quantity": name, "UnitsText": units, **extra}}))

    image("tumour_mask", study.tumour, "label", "SEG")
    image("vessel_fraction", study.vessel_fraction, "fraction")
    image("vessel_surface", study.vessel_surface_per_um, "1/um", CapillaryRadiusUm=VESSEL_RADIUS_UM)
    image("ifp", study.pressure_mmhg, "mmHg")
    image("ph", study.ph, "pH")
    image("temperature", study.temperature_c, "degC")
    if study.scenario != "free":
        image("release_rate", study.release_per_h, "1/h", Period="first period (during heating if heated)")
    image("t1_map", study.t1_ms, "ms", MagneticFieldStrength=_CEST["field_t"])
    image("m0", study.m0, "a.u.")
    image("truth_ktrans", study.ktrans_per_min, "1/min")
    image("truth_ve", study.ve, "fraction")
    image("truth_vp", study.vp, "fraction", Hematocrit=_HCT)
    image("b0_shift", study.b0_shift_ppm, "ppm")
    dce = dict(common, FlipAngle=_DCE["flip_deg"], RepetitionTime=_DCE["tr_ms"] / 1000.0,
               RelaxivityR1PerMMPerS=_DCE["r1_per_mM_s"], TimesMin=study.dce_t_min,
               AIFPlasmaMM=study.dce_cp_mM, AIF="mouse_aif", AIFDelayMin=_DCE["delay_min"], SNR=_DCE["snr"],
               MagneticFieldStrength=_CEST["field_t"])
    put("dce_signal", times_volume(np.moveaxis(study.dce_signal, -1, 0), aff, study.dce_t_min * 60.0, "a.u.", dce))
    put("dce_conc_true", times_volume(np.moveaxis(study.dce_ct_mM, -1, 0), aff, study.dce_t_min * 60.0, "mM", dce))
    nf = study.vfa_flip_deg.size
    put("vfa_signal", times_volume(np.moveaxis(study.vfa_signal, -1, 0), aff, -600.0 + 60.0 * np.arange(nf), "a.u.",
                                    dict(common, FlipAngles=study.vfa_flip_deg, RepetitionTime=_VFA["tr_ms"] / 1000.0,
                                         Note="one frame per flip angle, acquired before contrast")))
    no = study.cest_offsets_ppm.size
    put("cest_z", times_volume(np.moveaxis(study.cest_z, -1, 0), aff, 6.0 * np.arange(no), "fraction of M0",
                                dict(common, OffsetsPpm=study.cest_offsets_ppm, B1uT=_CEST["b1_uT"],
                                     MagneticFieldStrength=_CEST["field_t"], Agent="iopamidol",
                                     NoiseSD=_CEST["noise_sd"], Note="one frame per saturation offset")))
    obs = dict(common, ImagingTimesHours=study.imaging_times_h, NoiseSDuM=study.noise_sd_uM,
               R2starPerMMPerS=R2STAR_PER_MM_S, R1ReleasedPerMMPerS=R1_RELEASED_PER_MM_S)
    ts = study.imaging_times_h * 3600.0
    put("obs_encapsulated", times_volume(study.obs_encapsulated_uM, aff, ts, "uM", obs))
    put("obs_released", times_volume(study.obs_released_uM, aff, ts, "uM", obs))
    put("obs_delta_r2star", times_volume(study.obs_delta_r2star_per_s, aff, ts, "1/s", obs))
    put("obs_delta_r1", times_volume(study.obs_delta_r1_per_s, aff, ts, "1/s", obs))
    sol = study.solution
    tru = dict(common, TimesHours=sol.times_h, Note="drug per tissue volume, doxorubicin equivalent")
    for sp in ("encapsulated", "free", "bound"):
        put(f"truth_{sp}", times_volume(getattr(sol, sp), aff, sol.times_h * 3600.0, "uM", tru))
    if study.micro_solution is not None:
        ms = study.micro_solution
        m = study.micro_grid.shape[0]
        o = aff[:2, 3] + np.asarray(study.micro_origin_um) / 1000.0 - 0.5 * study.spacing_um / 1000.0 \
            + 0.5 * FINE_UM / 1000.0
        maff = slice_affine(FINE_UM / 1000.0, m, origin_mm=o)
        put("micro_vessels", Volume(study.micro_grid.vessels[:, :, None].astype(np.uint8), maff, "SEG", "label",
                                    meta={"sidecar": dict(common, OriginUm=list(study.micro_origin_um))}))
        mt = dict(tru, TimesHours=ms.times_h, SpacingUm=FINE_UM)
        for sp in ("free", "encapsulated", "bound"):
            put(f"truth_micro_{sp}", times_volume(getattr(ms, sp), maff, ms.times_h * 3600.0, "uM", mt))
    info = {"id": study.study_id, "scenario": study.scenario, "imaging_times_h": study.imaging_times_h.tolist(),
            "noise_sd_uM": study.noise_sd_uM, "files": files, "truth": study.truth}
    (folder / "study.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


def generate_drug_cohort(out_dir: str | os.PathLike, n: int = 3, seed: int = 0, *,
                         progress: Callable[[float, str], None] | None = None, **options) -> Path:
    """Generate ``n`` studies (scenarios in turn: free, liposome, thermosensitive) and ``manifest.json``.

    Parameters
    ----------
    out_dir : str or PathLike
    n : int, default=3
        Study ``i`` has scenario ``SCENARIOS[i % 3]``.
    seed : int, default=0
    progress : callable(fraction, message), optional
    **options
        Passed to :func:`generate_drug_study` (``size``, ``heterogeneous`` ...).

    Returns
    -------
    Path
        ``out_dir/manifest.json``.

    Examples
    --------
    >>> path = generate_drug_cohort("/tmp/drug-demo", n=3)     # doctest: +SKIP
    """
    if int(n) != n or n < 1:
        raise InputError(f"the cohort needs at least one study, got n={n!r}", fix="Give n >= 1.")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}", fix="Give seed >= 0.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(int(n)):
        study = generate_drug_study(i, int(seed), SCENARIOS[i % len(SCENARIOS)], **options)
        entries.append(write_drug_study(study, out))
        if progress:
            progress((i + 1) / int(n), f"{study.study_id} ({i + 1}/{int(n)})")
    manifest = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": int(seed), "synthetic": True,
                "n": int(n), "studies": entries}
    path = out / "manifest.json"
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
