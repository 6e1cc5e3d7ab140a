r"""Synthetic radionuclide-therapy patients: torso CT and quantitative SPECT at several times.

Each patient (a man with metastatic castration-resistant prostate cancer, mCRPC, given
[177Lu]Lu-PSMA-617; or optionally a neuroendocrine-tumour patient given
[177Lu]Lu-DOTATATE) has

* a CT in HU on a 3 mm grid, 160 x 100 x 284 voxels (48 x 30 x 85.2 cm; hips to the lower
  head) with body outline, subcutaneous fat, lungs, skeleton (cortex and spongiosa),
  liver, kidneys, spleen, salivary glands (parotid and submandibular), bladder, heart and
  aorta, and 2-5 tumours (lymph node, bone or liver metastases of 1-5 cm);
* quantitative SPECT (Bq/ml, **not** decay-corrected: the activity present at the scan)
  at 4, 24, 48, 96 and 168 h after injection on a 4.8 mm grid of 128 x 128 x 184 voxels
  (61.4 x 61.4 x 88.3 cm, the 128 matrix of a Lu-177 SPECT), another grid and field of view
  than the CT, stored as a :class:`~core.imaging.DynamicVolume` (``modality="NM"``) whose
  frames are the acquisitions: ``frame_start_s`` = time point - half the acquisition,
  ``frame_duration_s`` = acquisition time;
* organ label maps on both grids and the ground truth: noise-free unblurred activity per
  voxel at each time point, kinetic parameters and the analytic time-integrated activity
  (TIA) of every organ.

Kinetics
--------
Every compartment :math:`c` holds the fraction :math:`q_c(t)` of the administered activity
:math:`A_0` that biology puts there, a sum of exponentials, times physical decay
(:math:`\lambda_p = \ln 2 / T_{1/2}` from :func:`core.dosimetry.nuclide_data`):

.. math::

    A_c(t) = A_0\, q_c(t)\, e^{-\lambda_p t}, \qquad
    q_c(t) = f_c\,(e^{-\lambda_{w,c} t} - e^{-\lambda_{u,c} t}) \quad\text{(organs, tumours, bladder)},

    q_\mathrm{rem}(t) = (1 - a_s)\,e^{-\lambda_f t} + a_s\,e^{-\lambda_s t} \quad\text{(blood and remainder)},

with :math:`\lambda = \ln 2 / T` for the uptake, washout, fast and slow biological
half-lives :math:`T`. Everything starts in the blood (:math:`\sum_c q_c(0) = 1`); the
retained fraction :math:`R(t) = \sum_c q_c(t)` falls as urine is voided, and the whole-FOV
activity of the true map is exactly :math:`A_0\,e^{-\lambda_p t}\,R(t)`. The TIA to infinity
is analytic: :math:`\tilde A_c = A_0 \sum_k a_k / (\lambda_k + \lambda_p)` for
:math:`q_c = \sum_k a_k e^{-\lambda_k t}`. Population values, each drawn per patient from a
log-normal (log-SD 0.25 for fractions, 0.2 for half-lives), are in ``core/phantoms/README.md``.

How the activity reaches the voxels
-----------------------------------
A compartment spreads its activity uniformly over the volume of its label (the remainder
over body, lungs x 0.25, blood pool x 2 and bone x 0.3: weights per ml, this work). The
labels are sampled at 2 x 2 x 2 points per SPECT voxel, so the true map has partial-volume
edges and sums exactly to the compartments. The SPECT is then

1. the true map blurred by a Gaussian of the system resolution (FWHM 11 mm by default,
   sigma in voxels from the spacing; this work, for a medium-energy collimator with
   resolution recovery);
2. Poisson counts with mean :math:`A_\mathrm{vox}\,[\mathrm{MBq}] \times S \times T_\mathrm{acq}`
   (sensitivity :math:`S` = 6 cps/MBq by default: SPECT/CT sensitivities for 177Lu of
   5-6 cps/MBq are reported, e.g. 5.67 cps/MBq in EJNMMI Res 2018, doi:10.1186/s13550-018-0459-4;
   acquisition 1200 s; noise in the image domain, this work: reconstructed noise is
   correlated, which is not modelled);
3. calibrated back to Bq/ml with the same :math:`S` and :math:`T_\mathrm{acq}`.

Decay during the 20 min acquisition is neglected (< 0.2 % for 177Lu).

Randomness: patient ``i`` of seed ``s`` draws anatomy and kinetics from
``SeedSequence(s, spawn_key=(i, 0))``, CT noise from ``(i, 1)`` and SPECT noise from
``(i, 2)``, as in :mod:`core.phantoms.brain_fdopa`; the same seed gives the same arrays.

References
----------
.. [1] Kurth J, et al. External radiation
   exposure, excretion, and effective half-life in 177Lu-PSMA-targeted therapies. EJNMMI Res
   2018;8:32 (about 50 % of the activity excreted after 4 h and 70 % after 12 h; whole-body
   effective half-life 40.5 +- 9.6 h).
.. [2] Sjögreen Gleisner K, Chouin N, Gabina PM, et al. EANM dosimetry committee recommendations
   for dosimetry of 177Lu-labelled somatostatin-receptor- and PSMA-targeting ligands. Eur J Nucl
   Med Mol Imaging 2022;49:1778-1809 (overview of reported organ doses and kinetics).
.. [3] Violet J, Jackson P, Ferdinandus J, et al. Dosimetry of 177Lu-PSMA-617 in metastatic
   castration-resistant prostate cancer: correlations between pretherapeutic imaging and
   whole-body tumor dosimetry with treatment outcomes. J Nucl Med 2019;60:517-523.
.. [4] Sandström M, Garske-Román U, Granberg D, et al. Individualized dosimetry of kidney and bone
   marrow in patients undergoing 177Lu-DOTA-octreotate treatment. J Nucl Med 2013;54:33-41.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from core.errors import InputError
from core.imaging.volume import DynamicVolume, PetDose, Volume
from core.phantoms.torso_anatomy import TorsoAnatomy, rasterise, sample_anatomy

__all__ = [
    "AGENTS",
    "Kinetics",
    "TherapyCase",
    "CT_GRID",
    "SPECT_GRID",
    "DEFAULT_TIMES_H",
    "therapy_patient_id",
    "generate_therapy_patient",
    "compartment_activity_mbq",
    "label_activity_mbq",
    "write_therapy_case",
    "generate_therapy_cohort",
    "REMAINDER_WEIGHTS",
    "MASK_ORGANS",
]

GENERATOR = "core.phantoms.torso"
GENERATOR_VERSION = "1.0.0"
DEFAULT_TIMES_H = (4.0, 24.0, 48.0, 96.0, 168.0)
#: CT grid: shape and affine (3 mm isotropic, 48 x 30 x 85.2 cm).
CT_GRID = ((160, 100, 284), np.array([[3.0, 0, 0, -238.5], [0, 3.0, 0, -148.5], [0, 0, 3.0, 0.0], [0, 0, 0, 1]]))
#: SPECT grid: 128 x 128 x 184 voxels of 4.8 mm (61.4 x 61.4 x 88.3 cm).
SPECT_GRID = ((128, 128, 184), np.array([[4.8, 0, 0, -304.8], [0, 4.8, 0, -304.8], [0, 0, 4.8, -19.2], [0, 0, 0, 1]]))
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_SUPERSAMPLE = 2
#: Remainder (blood and soft tissue) activity per ml by label, relative to the body (this work).
REMAINDER_WEIGHTS = {1: 1.0, 2: 0.25, 3: 0.3, 9: 2.0}

#: Population kinetics per agent: organ -> (fraction f of A0, uptake half-life h, biological
#: washout half-life h); "tumour" gives f per ml of tumour; "remainder" -> (slow fraction a_s,
#: fast half-life h, slow half-life h). All (this work, plausible range): chosen so that the
#: whole-body retention follows [1] and organ doses fall in the ranges reviewed in [2]; see README.
AGENTS = {
    "PSMA": {
        "radiopharmaceutical": "[177Lu]Lu-PSMA-617", "diagnosis": "mCRPC", "administered_mbq": 7400.0,
        "organs": {"kidneys": (0.030, 1.0, 50.0), "salivary glands": (0.012, 1.5, 60.0), "liver": (0.045, 1.0, 35.0),
                   "spleen": (0.007, 1.0, 35.0), "bone": (0.015, 2.0, 60.0), "bladder": (0.20, 0.7, 2.5)},
        "tumour": (0.0004, 3.0, 150.0),
        "remainder": (0.20, 1.5, 40.0),
    },
    "DOTATATE": {
        "radiopharmaceutical": "[177Lu]Lu-DOTATATE", "diagnosis": "NET", "administered_mbq": 7400.0,
        "organs": {"kidneys": (0.035, 1.0, 70.0), "salivary glands": (0.001, 1.0, 30.0), "liver": (0.030, 1.0, 60.0),
                   "spleen": (0.020, 1.0, 70.0), "bone": (0.010, 2.0, 70.0), "bladder": (0.25, 0.7, 2.5)},
        "tumour": (0.0003, 3.0, 200.0),
        "remainder": (0.15, 2.0, 50.0),
    },
}
_ORGAN_LABEL = {"kidneys": 5, "salivary glands": 7, "liver": 4, "spleen": 6, "bone": 3, "bladder": 8}


# ----------------------------------------------------------------------- kinetics


@dataclass(frozen=True)
class Kinetics:
    r"""Biological retention :math:`q(t) = \sum_k a_k e^{-\lambda_k t}` of one compartment (fraction of A0).

    Attributes
    ----------
    amplitudes : tuple of float
        :math:`a_k` (fractions of the administered activity).
    rates_per_h : tuple of float
        :math:`\lambda_k` (1/h, biological only).
    description : dict
        The parameters it was built from (fraction, half-lives in h).

    Examples
    --------
    >>> k = Kinetics.uptake_washout(0.03, 1.0, 50.0)
    >>> round(float(k.fraction(0.0)), 12), round(k.tia_h(math.log(2) / 159.5), 3)
    (0.0, 1.605)
    """

    amplitudes: tuple
    rates_per_h: tuple
    description: dict = field(default_factory=dict)

    @classmethod
    def uptake_washout(cls, fraction: float, uptake_half_life_h: float, washout_half_life_h: float) -> "Kinetics":
        lu, lw = math.log(2) / uptake_half_life_h, math.log(2) / washout_half_life_h
        return cls((fraction, -fraction), (lw, lu), {"model": "uptake-washout", "fraction": fraction,
                                                     "uptake_half_life_h": uptake_half_life_h,
                                                     "washout_half_life_h": washout_half_life_h})

    @classmethod
    def two_phase(cls, slow_fraction: float, fast_half_life_h: float, slow_half_life_h: float) -> "Kinetics":
        rates = (math.log(2) / fast_half_life_h, math.log(2) / slow_half_life_h)
        return cls((1.0 - slow_fraction, slow_fraction), rates,
                   {"model": "two-phase clearance", "slow_fraction": slow_fraction,
                    "fast_half_life_h": fast_half_life_h, "slow_half_life_h": slow_half_life_h})

    def fraction(self, t_h) -> np.ndarray:
        """Biological fraction of the administered activity at ``t_h`` hours (no physical decay)."""
        t = np.asarray(t_h, float)
        return sum(a * np.exp(-lam * t) for a, lam in zip(self.amplitudes, self.rates_per_h))

    def tia_h(self, lambda_phys_per_h: float) -> float:
        """:math:`\\int_0^\\infty q(t) e^{-\\lambda_p t} dt` in h (multiply by A0 in MBq for MBq h)."""
        return float(sum(a / (lam + lambda_phys_per_h) for a, lam in zip(self.amplitudes, self.rates_per_h)))

    def as_dict(self) -> dict:
        return {**self.description, "amplitudes": list(self.amplitudes), "rates_per_h": list(self.rates_per_h)}


def _sample_kinetics(rng: np.random.Generator, agent: str, tumour_volumes_ml: dict) -> dict[str, Kinetics]:
    spec = AGENTS[agent]
    out = {}
    for organ, (f, tu, tw) in spec["organs"].items():
        out[organ] = Kinetics.uptake_washout(f * float(np.exp(rng.normal(0, 0.25))),
                                             tu * float(np.exp(rng.normal(0, 0.2))),
                                             tw * float(np.exp(rng.normal(0, 0.2))))
    f_ml, tu, tw = spec["tumour"]
    for name, vol in tumour_volumes_ml.items():
        out[name] = Kinetics.uptake_washout(f_ml * vol * float(np.exp(rng.normal(0, 0.4))),
                                            tu * float(np.exp(rng.normal(0, 0.2))),
                                            tw * float(np.exp(rng.normal(0, 0.2))))
    a_s, tf, ts = spec["remainder"]
    a_s = float(np.clip(a_s * np.exp(rng.normal(0, 0.2)), 0.05, 0.5))
    tf, ts = tf * float(np.exp(rng.normal(0, 0.2))), ts * float(np.exp(rng.normal(0, 0.2)))
    # Excretion is irreversible: the retained fraction must never rise. Where the organs would
    # take up activity faster than the blood loses it, the blood's fast phase is shortened.
    t = np.linspace(0.0, 72.0, 1441)
    organs = sum(k.fraction(t) for k in out.values())
    for _ in range(40):
        rem = Kinetics.two_phase(a_s, tf, ts)
        if np.all(np.diff(organs + rem.fraction(t)) <= 0.0):
            break
        tf /= 1.15
    out["remainder"] = rem
    return out


def compartment_activity_mbq(kinetics: dict, times_h, administered_mbq: float, half_life_h: float) -> dict:
    """Activity (MBq) of every compartment at ``times_h`` (h): :math:`A_0 q_c(t) e^{-\\lambda_p t}`.

    Examples
    --------
    >>> kin = {"remainder": Kinetics.two_phase(0.2, 1.5, 40.0)}
    >>> [round(float(v), 1) for v in compartment_activity_mbq(kin, [0.0], 7400.0, 159.5)["remainder"]]
    [7400.0]
    """
    t = np.asarray(times_h, float)
    decay = np.exp(-math.log(2) / half_life_h * t)
    return {name: administered_mbq * k.fraction(t) * decay for name, k in kinetics.items()}


# ----------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class TherapyCase:
    """One synthetic therapy patient (see the module docstring).

    Attributes
    ----------
    patient_id : str
        ``DEMO-PSMA-000`` (seed 0) or ``DEMO-PSMA-S7-000``.
    index, seed : int
    agent, radiopharmaceutical, nuclide, diagnosis : str
    administered_mbq : float
    injection_datetime : str
        ISO date and time of the injection; SPECT times count from it.
    ct : Volume
        HU on :data:`CT_GRID`.
    spect : DynamicVolume
        Bq/ml at the scan time (not decay-corrected), ``modality="NM"``, on :data:`SPECT_GRID`;
        one frame per time point.
    labels, labels_ct : Volume
        Integer label maps (``modality="SEG"``) on the SPECT and CT grids.
    label_names : dict of int to str
    times_h : ndarray of shape (T,)
        Time points (h after injection; the middle of each acquisition).
    true_activity_mbq : ndarray of shape (I, J, K, T)
        Noise-free, unblurred activity per SPECT voxel (MBq) at each time point.
    true_tia_map_mbq_h : ndarray of shape (I, J, K)
        Analytic TIA per SPECT voxel (MBq h).
    true_tia_mbq_h : dict of str to float
        Analytic TIA per label (organ, tumour, ``"body"`` ...), MBq h.
    compartment_tia_mbq_h : dict of str to float
        Analytic TIA per kinetic compartment (MBq h).
    kinetics : dict of str to Kinetics
        Per compartment (organs, tumours, ``"remainder"``).
    label_shares : dict of str to dict of str to float
        Share of each compartment's activity in each label (fixed in time).
    retained_fraction : ndarray of shape (T,)
        :math:`R(t)` at the time points (biological, before decay).
    half_life_h : float
    truth : dict
        JSON-serialisable ground truth (written to the manifest).
    """

    patient_id: str
    index: int
    seed: int
    agent: str
    radiopharmaceutical: str
    nuclide: str
    diagnosis: str
    administered_mbq: float
    injection_datetime: str
    ct: Volume
    spect: DynamicVolume
    labels: Volume
    labels_ct: Volume
    label_names: dict
    times_h: np.ndarray
    true_activity_mbq: np.ndarray
    true_tia_map_mbq_h: np.ndarray
    true_tia_mbq_h: dict
    compartment_tia_mbq_h: dict
    kinetics: dict
    label_shares: dict
    retained_fraction: np.ndarray
    half_life_h: float
    truth: dict = field(default_factory=dict)


def label_activity_mbq(case: TherapyCase, times_h) -> dict:
    """Noise-free activity (MBq) in every label at any ``times_h`` (h), from the kinetic model.

    At the case's own time points it equals the true map summed over the voxels of each
    label's share (partial-volume voxels included).

    Examples
    --------
    >>> case = generate_therapy_patient(0)                                     # doctest: +SKIP
    >>> round(float(label_activity_mbq(case, [24.0])["kidneys"][0]), 1)      # doctest: +SKIP
    113.1
    """
    comp = compartment_activity_mbq(case.kinetics, times_h, case.administered_mbq, case.half_life_h)
    out = {name: np.zeros_like(np.asarray(times_h, float)) for name in case.true_tia_mbq_h}
    for c, shares in case.label_shares.items():
        for name, share in shares.items():
            out[name] = out[name] + share * comp[c]
    return out


def therapy_patient_id(index: int, seed: int = 0, agent: str = "PSMA") -> str:
    """``DEMO-PSMA-000`` for seed 0, ``DEMO-PSMA-S7-000`` for seed 7."""
    seed_part = f"S{int(seed)}-" if int(seed) != 0 else ""
    return f"DEMO-{agent}-{seed_part}{int(index):03d}"


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), int(stream))))


def _check_args(index, seed, nuclide, agent, times_h, administered_mbq, fwhm_mm, sensitivity, acquisition_s):
    if int(index) != index or index < 0:
        raise InputError(f"patient index must be a whole number >= 0, got {index!r}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    if agent not in AGENTS:
        raise InputError(f"unknown agent {agent!r}", fix=f"Choose one of {', '.join(AGENTS)}.")
    from core.dosimetry.nuclides import nuclide_data

    half_life_h = nuclide_data(nuclide).half_life_s / 3600.0  # InputError with suggestions when unknown
    t = np.asarray(times_h, float)
    if t.ndim != 1 or t.size < 1 or not np.all(np.isfinite(t)) or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise InputError(f"time points must be positive and strictly increasing hours, got {list(np.ravel(t))!r}",
                         fix="Give the scan times in hours after injection, e.g. (4, 24, 48, 96, 168).")
    for name, value, lo, hi in (("administered activity", administered_mbq, 1.0, 1e5),
                                ("FWHM", fwhm_mm, 0.0, 50.0), ("sensitivity", sensitivity, 1e-3, 1e4),
                                ("acquisition time", acquisition_s, 1.0, 36000.0)):
        if not (math.isfinite(float(value)) and lo <= float(value) <= hi):
            unit = {"administered activity": "MBq", "FWHM": "mm", "sensitivity": "cps/MBq",
                    "acquisition time": "s"}[name]
            raise InputError(f"{name} {value!r} {unit} is outside {lo}-{hi} {unit}",
                             fix="Activities are in MBq (7400 MBq = 7.4 GBq), lengths in mm, times in s.")
    return half_life_h, t


@dataclass(frozen=True, eq=False)
class _VoxelLabels:
    """Labels sampled at s^3 points per voxel, stored as pure voxels plus a count table for mixed ones."""

    first: np.ndarray          # (N,) label of the first sub-point of each voxel
    pure: np.ndarray           # (N,) bool: all sub-points share that label
    mixed_idx: np.ndarray      # (M,) voxel indices of mixed voxels
    mixed_counts: np.ndarray   # (M, n_labels) sub-point counts
    points: int                # s^3

    def per_label(self, n_labels: int) -> np.ndarray:
        """Number of sub-points of each label on the grid."""
        return (np.bincount(self.first[self.pure], minlength=n_labels) * self.points
                + self.mixed_counts.sum(axis=0, dtype=np.int64))

    def spread(self, table: np.ndarray) -> np.ndarray:
        """Per-voxel sum of ``table[label]`` over sub-points; ``table`` has shape (n_labels, ...)."""
        table = np.asarray(table, np.float64)
        out = np.empty((self.first.size,) + table.shape[1:], np.float32)
        out[self.pure] = (table * self.points).astype(np.float32)[self.first[self.pure]]
        out[self.mixed_idx] = np.tensordot(self.mixed_counts.astype(np.float64), table, axes=(1, 0))
        return out

    def majority(self) -> np.ndarray:
        lab = self.first.copy()
        lab[self.mixed_idx] = np.argmax(self.mixed_counts, axis=1)
        return lab


def _voxel_labels(lab_fine: np.ndarray, s: int, n_labels: int) -> _VoxelLabels:
    ni, nj, nk = (n // s for n in lab_fine.shape)
    blocks = lab_fine.reshape(ni, s, nj, s, nk, s).transpose(0, 2, 4, 1, 3, 5).reshape(-1, s**3)
    first = np.ascontiguousarray(blocks[:, 0])
    pure = (blocks == first[:, None]).all(axis=1)
    mixed_idx = np.nonzero(~pure)[0]
    sub = blocks[mixed_idx].astype(np.int64)
    flat = np.arange(mixed_idx.size)[:, None] * n_labels + sub
    counts = np.bincount(flat.ravel(), minlength=mixed_idx.size * n_labels).reshape(mixed_idx.size, n_labels)
    return _VoxelLabels(first, pure, mixed_idx, counts.astype(np.int32), s**3)


def _label_shares(counts_per_label: np.ndarray, kinetics: dict, label_names: dict) -> dict:
    """Share of each compartment's activity in each label (uniform per ml within a label)."""
    shares = {}
    for comp in kinetics:
        if comp == "remainder":
            weights = {lab: w * counts_per_label[lab] for lab, w in REMAINDER_WEIGHTS.items()}
        else:
            lab = _ORGAN_LABEL.get(comp)
            if lab is None:
                lab = next(k for k, v in label_names.items() if v == comp)
            weights = {lab: float(counts_per_label[lab])}
        total = sum(weights.values())
        if total <= 0:
            raise RuntimeError(f"compartment {comp} has no voxel on the SPECT grid")
        shares[comp] = {label_names[lab]: float(w / total) for lab, w in weights.items() if w > 0}
    return shares


