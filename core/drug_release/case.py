r"""Drug release of a stored preclinical study: imaging -> maps -> inverse -> prediction -> a Result.

:func:`compute_drug_release` reads the study's MRI series by role (:mod:`core.cases.models`):

``vfa``
    variable-flip-angle SPGR (sidecar ``FlipAngles``, ``RepetitionTime`` in s) -> native T1
    (:func:`~core.drug_release.relaxometry.vfa_t1`);
``dce``
    DCE signal (``FlipAngle``, ``RepetitionTime``, ``RelaxivityR1PerMMPerS``) -> Gd
    concentration (:func:`~core.drug_release.relaxometry.signal_to_concentration`) -> extended
    Tofts ``Ktrans``, ``ve``, ``vp`` against the preclinical population AIF
    (:func:`~core.drug_release.aif.mouse_aif`) with one global bolus delay fitted
    (:func:`~core.drug_release.dce.fit_tofts`);
``cest``
    Z-spectra (``OffsetsPpm``) -> B0-corrected ratiometric pH
    (:func:`~core.drug_release.cest.ph_map_from_z`, :func:`~core.drug_release.cest.default_calibration`
    at the sidecar's B1 and field); NaN outside the calibrated range;
``delta_r2star``, ``delta_r1``
    relaxation-rate changes at the imaging times -> extravascular encapsulated drug
    (:math:`C = \Delta R_2^*/r_2^*`, ``R2starPerMMPerS``) and released drug
    (:math:`C = \Delta R_1/r_1`, ``R1ReleasedPerMMPerS``), µM, with the noise SD of the
    sidecar (``NoiseSDuM``);
``vessel_map``
    vessel surface per tissue volume (1/µm), the transport grid's source term;
``temperature`` (optional)
    MR thermometry during heating: the heating focus and the release-rate map of a
    thermosensitive carrier;

and the tumour mask (name ``tumour``). The carrier and its protocol (dose, plasma half-life,
heating) are those of the study's scenario (sidecar ``Scenario``, one of
:data:`core.drug_release.scenarios.SCENARIOS`, with its
:data:`~core.drug_release.scenarios.DEFAULT_SETTINGS`).

The transport model of the case (:mod:`core.drug_release.transport`) takes the interstitial
fraction from the fitted ``ve`` (tumour median where the fit failed), tumour and host fluid
parameters (Baxter & Jain 1989), lymphatic drainage only outside the tumour (functional
lymphatics are absent inside solid tumours, Padera et al. 2002; host value
:data:`HOST_LYMPHATIC_SURFACE_PER_UM`, this work) and library defaults for the rest. The
inverse (:mod:`core.drug_release.inverse`) estimates the unknowns from the drug maps by the
classical least squares and/or the I-PINN (liposome: release rate, free-drug diffusion, carrier
permeability, vascular pressure; free drug: diffusion and vascular pressure; a thermosensitive
study has time-dependent release, which the inverse model cannot represent, so none). The
prediction reruns the forward model with the classical estimates (the I-PINN's when the
classical fit is not available), giving carrier and free drug over time, the free-drug exposure
and, in a micro window reconstructed from the vessel map, exposure against distance from the
nearest vessel. Finally every scenario of :mod:`core.drug_release.scenarios` runs on the same
tumour for the lethal-fraction comparison.

Maps go into one ``.npz`` artefact and the scalars, tables and warnings into the summary of a
``drug_release.case`` Result, so that the page reads rather than recomputes.

References
----------
.. [1] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. I. Role of
   interstitial pressure and convection. Microvasc Res 1989;37:77-104.
.. [2] Padera TP, Kadambi A, di Tomaso E, et al. Lymphatic metastasis in the absence of
   functional intratumor lymphatics. Science 2002;296:1883-1886.
.. [3] Tofts PS, Brix G, Buckley DL, et al. Estimating kinetic parameters from dynamic
   contrast-enhanced T1-weighted MRI of a diffusable tracer: standardized quantities and
   symbols. J Magn Reson Imaging 1999;10:223-232.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import InputError

__all__ = ["DRUG_RELEASE_KIND", "INVERSE_METHODS", "INVERSE_NAMES", "HOST_LYMPHATIC_SURFACE_PER_UM",
           "CaseDrugRelease", "DrugCaseInputs", "case_inputs", "perfusion_maps", "ph_from_cest", "permeability_pattern",
           "observed_drug", "compute_drug_release", "find_drug_release", "load_drug_release"]

DRUG_RELEASE_KIND = "drug_release.case"
INVERSE_METHODS = ("classical", "pinn")
INVERSE_NAMES = {"classical": "Least squares through the solver", "pinn": "Inverse PINN (I-PINN)"}
#: Lymphatic surface per tissue volume outside the tumour, 1/µm (this work; the phantom's value).
HOST_LYMPHATIC_SURFACE_PER_UM = 0.005
#: Frames of the predicted drug fields kept for the page's time slider.
_MAX_FRAMES = 48
_FORMAT = 1
_REQUIRED = ("dce", "vfa", "cest", "delta_r2star", "delta_r1", "vessel_map")

Progress = Callable[[float, str], None]


@dataclass
class CaseDrugRelease:
    """Everything the drug-release page shows for one study; maps are (H, W) on the image grid.

    Attributes
    ----------
    maps : dict of str to ndarray (H, W)
        ``"ktrans_per_min"``, ``"ve"``, ``"vp"`` (extended Tofts, NaN where the fit failed),
        ``"t1_ms"`` (VFA), ``"ph"`` (CEST, NaN outside the calibrated range), ``"release_per_h"``
        (release-rate law of the carrier at the pH/temperature maps; absent for free drug),
        ``"ifp_mmhg"`` (predicted interstitial fluid pressure), ``"exposure_uM_h"`` (free-drug
        AUC of the prediction), ``"distance_to_vessel_um"``.
    fit_ok, ph_ok, tumour, vessels : bool ndarray (H, W)
        DCE fit succeeded; pH inside the calibration range; tumour mask; voxels with vessels.
    spacing_um : float
        In-plane voxel size.
    times_h : ndarray (T,)
        Times of the predicted drug fields, hours after injection.
    carrier_uM, free_uM : ndarray (T, H, W)
        Predicted extravasated encapsulated drug and free drug (µM per tissue volume).
    profile : dict
        Micro-window analysis: ``"distance_um"`` (B,), ``"auc_uM_h"`` (B,) free-drug exposure
        per distance bin, ``"n"`` (B,) pixels per bin, ``"penetration_um"``, ``"spacing_um"``,
        ``"window_auc_uM_h"`` (M, M), ``"window_vessels"`` (M, M) bool.
    scenarios : list of dict
        One per compared scenario: ``"name"``, ``"label"``, ``"lethal_fraction_voxel"``,
        ``"lethal_fraction_window"``, ``"median_auc_uM_h"``, ``"penetration_um"``.
    inverse : dict
        Method (``"classical"``, ``"pinn"``) -> ``{"estimates": {name: value}, "std": {name: sd},
        "wall_s": float, "ok": bool, "message": str}``; empty when the inverse does not apply.
    truth : dict or None
        True values of the unknowns on demo data (from the study's label), else None.
    summary : dict
        Scenario, carrier, imaging times, lethal threshold, fit statistics, warnings.
    """

    maps: dict
    fit_ok: np.ndarray
    ph_ok: np.ndarray
    tumour: np.ndarray
    vessels: np.ndarray
    spacing_um: float
    times_h: np.ndarray
    carrier_uM: np.ndarray
    free_uM: np.ndarray
    profile: dict
    scenarios: list
    inverse: dict
    truth: dict | None = None
    summary: dict = field(default_factory=dict)
    result_id: int | None = None


# ----------------------------------------------------------------------------- inputs
@dataclass
class DrugCaseInputs:
    """The study's images as 2D arrays (H, W[, n]) with their acquisition parameters.

    Attributes
    ----------
    study_id : int
    pseudonym, scenario : str
    spacing_um : float
    tumour : bool ndarray (H, W)
    dce_signal : ndarray (H, W, T); dce_t_min : (T,); dce : dict (flip_deg, tr_ms, r1_per_mM_s)
    vfa_signal : ndarray (H, W, F); vfa_flip_deg : (F,); vfa_tr_ms : float
    cest_z : ndarray (H, W, N); cest_offsets_ppm : (N,); cest : dict (b1_uT, field_t)
    delta_r2star, delta_r1 : ndarray (n_times, H, W), 1/s
    imaging_times_h : ndarray (n_times,)
    r2star_per_mM_s, r1_per_mM_s : float
    noise_sd_uM : dict or None
        Observation noise per species from the sidecars, µM.
    vessel_surface_per_um : ndarray (H, W)
    temperature_c : ndarray (H, W) or None
    series_ids, mask_ids : list of int
    label_details : dict
    """

    study_id: int
    pseudonym: str
    scenario: str
    spacing_um: float
    tumour: np.ndarray
    dce_signal: np.ndarray
    dce_t_min: np.ndarray
    dce: dict
    vfa_signal: np.ndarray
    vfa_flip_deg: np.ndarray
    vfa_tr_ms: float
    cest_z: np.ndarray
    cest_offsets_ppm: np.ndarray
    cest: dict
    delta_r2star: np.ndarray
    delta_r1: np.ndarray
    imaging_times_h: np.ndarray
    r2star_per_mM_s: float
    r1_per_mM_s: float
    noise_sd_uM: dict | None
    vessel_surface_per_um: np.ndarray
    temperature_c: np.ndarray | None
    series_ids: list
    mask_ids: list
    label_details: dict = field(default_factory=dict)


def _sidecar_value(volume, key: str, what: str, *, length: int | None = None):
    sidecar = volume.meta.get("sidecar") or {}
    value = sidecar.get(key)
    path = volume.source or "the series sidecar"
    if value is None:
        raise InputError(f"the {what} sidecar has no {key!r}", path=path,
                         fix=f"Add {key!r} to the series' JSON sidecar and import it again.")
    if length is not None:
        arr = np.asarray(value, float).ravel()
        if arr.size != length or not np.all(np.isfinite(arr)):
            raise InputError(f"the {what} sidecar's {key!r} has {arr.size} finite values for {length} frames",
                             path=path, fix=f"Give one {key} value per frame.")
        return arr
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"the {what} sidecar's {key!r} = {value!r} is not a positive number", path=path,
                         fix=f"Correct {key!r} in the sidecar.")
    return v


def _plane(volume, role: str, shape2d=None) -> np.ndarray:
    data = np.asarray(volume.data, float)
    if data.ndim < 3 or data.shape[2] != 1:
        raise InputError(f"the {role} series is {'x'.join(map(str, data.shape[:3]))}: the drug-release model "
                         "works on one 2D slice", path=volume.source,
                         fix="Import a single-slice acquisition (third dimension 1), e.g. the slice through the "
                             "tumour centre.")
    plane = data[:, :, 0]
    if shape2d is not None and plane.shape[:2] != tuple(shape2d):
        raise InputError(f"the {role} series is {plane.shape[0]}x{plane.shape[1]} but the DCE series is "
                         f"{shape2d[0]}x{shape2d[1]}", path=volume.source,
                         fix="Resample every series of the study onto the DCE grid before import.")
    return plane


def case_inputs(repo, study_id: int) -> DrugCaseInputs:
    """Load and check the study's series, mask and sidecars (module docstring).

    Raises
    ------
    InputError
        A missing role or tumour mask, a sidecar without the acquisition parameters, series
        on different grids or with more than one slice, an unknown scenario.
    """
    from core.drug_release.scenarios import SCENARIOS

    case = repo.get_case(study_id)
    by_role = {}
    for s in sorted(case.series, key=lambda r: r.id):
        by_role[s.role] = s  # the newest series of a role (a corrected re-import replaces the old one)
    missing = [r for r in _REQUIRED if r not in by_role]
    if missing:
        raise InputError(f"study {case.pseudonym} has no {', '.join(missing)} series",
                         fix=f"Import them with these roles: a drug-release study needs {', '.join(_REQUIRED)}.")
    vols = {role: repo.load_series(by_role[role].id) for role in (*_REQUIRED, "temperature") if role in by_role}
    dce = vols["dce"]
    shape = np.asarray(dce.data).shape[:2]
    planes = {role: _plane(vol, role, shape) for role, vol in vols.items()}
    spacing = np.linalg.norm(np.asarray(dce.affine)[:3, :3], axis=0)
    if abs(spacing[0] - spacing[1]) > 1e-3 * spacing[0]:
        raise InputError(f"the DCE pixels are {spacing[0]:.4g} x {spacing[1]:.4g} mm; the transport grid needs "
                         "square pixels", path=dce.source, fix="Resample to square pixels before import.")
    for role, vol in vols.items():
        if not np.allclose(np.asarray(vol.affine), np.asarray(dce.affine), atol=1e-4):
            raise InputError(f"the {role} series is not on the DCE grid (different voxel size, position or "
                             "orientation)", path=vol.source,
                             fix="Resample every series onto the DCE grid before import.")
    masks = [m for m in case.masks if m.name.lower() == "tumour"]
    if not masks:
        raise InputError(f"study {case.pseudonym} has no mask named 'tumour'",
                         fix="Draw or import the tumour mask (name 'tumour') on the DCE grid.")
    mask = repo.load_mask(masks[-1].id)
    if not np.allclose(np.asarray(mask.affine), np.asarray(dce.affine), atol=1e-4):
        raise InputError("the tumour mask is not on the DCE grid", path=mask.source,
                         fix="Draw or resample the tumour mask on the DCE grid.")
    tumour = _plane(mask, "tumour mask", shape) > 0
    if not tumour.any():
        raise InputError("the tumour mask is empty", fix="Draw the tumour on the DCE grid.")
    scenario = str((dce.meta.get("sidecar") or {}).get("Scenario", ""))
    if scenario not in SCENARIOS:
        raise InputError(f"the DCE sidecar names the scenario {scenario!r}", path=dce.source,
                         fix=f"Set 'Scenario' to the carrier given: one of {', '.join(SCENARIOS)}.")
    r2s, r1 = vols["delta_r2star"], vols["delta_r1"]
    times = np.asarray(r2s.frame_start_s, float) / 3600.0
    if np.asarray(r1.frame_start_s).shape != times.shape or not np.allclose(np.asarray(r1.frame_start_s) / 3600.0,
                                                                           times, atol=1e-6):
        raise InputError("the ΔR2* and ΔR1 series are not at the same imaging times", path=r1.source,
                         fix="Give both drug maps at the same time points (frame starts, s from injection).")
    noise = (r2s.meta.get("sidecar") or {}).get("NoiseSDuM")
    noise_r1 = (r1.meta.get("sidecar") or {}).get("NoiseSDuM", noise)
    noise_sd = None if noise is None else {"encapsulated": float(noise), "released": float(noise_r1)}
    vfa, cest = vols["vfa"], vols["cest"]
    vfa_sig, cest_z = planes["vfa"], planes["cest"]
    label = repo.labels(study_id)
    return DrugCaseInputs(
        study_id=study_id, pseudonym=case.pseudonym, scenario=scenario, spacing_um=round(float(spacing[0]) * 1000.0, 3),
        tumour=tumour, dce_signal=planes["dce"],
        dce_t_min=np.asarray(dce.frame_start_s, float) / 60.0,
        dce={"flip_deg": _sidecar_value(dce, "FlipAngle", "DCE"),
             "tr_ms": 1000.0 * _sidecar_value(dce, "RepetitionTime", "DCE"),
             "r1_per_mM_s": _sidecar_value(dce, "RelaxivityR1PerMMPerS", "DCE")},
        vfa_signal=vfa_sig,
        vfa_flip_deg=_sidecar_value(vfa, "FlipAngles", "VFA", length=vfa_sig.shape[-1]),
        vfa_tr_ms=1000.0 * _sidecar_value(vfa, "RepetitionTime", "VFA"),
        cest_z=cest_z, cest_offsets_ppm=_sidecar_value(cest, "OffsetsPpm", "CEST", length=cest_z.shape[-1]),
        cest={"b1_uT": _sidecar_value(cest, "B1uT", "CEST"),
              "field_t": _sidecar_value(cest, "MagneticFieldStrength", "CEST")},
        delta_r2star=np.moveaxis(planes["delta_r2star"], -1, 0),
        delta_r1=np.moveaxis(planes["delta_r1"], -1, 0),
        imaging_times_h=times,
        r2star_per_mM_s=_sidecar_value(r2s, "R2starPerMMPerS", "ΔR2*"),
        r1_per_mM_s=_sidecar_value(r1, "R1ReleasedPerMMPerS", "ΔR1"),
        noise_sd_uM=noise_sd,
        vessel_surface_per_um=planes["vessel_map"], temperature_c=planes.get("temperature"),
        series_ids=sorted(by_role[r].id for r in vols), mask_ids=[masks[-1].id],
        label_details=dict(label[-1].details) if label else {})


# ----------------------------------------------------------------------------- imaging maps
def perfusion_maps(inputs: DrugCaseInputs) -> dict:
    """T1 (VFA), Gd concentration and extended-Tofts maps of the study.

    Returns
    -------
    dict
        ``t1_ms``, ``ktrans_per_min``, ``ve``, ``vp`` (NaN where not ok), ``ok`` (bool),
        ``delay_min`` (bolus arrival of the AIF: first the arrival in the tumour's mean curve,
        Cheong et al. 2003, then refined by the summed fit residual), ``n_ok``, ``n_tumour`` and
        ``n_avascular_failed`` (failed tumour voxels without vessels in the vessel map: no
        enhancement, so ve is undefined).
    """
    from core.drug_release.aif import estimate_bolus_arrival, mouse_aif
    from core.drug_release.dce import fit_tofts
    from core.drug_release.relaxometry import signal_to_concentration, vfa_t1

    t1, m0, ok_t1 = vfa_t1(inputs.vfa_signal, inputs.vfa_flip_deg, inputs.vfa_tr_ms)
    d = inputs.dce
    conc, ok_c = signal_to_concentration(inputs.dce_signal, np.where(ok_t1, t1, 1000.0), d["flip_deg"], d["tr_ms"],
                                         d["r1_per_mM_s"])
    ok_in = ok_t1 & ok_c
    t = inputs.dce_t_min - inputs.dce_t_min[0]
    use = ok_in & inputs.tumour
    if not use.any():
        raise InputError("no tumour voxel has a usable DCE concentration curve (T1 mapping or conversion failed)",
                         fix="Check the VFA flip angles and TR, and the DCE flip angle, TR and relaxivity.")
    arrival = float(estimate_bolus_arrival(conc[use].mean(axis=0), t))
    if not math.isfinite(arrival):
        raise InputError("the bolus arrival cannot be found in the tumour's mean DCE curve",
                         fix="Start the DCE series with pre-contrast frames.")
    # the tissue's arrival starts the AIF; fit_tofts refines one global shift by the summed residual
    cp = mouse_aif(t, delay_min=arrival)
    fit = fit_tofts(np.where(ok_in[..., None], conc, np.nan), t, cp, extended=True, fit_delay=True)
    arrival += float(np.nanmedian(np.asarray(fit["delay_min"], float)))
    ok = fit["ok"] & ok_in
    nan = lambda a: np.where(ok, a, np.nan)  # noqa: E731
    return {"t1_ms": np.where(ok_t1, t1, np.nan), "ktrans_per_min": nan(fit["Ktrans"]), "ve": nan(fit["ve"]),
            "vp": nan(fit["vp"]), "ok": ok, "delay_min": arrival,
            "n_ok": int(ok[inputs.tumour].sum()), "n_tumour": int(inputs.tumour.sum()),
            "n_avascular_failed": int((~ok & inputs.tumour & (inputs.vessel_surface_per_um <= 0)).sum())}


def ph_from_cest(inputs: DrugCaseInputs) -> tuple[np.ndarray, np.ndarray]:
    """pH map and its ok flags from the CEST Z-spectra (calibration simulated at the study's B1 and field)."""
    from core.drug_release.cest import default_calibration, ph_map_from_z

    cal = default_calibration(b1_uT=inputs.cest["b1_uT"], field_t=inputs.cest["field_t"])
    ph, ok = ph_map_from_z(inputs.cest_z, inputs.cest_offsets_ppm, cal)
    return np.where(ok, ph, np.nan), ok


def observed_drug(inputs: DrugCaseInputs) -> dict:
    """Extravascular encapsulated and released drug at the imaging times, µM (relaxivities of the sidecars)."""
    from core.drug_release.relaxometry import delta_r2star_to_concentration

    enc_mM, ok_e = delta_r2star_to_concentration(inputs.delta_r2star, inputs.r2star_per_mM_s)
    rel_mM = inputs.delta_r1 / inputs.r1_per_mM_s
    if not (ok_e.all() and np.all(np.isfinite(rel_mM))):
        raise InputError("the drug maps hold NaN or infinite values",
                         fix="Mask or repair the ΔR2*/ΔR1 maps before import (every voxel must be finite).")
    return {"encapsulated": 1000.0 * enc_mM, "released": 1000.0 * rel_mM}


# ----------------------------------------------------------------------------- transport model of the case
def _filled(values: np.ndarray, tumour: np.ndarray, fallback: float) -> tuple[np.ndarray, int]:
    """NaN replaced by the tumour median inside the tumour and by ``fallback`` outside; count replaced in tumour."""
    bad = ~np.isfinite(values)
    med = float(np.nanmedian(values[tumour])) if np.isfinite(values[tumour]).any() else fallback
    out = np.where(bad, np.where(tumour, med, fallback), values)
    return out, int((bad & tumour).sum())


def _nearest_filled(values: np.ndarray, regions=None) -> np.ndarray:
    """NaN voxels take the value of the nearest finite voxel of the same region (Euclidean distance transform).

    ``regions``: boolean masks (e.g. tumour and host) filled separately; default one region.
    """
    from scipy import ndimage

    values = np.asarray(values, float)
    out = values.copy()
    for region in (regions if regions is not None else (np.ones(values.shape, bool),)):
        src = np.where(region, values, np.nan)
        bad = ~np.isfinite(src)
        if not (bad & region).any() or bad.all():
            continue
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        out[region] = src[tuple(idx)][region]
    return out


def permeability_pattern(perf: dict, vessel_surface_per_um: np.ndarray, tumour=None) -> np.ndarray:
    r"""Relative vessel permeability from DCE-MRI: :math:`m = K^{trans}/(S/V)` (this work).

    In the permeability-limited regime :math:`K^{trans} = P\,S/V`, so Ktrans over the vessel
    surface map is the permeability of the small Gd chelate up to a constant. Doxorubicin
    (0.54 kDa) is of the size of Gd-DTPA (0.55 kDa), and the carrier is assumed to share the
    pattern (leakier vessels leak both; this work). Voxels without vessels or a fit take the
    nearest defined value of their region (tumour or host; they have no vessel surface, so it
    does not enter the model).
    """
    sv = np.asarray(vessel_surface_per_um, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where((sv > 0) & perf["ok"] & (perf["ktrans_per_min"] > 0), perf["ktrans_per_min"] / sv, np.nan)
    m = _nearest_filled(m, (tumour, ~tumour)) if tumour is not None else _nearest_filled(m)
    return np.where(np.isfinite(m), m, 1.0)


def _transport_model(inputs: DrugCaseInputs, perf: dict):
    from core.drug_release.inverse import normalised_pattern
    from core.drug_release.pressure import FluidParams, TissueGrid
    from core.drug_release.transport import TransportParams

    tum = inputs.tumour
    n_ve = int((~np.isfinite(perf["ve"]) & tum).sum())
    ve = _nearest_filled(perf["ve"], (tum, ~tum))
    ve = np.clip(np.where(np.isfinite(ve), ve, 0.3), 0.05, 0.95)
    grid = TissueGrid(inputs.spacing_um, inputs.vessel_surface_per_um, tum,
                      lymphatic_surface_per_um=np.where(tum, 0.0, HOST_LYMPHATIC_SURFACE_PER_UM))
    pattern = normalised_pattern(permeability_pattern(perf, inputs.vessel_surface_per_um, tum), grid)
    base = TransportParams(interstitial_fraction=ve, fluid=FluidParams.tumour_and_host(tum),
                           permeability_free_um_per_h=TransportParams.permeability_free_um_per_h * pattern,
                           permeability_carrier_um_per_h=TransportParams.permeability_carrier_um_per_h * pattern)
    return grid, base, n_ve, pattern


def _heating_centre(inputs: DrugCaseInputs):
    if inputs.temperature_c is None:
        return None
    hot = inputs.temperature_c >= 0.5 * (float(np.nanmax(inputs.temperature_c)) + 37.0)
    if not hot.any() or float(np.nanmax(inputs.temperature_c)) < 38.0:
        return None
    return tuple(float(c) for c in np.argwhere(hot).mean(axis=0))


def _release_map(inputs: DrugCaseInputs, ph: np.ndarray):
    """The carrier's release rate (1/h) at the measured pH/temperature, and its law's name (None: free drug)."""
    from core.drug_release.release import release_law

    law_name = {"free": None, "liposome": "liposome", "thermosensitive": "thermosensitive"}[inputs.scenario]
    if law_name is None:
        return None, None
    law = release_law(law_name)
    if "temperature_c" in law.needs:
        temp = inputs.temperature_c if inputs.temperature_c is not None else np.full(ph.shape, 37.0)
        return law.rate_per_h(temperature_c=np.clip(temp, 30.0, 50.0)), law_name
    if "ph" in law.needs:
        return law.rate_per_h(ph=ph), law_name
    return np.broadcast_to(law.rate_per_h(), ph.shape).astype(float), law_name


def _unknowns(scenario: str):
    from core.drug_release.inverse import UNKNOWNS, Unknown

    names = tuple(UNKNOWNS) if scenario == "liposome" else ("diffusion_free_um2_per_h", "vascular_pressure_mmhg")
    return tuple(Unknown(n, math.sqrt(UNKNOWNS[n][0] * UNKNOWNS[n][1])) for n in names)


def _run_inverse(problem, methods, pinn_iterations, seed, progress, lo, hi) -> dict:
    from core.drug_release.inverse_classical import fit_classical

    out = {}
    n = len(methods)
    for k, method in enumerate(methods):
        a, b = lo + (hi - lo) * k / n, lo + (hi - lo) * (k + 1) / n
        _report(progress, a, f"Inverse: {INVERSE_NAMES[method]}")
        try:
            if method == "classical":
                res = fit_classical(problem)
            else:
                from core.drug_release.pinn import fit_pinn

                res = fit_pinn(problem, iterations=int(pinn_iterations), seed=seed,
                               progress=None if progress is None else
                               (lambda f, m, a=a, b=b: _report(progress, a + (b - a) * f, m)))
        except InputError as err:
            out[method] = {"estimates": {}, "std": {}, "wall_s": math.nan, "ok": False, "message": str(err)}
            continue
        estimates = {k2: float(v) for k2, v in res.estimates.items()}
        ok = all(math.isfinite(v) for v in estimates.values())
        out[method] = {"estimates": estimates,
                       "std": {k2: (None if v is None or not math.isfinite(float(v)) else float(v))
                               for k2, v in res.std.items()},
                       "wall_s": float(res.wall_s), "ok": bool(ok),
                       "message": "; ".join(str(w) for w in (res.extra or {}).get("warnings", []))}
    return out


def _report(progress, fraction, message):
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def _truth(inputs: DrugCaseInputs, names) -> dict | None:
    truth = inputs.label_details.get("truth") if isinstance(inputs.label_details, dict) else None
    if not isinstance(truth, dict):
        return None
    return {n: (None if truth.get(n) is None else float(truth[n])) for n in names if n in truth}


def _frames(times: np.ndarray) -> np.ndarray:
    """Indices of at most _MAX_FRAMES saved times, spread evenly over the run (first and last kept)."""
    if times.size <= _MAX_FRAMES:
        return np.arange(times.size)
    targets = np.linspace(times[0], times[-1], _MAX_FRAMES)
    return np.unique([int(np.argmin(np.abs(times - t))) for t in targets])


# ----------------------------------------------------------------------------- the Result
def _parameters(inputs: DrugCaseInputs, methods, pinn_iterations, threshold, seed) -> dict:
    return {"format": _FORMAT, "methods": list(methods), "pinn_iterations": int(pinn_iterations),
            "threshold_uM_h": float(threshold), "seed": int(seed), "series": list(inputs.series_ids),
            "masks": list(inputs.mask_ids)}


def compute_drug_release(repo, study_id: int, *, methods=INVERSE_METHODS, pinn_iterations: int | None = None,
                         threshold_uM_h: float | None = None, seed: int = 0, user: str = "local",
                         progress: Progress | None = None):
    """Compute the drug-release analysis of a stored study and store it as a Result (module docstring).

    Parameters
    ----------
    repo : CaseRepository
    study_id : int
    methods : sequence of {"classical", "pinn"}, default both
        Inverse methods; empty: no inverse (the prediction uses library defaults).
    pinn_iterations : int, optional
        Adam steps of the I-PINN; default :data:`core.drug_release.pinn.PINN_DEFAULTS`.
    threshold_uM_h : float, optional
        Lethal free-drug exposure, µM·h; default
        :data:`core.drug_release.outcomes.DEFAULT_LETHAL_AUC_UM_H`.
    seed : int, default=0
        Seed of the I-PINN and of the micro-window vessel reconstruction.
    user : str, default="local"
    progress : callable(fraction, message), optional

    Returns
    -------
    ResultRecord
        Kind :data:`DRUG_RELEASE_KIND`; artefact ``.npz`` with the maps.

    Raises
    ------
    InputError
        Bad or missing inputs (:func:`case_inputs`), unknown method, non-positive threshold.
    """
    from core.drug_release.inverse import InverseProblem, with_parameters
    from core.drug_release.microwindow import micro_window
    from core.drug_release.release import release_law
    from core.drug_release.outcomes import (DEFAULT_LETHAL_AUC_UM_H, distance_to_vessel_um, exposure_auc,
                                            lethal_fraction)
    from core.drug_release.scenarios import (DEFAULT_SETTINGS, SCENARIOS, compare_scenarios, default_save_times_h,
                                             run_scenario, scenario_setup)

    methods = tuple(methods)
    bad = [m for m in methods if m not in INVERSE_METHODS]
    if bad:
        raise InputError(f"inverse method {bad[0]!r} is not known", fix=f"Choose from {', '.join(INVERSE_METHODS)}.")
    methods = tuple(m for m in INVERSE_METHODS if m in methods)
    if pinn_iterations is None:
        from core.drug_release.pinn import PINN_DEFAULTS

        pinn_iterations = int(PINN_DEFAULTS["iterations"])
    if int(pinn_iterations) < 1:
        raise InputError(f"pinn_iterations = {pinn_iterations!r}", fix="Give at least 1 iteration.")
    threshold = DEFAULT_LETHAL_AUC_UM_H if threshold_uM_h is None else float(threshold_uM_h)
    if not (math.isfinite(threshold) and threshold > 0):
        raise InputError(f"the lethal exposure threshold {threshold_uM_h!r} µM·h is not positive",
                         fix="Give a positive threshold in µM·h.")
    t_start = time.perf_counter()
    timings = {}
    _report(progress, 0.0, "Reading the study")
    inputs = case_inputs(repo, study_id)
    warnings = []

    _report(progress, 0.05, "T1 mapping and extended Tofts fit")
    t0 = time.perf_counter()
    perf = perfusion_maps(inputs)
    timings["dce_s"] = time.perf_counter() - t0
    if perf["n_ok"] < perf["n_tumour"]:
        n_bad = perf["n_tumour"] - perf["n_ok"]
        warnings.append(f"No usable extended Tofts fit in {n_bad} of {perf['n_tumour']} tumour voxels (shown blank); "
                        f"{perf['n_avascular_failed']} of them have no vessels in the vessel map, so they do not "
                        "enhance and ve is undefined.")
    _report(progress, 0.12, "CEST pH map")
    t0 = time.perf_counter()
    ph, ph_ok = ph_from_cest(inputs)
    timings["cest_s"] = time.perf_counter() - t0
    tum = inputs.tumour
    ph_filled, n_ph = _filled(ph, tum, 7.4)
    if n_ph:
        warnings.append(f"pH is outside the CEST calibration in {n_ph} of {int(tum.sum())} tumour voxels (blank); "
                        "the models use the tumour median there.")
    release, law_name = _release_map(inputs, ph_filled)
    grid, base, n_ve, pattern = _transport_model(inputs, perf)
    if n_ve:
        warnings.append(f"Where the fit failed ({n_ve} tumour voxels) the transport model takes ve from the nearest "
                        "fitted tumour voxel.")

    # ---- inverse
    observed = observed_drug(inputs)
    settings = DEFAULT_SETTINGS[inputs.scenario]
    centre = _heating_centre(inputs)
    setup = scenario_setup(inputs.scenario, grid, base, ph=ph_filled, centre_vox=centre, settings=settings)
    unknowns = _unknowns(inputs.scenario)
    inverse, inverse_note = {}, ""
    if not methods:
        inverse_note = "No inverse method was selected: the prediction uses the library's default parameters."
    elif inputs.scenario == "thermosensitive":
        inverse_note = ("The inverse is not applied to thermosensitive liposomes: their release changes with "
                        "heating and happens partly inside the vessels, which the inverse model (one time-constant "
                        "release rate, one plasma curve) cannot represent. The prediction uses the library's "
                        "defaults.")
    else:
        noise = inputs.noise_sd_uM
        if noise is None:
            noise = {k: float(np.std(v[:, ~tum])) for k, v in observed.items()}
            warnings.append("The drug maps' sidecars give no noise SD: it is estimated from the host tissue.")
        problem = InverseProblem(grid=grid, plasma=setup.plasma, base=setup.pieces[0].params,
                                 times_h=inputs.imaging_times_h, observed=observed, unknowns=unknowns,
                                 noise_sd_uM=noise, dt_h=min(0.05, setup.pieces[0].dt_h),
                                 carrier_permeability_pattern=pattern)
        inverse = _run_inverse(problem, methods, pinn_iterations, seed, progress, 0.15, 0.75)
    truth = _truth(inputs, [u.name for u in unknowns])
    chosen = next((m for m in INVERSE_METHODS if m in inverse and inverse[m]["ok"]), None)

    # ---- prediction with the estimates
    _report(progress, 0.78, "Forward prediction")
    t0 = time.perf_counter()
    tuned = base if chosen is None else with_parameters(base, inverse[chosen]["estimates"], carrier_pattern=pattern)
    setup = scenario_setup(inputs.scenario, grid, tuned, ph=ph_filled, centre_vox=centre, settings=settings)
    save = default_save_times_h(setup.t_end_h)
    sol = run_scenario(setup, grid, save_times_h=save)
    auc = exposure_auc(sol, "free")
    timings["prediction_s"] = time.perf_counter() - t0
    keep = _frames(sol.times_h)

    # ---- scenarios (and the micro window of the study's own scenario)
    t0 = time.perf_counter()
    names = list(SCENARIOS)

    def scen_progress(f, m):
        _report(progress, 0.82 + 0.16 * f, f"Scenarios: {m}")
    outcomes = compare_scenarios(grid, tuned, ph=ph_filled, names=names, threshold_uM_h=threshold, seed=seed,
                                 progress=scen_progress if progress else None, centre_vox=centre)
    timings["scenarios_s"] = time.perf_counter() - t0
    own = next(o for o in outcomes if o.name == inputs.scenario)
    win = own.window
    window_grid = micro_window(grid.vessel_surface_per_um, own.window_ij, voxel_um=inputs.spacing_um, seed=seed)
    scenarios = [{"name": o.name, "label": o.label, "lethal_fraction_voxel": float(o.lethal_fraction_voxel),
                  "lethal_fraction_window": float(o.lethal_fraction_window),
                  "median_auc_uM_h": float(o.median_auc_uM_h),
                  "penetration_um": None if not math.isfinite(o.penetration_um) else float(o.penetration_um),
                  "runtime_s": float(o.runtime_s)} for o in outcomes]
    timings["total_s"] = time.perf_counter() - t_start

    maps = {"t1_ms": perf["t1_ms"], "ktrans_per_min": perf["ktrans_per_min"], "ve": perf["ve"], "vp": perf["vp"],
            "ph": ph, "ifp_mmhg": np.asarray(setup.pressure_mmhg, float), "exposure_uM_h": auc,
            "distance_to_vessel_um": distance_to_vessel_um(grid)}
    if release is not None:
        maps["release_per_h"] = np.asarray(release, float)
    stats = {k: _tumour_stats(v, tum) for k, v in maps.items()}
    summary = {
        "pseudonym": inputs.pseudonym, "scenario": inputs.scenario, "scenario_label": SCENARIOS[inputs.scenario],
        "carrier": {"free": "none (free doxorubicin)", "liposome": "PEGylated liposome",
                    "thermosensitive": "lysolipid thermosensitive liposome"}[inputs.scenario],
        "release_law": law_name or "free",
        "release_parameters": {} if law_name is None else {k: float(v) for k, v in
                                                           release_law(law_name).parameters.items()},
        "imaging_times_h": [float(t) for t in inputs.imaging_times_h],
        "threshold_uM_h": threshold, "lethal_fraction": float(lethal_fraction(auc, tum, threshold)),
        "dce_delay_min": perf["delay_min"], "dce_fit_ok_tumour": [perf["n_ok"], perf["n_tumour"]],
        "tumour_stats": stats, "inverse": inverse, "inverse_note": inverse_note, "inverse_used": chosen,
        "truth": truth, "unknowns": [u.name for u in unknowns], "scenarios": scenarios,
        "profile_penetration_um": None if not math.isfinite(float(win.get("penetration_um", math.nan)))
        else float(win["penetration_um"]),
        "window_ij": list(own.window_ij), "timings_s": timings, "warnings": warnings,
        "mass_imbalance": float(sol.ledger.relative_imbalance()) if sol.ledger is not None else None,
        "plasma": {"dose_uM": settings.dose_uM, "half_life_h": settings.half_life_h, "t_end_h": settings.t_end_h},
    }
    arrays = {f"map_{k}": np.asarray(v, np.float32) for k, v in maps.items()}
    arrays.update(fit_ok=perf["ok"], ph_ok=np.asarray(ph_ok, bool), tumour=tum,
                  vessels=inputs.vessel_surface_per_um > 0,
                  times_h=sol.times_h[keep], carrier=sol.encapsulated[keep].astype(np.float32),
                  free=sol.free[keep].astype(np.float32), spacing_um=np.float64(inputs.spacing_um),
                  profile_distance_um=np.asarray(win["distance_um"], float),
                  profile_auc_uM_h=np.asarray(win["auc_uM_h"], float), profile_n=np.asarray(win["n"]),
                  window_auc_uM_h=np.asarray(win["window_auc_uM_h"], np.float32),
                  window_vessels=np.asarray(window_grid.vessels, bool),
                  window_spacing_um=np.float64(window_grid.spacing_um))
    _report(progress, 0.99, "Storing the result")
    with tempfile.TemporaryDirectory(prefix="theraboard-drug-") as tmp:
        path = Path(tmp) / "drug_release.npz"
        np.savez_compressed(path, **arrays)
        record = repo.add_result(study_id, DRUG_RELEASE_KIND,
                                 _parameters(inputs, methods, pinn_iterations, threshold, seed), summary,
                                 artefact=path, user=user)
    _report(progress, 1.0, "Done")
    return record


def _tumour_stats(values: np.ndarray, tumour: np.ndarray) -> dict:
    v = np.asarray(values, float)[tumour]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": None, "q1": None, "q3": None, "n": 0}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "n": int(v.size)}


def find_drug_release(repo, study_id: int, *, methods=INVERSE_METHODS, pinn_iterations: int | None = None,
                      threshold_uM_h: float | None = None, seed: int = 0):
    """The newest stored drug-release Result of the study with these settings and the current inputs, or None."""
    from core.drug_release.outcomes import DEFAULT_LETHAL_AUC_UM_H

    if pinn_iterations is None:
        from core.drug_release.pinn import PINN_DEFAULTS

        pinn_iterations = int(PINN_DEFAULTS["iterations"])
    case = repo.get_case(study_id)
    wanted = {"format": _FORMAT, "methods": [m for m in INVERSE_METHODS if m in tuple(methods)],
              "pinn_iterations": int(pinn_iterations),
              "threshold_uM_h": float(DEFAULT_LETHAL_AUC_UM_H if threshold_uM_h is None else threshold_uM_h),
              "seed": int(seed)}
    roles = set(_REQUIRED) | {"temperature"}
    series = sorted(s.id for s in case.series if s.role in roles)
    for record in reversed(repo.list_results(study_id, DRUG_RELEASE_KIND)):
        p = record.parameters
        if all(p.get(k) == v for k, v in wanted.items()) and sorted(p.get("series", [])) == series \
                and all(m in {x.id for x in case.masks} for m in p.get("masks", [])):
            return record
    return None


def load_drug_release(repo, record) -> CaseDrugRelease:
    """A stored drug-release Result back as :class:`CaseDrugRelease`."""
    summary = dict(record.summary)
    with np.load(repo.resolve(record.artefact_path)) as z:
        maps = {k[4:]: z[k].astype(float) for k in z.files if k.startswith("map_")}
        profile = {"distance_um": z["profile_distance_um"], "auc_uM_h": z["profile_auc_uM_h"], "n": z["profile_n"],
                   "penetration_um": summary.get("profile_penetration_um"),
                   "spacing_um": float(z["window_spacing_um"]),
                   "window_auc_uM_h": z["window_auc_uM_h"].astype(float), "window_vessels": z["window_vessels"]}
        return CaseDrugRelease(maps=maps, fit_ok=z["fit_ok"], ph_ok=z["ph_ok"], tumour=z["tumour"],
                               vessels=z["vessels"], spacing_um=float(z["spacing_um"]), times_h=z["times_h"],
                               carrier_uM=z["carrier"].astype(float), free_uM=z["free"].astype(float),
                               profile=profile, scenarios=list(summary.get("scenarios", [])),
                               inverse=dict(summary.get("inverse", {})), truth=summary.get("truth"),
                               summary=summary, result_id=record.id)
