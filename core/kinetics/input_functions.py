r"""Arterial input functions for kinetic modelling: read, build, check and store them.

The compartment models of :mod:`core.kinetics.compartment` are driven by the arterial
plasma concentration of the tracer, :math:`C_P(t)`, and by the whole-blood
concentration :math:`C_B(t)` of the blood-volume term
:math:`C_\mathrm{PET} = (1 - v_B)\,(C_P \otimes h) + v_B C_B`. An
:class:`InputFunction` holds both curves as samples joined by straight lines (the
convention of :mod:`core.kinetics.compartment`: before its first sample the curve rises
linearly from zero at injection), with its unit, its origin and a sentence a physician
can read. Four sources:

``"arterial"`` -- measured blood samples in a PET-BIDS recording
    (:func:`read_blood_tsv`: ``*_blood.tsv`` with ``time`` in s and
    ``plasma_radioactivity``/``whole_blood_radioactivity`` in the units of the
    ``*_blood.json`` sidecar; Norgaard et al. 2022, Knudsen et al. 2020). When the
    recording has a ``metabolite_parent_fraction`` column, the plasma curve is turned into
    the parent-tracer curve :math:`C_P = f_\mathrm{parent}\,C_\mathrm{plasma}` (nomenclature
    of Innis et al. 2007), the fraction being interpolated linearly between its samples.
``"file"`` -- a user's CSV or TSV (:func:`read_input_csv`) whose headers carry the units
    (``time_s``, ``t (min)``, ``plasma [kBq/ml]``, ``whole_blood_SUV`` ...).
``"population"`` -- a population curve scaled to the patient (:func:`population_input`).
    For 18F-FDOPA this is the curve of :mod:`core.phantoms.input_function`: TheraBoard's
    adaptation of the three-exponential model of Feng et al. (1993), calibrated (this
    work) so that the brain uptake it produces matches clinical FDOPA images. It is
    **not** an average of curves measured in patients. In SUV units (plasma Bq/ml per
    injected Bq per g of body weight) it is scaled as

    .. math::

        C_P\,[\mathrm{Bq/ml}] = \frac{C_P^\mathrm{SUV}\; A_\mathrm{inj}\,2^{-\Delta t/T_{1/2}}}
                                     {1000\,W_\mathrm{kg}}
                              = C_P^\mathrm{SUV} / f_\mathrm{SUV},

    with :math:`f_\mathrm{SUV}` the body-weight SUV factor of
    :func:`core.imaging.volume.suv_bw_factor` (the same decay reference as the image).
``"image-derived"`` -- the mean curve of a blood-pool region of the dynamic PET itself
    (:func:`image_derived_input`, :func:`vessel_roi`), see below.

Image-derived input (IDIF)
--------------------------
Frame averages :math:`\bar C_f` of the region are placed at the frame mid-times
:math:`t_f = (t_{s,f} + t_{e,f})/2`. Two samples are added so that the curve spans the
scan (this work): :math:`(0, 0)` at injection (no tracer in the blood before it is
injected; it is also what :mod:`core.kinetics.compartment` assumes before the first
sample), and a sample at the end of the last frame, extrapolated linearly from the last
two mid-frame samples (clipped at zero), so that the curve covers the whole scan.
Frame averages at mid-times underestimate a peak that is short compared with the
frames; the 10 s frames of a bolus protocol keep this small.

Without a user mask, :func:`vessel_roi` picks the blood pool automatically (this work,
in the spirit of the automatic carotid/sinus selections reviewed by Zanotti-Fregonara et
al. 2011 and Volpi et al. 2023). Let :math:`\bar C_E` be a voxel's duration-weighted mean
over the early frames (ending by ``early_end_min``, default 3 min: the first pass of a
bolus) and :math:`\bar C_L` its mean over the late frames (the last third of the scan
unless ``late_start_min`` is given). A voxel is a candidate when it is among the hottest
``early_top_fraction`` (default 1 %) of the early image and its curve washes out,

.. math::

    \bar C_E \ge r\,\bar C_L,\qquad r = \texttt{min\_washout\_ratio}\ (\text{default } 4);

the peak frame :math:`f^\ast` is where the candidates' mean curve is highest within the
early frames, and the region is the ``n_voxels`` candidates whose mean over frames
:math:`f^\ast - 1 \dots f^\ast + 1` exceeds their late mean the most (three frames rather
than one, so that the selection follows the blood rather than the noise of a single
10 s frame). In brain PET these are voxels of the internal carotid arteries, the
carotid siphons and the venous sinuses. The washout ratio is what keeps tumour out:
aggressive tumour can also peak early and wash out, only less than blood. With the
3 min early window and the last third of a 30 min scan as late window, blood in 60 demo
patients has :math:`\bar C_E / \bar C_L` = 6.6-12 and their most washing-out tumour region
3.65 (patient 5, aggressive sub-region; the next highest 2.5); a voxel holding 40 % blood
and 60 % tissue (partial volume) reaches about 4.6. The default :math:`r = 4` sits between
(this work); with :math:`r = 3` the region of demo patient 5 lands in its aggressive
tumour. It is a heuristic: check the region (``details["voxels_ijk"]``) on the early
frames.

Known limitation: the vessels of the head, a few millimetres across, are narrower than
two to three times the PET resolution, so the region's curve is lowered by partial
volume, most at the narrow bolus peak, and raised late by spill-in from the surrounding
tissue (Zanotti-Fregonara et al. 2011). Two scalings are
offered and recorded in ``details``:

* ``recovery_coefficient``: divide the curve by a recovery coefficient known for the
  scanner and vessel (phantom measurement). :func:`cylinder_recovery_coefficient` gives
  the value on the axis of a long cylinder of diameter :math:`d` blurred by a Gaussian
  point-spread function of width :math:`\sigma = \mathrm{FWHM}/\sqrt{8\ln 2}` (exact
  for that geometry; it ignores spill-in):

  .. math::

      \mathrm{RC} = 1 - \exp\!\left(-\frac{d^2}{8\sigma^2}\right).

* ``blood_samples``: scale the curve by the least-squares factor that best matches a few
  measured (for example late venous) blood samples, the "blood-based" IDIF of the
  literature: :math:`s = \sum_i b_i\,\hat C(t_i) / \sum_i \hat C(t_i)^2`. This corrects the
  overall scale, not the shape, of the curve.

The image gives whole-blood activity; plasma is ``plasma_to_blood_ratio`` times it
(default 1, as for FDOPA in the demo phantom; tracer-dependent) and is **not** corrected
for labelled metabolites.

Measured on the demo (this work): the phantom has no explicit vessels (blood enters
each voxel only through the tissue's blood volume :math:`v_B \le 0.05`). With the default
settings the automatic region therefore finds no vessel on demo patients 0 and 1 (seed
0, site A) and raises :class:`~core.errors.MaskError` with a fix, which is the right
answer. Relaxed to ``min_washout_ratio=1.5`` it picks tissue whose curve peaks early,
not blood: peak 0.14-0.18 and area under the curve over the 30 min scan 0.31-0.62 of
the true arterial curve. On the demo, use the measured
(``blood.tsv``) or population input; the automatic IDIF is checked on a synthetic
volume with a vessel tube in the tests.

References
----------
Feng D, Huang SC, Wang X. Models for computer simulation studies of input functions for
tracer kinetic modeling with positron emission tomography. Int J Biomed Comput
1993;32:95-110.
Innis RB, Cunningham VJ, Delforge J, et al. Consensus nomenclature for in vivo imaging of
reversibly binding radioligands. J Cereb Blood Flow Metab 2007;27:1533-1539.
Knudsen GM, Ganz M, Appelhoff S, et al. Guidelines for the content and format of PET
brain data in publications and archives: a consensus paper. J Cereb Blood Flow Metab
2020 (doi:10.1177/0271678X20905433).
Norgaard M, Matheson GJ, Hansen HD, et al. PET-BIDS, an extension to the brain imaging
data structure for positron emission tomography. Sci Data 2022;9:65.
Zanotti-Fregonara P, Chen K, Liow JS, Fujita M, Innis RB. Image-derived input function
for brain PET studies: many challenges and few opportunities. J Cereb Blood Flow Metab
2011;31:1986-1998.
Volpi T, Maccioni L, Colpo M, et al. An update on the use of image-derived input
functions for human PET studies: new hopes or old illusions? EJNMMI Res 2023;13
(doi:10.1186/s13550-023-01050-w).

Examples
--------
>>> import numpy as np
>>> f = InputFunction(np.array([0.0, 0.5, 1.0, 30.0]), np.array([0.0, 5e4, 2e4, 3e3]),
...                   source="arterial", description="Four arterial samples.")
>>> f.covers([10.0, 30.0]), f.covers([40.0])
(True, False)
>>> InputFunction.from_dict(f.to_dict()).plasma.tolist() == f.plasma.tolist()
True
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, MaskError, TimingError, UnreadableFileError
from core.imaging.validate import check_mask
from core.imaging.volume import DynamicVolume, PetDose, Volume, suv_bw_factor
from core.phantoms.frames import input_time_grid_min
from core.phantoms.input_function import FDOPA_POPULATION, feng_input

__all__ = [
    "INPUT_UNITS",
    "INPUT_SOURCES",
    "MIN_SAMPLES",
    "POPULATION_END_MIN",
    "InputFunction",
    "check_input_function",
    "read_blood_tsv",
    "read_input_csv",
    "population_input",
    "cylinder_recovery_coefficient",
    "vessel_roi",
    "image_derived_input",
]

#: Units an input function may carry: activity concentration, or SUV (plasma Bq/ml per
#: injected Bq per g of body weight).
INPUT_UNITS = ("Bq/ml", "SUV")
#: Where an input function came from.
INPUT_SOURCES = ("arterial", "image-derived", "population", "file")
#: Fewest samples that describe a curve with a rise and a fall (this work).
MIN_SAMPLES = 3
#: End of the default time grid of :func:`population_input`, min (this work).
POPULATION_END_MIN = 60.0

_STORE_FORMAT = "theraboard.input_function"
_STORE_VERSION = 1


# --------------------------------------------------------------------------- checks


def _where(i: int, lines) -> str:
    return f"line {int(lines[i])}" if lines is not None else f"sample {i + 1}"


def _check_values(name: str, values: np.ndarray, path, lines) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{_where(i, lines)}: the {name} value is {float(values[i])} ({bad.size} value(s) are not "
                         f"finite numbers)", path=path,
                         fix=f"Fill in or remove the samples without a {name} measurement.")
    neg = np.flatnonzero(values < 0)
    if neg.size:
        i = int(neg[0])
        raise InputError(f"{_where(i, lines)}: the {name} concentration is negative ({values[i]:g}; "
                         f"{neg.size} negative value(s))", path=path,
                         fix="Activity concentrations cannot be negative: check the background subtraction "
                             "or the sign of the column, and correct the value.")


def check_input_function(time_min, plasma, whole_blood=None, *, path=None, lines=None,
                         time_unit: str = "min") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate an input function's samples and return them as float arrays.

    Every reader and :class:`InputFunction` itself pass their samples through here.

    Parameters
    ----------
    time_min : array-like of shape (n,)
        Sample times from injection (minutes, or ``time_unit``), strictly increasing, >= 0.
    plasma : array-like of shape (n,)
        Plasma concentrations, >= 0.
    whole_blood : array-like of shape (n,), optional
        Whole-blood concentrations, >= 0.
    path : str or PathLike, optional
        File the samples came from; leads every message.
    lines : array-like of int of shape (n,), optional
        Line of the file that holds each sample, so that messages say "line 7" instead
        of "sample 6".
    time_unit : str, default="min"
        Unit the times are given in; only used in messages.

    Returns
    -------
    time, plasma, whole_blood : ndarray of shape (n,)
        ``whole_blood`` is None when not given.

    Raises
    ------
    InputError
        Wrong shape or length, fewer than :data:`MIN_SAMPLES` samples, NaN or infinite
        values, negative concentrations.
    TimingError
        Times that are not finite, negative, repeated or not in increasing order.

    Examples
    --------
    >>> t, p, wb = check_input_function([0, 1, 2], [0, 10, 5])
    >>> p.dtype.name, wb is None
    ('float64', True)
    """
    t = np.asarray(time_min, dtype=float)
    p = np.asarray(plasma, dtype=float)
    wb = None if whole_blood is None else np.asarray(whole_blood, dtype=float)
    for name, a in (("time", t), ("plasma", p), ("whole-blood", wb)):
        if a is not None and a.ndim != 1:
            raise InputError(f"the {name} samples must form a 1D list, got an array of shape {a.shape}", path=path,
                             fix="Give one value per sample time.")
    if p.size != t.size or (wb is not None and wb.size != t.size):
        sizes = f"{t.size} times, {p.size} plasma values" + ("" if wb is None else f", {wb.size} whole-blood values")
        raise InputError(f"the input function has {sizes}", path=path,
                         fix="Give exactly one plasma (and whole-blood) value per sample time.")
    if t.size < MIN_SAMPLES:
        raise InputError(f"the input function has {t.size} sample(s); at least {MIN_SAMPLES} are needed to "
                         f"describe the rise and fall of the blood curve", path=path,
                         fix="Provide the full list of blood samples from injection to the end of the scan.")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        i = int(bad[0])
        raise TimingError(f"{_where(i, lines)}: the sample time is {float(t[i])}", path=path,
                          fix="Give every sample a time from injection.")
    neg = np.flatnonzero(t < 0)
    if neg.size:
        i = int(neg[0])
        raise TimingError(f"{_where(i, lines)}: the sample time {t[i]:g} {time_unit} is before injection", path=path,
                          fix="Times must be counted from injection (t = 0); subtract the injection time, "
                              "not the scan start, from the clock times.")
    steps = np.diff(t)
    same = np.flatnonzero(steps == 0)
    if same.size:
        i = int(same[0])
        raise TimingError(f"{_where(i + 1, lines)} repeats the time {t[i]:g} {time_unit} of {_where(i, lines)}",
                          path=path, fix="Keep one sample per time (average duplicate measurements).")
    back = np.flatnonzero(steps < 0)
    if back.size:
        i = int(back[0])
        raise TimingError(f"the times are not in increasing order: {_where(i + 1, lines)} at {t[i + 1]:g} "
                          f"{time_unit} comes after {_where(i, lines)} at {t[i]:g} {time_unit}", path=path,
                          fix="Sort the samples by time.")
    _check_values("plasma", p, path, lines)
    if wb is not None:
        _check_values("whole-blood", wb, path, lines)
    return t, p, wb


