r"""Arterial input functions for DCE-MRI: population curves, bolus arrival and delay.

Concentrations are in mM (mmol/l) of gadolinium contrast agent, times in minutes from the
injection.

Parker population AIF (:func:`parker_aif`)
------------------------------------------
Parker et al. (2006) fitted a functional form to the first-pass and recirculation of the
*blood* concentration averaged over 67 AIFs of 23 cancer patients (0.1 mmol/kg Gd-DTPA-BMA):

.. math::

    C_b(t) = \sum_{n=1}^{2} \frac{A_n}{\sigma_n \sqrt{2\pi}}
             \exp\!\left(-\frac{(t - T_n)^2}{2\sigma_n^2}\right)
             + \frac{\alpha\, e^{-\beta t}}{1 + e^{-s (t - \tau)}}

with :math:`A_1 = 0.809` mM min, :math:`A_2 = 0.330` mM min, :math:`T_1 = 0.17046` min,
:math:`T_2 = 0.365` min, :math:`\sigma_1 = 0.0563` min, :math:`\sigma_2 = 0.132` min,
:math:`\alpha = 1.050` mM, :math:`\beta = 0.1685` /min, :math:`s = 38.078` /min,
:math:`\tau = 0.483` min. Plasma concentration is :math:`C_p = C_b / (1 - \mathrm{Hct})`.

Preclinical mouse AIF (:func:`mouse_aif`)
-----------------------------------------
A bi-exponential plasma curve after a short bolus, the form of Tofts & Kermode (1991),

.. math::

    C_p(t) = \sum_{i=1}^{2} a_i\, e^{-m_i t}\quad (t \ge 0),

convolved with a box-car injection of duration :math:`w` (so that the curve rises from 0
and stays continuous): for :math:`t' = \min(t, w)`,
:math:`C_p(t) = \sum_i a_i \frac{1 - e^{-m_i t'}}{m_i w} e^{-m_i (t - t')}`.
The default values are **(this work)**, chosen to the order of magnitude of a
0.1 mmol/kg Gd-chelate bolus in a mouse: initial plasma concentration about dose over
plasma volume (0.1 mmol/kg over roughly 0.04 l/kg of plasma: blood volume about 0.07 l/kg,
order of magnitude from Diehl et al. 2001, haematocrit about 0.4) gives
:math:`a_1 + a_2 \approx 2.2` mM; fast distribution into the extracellular space
(:math:`m_1 = 2` /min) and renal elimination with a half-life of about 14 min
(:math:`m_2 = 0.05` /min). Replace them with a measured or published AIF of your strain,
agent and dose when you have one.

Bolus arrival (:func:`estimate_bolus_arrival`, Cheong et al. 2003)
------------------------------------------------------------------
The curve up to its peak is fitted by a continuous linear-quadratic model,
:math:`C(t) = \beta_0 + \beta_1 t` for :math:`t \le t_0` and
:math:`\beta_0 + \beta_1 t + \beta_2 (t - t_0)^2` after; :math:`t_0` (the bolus arrival
time) is the knot with the least residual sum of squares over a grid four times finer than
the sampling. :func:`shift_aif` delays an input by linear interpolation.

References
----------
.. [1] Parker GJM, Roberts C, Macdonald A, et al. Experimentally-derived functional form for a
   population-averaged high-temporal-resolution arterial input function for dynamic
   contrast-enhanced MRI. Magn Reson Med 2006;56:993-1000.
.. [2] Tofts PS, Kermode AG. Measurement of the blood-brain barrier permeability and leakage
   space using dynamic MR imaging. 1. Fundamental concepts. Magn Reson Med 1991;17:357-367.
.. [3] Cheong LH, Koh TS, Hou Z. An automatic approach for estimating bolus arrival time in
   dynamic contrast MRI using piecewise continuous regression models. Phys Med Biol
   2003;48:N83-N88.
.. [4] Diehl KH, Hull R, Morton D, et al. A good practice guide to the administration of
   substances and removal of blood, including routes and volumes. J Appl Toxicol
   2001;21:15-23.
"""

from __future__ import annotations

import math

import numpy as np

from core.errors import InputError, TimingError

__all__ = ["PARKER_2006", "MOUSE_AIF_THIS_WORK", "parker_aif", "mouse_aif", "check_time_min",
           "estimate_bolus_arrival", "shift_aif"]

#: Parker et al. (2006) population parameters (blood concentration, t in minutes).
PARKER_2006 = {"A1": 0.809, "A2": 0.330, "T1": 0.17046, "T2": 0.365, "sigma1": 0.0563,
               "sigma2": 0.132, "alpha": 1.050, "beta": 0.1685, "s": 38.078, "tau": 0.483}

#: Bi-exponential mouse plasma AIF (this work; see the module docstring): mM, 1/min, min.
MOUSE_AIF_THIS_WORK = {"a1": 1.5, "m1": 2.0, "a2": 0.7, "m2": 0.05, "injection_min": 0.1}


