r"""Inputs of the deep models: co-registered PET/MRI channels on one grid, a cohort cache,
a torch dataset with patches and augmentation, and patient-level splits.

The deep models (a 3D ViT masked autoencoder and 3D CNN classifiers of tumour progression
vs radiation necrosis) all read the same tensors, built here once per patient.

Grid (this work)
----------------
An isotropic grid of :attr:`InputSpec.shape` voxels of :attr:`InputSpec.voxel_mm` mm
(default 64^3 voxels of 3 mm: a 192 mm cube, larger than the adult brain, about
145 x 180 x 155 mm in MNI152), axis-aligned in scanner RAS+ mm, voxel ``[i, j, k]`` along
``(x, y, z)``. It is centred on ``InputSpec.centre_mm`` when given (for images already in
MNI space, ``(0, -17, 5)`` is the centre of the MNI152 brain bounding box), otherwise on the
centre of the bounding box of the head as PET sees it: the voxels of the native late PET
image above its Otsu threshold (rounded to the voxel size, so that repeated calls agree).

Channels and normalisation
--------------------------
* ``pet_early`` / ``pet_late``: duration-weighted mean of the frames lying wholly in the
  early (0-10 min, this work) and late (10-30 min, the FDOPA static window of guideline
  practice) windows (:func:`core.kinetics.parameters.window_mean`), in SUVbw, computed on
  the native PET grid and then resampled (both operations are linear, so the order does
  not matter and one resampling per window is cheaper than one per frame). Both are
  divided by the median late SUV of the brain,

  .. math::

      \mathrm{SUVR}(x) = \frac{\mathrm{SUV}(x)}{\operatorname{median}_{y \in B} \mathrm{SUV_{late}}(y)},

  a ratio that removes dose, weight and scanner calibration differences between sites
  (the same reference for both windows keeps the early/late contrast); clipped to
  ``[0, 8]`` (this work).
* MRI (``t1c``, ``flair``, ``t1``): z-score within the brain,
  :math:`(I - \mu_B) / \sigma_B`, clipped to ``[-5, 5]``, and 0 outside the brain (MRI
  intensities are arbitrary units, so only contrast within a subject carries information;
  this work).

Brain mask :math:`B` (this work): on the target grid, the voxels where the late PET SUV is
above its Otsu threshold (the head; Otsu 1979) *and* the T1c is above the Otsu threshold of
the T1c within that head (removes skull and most scalp), opened by one voxel, its largest
connected component kept and holes filled. It is a pragmatic mask for normalisation and
patch sampling, not a segmentation.

Cache
-----
:func:`build_cohort_cache` writes one compressed ``<patient_id>.npz`` per patient (image as
float16, masks as uint8, metadata), an ``index.csv`` and a ``spec.json`` holding the
:class:`InputSpec` and the phantom generator version; files are written under a temporary
name and renamed (atomic on one file system). A rerun with the same spec skips cached
patients; a directory built with another spec is refused (:class:`~core.errors.InputError`)
rather than silently mixed or overwritten.

References
----------
.. [1] Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst Man
   Cybern 1979;9(1):62-66.
.. [2] Law I, Albert NL, Arbizu J, et al. Joint EANM/EANO/RANO practice guidelines/SNMMI
   procedure standards for imaging of gliomas using PET with radiolabelled amino acids and
   [18F]FDG: version 1.0. Eur J Nucl Med Mol Imaging 2019;46:540-557.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from core.errors import InputError, MaskError
from core.imaging.resample import resample_to
from core.imaging.volume import DynamicVolume, Volume
from core.kinetics.parameters import window_mean

__all__ = [
    "InputSpec",
    "CaseArrays",
    "case_arrays",
    "brain_mask",
    "build_cohort_cache",
    "read_index",
    "CohortDataset",
    "Augment",
    "rotate",
    "split_by_patient",
    "split_by_centre",
    "UNKNOWN",
]

Progress = Callable[[float, str], None]

_PET_CHANNELS = {"pet_early": "early_min", "pet_late": "late_min"}
_MRI_CHANNELS = ("t1c", "flair", "t1")
_LABELS = {"progression": 1, "radionecrosis": 0}
_IDH = {"mutant": 1, "wildtype": 0}
_SPEC_FILE = "spec.json"
_INDEX_FILE = "index.csv"
_INDEX_COLUMNS = ["patient_id", "site", "label", "idh", "codeletion", "file"]
_MASKS = ("tumour", "aggressive", "brain")
#: Code of a label or molecular status that is not known (a case to be diagnosed).
UNKNOWN = -1
#: Least fraction of the PET head an MRI must cover on the model grid (this work).
MIN_MRI_COVERAGE = 0.8


# ----------------------------------------------------------------------- spec


@dataclass(frozen=True)
class InputSpec:
    """Grid, channels and normalisation of the deep-model inputs.

    Attributes
    ----------
    shape : (int, int, int), default=(64, 64, 64)
        Voxels along x, y, z.
    voxel_mm : float, default=3.0
        Isotropic voxel size, mm.
    channels : tuple of str, default=("pet_early", "pet_late", "t1c", "flair")
        In channel order; from ``pet_early``, ``pet_late``, ``t1c``, ``flair``, ``t1``.
    early_min : (float, float), default=(0.0, 10.0)
        Early PET window, minutes after injection (this work).
    late_min : (float, float), default=(10.0, 30.0)
        Late PET window, minutes after injection (FDOPA static window, Law et al. 2019).
    centre_mm : (float, float, float) or None, default=None
        Grid centre in RAS+ mm; None: centre of the PET head bounding box (module docstring).
    suvr_clip : (float, float), default=(0.0, 8.0)
        Clip range of the PET SUVR channels (this work).
    mri_clip : (float, float), default=(-5.0, 5.0)
        Clip range of the MRI z-scores (this work).

    Examples
    --------
    >>> spec = InputSpec(shape=(32, 32, 32), voxel_mm=6.0)
    >>> spec.affine((0.0, 0.0, 0.0))[:3, 3].tolist()
    [-93.0, -93.0, -93.0]
    """

    shape: tuple[int, int, int] = (64, 64, 64)
    voxel_mm: float = 3.0
    channels: tuple[str, ...] = ("pet_early", "pet_late", "t1c", "flair")
    early_min: tuple[float, float] = (0.0, 10.0)
    late_min: tuple[float, float] = (10.0, 30.0)
    centre_mm: tuple[float, float, float] | None = None
    suvr_clip: tuple[float, float] = (0.0, 8.0)
    mri_clip: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 4:
            raise InputError(f"InputSpec.shape must be three sizes >= 4, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        if not (math.isfinite(float(self.voxel_mm)) and float(self.voxel_mm) > 0):
            raise InputError(f"InputSpec.voxel_mm must be a positive number of mm, got {self.voxel_mm!r}")
        object.__setattr__(self, "voxel_mm", float(self.voxel_mm))
        channels = tuple(str(c) for c in self.channels)
        known = tuple(_PET_CHANNELS) + _MRI_CHANNELS
        bad = [c for c in channels if c not in known]
        if bad or not channels or len(set(channels)) != len(channels):
            raise InputError(f"InputSpec.channels {self.channels!r} must be distinct names from {known}")
        object.__setattr__(self, "channels", channels)
        for name in ("early_min", "late_min", "suvr_clip", "mri_clip"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not hi > lo:
                raise InputError(f"InputSpec.{name} must be (low, high) with high > low, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (lo, hi))
        if self.centre_mm is not None:
            c = tuple(float(v) for v in self.centre_mm)
            if len(c) != 3:
                raise InputError(f"InputSpec.centre_mm must be (x, y, z) mm, got {self.centre_mm!r}")
            object.__setattr__(self, "centre_mm", c)

    def affine(self, centre_mm) -> np.ndarray:
        """4x4 voxel-to-RAS+ affine of the grid centred on ``centre_mm`` (mm)."""
        a = np.diag([self.voxel_mm] * 3 + [1.0])
        a[:3, 3] = np.asarray(centre_mm, dtype=float) - (np.asarray(self.shape) - 1) / 2.0 * self.voxel_mm
        return a

    def to_dict(self) -> dict:
        """JSON-serialisable form (lists for tuples)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