def _check_json_able(details: dict) -> dict:
    if not isinstance(details, dict):
        raise InputError(f"details must be a dict, got {type(details).__name__}")
    try:
        return json.loads(json.dumps(details))
    except (TypeError, ValueError) as err:
        raise InputError(f"details must hold only JSON values (numbers, strings, lists, dicts): {err}") from None


# --------------------------------------------------------------------------- record


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class InputFunction:
    """An input function: plasma (and whole-blood) samples joined by straight lines.

    Attributes
    ----------
    time_min : ndarray of shape (n,)
        Sample times, minutes from injection, strictly increasing, >= 0.
    plasma : ndarray of shape (n,)
        Arterial plasma concentration :math:`C_P` (parent tracer), in ``unit``.
    whole_blood : ndarray of shape (n,) or None
        Whole-blood concentration :math:`C_B`, in ``unit``; None when unknown (the
        models then use the plasma curve, see :attr:`blood`).
    unit : {"Bq/ml", "SUV"}, default="Bq/ml"
        ``"SUV"``: plasma Bq/ml per injected Bq per g of body weight.
    source : {"arterial", "image-derived", "population", "file"}, default="file"
    description : str
        A plain sentence for the physician: what the curve is and its limits.
    details : dict
        JSON values only: file name, vessel voxel count, method, parameters.

    The arrays are stored read-only; the constructor validates them with
    :func:`check_input_function`.

    Examples
    --------
    >>> f = InputFunction([0.0, 1.0, 2.0], [0.0, 100.0, 50.0], unit="SUV", source="population",
    ...                   description="A toy curve.")
    >>> f.end_min, f.blood is f.plasma
    (2.0, True)
    """

    time_min: np.ndarray
    plasma: np.ndarray
    whole_blood: np.ndarray | None = None
    unit: str = "Bq/ml"
    source: str = "file"
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        details = _check_json_able(self.details)
        path = details.get("file")
        t, p, wb = check_input_function(self.time_min, self.plasma, self.whole_blood, path=path)
        if self.unit not in INPUT_UNITS:
            raise InputError(f"input function unit {self.unit!r} is not one of {', '.join(INPUT_UNITS)}", path=path,
                             fix="Convert the curve to Bq/ml (or SUV) first.")
        if self.source not in INPUT_SOURCES:
            raise InputError(f"input function source {self.source!r} is not one of {', '.join(INPUT_SOURCES)}",
                             path=path)
        object.__setattr__(self, "time_min", _frozen(t))
        object.__setattr__(self, "plasma", _frozen(p))
        object.__setattr__(self, "whole_blood", None if wb is None else _frozen(wb))
        object.__setattr__(self, "description", str(self.description))
        object.__setattr__(self, "details", details)

    @property
    def n_samples(self) -> int:
        return int(self.time_min.size)

    @property
    def end_min(self) -> float:
        """Time of the last sample, min."""
        return float(self.time_min[-1])

    @property
    def blood(self) -> np.ndarray:
        """Whole-blood curve for the blood-volume term; the plasma curve when unknown."""
        return self.plasma if self.whole_blood is None else self.whole_blood

    def covers(self, frame_end_min) -> bool:
        """Whether the curve reaches the end of every frame (``frame_end_min`` in minutes)."""
        fe = np.atleast_1d(np.asarray(frame_end_min, dtype=float))
        if fe.size == 0:
            return True
        # Same tolerance as core.kinetics.compartment, which refuses frames past the last sample.
        return bool(np.nanmax(fe) <= self.end_min * (1 + 1e-12))

    def check_covers(self, frame_end_min, path=None) -> None:
        """Raise :class:`~core.errors.TimingError` unless the curve covers every frame.

        Parameters
        ----------
        frame_end_min : array-like
            Frame end times, minutes from injection.
        path : str or PathLike, optional
            File to name (default: the input function's file, when it has one).
        """
        if self.covers(frame_end_min):
            return
        scan_end = float(np.nanmax(np.asarray(frame_end_min, dtype=float)))
        raise TimingError(
            f"the input function ends at {self.end_min:.4g} min but the scan runs to {scan_end:.4g} min",
            path=path if path is not None else self.details.get("file"),
            fix=f"Provide blood samples up to {scan_end:.4g} min (the end of the last frame), or restrict the "
                f"analysis to frames that end by {self.end_min:.4g} min.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for the result store; :meth:`from_dict` reads it back."""
        return {
            "format": _STORE_FORMAT,
            "version": _STORE_VERSION,
            "time_min": self.time_min.tolist(),
            "plasma": self.plasma.tolist(),
            "whole_blood": None if self.whole_blood is None else self.whole_blood.tolist(),
            "unit": self.unit,
            "source": self.source,
            "description": self.description,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "InputFunction":
        """Rebuild an input function from :meth:`to_dict` output (validated again)."""
        if not isinstance(record, dict) or record.get("format") != _STORE_FORMAT:
            raise InputError("the stored record is not an input function",
                             fix="Recompute the input function; the stored result is damaged or of another kind.")
        missing = [k for k in ("time_min", "plasma", "unit", "source") if k not in record]
        if missing:
            raise InputError(f"the stored input function lacks {', '.join(missing)}",
                             fix="Recompute the input function; the stored result is damaged.")
        return cls(time_min=np.asarray(record["time_min"], dtype=float),
                   plasma=np.asarray(record["plasma"], dtype=float),
                   whole_blood=None if record.get("whole_blood") is None
                   else np.asarray(record["whole_blood"], dtype=float),
                   unit=record["unit"], source=record["source"], description=record.get("description", ""),
                   details=record.get("details") or {})

    def converted(self, unit: str, factor: float) -> "InputFunction":
        """The same curve in another unit: every concentration multiplied by ``factor``.

        Examples
        --------
        >>> f = InputFunction([0.0, 1.0, 2.0], [0.0, 3000.0, 1500.0])
        >>> f.converted("SUV", 1 / 3000.0).plasma.tolist()
        [0.0, 1.0, 0.5]
        """
        factor = float(factor)
        if not (math.isfinite(factor) and factor > 0):
            raise InputError(f"a unit conversion factor must be a positive number, got {factor!r}")
        wb = None if self.whole_blood is None else self.whole_blood * factor
        details = {**self.details, "converted": {"from_unit": self.unit, "factor": factor}}
        return replace(self, plasma=self.plasma * factor, whole_blood=wb, unit=unit, details=details)

    def to_bq_per_ml(self, dose: PetDose) -> "InputFunction":
        """This curve in Bq/ml (unchanged if it already is), with the patient's dose record."""
        if self.unit == "Bq/ml":
            return self
        return self.converted("Bq/ml", 1.0 / _suv_factor(dose))

    def to_suv(self, dose: PetDose) -> "InputFunction":
        """This curve in SUV units (unchanged if it already is), with the patient's dose record."""
        if self.unit == "SUV":
            return self
        return self.converted("SUV", _suv_factor(dose))


# --------------------------------------------------------------------------- units

_TIME_UNITS = {  # factor to minutes
    "ms": 1.0 / 60000.0, "msec": 1.0 / 60000.0,
    "s": 1.0 / 60.0, "sec": 1.0 / 60.0, "secs": 1.0 / 60.0, "second": 1.0 / 60.0, "seconds": 1.0 / 60.0,
    "min": 1.0, "mins": 1.0, "minute": 1.0, "minutes": 1.0,
    "h": 60.0, "hr": 60.0, "hrs": 60.0, "hour": 60.0, "hours": 60.0,
}
_ACTIVITY_UNITS = {  # factor to Bq/ml; 1 Ci = 3.7e10 Bq
    "bq/ml": 1.0, "kbq/ml": 1e3, "mbq/ml": 1e6, "gbq/ml": 1e9,
    "nci/ml": 37.0, "uci/ml": 3.7e4, "mci/ml": 3.7e7,
}
_SUV_UNITS = ("suv", "suvbw", "g/ml")
_ACCEPTED_CONC = "Bq/ml, kBq/ml, MBq/ml, kBq/cc, nCi/ml, uCi/ml or SUV"
_ACCEPTED_TIME = "s, min, h (or ms)"


def _norm_unit(unit: str) -> str:
    u = unit.strip().strip("\"'").lower().replace("µ", "u").replace("μ", "u").replace("³", "3")
    u = re.sub(r"[\s]+", "", u)
    u = re.sub(r"_?per_?", "/", u)
    u = re.sub(r"(cm\^?3|cc|ccm|millilit(re|er)s?)$", "ml", u)
    return u


def _conc_factor(unit: str) -> tuple[str, float] | None:
    """('Bq/ml' or 'SUV', factor to that unit) for a concentration unit, or None if unknown."""
    u = _norm_unit(unit)
    if u in _ACTIVITY_UNITS:
        return "Bq/ml", _ACTIVITY_UNITS[u]
    if u in _SUV_UNITS:
        return "SUV", 1.0
    return None


def _looks_like_unit(token: str) -> bool:
    u = _norm_unit(token)
    return "/" in u or bool(re.fullmatch(r"[a-z]?(bq|ci)", u)) or u.startswith("suv") or u in _TIME_UNITS


def _split_header(cell: str) -> tuple[str, str | None]:
    """'plasma [kBq/ml]' -> ('plasma', 'kBq/ml'); 'time_s' -> ('time', 's'); 'cp' -> ('cp', None)."""
    s = cell.strip().strip("\"'").strip()
    m = re.match(r"^(.*?)[\s_]*[\[(]\s*([^\])]*?)\s*[\])]\s*$", s)
    if m:
        return m.group(1).strip(), (m.group(2).strip() or None)
    tokens = [t for t in re.split(r"[_\s]+", s) if t]
    for k in range(1, len(tokens)):
        unit = "_".join(tokens[k:])
        if _conc_factor(unit) is not None or _norm_unit(unit) in _TIME_UNITS:
            return "_".join(tokens[:k]), unit
    if len(tokens) > 1 and _looks_like_unit(tokens[-1]):
        return "_".join(tokens[:-1]), tokens[-1]
    return s, None


def _role(name: str) -> str | None:
    n = name.lower().replace("-", "_").replace(" ", "_")
    first = n.split("_")[0] if n else ""
    if first in ("t", "time", "times") or n.startswith("time"):
        return "time"
    if "whole" in n or first in ("wb", "cb", "blood"):
        return "whole_blood"
    if "plasma" in n or first in ("cp", "aif", "input", "activity", "concentration", "radioactivity"):
        return "plasma"
    return None


# --------------------------------------------------------------------------- tables

_NA = ("n/a",)
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")


def _read_text(path: Path) -> str:
    if not path.exists():
        raise UnreadableFileError("the file does not exist", path=path, fix="Check the file name and upload it again.")
    if path.is_dir():
        raise UnreadableFileError("this is a folder, not a table of blood samples", path=path,
                                  fix="Choose the .csv or .tsv file itself.")
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise UnreadableFileError("the file is not text", path=path, fix="Export the blood samples as CSV or TSV text.")


def _read_table(path: Path, delimiter: str | None) -> tuple[str, int, list[str], list[tuple[int, list[str]]]]:
    """(delimiter, header line number, header cells, [(line number, cells)]) of a delimited text file;
    blank lines and lines starting with '#' are skipped."""
    text = _read_text(path)
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines())
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise InputError("the file is empty", path=path,
                         fix="Export the blood samples with a header row (for example time_s,plasma_kBq/ml) and "
                             "one row per sample.")
    header_line = numbered[0][1]
    if delimiter is None:
        counts = {d: header_line.count(d) for d in ("\t", ";", ",")}
        delimiter = max(counts, key=counts.get)
        if counts[delimiter] == 0:
            raise InputError(f"line {numbered[0][0]}: the header {header_line.strip()!r} has a single column",
                             path=path,
                             fix="Separate the columns with commas, semicolons or tabs, with at least a time and "
                                 "a plasma column (for example time_s,plasma_kBq/ml).")
    rows = list(csv.reader([line for _, line in numbered], delimiter=delimiter))
    header = [c.strip() for c in rows[0]]
    body = [(numbered[k][0], rows[k]) for k in range(1, len(rows))]
    return delimiter, numbered[0][0], header, body


def _number(cell: str, *, path, line: int, column: str, delimiter: str, allow_na: bool) -> float:
    s = cell.strip().strip("\"'")
    if allow_na and s.lower() in _NA:
        return math.nan
    if delimiter != "," and _DECIMAL_COMMA.match(s):
        s = s.replace(",", ".")
    if s == "":
        raise InputError(f"line {line}, column {column!r}: the cell is empty", path=path,
                         fix="Fill in the value or remove the sample (row).")
    try:
        value = float(s)
    except ValueError:
        raise InputError(f"line {line}, column {column!r}: {cell.strip()!r} is not a number", path=path,
                         fix="Use plain numbers with a decimal point (no units or text in the cells).") from None
    if math.isnan(value):
        raise InputError(f"line {line}, column {column!r}: the value is NaN (not a number)", path=path,
                         fix="Fill in the measured value or remove the sample (row).")
    if math.isinf(value):
        raise InputError(f"line {line}, column {column!r}: the value is infinite", path=path,
                         fix="Correct the value or remove the sample (row).")
    return value


def _column(body, index: int, name: str, *, path, delimiter: str, allow_na: bool) -> np.ndarray:
    out = np.empty(len(body))
    for k, (line, cells) in enumerate(body):
        if index >= len(cells):
            raise InputError(f"line {line} has {len(cells)} cell(s) but the header names column {index + 1} "
                             f"({name!r})", path=path,
                             fix="Give every row one cell per header column.")
        out[k] = _number(cells[index], path=path, line=line, column=name, delimiter=delimiter, allow_na=allow_na)
    return out


# --------------------------------------------------------------------------- CSV


def _find_columns(header: list[str], path, header_line: int) -> dict[str, tuple[int, str, str | None]]:
    found: dict[str, list[tuple[int, str, str | None]]] = {}
    for i, cell in enumerate(header):
        name, unit = _split_header(cell)
        role = _role(name)
        tokens = [t for t in re.split(r"[_\s]+", name) if t]
        if role == "time" and unit is None and len(tokens) > 1:
            unit = "_".join(tokens[1:])  # time_fortnights: an unknown unit rather than none
        if role:
            found.setdefault(role, []).append((i, cell, unit))
    if "time" not in found:
        raise InputError(f"line {header_line}: no time column among {header}", path=path,
                         fix="Name the time column with its unit, for example time_s or time_min.")
    if "plasma" not in found:
        raise InputError(f"line {header_line}: no plasma column among {header}", path=path,
                         fix="Name the plasma column with its unit, for example plasma_kBq/ml (a whole-blood-only "
                             "curve may be labelled plasma only when the tracer's blood-to-plasma ratio is 1).")
    out = {}
    for role, cands in found.items():
        if len(cands) > 1:
            plain = [c for c in cands if role != "plasma" or "plasma" in c[1].lower()]
            if len(plain) != 1:
                names = ", ".join(repr(c[1]) for c in cands)
                raise InputError(f"line {header_line}: several columns could be the {role.replace('_', ' ')} "
                                 f"column: {names}", path=path,
                                 fix="Keep one time, one plasma and at most one whole-blood column, or rename "
                                     "the others.")
            cands = plain
        out[role] = cands[0]
    return out


def read_input_csv(path: str | os.PathLike) -> InputFunction:
    """Read a user's blood curve from a CSV or TSV file with the units in the header.

    The delimiter (comma, semicolon or tab) is taken from the header row; with
    semicolons or tabs a decimal comma (``1,5``) is accepted. Lines starting with ``#``
    are comments. Columns are recognised by name: time (``time``, ``t``), plasma
    (``plasma``, ``cp``, ``aif``, ``activity`` ...), whole blood (``whole_blood``,
    ``wb``, ``blood``); others are ignored. Each needs a unit, written
    ``time_s``, ``time [min]``, ``t (h)``, ``plasma_kBq/ml``, ``plasma [kBq/cc]``,
    ``cp_kBq_per_ml`` or ``plasma (SUV)``.

    Time units: s, min, h, ms. Concentration units: Bq/ml, kBq/ml, MBq/ml (``cc`` and
    ``cm3`` read as ``ml``), nCi/ml, uCi/ml (1 Ci = 3.7e10 Bq), or SUV (g/ml). Times are
    converted to minutes and activities to Bq/ml; SUV stays SUV.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    InputFunction
        ``source="file"``; ``details`` records the file name, the columns and units read.

    Raises
    ------
    InputError
        Empty file, missing or unknown unit, a cell that is not a number or is NaN, a
        negative value, too few samples (each message names the file, the line and the
        column).
    TimingError
        Times before injection, repeated or not in increasing order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "aif.csv"
    >>> _ = p.write_text("time_s,plasma_kBq/ml\\n0,0\\n30,50\\n60,20\\n600,3\\n")
    >>> f = read_input_csv(p)
    >>> f.time_min.tolist(), f.plasma.tolist()
    ([0.0, 0.5, 1.0, 10.0], [0.0, 50000.0, 20000.0, 3000.0])
    """
    path = Path(path)
    delimiter, header_line, header, body = _read_table(path, None)
    if header and all(_is_number(c) for c in header if c.strip()):
        raise InputError(f"line {header_line}: the first row holds numbers, not column names", path=path,
                         fix="Add a header row naming each column with its unit, for example time_s,plasma_kBq/ml.")
    cols = _find_columns(header, path, header_line)
    if not body:
        raise InputError("the file has a header but no samples", path=path,
                         fix="Add one row per blood sample below the header.")
    lines = np.array([line for line, _ in body])

    t_idx, t_cell, t_unit = cols["time"]
    if t_unit is None:
        raise InputError(f"line {header_line}, column {t_cell!r}: the time column has no unit", path=path,
                         fix="Rename it time_s or time_min (or time [s], t (min)).")
    t_factor = _TIME_UNITS.get(_norm_unit(t_unit))
    if t_factor is None:
        raise InputError(f"line {header_line}, column {t_cell!r}: unknown time unit {t_unit!r}", path=path,
                         fix=f"Use one of {_ACCEPTED_TIME}, for example time_s.")
    t_raw = _column(body, t_idx, t_cell, path=path, delimiter=delimiter, allow_na=False)

    conc = {}
    for role in ("plasma", "whole_blood"):
        if role not in cols:
            continue
        idx, cell, unit = cols[role]
        if unit is None:
            raise InputError(f"line {header_line}, column {cell!r}: the {role.replace('_', '-')} column has no unit",
                             path=path, fix=f"Add the unit to the header, for example {_split_header(cell)[0]}_kBq/ml "
                                            f"(accepted: {_ACCEPTED_CONC}).")
        unit_factor = _conc_factor(unit)
        if unit_factor is None:
            raise InputError(f"line {header_line}, column {cell!r}: unknown concentration unit {unit!r}", path=path,
                             fix=f"Use one of {_ACCEPTED_CONC}.")
        conc[role] = (cell, unit, unit_factor,
                      _column(body, idx, cell, path=path, delimiter=delimiter, allow_na=False))
    if "whole_blood" in conc and conc["whole_blood"][2][0] != conc["plasma"][2][0]:
        raise InputError(f"line {header_line}: plasma is in {conc['plasma'][1]} but whole blood in "
                         f"{conc['whole_blood'][1]}; one curve cannot mix SUV and activity units", path=path,
                         fix="Give both columns in activity units (for example kBq/ml) or both in SUV.")
    plasma_raw = conc["plasma"][3]
    wb_raw = conc["whole_blood"][3] if "whole_blood" in conc else None
    check_input_function(t_raw, plasma_raw, wb_raw, path=path, lines=lines, time_unit=_norm_unit(t_unit))

    unit = conc["plasma"][2][0]
    plasma = plasma_raw * conc["plasma"][2][1]
    wb = None if wb_raw is None else wb_raw * conc["whole_blood"][2][1]
    used = {cols["time"][1], conc["plasma"][0]} | ({conc["whole_blood"][0]} if wb is not None else set())
    details = {
        "file": path.name,
        "format": "csv" if delimiter == "," else ("csv;" if delimiter == ";" else "tsv"),
        "columns": {"time": t_cell, "plasma": conc["plasma"][0],
                    **({"whole_blood": conc["whole_blood"][0]} if wb is not None else {})},
        "units_in_file": {"time": t_unit, "plasma": conc["plasma"][1],
                          **({"whole_blood": conc["whole_blood"][1]} if wb is not None else {})},
        "ignored_columns": [c for c in header if c and c not in used],
        "n_samples": int(t_raw.size),
    }
    wb_words = " and whole blood" if wb is not None else " (no whole-blood column: the plasma curve is used for " \
                                                         "the blood-volume term)"
    description = (f"Blood curve read from {path.name}: {t_raw.size} samples of plasma{wb_words} from "
                   f"{t_raw[0] * t_factor:.3g} to {t_raw[-1] * t_factor:.3g} min after injection, "
                   f"converted from {conc['plasma'][1]} to {unit}.")
    return InputFunction(t_raw * t_factor, plasma, wb, unit=unit, source="file", description=description,
                         details=details)


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip().strip("\"'").replace(",", "."))
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- PET-BIDS