def generate_therapy_patient(index: int, seed: int = 0, nuclide: str = "Lu-177", *, agent: str = "PSMA",
                             times_h=DEFAULT_TIMES_H, administered_mbq: float | None = None,
                             fwhm_mm: float = 11.0, sensitivity_cps_per_mbq: float = 6.0,
                             acquisition_s: float = 1200.0, n_tumours: int | None = None) -> TherapyCase:
    """Simulate therapy patient ``index`` of the cohort drawn from ``seed``.

    Parameters
    ----------
    index : int
        Patient number (>= 0); patient ``i`` is the same whatever the cohort size.
    seed : int, default=0
    nuclide : str, default="Lu-177"
        Any nuclide of :func:`core.dosimetry.nuclide_data`; its half-life sets the physical decay.
    agent : {"PSMA", "DOTATATE"}, default="PSMA"
        [177Lu]Lu-PSMA-617 (mCRPC) or [177Lu]Lu-DOTATATE (NET) kinetics.
    times_h : sequence of float, default=(4, 24, 48, 96, 168)
        Scan times (h after injection, middle of each acquisition), strictly increasing.
    administered_mbq : float, optional
        Default 7400 MBq (7.4 GBq) for both agents.
    fwhm_mm : float, default=11.0
        SPECT system resolution (Gaussian FWHM, mm); 0 switches the blur off.
    sensitivity_cps_per_mbq : float, default=6.0
        SPECT system sensitivity (counts per second per MBq in the field of view).
    acquisition_s : float, default=1200.0
        Acquisition time per time point (s).
    n_tumours : int, optional
        Number of tumours (2-5 drawn from the seed otherwise).

    Returns
    -------
    TherapyCase

    Examples
    --------
    >>> case = generate_therapy_patient(0)                                   # doctest: +SKIP
    >>> case.spect.shape, case.ct.spacing, case.times_h.tolist()             # doctest: +SKIP
    ((128, 128, 184, 5), (3.0, 3.0, 3.0), [4.0, 24.0, 48.0, 96.0, 168.0])
    """
    spec = AGENTS.get(agent, {})
    administered_mbq = float(spec.get("administered_mbq", 7400.0) if administered_mbq is None else administered_mbq)
    half_life_h, times = _check_args(index, seed, nuclide, agent, times_h, administered_mbq, fwhm_mm,
                                     sensitivity_cps_per_mbq, acquisition_s)
    index, seed = int(index), int(seed)
    from core.dosimetry.nuclides import canonical_name

    nuclide = canonical_name(nuclide)
    rng = _rng(seed, index, 0)
    anatomy: TorsoAnatomy = sample_anatomy(rng, n_tumours)
    names = anatomy.label_names
    n_labels = max(names) + 1
    label_table = anatomy.label_table()

    # SPECT grid: sub-voxel label counts -> shares -> true activity
    shape, affine = SPECT_GRID
    vox = _voxel_labels(label_table[rasterise(anatomy, shape, affine, _SUPERSAMPLE)], _SUPERSAMPLE, n_labels)
    sub_per_label = vox.per_label(n_labels)
    voxel_ml_fine = float(np.prod(np.abs(np.diag(affine)[:3]))) / 1000.0 / _SUPERSAMPLE**3
    tumour_ml = {t["name"]: float(sub_per_label[t["label"]]) * voxel_ml_fine for t in anatomy.tumours}
    kinetics = _sample_kinetics(rng, agent, tumour_ml)
    shares = _label_shares(sub_per_label, kinetics, names)
    inj_minutes = int(rng.integers(8 * 60, 12 * 60))

    lam_p = math.log(2) / half_life_h
    comp_tia = {c: administered_mbq * k.tia_h(lam_p) for c, k in kinetics.items()}
    comp_act = compartment_activity_mbq(kinetics, times, administered_mbq, half_life_h)
    label_act = np.zeros((n_labels, times.size))
    label_tia = np.zeros(n_labels)
    inv_names = {v: k for k, v in names.items()}
    for c, sh in shares.items():
        for lname, share in sh.items():
            label_act[inv_names[lname]] += share * comp_act[c]
            label_tia[inv_names[lname]] += share * comp_tia[c]
    per_point = np.divide(1.0, sub_per_label, out=np.zeros(n_labels), where=sub_per_label > 0)
    true = vox.spread(label_act * per_point[:, None]).reshape(shape + (times.size,))
    tia_map = vox.spread(label_tia * per_point).reshape(shape)
    retained = sum(k.fraction(times) for k in kinetics.values())

    # SPECT: blur, Poisson, calibrate
    spacing = np.abs(np.diag(affine)[:3])
    sigma = fwhm_mm / _FWHM_PER_SIGMA / spacing
    noise_rng = _rng(seed, index, 2)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    cal = sensitivity_cps_per_mbq * acquisition_s  # counts per MBq
    spect = np.empty_like(true)
    for t in range(times.size):
        blurred = ndimage.gaussian_filter(true[..., t], sigma, mode="constant") if fwhm_mm > 0 else true[..., t]
        counts_t = noise_rng.poisson(np.maximum(blurred, 0.0).astype(np.float64) * cal)
        spect[..., t] = (counts_t / cal * 1e6 / voxel_ml).astype(np.float32)

    pid = therapy_patient_id(index, seed, agent)
    injection = _dt.datetime(2024, 3, 4) + _dt.timedelta(days=7 * index, minutes=inj_minutes)
    radiopharm = spec["radiopharmaceutical"] if nuclide == "Lu-177" else spec["radiopharmaceutical"].replace(
        "177Lu]Lu", f"{nuclide.split('-')[1]}{nuclide.split('-')[0]}]{nuclide.split('-')[0]}")
    frame_start = times * 3600.0 - acquisition_s / 2.0
    sidecar = {
        "Manufacturer": "TheraBoard synthetic", "BodyPart": "Torso", "Synthetic": True,
        "Radionuclide": nuclide, "Radiopharmaceutical": radiopharm,
        "AdministeredActivityMBq": administered_mbq, "InjectionDateTime": injection.isoformat(),
        "AcquisitionTimesHours": [float(v) for v in times], "AcquisitionDurationSeconds": float(acquisition_s),
        "DecayCorrected": False, "SystemFWHMmm": float(fwhm_mm), "SensitivityCpsPerMBq": float(sensitivity_cps_per_mbq),
        "ReconMethodName": "synthetic (Gaussian resolution, Poisson counts)",
    }
    dose = PetDose(injected_activity_bq=administered_mbq * 1e6, body_weight_kg=None, half_life_s=half_life_h * 3600.0,
                   decay_interval_s=0.0, radionuclide=nuclide.split("-")[1] + nuclide.split("-")[0],
                   tracer=radiopharm)
    spect_vol = DynamicVolume(
        data=spect, affine=affine.copy(), modality="NM", units="Bq/ml", dose=dose,
        meta={"series_description": f"{radiopharm} quantitative SPECT {times.size} time points",
              "synthetic": True, "patient_id": pid, "injection_datetime": injection.isoformat(),
              "injection_clock_time": injection.strftime("%H:%M:%S"), "sidecar": sidecar, "tracer": radiopharm},
        frame_start_s=frame_start, frame_duration_s=np.full(times.size, float(acquisition_s)),
        decay_corrected=False, decay_reference="none")
    label_sidecar = {"LabelNames": {str(k): v for k, v in names.items()}, "Synthetic": True}
    labels = Volume(vox.majority().reshape(shape).astype(np.uint8), affine.copy(), "SEG", "label",
                    meta={"series_description": "organ and tumour labels (SPECT grid)", "synthetic": True,
                          "patient_id": pid, "sidecar": label_sidecar, "label_names": dict(names)})

    # CT grid
    ct_shape, ct_affine = CT_GRID
    ids_ct = rasterise(anatomy, ct_shape, ct_affine, 1)
    hu = anatomy.hu_table()[ids_ct]
    hu = ndimage.gaussian_filter(hu, 0.6)  # partial volume of a 3 mm reconstruction (this work)
    hu = hu + _rng(seed, index, 1).normal(0.0, 10.0, hu.shape).astype(np.float32)
    hu = np.clip(np.round(hu), -1024, 3071).astype(np.float32)
    ct = Volume(hu, ct_affine.copy(), "CT", "HU",
                meta={"series_description": "CT torso low dose (synthetic)", "synthetic": True, "patient_id": pid,
                      "sidecar": {"Synthetic": True, "BodyPart": "Torso"}})
    labels_ct = Volume(label_table[ids_ct].astype(np.uint8), ct_affine.copy(), "SEG", "label",
                       meta={"series_description": "organ and tumour labels (CT grid)", "synthetic": True,
                             "patient_id": pid, "sidecar": label_sidecar, "label_names": dict(names)})

    true_tia = {names[lab]: float(label_tia[lab]) for lab in range(1, n_labels) if sub_per_label[lab] > 0}
    volumes = {names[lab]: float(sub_per_label[lab]) * voxel_ml_fine for lab in range(1, n_labels)}
    truth = {
        "agent": agent, "radiopharmaceutical": radiopharm, "nuclide": nuclide, "half_life_h": half_life_h,
        "administered_mbq": administered_mbq, "injection_datetime": injection.isoformat(),
        "times_h": [float(v) for v in times], "acquisition_s": float(acquisition_s),
        "fwhm_mm": float(fwhm_mm), "sensitivity_cps_per_mbq": float(sensitivity_cps_per_mbq),
        "kinetic_model": "A_c(t) = A0 * sum_k a_k exp(-lambda_k t) * exp(-lambda_p t); t in h",
        "kinetics": {c: k.as_dict() for c, k in kinetics.items()},
        "label_shares": shares,
        "tia_mbq_h": true_tia, "compartment_tia_mbq_h": comp_tia,
        "retained_fraction": [float(v) for v in retained],
        "label_activity_mbq": {names[lab]: [float(v) for v in label_act[lab]] for lab in range(1, n_labels)
                               if sub_per_label[lab]},
        "volumes_ml_spect_grid": volumes, "tumours": anatomy.tumours, "anatomy": anatomy.params,
        "label_names": {str(k): v for k, v in names.items()},
    }
    return TherapyCase(
        patient_id=pid, index=index, seed=seed, agent=agent, radiopharmaceutical=radiopharm, nuclide=nuclide,
        diagnosis=spec["diagnosis"], administered_mbq=administered_mbq, injection_datetime=injection.isoformat(),
        ct=ct, spect=spect_vol, labels=labels, labels_ct=labels_ct, label_names=dict(names), times_h=times.copy(),
        true_activity_mbq=true, true_tia_map_mbq_h=tia_map, true_tia_mbq_h=true_tia, compartment_tia_mbq_h=comp_tia,
        kinetics=kinetics, label_shares=shares, retained_fraction=np.asarray(retained, float),
        half_life_h=half_life_h, truth=truth)


