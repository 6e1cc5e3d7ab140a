"""The kinetic analysis of one case: everything the PET kinetics page shows, computed once.

:func:`analyse_case` runs the engine on a stored case and keeps the outcome in the Result
store (kind ``"kinetics.analysis"``, the settings as parameters, the maps as an ``.npz``
artefact), so the next visit loads it instead of recomputing (:func:`load_analysis`).

Steps, each documented in its module:

1. PET (Bq/ml) and the tumour mask (resampled to the PET grid when drawn elsewhere);
   curves in SUV when the dose record allows it, else in Bq/ml.
2. Regions (:mod:`core.kinetics.regions`): brain mask, mid-sagittal plane, template
   reference regions (striatum, cerebellum, occipital cortex), and the background - the
   contralateral crescent (striatum excluded) or a named mask of the case.
3. Guideline parameters and their reading (:mod:`core.kinetics.parameters`).
4. Input function (:mod:`core.kinetics.input_functions`), by default the case's measured
   arterial curve (a PET-BIDS ``blood.tsv`` imported with the PET), else the population
   curve of the tracer, else an image-derived curve; the choice and the reason are stored.
5. Sub-regions, dynamic hotspot (:mod:`core.kinetics.subregions`) and biopsy target
   (:mod:`core.kinetics.biopsy`).
6. Model fits of the region curves (every compartment model the input allows, SRTM with
   the chosen reference region, Patlak and Logan) and a voxel-wise map of ``map_model``
   inside the brain (:func:`core.kinetics.fit`).
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core.cases._util import _jsonable  # the Result store's own conversion: fresh and reloaded analyses agree
from core.errors import InputError, MaskError
from core.imaging.volume import DynamicVolume, Volume

__all__ = ["KineticsSettings", "KineticsAnalysis", "analyse_case", "load_analysis", "find_analysis",
           "store_input_csv", "export_csv", "export_nifti_zip", "load_case_inputs", "ANALYSIS_KIND", "INPUT_FILE_KIND",
           "ROI_MODELS"]

ANALYSIS_KIND = "kinetics.analysis"
_FORMAT = 1  # bump when the stored layout changes
ROI_MODELS = ("1tcm", "2tcm_irr", "2tcm", "srtm", "patlak", "logan")
_PLASMA_MODELS = ("1tcm", "2tcm_irr", "2tcm", "patlak", "logan")
_PREDICTABLE = ("1tcm", "2tcm_irr", "2tcm", "srtm")
_INPUT_CHOICES = ("auto", "arterial", "population", "image-derived", "file", "none")
_REFERENCES = ("background", "cerebellum", "occipital_cortex", "striatum")
INPUT_FILE_KIND = "kinetics.input_file"
_MAP_MODELS = ("none", "1tcm", "2tcm_irr", "2tcm", "srtm", "patlak", "logan")
#: Parameters of each map model that are kept as maps.
_MAP_KEYS = {"1tcm": ("K1", "VT"), "2tcm_irr": ("K1", "Ki"), "2tcm": ("K1", "VT"), "srtm": ("R1", "BPND"),
             "patlak": ("Ki",), "logan": ("VT",)}

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class KineticsSettings:
    """What an analysis depends on besides the images (stored as the result's parameters).

    Attributes
    ----------
    tracer : str, optional
        ``"FDOPA"`` or ``"FET"``; default the tracer of the PET's dose record.
    background : str, default="contralateral"
        ``"contralateral"`` (crescent opposite the tumour) or the name of a mask of the case.
    reference : {"background", "cerebellum", "occipital_cortex", "striatum"}, default="background"
        Reference region of SRTM (the region TAC of that name).
    input_function : {"auto", "arterial", "population", "image-derived", "file", "none"}
        ``image-derived`` uses the case's mask called ``"vessel"`` when there is one, else
        an automatic vessel search; ``file`` an uploaded CSV (see :func:`store_input_csv`).
    input_file : str, optional
        SHA-256 of the uploaded input-function CSV (with ``input_function="file"``).
    map_model : {"2tcm_irr", "1tcm", "2tcm", "srtm", "patlak", "logan", "none"}
        Model of the voxel-wise map inside the brain.
    cluster_method : {"kmeans", "gmm"}
    btv_threshold : float, optional
        TBR threshold of the biological tumour volume; default the tracer's.
    static_window_min : (float, float), optional
        Summation window of the static image (and TBRs), min p.i.; default the tracer's.
    """

    tracer: str | None = None
    background: str = "contralateral"
    reference: str = "background"
    input_function: str = "auto"
    input_file: str | None = None
    map_model: str = "2tcm_irr"
    cluster_method: str = "kmeans"
    btv_threshold: float | None = None
    static_window_min: tuple[float, float] | None = None

    def __post_init__(self):
        if self.reference not in _REFERENCES:
            raise InputError(f"unknown reference region {self.reference!r}", fix=f"Use one of {', '.join(_REFERENCES)}.")
        if self.input_function == "file" and not self.input_file:
            raise InputError("the input function 'file' needs the uploaded file's SHA-256 (input_file)",
                             fix="Upload an input-function CSV for this case first.")
        if self.static_window_min is not None:
            a, b = (float(v) for v in self.static_window_min)
            if not (np.isfinite(a) and np.isfinite(b) and 0 <= a < b):
                raise InputError(f"the static window must run forward from injection, got {self.static_window_min!r}",
                                 fix="Give (start, end) in minutes after injection with start < end.")
            object.__setattr__(self, "static_window_min", (a, b))
        if self.input_function not in _INPUT_CHOICES:
            raise InputError(f"unknown input function choice {self.input_function!r}",
                             fix=f"Use one of {', '.join(_INPUT_CHOICES)}.")
        if self.map_model not in _MAP_MODELS:
            raise InputError(f"unknown map model {self.map_model!r}", fix=f"Use one of {', '.join(_MAP_MODELS)}.")
        if self.cluster_method not in ("kmeans", "gmm"):
            raise InputError(f"unknown clustering method {self.cluster_method!r}", fix="Use 'kmeans' or 'gmm'.")
        if self.btv_threshold is not None and not (np.isfinite(self.btv_threshold) and self.btv_threshold > 1):
            raise InputError(f"the BTV threshold must be a TBR above 1, got {self.btv_threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["static_window_min"] = list(self.static_window_min) if self.static_window_min else None
        return {**d, "format": _FORMAT}


@dataclass(frozen=True, eq=False)
class KineticsAnalysis:
    """The outcome of :func:`analyse_case` (or of :func:`load_analysis`).

    Attributes
    ----------
    study_id : int
    settings : KineticsSettings
    tracer : str
    unit : str
        ``"SUV"`` or ``"Bq/ml"``: unit of the curves, uptakes and fits.
    frame_start_min, frame_end_min : ndarray of shape (T,)
    tacs : dict of str to RegionTAC
        ``tumour``, ``background``, ``cluster 1`` ... (1 = aggressive), ``hotspot`` when
        not empty, and the template reference regions.
    static : dict
        :func:`core.kinetics.parameters.static_parameters` without its masks, plus the
        tumour-to-striatum ratios ``tsr_max``, ``tsr_mean`` (static window) when the
        striatum was found.
    dynamic : dict of str to dict
        :func:`core.kinetics.parameters.dynamic_parameters` of each region curve.
    readings : list of dict
        ``parameter``, ``value``, ``cutoff``, ``text``, ``source`` lines.
    input_function : dict or None
        :meth:`InputFunction.to_dict` of the input used (in ``unit``), or None.
    input_note : str
        Which input was used and why (or why none).
    fits : dict of str to dict of str to dict
        ``fits[model][region]``: parameter name to value (NaN when the fit failed), ``ok``;
        ``patlak_ref`` and ``logan_ref`` are the reference-region forms (relative Ki, DVR).
    model_curves : dict of str to dict of str to list
        Frame-averaged fitted curves of the compartment models.
    subregions : dict
        :meth:`SubRegions.to_dict`.
    target : dict or None
        :meth:`BiopsyTarget.to_dict`.
    midplane : dict
    maps : dict of str to Volume
        Voxel-wise maps and masks on the PET grid (see :data:`MAP_UNITS` keys in
        ``map_units``).
    map_units : dict of str to str
    notes : list of str
        Anything the physician should know (a step that could not run, and why).
    timings_s : dict of str to float
    result_id : int or None
    """

    study_id: int
    settings: KineticsSettings
    tracer: str
    unit: str
    frame_start_min: np.ndarray
    frame_end_min: np.ndarray
    tacs: dict
    static: dict
    dynamic: dict
    readings: list
    input_function: dict | None
    input_note: str
    fits: dict
    model_curves: dict
    subregions: dict
    target: dict | None
    midplane: dict
    maps: dict = field(default_factory=dict)
    map_units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)
    result_id: int | None = None

    @property
    def frame_mid_min(self) -> np.ndarray:
        return 0.5 * (self.frame_start_min + self.frame_end_min)

    def summary(self) -> dict[str, Any]:
        """Everything but the maps, JSON-ready (the result's summary)."""
        return {
            "study_id": self.study_id, "tracer": self.tracer, "unit": self.unit,
            "frame_start_min": self.frame_start_min.tolist(), "frame_end_min": self.frame_end_min.tolist(),
            "tacs": {k: v.to_dict() for k, v in self.tacs.items()}, "static": self.static,
            "dynamic": self.dynamic, "readings": self.readings, "input_function": self.input_function,
            "input_note": self.input_note, "fits": self.fits, "model_curves": self.model_curves,
            "subregions": self.subregions, "target": self.target, "midplane": self.midplane,
            "map_units": self.map_units, "notes": self.notes, "timings_s": self.timings_s,
        }


# ------------------------------------------------------------------------------ helpers


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), message)