def _load_sidecar(path: Path, sidecar, tsv: Path) -> tuple[dict, Path | None]:
    if sidecar is None:
        guess = tsv.with_suffix(".json")
        if not guess.exists():
            return {}, None
        sidecar = guess
    sidecar = Path(sidecar)
    if not sidecar.exists():
        raise UnreadableFileError("the blood sidecar does not exist", path=sidecar,
                                  fix=f"Give the .json sidecar that goes with {tsv.name}, or leave it out.")
    try:
        meta = json.loads(_read_text(sidecar))
    except json.JSONDecodeError as err:
        raise UnreadableFileError(f"the sidecar is not valid JSON ({err.msg} at line {err.lineno})", path=sidecar,
                                  fix="Correct the JSON syntax (a validator such as the BIDS validator shows where).") \
            from None
    if not isinstance(meta, dict):
        raise UnreadableFileError("the sidecar does not hold a JSON object", path=sidecar,
                                  fix="The blood sidecar must be a JSON object with PlasmaAvail, WholeBloodAvail ...")
    return meta, sidecar


def _column_unit(meta: dict, column: str) -> str | None:
    entry = meta.get(column)
    if isinstance(entry, dict):
        unit = entry.get("Units")
        return str(unit) if unit is not None else None
    return None


def read_blood_tsv(path: str | os.PathLike, sidecar: str | os.PathLike | None = None) -> InputFunction:
    """Read a PET-BIDS blood recording (``*_blood.tsv`` with its ``*_blood.json`` sidecar).

    Columns (PET-BIDS): ``time`` in seconds from time zero (the injection), REQUIRED;
    ``plasma_radioactivity`` (REQUIRED when ``PlasmaAvail``); ``whole_blood_radioactivity``
    (when ``WholeBloodAvail``); ``metabolite_parent_fraction`` (when ``MetaboliteAvail``).
    Units come from the sidecar's ``"<column>": {"Units": ...}`` entries; without a
    sidecar, time is in seconds (as the standard fixes) and activities are **assumed** in
    Bq/ml, which the description says. ``n/a`` marks a missing value: plasma rows with
    ``n/a`` are left out, whole blood and parent fraction are interpolated linearly onto
    the plasma times (held constant beyond their first and last samples).

    Parameters
    ----------
    path : str or PathLike
        The ``*_blood.tsv`` file (tab-separated, header row).
    sidecar : str or PathLike, optional
        Its JSON sidecar; default: the same name with ``.json``, when it exists.

    Returns
    -------
    InputFunction
        ``source="arterial"``, in Bq/ml (or SUV if the file says so), plasma corrected to
        parent tracer when a parent fraction is given.

    Raises
    ------
    InputError
        Missing columns, unknown units, cells that are not numbers, negative values,
        parent fractions outside [0, 1], ``PlasmaAvail`` false, too few samples.
    TimingError
        Negative, repeated or unsorted times.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "blood.tsv").write_text("time\\tplasma_radioactivity\\n0\\t0\\n60\\t40\\n600\\t5\\n")
    >>> _ = (d / "blood.json").write_text('{"plasma_radioactivity": {"Units": "kBq/mL"}}')
    >>> read_blood_tsv(d / "blood.tsv").plasma.tolist()
    [0.0, 40000.0, 5000.0]
    """
    path = Path(path)
    meta, sidecar_path = _load_sidecar(path, sidecar, path)
    where_meta = sidecar_path or path
    if meta.get("PlasmaAvail") is False:
        raise InputError("the recording has no plasma measurements (PlasmaAvail is false)", path=where_meta,
                         fix="Kinetic models need the plasma curve: give a recording with plasma_radioactivity, or "
                             "use an image-derived or population input.")
    _, header_line, header, body = _read_table(path, "\t")
    index = {name.strip(): i for i, name in enumerate(header)}
    for col in ("time", "plasma_radioactivity"):
        if col not in index:
            raise InputError(f"line {header_line}: the PET-BIDS column {col!r} is missing (columns: {header})",
                             path=path,
                             fix="Name the columns as PET-BIDS does: time (s), plasma_radioactivity, "
                                 "whole_blood_radioactivity, separated by tabs.")
    if not body:
        raise InputError("the file has a header but no samples", path=path,
                         fix="Add one row per blood sample below the header.")
    lines = np.array([line for line, _ in body])
    t_unit = _column_unit(meta, "time") or "s"
    t_factor = _TIME_UNITS.get(_norm_unit(t_unit))
    if t_factor is None:
        raise InputError(f"unknown time unit {t_unit!r} for the column 'time'", path=where_meta,
                         fix="PET-BIDS times are in seconds: set \"time\": {\"Units\": \"s\"}.")
    t_all = _column(body, index["time"], "time", path=path, delimiter="\t", allow_na=False)

    units_assumed = []
    cols = {}
    for col in ("plasma_radioactivity", "whole_blood_radioactivity"):
        if col not in index:
            continue
        unit = _column_unit(meta, col)
        if unit is None:
            unit = "Bq/mL"
            units_assumed.append(col)
        factor = _conc_factor(unit)
        if factor is None:
            raise InputError(f"unknown unit {unit!r} for the column {col!r}", path=where_meta,
                             fix=f"Use one of {_ACCEPTED_CONC} in the sidecar's \"Units\".")
        cols[col] = (unit, factor, _column(body, index[col], col, path=path, delimiter="\t", allow_na=True))
    if meta.get("WholeBloodAvail") is True and "whole_blood_radioactivity" not in cols:
        raise InputError("the sidecar says WholeBloodAvail but the column 'whole_blood_radioactivity' is missing",
                         path=path, fix="Add the whole-blood column or set WholeBloodAvail to false.")
    if "whole_blood_radioactivity" in cols and cols["whole_blood_radioactivity"][1][0] != cols[
            "plasma_radioactivity"][1][0]:
        raise InputError("plasma and whole blood are given in different kinds of unit (SUV and activity)",
                         path=where_meta, fix="Give both columns in activity units, for example kBq/mL.")

    p_all = cols["plasma_radioactivity"][2]
    keep = ~np.isnan(p_all)
    if not keep.any():
        raise InputError("every plasma_radioactivity value is n/a", path=path,
                         fix="Fill in the plasma measurements, or use an image-derived or population input.")
    t_kept = t_all[keep]
    # Times first, on every row, so that ordering problems point at the right line.
    check_input_function(t_all, np.zeros_like(t_all), path=path, lines=lines, time_unit=_norm_unit(t_unit))
    plasma = p_all[keep]
    details: dict[str, Any] = {"file": path.name, "sidecar": sidecar_path.name if sidecar_path else None,
                               "format": "PET-BIDS blood recording", "units_in_file": {"time": t_unit}}

    wb = None
    if "whole_blood_radioactivity" in cols:
        wb_all = cols["whole_blood_radioactivity"][2]
        ok = ~np.isnan(wb_all)
        _check_values("whole-blood", wb_all[ok], path, lines[ok])
        if ok.sum() >= 2:
            wb = np.interp(t_kept, t_all[ok], wb_all[ok]) * cols["whole_blood_radioactivity"][1][1]
            details["units_in_file"]["whole_blood_radioactivity"] = cols["whole_blood_radioactivity"][0]
            if not ok[keep].all():
                details["whole_blood_interpolated"] = True

    parent_words = ""
    if "metabolite_parent_fraction" in index:
        f_all = _column(body, index["metabolite_parent_fraction"], "metabolite_parent_fraction", path=path,
                        delimiter="\t", allow_na=True)
        ok = ~np.isnan(f_all)
        out = np.flatnonzero(ok & ((f_all < 0) | (f_all > 1)))
        if out.size:
            i = int(out[0])
            raise InputError(f"line {lines[i]}, column 'metabolite_parent_fraction': {f_all[i]:g} is not a fraction "
                             f"between 0 and 1", path=path,
                             fix="Give the parent fraction as a number from 0 to 1 (not a percentage).")
        if ok.any():
            frac = np.interp(t_kept, t_all[ok], f_all[ok])
            plasma = plasma * frac
            details["metabolite_corrected"] = True
            parent_words = ", multiplied by the measured parent fraction (metabolite-corrected)"
    _check_values("plasma", plasma, path, lines[keep])

    unit, factor = cols["plasma_radioactivity"][1]
    details["units_in_file"]["plasma_radioactivity"] = cols["plasma_radioactivity"][0]
    details["n_samples"] = int(t_kept.size)
    if units_assumed:
        details["units_assumed"] = units_assumed
    assumed = (" No sidecar gave the activity unit, so Bq/ml was assumed: check it against the laboratory report."
               if units_assumed else "")
    description = (f"Measured blood curve from the PET-BIDS recording {path.name}: {t_kept.size} plasma samples"
                   f"{parent_words}{' with whole blood' if wb is not None else ''}, "
                   f"{t_kept[0] * t_factor:.3g} to {t_kept[-1] * t_factor:.3g} min after injection.{assumed}")
    return InputFunction(t_kept * t_factor, plasma * factor, wb, unit=unit, source="arterial",
                         description=description, details=details)