# ----------------------------------------------------------------------- writing

#: Binary masks written with a case (label names on the SPECT grid), besides one per tumour.
MASK_ORGANS = ("kidneys", "liver", "spleen", "salivary glands", "bladder", "lungs", "bone")


def write_therapy_case(case: TherapyCase, out_dir: str | os.PathLike) -> dict:
    """Write one case into ``out_dir/<patient_id>/`` and return its manifest entry.

    Files: ``ct.nii.gz`` (HU), ``spect.nii.gz`` (4D Bq/ml; the sidecar ``spect.json`` holds
    PET-BIDS-style timing ``FrameTimesStart``/``FrameDuration`` in s from injection, and
    ``Radionuclide``, ``Radiopharmaceutical``, ``AdministeredActivityMBq``,
    ``InjectionDateTime``, ``AcquisitionTimesHours``, ``DecayCorrected: false``),
    ``labels.nii.gz`` / ``labels_ct.nii.gz`` (label maps, names in the sidecar
    ``LabelNames``), binary masks ``mask_<organ>.nii.gz`` on the SPECT grid
    (:data:`MASK_ORGANS`, ``tumour`` = all tumours, ``tumour 1`` ...) and
    ``truth.json``.

    Returns
    -------
    dict
        Manifest entry for :meth:`core.cases.repository.CaseRepository.import_cohort`:
        ``files`` by role (``ct``, ``spect``, ``other`` = the SPECT-grid label map),
        ``masks``, ``label`` (the diagnosis, ``"mCRPC"`` or ``"NET"``), ``truth``.
    """
    from core.imaging.nifti import write_nifti

    out_dir = Path(out_dir)
    folder = out_dir / case.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: Path(p).relative_to(out_dir).as_posix()  # noqa: E731
    files = {
        "ct": rel(write_nifti(case.ct, folder / "ct.nii.gz")),
        "spect": rel(write_nifti(case.spect, folder / "spect.nii.gz")),
        "other": rel(write_nifti(case.labels, folder / "labels.nii.gz")),
    }
    files["spect_sidecar"] = f"{case.patient_id}/spect.json"
    label_ct = rel(write_nifti(case.labels_ct, folder / "labels_ct.nii.gz"))
    lab = np.asarray(case.labels.data)
    inv = {v: k for k, v in case.label_names.items()}
    masks = {}
    wanted = [(name, lab == inv[name]) for name in MASK_ORGANS]
    tumour_labels = [k for k, v in case.label_names.items() if v.startswith("tumour ")]
    wanted.append(("tumour", np.isin(lab, tumour_labels)))
    wanted += [(case.label_names[k], lab == k) for k in tumour_labels]
    for name, mask in wanted:
        if not mask.any():
            continue
        vol = Volume(mask.astype(np.uint8), case.labels.affine.copy(), "SEG", "label",
                     meta={"synthetic": True, "patient_id": case.patient_id, "label_name": name})
        masks[name] = rel(write_nifti(vol, folder / f"mask_{name.replace(' ', '_')}.nii.gz"))
    (folder / "truth.json").write_text(json.dumps(case.truth, indent=1) + "\n", encoding="utf-8")
    return {
        "id": case.patient_id,
        "index": case.index,
        "label": case.diagnosis,
        "files": files,
        "masks": masks,
        "label_maps": {"spect": files["other"], "ct": label_ct},
        "truth": case.truth,
    }