def _on_pet_grid(mask: Volume, pet: DynamicVolume, name: str) -> Volume:
    from core.imaging.resample import resample_to

    if mask.shape == pet.shape[:3] and np.allclose(mask.affine, pet.affine, atol=1e-3):
        return mask
    moved = resample_to(mask, pet.frame(0), interpolation="nearest")
    if not np.any(moved.data):
        raise MaskError(f"the {name} mask lies outside the PET field of view", path=mask.source,
                        fix="Check that the mask belongs to this study.")
    return moved.with_data((np.asarray(moved.data) > 0).astype(np.uint8))


def load_case_inputs(repo, case) -> tuple[DynamicVolume, Volume, Any]:
    """A case's dynamic PET, its ``tumour`` mask on the PET grid and the PET series record.

    Raises
    ------
    InputError
        No dynamic PET or no usable frame timing.
    MaskError
        No tumour mask, or one that cannot be put on the PET grid.
    """
    pet_rec = case.pet
    if pet_rec is None or pet_rec.role != "dynamic_pet":
        raise InputError(f"case {case.pseudonym} has no dynamic PET series",
                         fix="Import the dynamic (multi-frame) PET of this study on the Worklist.")
    pet = repo.load_series(pet_rec.id)
    if not isinstance(pet, DynamicVolume) or pet.n_frames < 3:
        raise InputError(f"the PET of case {case.pseudonym} has no usable frame timing", path=pet.source,
                         fix="Import the dynamic PET with its frame times (PET-BIDS sidecar or DICOM).")
    tumour_rec = case.mask_by_name("tumour")
    if tumour_rec is None:
        raise MaskError(f"case {case.pseudonym} has no tumour mask",
                        fix="Upload a tumour mask (NIfTI) for this study on the Worklist.")
    tumour = _on_pet_grid(repo.load_mask(tumour_rec.id), pet, "tumour")
    return pet, tumour, pet_rec