# --------------------------------------------------------------------------- population

_DOSE_WORDS = {
    "injected_activity_bq": "the injected activity",
    "body_weight_kg": "the patient weight",
    "half_life_s": "the radionuclide half-life",
    "decay_interval_s": "the injection time",
}


def _suv_factor(dose: PetDose | None) -> float:
    if dose is None:
        raise InputError("there is no dose record (injected activity, patient weight, half-life)",
                         fix="Enter the injected activity and the patient weight in the study, or import the PET "
                             "with its DICOM dose module.")
    if dose.missing:
        words = ", ".join(_DOSE_WORDS.get(m, m) for m in dose.missing)
        raise InputError(f"the dose record is incomplete: it lacks {words}",
                         fix="Enter the missing values in the study (the SUV of the images needs them too).")
    return suv_bw_factor(dose)


def _tracer_key(tracer: str) -> str:
    k = re.sub(r"[^a-z0-9]", "", str(tracer).lower())
    return k.replace("18f", "").replace("f18", "")


_POPULATION = {  # normalised tracer name (see _tracer_key) -> curve
    key: "FDOPA" for key in ("fdopa", "dopa", "ldopa", "fluorodopa", "6fluorodopa", "6fluoroldopa", "fluoroldopa")
}


def population_input(tracer: str | None, dose: PetDose, time_min=None) -> InputFunction:
    r"""A population input function scaled to the patient's injected activity and weight.

    Only 18F-FDOPA has one: the Feng-model curve :data:`core.phantoms.input_function.FDOPA_POPULATION`
    in SUV units, this project's adaptation of Feng et al. (1993) calibrated to clinical
    FDOPA brain uptake (not a measured population average), scaled by

    .. math::

        C_P\,[\mathrm{Bq/ml}] = C_P^\mathrm{SUV} / f_\mathrm{SUV},\qquad
        f_\mathrm{SUV} = \frac{1000\,W_\mathrm{kg}}{A_\mathrm{inj}\,2^{-\Delta t/T_{1/2}}}\ \mathrm{g/Bq},

    so the curve shares the decay reference of the image. Whole blood equals plasma
    (blood-to-plasma ratio 1, as in the phantom).

    Parameters
    ----------
    tracer : str or None
        ``"FDOPA"``, ``"18F-FDOPA"``, ``"6-[18F]fluoro-L-DOPA"`` ...; None takes
        ``dose.tracer``.
    dose : PetDose
        Complete dose record (injected activity, weight, half-life, decay interval).
    time_min : array-like of shape (n,), optional
        Sample times, min; default a 2 s grid to 5 min then 15 s to
        :data:`POPULATION_END_MIN` (60 min, this work).

    Returns
    -------
    InputFunction
        ``source="population"``, ``unit="Bq/ml"``.

    Raises
    ------
    InputError
        Incomplete dose record, or no population curve for the tracer (for example FET).

    Examples
    --------
    >>> d = PetDose(injected_activity_bq=210e6, body_weight_kg=70.0, half_life_s=6586.2, tracer="FDOPA")
    >>> f = population_input(None, d, [0.0, 1.0, 10.0, 30.0])
    >>> round(float(f.plasma[2] / f.details["bq_per_ml_per_suv"]), 3)   # SUV at 10 min
    1.739
    """
    name = tracer if tracer is not None else (dose.tracer if dose is not None else None)
    if name is None or not str(name).strip():
        raise InputError("the tracer is not known, so no population input can be chosen",
                         fix="Give the tracer (for example FDOPA) or use an image-derived or measured input.")
    curve = _POPULATION.get(_tracer_key(name))
    if curve is None:
        raise InputError(f"there is no population input function for the tracer {name!r} (TheraBoard has one for "
                         f"18F-FDOPA only)",
                         fix="Use an image-derived input (from a vessel in the dynamic PET) or measured blood "
                             "samples (PET-BIDS blood.tsv or a CSV).")
    factor = _suv_factor(dose)
    t = input_time_grid_min(POPULATION_END_MIN) if time_min is None else np.asarray(time_min, dtype=float)
    check_input_function(t, np.zeros(np.shape(t)))
    suv = feng_input(t, FDOPA_POPULATION)
    plasma = suv / factor
    scale = 1.0 / factor
    details = {
        "tracer": "FDOPA",
        "model": "Feng 1993 three-exponential, TheraBoard FDOPA adaptation (core.phantoms.input_function)",
        "parameters_suv": FDOPA_POPULATION.as_dict(),
        "injected_activity_bq": float(dose.injected_activity_bq),
        "body_weight_kg": float(dose.body_weight_kg),
        "decay_interval_s": float(dose.decay_interval_s),
        "bq_per_ml_per_suv": scale,
        "blood_to_plasma_ratio": 1.0,
    }
    description = (f"Population FDOPA input: TheraBoard's adaptation of the Feng 1993 input model, calibrated so "
                   f"that brain uptake matches clinical FDOPA images (not an average of curves measured in "
                   f"patients), scaled to {dose.injected_activity_bq / 1e6:.0f} MBq injected and "
                   f"{dose.body_weight_kg:.0f} kg ({scale:.0f} Bq/ml per SUV). The patient's own curve can "
                   f"differ in height and timing.")
    return InputFunction(t, plasma, plasma.copy(), unit="Bq/ml", source="population", description=description,
                         details=details)