# ----------------------------------------------------------------------- one case


@dataclass(frozen=True, eq=False)
class CaseArrays:
    """The model inputs of one patient.

    Attributes
    ----------
    image : ndarray of float32, shape (C, D, H, W)
        Normalised channels in :attr:`InputSpec.channels` order (``D, H, W`` = x, y, z).
    tumour, aggressive, brain : ndarray of uint8, shape (D, H, W)
        Lesion, aggressive sub-region (zeros when none) and brain masks.
    label : int
        1 progression, 0 radionecrosis, :data:`UNKNOWN` (-1) for a case to be diagnosed.
    idh : int
        1 IDH-mutant, 0 wild-type, -1 unknown.
    codeletion : int
        1 when 1p/19q-codeleted, 0 when not, -1 unknown.
    site, patient_id : str
    affine : ndarray of shape (4, 4)
        Voxel-to-RAS+ mm affine of the grid.
    reference_suv : float
        Median late SUV of the brain (the SUVR denominator).
    """

    image: np.ndarray
    tumour: np.ndarray
    aggressive: np.ndarray
    brain: np.ndarray
    label: int
    idh: int
    codeletion: int
    site: str
    patient_id: str
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    reference_suv: float = float("nan")


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu (1979) threshold of ``values``: maximises the between-class variance."""
    v = np.asarray(values, dtype=np.float64).ravel()
    hist, edges = np.histogram(v, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def brain_mask(late_suv: np.ndarray, t1c: np.ndarray) -> np.ndarray:
    """Brain mask from a late PET SUV image and a T1c on the same grid (this work).

    Head = late SUV above its Otsu threshold; brain = head voxels whose T1c is above the
    Otsu threshold of the T1c within the head, opened by one voxel, largest connected
    component, holes filled.

    Parameters
    ----------
    late_suv, t1c : ndarray of shape (D, H, W)

    Returns
    -------
    ndarray of bool

    Raises
    ------
    MaskError
        When the mask comes out empty.

    Examples
    --------
    >>> x = np.zeros((20, 20, 20)); x[5:15, 5:15, 5:15] = 1.0
    >>> int(brain_mask(x, x).sum())      # the 10^3 cube, its edges rounded off by the opening
    896
    """
    late_suv = np.asarray(late_suv, dtype=np.float32)
    t1c = np.asarray(t1c, dtype=np.float32)
    head = late_suv > _otsu(late_suv)
    if not head.any():
        raise MaskError("the late PET image has no voxel above its Otsu threshold (a blank PET?)",
                        fix="Check that the PET holds the patient's head and the late window has counts.")
    t_head = t1c[head]
    brain = head & (t1c > _otsu(t_head)) if np.ptp(t_head) > 0 else head
    brain = ndimage.binary_opening(brain, iterations=1)
    if not brain.any():
        brain = head
    brain = ndimage.binary_fill_holes(_largest_component(brain))
    return brain


def _check_volume(vol, name: str, pid: str, *, modality: str) -> None:
    if vol is None:
        raise InputError(f"patient {pid!r} has no {name} image",
                         fix=f"Provide a {name} image; the deep models need every channel of the spec.")
    if not isinstance(vol, Volume):
        raise InputError(f"{name} of patient {pid!r} is a {type(vol).__name__}, not a Volume")
    if vol.modality != modality:
        raise InputError(f"{name} of patient {pid!r} has modality {vol.modality!r}, expected {modality!r}",
                         path=vol.source, fix=f"Pass the {name} image itself.")
    data = np.asarray(vol.data)
    if not np.issubdtype(data.dtype, np.number) and data.dtype != bool:
        raise InputError(f"{name} of patient {pid!r} holds {data.dtype} values", path=vol.source)
    if modality != "PT" and data.ndim != 3:
        raise InputError(f"{name} of patient {pid!r} has shape {data.shape}, expected a 3D image", path=vol.source)
    meta_pid = (vol.meta or {}).get("patient_id")
    if meta_pid is not None and str(meta_pid) != pid:
        raise InputError(f"{name} belongs to patient {meta_pid!r}, not to {pid!r}", path=vol.source,
                         fix="Assemble each case from one patient's images.")


def _check_pet(pet, pid: str) -> None:
    _check_volume(pet, "pet", pid, modality="PT")
    if not isinstance(pet, DynamicVolume) or np.asarray(pet.data).ndim != 4:
        raise InputError(f"the PET of patient {pid!r} is not a dynamic (4D) volume with frame timing",
                         path=pet.source, fix="Import the dynamic PET with its frame timing (PET-BIDS sidecar).")
    if pet.units != "Bq/ml":
        raise InputError(f"the PET of patient {pid!r} is in {pet.units!r}, not Bq/ml", path=pet.source,
                         fix="Import the PET as activity concentration (Bq/ml) so that SUV can be computed.")
    if not pet.suv_available:
        raise InputError(f"SUV is unavailable for the PET of patient {pid!r}: {pet.suv_unavailable_reason}",
                         path=pet.source, fix="Add the injected activity, body weight and half-life.")


def _code(value, table: dict, what: str, pid: str, unknown_ok: bool = False) -> int:
    if value is None and unknown_ok:
        return UNKNOWN
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return int(value)
    key = str(value).strip().lower()
    if key in table:
        return table[key]
    raise InputError(f"patient {pid!r} has {what} {value!r}", fix=f"Use one of {sorted(table)} (or 0/1).")


def _grid_centre(late_native: np.ndarray, pet_affine: np.ndarray, voxel_mm: float) -> np.ndarray:
    head = late_native > _otsu(late_native)
    ijk = np.argwhere(head)
    if ijk.size == 0:
        ijk = np.argwhere(np.ones_like(head))
    mid = (ijk.min(0) + ijk.max(0)) / 2.0
    centre = pet_affine[:3, :3] @ mid + pet_affine[:3, 3]
    return np.round(centre / voxel_mm) * voxel_mm


def case_arrays(case, spec: InputSpec | None = None) -> CaseArrays:
    """Build the normalised model inputs of one patient (see the module docstring).

    Parameters
    ----------
    case : DemoCase-like
        With ``pet`` (:class:`~core.imaging.volume.DynamicVolume` in Bq/ml with a dose
        record), ``t1c``/``flair`` (and ``t1`` when in the spec) MR :class:`Volume` s,
        ``tumour_mask``, ``aggressive_mask`` (or None), ``label``, ``idh``,
        ``codeletion_1p19q``, ``site`` and ``patient_id``. Each image is resampled with its
        own affine: linear for images, nearest neighbour for masks.
    spec : InputSpec, default=InputSpec()

    Returns
    -------
    CaseArrays

    Raises
    ------
    InputError
        Missing image, PET not in Bq/ml or without SUV, an image of another patient, an
        MRI covering less than :data:`MIN_MRI_COVERAGE` of the head the PET sees (grids not
        registered), an unknown label; :class:`~core.errors.MaskError` when the tumour mask
        is empty.

    Examples
    --------
    >>> from core.phantoms.brain_fdopa import generate_patient
    >>> arrays = case_arrays(generate_patient(0, seed=1))        # doctest: +SKIP
    >>> arrays.image.shape, float(np.median(arrays.image[1][arrays.brain > 0]))   # doctest: +SKIP
    ((4, 64, 64, 64), 1.0)
    """
    spec = spec or InputSpec()
    pid = str(getattr(case, "patient_id", "") or "")
    if not pid:
        raise InputError("the case has no patient_id", fix="Give every case a patient identifier.")
    pet = getattr(case, "pet", None)
    _check_pet(pet, pid)
    needed_mri = [c for c in spec.channels if c in _MRI_CHANNELS]
    for name in sorted(set(needed_mri) | {"t1c"}):
        _check_volume(getattr(case, name, None), name, pid, modality="MR")
    tumour_vol = getattr(case, "tumour_mask", None)
    _check_volume(tumour_vol, "tumour_mask", pid, modality="SEG")
    aggr_vol = getattr(case, "aggressive_mask", None)
    if aggr_vol is not None:
        _check_volume(aggr_vol, "aggressive_mask", pid, modality="SEG")
    label = _code(getattr(case, "label", None), _LABELS, "label", pid, unknown_ok=True)
    idh = _code(getattr(case, "idh", None), _IDH, "IDH status", pid, unknown_ok=True)
    codel = _code(getattr(case, "codeletion_1p19q", None), {"true": 1, "false": 0}, "1p/19q status", pid,
                  unknown_ok=True)

    suv = float(pet.suv_factor)
    fs, fe = pet.frame_start_min, pet.frame_end_min
    windows = {name: window_mean(pet.data, fs, fe, getattr(spec, attr), name=name) * suv
               for name, attr in _PET_CHANNELS.items()}
    centre = spec.centre_mm if spec.centre_mm is not None else _grid_centre(
        windows["pet_late"], pet.affine, spec.voxel_mm)
    affine = spec.affine(centre)
    ref = Volume(np.zeros(spec.shape, np.uint8), affine)

    def image(data, vol_affine) -> np.ndarray:
        return resample_to(Volume(np.asarray(data, np.float32), vol_affine), ref, "linear").data

    def mask(vol) -> np.ndarray:
        data = (np.asarray(vol.data) > 0).astype(np.uint8)
        return resample_to(Volume(data, vol.affine), ref, "nearest").data.astype(np.uint8)

    pet_grid = {name: image(w, pet.affine) for name, w in windows.items()}
    mri = {name: image(getattr(case, name).data, getattr(case, name).affine)
           for name in set(needed_mri) | {"t1c"}}
    head = pet_grid["pet_late"] > _otsu(pet_grid["pet_late"])
    for name in sorted(mri):  # volumes on grids that do not overlap: say which, never normalise zeros
        vol = getattr(case, name)
        fov = image(np.ones(np.asarray(vol.data).shape[:3], np.float32), vol.affine) > 0.5
        covered = float(fov[head].mean()) if head.any() else 0.0
        if covered < MIN_MRI_COVERAGE:
            raise InputError(f"the {name} of patient {pid!r} covers only {covered:.0%} of the head seen by the "
                             f"PET: the two are not registered or lie on unrelated grids", path=vol.source,
                             fix=f"Register the {name} to the PET (or import the registered series) so that their "
                                 "affines place them on the same anatomy.")
    brain = brain_mask(pet_grid["pet_late"], mri["t1c"])
    reference = float(np.median(pet_grid["pet_late"][brain]))
    if not reference > 0:
        raise InputError(f"the median late SUV in the brain of patient {pid!r} is {reference:g}",
                         path=pet.source, fix="Check the PET windows and the dose record.")
    channels = []
    for name in spec.channels:
        if name in _PET_CHANNELS:
            channels.append(np.clip(pet_grid[name] / reference, *spec.suvr_clip))
        else:
            x = mri[name]
            mu, sd = float(x[brain].mean()), float(x[brain].std())
            z = (x - mu) / sd if sd > 0 else np.zeros_like(x)
            channels.append(np.where(brain, np.clip(z, *spec.mri_clip), 0.0))
    tumour = mask(tumour_vol)
    if not tumour.any():
        raise MaskError(f"the tumour mask of patient {pid!r} is empty on the model grid", path=tumour_vol.source,
                        fix="Check the mask and that the grid (InputSpec.centre_mm, shape) covers the lesion.")
    aggressive = mask(aggr_vol) if aggr_vol is not None else np.zeros(spec.shape, np.uint8)
    return CaseArrays(image=np.stack(channels).astype(np.float32), tumour=tumour, aggressive=aggressive,
                      brain=brain.astype(np.uint8), label=label, idh=idh, codeletion=codel,
                      site=str(getattr(case, "site", "")), patient_id=pid, affine=affine, reference_suv=reference)


# ----------------------------------------------------------------------- cache


def _spec_record(spec: InputSpec) -> dict:
    from core.phantoms.brain_fdopa import GENERATOR, GENERATOR_VERSION

    return {"spec": spec.to_dict(), "generator": GENERATOR, "generator_version": GENERATOR_VERSION}


def _atomic_write_bytes(path: Path, write: Callable) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save_case(arrays: CaseArrays, path: Path) -> None:
    def write(fh):
        np.savez_compressed(fh, image=arrays.image.astype(np.float16), tumour=arrays.tumour,
                            aggressive=arrays.aggressive, brain=arrays.brain, affine=arrays.affine,
                            label=np.int64(arrays.label), idh=np.int64(arrays.idh),
                            codeletion=np.int64(arrays.codeletion), site=np.str_(arrays.site),
                            patient_id=np.str_(arrays.patient_id), reference_suv=np.float64(arrays.reference_suv))
    _atomic_write_bytes(path, write)


def _row_of(path: Path) -> dict | None:
    """Index row of a cached file, or None when it is missing or unreadable."""
    try:
        with np.load(path) as z:
            return {"patient_id": str(z["patient_id"]), "site": str(z["site"]), "label": int(z["label"]),
                    "idh": int(z["idh"]), "codeletion": int(z["codeletion"]), "file": path.name}
    except Exception:  # noqa: BLE001 - a partial or corrupt file is rebuilt
        return None


def _cache_one(index: int, seed: int, site: str, spec_dict: dict, directory: str) -> dict:
    """Worker: generate patient ``index``, write its ``.npz``; top level so that spawn can pickle it."""
    from core.phantoms.brain_fdopa import generate_patient

    arrays = case_arrays(generate_patient(index, seed, site), InputSpec.from_dict(spec_dict))
    path = Path(directory) / f"{arrays.patient_id}.npz"
    _save_case(arrays, path)
    return _row_of(path)


def read_index(directory) -> pd.DataFrame:
    """The ``index.csv`` of a cache directory (columns patient_id, site, label, idh, codeletion, file)."""
    path = Path(directory) / _INDEX_FILE
    if not path.is_file():
        raise InputError("no cohort cache here (index.csv is missing)", path=directory,
                         fix="Build it with core.learning.data.build_cohort_cache.")
    return pd.read_csv(path, dtype={"patient_id": str, "site": str, "file": str})


def build_cohort_cache(directory, n: int, seed: int = 0, sites: Sequence[str] = ("A", "B", "C"),
                       spec: InputSpec | None = None, workers: int = 1, progress: Progress | None = None) -> Path:
    """Generate ``n`` synthetic patients and cache their model inputs.

    Patient ``i`` is ``generate_patient(i, seed, sites[i % len(sites)])``
    (:mod:`core.phantoms.brain_fdopa`), written as ``<directory>/<patient_id>.npz`` (keys
    ``image`` float16 (C, D, H, W), ``tumour``/``aggressive``/``brain`` uint8, ``affine``,
    ``label``, ``idh``, ``codeletion``, ``site``, ``patient_id``, ``reference_suv``), plus
    ``index.csv`` and ``spec.json``.

    Parameters
    ----------
    directory : str or PathLike
        Created when missing.
    n : int
        Number of patients (>= 1).
    seed : int, default=0
    sites : sequence of str, default=("A", "B", "C")
    spec : InputSpec, default=InputSpec()
    workers : int, default=1
        Worker processes (``spawn`` context) when > 1.
    progress : callable(fraction, message), optional
        Called after each patient (cached or built).

    Returns
    -------
    Path
        ``<directory>/index.csv``.

    Raises
    ------
    InputError
        Bad ``n``/``seed``/``sites``, or ``directory`` holds a cache built with another spec
        or generator version (refused: use another directory or delete it).

    Examples
    --------
    >>> index = build_cohort_cache("/tmp/cache", n=3, seed=11)      # doctest: +SKIP
    >>> read_index("/tmp/cache")["label"].tolist()                    # doctest: +SKIP
    [0, 1, 1]
    """
    spec = spec or InputSpec()
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"the cohort cache needs at least one patient, got n={n!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    sites = [str(s) for s in sites]
    if not sites:
        raise InputError("sites is empty", fix="Give at least one site, e.g. ('A', 'B', 'C').")
    n, seed = int(n), int(seed)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    record = _spec_record(spec)
    spec_path = out / _SPEC_FILE
    if spec_path.is_file():
        old = json.loads(spec_path.read_text(encoding="utf-8"))
        if old != record:
            raise InputError(f"this cache was built with another input spec or generator ({old}), not {record}",
                             path=out, fix="Use another directory for the new spec, or delete this one.")
    else:
        text = json.dumps(record, indent=1) + "\n"
        _atomic_write_bytes(spec_path, lambda fh: fh.write(text.encode("utf-8")))

    from core.phantoms.brain_fdopa import patient_id

    plan = [(i, sites[i % len(sites)]) for i in range(n)]
    rows: dict[int, dict] = {}
    todo = []
    for i, site in plan:
        row = _row_of(out / f"{patient_id(i, site, seed)}.npz")
        if row is not None:
            rows[i] = row
        else:
            todo.append((i, site))
    done = len(rows)
    if progress and done:
        progress(done / n, f"{done} patients already cached")
    workers = max(1, min(int(workers), len(todo) or 1))
    if workers == 1:
        for i, site in todo:
            rows[i] = _cache_one(i, seed, site, spec.to_dict(), str(out))
            done += 1
            if progress:
                progress(done / n, f"{rows[i]['patient_id']} ({done}/{n})")
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_cache_one, i, seed, site, spec.to_dict(), str(out)): i for i, site in todo}
            for fut in concurrent.futures.as_completed(futures):
                i = futures[fut]
                rows[i] = fut.result()
                done += 1
                if progress:
                    progress(done / n, f"{rows[i]['patient_id']} ({done}/{n})")
    table = pd.DataFrame([rows[i] for i in range(n)], columns=_INDEX_COLUMNS)
    text = table.to_csv(index=False)
    index_path = out / _INDEX_FILE
    if not index_path.is_file() or index_path.read_text(encoding="utf-8") != text:
        _atomic_write_bytes(index_path, lambda fh: fh.write(text.encode("utf-8")))
    return index_path


# ----------------------------------------------------------------------- augmentation


def _rotation_matrix(angles_deg) -> "torch.Tensor":  # noqa: F821
    import torch

    ax, ay, az = (math.radians(float(a)) for a in angles_deg)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).to(torch.float64)


def rotate(sample: dict, angles_deg) -> dict:
    """Rotate every volume of a sample about the volume centre by one affine resampling.

    ``angles_deg`` are rotations about the D, H and W axes (x, y, z of the grid), applied
    as ``R = Rz Ry Rx``; images are interpolated linearly, masks (``tumour``,
    ``aggressive``, ``brain``) by nearest neighbour; outside the volume is 0. The rotation
    acts in voxel units (isotropic voxels) through ``torch.nn.functional.affine_grid`` and
    ``grid_sample`` (``align_corners=False``).

    Parameters
    ----------
    sample : dict
        ``image`` (C, D, H, W) and optional masks (1, D, H, W), float tensors.
    angles_deg : (float, float, float)

    Returns
    -------
    dict
        A new dict; other entries are passed through.

    Examples
    --------
    >>> import torch
    >>> s = {"image": torch.rand(1, 8, 8, 8)}
    >>> bool(torch.allclose(rotate(s, (0, 0, 0))["image"], s["image"], atol=1e-5))
    True
    """
    import torch
    import torch.nn.functional as F

    image = sample["image"]
    spatial = tuple(image.shape[-3:])
    r = _rotation_matrix(angles_deg)
    # grid coordinates are ordered (W, H, D); map voxel-unit rotation into normalised units
    perm = [2, 1, 0]
    r_grid = r[perm][:, perm]
    n = torch.tensor([spatial[2], spatial[1], spatial[0]], dtype=torch.float64)
    theta_lin = torch.diag(1.0 / n) @ r_grid @ torch.diag(n)
    theta = torch.zeros(1, 3, 4, dtype=image.dtype)
    theta[0, :, :3] = theta_lin.to(image.dtype)
    grid = F.affine_grid(theta, [1, 1, *spatial], align_corners=False)
    out = dict(sample)
    out["image"] = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    for key in _MASKS:
        if key in sample:
            out[key] = F.grid_sample(sample[key][None].float(), grid, mode="nearest", padding_mode="zeros",
                                     align_corners=False)[0]
    return out


@dataclass
class Augment:
    """Random flips, small rotations and intensity jitter of a sample (this work).

    Flips along each of the three axes with probability ``p_flip`` each. A left-right
    flip swaps the hemispheres; the classification target (progression vs necrosis) does
    not depend on the side, so it is a valid augmentation here (not for lateralised
    tasks). Rotations: angles uniform in ``[-max_rotation_deg, +max_rotation_deg]`` about
    each axis, one resampling (:func:`rotate`). Intensity: per channel
    :math:`I' = a I + b`, :math:`a \\sim U(\\text{scale})`, :math:`b \\sim U(-\\text{shift},
    \\text{shift})` in normalised units, everywhere in the volume. Masks are flipped and
    rotated with the image, never jittered. All draws come from the ``generator`` passed in,
    in a fixed order, so a seeded generator gives the same result.

    Parameters
    ----------
    p_flip : float, default=0.5
    max_rotation_deg : float, default=10.0
        0 disables rotation.
    scale : (float, float), default=(0.9, 1.1)
    shift : float, default=0.1
        Normalised units; ``scale=(1, 1)`` with ``shift=0`` disables the jitter.

    Examples
    --------
    >>> import torch
    >>> s = {"image": torch.rand(2, 8, 8, 8), "brain": torch.ones(1, 8, 8, 8)}
    >>> a = Augment()(s, torch.Generator().manual_seed(0))
    >>> tuple(a["image"].shape)
    (2, 8, 8, 8)
    """

    p_flip: float = 0.5
    max_rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.1

    def __post_init__(self):
        if not 0.0 <= float(self.p_flip) <= 1.0:
            raise InputError(f"Augment.p_flip must be in [0, 1], got {self.p_flip!r}")
        if not 0.0 <= float(self.max_rotation_deg) <= 45.0:
            raise InputError(f"Augment.max_rotation_deg must be in [0, 45], got {self.max_rotation_deg!r}")
        lo, hi = (float(v) for v in self.scale)
        if not 0 < lo <= hi:
            raise InputError(f"Augment.scale must be (low, high) with 0 < low <= high, got {self.scale!r}")
        if float(self.shift) < 0:
            raise InputError(f"Augment.shift must be >= 0, got {self.shift!r}")

    def __call__(self, sample: dict, generator) -> dict:
        import torch

        out = dict(sample)
        keys = ["image"] + [k for k in _MASKS if k in sample]
        flips = torch.rand(3, generator=generator) < float(self.p_flip)
        dims = [d - 3 for d in range(3) if bool(flips[d])]  # -3, -2, -1: D, H, W
        if dims:
            for k in keys:
                out[k] = torch.flip(out[k], dims)
        angles = (torch.rand(3, generator=generator, dtype=torch.float64) * 2 - 1) * float(self.max_rotation_deg)
        if self.max_rotation_deg > 0:
            out = rotate(out, angles.tolist())
        c = out["image"].shape[0]
        lo, hi = (float(v) for v in self.scale)
        a = lo + (hi - lo) * torch.rand(c, generator=generator)
        b = (torch.rand(c, generator=generator) * 2 - 1) * float(self.shift)
        if (lo, hi) != (1.0, 1.0) or self.shift > 0:
            out["image"] = out["image"] * a.to(out["image"].dtype)[:, None, None, None] \
                + b.to(out["image"].dtype)[:, None, None, None]
        return out


# ----------------------------------------------------------------------- dataset


def _torch_dataset_base():
    import torch.utils.data

    return torch.utils.data.Dataset


class CohortDataset(_torch_dataset_base()):
    """A torch dataset over a cohort cache (:func:`build_cohort_cache`).

    Each item is a dict: ``image`` float32 (C, D, H, W); ``tumour``, ``aggressive``,
    ``brain`` float32 (1, D, H, W); ``label``, ``idh``, ``codeletion`` long scalars;
    ``patient_id`` and ``site`` strings.

    Parameters
    ----------
    directory : str or PathLike
        The cache.
    patient_ids : sequence of str, optional
        Subset (in this order); all patients of the index by default.
    augment : Augment, optional
        Applied to the whole volume before a patch is cut.
    patch : int, optional
        Edge of a random cubic patch (voxels). Its centre is a random tumour voxel with
        probability ``p_tumour`` (this work), otherwise a random brain voxel; the patch is
        shifted to lie inside the volume.
    p_tumour : float, default=0.5
    seed : int, default=0
        Randomness of item ``i`` in epoch ``e`` comes from ``SeedSequence([seed, e, i])``
        (set the epoch with :meth:`set_epoch`), so items repeat exactly whatever the
        number of data-loader workers.

    Examples
    --------
    >>> ds = CohortDataset("/tmp/cache", patch=32, p_tumour=1.0)    # doctest: +SKIP
    >>> ds[0]["image"].shape                                          # doctest: +SKIP
    torch.Size([4, 32, 32, 32])
    """

    def __init__(self, directory, patient_ids: Sequence[str] | None = None, *, augment: Augment | None = None,
                 patch: int | None = None, p_tumour: float = 0.5, seed: int = 0):
        self.directory = Path(directory)
        index = read_index(self.directory)
        spec_path = self.directory / _SPEC_FILE
        self.spec = InputSpec.from_dict(json.loads(spec_path.read_text(encoding="utf-8"))["spec"]) \
            if spec_path.is_file() else None
        if patient_ids is not None:
            ids = [str(p) for p in patient_ids]
            if len(set(ids)) != len(ids):
                raise InputError("patient_ids lists a patient more than once", fix="Give each patient once.")
            missing = sorted(set(ids) - set(index["patient_id"]))
            if missing:
                raise InputError(f"patients {missing[:5]} are not in this cache", path=self.directory,
                                 fix="Use ids from index.csv, or rebuild the cache with more patients.")
            index = index.set_index("patient_id").loc[ids].reset_index()
        self.index = index.reset_index(drop=True)
        if patch is not None:
            shape = self.spec.shape if self.spec else (patch,) * 3
            if int(patch) != patch or not 1 <= patch <= min(shape):
                raise InputError(f"patch must be a whole number of voxels in [1, {min(shape)}], got {patch!r}")
            patch = int(patch)
        if not 0.0 <= float(p_tumour) <= 1.0:
            raise InputError(f"p_tumour must be in [0, 1], got {p_tumour!r}")
        self.augment, self.patch, self.p_tumour, self.seed = augment, patch, float(p_tumour), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (patches, augmentation) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def _load(self, i: int) -> dict:
        import torch

        row = self.index.iloc[i]
        with np.load(self.directory / row["file"]) as z:
            out = {"image": torch.from_numpy(z["image"].astype(np.float32))}
            for k in _MASKS:
                out[k] = torch.from_numpy(z[k].astype(np.float32))[None]
            for k in ("label", "idh", "codeletion"):
                out[k] = torch.tensor(int(z[k]), dtype=torch.long)
            out["patient_id"], out["site"] = str(z["patient_id"]), str(z["site"])
        return out

    def _crop(self, sample: dict, rng: np.random.Generator) -> dict:
        p = self.patch
        shape = np.asarray(sample["image"].shape[-3:])
        tumour = sample["tumour"][0].numpy() > 0.5
        brain = sample["brain"][0].numpy() > 0.5
        use_tumour = rng.random() < self.p_tumour and tumour.any()
        region = tumour if use_tumour else (brain if brain.any() else np.ones(tuple(shape), bool))
        vox = np.argwhere(region)
        centre = vox[rng.integers(len(vox))]
        start = np.clip(centre - p // 2, 0, shape - p)
        sl = tuple(slice(int(s), int(s) + p) for s in start)
        out = dict(sample)
        for k in ["image", *_MASKS]:
            out[k] = sample[k][(slice(None), *sl)].contiguous()
        out["patch_start"] = tuple(int(s) for s in start)
        return out

    def __getitem__(self, i: int) -> dict:
        import torch

        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} patients")
        i = int(i) % len(self)
        sample = self._load(i)
        ss = np.random.SeedSequence([self.seed, self.epoch, i])
        if self.augment is not None:
            gen = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1)))
            sample = self.augment(sample, gen)
        if self.patch is not None:
            sample = self._crop(sample, np.random.default_rng(ss.spawn(1)[0]))
        return sample


# ----------------------------------------------------------------------- splits


def _check_table(table: pd.DataFrame, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in table.columns:
            raise InputError(f"the patient table has no {col!r} column",
                             fix="Use the cache index (read_index) or a table with one row per patient.")
    dup = table["patient_id"][table["patient_id"].duplicated()]
    if len(dup):
        raise InputError(f"patient {dup.iloc[0]!r} appears more than once",
                         fix="Keep one row per patient, so that a patient cannot be in training and test.")


def split_by_patient(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 0,
                     stratify: str | None = "label") -> pd.Series:
    """Assign each patient to ``"train"``, ``"val"`` or ``"test"``.

    Two stratified shuffle splits (:func:`sklearn.model_selection.train_test_split`): the
    test set first, ``round(f_test * n)`` patients, then the validation set,
    ``round(f_val * n)``, from the rest; stratified by the ``stratify`` column.

    Parameters
    ----------
    table : DataFrame
        One row per patient, with ``patient_id`` (and the ``stratify`` column).
    fractions : (float, float, float), default=(0.7, 0.15, 0.15)
        Train, validation, test; positive, summing to 1.
    seed : int, default=0
    stratify : str or None, default="label"

    Returns
    -------
    Series of str
        Index of ``table``.

    Raises
    ------
    InputError
        Duplicate patients, missing columns, bad fractions, or too few patients (every
        split needs at least one, and, when stratified, at least one per class).

    Examples
    --------
    >>> t = pd.DataFrame({"patient_id": [f"P{i}" for i in range(20)], "label": [0, 1] * 10})
    >>> dict(sorted(split_by_patient(t).value_counts().items()))
    {'test': 3, 'train': 14, 'val': 3}
    """
    from sklearn.model_selection import train_test_split

    _check_table(table, ["patient_id"] + ([stratify] if stratify else []))
    try:
        f = [float(v) for v in fractions]
    except (TypeError, ValueError):
        raise InputError(f"fractions must be three numbers, got {fractions!r}") from None
    if len(f) != 3 or min(f) <= 0 or abs(sum(f) - 1.0) > 1e-6:
        raise InputError(f"fractions must be three positive numbers summing to 1, got {fractions!r}",
                         fix="Use e.g. (0.7, 0.15, 0.15).")
    n = len(table)
    n_test, n_val = max(1, round(f[2] * n)), max(1, round(f[1] * n))
    if n - n_test - n_val < 1:
        raise InputError(f"{n} patients are too few for a train/val/test split with fractions {tuple(f)}",
                         fix="Use more patients (at least 3, more when stratified).")
    pos = np.arange(n)
    strata = table[stratify].astype(str).to_numpy() if stratify else None
    split = pd.Series("train", index=table.index, dtype=object)
    try:
        rest, test = train_test_split(pos, test_size=n_test, random_state=int(seed), stratify=strata)
        rest_strata = strata[rest] if strata is not None else None
        _, val = train_test_split(rest, test_size=n_val, random_state=int(seed) + 1, stratify=rest_strata)
    except ValueError as err:
        raise InputError(f"{n} patients cannot be split with fractions {tuple(f)} stratified by {stratify!r}: {err}",
                         fix="Use more patients, other fractions, or stratify=None.") from None
    split.iloc[test] = "test"
    split.iloc[val] = "val"
    return split


def split_by_centre(table: pd.DataFrame, external: Sequence[str] = ("C",), fractions=(0.7, 0.15, 0.15),
                    seed: int = 0, stratify: str | None = "label") -> pd.Series:
    """Hold out whole sites as ``"external"``; split the others with :func:`split_by_patient`.

    Parameters
    ----------
    table : DataFrame
        One row per patient with ``patient_id`` and ``site``.
    external : sequence of str, default=("C",)
        Sites held out whole.
    fractions, seed, stratify
        As :func:`split_by_patient`, for the other sites.

    Returns
    -------
    Series of str
        ``"train"``, ``"val"``, ``"test"`` or ``"external"``, index of ``table``.

    Raises
    ------
    InputError
        As :func:`split_by_patient`; also when no patient or every patient is external.

    Examples
    --------
    >>> t = pd.DataFrame({"patient_id": [f"P{i}" for i in range(30)], "site": list("ABC") * 10,
    ...                   "label": [0, 1] * 15})
    >>> dict(sorted(split_by_centre(t).value_counts().items()))
    {'external': 10, 'test': 3, 'train': 14, 'val': 3}
    """
    _check_table(table, ["patient_id", "site"])
    ext = table["site"].astype(str).isin([str(s) for s in external]).to_numpy()
    if not ext.any():
        raise InputError(f"no patient comes from the external sites {tuple(external)}; sites are "
                         f"{sorted(table['site'].astype(str).unique())}", fix="Name a site that is in the table.")
    if ext.all():
        raise InputError(f"every patient comes from the external sites {tuple(external)}",
                         fix="Keep at least one site for development.")
    split = pd.Series("external", index=table.index, dtype=object)
    split[~ext] = split_by_patient(table[~ext], fractions, seed, stratify)
    return split
