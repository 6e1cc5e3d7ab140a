r"""18F-FDOPA tissue kinetics of the brain phantom: population values, patient draws, curves.

Model: the two-tissue compartment model of :mod:`core.kinetics.compartment` for every
tissue class, with the parent-plasma input of :mod:`core.phantoms.input_function`:
:math:`K_1` transport across the blood-brain barrier by the LAT1 carrier, :math:`k_2`
efflux, :math:`k_3` decarboxylation by aromatic amino-acid decarboxylase (AADC) to
18F-fluorodopamine (trapped in vesicles), :math:`k_4` slow loss of the trapped label,
:math:`v_B` blood volume. Units: :math:`K_1` ml/cm3/min, :math:`k_i` 1/min.

Normal tissue (population medians; each patient draws log-normal factors: a shared
transport factor, SD 10 %, on :math:`K_1` of grey, white and deep grey matter, SD 10 % on
:math:`k_2`, SD 30 % on striatal :math:`k_3`):

==============  ======  =====  ======  ======  =====  ===========================================
tissue          K1      k2     k3      k4      vB     source
==============  ======  =====  ======  ======  =====  ===========================================
caudate         0.034   0.040  0.050   0.004   0.05   Huang 1991 striatum: K1 0.031+-0.006,
putamen         0.034   0.040  0.050   0.004   0.05   k3 0.041+-0.015, k4 0.004+-0.002; Ki 0.020
grey matter     0.026   0.050  0.004   0.004   0.05   low cortical AADC; cortex ~1.1 SUV at 10-30 min
white matter    0.016   0.050  0.002   0.004   0.03   WM/GM uptake ~0.6 as in FDOPA images
CSF             0.001   0.020  0       0       0      no uptake
bone (skull)    0.008   0.040  0       0       0.02   faint
scalp, muscle   0.015   0.060  0.004   0       0.03   faint soft-tissue uptake (~0.5 SUV)
==============  ======  =====  ======  ======  =====  ===========================================

:math:`v_B`: 5 % grey, 3 % white matter (Leenders et al. 1990, cerebral blood volume
4-5 and 2-3 ml/100 g). Striatal :math:`k_2` and the cortical/white-matter values were
set (this work) so that, with the population input, the 10-30 min SUVs are about
striatum 1.9, cortex 1.1, white matter 0.7, the contrast of clinical FDOPA images.

Lesions (viable tissue; log-normal draws, median and log-SD):

===================  ============  ============  ============  =============  ==============
class                K1            VND = K1/k2   k3            k4             vB
===================  ============  ============  ============  =============  ==============
progression IDH-wt   0.120 (0.30)  0.70 (0.25)   0.020 (0.50)  0.025 (0.40)   U(0.05, 0.10)
progression IDH-mut  0.032 (0.30)  1.00 (0.30)   0.012 (0.40)  0.004 (0.60)   U(0.03, 0.06)
radionecrosis        0.028 (0.30)  0.60 (0.45)   0.018 (0.45)  0.004 (0.80)   U(0.02, 0.045)
===================  ============  ============  ============  =============  ==============

Transport in and out share the LAT1 carrier, so :math:`k_2` is drawn through the
non-displaceable distribution volume :math:`V_{ND} = K_1/k_2` rather than independently
(median :math:`k_2` 0.17, 0.032 and 0.047 /min).

* 1p/19q-codeleted (oligodendroglioma) progression: :math:`K_1` x 1.25 (higher FDOPA
  uptake in IDH-mutant, and most in codeleted, gliomas: Verger et al. 2017; Ginet et
  al. 2020).
* IDH-wildtype: high transport and fast efflux (:math:`k_2`), so the curve peaks early
  (2-5 min) and falls (washout); IDH-mutant: slow efflux and trapping, so a late peak
  (> 5.4 min in most) and a plateau. Ginet et al. (2020) found a time-to-peak >= 5.4 min
  the best single predictor of an IDH mutation (accuracy 74 %); Schiepers et al. (2007)
  found higher :math:`K_1` in high-grade tumours and a tumour peak near 15 min on
  average.
* Radionecrosis: low transport (treatment-damaged blood-brain barrier, inflammation),
  slow steady accumulation, so low tumour-to-brain ratio (TBR) and mostly an increasing
  or flat curve, with a wide efflux spread (log-SD 0.5) so that some lesions (leaky,
  inflamed) wash out like tumour; low blood volume (radiation vasculopathy; low rCBV is the MRI perfusion sign of
  necrosis). Reported FDOPA TBR thresholds for recurrence are about 1.7-2.1 with
  accuracies of 80-90 % (Herrmann et al. 2014; Zaragori et al. 2020), so the classes
  overlap: with these draws a single TBR threshold separates them in roughly three out
  of four patients.
* Aggressive sub-region (progression only, 60 % of IDH-wt and 45 % of IDH-mut): a
  high-grade focus with IDH-wildtype kinetics drawn afresh and made at least as avid
  and fast as the surrounding lesion (:math:`K_1` = max(drawn, lesion) x 1.4,
  :math:`k_2` >= 0.12, :math:`k_4` >= 0.02 /min, :math:`v_B` >= 1.3 x lesion): early
  peak and washout inside a lesion that may itself be slow, as the dynamic "hot spots"
  that guide biopsy towards the highest grade (Kunz et al. 2011 for FET).
* Necrotic core: K1 0.004, k2 0.04, k3 = k4 = 0, vB 0.005.

The spreads (log-SD 0.3 on transport) are our choice, wide enough that TBR, time to
peak and slope overlap between classes as they do clinically.

References
----------
Huang SC, Yu DC, Barrio JR, et al. J Cereb Blood Flow Metab 1991;11:898-913.
Leenders KL, Perani D, Lammertsma AA, et al. Cerebral blood flow, blood volume and
oxygen utilization. Normal values and effect of age. Brain 1990;113:27-47.
Schiepers C, Chen W, Cloughesy T, Dahlbom M, Huang SC. 18F-FDOPA kinetics in brain
tumors. J Nucl Med 2007;48:1651-1661.
Ginet M, Zaragori T, Marie PY, et al. Integration of dynamic parameters in the analysis
of 18F-FDopa PET imaging improves the prediction of molecular features of gliomas.
Eur J Nucl Med Mol Imaging 2020;47:1381-1390.
Verger A, Metellus P, Sala Q, et al. IDH mutation is paradoxically associated with
higher 18F-FDOPA PET uptake in diffuse grade II and grade III gliomas. Eur J Nucl Med
Mol Imaging 2017;44:1306-1311.
Herrmann K, Czernin J, Cloughesy T, et al. Comparison of visual and semiquantitative
analysis of 18F-FDOPA-PET/CT for recurrence detection in glioblastoma patients. Neuro
Oncol 2014;16:603-609.
Kunz M, Thon N, Eigenbrod S, et al. Hot spots in dynamic 18FET-PET delineate malignant
tumor parts within suspected WHO grade II gliomas. Neuro Oncol 2011;13:307-316.
Zaragori T, Ginet M, Marie PY, et al. Use of static and dynamic [18F]-F-DOPA PET
parameters for detecting patients with glioma recurrence or progression. EJNMMI Res
2020;10:56.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.kinetics.compartment import macro_parameters, two_tissue_tac

__all__ = [
    "KineticParameters",
    "NORMAL_TISSUE",
    "LESION_CLASSES",
    "NECROSIS",
    "sample_normal_tissue",
    "sample_lesion",
    "sample_aggressive",
    "region_tacs",
]


@dataclass(frozen=True)
class KineticParameters:
    """Two-tissue parameters: K1 (ml/cm3/min), k2, k3, k4 (1/min), vB (fraction)."""

    K1: float
    k2: float
    k3: float = 0.0
    k4: float = 0.0
    vB: float = 0.0

    def as_dict(self) -> dict[str, float]:
        d = {k: float(v) for k, v in asdict(self).items()}
        macro = macro_parameters(self.K1, self.k2, self.k3, self.k4)
        d["Ki"] = float(macro["Ki"])
        d["VND"] = float(macro["VND"])
        vt = float(macro["VT"])
        d["VT"] = vt if np.isfinite(vt) else None
        return d


NORMAL_TISSUE: dict[str, KineticParameters] = {
    "csf": KineticParameters(0.001, 0.020, 0.0, 0.0, 0.0),
    "grey_matter": KineticParameters(0.026, 0.050, 0.004, 0.004, 0.05),
    "white_matter": KineticParameters(0.016, 0.050, 0.002, 0.004, 0.03),
    "caudate": KineticParameters(0.034, 0.040, 0.050, 0.004, 0.05),
    "putamen": KineticParameters(0.034, 0.040, 0.050, 0.004, 0.05),
    "bone": KineticParameters(0.008, 0.040, 0.0, 0.0, 0.02),
    "scalp": KineticParameters(0.015, 0.060, 0.004, 0.0, 0.03),
}

#: (median, log-SD) of K1, VND = K1/k2, k3, k4 and the vB interval for each lesion class.
LESION_CLASSES = {
    "progression_idh_wildtype": ((0.120, 0.30), (0.70, 0.25), (0.020, 0.50), (0.025, 0.40), (0.05, 0.10)),
    "progression_idh_mutant": ((0.032, 0.30), (1.00, 0.30), (0.012, 0.40), (0.004, 0.60), (0.03, 0.06)),
    "radionecrosis": ((0.028, 0.30), (0.60, 0.45), (0.018, 0.45), (0.004, 0.80), (0.02, 0.045)),
}
CODELETION_K1_FACTOR = 1.25
NECROSIS = KineticParameters(0.004, 0.040, 0.0, 0.0, 0.005)


def _ln(rng: np.random.Generator, median: float, log_sd: float) -> float:
    return float(median * np.exp(rng.normal(0.0, log_sd)))


def sample_normal_tissue(rng: np.random.Generator) -> dict[str, KineticParameters]:
    """One patient's normal-tissue parameters (population values times log-normal factors)."""
    transport = float(np.exp(rng.normal(0.0, 0.10)))
    efflux = float(np.exp(rng.normal(0.0, 0.10)))
    aadc = float(np.exp(rng.normal(0.0, 0.30)))
    putamen_vs_caudate = float(np.exp(rng.normal(0.0, 0.08)))
    out = {}
    for name, p in NORMAL_TISSUE.items():
        if name in ("grey_matter", "white_matter", "caudate", "putamen"):
            k3 = p.k3 * (aadc * (putamen_vs_caudate if name == "putamen" else 1.0)
                         if name in ("caudate", "putamen") else 1.0)
            out[name] = KineticParameters(p.K1 * transport, p.k2 * efflux, k3, p.k4, p.vB)
        else:
            out[name] = p
    return out