# --------------------------------------------------------------------------- image-derived


def cylinder_recovery_coefficient(diameter_mm: float, fwhm_mm: float) -> float:
    r"""Recovery on the axis of a long cylinder of diameter ``diameter_mm`` under a Gaussian PSF.

    .. math::

        \mathrm{RC} = 1 - \exp\!\left(-\frac{d^2}{8\sigma^2}\right),\qquad
        \sigma = \frac{\mathrm{FWHM}}{2\sqrt{2\ln 2}}

    (the fraction of a 2D Gaussian within radius :math:`d/2`). It is an upper bound for
    the recovery of a region of several voxels and ignores spill-in from tissue.

    Parameters
    ----------
    diameter_mm : float
        Inner vessel diameter, mm.
    fwhm_mm : float
        Reconstructed resolution (FWHM), mm.

    Examples
    --------
    >>> round(cylinder_recovery_coefficient(5.0, 5.0), 3)
    0.5
    """
    d, w = float(diameter_mm), float(fwhm_mm)
    if not (math.isfinite(d) and d > 0 and math.isfinite(w) and w > 0):
        raise InputError(f"vessel diameter ({diameter_mm!r} mm) and resolution ({fwhm_mm!r} mm) must be positive")
    sigma = w / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return 1.0 - math.exp(-d * d / (8.0 * sigma * sigma))