def check_time_min(t_min, name: str = "t_min", *, strict: bool = False, min_points: int = 1) -> np.ndarray:
    """Validate a time grid in minutes: 1D, finite, non-decreasing (increasing if ``strict``).

    Examples
    --------
    >>> check_time_min([0, 0.5, 1.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    t = np.asarray(t_min, dtype=np.float64)
    if t.ndim != 1 or t.size < min_points:
        raise TimingError(f"{name} must be a 1D array of at least {min_points} times in minutes, "
                          f"got shape {t.shape}", fix="Give one time per frame, in minutes from injection.")
    if not np.all(np.isfinite(t)):
        j = int(np.argmax(~np.isfinite(t)))
        raise TimingError(f"{name}[{j}] = {t[j]!r} is not a finite time",
                          fix="Remove NaN or infinite frame times.")
    steps = np.diff(t)
    bad = steps <= 0 if strict else steps < 0
    if np.any(bad):
        j = int(np.argmax(bad))
        word = "increase strictly" if strict else "not decrease"
        raise TimingError(f"{name} must {word}, but {name}[{j}] = {t[j]!r} and "
                          f"{name}[{j + 1}] = {t[j + 1]!r} min",
                          fix="Sort the frames by acquisition time and remove repeated times.")
    return t


def _check_hct(hct) -> float | None:
    if hct is None:
        return None
    h = float(hct)
    if not (0.0 <= h < 1.0):
        raise InputError(f"haematocrit hct = {hct!r} must lie in [0, 1)",
                         fix="Give a fraction such as 0.42, not a percentage.")
    return h


def parker_aif(t_min, *, delay_min: float = 0.0, hct: float | None = None) -> np.ndarray:
    """Parker et al. (2006) population arterial input function, mM.

    Parameters
    ----------
    t_min : array-like of shape (T,)
        Times in minutes from injection; finite and non-decreasing.
    delay_min : float, default=0.0
        Bolus arrival delay in minutes; the curve is zero before it.
    hct : float, optional
        Haematocrit in [0, 1). ``None`` (default) returns the *blood* concentration of the
        paper; a value returns plasma concentration ``C_b / (1 - hct)``.

    Returns
    -------
    ndarray of float64, shape (T,)
        Blood (or plasma) concentration in mM.

    Examples
    --------
    >>> c = parker_aif([0.0, 0.17046, 5.0], hct=0.42)
    >>> bool(c[1] > 5.0 > c[2] > 0.5)
    True
    """
    t = check_time_min(t_min)
    h = _check_hct(hct)
    d = float(delay_min)
    if not math.isfinite(d):
        raise InputError(f"delay_min = {delay_min!r} is not finite", fix="Give the delay in minutes.")
    p = PARKER_2006
    tt = t - d
    gauss = sum(p[f"A{n}"] / (p[f"sigma{n}"] * math.sqrt(2 * math.pi))
                * np.exp(-((tt - p[f"T{n}"]) ** 2) / (2 * p[f"sigma{n}"] ** 2)) for n in (1, 2))
    sigmoid = p["alpha"] * np.exp(-p["beta"] * tt) / (1.0 + np.exp(-p["s"] * (tt - p["tau"])))
    cb = np.where(tt >= 0, gauss + sigmoid, 0.0)
    return np.asarray(cb if h is None else cb / (1.0 - h), dtype=np.float64)


def mouse_aif(t_min, *, delay_min: float = 0.0, a1: float = 1.5, m1: float = 2.0, a2: float = 0.7,
              m2: float = 0.05, injection_min: float = 0.1) -> np.ndarray:
    """Bi-exponential preclinical (mouse) plasma AIF after a short bolus, mM (this work).

    Parameters
    ----------
    t_min : array-like of shape (T,)
        Times in minutes from injection; finite and non-decreasing.
    delay_min : float, default=0.0
        Bolus arrival delay in minutes; the curve is zero before it.
    a1, a2 : float, default=1.5, 0.7
        Amplitudes in mM (this work, order of magnitude from dose over plasma volume).
    m1, m2 : float, default=2.0, 0.05
        Distribution and elimination rates in 1/min (this work).
    injection_min : float, default=0.1
        Duration of the box-car injection in minutes (> 0).

    Returns
    -------
    ndarray of float64, shape (T,)
        Plasma concentration in mM.

    Examples
    --------
    >>> c = mouse_aif([0.0, 0.1, 10.0])
    >>> float(c[0]), bool(c[1] > c[2] > 0)
    (0.0, True)
    """
    t = check_time_min(t_min)
    vals = {"a1": a1, "m1": m1, "a2": a2, "m2": m2, "injection_min": injection_min}
    for k, v in vals.items():
        if not (math.isfinite(float(v)) and float(v) >= 0) or (k in ("m1", "m2", "injection_min") and v <= 0):
            raise InputError(f"mouse_aif: {k} = {v!r} must be finite and positive",
                             fix="Give amplitudes in mM, rates in 1/min and the injection duration in minutes.")
    tt = np.maximum(t - float(delay_min), 0.0)
    w = float(injection_min)
    tp = np.minimum(tt, w)
    out = np.zeros_like(tt)
    for a, m in ((a1, m1), (a2, m2)):
        out += a * (-np.expm1(-m * tp)) / (m * w) * np.exp(-m * (tt - tp))
    return out.astype(np.float64)


def shift_aif(cp, t_min, delay_min: float) -> np.ndarray:
    """Delay an input curve by ``delay_min`` minutes: ``cp(t - delay)`` by linear interpolation.

    Before the first sample the first value is held, after the last the last value.

    Parameters
    ----------
    cp : array-like of shape (T,)
        Input concentration (any unit), finite.
    t_min : array-like of shape (T,)
        Sample times in minutes, strictly increasing.
    delay_min : float
        Delay in minutes (negative moves the curve earlier).

    Returns
    -------
    ndarray of float64, shape (T,)

    Examples
    --------
    >>> shift_aif([0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0], 1.0).tolist()
    [0.0, 0.0, 0.0, 1.0]
    """
    t = check_time_min(t_min, strict=True, min_points=2)
    c = np.asarray(cp, dtype=np.float64)
    if c.shape != t.shape:
        raise InputError(f"cp has {c.size} samples but t_min has {t.size}", fix="Give cp on the same time grid.")
    if not np.all(np.isfinite(c)):
        raise InputError("cp holds NaN or infinite values", fix="Remove or interpolate the bad samples.")
    d = float(delay_min)
    if not math.isfinite(d):
        raise InputError(f"delay_min = {delay_min!r} is not finite", fix="Give the delay in minutes.")
    return np.interp(t - d, t, c, left=c[0], right=c[-1])


def estimate_bolus_arrival(curve, t_min, *, oversample: int = 4) -> np.ndarray:
    """Bolus arrival time of each curve by the linear-quadratic model of Cheong et al. (2003).

    Parameters
    ----------
    curve : array-like of shape (..., T)
        Concentration (or signal enhancement) curves; the fit uses samples up to each
        curve's maximum.
    t_min : array-like of shape (T,)
        Sample times in minutes, strictly increasing.
    oversample : int, default=4
        Candidate knots per sampling interval.

    Returns
    -------
    ndarray of float64, shape curve.shape[:-1]
        Bolus arrival time in minutes; NaN where the curve has non-finite values or
        fewer than 3 samples up to its peak.

    Examples
    --------
    >>> t = np.linspace(0, 3, 37)
    >>> c = np.where(t > 1.0, (t - 1.0) ** 2, 0.0)
    >>> round(float(estimate_bolus_arrival(c, t)), 3)
    1.0
    """
    t = check_time_min(t_min, strict=True, min_points=3)
    y = np.asarray(curve, dtype=np.float64)
    if y.ndim == 0 or y.shape[-1] != t.size:
        raise InputError(f"curve has {y.shape[-1] if y.ndim else 1} time points but t_min has {t.size}",
                         fix="Give the curve on the same time grid.")
    lead = y.shape[:-1]
    y = y.reshape(-1, t.size)
    finite = np.all(np.isfinite(y), axis=-1)
    y = np.where(finite[:, None], y, 0.0)
    i_peak = np.argmax(y, axis=-1)
    w = (np.arange(t.size)[None, :] <= i_peak[:, None]).astype(np.float64)  # (N, T)
    k = max(int(oversample), 1)
    cand = np.interp(np.arange((t.size - 1) * k + 1) / k, np.arange(t.size), t)  # (K,)
    # basis (K, T, 3): 1, t, (t - t0)_+^2
    hinge = np.maximum(t[None, :] - cand[:, None], 0.0) ** 2
    ones = np.broadcast_to(1.0, hinge.shape)
    tt = np.broadcast_to(t[None, :], hinge.shape)
    B = np.stack([ones, tt, hinge], axis=-1)
    best = np.full(y.shape[0], np.nan)
    best_rss = np.full(y.shape[0], np.inf)
    for j in range(cand.size):  # K small 3x3 solves per curve, vectorised over curves
        Bj = B[j]
        G = np.einsum("nt,ta,tb->nab", w, Bj, Bj) + 1e-12 * np.eye(3)
        rhs = np.einsum("nt,ta,nt->na", w, Bj, y)
        beta = np.linalg.solve(G, rhs[..., None])[..., 0]
        res = y - beta @ Bj.T
        rss = np.sum(w * res * res, axis=-1)
        valid = cand[j] <= t[i_peak]
        better = valid & (rss < best_rss * (1 - 1e-12))
        best = np.where(better, cand[j], best)
        best_rss = np.where(better, rss, best_rss)
    bad = ~finite | (i_peak < 2)
    best = np.where(bad, np.nan, best)
    return best.reshape(lead)