def sample_lesion(rng: np.random.Generator, label: str, idh: str, codeleted: bool) -> KineticParameters:
    """Viable-lesion parameters for a class (see the module table)."""
    key = "radionecrosis" if label == "radionecrosis" else f"progression_idh_{idh}"
    (k1m, k1s), (vm, vs), (k3m, k3s), (k4m, k4s), (vb_lo, vb_hi) = LESION_CLASSES[key]
    K1 = _ln(rng, k1m, k1s)
    k2 = K1 / _ln(rng, vm, vs)
    if label == "progression" and codeleted:
        K1 *= CODELETION_K1_FACTOR  # more carrier: influx and distribution volume both rise
    return KineticParameters(K1, k2, _ln(rng, k3m, k3s), _ln(rng, k4m, k4s), float(rng.uniform(vb_lo, vb_hi)))


def sample_aggressive(rng: np.random.Generator, lesion: KineticParameters) -> KineticParameters:
    """Aggressive sub-region: a high-grade (IDH-wildtype-like) focus inside the lesion.

    Draws a parameter set from the IDH-wildtype progression class and makes it at least as
    avid and fast as the surrounding lesion: :math:`K_1` = max(drawn, lesion) x 1.4
    (log-SD 0.15), :math:`k_2` >= 0.12 /min, :math:`k_4` >= 0.02 /min,
    :math:`v_B` >= 1.3 x the lesion's (at most 0.15).
    """
    (k1m, k1s), (vm, vs), (k3m, k3s), (k4m, k4s), (vb_lo, vb_hi) = LESION_CLASSES["progression_idh_wildtype"]
    drawn = _ln(rng, k1m, k1s)
    k2 = max(drawn / _ln(rng, vm, vs), 0.12)
    K1 = max(drawn, lesion.K1) * _ln(rng, 1.4, 0.15)
    k3 = _ln(rng, k3m, k3s)
    k4 = max(_ln(rng, k4m, k4s), 0.02)
    vB = min(max(float(rng.uniform(vb_lo, vb_hi)), 1.3 * lesion.vB), 0.15)
    return KineticParameters(K1, k2, k3, k4, vB)


def region_tacs(params: dict[str, KineticParameters], time_min, plasma, blood, frame_start_min,
                frame_end_min) -> dict[str, np.ndarray]:
    """Frame-averaged PET curves (unit of ``plasma``) of every region, in one vectorised call."""
    names = list(params)
    arr = {k: np.array([getattr(params[n], k) for n in names]) for k in ("K1", "k2", "k3", "k4", "vB")}
    tacs = two_tissue_tac(time_min, plasma, arr["K1"], arr["k2"], arr["k3"], arr["k4"], vB=arr["vB"],
                          blood=blood, frame_start_min=frame_start_min, frame_end_min=frame_end_min)
    return {n: tacs[i] for i, n in enumerate(names)}
