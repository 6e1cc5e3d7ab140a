r"""Synthetic cohort of dynamic 18F-FDOPA brain PET in treated glioma: progression vs radionecrosis.

Each synthetic patient has had a glioma treated with radiotherapy and now shows a
contrast-enhancing lesion on MRI; the question (for the dashboard, the tests and the
learning code) is whether it is tumour progression or radiation necrosis. Per patient:

* a dynamic FDOPA PET (:class:`~core.imaging.DynamicVolume`, Bq/ml decay-corrected to
  injection, PET-BIDS timing, dose record for SUV) on the site's PET grid;
* T1, contrast-enhanced T1 (T1c) and FLAIR-like MRI on the 2 mm MNI grid;
* lesion masks (whole lesion, and the aggressive sub-region when present) on both grids;
* the sampled input function (PET-BIDS ``blood.tsv``) and the truth: class, IDH and
  1p/19q status, kinetic parameters of every region, lesion geometry, noiseless metrics.

How an image is made
--------------------
1. Anatomy (:mod:`core.phantoms.anatomy`): MNI152 tissue fractions with striatum and
   head shells; a lesion (:mod:`core.phantoms.lesion`) replaces normal tissue.
2. Kinetics (:mod:`core.phantoms.kinetics_fdopa`): one two-tissue model per class,
   driven by the patient's input (:mod:`core.phantoms.input_function`); exact frame
   averages from :mod:`core.kinetics.compartment`. Since the activity is
   :math:`A(x, t) = \sum_c F_c(x)\,\mathrm{TAC}_c(t)` and blurring and resampling are
   linear, each class map :math:`F_c` is blurred (Gaussian PSF, FWHM of the site, sigma
   in voxels from the spacing) and resampled to the PET grid once, then combined with the
   class curves.
3. Noise: Gaussian with the Poisson-like variance of :mod:`core.phantoms.sites`,
   :math:`\sigma^2 \propto C\,\mathrm{DF}/\Delta t` (decay factor DF of the frame),
   spatially correlated by a Gaussian of 0.6 x the site FWHM and renormalised;
   negative values are clipped as OSEM reconstructions are non-negative; values are
   stored rounded to about 1/10 of the frame's noise SD (as a scanner's integer pixels;
   < 0.1 % extra variance), which keeps a 28-frame study near 11 MB.
4. MRI: template T1; lesion hypointense on T1, enhancing on T1c (rim, solid or patchy:
   radiation necrosis enhances too, which is the clinical problem), hyperintense with
   surrounding oedema on FLAIR; Rician noise (2 % of the white-matter signal) and a
   smooth 5 % bias field.

Cohort design
-------------
Labels are balanced in pairs (indices 2p and 2p+1 get one of each, order drawn from the
seed), so ``n`` even gives exactly ``n // 2`` of each and the label cannot be read from
the index. IDH-mutant with probability 0.4 in both classes; 1p/19q codeletion in 40 %
of IDH-mutant patients (WHO 2021: codeletion only with IDH mutation). Body weight
75 +- 12 kg within 55-100 kg; injected activity from the site policy with a 5 % SD
(Law et al. 2019: 2-4 MBq/kg or ~185-200 MBq for FDOPA). 18F half-life 6586.2 s.

Randomness: patient ``i`` of seed ``s`` draws from
``SeedSequence(s, spawn_key=(i,))`` (the ``i``-th child of ``SeedSequence(s).spawn``),
split into biology (stream 0), MRI noise (stream 1) and PET noise (stream 2 + site
number). The same seed gives byte-identical arrays on any machine and with any number
of worker processes; the same seed at another site is the same patients rescanned.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import functools
import json
import math
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from core.errors import InputError
from core.imaging.volume import DynamicVolume, PetDose, Volume
from core.phantoms.anatomy import TISSUES, Anatomy, load_anatomy
from core.phantoms.frames import F18_HALF_LIFE_S, frame_decay_factors, input_time_grid_min
from core.phantoms.input_function import InputFunction, fdopa_input_function, sample_fdopa_input
from core.phantoms.kinetics_fdopa import (NECROSIS, KineticParameters, region_tacs, sample_aggressive,
                                          sample_lesion, sample_normal_tissue)
from core.phantoms.lesion import Lesion, make_lesion
from core.phantoms.sites import SITES, Site, get_site

__all__ = [
    "GENERATOR",
    "PatientKinetics",
    "simulate_kinetics",
    "GENERATOR_VERSION",
    "DemoCase",
    "pet_grid",
    "patient_id",
    "generate_patient",
    "generate_cohort",
    "write_case",
    "write_case_dicom",
    "ct_like",
    "cohort_labels",
]

GENERATOR = "core.phantoms.brain_fdopa"
GENERATOR_VERSION = "1.0.0"

LABELS = ("progression", "radionecrosis")
P_IDH_MUTANT = 0.4
P_CODELETED_GIVEN_IDH_MUTANT = 0.4
P_AGGRESSIVE = {"wildtype": 0.60, "mutant": 0.45}
P_NECROTIC = {("progression", "wildtype"): 0.6, ("progression", "mutant"): 0.2,
              ("radionecrosis", "wildtype"): 0.6, ("radionecrosis", "mutant"): 0.6}
P_ENHANCEMENT = {"progression": (0.45, 0.35, 0.20), "radionecrosis": (0.35, 0.15, 0.50)}  # rim, solid, patchy
STATIC_WINDOW_MIN = (10.0, 30.0)
_C_REF_BQ_PER_ML = 5000.0
_DT_REF_S = 300.0
_FLOOR_SUV = 0.01
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_LABEL_ENTROPY = 0x1ABE1


# ----------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class DemoCase:
    """One synthetic patient.

    Attributes
    ----------
    patient_id : str
        ``DEMO-<site>-<index:03d>`` for seed 0, ``DEMO-<site>-S<seed>-<index:03d>`` otherwise.
    index, seed : int
    site : str
    label : {"progression", "radionecrosis"}
    idh : {"mutant", "wildtype"}
    codeletion_1p19q : bool
    pet : DynamicVolume
        Bq/ml, decay-corrected to injection, PET grid of the site.
    t1, t1c, flair : Volume
        MRI on the 2 mm MNI grid (a.u.).
    tumour_mask, aggressive_mask : Volume, Volume or None
        On the PET grid (uint8).
    tumour_mask_mri, aggressive_mask_mri : Volume, Volume or None
        On the MRI grid.
    input_function : InputFunction
        Arterial plasma and whole-blood curves (Bq/ml) on a fine time grid.
    tacs_bq_per_ml : dict of str to ndarray
        Noiseless, unblurred frame-averaged curves: every tissue class, ``"tumour"``
        (viable lesion), ``"aggressive"``, ``"necrosis"`` and ``"background"`` (the
        mirror image of the lesion on the healthy side).
    truth : dict
        JSON-serialisable ground truth (also written to the manifest).
    """

    patient_id: str
    index: int
    seed: int
    site: str
    label: str
    idh: str
    codeletion_1p19q: bool
    pet: DynamicVolume
    t1: Volume
    t1c: Volume
    flair: Volume
    tumour_mask: Volume
    aggressive_mask: Volume | None
    tumour_mask_mri: Volume
    aggressive_mask_mri: Volume | None
    input_function: InputFunction
    tacs_bq_per_ml: dict = field(default_factory=dict)
    truth: dict = field(default_factory=dict)

    @property
    def has_aggressive(self) -> bool:
        return self.aggressive_mask is not None


# ----------------------------------------------------------------------- helpers


def patient_id(index: int, site: str | Site = "A", seed: int = 0) -> str:
    """``DEMO-A-000`` style identifier; other seeds are other patients: ``DEMO-A-S7-000``.

    The same seed at another site is the same patient rescanned, hence the same index
    under another site letter.
    """
    seed_part = f"S{int(seed)}-" if int(seed) != 0 else ""
    return f"DEMO-{get_site(site).name}-{seed_part}{int(index):03d}"


def _site_number(site: Site) -> int:
    return sorted(SITES).index(site.name) if site.name in SITES else 99


def _streams(seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), int(stream))))


def cohort_labels(n: int, seed: int = 0) -> list[str]:
    """Labels of patients ``0..n-1``: balanced in consecutive pairs, order drawn from the seed.

    Examples
    --------
    >>> labels = cohort_labels(6, seed=3)
    >>> labels.count("progression"), labels.count("radionecrosis")
    (3, 3)
    """
    return [_label(seed, i) for i in range(int(n))]


def _label(seed: int, index: int) -> str:
    pair = int(index) // 2
    coin = np.random.default_rng(np.random.SeedSequence([int(seed), _LABEL_ENTROPY], spawn_key=(pair,))).random()
    first = LABELS[0] if coin < 0.5 else LABELS[1]
    if int(index) % 2 == 0:
        return first
    return LABELS[1] if first == LABELS[0] else LABELS[0]


def pet_grid(site: str | Site = "A", anatomy: Anatomy | None = None) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the site's PET grid: isotropic voxels cropped to the head (+5 mm).

    The grid is centred on x = 0 mm, so the mid-sagittal plane of the (symmetric)
    template is its central plane and mirroring across it is an index flip.
    """
    site = get_site(site)
    anatomy = anatomy or load_anatomy()
    v = float(site.voxel_size_mm)
    ijk = np.argwhere(anatomy.head)
    lo = anatomy.affine[:3, :3] @ ijk.min(0) + anatomy.affine[:3, 3] - 5.0
    hi = anatomy.affine[:3, :3] @ ijk.max(0) + anatomy.affine[:3, 3] + 5.0
    half_x = max(abs(lo[0]), abs(hi[0]))
    n_x = 2 * int(math.ceil(half_x / v)) + 1
    n_y = int(math.ceil((hi[1] - lo[1]) / v)) + 1
    n_z = int(math.ceil((hi[2] - lo[2]) / v)) + 1
    affine = np.diag([v, v, v, 1.0])
    affine[:3, 3] = (-(n_x - 1) / 2.0 * v, lo[1], lo[2])
    return (n_x, n_y, n_z), affine