def _frame_windows(pet: DynamicVolume, early_end_min: float, late_start_min: float | None):
    fs, fe, fm = pet.frame_start_min, pet.frame_end_min, pet.frame_mid_min
    early = fe <= early_end_min + 1e-9
    if not early.any():
        raise TimingError(f"no frame ends within the first {early_end_min:g} min (the first frame ends at "
                          f"{fe[0]:.3g} min), so the bolus cannot be seen", path=pet.source,
                          fix="An image-derived input needs a dynamic scan started at injection with short early "
                              "frames; draw a vessel mask only if it does, or use measured blood samples.")
    if late_start_min is None:
        late_start_min = fe[-1] - (fe[-1] - fs[0]) / 3.0
    late = fm >= late_start_min
    if not late.any():
        late = np.zeros_like(early)
        late[-1] = True
    if np.any(early & late):
        raise TimingError(f"the early window (frames ending by {early_end_min:g} min) and the late window (from "
                          f"{late_start_min:.3g} min) overlap: the scan of {fe[-1]:.3g} min is too short",
                          path=pet.source, fix="Give a vessel mask, or a shorter early_end_min.")
    return early, late


def _weighted_mean(data: np.ndarray, sel: np.ndarray, duration: np.ndarray) -> np.ndarray:
    w = duration[sel] / duration[sel].sum()
    return np.tensordot(data[..., sel], w, axes=([-1], [0]))


