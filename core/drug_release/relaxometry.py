r"""Relaxometry for DCE-MRI: T1 maps from variable flip angles, signal to concentration.

Units: repetition time ``tr_ms`` and relaxation times ``t1_ms`` in milliseconds, relaxation
rates R1 and R2* in 1/s, relaxivities in 1/(mM s), concentrations in mM.

Spoiled gradient echo (SPGR) signal
-----------------------------------
.. math::

    S(\alpha) = M_0 \sin\alpha \frac{1 - E_1}{1 - E_1\cos\alpha},\qquad E_1 = e^{-TR/T_1}

(echo-time T2* weighting absorbed into :math:`M_0`).

Variable flip angle T1 (:func:`vfa_t1`, DESPOT1, Deoni et al. 2003)
-------------------------------------------------------------------
The signal equation is linear in :math:`S/\tan\alpha`:

.. math::

    \frac{S}{\sin\alpha} = E_1 \frac{S}{\tan\alpha} + M_0 (1 - E_1),

so an ordinary least-squares line through the points :math:`(S/\tan\alpha, S/\sin\alpha)`
gives slope :math:`E_1` and intercept :math:`M_0(1-E_1)`; :math:`T_1 = -TR/\ln E_1`.
A voxel is flagged (``ok = False``) when the slope is not in (0, 1) or :math:`M_0 \le 0`.

Signal to concentration (:func:`signal_to_concentration`)
---------------------------------------------------------
With :math:`M_0` from the pre-contrast baseline and the native :math:`T_{1,0}`, the SPGR
equation is inverted frame by frame,

.. math::

    E_1(t) = \frac{M_0\sin\alpha - S(t)}{M_0\sin\alpha - S(t)\cos\alpha},\qquad
    R_1(t) = -\frac{\ln E_1(t)}{TR},\qquad C(t) = \frac{R_1(t) - R_{1,0}}{r_1}

(fast water exchange, linear relaxivity). The inversion is undefined when
:math:`S \ge M_0 \sin\alpha` (at or above the fully relaxed signal); those voxels are
flagged. A typical :math:`r_1` of Gd-DTPA in plasma at 1.5 T and 37 °C is 4.1 /(mM s)
(Rohrer et al. 2005).

T2* / susceptibility carriers (:func:`delta_r2star_to_concentration`)
----------------------------------------------------------------------
:math:`C = \Delta R_2^* / r_2^*`, with :math:`\Delta R_2^* = R_2^*(t) - R_{2,0}^*` or, from
gradient-echo signals, :math:`\Delta R_2^* = -\ln(S/S_0)/TE`. :math:`r_2^*` depends strongly on
field strength, particle size and compartmentalisation; there is no default (this work):
calibrate it on phantoms of the carrier at the field strength used.

References
----------
.. [1] Deoni SCL, Rutt BK, Peters TM. Rapid combined T1 and T2 mapping using gradient recalled
   acquisition in the steady state. Magn Reson Med 2003;49:515-526.
.. [2] Rohrer M, Bauer H, Mintorovitch J, Requardt M, Weinmann HJ. Comparison of magnetic
   properties of MRI contrast media solutions at different magnetic field strengths. Invest
   Radiol 2005;40:715-724.
"""

from __future__ import annotations

import math

import numpy as np

from core.errors import InputError

__all__ = ["spgr_signal", "vfa_t1", "signal_to_concentration", "signal_to_delta_r2star",
           "delta_r2star_to_concentration"]


def _positive(value, name: str, unit: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} = {value!r} must be a positive number ({unit})",
                         fix=f"Give {name} in {unit}.")
    return v


