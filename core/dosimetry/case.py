"""Dosimetry of a stored therapy case: SPECT time series + CT -> TIA -> dose by every method -> a Result.

:func:`compute_dosimetry` loads the case's SPECT (role ``spect``, one frame per scan) and CT,
checks and aligns them (:func:`core.dosimetry.inputs.prepare_inputs`), fits every organ's
time-activity curve (:func:`core.dosimetry.tia.fit_tia`, AICc choice, stored with its fit
quality), integrates every voxel (:func:`core.dosimetry.tia.voxel_tia`) and computes the
absorbed dose by the methods asked for, timing each:

* ``"local"``: local energy deposition of the non-penetrating emissions;
* ``"vsv"``: voxel S-value convolution (kernels of the project's Monte Carlo) with mass scaling;
* ``"mc"``: the Monte Carlo reference with its per-voxel uncertainty;
* ``"dl"``: the deep-learning engine when a bundle for the nuclide and voxel size is shipped.

The maps go into one ``.npz`` artefact and the organ table, fits, timings and warnings into the
summary of a ``dosimetry.dose`` Result, so that the page reads rather than recomputes.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import InputError

__all__ = ["DOSIMETRY_KIND", "METHODS", "METHOD_NAMES", "CaseDosimetry", "case_inputs", "compute_dosimetry",
           "find_dosimetry", "load_dosimetry", "dose_engine_bundle", "effective_half_life_h"]

DOSIMETRY_KIND = "dosimetry.dose"
METHODS = ("local", "vsv", "mc", "dl")
METHOD_NAMES = {"local": "Local deposition", "vsv": "Voxel S-values", "mc": "Monte Carlo", "dl": "Deep learning"}
#: Monte Carlo histories of a case (photons, electrons): about 2 % in organs on the demo torso.
MC_HISTORIES = (4_000_000, 2_000_000)
_FORMAT = 1

Progress = Callable[[float, str], None]


@dataclass
class CaseDosimetry:
    """Everything the dosimetry page shows for one case.

    Attributes
    ----------
    tia_mbq_h : ndarray
    doses_gy : dict of str to ndarray
        Absorbed dose per method.
    mc_uncertainty : ndarray or None
        Relative 1-sigma uncertainty of the Monte Carlo dose.
    ct_hu, density_g_ml, labels : ndarray
        On the SPECT grid; ``labels`` indexes ``label_names``.
    label_names : dict of int to str
    affine : ndarray
    voxel_mm : tuple
    summary : dict
        Nuclide, administered activity, times, organ fits, organ tables per method, timings, warnings.
    """

    tia_mbq_h: np.ndarray
    doses_gy: dict
    mc_uncertainty: np.ndarray | None
    ct_hu: np.ndarray
    density_g_ml: np.ndarray
    labels: np.ndarray
    label_names: dict
    affine: np.ndarray
    voxel_mm: tuple
    summary: dict = field(default_factory=dict)
    result_id: int | None = None


def _series(case, role: str):
    found = [s for s in case.series if s.role == role]
    if not found:
        raise InputError(f"case {case.pseudonym} has no {role.upper()} series",
                         fix=f"Import the {role.upper()} of the therapy (role '{role}') on the Worklist.")
    return found[-1]


def case_inputs(repo, study_id: int, *, nuclide: str | None = None, administered_mbq: float | None = None):
    """The checked inputs of a stored case and its organ label map on the SPECT grid.

    Nuclide and administered activity come from the SPECT sidecar (``Radionuclide``,
    ``AdministeredActivityMBq``) unless given.

    Returns
    -------
    (DosimetryInputs, labels ndarray, label_names dict)
    """
    from core.dosimetry.inputs import prepare_inputs
    from core.imaging.resample import resample_to
    from core.imaging.volume import Volume

    case = repo.get_case(study_id)
    spect_rec, ct_rec = _series(case, "spect"), _series(case, "ct")
    spect = repo.load_series(spect_rec.id)
    ct = repo.load_series(ct_rec.id)
    sidecar = spect.meta.get("sidecar", {}) if isinstance(spect.meta.get("sidecar"), dict) else {}
    nuclide = nuclide or sidecar.get("Radionuclide")
    administered = administered_mbq if administered_mbq is not None else sidecar.get("AdministeredActivityMBq")
    where = f"series {spect_rec.id} of case {case.pseudonym}"
    if not nuclide:
        raise InputError(f"{where}: the radionuclide is not recorded", fix="Enter it (e.g. 'Lu-177') as the nuclide of the dosimetry (the page's sidebar).")
    if administered is None:
        raise InputError(f"{where}: the administered activity is not recorded",
                         fix="Enter the assayed administered activity in MBq (the page's sidebar).")
    inputs = prepare_inputs(spect, ct, nuclide, administered, spect_path=where, ct_path=f"series {ct_rec.id}")
    grid = Volume(np.zeros(inputs.ct_hu.shape, np.float32), inputs.affine)
    labels = np.zeros(inputs.ct_hu.shape, np.int16)
    names: dict[int, str] = {}
    for mask in case.masks:
        if mask.name == "tumour":          # the union of the tumours: they are labelled one by one
            continue
        vol = repo.load_mask(mask.id)
        data = np.asarray(vol.data)
        if data.shape != labels.shape or not np.allclose(vol.affine, inputs.affine, atol=1e-3):
            data = np.asarray(resample_to(Volume(data.astype(np.uint8), vol.affine), grid, "nearest").data) > 0
        k = len(names) + 1
        names[k] = mask.name
        labels[data] = k
    return inputs, labels, names


def dose_engine_bundle(nuclide: str, voxel_mm: float):
    """The shipped deep-learning dose bundle for a nuclide and voxel size, or None with the reason."""
    from core.dosimetry.deep_training import load_dose_bundle
    from core.learning.model_card import models_dir

    folder = models_dir() / ("dose_unet_" + nuclide.lower().replace("-", ""))
    if not folder.exists():
        return None, f"no deep-learning dose engine is shipped for {nuclide} (python -m core train dose)"
    try:
        return load_dose_bundle(folder, nuclide=nuclide, voxel_mm=voxel_mm), ""
    except InputError as err:
        return None, str(err)


def _parameters(case, inputs, methods, mc_histories, seed, override) -> dict:
    return {"format": _FORMAT, "series": sorted(s.id for s in case.series if s.role in ("spect", "ct")),
            "masks": sorted(m.id for m in case.masks), "nuclide": inputs.nuclide,
            "administered_mbq": inputs.administered_mbq, "methods": list(methods),
            "mc_histories": list(mc_histories), "seed": seed, "override": override}


def effective_half_life_h(fit: dict) -> float | None:
    """ln 2 x TIA / peak activity: the half-life of the mono-exponential with the same area and peak (this work).

    ``fit`` is an entry of the summary's ``fits``; None when the fit failed.

    Examples
    --------
    >>> round(effective_half_life_h({"model": "mono-exp", "tia_mbq_h": 100 / math.log(2) * 50,
    ...                              "activity_mbq": [100.0, 50.0]}), 6)
    50.0
    """
    peak = max(fit.get("activity_mbq") or [0.0])
    tia = fit.get("tia_mbq_h")
    if not fit.get("model") or not tia or peak <= 0:
        return None
    return math.log(2) * float(tia) / float(peak)


def _organ_fits(inputs, labels, names) -> dict:
    """Exponential fits of every organ's time-activity curve (chosen model, TIA, fit quality)."""
    from core.dosimetry.nuclides import nuclide_data
    from core.dosimetry.tia import fit_tia

    half_life_h = nuclide_data(inputs.nuclide).half_life_s / 3600.0
    flat = inputs.activity_mbq.reshape(inputs.times_h.size, -1)
    out = {}
    for k, name in names.items():
        curve = flat[:, labels.ravel() == k].sum(1)
        if not np.any(curve > 0):
            continue
        try:
            fit = fit_tia(inputs.times_h, curve, half_life_h)
            out[name] = {"activity_mbq": curve.tolist(), "model": fit.method, "tia_mbq_h": fit.tia_mbq_h,
                         "params": fit.params, "r2": fit.r2, "aicc": fit.aicc, "note": fit.note}
        except InputError as err:
            out[name] = {"activity_mbq": curve.tolist(), "model": None, "error": str(err)}
    return out