def store_input_csv(repo, study_id: int, path, *, name: str | None = None, user: str = "local") -> str:
    """Check a user's input-function CSV and keep it with the study; return its SHA-256.

    The file is read with :func:`core.kinetics.input_functions.read_input_csv` first, so a
    bad file raises its :class:`InputError` and nothing is stored.
    """
    import hashlib

    from core.kinetics.input_functions import read_input_csv

    inp = read_input_csv(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if not any(r.parameters.get("sha256") == digest for r in repo.list_results(study_id, INPUT_FILE_KIND)):
        repo.add_result(study_id, INPUT_FILE_KIND, {"sha256": digest, "name": name or Path(path).name},
                        {"description": inp.description, "n_samples": inp.n_samples, "end_min": inp.end_min},
                        artefact=path, user=user)
    return digest


def _stored_input_file(repo, case, digest: str | None):
    from core.kinetics.input_functions import read_input_csv

    for record in reversed(repo.list_results(case.study_id, INPUT_FILE_KIND)):
        if record.parameters.get("sha256") == digest and record.artefact_path:
            stored = repo.resolve(record.artefact_path)
            inp = read_input_csv(stored)
            name = record.parameters.get("name", "input.csv")
            return replace(inp, description=inp.description.replace(stored.name, name))
    raise InputError(f"no uploaded input-function file {str(digest)[:12]}... belongs to case {case.pseudonym}",
                     fix="Upload the CSV again on the PET kinetics page.")


def _choose_input(settings: KineticsSettings, repo, case, pet_rec, pet: DynamicVolume, tracer: str):
    """The input function (or None) and a sentence saying which and why."""
    from core.kinetics.input_functions import image_derived_input, population_input, read_blood_tsv

    order = {"auto": ("arterial", "population", "image-derived"), "none": ()}.get(
        settings.input_function, (settings.input_function,))
    reasons = []
    for choice in order:
        try:
            if choice == "arterial":
                tsv = pet_rec.original_file("blood.tsv")
                if tsv is None:
                    reasons.append("no measured arterial input was imported with the PET")
                    continue
                side = pet_rec.original_file("blood.json")
                stored = repo.resolve(tsv)
                inp = read_blood_tsv(stored, sidecar=repo.resolve(side) if side else None)
                # the store names files by content; say which file the user imported
                inp = replace(inp, description=inp.description.replace(stored.name, "blood.tsv"))
            elif choice == "population":
                if pet.dose is None:
                    raise InputError("the PET has no dose record")
                inp = population_input(tracer, pet.dose)
            elif choice == "file":
                inp = _stored_input_file(repo, case, settings.input_file)
            else:
                vessel = case.mask_by_name("vessel")
                inp = image_derived_input(pet, _on_pet_grid(repo.load_mask(vessel.id), pet, "vessel")
                                          if vessel else None)
            inp.check_covers(pet.frame_end_min)
            return inp, f"{choice} input: {inp.description}"
        except InputError as err:
            reasons.append(f"{choice} input unavailable ({err.problem})")
    if settings.input_function == "none":
        return None, "No input function requested: plasma-input models were not fitted."
    return None, "No input function: " + "; ".join(reasons) + ". Plasma-input models were not fitted."


def _in_unit(inp, unit: str, pet: DynamicVolume):
    if inp is None or inp.unit == unit:
        return inp
    return inp.to_suv(pet.dose) if unit == "SUV" else inp.to_bq_per_ml(pet.dose)


def _fit_regions(curves: dict[str, np.ndarray], fs, fe, inp, reference: np.ndarray | None):
    from core.kinetics.fitting import fit, predict

    fits, model_curves, notes = {}, {}, []
    names = list(curves)
    stack = np.stack([curves[n] for n in names])
    for model in ROI_MODELS + ("patlak_ref", "logan_ref"):
        kwargs: dict[str, Any] = {}
        if model in ("srtm", "patlak_ref", "logan_ref"):
            if reference is None:
                continue
            kwargs["reference"] = reference
        else:
            if inp is None:
                continue
            kwargs.update(input_time=inp.time_min, input_conc=inp.plasma)
            if model not in ("patlak", "logan") and inp.whole_blood is not None:
                kwargs["blood"] = inp.whole_blood
        try:
            out = fit(model.removesuffix("_ref"), stack, fs, fe, device="cpu", **kwargs)
        except InputError as err:
            notes.append(f"{model}: {err}")
            continue
        fits[model] = {n: {k: (bool(v[i]) if v.dtype == bool else float(v[i])) for k, v in out.items()}
                       for i, n in enumerate(names)}
        if model in _PREDICTABLE:
            pred = predict(model, out, fs, fe, kwargs.get("input_time"), kwargs.get("input_conc"),
                           kwargs.get("reference"), blood=kwargs.get("blood"))
            model_curves[model] = {n: pred[i].tolist() for i, n in enumerate(names)}
    return fits, model_curves, notes


# ------------------------------------------------------------------------------ entry


def analyse_case(repo, study_id: int, settings: KineticsSettings | None = None, *, progress: Progress | None = None,
                 store: bool = True, user: str = "local") -> KineticsAnalysis:
    """Run the kinetic analysis of a case (see the module docstring) and store it.

    Parameters
    ----------
    repo : core.cases.CaseRepository
    study_id : int
    settings : KineticsSettings, optional
    progress : callable(fraction, message), optional
    store : bool, default=True
        Keep the analysis in the Result store (summary + ``.npz`` of the maps).
    user : str, default="local"

    Raises
    ------
    InputError
        No dynamic PET, no tumour mask, an unknown tracer, masks off the PET field of view,
        a background mask that is missing or overlaps the tumour.
    """
    from core.kinetics import parameters as par
    from core.kinetics.biopsy import biopsy_target
    from core.kinetics.fitting import fit
    from core.kinetics.regions import brain_mask, contralateral_background, midsagittal_plane, template_regions
    from core.kinetics.subregions import cluster_tumour, dynamic_hotspot
    from core.kinetics.tac import extract_tac, voxel_tacs

    settings = settings or KineticsSettings()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    case = repo.get_case(study_id)
    _report(progress, 0.02, "Loading the PET and the tumour mask")
    pet, tumour, pet_rec = load_case_inputs(repo, case)
    tracer_name = settings.tracer or (pet.dose.tracer if pet.dose else None)
    protocol = par.protocol_for(tracer_name)
    if settings.static_window_min is not None:
        protocol = replace(protocol, static_window_min=settings.static_window_min)
    suv = pet.suv_available
    unit = "SUV" if suv else "Bq/ml"
    fs, fe = pet.frame_start_min, pet.frame_end_min
    notes: list[str] = []
    if not suv:
        notes.append(f"SUV unavailable ({pet.suv_unavailable_reason}): values are in Bq/ml; ratios are unaffected.")
    lap("load")

    _report(progress, 0.08, "Finding the brain, the mid-sagittal plane and reference regions")
    brain = brain_mask(pet)
    plane = midsagittal_plane(pet, brain=brain)
    try:
        templates = template_regions(pet)
        reference_masks = {name: _on_pet_grid(templates[name], pet, name)
                           for name in ("striatum", "cerebellum", "occipital_cortex")}
    except InputError as err:
        templates, reference_masks = None, {}
        notes.append(f"Template reference regions unavailable: {err}")
    lap("regions")

    if settings.background == "contralateral":
        exclude = [reference_masks["striatum"]] if "striatum" in reference_masks else []
        background = contralateral_background(tumour, pet, plane=plane, brain=brain, exclude=exclude)
    else:
        rec = case.mask_by_name(settings.background)
        if rec is None:
            raise MaskError(f"case {case.pseudonym} has no mask called {settings.background!r}",
                            fix="Choose 'contralateral' or upload that background mask.")
        background = _on_pet_grid(repo.load_mask(rec.id), pet, settings.background)
    lap("background")

    _report(progress, 0.2, "Time-activity curves and guideline parameters")
    tacs = {"tumour": extract_tac(pet, tumour, "tumour", suv=suv),
            "background": extract_tac(pet, background, "background", suv=suv)}
    static = par.static_parameters(pet, tumour, background, protocol, btv_threshold=settings.btv_threshold)
    btv_mask = static.pop("btv_mask", None)
    dynamic = {"tumour": par.dynamic_parameters(tacs["tumour"].mean, fs, fe, protocol),
               "background": par.dynamic_parameters(tacs["background"].mean, fs, fe, protocol)}
    readings = par.reading({**static, **{k: float(np.asarray(v)) for k, v in dynamic["tumour"].items()
                                         if np.asarray(v).ndim == 0}}, protocol)
    maps = par.parametric_maps(pet, brain, float(static["background_mean"]), protocol)
    lap("parameters")

    _report(progress, 0.35, "Kinetic sub-regions, hotspot and biopsy target")
    sub = cluster_tumour(pet, tumour, protocol, method=settings.cluster_method)
    for c in sub.clusters:
        tacs[f"cluster {c.label}"] = extract_tac(pet, sub.mask(c.label), f"cluster {c.label}", suv=suv)
    hotspot = dynamic_hotspot(pet, tumour, protocol, background_mean=float(static["background_mean"]))
    if np.any(hotspot.data):
        tacs["hotspot"] = extract_tac(pet, hotspot, "hotspot", suv=suv)
    else:
        notes.append("No dynamic hotspot: no tumour voxel peaks early and washes out.")
    for name, mask in reference_masks.items():
        if np.any(mask.data):
            tacs[name] = extract_tac(pet, mask, name, suv=suv)
    for name, tac in tacs.items():
        if name not in dynamic:
            dynamic[name] = par.dynamic_parameters(tac.mean, fs, fe, protocol)
    if "striatum" in tacs:  # FDOPA is also read against the striatum (tumour-to-striatum ratios)
        striatum_mean = float(dynamic["striatum"]["static_mean"])
        static["striatum_mean"] = striatum_mean
        static["tsr_max"] = float(static["uptake_max"]) / striatum_mean
        static["tsr_mean"] = float(static["uptake_mean"]) / striatum_mean
    # tie-break score: the static uptake of every voxel (the map above is NaN outside the brain)
    static_all = par.window_mean(pet.data, fs, fe, protocol.static_window_min) * (pet.suv_factor if suv else 1.0)
    target = biopsy_target(sub.aggressive_mask, score=np.nan_to_num(static_all, nan=0.0))
    lap("subregions")

    _report(progress, 0.5, "Input function and model fits")
    inp, input_note = _choose_input(settings, repo, case, pet_rec, pet, protocol.name)
    inp = _in_unit(inp, unit, pet)
    roi_curves = {k: v.mean for k, v in tacs.items()}
    if settings.reference not in tacs:
        raise InputError(f"the reference region {settings.reference!r} could not be found in this case",
                         fix="Choose the background as reference.")
    reference = tacs[settings.reference].mean
    fits, model_curves, fit_notes = _fit_regions(roi_curves, fs, fe, inp, reference)
    notes.extend(fit_notes)
    lap("roi_fits")

    map_model = settings.map_model
    if map_model in _PLASMA_MODELS and inp is None:
        notes.append(f"No input function for the {map_model} map: SRTM with the {settings.reference} as reference "
                     "instead.")
        map_model = "srtm"
    map_units = {k: v.units for k, v in maps.items()}
    if map_model != "none":
        _report(progress, 0.6, f"Voxel-wise {map_model} map of the brain")
        curves, ijk = voxel_tacs(pet, brain, suv=suv)
        kwargs: dict[str, Any] = ({"reference": reference} if map_model == "srtm" else
                                  {"input_time": inp.time_min, "input_conc": inp.plasma})
        if map_model in ("1tcm", "2tcm_irr", "2tcm") and inp.whole_blood is not None:
            kwargs["blood"] = inp.whole_blood
        import torch

        out = fit(map_model, curves, fs, fe, dtype=torch.float32, **kwargs,
                  progress=lambda f, m: _report(progress, 0.6 + 0.35 * f, f"Voxel-wise {map_model} map: {m}"))
        for key in _MAP_KEYS[map_model] + ("ok",):
            grid = np.full(pet.shape[:3], np.nan if key != "ok" else 0, dtype=np.float32)
            grid[tuple(ijk.T)] = out[key]
            maps[f"{map_model}_{key}"] = pet.frame(0).with_data(grid, units=_PARAM_UNITS.get(key, "a.u."))
            map_units[f"{map_model}_{key}"] = _PARAM_UNITS.get(key, "a.u.")
        notes.append(f"Voxel-wise {map_model}: {out['ok'].mean():.1%} of {len(curves)} brain voxels fitted.")
    lap("voxel_map")

    for name, mask in (("tumour", tumour), ("background", background), ("brain", brain),
                       ("clusters", sub.labels), ("hotspot", hotspot), ("aggressive", sub.aggressive_mask)):
        maps[f"mask_{name}"] = mask
        map_units[f"mask_{name}"] = "label"
    if btv_mask is not None:
        maps["mask_btv"] = btv_mask if isinstance(btv_mask, Volume) else tumour.with_data(np.asarray(btv_mask))
        map_units["mask_btv"] = "label"
    result = KineticsAnalysis(
        study_id=study_id, settings=settings, tracer=protocol.name, unit=unit, frame_start_min=fs, frame_end_min=fe,
        tacs=tacs, static=_jsonable(static), dynamic=_jsonable(dynamic),
        readings=[_jsonable({"parameter": r.parameter, "value": r.value, "text": r.text, "source": r.source,
                             "cutoff": None if r.cutoff is None else r.cutoff.threshold}) for r in readings],
        input_function=None if inp is None else _jsonable(inp.to_dict()), input_note=input_note,
        fits=_jsonable(fits), model_curves=_jsonable(model_curves), subregions=_jsonable(sub.to_dict()),
        target=_jsonable(target.to_dict()), midplane=_jsonable(plane.to_dict()), maps=maps, map_units=map_units,
        notes=notes, timings_s=timings)
    if store:
        _report(progress, 0.97, "Saving the analysis")
        result = _store(repo, result, pet, user)
    _report(progress, 1.0, "Done")
    return result


_PARAM_UNITS = {"K1": "ml/cm3/min", "Ki": "ml/cm3/min", "VT": "ml/cm3", "R1": "ratio", "BPND": "ratio",
                "ok": "label"}


def _store(repo, result: KineticsAnalysis, pet: DynamicVolume, user: str) -> KineticsAnalysis:
    import dataclasses

    with tempfile.TemporaryDirectory(prefix="theraboard-kinetics-") as tmp:
        path = Path(tmp) / "maps.npz"
        arrays = {f"map__{k}": np.asarray(v.data) for k, v in result.maps.items()}
        np.savez_compressed(path, affine=np.asarray(pet.affine), **arrays)
        record = repo.add_result(result.study_id, ANALYSIS_KIND, result.settings.to_dict(), result.summary(),
                                 artefact=path, user=user)
    return dataclasses.replace(result, result_id=record.id)


def find_analysis(repo, study_id: int, settings: KineticsSettings | None = None):
    """The stored analysis record of a case with these settings (and this code version), or None."""
    import core

    settings = settings or KineticsSettings()
    return repo.find_result(study_id, ANALYSIS_KIND, settings.to_dict(), code_version=core.__version__)


def load_analysis(repo, record) -> KineticsAnalysis:
    """Rebuild a :class:`KineticsAnalysis` from its stored result record."""
    from core.kinetics.tac import RegionTAC

    s = record.summary
    params = {k: v for k, v in record.parameters.items() if k != "format"}
    if params.get("static_window_min") is not None:
        params["static_window_min"] = tuple(params["static_window_min"])
    maps = {}
    if record.artefact_path:
        with np.load(repo.resolve(record.artefact_path)) as npz:
            affine = npz["affine"]
            for key in npz.files:
                if key.startswith("map__"):
                    name = key[5:]
                    maps[name] = Volume(npz[key], affine, modality="PT" if not name.startswith("mask_") else "SEG",
                                        units=s.get("map_units", {}).get(name, "a.u."))
    return KineticsAnalysis(
        study_id=record.study_id, settings=KineticsSettings(**params), tracer=s["tracer"], unit=s["unit"],
        frame_start_min=np.asarray(s["frame_start_min"], float), frame_end_min=np.asarray(s["frame_end_min"], float),
        tacs={k: RegionTAC.from_dict(v) for k, v in s["tacs"].items()}, static=s["static"], dynamic=s["dynamic"],
        readings=s["readings"], input_function=s["input_function"], input_note=s["input_note"], fits=s["fits"],
        model_curves=s["model_curves"], subregions=s["subregions"], target=s["target"], midplane=s["midplane"],
        maps=maps, map_units=s.get("map_units", {}), notes=s.get("notes", []), timings_s=s.get("timings_s", {}),
        result_id=record.id)


# ------------------------------------------------------------------------------ export


def parameter_table(analysis: KineticsAnalysis):
    """One row per (region, quantity): static and dynamic parameters and model fits (pandas)."""
    import pandas as pd

    rows = []
    for key, value in analysis.static.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append({"region": "tumour", "group": "static", "parameter": key, "value": value})
    for region, params in analysis.dynamic.items():
        for key, value in params.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"region": region, "group": "dynamic", "parameter": key, "value": value})
    for model, regions in analysis.fits.items():
        for region, params in regions.items():
            for key, value in params.items():
                if key not in ("ok", "n_iter"):
                    rows.append({"region": region, "group": model, "parameter": key, "value": value})
    return pd.DataFrame(rows, columns=["region", "group", "parameter", "value"])