def generate_therapy_cohort(out_dir: str | os.PathLike, n: int = 3, seed: int = 0, *, agent: str = "PSMA",
                            nuclide: str = "Lu-177", site: str = "A",
                            progress: Callable[[float, str], None] | None = None, **options) -> Path:
    """Generate ``n`` therapy patients, write them under ``out_dir`` and return the manifest path.

    Parameters
    ----------
    out_dir : str or PathLike
        Created when missing; receives ``<id>/`` folders (see :func:`write_therapy_case`)
        and ``cohort.json``.
    n : int, default=3
    seed : int, default=0
    agent : {"PSMA", "DOTATATE"}, default="PSMA"
    nuclide : str, default="Lu-177"
    site : str, default="A"
        Site recorded on the imported studies.
    progress : callable(fraction, message), optional
        Called after each patient.
    **options
        Passed to :func:`generate_therapy_patient` (``times_h``, ``fwhm_mm``, ...).

    Returns
    -------
    Path
        ``out_dir/cohort.json``, readable by ``repo.import_cohort``.

    Examples
    --------
    >>> path = generate_therapy_cohort("/tmp/therapy-demo", n=1)     # doctest: +SKIP
    """
    if int(n) != n or n < 1:
        raise InputError(f"the cohort needs at least one patient, got n={n!r}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(int(n)):
        case = generate_therapy_patient(i, int(seed), nuclide, agent=agent, **options)
        entries.append(write_therapy_case(case, out))
        if progress:
            progress((i + 1) / int(n), f"{case.patient_id} ({i + 1}/{int(n)})")
    manifest = {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "seed": int(seed), "site": str(site),
        "synthetic": True, "n": int(n), "agent": agent, "radiopharmaceutical": AGENTS[agent]["radiopharmaceutical"],
        "radionuclide": nuclide, "patients": entries,
    }
    path = out / "cohort.json"
    tmp = out / ".cohort.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
