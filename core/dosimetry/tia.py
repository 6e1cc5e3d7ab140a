r"""Time-integrated activity (TIA) of a region from a few measured time points.

A region's activity :math:`A(t)` (MBq) is measured at a few times :math:`t_i` (h) after
injection; its time integral from injection to infinity, :math:`\tilde A` (MBq h), is what
dose scales with. Three families of methods (MIRD Pamphlet 26-style practice; Sjögreen
Gleisner et al. 2022):

Fitted sums of exponentials (:func:`fit_tia`)
---------------------------------------------
* mono-exponential, :math:`A(t) = a\,e^{-\lambda t}`, :math:`\tilde A = a/\lambda`;
* bi-exponential uptake and washout, :math:`A(t) = a\,(e^{-\lambda_1 t} - e^{-\lambda_2 t})`,
  :math:`\lambda_2 > \lambda_1`, :math:`\tilde A = a\,(1/\lambda_1 - 1/\lambda_2)`;
* tri-exponential, :math:`A(t) = a_1 e^{-\lambda_1 t} + a_2 e^{-\lambda_2 t} -
  (a_1 + a_2) e^{-\lambda_3 t}` (zero at injection), :math:`\tilde A = a_1/\lambda_1 +
  a_2/\lambda_2 - (a_1 + a_2)/\lambda_3`.

Every elimination rate is bounded below by the physical decay constant
:math:`\lambda_p = \ln 2 / T_{1/2}` (biological clearance cannot be negative), so no fit
extrapolates a tail slower than physical decay. Fits are weighted least squares
(``scipy.optimize.least_squares``, relative weights by default); a model is used only with
more points than parameters, and among the converged ones the lowest corrected Akaike
criterion (AICc) wins, as Glatting et al. (2007) recommend for dosimetry.

Trapezoid with tail (:func:`trapezoid_tia`)
-------------------------------------------
The trapezoid rule from injection (activity 0, or the first value, see ``start``) to the last
point, plus the tail :math:`A(t_n)/\lambda_{tail}` with :math:`\lambda_{tail}` the
effective rate of the last two points, bounded below by :math:`\lambda_p`.

Single time point (:func:`single_time_point_tia`, Hänscheid et al. 2018)
-------------------------------------------------------------------------
:math:`\tilde A \approx A(t)\,2t/\ln 2`. For a mono-exponential with effective half-life
:math:`T` the ratio of this estimate to the truth is :math:`R(x) = 2x\,2^{-x}`,
:math:`x = t/T`: exact at :math:`t = T` and :math:`t = 2T`, at most +6.1 % between them
(:math:`x = 1/\ln 2`), and within -11 % from :math:`x = 0.75` to :math:`x = 2.5`. When an
effective half-life is given (e.g. from the population), the function returns this bias
with the estimate.

References
----------
.. [1] Glatting G, Kletting P, Reske SN, Hohl K, Ring C. Choosing the optimal fit function:
   comparison of the Akaike information criterion and the F-test. Med Phys
   2007;34:4285-4292.
.. [2] Hänscheid H, Lapa C, Buck AK, Lassmann M, Werner RA. Dose mapping after endoradiotherapy
   with 177Lu-DOTATATE/DOTATOC by a single measurement after 4 days. J Nucl Med
   2018;59:75-81.
.. [3] Sjögreen Gleisner K, Chouin N, Gabina PM, et al. EANM dosimetry committee
   recommendations for dosimetry of 177Lu-labelled somatostatin-receptor- and PSMA-targeting
   ligands. Eur J Nucl Med Mol Imaging 2022;49:1778-1809.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from core.errors import InputError, TimingError

__all__ = ["TIAFit", "fit_tia", "trapezoid_tia", "single_time_point_tia", "voxel_tia", "MODELS",
           "check_time_activity"]

#: Sum-of-exponential models and their numbers of parameters.
MODELS = {"mono-exp": 2, "bi-exp": 3, "tri-exp": 5}


@dataclasses.dataclass
class TIAFit:
    """A time-integrated activity and how it was obtained.

    Attributes
    ----------
    method : str
        ``"mono-exp"``, ``"bi-exp"``, ``"tri-exp"``, ``"trapezoid"`` or ``"single time point"``.
    tia_mbq_h : float
        Time-integrated activity, MBq h.
    params : dict
        Fitted amplitudes (MBq) and rates (1/h), or the method's inputs.
    aicc : float
        Corrected Akaike criterion of the fit (NaN for non-fitted methods).
    r2 : float
        Coefficient of determination of the fit (NaN for non-fitted methods).
    candidates : dict
        AICc of every model tried (``inf`` when it did not converge or had too few points).
    note : str
        Why this method, in one sentence.
    """

    method: str
    tia_mbq_h: float
    params: dict
    aicc: float = float("nan")
    r2: float = float("nan")
    candidates: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    def curve(self, t_h) -> np.ndarray:
        """The fitted activity at ``t_h`` hours (MBq); fitted models only."""
        if self.method not in MODELS:
            raise InputError(f"{self.method} has no fitted curve")
        return _model(self.method, _vector(self.method, self.params), np.asarray(t_h, float))


def check_time_activity(times_h, activity_mbq, *, where: str = "the region") -> tuple[np.ndarray, np.ndarray]:
    """Validate a time-activity series: finite, times increasing and > 0, activities >= 0."""
    t = np.asarray(times_h, float).ravel()
    a = np.asarray(activity_mbq, float).ravel()
    if t.size != a.size or t.size == 0:
        raise InputError(f"{where}: {t.size} time points but {a.size} activities",
                         fix="Give one activity per time point.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
        raise InputError(f"{where}: times or activities are not finite", fix="Remove NaN or infinite values.")
    if np.any(np.diff(t) <= 0):
        raise TimingError(f"{where}: time points are not increasing ({t.tolist()} h)",
                          fix="Sort the scans by acquisition time after injection; remove repeated times.")
    if t[0] <= 0:
        raise TimingError(f"{where}: time points must be after injection, got {t[0]:g} h",
                          fix="Give times in hours after the injection.")
    if np.any(a < 0):
        raise InputError(f"{where}: negative activity {a.min():g} MBq", fix="Check the quantification.")
    return t, a


def _lambda_phys(half_life_h: float) -> float:
    if not (isinstance(half_life_h, (int, float)) and math.isfinite(half_life_h) and half_life_h > 0):
        raise InputError(f"half-life {half_life_h!r} h is not a positive number",
                         fix="Use core.dosimetry.nuclides.nuclide_data(name).half_life_s / 3600.")
    return math.log(2.0) / float(half_life_h)


def _model(name: str, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    if name == "mono-exp":
        a, lam = p
        return a * np.exp(-lam * t)
    if name == "bi-exp":
        a, l1, dl = p
        return a * (np.exp(-l1 * t) - np.exp(-(l1 + dl) * t))
    a1, l1, a2, dl2, dl3 = p
    l2, l3 = l1 + dl2, l1 + dl2 + dl3
    return a1 * np.exp(-l1 * t) + a2 * np.exp(-l2 * t) - (a1 + a2) * np.exp(-l3 * t)


def _tia(name: str, p: np.ndarray) -> float:
    if name == "mono-exp":
        return float(p[0] / p[1])
    if name == "bi-exp":
        a, l1, dl = p
        return float(a * (1.0 / l1 - 1.0 / (l1 + dl)))
    a1, l1, a2, dl2, dl3 = p
    l2, l3 = l1 + dl2, l1 + dl2 + dl3
    return float(a1 / l1 + a2 / l2 - (a1 + a2) / l3)


def _named(name: str, p: np.ndarray) -> dict:
    if name == "mono-exp":
        return {"a_mbq": float(p[0]), "lambda_per_h": float(p[1])}
    if name == "bi-exp":
        return {"a_mbq": float(p[0]), "lambda1_per_h": float(p[1]), "lambda2_per_h": float(p[1] + p[2])}
    return {"a1_mbq": float(p[0]), "lambda1_per_h": float(p[1]), "a2_mbq": float(p[2]),
            "lambda2_per_h": float(p[1] + p[3]), "lambda3_per_h": float(p[1] + p[3] + p[4])}


def _vector(name: str, params: dict) -> np.ndarray:
    if name == "mono-exp":
        return np.array([params["a_mbq"], params["lambda_per_h"]])
    if name == "bi-exp":
        return np.array([params["a_mbq"], params["lambda1_per_h"], params["lambda2_per_h"] - params["lambda1_per_h"]])
    return np.array([params["a1_mbq"], params["lambda1_per_h"], params["a2_mbq"],
                     params["lambda2_per_h"] - params["lambda1_per_h"],
                     params["lambda3_per_h"] - params["lambda2_per_h"]])


def fitted_curve(method: str, params: dict, times_h) -> np.ndarray:
    """Activity (MBq) of a stored exponential fit (:attr:`TIAFit.method`, :attr:`TIAFit.params`) at ``times_h``.

    Examples
    --------
    >>> fitted_curve("mono-exp", {"a_mbq": 10.0, "lambda_per_h": 0.0}, [0.0, 5.0]).tolist()
    [10.0, 10.0]
    """
    if method not in MODELS:
        raise InputError(f"{method!r} is not an exponential fit", fix=f"Use one of {list(MODELS)}.")
    return _model(method, _vector(method, params), np.asarray(times_h, float))


def _starts(name: str, t: np.ndarray, a: np.ndarray, lp: float) -> list[np.ndarray]:
    peak = float(a.max())
    tail = max(lp * 1.05, _tail_rate(t, a, lp))
    if name == "mono-exp":
        return [np.array([peak * math.exp(tail * t[int(np.argmax(a))]), tail])]
    if name == "bi-exp":
        return [np.array([peak * 2.0, tail, r]) for r in (1.0, 0.1, 5.0)]
    return [np.array([peak, tail, peak, r, 2.0]) for r in (0.1, 1.0)]


def _bounds(name: str, lp: float):
    eps = 1e-9
    if name == "mono-exp":
        return [0.0, lp], [np.inf, np.inf]
    if name == "bi-exp":
        return [0.0, lp, eps], [np.inf, np.inf, np.inf]
    return [0.0, lp, -np.inf, eps, eps], [np.inf, np.inf, np.inf, np.inf, np.inf]


def _tail_rate(t: np.ndarray, a: np.ndarray, lp: float) -> float:
    if t.size >= 2 and a[-1] > 0 and a[-2] > 0 and a[-1] < a[-2]:
        return max(lp, math.log(a[-2] / a[-1]) / (t[-1] - t[-2]))
    return lp


def _fit_one(name: str, t: np.ndarray, a: np.ndarray, lp: float, weights: np.ndarray):
    from scipy.optimize import least_squares

    lo, hi = _bounds(name, lp)
    best = None
    for x0 in _starts(name, t, a, lp):
        x0 = np.clip(x0, np.asarray(lo) + 1e-12, np.asarray(hi))
        try:
            res = least_squares(lambda p: (_model(name, p, t) - a) * weights, x0, bounds=(lo, hi), method="trf",
                                x_scale="jac", max_nfev=5000)
        except (ValueError, FloatingPointError):
            continue
        if res.success and (best is None or res.cost < best.cost):
            best = res
    return best


def _aicc(rss: float, n: int, k: int) -> float:
    if n - k - 1 <= 0:
        return float("inf")
    rss = max(rss, 1e-300)
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def fit_tia(times_h, activity_mbq, half_life_h: float, *, models: Sequence[str] = tuple(MODELS),
            weighting: str = "relative", where: str = "the region") -> TIAFit:
    """Fit sums of exponentials and integrate the best to infinity (module docstring).

    Parameters
    ----------
    times_h : array-like
        Time points after injection, hours, increasing.
    activity_mbq : array-like
        Activity of the region at each time, MBq.
    half_life_h : float
        Physical half-life, hours (the lower bound of every elimination rate).
    models : sequence of str, default=all of :data:`MODELS`
        Candidates; each needs more points than parameters (AICc needs ``n > k + 1``).
    weighting : {"relative", "uniform"}, default="relative"
        Residuals divided by the measured activity (constant relative error) or not.
    where : str
        Named in error messages.

    Returns
    -------
    TIAFit

    Raises
    ------
    InputError, TimingError
        Bad series; no candidate model has enough points or converges.

    Examples
    --------
    >>> t = np.array([4.0, 24.0, 96.0, 168.0]); lam = math.log(2) / 50.0
    >>> fit = fit_tia(t, 100 * np.exp(-lam * t), half_life_h=159.5, models=("mono-exp",))
    >>> round(fit.tia_mbq_h / (100 / lam), 4)
    1.0
    """
    t, a = check_time_activity(times_h, activity_mbq, where=where)
    lp = _lambda_phys(half_life_h)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise InputError(f"unknown TIA models {unknown or list(models)}", fix=f"Use some of {list(MODELS)}.")
    if weighting not in ("relative", "uniform"):
        raise InputError(f"weighting={weighting!r} is not 'relative' or 'uniform'")
    floor = max(float(a.max()) * 1e-3, 1e-12)
    weights = 1.0 / np.maximum(a, floor) if weighting == "relative" else np.ones_like(a) / max(float(a.max()), 1e-12)
    candidates, fits = {}, {}
    for name in models:
        k = MODELS[name]
        if t.size <= k + 1:
            candidates[name] = float("inf")
            continue
        res = _fit_one(name, t, a, lp, weights)
        tia = _tia(name, res.x) if res is not None else float("nan")
        if res is None or not (math.isfinite(tia) and tia > 0):
            candidates[name] = float("inf")
            continue
        rss = float(np.sum(res.fun ** 2))
        candidates[name] = _aicc(rss, t.size, k)
        fits[name] = (res.x, tia, rss)
    if not fits:
        need = min(MODELS[m] for m in models) + 2
        raise InputError(f"{where}: no exponential model could be fitted to {t.size} points",
                         fix=f"Fit needs at least {need} time points; use trapezoid_tia or single_time_point_tia.")
    name = min(fits, key=lambda m: (candidates[m], MODELS[m]))
    p, tia, _ = fits[name]
    resid = _model(name, p, t) - a
    ss_tot = float(np.sum((a - a.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return TIAFit(method=name, tia_mbq_h=tia, params=_named(name, p), aicc=candidates[name], r2=r2,
                  candidates=candidates,
                  note=f"{name} has the lowest AICc of {', '.join(sorted(fits))} (Glatting et al. 2007).")


def trapezoid_tia(times_h, activity_mbq, half_life_h: float, *, start: str = "zero",
                  where: str = "the region") -> TIAFit:
    """Trapezoid rule over the measured points plus a tail no slower than physical decay.

    Parameters
    ----------
    start : {"zero", "constant"}, default="zero"
        Activity between injection and the first point: rising linearly from 0 (uptake),
        or equal to the first value (instant uptake, e.g. blood).

    Examples
    --------
    >>> round(trapezoid_tia([24.0, 48.0], [10.0, 5.0], half_life_h=1000).tia_mbq_h, 2)
    473.12
    """
    t, a = check_time_activity(times_h, activity_mbq, where=where)
    lp = _lambda_phys(half_life_h)
    if start not in ("zero", "constant"):
        raise InputError(f"start={start!r} is not 'zero' or 'constant'")
    head = float(0.5 * a[0] * t[0] if start == "zero" else a[0] * t[0])
    body = float(np.trapezoid(a, t)) if t.size > 1 else 0.0
    rate = _tail_rate(t, a, lp)
    tail = float(a[-1] / rate)
    return TIAFit(method="trapezoid", tia_mbq_h=float(head + body + tail),
                  params={"head_mbq_h": head, "body_mbq_h": body, "tail_mbq_h": tail, "tail_rate_per_h": rate},
                  note="Trapezoid over the points; tail from the last two points' effective rate, never slower "
                       "than physical decay.")


def single_time_point_tia(time_h: float, activity_mbq: float, *, effective_half_life_h: float | None = None,
                          where: str = "the region") -> TIAFit:
    r"""Hänscheid's single-time-point estimate :math:`A(t)\,2t/\ln 2` (module docstring).

    Parameters
    ----------
    time_h, activity_mbq : float
    effective_half_life_h : float, optional
        Expected effective half-life (e.g. population value): the estimate's bias
        :math:`R(t/T) - 1` for a mono-exponential is returned in ``params["bias"]``.

    Examples
    --------
    >>> fit = single_time_point_tia(96.0, 10.0, effective_half_life_h=96.0)
    >>> round(fit.tia_mbq_h, 1), fit.params["bias"]
    (2770.0, 0.0)
    """
    t, a = check_time_activity([time_h], [activity_mbq], where=where)
    tia = float(a[0] * 2.0 * t[0] / math.log(2.0))
    params = {"time_h": float(t[0]), "activity_mbq": float(a[0])}
    note = "Single time point (Hänscheid et al. 2018)."
    if effective_half_life_h is not None:
        _lambda_phys(effective_half_life_h)  # validates it
        x = float(t[0]) / float(effective_half_life_h)
        params["bias"] = round(2.0 * x * 2.0 ** (-x) - 1.0, 12)
        note += f" For T_eff = {effective_half_life_h:g} h the estimate is off by {params['bias']:+.1%}."
    return TIAFit(method="single time point", tia_mbq_h=tia, params=params, note=note)


def voxel_tia(times_h, activity, half_life_h: float, *, method: str = "mono-exp tail", n_tail: int = 2,
              where: str = "the activity maps") -> np.ndarray:
    r"""Time-integrated activity of every voxel of co-registered activity maps (this work).

    ``"trapezoid"``: :func:`trapezoid_tia` voxel by voxel (rising from 0 before the first
    point; tail at the last two points' effective rate, never slower than physical decay).
    ``"mono-exp tail"`` (default): the trapezoid up to the first of the last ``n_tail``
    points, then a mono-exponential fitted to those points by weighted log-linear least
    squares (weights :math:`A_i^2`, the usual correction for the log transform), its rate
    bounded below by :math:`\lambda_p` (amplitude refitted with that rate), integrated to infinity; voxels whose
    tail points are not all positive fall back to physical decay from the first tail point.

    Parameters
    ----------
    times_h : array-like of shape (T,)
        Hours after injection, increasing.
    activity : ndarray of shape (T, ...)
        Activity per voxel (any unit U) at each time, on one grid.
    half_life_h : float
    method : {"mono-exp tail", "trapezoid"}, default="mono-exp tail"
    n_tail : int, default=2
        Points of the exponential tail (>= 2).

    Returns
    -------
    ndarray of shape activity.shape[1:]
        U h per voxel.

    Examples
    --------
    >>> t = np.array([4.0, 24.0, 96.0]); lam = math.log(2) / 50
    >>> maps = 10 * np.exp(-lam * t)[:, None] * np.ones((3, 4))
    >>> a4 = 10 * math.exp(-lam * 4)   # rising from 0 to the first point, then the exact tail
    >>> bool(np.allclose(voxel_tia(t, maps, 159.5, n_tail=3), 0.5 * a4 * 4 + a4 / lam))
    True
    """
    t = np.asarray(times_h, float).ravel()
    a = np.asarray(activity, float)
    if a.ndim < 2 or a.shape[0] != t.size:
        raise InputError(f"{where}: {t.size} time points but activity of shape {a.shape}",
                         fix="Stack one map per time point along the first axis, all on one grid.")
    check_time_activity(t, np.zeros(t.size), where=where)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{where}: activity maps hold NaN or infinite voxels", fix="Mask or repair them first.")
    if np.any(a < 0):
        a = np.clip(a, 0.0, None)  # reconstructed SPECT/PET can dip below 0 in empty voxels
    lp = _lambda_phys(half_life_h)
    if method not in ("mono-exp tail", "trapezoid"):
        raise InputError(f"method={method!r} is not 'mono-exp tail' or 'trapezoid'")
    flat = a.reshape(t.size, -1)
    if method == "trapezoid" or t.size < 2:
        head = 0.5 * flat[0] * t[0]
        body = np.trapezoid(flat, t, axis=0) if t.size > 1 else 0.0
        rate = np.full(flat.shape[1], lp)
        if t.size >= 2:
            ok = (flat[-1] > 0) & (flat[-2] > flat[-1])
            rate[ok] = np.maximum(lp, np.log(flat[-2, ok] / flat[-1, ok]) / (t[-1] - t[-2]))
        return (head + body + flat[-1] / rate).reshape(a.shape[1:])
    k = int(n_tail)
    if not 2 <= k <= t.size:
        raise InputError(f"n_tail={n_tail!r} must be between 2 and the {t.size} time points")
    first = t.size - k
    head = 0.5 * flat[0] * t[0] + (np.trapezoid(flat[:first + 1], t[:first + 1], axis=0) if first > 0 else 0.0)
    tt, yy = t[first:, None] - t[first], flat[first:]
    positive = np.all(yy > 0, axis=0)
    w = np.where(positive, yy, 0.0) ** 2
    logy = np.log(np.where(yy > 0, yy, 1.0))
    sw, swt, swtt = w.sum(0), (w * tt).sum(0), (w * tt ** 2).sum(0)
    swy, swty = (w * logy).sum(0), (w * tt * logy).sum(0)
    det = sw * swtt - swt ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sw * swty - swt * swy) / det
    good = positive & (det > 0) & np.isfinite(slope)
    rate = np.where(good, np.maximum(lp, -np.where(good, slope, 0.0)), lp)
    decay = np.exp(-rate * tt)  # the amplitude at the tail's first point, refitted with the bounded rate
    amp = (w * yy * decay).sum(0) / np.maximum((w * decay ** 2).sum(0), 1e-300)
    tail = np.where(good, amp / rate, flat[first] / lp)
    return (head + tail).reshape(a.shape[1:])
