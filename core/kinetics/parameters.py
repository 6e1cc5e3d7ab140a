r"""Guideline static and dynamic parameters of amino-acid PET of gliomas ([18F]FDOPA, [18F]FET).

What is computed
----------------
*Static* parameters come from the duration-weighted mean image over the tracer's static
window (20-40 min p.i. for FET, 10-30 min for FDOPA, :data:`PROTOCOLS`):

* SUVmax, SUVmean of the tumour mask; SUVpeak, the highest mean of a 1 ml sphere
  centred on a tumour voxel (PERCIST-style, Wahl et al. 2009; Lodge et al. 2012);
* the background mean (a mask the caller draws, e.g. the contralateral mirror region or a
  crescent in the healthy hemisphere), and the tumour-to-background ratios
  :math:`\mathrm{TBR_{max}} = \mathrm{SUV_{max}}/\overline{\mathrm{SUV}}_\mathrm{bg}`,
  :math:`\mathrm{TBR_{mean}} = \mathrm{SUV_{mean}}/\overline{\mathrm{SUV}}_\mathrm{bg}`;
* the biological tumour volume (BTV, ml): voxels with TBR at or above a threshold (1.6 for
  FET, Pauleit et al. 2005; 2.0 for FDOPA, Pafundi et al. 2013), inside a search region
  (the tumour mask dilated by a margin in mm) and connected to the tumour.

*Dynamic* parameters work on any array of curves of shape ``(..., T)`` with frame times
``frame_start_min``/``frame_end_min`` of shape ``(T,)``, so the same function gives an ROI
value (shape ``(T,)``) and a voxel map (shape ``(N, T)`` or ``(I, J, K, T)``):

* the window mean :math:`\bar C_W = \sum_{f \in W} \Delta t_f C_f / \sum_{f \in W} \Delta t_f`
  over the frames lying wholly in a window :math:`W`;
* the time to peak, the mid-time of the frame with the highest value;
* the late slope, the least-squares slope of :math:`C_f` against the frame mid-times of the
  frames in the slope window, per hour (SUV/h for SUV curves);
* the early/late ratio :math:`\bar C_\mathrm{early} / \bar C_\mathrm{late}`;
* the curve pattern, from the slope relative to the mean uptake of the slope window,
  :math:`r = \mathrm{slope}/\bar C` (1/h): increasing (:math:`r > \tau`), plateau
  (:math:`|r| \le \tau`), decreasing (:math:`r < -\tau`); :math:`\tau = 0.15` /h, i.e. a 5 %
  change of the mean over a 20 min window (this work). The three classes follow the
  descriptive FET curve types I (increasing), II (peak then plateau) and III (early peak then
  decrease) of the literature (types II/III were more frequent in early progression than in
  pseudoprogression, Galldiks et al. 2015), but are defined here by the slope alone.

:func:`reading` turns the parameters into plain sentences, each against a published
cut-off with its source (:class:`Cutoff`). The table of sources, with what was and was not
verified, is in ``core/kinetics/README.md``.

References
----------
Law I, Albert NL, Arbizu J, et al. Joint EANM/EANO/RANO practice guidelines/SNMMI procedure
standards for imaging of gliomas using PET with radiolabelled amino acids and [18F]FDG:
version 1.0. Eur J Nucl Med Mol Imaging 2019;46:540-557.
Galldiks N, Stoffels G, Filss C, et al. The use of dynamic O-(2-18F-fluoroethyl)-L-tyrosine
PET in the diagnosis of patients with progressive and recurrent glioma. Neuro Oncol
2015;17:1293-1300.
Galldiks N, et al. Diagnosis of pseudoprogression in patients with glioblastoma using
O-(2-[18F]fluoroethyl)-L-tyrosine PET. Eur J Nucl Med Mol Imaging 2015 (PMID 25411133).
Pauleit D, et al. O-(2-[18F]fluoroethyl)-L-tyrosine PET combined with
MRI improves the diagnostic assessment of cerebral gliomas. Brain 2005;128:678-687.
Pafundi DH, et al. Biopsy validation of 18F-DOPA PET and
biodistribution in gliomas for neurosurgical planning and radiotherapy target delineation.
Neuro Oncol 2013;15:1058-1067.
Herrmann K, et al. Comparison of visual and semiquantitative analysis
of 18F-FDOPA-PET/CT for recurrence detection in glioblastoma patients. Neuro Oncol
2014;16:603-609.
Ginet M, et al. Integration of dynamic parameters in the analysis of
18F-FDopa PET imaging improves the prediction of molecular features of gliomas. Eur J Nucl
Med Mol Imaging 2020;47:1381 (doi:10.1007/s00259-019-04509-y).
Wahl RL, Jacene H, Kasamon Y, Lodge MA. From RECIST to PERCIST. J Nucl Med 2009;50 Suppl
1:122S-150S. Lodge MA, Chaudhry MA, Wahl RL. Noise considerations for PET quantification
using maximum and peak standardized uptake value. J Nucl Med 2012;53:1041-1047.

Examples
--------
>>> import numpy as np
>>> fs = np.array([0.0, 10.0, 20.0, 30.0]); fe = fs + 10.0
>>> tac = np.array([1.0, 2.0, 3.0, 4.0])                    # SUV, +1 SUV per 10 min
>>> round(float(late_slope(tac, fs, fe, (0.0, 40.0))), 9)   # SUV/h
6.0
>>> float(window_mean(tac, fs, fe, (20.0, 40.0)))
3.5
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from core.errors import InputError, InvalidVoxelError, MaskError, TimingError
from core.imaging.validate import check_mask
from core.imaging.volume import DynamicVolume, Volume
from core.kinetics.tac import PEAK_VOLUME_ML, extract_tac

__all__ = [
    "Cutoff",
    "TracerProtocol",
    "PROTOCOLS",
    "protocol_for",
    "PATTERN_UNDETERMINED",
    "PATTERN_INCREASING",
    "PATTERN_PLATEAU",
    "PATTERN_DECREASING",
    "PATTERN_NAMES",
    "window_mean",
    "time_to_peak",
    "late_slope",
    "early_late_ratio",
    "curve_pattern",
    "dynamic_parameters",
    "static_parameters",
    "parametric_maps",
    "Reading",
    "reading",
]

#: Frames may reach this far (min) past a window edge and still count as inside (ms rounding).
_WINDOW_TOL_MIN = 1e-6

PATTERN_UNDETERMINED = 0
PATTERN_INCREASING = 1
PATTERN_PLATEAU = 2
PATTERN_DECREASING = 3
#: Names of the curve-pattern codes returned by :func:`curve_pattern`.
PATTERN_NAMES = {
    PATTERN_UNDETERMINED: "undetermined",
    PATTERN_INCREASING: "increasing",
    PATTERN_PLATEAU: "plateau",
    PATTERN_DECREASING: "decreasing",
}


# ----------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Cutoff:
    """A published cut-off for one parameter.

    Attributes
    ----------
    parameter : str
        Key of the parameter in the dictionaries of this module: ``"tbr_max"``,
        ``"tbr_mean"``, ``"ttp_min"``, ``"slope_per_h"``.
    threshold : float
        In the parameter's unit (ratio, min, SUV/h).
    direction : {">=", "<"}
        ``">="``: values at or above the threshold favour ``positive``; ``"<"``: values
        below it do.
    meaning : str
        What the cut-off separated in its study, as a phrase that follows "the cut-off that",
        e.g. ``"separated tumour progression from treatment-related changes"``.
    source : str
        Full reference.
    positive, negative : str
        What a value on the positive / negative side favours.
    short : str
        Short citation for sentences, e.g. ``"Galldiks 2015"``.
    note : str
        Caveat, e.g. a mapping that is this project's choice.
    """

    parameter: str
    threshold: float
    direction: str
    meaning: str
    source: str
    positive: str = ""
    negative: str = ""
    short: str = ""
    note: str = ""

    def __post_init__(self):
        if self.direction not in (">=", "<"):
            raise InputError(f"cut-off direction must be '>=' or '<', got {self.direction!r}")

    def is_positive(self, value: float) -> bool:
        """Whether ``value`` lies on the side that favours :attr:`positive`."""
        return bool(value >= self.threshold) if self.direction == ">=" else bool(value < self.threshold)


@dataclass(frozen=True)
class TracerProtocol:
    """Windows, thresholds and cut-offs of one amino-acid tracer.

    Attributes
    ----------
    name : str
        ``"FDOPA"`` or ``"FET"``.
    display_name : str
        For sentences, e.g. ``"[18F]FET"``.
    static_window_min : (float, float)
        Summation window of the static image, min p.i.
    slope_window_min : (float, float)
        Window of the late slope (and of the pattern), min p.i.
    early_window_min, late_window_min : (float, float)
        Windows of the early/late ratio, min p.i.
    btv_tbr_threshold : float
        TBR at or above which a voxel belongs to the biological tumour volume.
    btv_search_margin_mm : float
        The BTV is searched within the tumour mask dilated by this margin, mm.
    pattern_slope_per_h : float
        :math:`\\tau` of the curve pattern: relative slope (fraction of the mean per hour)
        beyond which a curve is increasing or decreasing.
    hotspot_ttp_max_min : float
        Time to peak at or below which a washing-out voxel counts as a dynamic hotspot
        (:func:`core.kinetics.subregions.dynamic_hotspot`), min.
    cutoffs : tuple of Cutoff
    pattern_meaning : str
        One sentence on what the curve pattern means for this tracer.
    pattern_source : str
        Short citation of ``pattern_meaning``.
    pattern_reference : str
        Full reference of ``pattern_meaning``.
    sources : tuple of (str, str, str)
        (quantity, value, source) rows: where every number above comes from.
    aliases : tuple of str
        Normalised names that :func:`protocol_for` maps to this protocol.
    """

    name: str
    display_name: str
    static_window_min: tuple[float, float]
    slope_window_min: tuple[float, float]
    early_window_min: tuple[float, float]
    late_window_min: tuple[float, float]
    btv_tbr_threshold: float
    btv_search_margin_mm: float
    pattern_slope_per_h: float
    hotspot_ttp_max_min: float
    cutoffs: tuple[Cutoff, ...]
    pattern_meaning: str
    pattern_source: str
    pattern_reference: str
    sources: tuple[tuple[str, str, str], ...] = ()
    aliases: tuple[str, ...] = ()


_GALLDIKS_NO = ("Galldiks N, Stoffels G, Filss C, et al. The use of dynamic O-(2-18F-fluoroethyl)-L-tyrosine PET "
                "in the diagnosis of patients with progressive and recurrent glioma. Neuro Oncol 2015;17:1293-1300")
_GALLDIKS_EJ = ("Galldiks N, et al. Diagnosis of pseudoprogression in patients with glioblastoma using "
                "O-(2-[18F]fluoroethyl)-L-tyrosine PET. Eur J Nucl Med Mol Imaging 2015 (PMID 25411133)")
_PAULEIT = ("Pauleit D, et al. O-(2-[18F]fluoroethyl)-L-tyrosine PET combined with MRI improves the diagnostic "
            "assessment of cerebral gliomas. Brain 2005;128:678-687")
_HERRMANN = ("Herrmann K, et al. Comparison of visual and semiquantitative analysis of 18F-FDOPA-PET/CT for "
             "recurrence detection in glioblastoma patients. Neuro Oncol 2014;16:603-609; cut-off as tabulated by "
             "Somme F, et al. Cancer Imaging 2020;20:70, Table 3")
_GINET = ("Ginet M, et al. Integration of dynamic parameters in the analysis of 18F-FDopa PET imaging improves "
          "the prediction of molecular features of gliomas. Eur J Nucl Med Mol Imaging 2020;47:1381 "
          "(doi:10.1007/s00259-019-04509-y)")
_PAFUNDI = ("Pafundi DH, et al. Biopsy validation of 18F-DOPA PET and biodistribution in gliomas for "
            "neurosurgical planning and radiotherapy target delineation. Neuro Oncol 2013;15:1058-1067")

FET = TracerProtocol(
    name="FET",
    display_name="[18F]FET",
    static_window_min=(20.0, 40.0),
    slope_window_min=(20.0, 40.0),
    early_window_min=(5.0, 15.0),
    late_window_min=(20.0, 40.0),
    btv_tbr_threshold=1.6,
    btv_search_margin_mm=10.0,
    pattern_slope_per_h=0.15,
    hotspot_ttp_max_min=20.0,
    cutoffs=(
        Cutoff("tbr_max", 2.3, ">=",
               "separated early tumour progression from pseudoprogression within 12 weeks after "
               "chemoradiation of glioblastoma (accuracy 96 %)",
               _GALLDIKS_EJ, positive="early tumour progression", negative="pseudoprogression",
               short="Galldiks, EJNMMI 2015"),
        Cutoff("tbr_mean", 2.0, ">=",
               "separated progressive or recurrent glioma from treatment-related changes (accuracy 93 % "
               "with a time to peak below 45 min as the alternative criterion)",
               _GALLDIKS_NO, positive="tumour progression or recurrence", negative="treatment-related changes",
               short="Galldiks, Neuro Oncol 2015"),
        Cutoff("ttp_min", 45.0, "<",
               "separated progressive or recurrent glioma from treatment-related changes (accuracy 93 % "
               "with a TBRmean of 2.0 or more as the alternative criterion)",
               _GALLDIKS_NO, positive="tumour progression or recurrence", negative="treatment-related changes",
               short="Galldiks, Neuro Oncol 2015",
               note="needs a dynamic scan that lasts beyond 45 min"),
    ),
    pattern_meaning=("Plateau or decreasing curves (types II/III) were more frequent in early progression than "
                     "in pseudoprogression of glioblastoma"),
    pattern_source="Galldiks, EJNMMI 2015",
    pattern_reference=_GALLDIKS_EJ,
    sources=(
        ("static window", "20-40 min p.i.", "Galldiks, Neuro Oncol 2015 (TBRs 20-40 min p.i.)"),
        ("slope window", "20-40 min p.i.", "this work (the static window)"),
        ("early / late windows", "5-15 / 20-40 min p.i.", "this work"),
        ("BTV threshold", "TBR >= 1.6", "Pauleit et al., Brain 2005 (biopsy-controlled)"),
        ("BTV search margin", "10 mm around the tumour mask", "this work"),
        ("pattern threshold", "|slope| / mean > 0.15 /h", "this work"),
        ("hotspot time to peak", "<= 20 min", "this work (high-grade FET curves peak early, then fall)"),
    ),
    aliases=("fet", "fluoroethyltyrosine", "fluoroethylltyrosine", "o2fluoroethyltyrosine",
             "o2fluoroethylltyrosine"),
)

FDOPA = TracerProtocol(
    name="FDOPA",
    display_name="[18F]FDOPA",
    static_window_min=(10.0, 30.0),
    slope_window_min=(10.0, 30.0),
    early_window_min=(5.0, 10.0),
    late_window_min=(20.0, 30.0),
    btv_tbr_threshold=2.0,
    btv_search_margin_mm=10.0,
    pattern_slope_per_h=0.15,
    hotspot_ttp_max_min=5.4,
    cutoffs=(
        Cutoff("tbr_max", 1.81, ">=",
               "detected glioblastoma recurrence in 110 patients (accuracy 82 %)",
               _HERRMANN, positive="recurrence", negative="treatment-related changes",
               short="Herrmann 2014",
               note="the secondary table gives 'T/N > 1.81' without saying max or mean; applied to TBRmax "
                    "(this work)"),
        Cutoff("ttp_min", 5.4, ">=",
               "predicted IDH mutation in newly diagnosed gliomas (accuracy 74 %)",
               _GINET, positive="an IDH-mutant glioma", negative="an IDH-wildtype glioma", short="Ginet 2020",
               note="established in newly diagnosed, untreated gliomas"),
        Cutoff("ttp_min", 6.9, ">=",
               "predicted 1p/19q codeletion in newly diagnosed gliomas (accuracy 69 %)",
               _GINET, positive="1p/19q codeletion", negative="no 1p/19q codeletion", short="Ginet 2020",
               note="established in newly diagnosed, untreated gliomas"),
    ),
    pattern_meaning=("Time to peak and curve slopes separated the molecular types of newly diagnosed gliomas; "
                     "IDH-wildtype gliomas peaked earlier"),
    pattern_source="Ginet 2020",
    pattern_reference=_GINET,
    sources=(
        ("static window", "10-30 min p.i.", "this work (whole frames of the Nancy schedule used by core.phantoms; "
                                            "the guideline text was not verified here)"),
        ("slope window", "10-30 min p.i.", "this work (the static window)"),
        ("early / late windows", "5-10 / 20-30 min p.i.", "this work"),
        ("BTV threshold", "TBR >= 2.0", "Pafundi et al. 2013 (T/N > 2.0 marked high-grade disease in biopsies)"),
        ("BTV search margin", "10 mm around the tumour mask", "this work"),
        ("pattern threshold", "|slope| / mean > 0.15 /h", "this work"),
        ("hotspot time to peak", "<= 5.4 min", "Ginet 2020 cut-off (ROI level), applied voxel-wise (this work)"),
    ),
    aliases=("fdopa", "dopa", "fluorodopa", "fluorodihydroxyphenylalanine", "6fluorodopa", "6fluoroldopa",
             "ldopa", "fluoroldopa"),
)

#: Protocols by name.
PROTOCOLS: dict[str, TracerProtocol] = {"FDOPA": FDOPA, "FET": FET}


def _normalise_tracer(name: str) -> str:
    s = name.strip().lower()
    s = re.sub(r"[\[\]\(\)\s_\-,.]", "", s)
    s = re.sub(r"^18f", "", s)
    s = re.sub(r"^f18", "", s)
    s = s.replace("18f", "")
    return s


def protocol_for(tracer: "str | TracerProtocol | None") -> TracerProtocol:
    """The :class:`TracerProtocol` of a tracer name.

    Parameters
    ----------
    tracer : str or TracerProtocol or None
        A name such as ``"18F-FDOPA"``, ``"FDOPA"``, ``"fluorodopa"``, ``"[18F]FET"``,
        ``"FET"``; a protocol is returned as it is.

    Raises
    ------
    InputError
        When the tracer is missing or unknown (the message lists the known tracers).

    Examples
    --------
    >>> protocol_for("18F-FDOPA").static_window_min
    (10.0, 30.0)
    >>> protocol_for("[18F]FET").btv_tbr_threshold
    1.6
    """
    if isinstance(tracer, TracerProtocol):
        return tracer
    known = ", ".join(PROTOCOLS)
    if tracer is None or not str(tracer).strip():
        raise InputError("no tracer was given, so the guideline windows and cut-offs are unknown",
                         fix=f"Name the tracer ({known}), for example tracer='FDOPA', or record it in the PET "
                             f"series (meta['tracer']).")
    key = _normalise_tracer(str(tracer))
    for proto in PROTOCOLS.values():
        if key in proto.aliases or key == proto.name.lower():
            return proto
    raise InputError(f"the tracer {tracer!r} has no guideline protocol here",
                     fix=f"Use one of {known} (for example '18F-FDOPA', 'fluorodopa', '18F-FET'); other tracers "
                         f"(MET, FDG) are not supported by these parameters.")


# ----------------------------------------------------------------------- checks


def _check_frames(frame_start_min, frame_end_min) -> tuple[np.ndarray, np.ndarray]:
    fs = np.atleast_1d(np.asarray(frame_start_min, dtype=float))
    fe = np.atleast_1d(np.asarray(frame_end_min, dtype=float))
    if fs.ndim != 1 or fs.shape != fe.shape or fs.size == 0:
        raise TimingError(f"frame starts (shape {fs.shape}) and ends (shape {fe.shape}) must be 1D arrays of the "
                          f"same, non-zero length",
                          fix="Give one start and one end time (minutes) per frame.")
    if not (np.all(np.isfinite(fs)) and np.all(np.isfinite(fe))):
        raise TimingError("frame times hold NaN or infinite values", fix="Give finite frame times in minutes.")
    bad = np.flatnonzero((fe <= fs) | (fs < 0))
    if bad.size:
        j = int(bad[0])
        raise TimingError(f"frame {j + 1} runs from {fs[j]:g} to {fe[j]:g} min: it must start at or after "
                          f"injection and end after it starts",
                          fix="Check the frame start times and durations (minutes, not seconds).")
    back = np.flatnonzero(np.diff(fs) <= 0)
    if back.size:
        j = int(back[0])
        raise TimingError(f"frames are out of order: frame {j + 2} starts at {fs[j + 1]:g} min, not after frame "
                          f"{j + 1} at {fs[j]:g} min",
                          fix="List the frames in acquisition order.")
    over = np.flatnonzero(fs[1:] < fe[:-1] - 1e-4)
    if over.size:
        j = int(over[0])
        raise TimingError(f"frames overlap: frame {j + 1} ({fs[j]:g}-{fe[j]:g} min) runs past the start of frame "
                          f"{j + 2} at {fs[j + 1]:g} min",
                          fix="Check the frame start times and durations (minutes, not seconds).")
    return fs, fe


def _check_curves(values, n_frames: int, name: str = "values") -> np.ndarray:
    v = np.asarray(values)
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer) or v.dtype == bool):
        raise InputError(f"{name} must be numbers, got type {v.dtype}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(float)
    if v.ndim == 0 or v.shape[-1] != n_frames:
        raise TimingError(f"{name} have {v.shape[-1] if v.ndim else 0} time points on their last axis but the "
                          f"timing lists {n_frames} frames (shape {v.shape})",
                          fix="Give one value per frame on the last axis, in frame order.")
    n_bad = int(v.size - np.count_nonzero(np.isfinite(v)))
    if n_bad:
        raise InvalidVoxelError(f"{n_bad} of {v.size} {name} are NaN or infinite",
                                fix="Remove or re-export the image; TheraBoard does not guess missing values.")
    return v


def _window_frames(fs, fe, window_min, name: str) -> np.ndarray:
    try:
        a, b = (float(x) for x in window_min)
    except (TypeError, ValueError):
        raise InputError(f"the {name} window must be (start, end) in minutes, got {window_min!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and b > a):
        raise TimingError(f"the {name} window {a:g}-{b:g} min is empty or not finite",
                          fix="Give the window as (start, end) minutes after injection with end > start.")
    sel = (fs >= a - _WINDOW_TOL_MIN) & (fe <= b + _WINDOW_TOL_MIN)
    if not sel.any():
        raise TimingError(
            f"no frame lies wholly within the {name} window {a:g}-{b:g} min (the frames span "
            f"{fs[0]:g}-{fe[-1]:g} min)",
            fix="Choose a window that covers at least one whole frame, or re-bin the dynamic study so that "
                "frame boundaries fall on the window edges.")
    return sel


def _mid(fs, fe) -> np.ndarray:
    return 0.5 * (fs + fe)


# ----------------------------------------------------------------------- curve functions


def window_mean(values, frame_start_min, frame_end_min, window_min, *, name: str = "requested") -> np.ndarray:
    r"""Duration-weighted mean of curves over the frames lying wholly in a window.

    .. math::

        \bar C_W = \frac{\sum_{f \in W} (t^e_f - t^s_f)\, C_f}{\sum_{f \in W} (t^e_f - t^s_f)},
        \qquad W = \{f : t^s_f \ge a,\ t^e_f \le b\}

    This is the "summed" static image of guideline practice (as
    :meth:`core.imaging.volume.DynamicVolume.sum_frames`); frames that straddle a window edge
    are left out.

    Parameters
    ----------
    values : array-like of shape (..., T)
        Curves (any unit), frames on the last axis.
    frame_start_min, frame_end_min : array-like of shape (T,)
        Frame times, minutes after injection.
    window_min : (float, float)
        Window ``(a, b)``, minutes after injection.
    name : str, default="requested"
        Name of the window in error messages (``"static"``, ``"early"`` ...).

    Returns
    -------
    ndarray of shape (...)
        In the unit of ``values``.

    Raises
    ------
    TimingError
        Bad frame times, or no frame lies wholly in the window (the message gives the window
        and the span of the frames).
    InvalidVoxelError
        NaN or infinite values.

    Examples
    --------
    >>> round(float(window_mean([1.0, 2.0, 4.0], [0, 1, 2], [1, 2, 4], (1.0, 4.0))), 6)   # (2*1 + 4*2) / 3
    3.333333
    """
    fs, fe = _check_frames(frame_start_min, frame_end_min)
    v = _check_curves(values, fs.size)
    sel = _window_frames(fs, fe, window_min, name)
    w = (fe - fs)[sel]
    return np.tensordot(v[..., sel], w / w.sum(), axes=([-1], [0]))


def time_to_peak(values, frame_start_min, frame_end_min) -> np.ndarray:
    r"""Time to peak: mid-time of the frame with the highest value, minutes after injection.

    .. math::

        \mathrm{TTP} = \tfrac12\left(t^s_{f^*} + t^e_{f^*}\right), \qquad f^* = \arg\max_f C_f

    (the first such frame when several share the maximum). Alternatives in use, not
    implemented: the frame *end* time, a peak from a smoothed or fitted curve, or the
    time from the start of the acquisition; all differ by up to a frame length, so
    compare TTPs only between studies with similar framing.

    Parameters
    ----------
    values : array-like of shape (..., T)
    frame_start_min, frame_end_min : array-like of shape (T,)

    Returns
    -------
    ndarray of shape (...)
        Minutes after injection.

    References
    ----------
    Galldiks N, et al. Neuro Oncol 2015;17:1293-1300. Ginet M, et al. Eur J Nucl Med Mol
    Imaging 2020;47:1381.

    Examples
    --------
    >>> float(time_to_peak([1.0, 5.0, 3.0], [0, 1, 2], [1, 2, 4]))
    1.5
    """
    fs, fe = _check_frames(frame_start_min, frame_end_min)
    v = _check_curves(values, fs.size)
    return _mid(fs, fe)[np.argmax(v, axis=-1)]


_PER = {"h": 60.0, "min": 1.0}


def late_slope(values, frame_start_min, frame_end_min, window_min, *, per: str = "h",
               name: str = "slope") -> np.ndarray:
    r"""Least-squares slope of curves against frame mid-times within a window.

    .. math::

        s = u \cdot \frac{\sum_{f \in W} (\tau_f - \bar\tau)\, C_f}{\sum_{f \in W} (\tau_f - \bar\tau)^2},
        \qquad \tau_f = \tfrac12 (t^s_f + t^e_f)

    with :math:`u = 60` for a slope per hour (``per="h"``) and 1 per minute. The frames
    are not weighted by duration (ordinary least squares, as in the slope of the FET
    literature; noise differences between frames are ignored).

    Parameters
    ----------
    values : array-like of shape (..., T)
        Curves, e.g. SUV (then the slope is in SUV/h).
    frame_start_min, frame_end_min : array-like of shape (T,)
    window_min : (float, float)
        Minutes after injection; at least two whole frames must lie in it.
    per : {"h", "min"}, default="h"
    name : str, default="slope"
        Name of the window in error messages.

    Returns
    -------
    ndarray of shape (...)
        Unit of ``values`` per hour (or per minute).

    Raises
    ------
    TimingError
        Fewer than two frames in the window.

    Examples
    --------
    >>> fs = [0.0, 10.0, 20.0]; fe = [10.0, 20.0, 30.0]
    >>> round(float(late_slope([2.0, 1.5, 1.0], fs, fe, (0.0, 30.0))), 9)   # -0.5 per 10 min
    -3.0
    """
    if per not in _PER:
        raise InputError(f"per must be 'h' or 'min', got {per!r}")
    fs, fe = _check_frames(frame_start_min, frame_end_min)
    v = _check_curves(values, fs.size)
    sel = _window_frames(fs, fe, window_min, name)
    if sel.sum() < 2:
        a, b = window_min
        raise TimingError(f"a slope needs at least two frames, but only {int(sel.sum())} lies wholly within the "
                          f"{name} window {a:g}-{b:g} min (the frames span {fs[0]:g}-{fe[-1]:g} min)",
                          fix="Widen the window or use a study with shorter frames.")
    x = _mid(fs, fe)[sel]
    xc = x - x.mean()
    return _PER[per] * np.tensordot(v[..., sel], xc / float(xc @ xc), axes=([-1], [0]))


def early_late_ratio(values, frame_start_min, frame_end_min, early_min, late_min) -> np.ndarray:
    r"""Ratio of the early to the late window mean, :math:`\bar C_\mathrm{early}/\bar C_\mathrm{late}`.

    Greater than 1 for curves that peak early and wash out. NaN where the late mean is not
    positive.

    Parameters
    ----------
    values : array-like of shape (..., T)
    frame_start_min, frame_end_min : array-like of shape (T,)
    early_min, late_min : (float, float)
        Windows, minutes after injection (see :func:`window_mean`).

    Returns
    -------
    ndarray of shape (...)
        Unitless.

    Examples
    --------
    >>> float(early_late_ratio([4.0, 2.0], [0, 10], [10, 20], (0, 10), (10, 20)))
    2.0
    """
    early = window_mean(values, frame_start_min, frame_end_min, early_min, name="early")
    late = window_mean(values, frame_start_min, frame_end_min, late_min, name="late")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(late > 0, early / np.where(late > 0, late, 1.0), np.nan)


def _relative_slope(values, fs, fe, protocol: TracerProtocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    slope = late_slope(values, fs, fe, protocol.slope_window_min, per="h")
    mean = window_mean(values, fs, fe, protocol.slope_window_min, name="slope")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mean > 0, slope / np.where(mean > 0, mean, 1.0), np.nan)
    return slope, mean, rel


def _pattern_codes(rel: np.ndarray, tau: float) -> np.ndarray:
    codes = np.full(np.shape(rel), PATTERN_PLATEAU, dtype=np.int8)
    codes[rel > tau] = PATTERN_INCREASING
    codes[rel < -tau] = PATTERN_DECREASING
    codes[~np.isfinite(rel)] = PATTERN_UNDETERMINED
    return codes


def curve_pattern(values, frame_start_min, frame_end_min, protocol: "TracerProtocol | str") -> np.ndarray:
    r"""Curve pattern codes: 1 increasing, 2 plateau, 3 decreasing (0 undetermined).

    With the slope :math:`s` (per hour) and mean :math:`\bar C` over the protocol's slope
    window, :math:`r = s / \bar C`:

    .. math::

        \text{pattern} = \begin{cases} 1 \ \text{(increasing)} & r > \tau \\
        2 \ \text{(plateau)} & |r| \le \tau \\ 3 \ \text{(decreasing)} & r < -\tau \end{cases}

    and 0 where :math:`\bar C \le 0`. :math:`\tau` is
    :attr:`TracerProtocol.pattern_slope_per_h` (0.15 /h: a 5 % change of the mean over a
    20 min window; this work). The codes follow the order of the descriptive FET curve
    types I (steady increase), II (peak then plateau) and III (early peak then decrease)
    (Galldiks et al. 2015), but are defined by the late slope only; names are in
    :data:`PATTERN_NAMES`.

    Parameters
    ----------
    values : array-like of shape (..., T)
    frame_start_min, frame_end_min : array-like of shape (T,)
    protocol : TracerProtocol or str

    Returns
    -------
    ndarray of int8, shape (...)

    Examples
    --------
    >>> fs = np.arange(0.0, 40.0, 5.0); fe = fs + 5.0
    >>> int(curve_pattern(1.0 + 0.05 * fs, fs, fe, "FET"))       # rising
    1
    >>> int(curve_pattern(np.full(8, 2.0), fs, fe, "FET"))        # flat
    2
    """
    protocol = protocol_for(protocol)
    _, _, rel = _relative_slope(values, frame_start_min, frame_end_min, protocol)
    return _pattern_codes(rel, protocol.pattern_slope_per_h)


def dynamic_parameters(values, frame_start_min, frame_end_min,
                       protocol: "TracerProtocol | str") -> dict[str, np.ndarray]:
    """All dynamic parameters of curves of shape ``(..., T)``.

    Parameters
    ----------
    values : array-like of shape (..., T)
        Curves, SUV (slopes in SUV/h) or Bq/ml (Bq/ml/h).
    frame_start_min, frame_end_min : array-like of shape (T,)
    protocol : TracerProtocol or str

    Returns
    -------
    dict of str to ndarray of shape (...)
        ``static_mean`` (static-window mean), ``ttp_min``, ``slope_per_h`` (slope window),
        ``relative_slope_per_h`` (slope / slope-window mean, 1/h), ``early_late_ratio``,
        ``pattern`` (codes of :func:`curve_pattern`), ``ok`` (bool: the pattern and ratio are
        defined, i.e. the means are positive) and ``scan_end_min`` (scalar: end of the last
        frame; a time-to-peak cut-off beyond it cannot be applied).

    Examples
    --------
    >>> fs = np.arange(0.0, 30.0, 2.0); fe = fs + 2.0
    >>> p = dynamic_parameters(np.exp(-fs / 30.0), fs, fe, "FDOPA")
    >>> float(p["ttp_min"]), int(p["pattern"])
    (1.0, 3)
    """
    protocol = protocol_for(protocol)
    fs, fe = _check_frames(frame_start_min, frame_end_min)
    v = _check_curves(values, fs.size)
    slope, mean, rel = _relative_slope(v, fs, fe, protocol)
    ratio = early_late_ratio(v, fs, fe, protocol.early_window_min, protocol.late_window_min)
    return {
        "static_mean": window_mean(v, fs, fe, protocol.static_window_min, name="static"),
        "ttp_min": time_to_peak(v, fs, fe),
        "slope_per_h": slope,
        "relative_slope_per_h": rel,
        "early_late_ratio": ratio,
        "pattern": _pattern_codes(rel, protocol.pattern_slope_per_h),
        "ok": np.isfinite(rel) & np.isfinite(ratio),
        "scan_end_min": np.asarray(float(fe[-1])),
    }


# ----------------------------------------------------------------------- static parameters


def _as_dynamic(pet) -> DynamicVolume:
    if not isinstance(pet, DynamicVolume):
        raise TimingError(f"guideline parameters need a dynamic PET with frame timing, got a "
                          f"{type(pet).__name__}", path=getattr(pet, "source", None),
                          fix="Load the dynamic (4D) series with its frame timing (PET-BIDS sidecar or DICOM).")
    return pet


def _unit_factor(pet: Volume) -> tuple[float, str, str | None]:
    """Factor to SUV and the unit; (1, 'Bq/ml', reason) when SUV is unavailable."""
    if pet.suv_available and pet.units == "Bq/ml":
        return float(pet.suv_factor), "SUV", None
    reason = pet.suv_unavailable_reason or f"the image is in {pet.units}, not Bq/ml"
    return 1.0, pet.units, reason


def _static_peak(static: np.ndarray, mask: np.ndarray, pet: DynamicVolume, start_min: float, end_min: float,
                 unit: str) -> float:
    """SUVpeak of the static image: the 1 ml sphere peak of :func:`core.kinetics.tac.extract_tac`
    applied to a one-frame image holding the static window."""
    one_frame = DynamicVolume(static[..., None], np.asarray(pet.affine, float), "PT", unit, source=pet.source,
                              frame_start_s=np.array([start_min * 60.0]),
                              frame_duration_s=np.array([(end_min - start_min) * 60.0]))
    return float(extract_tac(one_frame, mask, "tumour", peak_volume_ml=PEAK_VOLUME_ML).peak[0])


def _search_region(tumour: np.ndarray, spacing_mm, margin_mm: float) -> np.ndarray:
    """Tumour mask dilated by ``margin_mm`` (Euclidean, in mm), within the image."""
    if margin_mm <= 0:
        return tumour.copy()
    outside = ~tumour
    dist = ndimage.distance_transform_edt(outside, sampling=spacing_mm)
    return dist <= margin_mm + 1e-9


def _btv(tbr: np.ndarray, tumour: np.ndarray, spacing_mm, threshold: float, margin_mm: float) -> np.ndarray:
    """Voxels with TBR >= threshold in the search region, connected (26-neighbourhood) to the tumour."""
    hot = (tbr >= threshold) & _search_region(tumour, spacing_mm, margin_mm)
    labels, n = ndimage.label(hot, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return hot
    keep = np.unique(labels[tumour & hot])
    keep = keep[keep > 0]
    return np.isin(labels, keep)


def _voxel_ml(vol: Volume) -> float:
    return abs(float(np.linalg.det(np.asarray(vol.affine, float)[:3, :3]))) / 1000.0


def static_parameters(pet: DynamicVolume, tumour, background, protocol: "TracerProtocol | str", *,
                      btv_threshold: float | None = None, btv_margin_mm: float | None = None) -> dict[str, Any]:
    r"""Static guideline parameters of a tumour from a dynamic PET and two masks.

    The static image :math:`S` is the duration-weighted mean over the protocol's static
    window (:func:`window_mean`), in SUVbw when the dose record allows it, else in Bq/ml
    (``unit`` says which; the TBRs do not depend on it). With the tumour mask :math:`T` and
    the background mask :math:`B`:

    .. math::

        \mathrm{TBR_{max}} = \frac{\max_T S}{\bar S_B},\quad
        \mathrm{TBR_{mean}} = \frac{\bar S_T}{\bar S_B},\quad
        \mathrm{TBR_{peak}} = \frac{S_\mathrm{peak}}{\bar S_B},\quad
        \mathrm{BTV} = V_\mathrm{vox}\,\#\{x \in C : S(x)/\bar S_B \ge \theta\}

    where :math:`S_\mathrm{peak}` is the highest mean of a 1 ml sphere centred on a tumour
    voxel (PERCIST-style), and :math:`C` is the union of the connected components (26
    neighbours) of the thresholded image, within the tumour mask dilated by
    ``btv_margin_mm``, that touch the tumour mask. The threshold :math:`\theta` is 1.6 for FET
    (Pauleit et al. 2005) and 2.0 for FDOPA (Pafundi et al. 2013) unless given.

    Parameters
    ----------
    pet : DynamicVolume
        Bq/ml, frames covering the static window.
    tumour, background : Volume or ndarray of shape (I, J, K)
        Binary masks on the PET grid. The background is the caller's normal-brain reference
        (e.g. the contralateral mirror of the tumour, or a crescent of grey and white matter);
        it must not overlap the tumour.
    protocol : TracerProtocol or str
    btv_threshold : float, optional
        TBR threshold of the BTV; default the protocol's.
    btv_margin_mm : float, optional
        Search margin around the tumour mask, mm; default the protocol's (10 mm, this work).

    Returns
    -------
    dict
        ``unit`` (``"SUV"`` or ``"Bq/ml"``), ``uptake_max``, ``uptake_mean``, ``uptake_peak``,
        ``background_mean`` (all in ``unit``; the same values under ``suv_max``, ``suv_mean``,
        ``suv_peak``, ``background_suv_mean`` when the unit is SUV), ``tbr_max``, ``tbr_mean``,
        ``tbr_peak``, ``btv_ml``, ``btv_threshold``, ``btv_margin_mm``, ``btv_mask`` (Volume,
        uint8), ``tumour_volume_ml``, ``background_volume_ml``, ``static_window_min``,
        ``static_frames_min`` (start of the first and end of the last frame summed: less than
        the window when the scan stops early), ``peak_volume_ml``, ``tracer``,
        ``suv_unavailable_reason`` (None when SUV is given).

    Raises
    ------
    TimingError
        No frame in the static window, or ``pet`` is not dynamic.
    MaskError
        Empty, non-binary or off-grid masks; tumour and background overlap.
    InvalidVoxelError
        NaN or infinite voxels.
    InputError
        A background mean that is not positive.

    References
    ----------
    Law I, et al. Eur J Nucl Med Mol Imaging 2019;46:540-557. Pauleit D, et al. Brain
    2005;128:678-687. Pafundi DH, et al. Neuro Oncol 2013;15:1058-1067. Lodge MA, et al.
    J Nucl Med 2012;53:1041-1047 (SUVpeak sphere).

    Examples
    --------
    >>> from core.imaging.volume import DynamicVolume
    >>> data = np.ones((9, 9, 9, 2), np.float32); data[4, 4, 4] = 3.0
    >>> pet = DynamicVolume(data, np.diag([2.0, 2.0, 2.0, 1.0]), "PT", "Bq/ml",
    ...                     frame_start_s=np.array([600.0, 1200.0]), frame_duration_s=np.array([600.0, 600.0]))
    >>> t = np.zeros((9, 9, 9), bool); t[4, 4, 4] = True
    >>> b = np.zeros((9, 9, 9), bool); b[0:3, 0:3, 0:3] = True
    >>> p = static_parameters(pet, t, b, "FDOPA")
    >>> p["unit"], p["tbr_max"], round(p["btv_ml"], 3)
    ('Bq/ml', 3.0, 0.008)
    """
    protocol = protocol_for(protocol)
    pet = _as_dynamic(pet)
    tumour_m = check_mask(tumour, pet)
    background_m = check_mask(background, pet)
    t_mask = np.asarray(tumour_m.data, bool)
    b_mask = np.asarray(background_m.data, bool)
    overlap = int(np.count_nonzero(t_mask & b_mask))
    if overlap:
        raise MaskError(f"the background region overlaps the tumour in {overlap} voxels "
                        f"({overlap * _voxel_ml(pet):.2f} ml)", path=background_m.source,
                        fix="Draw the background in normal brain away from the tumour (for example the "
                            "contralateral mirror region).")
    factor, unit, reason = _unit_factor(pet)
    fs, fe = pet.frame_start_min, pet.frame_end_min
    static = window_mean(pet.data, fs, fe, protocol.static_window_min, name=f"{protocol.name} static") * factor
    used = _window_frames(fs, fe, protocol.static_window_min, "static")
    bg = float(static[b_mask].mean())
    if not bg > 0:
        raise InputError(f"the background region has a mean uptake of {bg:g} {unit}, so tumour-to-background "
                         f"ratios are undefined", path=background_m.source,
                         fix="Place the background in normal brain tissue with tracer uptake.")
    threshold = float(protocol.btv_tbr_threshold if btv_threshold is None else btv_threshold)
    margin = float(protocol.btv_search_margin_mm if btv_margin_mm is None else btv_margin_mm)
    if not (math.isfinite(threshold) and threshold > 0):
        raise InputError(f"the BTV threshold must be a positive TBR, got {btv_threshold!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise InputError(f"the BTV search margin must be >= 0 mm, got {btv_margin_mm!r}")
    tumour_values = static[t_mask]
    u_max = float(tumour_values.max())
    u_mean = float(tumour_values.mean())
    u_peak = _static_peak(static, t_mask, pet, fs[used][0], fe[used][-1], unit)
    btv = _btv(static / bg, t_mask, pet.spacing, threshold, margin)
    vox_ml = _voxel_ml(pet)
    out: dict[str, Any] = {
        "tracer": protocol.name,
        "unit": unit,
        "suv_unavailable_reason": reason,
        "static_window_min": tuple(protocol.static_window_min),
        "static_frames_min": (float(fs[used][0]), float(fe[used][-1])),
        "uptake_max": u_max,
        "uptake_mean": u_mean,
        "uptake_peak": u_peak,
        "background_mean": bg,
        "tbr_max": u_max / bg,
        "tbr_mean": u_mean / bg,
        "tbr_peak": u_peak / bg,
        "btv_ml": float(np.count_nonzero(btv) * vox_ml),
        "btv_threshold": threshold,
        "btv_margin_mm": margin,
        "btv_mask": Volume(btv.astype(np.uint8), np.asarray(pet.affine, float).copy(), "SEG", "label",
                           source=pet.source, meta={"label_name": f"BTV (TBR >= {threshold:g})",
                                                    "tracer": protocol.name}),
        "tumour_volume_ml": float(np.count_nonzero(t_mask) * vox_ml),
        "background_volume_ml": float(np.count_nonzero(b_mask) * vox_ml),
        "peak_volume_ml": PEAK_VOLUME_ML,
    }
    if unit == "SUV":
        out.update(suv_max=u_max, suv_mean=u_mean, suv_peak=u_peak, background_suv_mean=bg)
    return out


def parametric_maps(pet: DynamicVolume, region, background_mean: float,
                    protocol: "TracerProtocol | str") -> dict[str, Volume]:
    """Voxel-wise static uptake, TBR, time to peak, slope and pattern inside a region.

    Each voxel's curve goes through the same functions as an ROI curve
    (:func:`dynamic_parameters`), so a map value equals the ROI function applied to that
    voxel. Voxels outside ``region`` are NaN (pattern: 0).

    Parameters
    ----------
    pet : DynamicVolume
        Bq/ml.
    region : Volume or ndarray of shape (I, J, K)
        Binary mask on the PET grid (e.g. the tumour dilated by a few mm).
    background_mean : float
        Background static mean in the unit of the static map: SUV when the PET has a complete
        dose record, else Bq/ml (``static_parameters(...)["background_mean"]``).
    protocol : TracerProtocol or str

    Returns
    -------
    dict of str to Volume
        ``static`` (static-window mean, units ``"SUV"`` or ``"Bq/ml"``), ``tbr`` (``"ratio"``),
        ``ttp_min`` (``"min"``), ``slope_per_h`` (``"SUV/h"`` or ``"Bq/ml/h"``) and ``pattern``
        (uint8 codes of :data:`PATTERN_NAMES`, ``"label"``).

    Raises
    ------
    MaskError
        Empty, non-binary or off-grid region.
    InputError
        A background mean that is not a positive number.

    Examples
    --------
    >>> from core.imaging.volume import DynamicVolume
    >>> fs = np.arange(0.0, 1800.0, 300.0)
    >>> data = np.ones((3, 3, 3, 6), np.float32) * np.linspace(1, 2, 6, dtype=np.float32)
    >>> pet = DynamicVolume(data, np.eye(4), "PT", "Bq/ml", frame_start_s=fs, frame_duration_s=np.full(6, 300.0))
    >>> maps = parametric_maps(pet, np.ones((3, 3, 3), bool), 1.0, "FDOPA")
    >>> round(float(maps["tbr"].data[1, 1, 1]), 3), float(maps["ttp_min"].data[0, 0, 0])
    (1.7, 27.5)
    """
    protocol = protocol_for(protocol)
    pet = _as_dynamic(pet)
    region_m = check_mask(region, pet)
    try:
        bg = float(background_mean)
    except (TypeError, ValueError):
        raise InputError(f"background_mean must be a number, got {background_mean!r}") from None
    if not (math.isfinite(bg) and bg > 0):
        raise InputError(f"the background mean must be a positive number, got {background_mean!r}",
                         fix="Pass static_parameters(...)['background_mean'] (same unit as the static map).")
    mask = np.asarray(region_m.data, bool)
    factor, unit, _ = _unit_factor(pet)
    curves = np.asarray(pet.data[mask], dtype=float) * factor  # (N, T)
    params = dynamic_parameters(curves, pet.frame_start_min, pet.frame_end_min, protocol)
    affine = np.asarray(pet.affine, float).copy()
    meta = {"tracer": protocol.name, "region_voxels": int(mask.sum())}

    def as_map(values, units: str, name: str) -> Volume:
        out = np.full(mask.shape, np.nan, dtype=np.float32)
        out[mask] = values
        return Volume(out, affine, "PT", units, source=pet.source, meta={**meta, "parameter": name})

    pattern = np.zeros(mask.shape, dtype=np.uint8)
    pattern[mask] = params["pattern"]
    return {
        "static": as_map(params["static_mean"], unit, f"static mean {protocol.static_window_min} min"),
        "tbr": as_map(params["static_mean"] / bg, "ratio", "TBR"),
        "ttp_min": as_map(params["ttp_min"], "min", "time to peak"),
        "slope_per_h": as_map(params["slope_per_h"], f"{unit}/h", f"slope {protocol.slope_window_min} min"),
        "pattern": Volume(pattern, affine, "SEG", "label", source=pet.source,
                          meta={**meta, "parameter": "curve pattern", "names": dict(PATTERN_NAMES)}),
    }


# ----------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Reading:
    """One plain-language line about one parameter.

    Attributes
    ----------
    parameter : str
        Key of the parameter (``"tbr_max"``, ``"pattern"`` ...).
    value : float
    cutoff : Cutoff or None
        The cut-off the value was compared with (None for the curve pattern).
    text : str
        The sentence, ending with its short citation.
    source : str
        Full reference of the cut-off or statement.
    """

    parameter: str
    value: float
    cutoff: Cutoff | None
    text: str
    source: str


_LABELS = {"tbr_max": ("TBRmax", ""), "tbr_mean": ("TBRmean", ""), "tbr_peak": ("TBRpeak", ""),
           "ttp_min": ("Time to peak", " min"), "slope_per_h": ("Slope", " /h")}


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.0f}"


def _scalar(value) -> float | None:
    try:
        v = float(np.asarray(value, dtype=float).reshape(-1)[0]) if np.size(value) == 1 else None
    except (TypeError, ValueError):
        return None
    return v if v is not None and math.isfinite(v) else None


def _cutoff_text(c: Cutoff, value: float, params: dict, protocol: TracerProtocol) -> str:
    label, unit = _LABELS.get(c.parameter, (c.parameter, ""))
    scan_end = _scalar(params.get("scan_end_min")) if "scan_end_min" in params else None
    if c.parameter == "ttp_min" and scan_end is not None and scan_end < c.threshold:
        return (f"{label} {_fmt(value)}{unit} cannot be compared with the {_fmt(c.threshold)}{unit} cut-off that "
                f"{c.meaning} ({c.short}), because the scan ends at {_fmt(scan_end)} min.")
    if value > c.threshold:
        side = "above"
    elif value < c.threshold:
        side = "below"
    else:
        side = "at"
    favours = c.positive if c.is_positive(value) else c.negative
    text = (f"{label} {_fmt(value)}{unit} is {side} the {_fmt(c.threshold)}{unit} cut-off that {c.meaning} "
            f"({c.short}): in favour of {favours}.")
    if c.note:
        text += f" Note: {c.note}."
    return text


def _pattern_text(code: int, params: dict, protocol: TracerProtocol) -> str:
    a, b = protocol.slope_window_min
    name = PATTERN_NAMES.get(code, "undetermined")
    rel = _scalar(params.get("relative_slope_per_h")) if "relative_slope_per_h" in params else None
    slope = f" (slope {rel * 100:+.0f} % of the mean uptake per hour)" if rel is not None else ""
    tau = protocol.pattern_slope_per_h * 100
    return (f"The {protocol.display_name} time-activity curve is {name} over {a:g}-{b:g} min{slope}; "
            f"curves are called increasing or decreasing beyond +/-{tau:.0f} %/h (this work). "
            f"{protocol.pattern_meaning} ({protocol.pattern_source}).")


def reading(params: dict, protocol: "TracerProtocol | str") -> list[Reading]:
    """Plain-language lines that compare parameters with published cut-offs.

    One line per cut-off of the protocol whose parameter is in ``params`` (with a finite
    scalar value), and one for the curve pattern when ``params`` has ``"pattern"``. A
    parameter without a published cut-off gets no line: every line carries its source.

    Parameters
    ----------
    params : dict
        ROI-level values, e.g. the union of :func:`static_parameters` and
        :func:`dynamic_parameters` of the tumour's mean curve (keys ``tbr_max``,
        ``tbr_mean``, ``ttp_min``, ``slope_per_h``, ``pattern``, ``relative_slope_per_h``,
        ``scan_end_min``).
    protocol : TracerProtocol or str

    Returns
    -------
    list of Reading

    Examples
    --------
    >>> [r.text for r in reading({"tbr_mean": 2.6}, "FET")][0][:52]
    'TBRmean 2.6 is above the 2 cut-off that separated pr'
    """
    protocol = protocol_for(protocol)
    out: list[Reading] = []
    for c in protocol.cutoffs:
        if c.parameter not in params:
            continue
        value = _scalar(params[c.parameter])
        if value is None:
            continue
        out.append(Reading(c.parameter, value, c, _cutoff_text(c, value, params, protocol), c.source))
    if "pattern" in params:
        code = _scalar(params["pattern"])
        if code is not None:
            out.append(Reading("pattern", code, None, _pattern_text(int(code), params, protocol),
                               protocol.pattern_reference))
    return out