def tac_table(analysis: KineticsAnalysis):
    """Frame timing and the mean curve of every region, one row per frame (pandas)."""
    import pandas as pd

    table = pd.DataFrame({"start_min": analysis.frame_start_min, "end_min": analysis.frame_end_min,
                          "mid_min": analysis.frame_mid_min})
    unit = analysis.unit.replace("/", "_per_")
    for name, tac in analysis.tacs.items():
        table[f"{name} mean ({unit})"] = tac.mean
        table[f"{name} max ({unit})"] = tac.max
    return table


def export_csv(analysis: KineticsAnalysis) -> bytes:
    """A zip with ``parameters.csv`` and ``tacs.csv`` (UTF-8)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("parameters.csv", parameter_table(analysis).to_csv(index=False))
        zf.writestr("tacs.csv", tac_table(analysis).to_csv(index=False))
        zf.writestr("analysis.json", json.dumps({"settings": analysis.settings.to_dict(), "target": analysis.target,
                                                 "input_note": analysis.input_note, "notes": analysis.notes},
                                                indent=2, default=str))
    return buffer.getvalue()


def export_nifti_zip(analysis: KineticsAnalysis) -> bytes:
    """A zip with one NIfTI per map and mask (``<name>.nii.gz``, on the PET grid)."""
    from core.imaging.nifti import write_nifti

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="theraboard-export-") as tmp, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, volume in analysis.maps.items():
            path = write_nifti(volume, Path(tmp) / f"{name.replace(' ', '_')}.nii.gz")
            zf.write(path, arcname=Path(path).name)
            sidecar = Path(path).with_suffix("").with_suffix(".json")
            if sidecar.is_file():
                zf.write(sidecar, arcname=sidecar.name)
    return buffer.getvalue()