def vessel_roi(pet: DynamicVolume, *, n_voxels: int = 20, early_end_min: float = 3.0,
               late_start_min: float | None = None, min_washout_ratio: float = 4.0,
               early_top_fraction: float = 0.01) -> Volume:
    r"""Automatic blood-pool region of a dynamic PET: the hottest early-peaking, washing-out voxels.

    With :math:`\bar C_E`, :math:`\bar C_L` the early and late means (module docstring), the
    candidates are the voxels among the hottest ``early_top_fraction`` of the early
    image that wash out,

    .. math::

        \bar C_E \ge q_{1 - \phi}(\bar C_E) \quad\text{and}\quad \bar C_E \ge r\,\bar C_L ;

    the peak frame :math:`f^\ast` is where the candidates' mean curve is highest among the
    early frames, and the region is the ``n_voxels`` candidates with the largest
    :math:`\bar C_{f^\ast-1..f^\ast+1} - \bar C_L` (early excess over late uptake).

    Parameters
    ----------
    pet : DynamicVolume
        Dynamic PET starting at injection (Bq/ml or SUV).
    n_voxels : int, default=20
        Voxels in the region (this work; 0.3 ml at 2.5 mm, a few cm of internal carotid).
    early_end_min : float, default=3.0
        Frames ending by this time (min) form the early window (first pass of a bolus).
    late_start_min : float, optional
        Frames whose mid-time is at or after this (min) form the late window; default
        the last third of the scan.
    min_washout_ratio : float, default=4.0
        Smallest early-to-late ratio :math:`r` of a candidate (this work): above the
        3.65 of the most washing-out tumour among 60 demo patients, below the 6.6-12 of
        their blood and the about 4.6 of a voxel that is 40 % blood (module docstring).
    early_top_fraction : float, default=0.01
        :math:`\phi`, the fraction of hottest early voxels searched (this work); keeps
        noise-only voxels outside the body out.

    Returns
    -------
    Volume
        Boolean mask on the PET grid (``modality="SEG"``); ``meta`` holds ``peak_frame``,
        ``n_candidates`` and the voxel indices.

    Raises
    ------
    TimingError
        No early frame (the scan did not start at injection), or a scan too short to
        tell early from late.
    MaskError
        Fewer candidate voxels than ``n_voxels`` (no vessel found).
    """
    if not isinstance(pet, DynamicVolume):
        raise InputError("an image-derived input needs a dynamic (4D) PET with frame timing",
                         path=getattr(pet, "source", None))
    n_voxels = int(n_voxels)
    if n_voxels < 1:
        raise InputError(f"n_voxels must be at least 1, got {n_voxels}")
    if not min_washout_ratio > 0:
        raise InputError(f"min_washout_ratio must be positive, got {min_washout_ratio!r}")
    if not 0 < early_top_fraction <= 1:
        raise InputError(f"early_top_fraction must lie in (0, 1], got {early_top_fraction!r}")
    data = np.asarray(pet.data)
    early, late = _frame_windows(pet, float(early_end_min), late_start_min)
    dur = np.asarray(pet.frame_duration_s, dtype=float)
    early_mean = _weighted_mean(data, early, dur)
    late_mean = _weighted_mean(data, late, dur)
    hot = early_mean >= np.quantile(early_mean, 1.0 - early_top_fraction)
    cand = hot & (early_mean > 0) & (early_mean >= min_washout_ratio * late_mean)
    n_cand = int(cand.sum())
    if n_cand < n_voxels:
        raise MaskError(
            f"no blood vessel was found: of the {int(hot.sum())} hottest voxels of the first {early_end_min:g} "
            f"min, {n_cand} fall to 1/{min_washout_ratio:g} of their early activity or less late in the scan, "
            f"and {n_voxels} are needed", path=pet.source,
            fix="Draw a vessel mask on the early frames (carotid arteries or venous sinuses), or use measured "
                "blood samples or a population input.")
    early_idx = np.flatnonzero(early)
    cand_curve = data[cand].astype(float).mean(axis=0)
    peak = int(early_idx[np.argmax(cand_curve[early_idx])])
    window = np.arange(max(peak - 1, 0), min(peak + 2, pet.n_frames))
    score = np.where(cand, data[..., window].astype(float).mean(axis=-1) - late_mean, -np.inf)
    flat = np.argpartition(score.ravel(), -n_voxels)[-n_voxels:]
    mask = np.zeros(data.shape[:3], dtype=bool)
    mask.ravel()[flat] = True
    ijk = np.argwhere(mask)
    return Volume(mask, np.asarray(pet.affine, float).copy(), "SEG", "label", source=pet.source,
                  meta={"label_name": "vessel (automatic)", "peak_frame": peak, "n_candidates": n_cand,
                        "voxels_ijk": ijk.tolist(), "early_end_min": float(early_end_min),
                        "min_washout_ratio": float(min_washout_ratio),
                        "early_top_fraction": float(early_top_fraction)})


def _blood_scale(samples, t_curve: np.ndarray, curve: np.ndarray) -> tuple[float, int]:
    try:
        ts, bs = (np.asarray(a, dtype=float) for a in samples)
    except (TypeError, ValueError):
        raise InputError("blood_samples must be a pair (time_min, concentration) of equal-length lists") from None
    if ts.ndim != 1 or ts.shape != bs.shape or ts.size == 0:
        raise InputError(f"blood_samples must be two lists of equal length, got shapes {ts.shape} and {bs.shape}")
    if not (np.all(np.isfinite(ts)) and np.all(np.isfinite(bs))) or np.any(bs < 0):
        raise InputError("blood_samples hold NaN, infinite or negative values")
    if np.any(ts < t_curve[0]) or np.any(ts > t_curve[-1]):
        raise TimingError(f"blood samples at {ts.min():.3g}-{ts.max():.3g} min fall outside the scan "
                          f"({t_curve[0]:.3g}-{t_curve[-1]:.3g} min)",
                          fix="Use blood samples drawn during the scan.")
    c = np.interp(ts, t_curve, curve)
    denom = float(np.dot(c, c))
    if not denom > 0:
        raise InputError("the image-derived curve is zero at the blood sample times, so it cannot be scaled")
    return float(np.dot(bs, c) / denom), int(ts.size)