def _to_grid(data: np.ndarray, src_affine: np.ndarray, shape, dst_affine: np.ndarray, order: int = 1) -> np.ndarray:
    """Resample ``data`` (on ``src_affine``) onto a grid, linear by default, zero outside."""
    m = np.linalg.inv(src_affine) @ dst_affine
    return ndimage.affine_transform(np.asarray(data, dtype=np.float32), m[:3, :3], offset=m[:3, 3],
                                    output_shape=tuple(shape), order=order, mode="constant", cval=0.0)


def _noise_variance_factor(sigma_vox: float) -> float:
    """Variance of unit white noise after :func:`scipy.ndimage.gaussian_filter` (isotropic)."""
    if sigma_vox <= 0:
        return 1.0
    delta = np.zeros(int(8 * sigma_vox) * 2 + 3)
    delta[delta.size // 2] = 1.0
    k = ndimage.gaussian_filter1d(delta, sigma_vox, mode="constant")
    return float((k**2).sum()) ** 3


def _window(frame_start_min, frame_end_min, window=STATIC_WINDOW_MIN) -> np.ndarray:
    return (frame_start_min >= window[0] - 1e-9) & (frame_end_min <= window[1] + 1e-9)


def _tac_metrics(tac_suv: np.ndarray, bg_suv: np.ndarray, fs_min, fe_min) -> dict:
    w = _window(fs_min, fe_min)
    dur = (fe_min - fs_min)[w]
    mid = 0.5 * (fs_min + fe_min)
    mean = float((tac_suv[w] * dur).sum() / dur.sum())
    bg = float((bg_suv[w] * dur).sum() / dur.sum())
    slope = float(np.polyfit(mid[w], tac_suv[w], 1)[0] * 60.0)
    return {
        "suv_mean_10_30min": mean,
        "tbr_mean_10_30min": mean / bg if bg > 0 else None,
        "ttp_min": float(mid[int(np.argmax(tac_suv))]),
        "slope_10_30min_suv_per_h": slope,
    }


_NAMES = {
    "F": (("MARTIN", "Claire"), ("BERNARD", "Sophie"), ("LEFEBVRE", "Nathalie"), ("MOREAU", "Isabelle"),
          ("GARCIA", "Lucia"), ("ROUSSEAU", "Helene"), ("SCHMIDT", "Anna"), ("ROSSI", "Giulia")),
    "M": (("DUBOIS", "Pierre"), ("THOMAS", "Julien"), ("PETIT", "Laurent"), ("DURAND", "Michel"),
          ("LAMBERT", "Olivier"), ("MULLER", "Stefan"), ("FERRARI", "Marco"), ("NOWAK", "Piotr")),
}


# ----------------------------------------------------------------------- sampling


def _sample_patient(index: int, seed: int) -> dict:
    """Everything about a patient that does not depend on the site (biology stream)."""
    rng = _rng(seed, index, 0)
    label = _label(seed, index)
    idh = "mutant" if rng.random() < P_IDH_MUTANT else "wildtype"
    codel = bool(idh == "mutant" and rng.random() < P_CODELETED_GIVEN_IDH_MUTANT)
    weight = float(np.clip(rng.normal(75.0, 12.0), 55.0, 100.0))
    activity_jitter = float(np.exp(rng.normal(0.0, 0.05)))
    sex = "F" if rng.random() < 0.4 else "M"  # gliomas are more frequent in men
    age = int(np.clip(round(rng.normal(55.0, 12.0)), 22, 84))
    feng = sample_fdopa_input(rng)
    normal = sample_normal_tissue(rng)
    lesion_k = sample_lesion(rng, label, idh, codel)
    has_aggr = bool(label == "progression" and rng.random() < P_AGGRESSIVE[idh])
    aggr_k = sample_aggressive(rng, lesion_k)  # drawn always, so the stream stays aligned
    necrotic = bool(rng.random() < P_NECROTIC[(label, idh)])
    pattern = ("rim", "solid", "patchy")[int(rng.choice(3, p=P_ENHANCEMENT[label]))]
    radius = float(rng.uniform(9.0, 20.0) if label == "progression" else rng.uniform(8.0, 18.0))
    oedema_mm = float(rng.uniform(8.0, 25.0) if label == "progression" else rng.uniform(6.0, 25.0))
    enhancement_amp = float(rng.uniform(0.35, 0.8))
    injection_minutes = int(rng.integers(8 * 60, 15 * 60))
    return dict(rng=rng, label=label, idh=idh, codel=codel, weight=weight, activity_jitter=activity_jitter,
                sex=sex, age=age, feng=feng, normal=normal, lesion_k=lesion_k, has_aggr=has_aggr,
                aggr_k=aggr_k, necrotic=necrotic, pattern=pattern, radius=radius, oedema_mm=oedema_mm,
                enhancement_amp=enhancement_amp, injection_minutes=injection_minutes)


# ----------------------------------------------------------------------- imaging


def _class_maps(anatomy: Anatomy, lesion: Lesion, has_aggr: bool) -> dict[str, np.ndarray]:
    keep = (~lesion.mask).astype(np.float32)
    maps = {t: anatomy.fractions[t] * keep for t in TISSUES}
    aggr = lesion.aggressive if (has_aggr and lesion.aggressive is not None) else np.zeros_like(lesion.mask)
    maps["tumour"] = ((lesion.viable & ~aggr) * lesion.texture).astype(np.float32)
    maps["aggressive"] = (aggr * lesion.texture).astype(np.float32)
    maps["necrosis"] = lesion.necrosis.astype(np.float32)
    return maps


@functools.lru_cache(maxsize=4)
def _support_masks(site: Site, anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Head support (head dilated by 4 mm) and brain masks on the site's PET grid (cached)."""
    shape, affine = pet_grid(site, anatomy)
    support = _to_grid(ndimage.binary_dilation(anatomy.head, iterations=2).astype(np.float32),
                       anatomy.affine, shape, affine) > 0.5
    brain = _to_grid(anatomy.brain.astype(np.float32), anatomy.affine, shape, affine) > 0.5
    return support, brain


def _simulate_pet(maps, tacs, anatomy: Anatomy, site: Site, suv_scale: float, rng: np.random.Generator):
    """Blur and resample the class maps, combine with the class curves, add noise (see module doc)."""
    shape, affine = pet_grid(site, anatomy)
    sigma_fine = site.fwhm_mm / _FWHM_PER_SIGMA / anatomy.voxel_size_mm
    used = [n for n in maps if np.any(maps[n])]
    on_pet = np.empty((len(used), int(np.prod(shape))), dtype=np.float32)
    for row, name in enumerate(used):
        blurred = ndimage.gaussian_filter(maps[name], sigma_fine, mode="constant")
        on_pet[row] = _to_grid(blurred, anatomy.affine, shape, affine).ravel()
    curves = np.stack([np.asarray(tacs[n], dtype=np.float32) for n in used])  # (K, T)
    n_t = curves.shape[1]
    activity = (curves.T @ on_pet).reshape((n_t,) + tuple(shape))         # (T, I, J, K), contiguous frames
    support, brain = _support_masks(site, anatomy)

    start_s, dur_s = site.frame_start_s, site.frame_duration_s
    df = frame_decay_factors(start_s, dur_s, F18_HALF_LIFE_S)
    k = site.noise_cov_ref**2 * _C_REF_BQ_PER_ML * _DT_REF_S
    floor = np.float32(_FLOOR_SUV * suv_scale)
    sigma_noise = site.noise_correlation_fwhm_mm / _FWHM_PER_SIGMA / site.voxel_size_mm
    norm = np.float32(1.0 / math.sqrt(_noise_variance_factor(sigma_noise)))
    out = np.empty_like(activity)
    for t in range(n_t):
        a = activity[t]
        var_per_bq = np.float32(k * df[t] / dur_s[t])
        sd = np.sqrt((np.maximum(a, 0.0) + floor) * var_per_bq)
        white = rng.standard_normal(shape, dtype=np.float32)
        corr = ndimage.gaussian_filter(white, sigma_noise, mode="wrap")
        noisy = np.maximum(a + sd * (corr * norm), 0.0)
        noisy[~support] = 0.0
        # Stored like a scanner's integer pixels: a quantum of ~1/10 of the noise SD at the
        # brain's mean activity (adds < 0.1 % to the noise variance, keeps files small).
        quantum = _nice_quantum(0.1 * math.sqrt((float(a[brain].mean()) + float(floor)) * float(var_per_bq)))
        out[t] = np.round(noisy / quantum) * quantum
    return np.ascontiguousarray(np.moveaxis(out, 0, -1)), shape, affine


def _nice_quantum(value: float) -> float:
    """Largest 1, 2 or 5 x 10^k not above ``value`` (at least 0.1)."""
    if not value > 0.1:
        return 0.1
    exp = math.floor(math.log10(value))
    for m in (5.0, 2.0, 1.0):
        if m * 10.0**exp <= value:
            return m * 10.0**exp
    return 10.0**exp


def _bias_field(rng: np.random.Generator, shape, amplitude: float) -> np.ndarray:
    """Smooth multiplicative receive-field inhomogeneity: 1 + amplitude x a sum of three
    random low-order cosine profiles (one per axis), at most ``amplitude`` in size."""
    field = np.zeros(shape, np.float32)
    for axis, n in enumerate(shape):
        u = np.linspace(0.0, np.pi, n)
        profile = sum(rng.normal() * np.cos(m * u + rng.uniform(0, np.pi)) / m for m in (1, 2))
        view = [1, 1, 1]
        view[axis] = n
        field = field + profile.reshape(view).astype(np.float32)
    field /= np.abs(field).max() + 1e-12
    return 1.0 + amplitude * field


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    re = signal + rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    im = rng.normal(0.0, sigma, signal.shape).astype(np.float32)
    return np.sqrt(re * re + im * im)


def _simulate_mri(anatomy: Anatomy, lesion: Lesion, spec: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    f = anatomy.fractions
    outside = f["csf"] * (~anatomy.brain) * 0.12 + f["bone"] * 0.06 + f["scalp"] * 0.75
    t1 = np.where(anatomy.brain, anatomy.t1, 0.0) + outside
    flair = (0.08 * f["csf"] + 0.55 * f["grey_matter"] + 0.45 * f["white_matter"]
             + 0.52 * (f["caudate"] + f["putamen"]) + 0.05 * f["bone"] + 0.65 * f["scalp"])
    oed = lesion.oedema
    t1 = t1 * (1.0 - 0.2 * oed)
    flair = flair + 0.35 * oed
    viable = lesion.viable
    t1 = np.where(viable, 0.50 * lesion.texture.clip(0.7, 1.3), t1)
    t1 = np.where(lesion.necrosis, 0.30, t1)
    flair = np.where(viable, 0.80, flair)
    flair = np.where(lesion.necrosis, 0.40, flair)
    t1c = t1 + spec["enhancement_amp"] * lesion.enhancement + 0.05 * f["scalp"]
    out = {}
    bias = _bias_field(rng, anatomy.shape, 0.05)
    for name, img in (("t1", t1), ("t1c", t1c), ("flair", flair)):
        smooth = ndimage.gaussian_filter(img.astype(np.float32), 0.5)
        noisy = _rician(rng, smooth * bias, 0.02 * 0.85)
        out[name] = np.round(noisy * 1000.0).astype(np.float32)
    return out


def ct_like(case: DemoCase, *, seed: int | None = None) -> Volume:
    """A CT-like head volume (HU) on the MRI grid, for DICOM round-trip and de-identification tests.

    Hounsfield values: air -1000, CSF 8, white matter 28, grey matter 38, striatum 36,
    skull 1000-1400 (cortical tables denser than the diploe), scalp 30, viable lesion 32,
    necrosis 15, oedema -8 x fraction; Gaussian noise SD 6 HU (typical head CT).
    """
    anatomy = load_anatomy()
    rng = _rng(case.seed if seed is None else seed, case.index, 9)
    f = anatomy.fractions
    lesion_mri = case.tumour_mask_mri.data > 0
    bone_depth = ndimage.distance_transform_edt(f["bone"] > 0.5) * anatomy.voxel_size_mm
    bone_hu = np.where(bone_depth <= anatomy.voxel_size_mm + 1e-6, 1400.0, 1000.0)  # outer/inner tables
    hu = (8 * f["csf"] + 38 * f["grey_matter"] + 28 * f["white_matter"] + 36 * (f["caudate"] + f["putamen"])
          + bone_hu * f["bone"] + 30 * f["scalp"])
    head = anatomy.head
    hu = np.where(head, hu, -1000.0)
    hu = np.where(lesion_mri, 32.0, hu)
    hu = hu + rng.normal(0.0, 6.0, hu.shape) * head
    hu = ndimage.gaussian_filter(hu, 0.4)
    return Volume(np.round(hu).astype(np.float32), anatomy.affine.copy(), modality="CT", units="HU",
                  meta={"series_description": "CT head (synthetic)", "synthetic": True})


@dataclass(frozen=True, eq=False)
class PatientKinetics:
    """The biology of one patient at one site, without images (cheap: no PET or MRI simulation).

    Attributes
    ----------
    index, seed : int
    site : Site
    label, idh : str
    codeletion_1p19q, has_aggressive : bool
    lesion : Lesion
        Geometry on the MNI grid.
    parameters : dict of str to KineticParameters
        Every tissue class, ``"tumour"``, ``"aggressive"`` and ``"necrosis"``.
    input_function : InputFunction
    frame_start_min, frame_end_min : ndarray
    class_tacs_bq_per_ml : dict of str to ndarray
        Frame-averaged curves of each class (unit tissue density).
    region_tacs_bq_per_ml : dict of str to ndarray
        Noiseless, unblurred region means: tissue classes, ``"tumour"`` (viable lesion,
        texture included), ``"aggressive"``/``"necrosis"`` when present, ``"background"``
        (mirror image of the lesion).
    metrics : dict
        Noiseless static and dynamic metrics (see :func:`simulate_kinetics`).
    injected_activity_bq, body_weight_kg : float
    spec : dict
        The raw draws (for the imaging stage).
    """

    index: int
    seed: int
    site: Site
    label: str
    idh: str
    codeletion_1p19q: bool
    has_aggressive: bool
    lesion: Lesion
    parameters: dict
    input_function: InputFunction
    frame_start_min: np.ndarray
    frame_end_min: np.ndarray
    class_tacs_bq_per_ml: dict
    region_tacs_bq_per_ml: dict
    metrics: dict
    injected_activity_bq: float
    body_weight_kg: float
    spec: dict


def simulate_kinetics(index: int, seed: int = 0, site: str | Site = "A", *,
                      anatomy: Anatomy | None = None) -> PatientKinetics:
    """Draw patient ``index`` of ``seed`` and compute its noiseless curves at ``site``.

    The metrics use the 10-30 min window (whole frames at every site): ``suv_mean_10_30min``
    (viable lesion), ``tbr_mean_10_30min`` (over the mirror-image background),
    ``ttp_min`` (mid-time of the frame with the highest lesion value) and
    ``slope_10_30min_suv_per_h`` (least-squares slope over the window's frames); the
    same with an ``aggressive_`` prefix when the patient has an aggressive sub-region.
    This is the first stage of :func:`generate_patient` and is exactly consistent with it.
    """
    if int(index) != index or index < 0:
        raise InputError(f"patient index must be a whole number >= 0, got {index!r}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    index, seed = int(index), int(seed)
    site = get_site(site)
    anatomy = anatomy or load_anatomy()
    spec = _sample_patient(index, seed)
    rng = spec["rng"]
    lesion = make_lesion(anatomy, rng, radius_mm=spec["radius"], necrotic=spec["necrotic"],
                         aggressive=spec["has_aggr"], enhancement_pattern=spec["pattern"],
                         oedema_mm=spec["oedema_mm"])
    has_aggr = bool(spec["has_aggr"] and lesion.aggressive is not None and lesion.aggressive.any())

    activity_bq = site.injected_activity_mbq(spec["weight"]) * 1e6 * spec["activity_jitter"]
    fs_min = site.frame_start_s / 60.0
    fe_min = (site.frame_start_s + site.frame_duration_s) / 60.0
    grid = input_time_grid_min(float(fe_min[-1]))
    inp = fdopa_input_function(spec["feng"], grid, activity_bq, spec["weight"])

    params: dict[str, KineticParameters] = dict(spec["normal"])
    params["tumour"] = spec["lesion_k"]
    params["aggressive"] = spec["aggr_k"]
    params["necrosis"] = NECROSIS
    tacs = region_tacs(params, grid, inp.plasma_bq_per_ml, inp.whole_blood_bq_per_ml, fs_min, fe_min)

    mirror = lesion.mask[::-1, :, :]
    keep = ~lesion.mask
    background = sum(float((anatomy.fractions[t] * keep)[mirror].mean()) * tacs[t] for t in TISSUES)
    region = {n: np.asarray(v, dtype=float) for n, v in tacs.items() if n in TISSUES}
    texture_viable = float(lesion.texture[lesion.viable].mean()) if lesion.viable.any() else 1.0
    region["tumour"] = np.asarray(tacs["tumour"], dtype=float) * texture_viable
    if has_aggr:
        region["aggressive"] = np.asarray(tacs["aggressive"], dtype=float) * float(lesion.texture[lesion.aggressive].mean())
    if lesion.necrosis.any():
        region["necrosis"] = np.asarray(tacs["necrosis"], dtype=float)
    region["background"] = np.asarray(background, dtype=float)

    scale = inp.suv_to_bq_per_ml
    metrics = _tac_metrics(region["tumour"] / scale, region["background"] / scale, fs_min, fe_min)
    if has_aggr:
        am = _tac_metrics(region["aggressive"] / scale, region["background"] / scale, fs_min, fe_min)
        metrics.update({f"aggressive_{k}": v for k, v in am.items()})
    return PatientKinetics(
        index=index, seed=seed, site=site, label=spec["label"], idh=spec["idh"],
        codeletion_1p19q=spec["codel"], has_aggressive=has_aggr, lesion=lesion, parameters=params,
        input_function=inp, frame_start_min=fs_min, frame_end_min=fe_min, class_tacs_bq_per_ml=tacs,
        region_tacs_bq_per_ml=region, metrics=metrics, injected_activity_bq=float(activity_bq),
        body_weight_kg=float(spec["weight"]), spec=spec,
    )


def generate_patient(index: int, seed: int = 0, site: str | Site = "A", *, anatomy: Anatomy | None = None) -> DemoCase:
    """Simulate patient ``index`` of the cohort drawn from ``seed``, imaged at ``site``.

    Parameters
    ----------
    index : int
        Patient number (>= 0); patient ``i`` is the same whatever the cohort size.
    seed : int, default=0
    site : {"A", "B", "C"} or Site, default="A"
    anatomy : Anatomy, optional
        Pre-loaded anatomy (defaults to :func:`core.phantoms.anatomy.load_anatomy`).

    Returns
    -------
    DemoCase

    Examples
    --------
    >>> case = generate_patient(0, seed=0)                         # doctest: +SKIP
    >>> case.pet.n_frames, case.pet.spacing                        # doctest: +SKIP
    (28, (2.5, 2.5, 2.5))
    """
    anatomy = anatomy or load_anatomy()
    kin = simulate_kinetics(index, seed, site, anatomy=anatomy)
    index, seed, site, spec, lesion = kin.index, kin.seed, kin.site, kin.spec, kin.lesion
    has_aggr, inp, tacs = kin.has_aggressive, kin.input_function, kin.class_tacs_bq_per_ml
    activity_bq = kin.injected_activity_bq
    params = kin.parameters
    maps = _class_maps(anatomy, lesion, has_aggr)
    pet_data, pet_shape, pet_affine = _simulate_pet(maps, tacs, anatomy, site, inp.suv_to_bq_per_ml,
                                                    _rng(seed, index, 2 + _site_number(site)))
    region_curves = kin.region_tacs_bq_per_ml
    scale = inp.suv_to_bq_per_ml
    metrics = kin.metrics

    pid = patient_id(index, site, seed)
    injection_dt = _dt.datetime(2024, 1, 8, 0, 0) + _dt.timedelta(days=index, minutes=spec["injection_minutes"])
    dose = PetDose(injected_activity_bq=float(activity_bq), body_weight_kg=float(spec["weight"]),
                   half_life_s=F18_HALF_LIFE_S, decay_interval_s=0.0, radionuclide="18F", tracer="FDOPA")
    sidecar = {
        "Manufacturer": site.manufacturer,
        "ManufacturersModelName": site.model,
        "BodyPart": "Brain",
        "ModeOfAdministration": "bolus",
        "AcquisitionMode": "list mode",
        "ReconMethodName": "OSEM (synthetic)",
        "ReconFilterType": "Gaussian",
        "ReconFilterSize": float(site.fwhm_mm),
        "AttenuationCorrection": "CT-based",
        "InjectedMass": "n/a",
        "InjectedMassUnits": "n/a",
        "SpecificRadioactivity": "n/a",
        "SpecificRadioactivityUnits": "n/a",
        "InstitutionName": f"TheraBoard synthetic site {site.name}",
        "Synthetic": True,
    }
    pet = DynamicVolume(
        data=pet_data, affine=pet_affine, modality="PT", units="Bq/ml", dose=dose,
        meta={"tracer": "FDOPA", "series_description": f"FDOPA dynamic brain {site.n_frames} frames",
              "synthetic": True, "site": site.name, "patient_id": pid,
              "injection_datetime": injection_dt.isoformat(),
              "injection_clock_time": injection_dt.strftime("%H:%M:%S"), "sidecar": sidecar},
        frame_start_s=site.frame_start_s.copy(), frame_duration_s=site.frame_duration_s.copy(),
        decay_corrected=True, decay_reference="injection",
    )

    mri = _simulate_mri(anatomy, lesion, spec, _rng(seed, index, 1))
    mr_meta = {"synthetic": True, "patient_id": pid}
    t1 = Volume(mri["t1"], anatomy.affine.copy(), "MR", "a.u.", meta={**mr_meta, "series_description": "T1w 3D"})
    t1c = Volume(mri["t1c"], anatomy.affine.copy(), "MR", "a.u.",
                 meta={**mr_meta, "series_description": "T1w 3D post-gadolinium", "contrast_agent": "gadolinium"})
    flair = Volume(mri["flair"], anatomy.affine.copy(), "MR", "a.u.", meta={**mr_meta, "series_description": "FLAIR 3D"})

    def seg(mask_fine: np.ndarray, name: str) -> tuple[Volume, Volume]:
        on_pet = _to_grid(mask_fine.astype(np.float32), anatomy.affine, pet_shape, pet_affine) >= 0.5
        meta = {"synthetic": True, "patient_id": pid, "label_name": name}
        return (Volume(on_pet.astype(np.uint8), pet_affine.copy(), "SEG", "label", meta=meta),
                Volume(mask_fine.astype(np.uint8), anatomy.affine.copy(), "SEG", "label", meta=meta))

    tumour_pet, tumour_mri = seg(lesion.mask, "tumour")
    aggr_pet = aggr_mri = None
    if has_aggr:
        aggr_pet, aggr_mri = seg(lesion.aggressive, "aggressive")

    truth = {
        "label": spec["label"],
        "idh": spec["idh"],
        "codeletion_1p19q": spec["codel"],
        "has_aggressive_subregion": bool(has_aggr),
        "kinetic_model": "two-tissue compartment model, K1 ml/cm3/min, k2-k4 1/min, vB fraction; "
                         "input: arterial plasma (blood.tsv)",
        "kinetics": {
            "tumour": params["tumour"].as_dict(),
            **({"aggressive": params["aggressive"].as_dict()} if has_aggr else {}),
            **({"necrosis": NECROSIS.as_dict()} if lesion.necrosis.any() else {}),
            "normal": {t: params[t].as_dict() for t in TISSUES},
        },
        "input_function": {"model": "Feng 1993 three-exponential (SUV units)", **spec["feng"].as_dict(),
                           "suv_to_bq_per_ml": scale},
        "dose": {"injected_activity_bq": float(activity_bq), "body_weight_kg": float(spec["weight"]),
                 "radionuclide": "18F", "half_life_s": F18_HALF_LIFE_S, "tracer": "FDOPA",
                 "injection_datetime": injection_dt.isoformat()},
        "lesion": {
            "hemisphere": lesion.hemisphere,
            "centre_mm": [round(v, 2) for v in lesion.centre_mm],
            "radius_target_mm": spec["radius"],
            "volume_ml": lesion.volume_ml,
            "necrosis_volume_ml": lesion.necrosis_volume_ml,
            "aggressive_volume_ml": lesion.aggressive_volume_ml if has_aggr else 0.0,
            "enhancement_pattern": spec["pattern"],
            "enhancement_amplitude": spec["enhancement_amp"],
            "oedema_decay_mm": spec["oedema_mm"],
            "uptake_texture_mean": float(lesion.texture[lesion.mask].mean()),
        },
        "metrics_noiseless": metrics,
        "patient": {"sex": spec["sex"], "age_years": spec["age"]},
        "site": site.name,
        "pet_fwhm_mm": site.fwhm_mm,
        "pet_noise_cov_ref": site.noise_cov_ref,
    }
    return DemoCase(
        patient_id=pid, index=index, seed=seed, site=site.name, label=spec["label"], idh=spec["idh"],
        codeletion_1p19q=spec["codel"], pet=pet, t1=t1, t1c=t1c, flair=flair, tumour_mask=tumour_pet,
        aggressive_mask=aggr_pet, tumour_mask_mri=tumour_mri, aggressive_mask_mri=aggr_mri,
        input_function=inp, tacs_bq_per_ml=region_curves, truth=truth,
    )


# ----------------------------------------------------------------------- writing


def _write_blood(case: DemoCase, folder: Path) -> tuple[Path, Path]:
    """PET-BIDS manual blood recording: ``blood.tsv`` (time in s) and ``blood.json``."""
    inp = case.input_function
    tsv = folder / "blood.tsv"
    lines = ["time\tplasma_radioactivity\twhole_blood_radioactivity"]
    for t, p, b in zip(inp.time_min * 60.0, inp.plasma_bq_per_ml, inp.whole_blood_bq_per_ml):
        lines.append(f"{t:.3f}\t{p:.4f}\t{b:.4f}")
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    side = folder / "blood.json"
    side.write_text(json.dumps({
        "Description": "Synthetic arterial input (Feng 1993 model, FDOPA adaptation); decay-corrected to injection",
        "PlasmaAvail": True, "WholeBloodAvail": True, "MetaboliteAvail": False, "DispersionCorrected": True,
        "time": {"Description": "Time from injection", "Units": "s"},
        "plasma_radioactivity": {"Description": "Arterial plasma activity concentration", "Units": "Bq/mL"},
        "whole_blood_radioactivity": {"Description": "Arterial whole-blood activity concentration", "Units": "Bq/mL"},
    }, indent=2) + "\n", encoding="utf-8")
    return tsv, side


def write_case(case: DemoCase, out_dir: str | os.PathLike) -> dict:
    """Write one case into ``out_dir/<patient_id>/`` and return its manifest entry."""
    from core.imaging.nifti import write_nifti

    out_dir = Path(out_dir)
    folder = out_dir / case.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: Path(p).relative_to(out_dir).as_posix()  # noqa: E731
    files = {
        "dynamic_pet": rel(write_nifti(case.pet, folder / "pet.nii.gz")),
        "t1": rel(write_nifti(case.t1, folder / "t1.nii.gz")),
        "t1c": rel(write_nifti(case.t1c, folder / "t1c.nii.gz")),
        "flair": rel(write_nifti(case.flair, folder / "flair.nii.gz")),
    }
    files["dynamic_pet_sidecar"] = f"{case.patient_id}/pet.json"
    tsv, _ = _write_blood(case, folder)
    files["blood"] = rel(tsv)
    masks = {
        "tumour": rel(write_nifti(case.tumour_mask, folder / "tumour_mask.nii.gz")),
        "tumour_mri": rel(write_nifti(case.tumour_mask_mri, folder / "tumour_mask_mri.nii.gz")),
    }
    if case.aggressive_mask is not None:
        masks["aggressive"] = rel(write_nifti(case.aggressive_mask, folder / "aggressive_mask.nii.gz"))
        masks["aggressive_mri"] = rel(write_nifti(case.aggressive_mask_mri, folder / "aggressive_mask_mri.nii.gz"))
    return {
        "id": case.patient_id,
        "index": case.index,
        "label": case.label,
        "idh": case.idh,
        "codeletion_1p19q": case.codeletion_1p19q,
        "files": files,
        "masks": masks,
        "truth": case.truth,
    }


_WORKER_ANATOMY: Anatomy | None = None


def _init_worker(anatomy: Anatomy) -> None:
    global _WORKER_ANATOMY
    _WORKER_ANATOMY = anatomy


def _make_and_write(index: int, seed: int, site: str, out_dir: str) -> dict:
    case = generate_patient(index, seed, site, anatomy=_WORKER_ANATOMY)
    return write_case(case, out_dir)


def generate_cohort(
    out_dir: str | os.PathLike,
    n: int = 20,
    seed: int = 0,
    site: str | Site = "A",
    progress: Callable[[float, str], None] | None = None,
    *,
    workers: int | None = None,
) -> Path:
    """Generate ``n`` patients, write them under ``out_dir`` and return the manifest path.

    Writes ``out_dir/<id>/pet.nii.gz`` (+ ``pet.json`` PET-BIDS sidecar), ``t1.nii.gz``,
    ``t1c.nii.gz``, ``flair.nii.gz``, ``tumour_mask.nii.gz`` (PET grid),
    ``tumour_mask_mri.nii.gz``, ``aggressive_mask[_mri].nii.gz`` when present and
    ``blood.tsv``/``blood.json``; then ``out_dir/cohort.json``.

    Parameters
    ----------
    out_dir : str or PathLike
        Created when missing.
    n : int, default=20
        Number of patients (even ``n``: exactly ``n // 2`` of each label).
    seed : int, default=0
    site : {"A", "B", "C"}, default="A"
    progress : callable(fraction, message), optional
        Called after each patient is written with the fraction done in [0, 1] and a
        message such as ``"DEMO-A-003 (4/20)"`` (the ``Callable[[float, str], None]``
        convention of :mod:`core.demo` and :mod:`core.cases.repository`).
    workers : int, optional
        Worker processes; default ``min(2, os.cpu_count())``, and none for ``n <= 2``.

    Returns
    -------
    Path
        ``out_dir/cohort.json``.
    """
    if int(n) != n or n < 1:
        raise InputError(f"the cohort needs at least one patient, got n={n!r}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    n, seed = int(n), int(seed)
    site_obj = get_site(site)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anatomy = load_anatomy()
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(int(workers), n))
    entries: dict[int, dict] = {}
    done = 0
    if workers == 1 or n <= 2:
        for i in range(n):
            entries[i] = write_case(generate_patient(i, seed, site_obj, anatomy=anatomy), out)
            done += 1
            if progress:
                progress(done / n, f"{entries[i]['id']} ({done}/{n})")
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                                    initializer=_init_worker, initargs=(anatomy,)) as pool:
            futures = {pool.submit(_make_and_write, i, seed, site_obj.name, str(out)): i for i in range(n)}
            for fut in concurrent.futures.as_completed(futures):
                i = futures[fut]
                entries[i] = fut.result()
                done += 1
                if progress:
                    progress(done / n, f"{entries[i]['id']} ({done}/{n})")
    manifest = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "site": site_obj.name,
        "synthetic": True,
        "n": n,
        "tracer": "FDOPA",
        "radionuclide": "18F",
        "site_parameters": {
            "fwhm_mm": site_obj.fwhm_mm, "voxel_size_mm": site_obj.voxel_size_mm,
            "frame_start_s": site_obj.frame_start_s.tolist(), "frame_duration_s": site_obj.frame_duration_s.tolist(),
            "noise_cov_ref": site_obj.noise_cov_ref, "description": site_obj.description,
        },
        "patients": [entries[i] for i in range(n)],
    }
    path = out / "cohort.json"
    tmp = out / ".cohort.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_case_dicom(case: DemoCase, out_dir: str | os.PathLike, *, include_ct: bool = True) -> dict[str, Path]:
    """Write the case as DICOM series with identifying-looking fake demographics.

    The patient name, ID, birth date and accession number look real (a family name
    and given name, a hospital-style ID) so that de-identification can be tested; they
    are drawn deterministically from the case's seed and index and are fictitious.
    Series (all in one study and frame of reference): ``pet`` (dynamic PT, decay
    correction START as scanners write it), ``t1``, ``t1c``, ``flair`` (MR) and ``ct``.

    Returns
    -------
    dict of str to Path
        Series folder per name.
    """
    from core.imaging.dicom import write_dicom_series

    out_dir = Path(out_dir)
    rng = _rng(case.seed, case.index, 8)
    sex = case.truth.get("patient", {}).get("sex", "M")
    family, given = _NAMES[sex][int(rng.integers(len(_NAMES[sex])))]
    age = int(case.truth.get("patient", {}).get("age_years", 60))
    injection_dt = _dt.datetime.fromisoformat(case.pet.meta["injection_datetime"])
    birth = _dt.date(injection_dt.year - age, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    common = dict(
        patient_name=f"{family}^{given}",
        patient_id=f"NCY{int(rng.integers(10**6, 10**7))}",
        patient_birth_date=birth.strftime("%Y%m%d"),
        patient_sex=sex,
        patient_age=f"{age:03d}Y",
        accession_number=f"A{int(rng.integers(10**7, 10**8))}",
        institution_name=f"Synthetic University Hospital {case.site}",
        referring_physician_name="LEROY^Antoine",
        study_description="PET-CT FDOPA brain dynamic + MRI follow-up",
        study_datetime=injection_dt,
        injection_datetime=injection_dt,
        seed=f"{case.seed}-{case.index}-{case.site}",
        uid_prefix="1.2.826.0.1.3680043.8.498.",
    )
    series = [("pet", case.pet, 1, None), ("t1", case.t1, 2, None), ("t1c", case.t1c, 3, None),
              ("flair", case.flair, 4, None)]
    if include_ct:
        series.append(("ct", ct_like(case), 5, None))
    written = {}
    for name, vol, number, _ in series:
        folder = out_dir / name
        write_dicom_series(vol, folder, series_number=number, manufacturer=get_site(case.site).manufacturer,
                           series_description=vol.meta.get("series_description"), **common)
        written[name] = folder
    return written