def compute_dosimetry(repo, study_id: int, *, methods=METHODS, mc_histories=MC_HISTORIES, seed: int = 0,
                      nuclide: str | None = None, administered_mbq: float | None = None, store: bool = True,
                      user: str = "local", progress: Progress | None = None) -> CaseDosimetry:
    """Compute (and store) the dosimetry of a case by the given methods (module docstring)."""
    from core.dosimetry.deep import predict_dose_rate
    from core.dosimetry.convolution import vsv_dose
    from core.dosimetry.dvh import organ_dose_table
    from core.dosimetry.kernels import voxel_kernel
    from core.dosimetry.local import local_deposition_dose
    from core.dosimetry.montecarlo import monte_carlo_dose
    from core.dosimetry.nuclides import nuclide_data
    from core.dosimetry.tia import voxel_tia

    def report(fraction, message):
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"unknown dose methods {unknown or methods}", fix=f"Use some of {list(METHODS)}.")
    report(0.0, "loading SPECT and CT")
    inputs, labels, names = case_inputs(repo, study_id, nuclide=nuclide, administered_mbq=administered_mbq)
    case = repo.get_case(study_id)
    warnings = list(inputs.warnings)
    half_life_h = nuclide_data(inputs.nuclide).half_life_s / 3600.0
    report(0.05, "time-integrated activity")
    fits = _organ_fits(inputs, labels, names)
    tia = voxel_tia(inputs.times_h, inputs.activity_mbq, half_life_h)
    voxel = float(inputs.voxel_mm[0])
    doses, timings, uncertainty, notes = {}, {}, None, {}
    for i, method in enumerate(methods):
        report(0.1 + 0.85 * i / len(methods), f"dose by {METHOD_NAMES[method]}")
        t0 = time.perf_counter()
        if method == "local":
            doses[method] = local_deposition_dose(tia, inputs.nuclide, inputs.voxel_mm, inputs.density_g_ml)
        elif method == "vsv":
            if max(inputs.voxel_mm) - min(inputs.voxel_mm) > 0.01 * voxel:
                notes[method] = "voxel S-values need cubic voxels"
                continue
            kernel = voxel_kernel(inputs.nuclide, voxel)
            doses[method] = vsv_dose(tia, kernel.octant, inputs.density_g_ml, voxel_mm=voxel,
                                     kernel_voxel_mm=kernel.voxel_mm)
        elif method == "mc":
            mc = monte_carlo_dose(tia, inputs.nuclide, inputs.density_g_ml, inputs.material, inputs.voxel_mm,
                                  n_photons=mc_histories[0], n_electrons=mc_histories[1],
                                  seed=seed,
                                  progress=lambda f, m: report(0.1 + 0.85 * (i + f) / len(methods), m))
            doses[method], uncertainty = mc.dose_gy, mc.rel_uncertainty
            notes[method] = (f"{mc.histories['photons']:,} photons, {mc.histories['electrons']:,} electrons "
                             f"(electrons {mc.electrons}) on {mc.device}")
        elif method == "dl":
            bundle, why = dose_engine_bundle(inputs.nuclide, voxel)
            if bundle is None:
                notes[method] = why
                continue
            # dose is linear in activity: the dose-rate engine applied to MBq h gives Gy
            doses[method] = predict_dose_rate(bundle, tia, inputs.density_g_ml, voxel, inputs.nuclide).astype(float)
        timings[method] = time.perf_counter() - t0
    tables = {m: organ_dose_table(d, labels, names, inputs.voxel_mm, inputs.density_g_ml).reset_index()
              .to_dict(orient="list") for m, d in doses.items()}
    summary = {"nuclide": inputs.nuclide, "administered_mbq": inputs.administered_mbq,
               "times_h": inputs.times_h.tolist(), "voxel_mm": list(inputs.voxel_mm), "fits": fits,
               "organ_tables": tables, "timings_s": timings, "notes": notes, "warnings": warnings,
               "methods": list(doses), "total_tia_mbq_h": float(tia.sum())}
    result = CaseDosimetry(tia, doses, uncertainty, inputs.ct_hu, inputs.density_g_ml, labels, names,
                           inputs.affine, tuple(inputs.voxel_mm), summary)
    if store:
        report(0.97, "storing")
        override = [inputs.nuclide if nuclide else None, None if administered_mbq is None else float(administered_mbq)]
        result.result_id = _store(repo, case, result,
                                  _parameters(case, inputs, methods, mc_histories, seed, override), user)
    report(1.0, "done")
    return result