def image_derived_input(pet: DynamicVolume, vessel_mask: Volume | np.ndarray | None = None, *,
                        n_voxels: int = 20, early_end_min: float = 3.0, late_start_min: float | None = None,
                        min_washout_ratio: float = 4.0, early_top_fraction: float = 0.01,
                        recovery_coefficient: float = 1.0,
                        blood_samples=None, plasma_to_blood_ratio: float = 1.0) -> InputFunction:
    r"""Image-derived input function: the mean curve of a blood-pool region of the dynamic PET.

    .. math::

        \hat C_B(t_f) = \frac{s}{\mathrm{RC}}\,\frac{1}{|R|}\sum_{x \in R} C(x, f),\qquad
        \hat C_P = \rho\,\hat C_B,

    at frame mid-times :math:`t_f`, plus :math:`(0, 0)` and a linearly extrapolated sample
    at the end of the last frame (module docstring); :math:`s` the blood-sample scale
    (1 without samples), RC the recovery coefficient, :math:`\rho` the plasma-to-blood
    ratio.

    Parameters
    ----------
    pet : DynamicVolume
        Dynamic PET from injection, Bq/ml (or SUV).
    vessel_mask : Volume or ndarray of shape (I, J, K), optional
        A vessel region drawn by the user on the PET grid; default :func:`vessel_roi`.
    n_voxels, early_end_min, late_start_min, min_washout_ratio, early_top_fraction
        Automatic region settings, see :func:`vessel_roi` (ignored with a mask).
    recovery_coefficient : float in (0, 1], default=1.0
        Divide the curve by this partial-volume recovery (1: no correction), see
        :func:`cylinder_recovery_coefficient`.
    blood_samples : (array-like, array-like), optional
        ``(time_min, whole_blood)`` of measured blood samples in the image's unit; the
        curve is scaled by their least-squares factor. Not together with
        ``recovery_coefficient``.
    plasma_to_blood_ratio : float, default=1.0
        Plasma over whole-blood concentration of the tracer (1 for FDOPA in the phantom).

    Returns
    -------
    InputFunction
        ``source="image-derived"``; ``details`` holds the method, voxel count, volume (ml),
        centroid (mm), peak frame and scalings.

    Raises
    ------
    MaskError
        A mask that is empty, not binary or on another grid; too few automatic candidates.
    TimingError
        A scan that does not start at injection (automatic region).
    InputError
        A PET in a unit other than Bq/ml or SUV, or invalid scalings.

    Examples
    --------
    >>> import numpy as np
    >>> from core.imaging.volume import DynamicVolume
    >>> data = np.zeros((4, 4, 4, 3), np.float32); data[1, 1, 1] = [5.0, 2.0, 1.0]
    >>> pet = DynamicVolume(data, np.eye(4), "PT", "Bq/ml", frame_start_s=np.array([0.0, 60, 120]),
    ...                     frame_duration_s=np.array([60.0, 60, 60]))
    >>> mask = np.zeros((4, 4, 4), np.uint8); mask[1, 1, 1] = 1
    >>> f = image_derived_input(pet, mask)
    >>> f.time_min.tolist(), f.plasma.tolist()
    ([0.0, 0.5, 1.5, 2.5, 3.0], [0.0, 5.0, 2.0, 1.0, 0.5])
    """
    if not isinstance(pet, DynamicVolume):
        raise InputError("an image-derived input needs a dynamic (4D) PET with frame timing",
                         path=getattr(pet, "source", None))
    unit = {"bq/ml": "Bq/ml", "suv": "SUV"}.get(str(pet.units).lower())
    if unit is None:
        raise InputError(f"the PET is in {pet.units!r}; an input function needs Bq/ml or SUV", path=pet.source,
                         fix="Import the PET with its activity-concentration scaling (Bq/ml).")
    rc = float(recovery_coefficient)
    if not (math.isfinite(rc) and 0 < rc <= 1):
        raise InputError(f"recovery_coefficient must lie in (0, 1], got {recovery_coefficient!r}",
                         fix="Use 1 for no correction, or the recovery measured for your scanner and vessel size.")
    rho = float(plasma_to_blood_ratio)
    if not (math.isfinite(rho) and rho > 0):
        raise InputError(f"plasma_to_blood_ratio must be positive, got {plasma_to_blood_ratio!r}")
    if blood_samples is not None and rc != 1.0:
        raise InputError("give either blood_samples or recovery_coefficient, not both",
                         fix="Blood samples already fix the scale of the curve.")

    if vessel_mask is None:
        mask = vessel_roi(pet, n_voxels=n_voxels, early_end_min=early_end_min, late_start_min=late_start_min,
                          min_washout_ratio=min_washout_ratio, early_top_fraction=early_top_fraction)
        method = "automatic"
    else:
        mask = check_mask(vessel_mask, pet)
        method = "user mask"
    sel = np.asarray(mask.data, dtype=bool)
    n_sel = int(sel.sum())
    frames = np.asarray(pet.data)[sel].astype(float).mean(axis=0)
    clipped = int(np.count_nonzero(frames < 0))
    frames = np.maximum(frames, 0.0)

    mid, end = pet.frame_mid_min, pet.frame_end_min
    slope = (frames[-1] - frames[-2]) / (mid[-1] - mid[-2]) if frames.size >= 2 else 0.0
    tail = max(frames[-1] + slope * (end[-1] - mid[-1]), 0.0)
    t = np.concatenate([[0.0], mid, [end[-1]]])
    curve = np.concatenate([[0.0], frames, [tail]])

    scale, n_samples = 1.0, 0
    if blood_samples is not None:
        scale, n_samples = _blood_scale(blood_samples, t, curve)
    whole_blood = curve * scale / rc
    plasma = whole_blood * rho

    spacing = pet.spacing
    volume_ml = n_sel * float(np.prod(spacing)) / 1000.0
    centroid = Volume(sel, pet.affine).centroid_mm()
    details: dict[str, Any] = {
        "method": method,
        "n_voxels": n_sel,
        "volume_ml": round(volume_ml, 4),
        "centroid_mm": [round(float(v), 2) for v in centroid],
        "sample_times": "frame mid-times, plus (0, 0) at injection and a linear extrapolation to the scan end",
        "recovery_coefficient": rc,
        "blood_sample_scale": scale,
        "n_blood_samples": n_samples,
        "plasma_to_blood_ratio": rho,
        "metabolite_corrected": False,
        "clipped_negative_frames": clipped,
        "pet_source": pet.source,
    }
    if method == "automatic":
        details.update({k: mask.meta[k] for k in ("peak_frame", "n_candidates", "voxels_ijk", "early_end_min",
                                                  "min_washout_ratio", "early_top_fraction")})
        where = (f"the {n_sel} voxels ({volume_ml:.2f} ml) whose activity peaks earliest and highest and then washes "
                 f"out (found automatically: carotid arteries or venous sinuses in brain PET)")
    else:
        where = f"the vessel region drawn by the user ({n_sel} voxels, {volume_ml:.2f} ml)"
    if blood_samples is not None:
        scaling = f" Scaled by {scale:.3g} to match {n_samples} measured blood sample(s)."
    elif rc != 1.0:
        scaling = f" Divided by a recovery coefficient of {rc:.3g} for partial volume."
    else:
        scaling = (" Not corrected for partial volume: in vessels narrower than a few times the scanner resolution "
                   "the peak is underestimated and the late curve raised by surrounding tissue.")
    start_note = ""
    if pet.frame_start_min[0] > 1e-9:
        start_note = (f" The scan starts {pet.frame_start_min[0]:.3g} min after injection; before that the curve is "
                      f"unknown and drawn as a straight line from zero.")
    description = (f"Image-derived input: mean activity of {where}, one sample per frame.{scaling} Plasma is taken "
                   f"as {rho:g} x whole blood, without metabolite correction.{start_note}")
    return InputFunction(t, plasma, whole_blood, unit=unit, source="image-derived", description=description,
                         details=details)