def _flip_rad(flip_deg, name: str = "flip angle") -> np.ndarray:
    a = np.asarray(flip_deg, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any((a <= 0) | (a >= 90)):
        raise InputError(f"{name} {a.ravel()[:4].tolist()} must lie in (0, 90) degrees",
                         fix="Give flip angles in degrees, not radians.")
    return np.deg2rad(a)


def spgr_signal(m0, t1_ms, flip_deg, tr_ms: float) -> np.ndarray:
    """Spoiled gradient-echo steady-state signal (forward model).

    Parameters
    ----------
    m0 : array-like
        Equilibrium magnetisation times receiver gain (signal units).
    t1_ms : array-like
        T1 in ms (> 0); broadcasts with ``m0`` and ``flip_deg``.
    flip_deg : array-like
        Flip angle(s) in degrees, in (0, 90).
    tr_ms : float
        Repetition time in ms.

    Returns
    -------
    ndarray of float64, broadcast shape of the inputs

    Examples
    --------
    >>> round(float(spgr_signal(1.0, 1000.0, 90.0 - 1e-9, 1e9)), 6)
    1.0
    """
    tr = _positive(tr_ms, "tr_ms", "ms")
    t1 = np.asarray(t1_ms, dtype=np.float64)
    if np.any(~np.isfinite(t1) | (t1 <= 0)):
        raise InputError("t1_ms must be finite and > 0 ms", fix="Give T1 in milliseconds.")
    a = _flip_rad(flip_deg)
    e1 = np.exp(-tr / t1)
    return np.asarray(m0, dtype=np.float64) * np.sin(a) * (1 - e1) / (1 - e1 * np.cos(a))


def vfa_t1(signals, flip_angles_deg, tr_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1 and M0 maps from variable-flip-angle SPGR signals (DESPOT1 linear fit).

    Parameters
    ----------
    signals : array-like of shape (..., n_angles)
        Magnitude signals per voxel at each flip angle.
    flip_angles_deg : array-like of shape (n_angles,)
        Flip angles in degrees (at least two distinct values in (0, 90)).
    tr_ms : float
        Repetition time in ms.

    Returns
    -------
    t1_ms : ndarray of shape signals.shape[:-1]
        T1 in ms (NaN where not ok).
    m0 : ndarray of shape signals.shape[:-1]
        Equilibrium signal (NaN where not ok).
    ok : ndarray of bool
        False where signals are not finite or the fit is non-physical (slope E1 not in
        (0, 1), or M0 <= 0).

    Examples
    --------
    >>> s = spgr_signal(1000.0, 1200.0, np.array([2.0, 15.0]), 5.0)
    >>> t1, m0, ok = vfa_t1(s, [2.0, 15.0], 5.0)
    >>> round(float(t1), 6), bool(ok)
    (1200.0, True)
    """
    tr = _positive(tr_ms, "tr_ms", "ms")
    a = _flip_rad(flip_angles_deg, "flip_angles_deg")
    if a.ndim != 1 or np.unique(a).size < 2:
        raise InputError(f"flip_angles_deg {np.rad2deg(a).ravel().tolist()} must hold at least two distinct angles",
                         fix="Acquire at least two flip angles (e.g. 2 and 15 degrees).")
    s = np.asarray(signals, dtype=np.float64)
    if s.ndim == 0 or s.shape[-1] != a.size:
        raise InputError(f"signals have {s.shape[-1] if s.ndim else 1} values on the last axis but "
                         f"{a.size} flip angles were given", fix="Put the flip-angle axis last.")
    finite = np.all(np.isfinite(s), axis=-1)
    s0 = np.where(finite[..., None], s, 0.0)
    x = s0 / np.tan(a)
    y = s0 / np.sin(a)
    xm, ym = x.mean(-1, keepdims=True), y.mean(-1, keepdims=True)
    sxx = np.sum((x - xm) ** 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.sum((x - xm) * (y - ym), axis=-1) / sxx
        intercept = ym[..., 0] - slope * xm[..., 0]
        m0 = intercept / (1.0 - slope)
        t1 = -tr / np.log(slope)
    ok = finite & (sxx > 0) & (slope > 0) & (slope < 1) & (m0 > 0) & np.isfinite(t1)
    return np.where(ok, t1, np.nan), np.where(ok, m0, np.nan), ok


def _baseline_index(baseline_frames, n_t: int) -> np.ndarray:
    if isinstance(baseline_frames, (int, np.integer)):
        n = int(baseline_frames)
        if not 1 <= n < n_t:
            raise InputError(f"baseline_frames = {n} must be between 1 and {n_t - 1} (the series has {n_t} frames)",
                             fix="Give the number of pre-contrast frames.")
        return np.arange(n)
    idx = np.asarray(baseline_frames).ravel()
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    if idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < -n_t or idx.max() >= n_t:
        raise InputError(f"baseline_frames {idx.tolist()[:6]} must be frame indices of a {n_t}-frame series",
                         fix="Give the indices (or number) of the pre-contrast frames.")
    return idx


def signal_to_concentration(signal, t1_0_ms, flip_deg: float, tr_ms: float, r1_per_mM_s: float, *,
                            baseline_frames=3, m0=None) -> tuple[np.ndarray, np.ndarray]:
    """Contrast-agent concentration from dynamic SPGR signals and a native T1 map.

    Parameters
    ----------
    signal : array-like of shape (..., T)
        Dynamic SPGR signal per voxel.
    t1_0_ms : array-like of shape signal.shape[:-1] (or broadcastable)
        Native (pre-contrast) T1 in ms, e.g. from :func:`vfa_t1`.
    flip_deg : float
        Flip angle of the dynamic series in degrees.
    tr_ms : float
        Repetition time in ms.
    r1_per_mM_s : float
        Longitudinal relaxivity in 1/(mM s) (e.g. 4.1 for Gd-DTPA in plasma at 1.5 T,
        Rohrer et al. 2005).
    baseline_frames : int or sequence of int, default=3
        Number of leading pre-contrast frames, or their indices; used for M0 when ``m0``
        is not given.
    m0 : array-like, optional
        Equilibrium signal (e.g. from :func:`vfa_t1`); default: from the baseline mean.

    Returns
    -------
    conc_mM : ndarray of shape signal.shape
        Concentration in mM (NaN where not ok).
    ok : ndarray of bool, shape signal.shape[:-1]
        False where inputs are not finite, T1_0 or M0 is not positive, or some frame has
        a signal at or above the fully relaxed limit ``M0 sin(flip)`` (undefined R1).

    Examples
    --------
    >>> t1 = 1000.0 / (1.0 + 4.0 * 1000.0 / 1000.0 * np.array([0, 0, 0, 0.5]))  # ms
    >>> s = spgr_signal(1.0, t1, 20.0, 5.0)
    >>> c, ok = signal_to_concentration(s, 1000.0, 20.0, 5.0, 4.0)
    >>> np.round(c, 6).tolist(), bool(ok)
    ([0.0, 0.0, 0.0, 0.5], True)
    """
    tr = _positive(tr_ms, "tr_ms", "ms")
    r1 = _positive(r1_per_mM_s, "r1_per_mM_s", "1/(mM s)")
    a = float(_flip_rad(flip_deg, "flip_deg"))
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim == 0 or s.shape[-1] < 2:
        raise InputError(f"signal must have a time axis last, got shape {s.shape}", fix="Put time on the last axis.")
    lead = s.shape[:-1]
    try:
        t10 = np.broadcast_to(np.asarray(t1_0_ms, dtype=np.float64), lead)
    except ValueError:
        raise InputError(f"t1_0_ms shape {np.shape(t1_0_ms)} does not match the signal's voxels {lead}",
                         fix="Give one native T1 per voxel.") from None
    ok = np.all(np.isfinite(s), axis=-1) & np.isfinite(t10) & (t10 > 0)
    t10 = np.where(ok, t10, 1000.0)
    e10 = np.exp(-tr / t10)
    if m0 is None:
        idx = _baseline_index(baseline_frames, s.shape[-1])
        s_base = np.mean(np.where(ok[..., None], s, 0.0)[..., idx], axis=-1)
        m0v = s_base * (1 - e10 * math.cos(a)) / (math.sin(a) * (1 - e10))
    else:
        try:
            m0v = np.broadcast_to(np.asarray(m0, dtype=np.float64), lead)
        except ValueError:
            raise InputError(f"m0 shape {np.shape(m0)} does not match the signal's voxels {lead}",
                             fix="Give one M0 per voxel.") from None
    ok &= np.isfinite(m0v) & (m0v > 0)
    top = np.where(ok, m0v, 1.0)[..., None] * math.sin(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = (top - s) / (top - s * math.cos(a))
        r1_t = -np.log(e1) / (tr / 1000.0)  # 1/s
    ok &= np.all((e1 > 0) & (e1 < 1), axis=-1)
    conc = (r1_t - (1000.0 / t10)[..., None]) / r1
    return np.where(ok[..., None], conc, np.nan), ok


def signal_to_delta_r2star(signal, te_ms: float, *, baseline_frames=3) -> tuple[np.ndarray, np.ndarray]:
    """Change of R2* (1/s) from dynamic gradient-echo signals: ``-ln(S/S0)/TE``.

    Parameters
    ----------
    signal : array-like of shape (..., T)
    te_ms : float
        Echo time in ms.
    baseline_frames : int or sequence of int, default=3
        Pre-contrast frames averaged for S0.

    Returns
    -------
    delta_r2star_per_s : ndarray of shape signal.shape (NaN where not ok)
    ok : ndarray of bool, shape signal.shape[:-1]
        False where a signal or the baseline is not finite and positive.

    Examples
    --------
    >>> d, ok = signal_to_delta_r2star([1.0, 1.0, 1.0, np.exp(-0.2)], 10.0)
    >>> round(float(d[-1]), 6)
    20.0
    """
    te = _positive(te_ms, "te_ms", "ms")
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim == 0 or s.shape[-1] < 2:
        raise InputError(f"signal must have a time axis last, got shape {s.shape}", fix="Put time on the last axis.")
    idx = _baseline_index(baseline_frames, s.shape[-1])
    ok = np.all(np.isfinite(s) & (s > 0), axis=-1)
    sp = np.where(ok[..., None], s, 1.0)
    s0 = sp[..., idx].mean(-1, keepdims=True)
    d = -np.log(sp / s0) / (te / 1000.0)
    return np.where(ok[..., None], d, np.nan), ok


def delta_r2star_to_concentration(delta_r2star_per_s, r2star_per_mM_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Carrier concentration from the change of R2*: ``C = ΔR2* / r2*`` (mM).

    Parameters
    ----------
    delta_r2star_per_s : array-like
        R2*(t) - R2*(0) in 1/s (e.g. from :func:`signal_to_delta_r2star` or the difference
        of two R2* maps).
    r2star_per_mM_s : float
        Transverse relaxivity r2* of the carrier in 1/(mM s), in the concentration unit of
        the agent (metal ion). No default: calibrate on phantoms at the field strength
        used (this work).

    Returns
    -------
    conc_mM : ndarray, same shape (NaN where not ok)
    ok : ndarray of bool, same shape
        False where the input is not finite. Negative values are kept (noise around zero).

    Examples
    --------
    >>> c, ok = delta_r2star_to_concentration([0.0, 50.0], 100.0)
    >>> c.tolist()
    [0.0, 0.5]
    """
    r2 = _positive(r2star_per_mM_s, "r2star_per_mM_s", "1/(mM s)")
    d = np.asarray(delta_r2star_per_s, dtype=np.float64)
    ok = np.isfinite(d)
    return np.where(ok, d / r2, np.nan), ok