def _store(repo, case, result: CaseDosimetry, parameters: dict, user: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dosimetry.npz"
        arrays = {f"dose_{m}": d.astype(np.float32) for m, d in result.doses_gy.items()}
        if result.mc_uncertainty is not None:
            arrays["mc_uncertainty"] = result.mc_uncertainty.astype(np.float32)
        np.savez_compressed(path, tia=result.tia_mbq_h.astype(np.float32), ct=result.ct_hu.astype(np.float32),
                            density=result.density_g_ml.astype(np.float32), labels=result.labels,
                            affine=result.affine, **arrays)
        summary = {**result.summary, "label_names": {str(k): v for k, v in result.label_names.items()}}
        record = repo.add_result(case.study_id, DOSIMETRY_KIND, parameters, summary, artefact=path, user=user)
    return record.id


def find_dosimetry(repo, study_id: int, *, methods=METHODS, mc_histories=MC_HISTORIES, seed: int = 0,
                   nuclide: str | None = None, administered_mbq: float | None = None):
    """The newest stored dosimetry of the case with these settings and the current inputs, or None.

    ``nuclide`` and ``administered_mbq`` are the user's entries, when the SPECT header lacks
    them or is wrong; None matches a result computed from the header.
    """
    from core.dosimetry.nuclides import canonical_name

    case = repo.get_case(study_id)
    wanted = {"format": _FORMAT, "methods": list(methods), "mc_histories": list(mc_histories), "seed": seed,
              "series": sorted(s.id for s in case.series if s.role in ("spect", "ct")),
              "masks": sorted(m.id for m in case.masks),
              "override": [canonical_name(nuclide) if nuclide else None,
                           None if administered_mbq is None else float(administered_mbq)]}
    for record in reversed(repo.list_results(study_id, DOSIMETRY_KIND)):
        if all(record.parameters.get(k) == v for k, v in wanted.items()):
            return record
    return None


def load_dosimetry(repo, record) -> CaseDosimetry:
    """A stored dosimetry Result back as :class:`CaseDosimetry`."""
    with np.load(repo.resolve(record.artefact_path)) as z:
        doses = {k[5:]: z[k].astype(float) for k in z.files if k.startswith("dose_")}
        unc = z["mc_uncertainty"].astype(float) if "mc_uncertainty" in z.files else None
        summary = dict(record.summary)
        names = {int(k): v for k, v in summary.pop("label_names", {}).items()}
        affine = z["affine"]
        voxel = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
        return CaseDosimetry(z["tia"].astype(float), doses, unc, z["ct"].astype(float), z["density"].astype(float),
                             z["labels"], names, affine, voxel, summary, record.id)
