r"""DCE-MRI tracer-kinetic maps: Tofts, extended Tofts and Patlak, fitted for all voxels at once.

Units: time in minutes, concentrations in mM, Ktrans and kep in 1/min, ve and vp fractions.

Models (Tofts et al. 1999; Sourbron & Buckley 2013)
---------------------------------------------------
.. math::

    C_t(t) = v_p C_p(t) + K^{trans} \int_0^t C_p(s)\, e^{-k_{ep}(t - s)}\, ds,
    \qquad k_{ep} = K^{trans}/v_e

(standard Tofts: :math:`v_p = 0`). Patlak (Patlak et al. 1983), no backflux:
:math:`C_t(t) = K^{trans} \int_0^t C_p\,ds + v_p C_p(t)`.

Convolution
-----------
:math:`C_p` is taken piecewise linear between its samples and zero contribution before the
first sample (the tissue is contrast-free at ``t[0]``: start the series with at least one
pre-contrast frame). On a step :math:`\Delta = t_{j+1} - t_j` with :math:`x = k_{ep}\Delta`
and :math:`E_n(x) = \int_0^1 w^n e^{-x w} dw` the convolution :math:`I` and its derivative
:math:`J = -\partial I / \partial k_{ep}` obey the exact recursions

.. math::

    I_{j+1} &= e^{-x} I_j + \Delta\,[c_{j+1}(E_0 - E_1) + c_j E_1] \\
    J_{j+1} &= e^{-x} (J_j + \Delta I_j) + \Delta^2 [c_{j+1}(E_1 - E_2) + c_j E_2]

so non-uniform time grids are handled without resampling and the Jacobian is analytic.

Fitting (:func:`fit_tofts`)
---------------------------
1. Two starts per voxel, both vectorised: the linearised least-squares form of Murase
   (2004), :math:`C_t = (K^{trans} + k_{ep} v_p)\int C_p - k_{ep}\int C_t + v_p C_p`, and a
   grid over :math:`k_{ep}` (60 log-spaced values) where :math:`K^{trans}` (and :math:`v_p`)
   are solved in closed form (variable projection). The start with the lower residual wins.
2. A batched, bounded Levenberg-Marquardt refinement (Marquardt 1963) on
   :math:`(K^{trans}, v_e, v_p)` with :math:`0 \le K^{trans} \le` ``ktrans_max``,
   ``ve_min`` :math:`\le v_e \le 1`, :math:`0 \le v_p \le 1`; steps are projected onto the
   box and parameters held at a bound by the gradient are frozen for the step. A voxel
   stops when an accepted step lowers the cost by less than ``ftol`` (relative).

``ok`` is False where the tissue curve is not finite, has negative values beyond noise,
the fit did not converge, Ktrans is 0 (no enhancement: ve undefined and returned as NaN)
or at ``ktrans_max``, or ve is at its upper bound 1 (data not explained by a physical ve).

Negative concentrations: the noise of each curve is estimated from its first
differences, :math:`\hat\sigma = 1.4826\,\mathrm{median}|\Delta C| / \sqrt 2`; a tissue
curve whose minimum is below :math:`-(\text{negative\_sigma}\,\hat\sigma + 10^{-9})` mM
is flagged (``ok = False``); an input ``cp`` that does, or a tissue array where more than
half the finite voxels do (a sign or baseline error), raises :class:`InputError`.

Bolus delay: ``fit_tofts(..., fit_delay=True)`` estimates **one global delay** for all
voxels. It starts from the bolus arrival time (Cheong et al. 2003,
:func:`estimate_bolus_arrival`) of the mean finite tissue curve minus that of ``cp``, then
refines it by minimising the summed residual of the model fits of up to 256 voxels
(half-frame steps over +-3 frames, eighth-frame steps over +-half a frame, then a parabola),
shifts ``cp`` by it (:func:`shift_aif`, linear interpolation) and returns it as
``delay_min``. A shift by a fraction of a frame interpolates the sampled AIF, which
blurs an under-sampled first pass: prefer an AIF evaluated at the delayed times
(e.g. ``parker_aif(t, delay_min=...)``) once the delay is known.

References
----------
.. [1] Tofts PS, Brix G, Buckley DL, et al. Estimating kinetic parameters from dynamic
   contrast-enhanced T1-weighted MRI of a diffusable tracer: standardized quantities and
   symbols. J Magn Reson Imaging 1999;10:223-232.
.. [2] Murase K. Efficient method for calculating kinetic parameters using T1-weighted
   dynamic contrast-enhanced magnetic resonance imaging. Magn Reson Med 2004;51:858-862.
.. [3] Patlak CS, Blasberg RG, Fenstermacher JD. Graphical evaluation of blood-to-brain
   transfer constants from multiple-time uptake data. J Cereb Blood Flow Metab 1983;3:1-7.
.. [4] Marquardt DW. An algorithm for least-squares estimation of nonlinear parameters.
   J Soc Ind Appl Math 1963;11:431-441.
.. [5] Sourbron SP, Buckley DL. Classic models for dynamic contrast-enhanced MRI. NMR Biomed
   2013;26:1004-1027.
.. [6] Cheong LH, Koh TS, Hou Z. Phys Med Biol 2003;48:N83-N88 (see :mod:`.aif`).
"""

from __future__ import annotations

import math

import numpy as np

from core.drug_release.aif import check_time_min, estimate_bolus_arrival, shift_aif
from core.errors import InputError

__all__ = ["fit_tofts", "tofts_model", "fit_patlak", "estimate_bolus_arrival", "shift_aif",
           "curve_fit_tofts_loop"]

_SERIES_BELOW = 0.5
_SERIES_TERMS = 18


# ------------------------------------------------------------------ convolution


def _e_functions(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E_n(x) = int_0^1 w^n exp(-x w) dw for n = 0, 1, 2 and x >= 0, accurate for all x."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.exp(-x)
        x2 = x * x
        e0 = -np.expm1(-x) / x
        e1 = (1.0 - e * (1.0 + x)) / x2
        e2 = (2.0 - e * (2.0 + 2.0 * x + x2)) / (x2 * x)
    small = x < _SERIES_BELOW
    if np.any(small):
        xs = x[small]
        s0, s1, s2 = (np.zeros_like(xs) for _ in range(3))
        term = np.ones_like(xs)  # (-x)^k / k!
        for k in range(_SERIES_TERMS):
            s0 += term / (k + 1)
            s1 += term / (k + 2)
            s2 += term / (k + 3)
            term = term * (-xs) / (k + 1)
        e0[small], e1[small], e2[small] = s0, s1, s2
    return e0, e1, e2


def _steps(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct step lengths of the grid and the index of each step among them."""
    dt = np.diff(t)
    uniq, inv = np.unique(np.round(dt / dt.max(), 12), return_inverse=True)
    values = np.array([dt[inv == u].mean() for u in range(uniq.size)])
    return values, inv


def _convolve(t: np.ndarray, cp: np.ndarray, kep: np.ndarray, derivative: bool = True):
    """I and J (see module docstring) for rates ``kep`` of shape (N,); returns (N, T) arrays."""
    kep = np.asarray(kep, dtype=np.float64)
    n, n_t = kep.shape[0], t.size
    dts, step_of = _steps(t)
    x = kep[None, :] * dts[:, None]  # (U, N)
    e0, e1, e2 = _e_functions(x)
    decay = np.exp(-x)
    I = np.zeros((n_t, n))
    J = np.zeros((n_t, n)) if derivative else None
    for j in range(n_t - 1):
        u = step_of[j]
        d = dts[u]
        cj, cn = cp[j], cp[j + 1]
        I[j + 1] = decay[u] * I[j] + d * (cn * (e0[u] - e1[u]) + cj * e1[u])
        if derivative:
            J[j + 1] = decay[u] * (J[j] + d * I[j]) + d * d * (cn * (e1[u] - e2[u]) + cj * e2[u])
    return I.T, (J.T if derivative else None)


def _cumtrapz(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cumulative integral from t[0] (exact for piecewise-linear y), last axis."""
    inc = 0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(t)
    return np.concatenate([np.zeros(y.shape[:-1] + (1,)), np.cumsum(inc, axis=-1)], axis=-1)


# ------------------------------------------------------------------ validation


def _robust_sigma(y: np.ndarray) -> np.ndarray:
    return 1.4826 * np.median(np.abs(np.diff(y, axis=-1)), axis=-1) / math.sqrt(2.0)


def _negative_beyond_noise(y: np.ndarray, negative_sigma: float) -> np.ndarray:
    return y.min(axis=-1) < -(negative_sigma * _robust_sigma(y) + 1e-9)


def _check_fit_inputs(ct, t_min, cp, n_params: int, negative_sigma: float):
    """Validate and flatten; returns (y (N, T), t, cp, ok_in (N,), lead shape)."""
    t = check_time_min(t_min, "t", strict=True, min_points=2)
    c = np.asarray(cp, dtype=np.float64)
    if c.ndim != 1 or c.size != t.size:
        raise InputError(f"the AIF cp has {c.size} samples (shape {c.shape}) but the time grid t has {t.size}",
                         fix="Sample the plasma curve on the same frame times as the tissue curves.")
    if not np.all(np.isfinite(c)):
        j = int(np.argmax(~np.isfinite(c)))
        raise InputError(f"the AIF cp[{j}] = {c[j]!r} is not finite",
                         fix="Remove or interpolate the bad AIF samples.")
    if t.size <= n_params:
        raise InputError(f"{t.size} time points cannot determine {n_params} parameters",
                         fix=f"Give at least {n_params + 1} time points.")
    if not (negative_sigma > 0):
        raise InputError(f"negative_sigma = {negative_sigma!r} must be > 0", fix="Use e.g. 5.")
    if _negative_beyond_noise(c, negative_sigma):
        raise InputError(f"the AIF cp goes down to {c.min():.4g} mM, negative beyond its noise",
                         fix="Check the baseline subtraction and the sign of the plasma concentration.")
    y = np.asarray(ct, dtype=np.float64)
    if y.ndim == 0 or y.shape[-1] != t.size:
        raise InputError(f"ct has {y.shape[-1] if y.ndim else 1} time points on its last axis "
                         f"(shape {y.shape}) but t has {t.size}",
                         fix="Put time on the last axis of ct, on the same grid as t.")
    lead = y.shape[:-1]
    y = y.reshape(-1, t.size)
    ok = np.all(np.isfinite(y), axis=-1)
    y = np.where(ok[:, None], y, 0.0)
    neg = ok & _negative_beyond_noise(y, negative_sigma)
    if ok.sum() >= 4 and neg.sum() > 0.5 * ok.sum():
        raise InputError(f"{int(neg.sum())} of {int(ok.sum())} tissue curves are negative beyond their noise "
                         f"(minimum {y[neg].min():.4g} mM)",
                         fix="Check the sign and the baseline of the concentration conversion.")
    return y, t, c, ok & ~neg, lead


# ------------------------------------------------------------------ forward models


def tofts_model(t, cp, ktrans, ve, vp=0.0) -> np.ndarray:
    """Tissue concentration of the (extended) Tofts model, mM.

    Parameters
    ----------
    t : array-like of shape (T,)
        Minutes, strictly increasing; the tissue is contrast-free at ``t[0]``.
    cp : array-like of shape (T,)
        Plasma concentration, mM (piecewise linear between samples).
    ktrans : array-like
        Ktrans in 1/min (>= 0).
    ve : array-like
        Extravascular extracellular fraction, in (0, 1].
    vp : array-like, default=0.0
        Plasma fraction in [0, 1].

    Returns
    -------
    ndarray of shape broadcast(ktrans, ve, vp).shape + (T,)

    Examples
    --------
    >>> t = np.linspace(0, 5, 6)
    >>> c = tofts_model(t, np.ones(6), 0.2, 0.4)   # step input: 0.4 (1 - exp(-0.5 t))
    >>> round(float(c[-1]), 6) == round(0.4 * (1 - math.exp(-2.5)), 6)
    True
    """
    tt = check_time_min(t, "t", strict=True, min_points=2)
    c = np.asarray(cp, dtype=np.float64)
    if c.shape != tt.shape or not np.all(np.isfinite(c)):
        raise InputError(f"cp must be {tt.size} finite samples on the grid t, got shape {c.shape}",
                         fix="Sample the plasma curve on the frame times.")
    k, v, p = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (ktrans, ve, vp)))
    if not (np.all(np.isfinite(k) & (k >= 0)) and np.all((v > 0) & (v <= 1)) and np.all((p >= 0) & (p <= 1))):
        raise InputError("tofts_model needs Ktrans >= 0 /min, 0 < ve <= 1 and 0 <= vp <= 1",
                         fix="Check the parameter maps for NaN or out-of-range values.")
    I, _ = _convolve(tt, c, (k / v).ravel(), derivative=False)
    out = k.ravel()[:, None] * I + p.ravel()[:, None] * c
    return out.reshape(k.shape + (tt.size,))


def _predict(p: np.ndarray, t: np.ndarray, cp: np.ndarray, extended: bool):
    """Model (N, T) and Jacobian (N, P, T) for p = (Ktrans, ve[, vp])."""
    kt, ve = p[:, 0], p[:, 1]
    kep = kt / ve
    I, J = _convolve(t, cp, kep)
    m = kt[:, None] * I
    cols = [I - kep[:, None] * J, (kep * kep)[:, None] * J]
    if extended:
        m = m + p[:, 2:3] * cp
        cols.append(np.broadcast_to(cp, I.shape))
    return m, np.stack(cols, axis=1)


# ------------------------------------------------------------------ starts


def _grid_start(y, t, cp, extended, lo, hi, n_grid: int = 60):
    """Best (Ktrans, ve[, vp]) over a log grid of kep, linear parameters in closed form."""
    kep_hi = min(hi[0] / lo[1], 20.0 / np.diff(t).min())
    keps = np.geomspace(1e-3, max(kep_hi, 1e-2), n_grid)
    I, _ = _convolve(t, cp, keps, derivative=False)  # (K, T)
    yi = y @ I.T  # (N, K)
    ii = np.einsum("kt,kt->k", I, I)
    yy = np.einsum("nt,nt->n", y, y)[:, None]
    kmax = np.minimum(hi[0], keps * hi[1])[None, :]  # ve <= 1
    if not extended:
        kt = np.clip(yi / np.maximum(ii, 1e-300), 0.0, kmax)
        vp = np.zeros_like(kt)
        rss = yy - 2 * kt * yi + kt * kt * ii
    else:
        ic = I @ cp
        cc = float(cp @ cp)
        yc = (y @ cp)[:, None]
        det = np.maximum(ii * cc - ic * ic, 1e-300)
        kt = (cc * yi - ic * yc) / det
        vp = (ii * yc - ic * yi) / det
        only_k = vp < 0
        kt = np.where(only_k, yi / np.maximum(ii, 1e-300), kt)
        vp = np.where(only_k, 0.0, vp)
        only_v = kt < 0
        vp = np.where(only_v, yc / max(cc, 1e-300), vp)
        kt = np.clip(np.where(only_v, 0.0, kt), 0.0, kmax)
        vp = np.clip(vp, 0.0, hi[2])
        rss = yy - 2 * (kt * yi + vp * yc) + kt * kt * ii + 2 * kt * vp * ic + vp * vp * cc
    best = np.argmin(rss, axis=1)
    rows = np.arange(y.shape[0])
    k_best = kt[rows, best]
    ve = np.where(k_best > 0, k_best / keps[best], 0.5)
    p = [np.clip(k_best, lo[0], hi[0]), np.clip(ve, lo[1], hi[1])]
    if extended:
        p.append(vp[rows, best])
    return np.stack(p, axis=1)


def _murase_start(y, t, cp, extended, lo, hi):
    """Linearised least squares (Murase 2004), solved for all voxels at once."""
    icp = _cumtrapz(cp, t)
    ict = _cumtrapz(y, t)
    cols = [np.broadcast_to(icp, y.shape), -ict] + ([np.broadcast_to(cp, y.shape)] if extended else [])
    A = np.stack(cols, axis=-1)  # (N, T, P)
    G = np.einsum("ntp,ntq->npq", A, A)
    G = G + 1e-12 * np.trace(G, axis1=1, axis2=2)[:, None, None] * np.eye(A.shape[-1]) + 1e-300
    b = np.linalg.solve(G, np.einsum("ntp,nt->np", A, y)[..., None])[..., 0]
    kep = b[:, 1]
    vp = b[:, 2] if extended else np.zeros(y.shape[0])
    kt = b[:, 0] - kep * vp
    with np.errstate(divide="ignore", invalid="ignore"):
        ve = kt / kep
    ve = np.where(np.isfinite(ve) & (ve > 0), ve, 0.5)
    p = [np.clip(np.nan_to_num(kt), lo[0], hi[0]), np.clip(ve, lo[1], hi[1])]
    if extended:
        p.append(np.clip(np.nan_to_num(vp), lo[2], hi[2]))
    return np.stack(p, axis=1)


# ------------------------------------------------------------------ Levenberg-Marquardt


def _levenberg_marquardt(p, y, t, cp, extended, lo, hi, max_iter, ftol):
    """Bounded batched LM; returns (p, rss, converged)."""
    n, P = p.shape
    eps = np.finfo(np.float64).eps
    out_p, out_rss = p.copy(), np.full(n, np.inf)
    converged = np.zeros(n, dtype=bool)
    floor = (eps * eps) * np.einsum("nt,nt->n", y, y)
    m, J = _predict(p, t, cp, extended)
    r = y - m
    rss = np.einsum("nt,nt->n", r, r)
    lam = np.full(n, 1e-3)
    ids = np.arange(n)
    tiny = 1e-9 * (hi - lo)
    eye = np.eye(P)
    for _ in range(max_iter):
        A = np.einsum("npt,nqt->npq", J, J)
        g = np.einsum("npt,nt->np", J, r)
        held = ((p <= lo + tiny) & (g < 0)) | ((p >= hi - tiny) & (g > 0))
        free = (~held).astype(np.float64)
        A = A * free[:, :, None] * free[:, None, :] + (1.0 - free)[:, :, None] * eye
        g = g * free
        d = np.diagonal(A, axis1=1, axis2=2)
        damp = lam[:, None] * (d + eps * d.max(-1, keepdims=True) + 1e-300)
        step = np.linalg.solve(A + damp[:, :, None] * eye, g[..., None])[..., 0]
        pn = np.clip(p + np.nan_to_num(step), lo, hi)
        mn, Jn = _predict(pn, t, cp, extended)
        rn = y - mn
        rssn = np.einsum("nt,nt->n", rn, rn)
        better = rssn < rss
        done = (better & (rss - rssn <= ftol * rss)) | (rssn <= floor) | (rss <= floor) | (lam > 1e12)
        p = np.where(better[:, None], pn, p)
        J = np.where(better[:, None, None], Jn, J)
        r = np.where(better[:, None], rn, r)
        rss = np.where(better, rssn, rss)
        lam = np.where(better, np.maximum(lam * 0.3, 1e-12), lam * 10.0)
        if done.any():
            fin = ids[done]
            out_p[fin], out_rss[fin], converged[fin] = p[done], rss[done], True
            keep = ~done
            p, J, r, rss, lam, y, ids, floor = (a[keep] for a in (p, J, r, rss, lam, y, ids, floor))
            if ids.size == 0:
                break
    if ids.size:
        out_p[ids], out_rss[ids] = p, rss
    return out_p, out_rss, converged


# ------------------------------------------------------------------ public fits


def _bounds(extended: bool, ktrans_max: float, ve_min: float) -> tuple[np.ndarray, np.ndarray]:
    if not (math.isfinite(ktrans_max) and ktrans_max > 0):
        raise InputError(f"ktrans_max = {ktrans_max!r} must be a positive rate in 1/min", fix="Use e.g. 5.")
    if not (0 < ve_min < 1):
        raise InputError(f"ve_min = {ve_min!r} must lie in (0, 1)", fix="Use e.g. 1e-3.")
    lo = [0.0, ve_min] + ([0.0] if extended else [])
    hi = [ktrans_max, 1.0] + ([1.0] if extended else [])
    return np.array(lo), np.array(hi)


def _fit_voxels(y, t, cp, extended, lo, hi, max_iter, ftol):
    """Starts (grid and Murase, the better per voxel) then LM; returns (params, rss, converged)."""
    starts = [_grid_start(y, t, cp, extended, lo, hi), _murase_start(y, t, cp, extended, lo, hi)]
    costs = [np.sum((y - _predict(s, t, cp, extended)[0]) ** 2, axis=-1) for s in starts]
    p0 = np.where((costs[1] < costs[0])[:, None], starts[1], starts[0])
    return _levenberg_marquardt(p0, y, t, cp, extended, lo, hi, max_iter, ftol)


def _refine_delay(y, t, cp, extended, lo, hi, delay0, max_iter, ftol, n_sub: int = 256) -> float:
    """Global delay minimising the summed residual of the fits of up to ``n_sub`` voxels.

    Search from the bolus-arrival difference ``delay0``: steps of half a frame over
    +-3 frames, then eighths of a frame over +-half a frame, then a parabola through the
    best three.
    """
    sub = y[np.linspace(0, y.shape[0] - 1, min(n_sub, y.shape[0])).astype(int)]
    frame = float(np.median(np.diff(t)))

    def total(d):
        return float(np.sum(_fit_voxels(sub, t, shift_aif(cp, t, d), extended, lo, hi, max_iter, ftol)[1]))

    best = delay0
    for step, half_width in ((frame / 2, 3 * frame), (frame / 8, frame / 2)):
        grid = best + np.arange(-half_width, half_width + step / 2, step)
        costs = np.array([total(d) for d in grid])
        i = int(np.argmin(costs))
        best = float(grid[i])
    if 0 < i < grid.size - 1:
        c0, c1, c2 = costs[i - 1:i + 2]
        curv = c0 - 2 * c1 + c2
        if curv > 0:
            best += 0.5 * step * (c0 - c2) / curv
    return best


def fit_tofts(ct, t, cp, extended=False, *, fit_delay: bool = False, ktrans_max: float = 5.0,
              ve_min: float = 1e-3, max_iter: int = 100, ftol: float = 1e-10,
              negative_sigma: float = 5.0) -> dict:
    """Fit the standard or extended Tofts model to every voxel at once.

    Parameters
    ----------
    ct : array-like of shape (..., T)
        Tissue concentration in mM; voxels with NaN or inf get ``ok = False``.
    t : array-like of shape (T,)
        Frame times in minutes, strictly increasing; the tissue is contrast-free at ``t[0]``.
    cp : array-like of shape (T,)
        Plasma concentration in mM (e.g. :func:`core.drug_release.aif.parker_aif` with ``hct``).
    extended : bool, default=False
        Fit vp as well (extended Tofts).
    fit_delay : bool, default=False
        Estimate one global bolus delay (bolus-arrival difference, refined by the summed
        fit residual; see the module docstring) and shift ``cp`` by it before fitting;
        returned as ``delay_min`` (minutes, positive when the tissue enhances later).
    ktrans_max : float, default=5.0
        Upper bound of Ktrans, 1/min.
    ve_min : float, default=1e-3
        Lower bound of ve.
    max_iter : int, default=100
        Levenberg-Marquardt iterations at most.
    ftol : float, default=1e-10
        Relative cost decrease below which a voxel has converged.
    negative_sigma : float, default=5.0
        Curves with values below ``-negative_sigma`` times their noise are flagged.

    Returns
    -------
    dict of ndarrays of shape ct.shape[:-1]
        ``Ktrans`` (1/min), ``ve``, ``vp`` (extended only), ``kep`` (1/min), ``rss``
        (mM²), ``ok`` (bool); plus ``delay_min`` (float) when ``fit_delay``.

    Raises
    ------
    InputError
        t not strictly increasing or not finite; cp not finite, negative beyond noise or
        of a length other than T; T not above the number of parameters.

    Examples
    --------
    >>> from core.drug_release.aif import parker_aif
    >>> t = np.arange(0, 5.01, 5 / 60)
    >>> cp = parker_aif(t, delay_min=0.5, hct=0.42)
    >>> ct = tofts_model(t, cp, np.array([0.1, 0.3]), np.array([0.2, 0.4]))
    >>> fit = fit_tofts(ct, t, cp)
    >>> np.round(fit["Ktrans"], 4).tolist(), fit["ok"].tolist()
    ([0.1, 0.3], [True, True])
    """
    n_params = 3 if extended else 2
    y, tt, c, ok_in, lead = _check_fit_inputs(ct, t, cp, n_params, negative_sigma)
    lo, hi = _bounds(extended, float(ktrans_max), float(ve_min))
    out = {}
    if fit_delay:
        if not ok_in.any():
            raise InputError("no finite tissue curve to estimate the bolus delay from",
                             fix="Give valid curves or fit_delay=False.")
        bat_ct = float(estimate_bolus_arrival(y[ok_in].mean(axis=0), tt))
        bat_cp = float(estimate_bolus_arrival(c, tt))
        if not (math.isfinite(bat_ct) and math.isfinite(bat_cp)):
            raise InputError("the bolus arrival could not be found (peak at one of the first two frames)",
                             fix="Start the series with pre-contrast frames, or fit_delay=False.")
        delay = _refine_delay(y[ok_in], tt, c, extended, lo, hi, bat_ct - bat_cp, int(max_iter), float(ftol))
        c = shift_aif(c, tt, delay)
        out["delay_min"] = np.full(lead, delay)
    n = y.shape[0]
    params = np.full((n, n_params), np.nan)
    rss = np.full(n, np.nan)
    conv = np.zeros(n, dtype=bool)
    if ok_in.any():
        yv = y[ok_in]
        p, r, cv = _fit_voxels(yv, tt, c, extended, lo, hi, int(max_iter), float(ftol))
        params[ok_in], rss[ok_in], conv[ok_in] = p, r, cv
    kt, ve = params[:, 0], params[:, 1]
    enhancing = kt > 1e-9
    ok = ok_in & conv & np.all(np.isfinite(params), axis=1) & enhancing
    ok &= (kt < hi[0] * (1 - 1e-9)) & (ve < 1.0 - 1e-9)
    ve = np.where(enhancing, ve, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        kep = np.where(enhancing, kt / ve, np.nan)
    out.update({"Ktrans": kt, "ve": ve, "kep": kep})
    if extended:
        out["vp"] = params[:, 2]
    out.update({"rss": rss, "ok": ok})
    return {k: (v.reshape(lead) if v.shape == (n,) else v) for k, v in out.items()}


def fit_patlak(ct, t, cp, *, negative_sigma: float = 5.0) -> dict:
    """Patlak model ``C_t = Ktrans * int_0^t C_p + vp * C_p``, linear least squares for all voxels.

    Parameters
    ----------
    ct : array-like of shape (..., T)
        Tissue concentration, mM.
    t : array-like of shape (T,)
        Minutes, strictly increasing; the integral starts at ``t[0]``.
    cp : array-like of shape (T,)
        Plasma concentration, mM.
    negative_sigma : float, default=5.0
        See :func:`fit_tofts`.

    Returns
    -------
    dict of ndarrays of shape ct.shape[:-1]
        ``Ktrans`` (1/min), ``vp``, ``rss`` (mM²), ``ok``: False for non-finite or negative
        curves and for non-physical results (Ktrans < 0, vp outside [0, 1]).

    Examples
    --------
    >>> t = np.linspace(0, 5, 31)
    >>> cp = np.exp(-0.3 * t)
    >>> ct = 0.05 * (1 - np.exp(-0.3 * t)) / 0.3 + 0.1 * cp
    >>> fit = fit_patlak(ct, t, cp)
    >>> round(float(fit["Ktrans"]), 3), round(float(fit["vp"]), 3)
    (0.05, 0.1)
    """
    y, tt, c, ok, lead = _check_fit_inputs(ct, t, cp, 2, negative_sigma)
    A = np.stack([_cumtrapz(c, tt), c], axis=1)  # (T, 2)
    if np.linalg.matrix_rank(A) < 2:
        raise InputError("cp is proportional to its own integral or zero: Patlak is undetermined",
                         fix="Check the AIF.")
    coef = y @ np.linalg.pinv(A).T  # (N, 2)
    res = y - coef @ A.T
    rss = np.einsum("nt,nt->n", res, res)
    kt, vp = coef[:, 0], coef[:, 1]
    ok = ok & (kt >= 0) & (vp >= 0) & (vp <= 1)
    nan = ~np.all(np.isfinite(np.asarray(ct, dtype=np.float64).reshape(y.shape)), axis=-1)
    kt, vp, rss = (np.where(nan, np.nan, a) for a in (kt, vp, rss))
    return {"Ktrans": kt.reshape(lead), "vp": vp.reshape(lead), "rss": rss.reshape(lead), "ok": ok.reshape(lead)}


# ------------------------------------------------------------------ baseline


def _tofts_single(t: np.ndarray, cp: np.ndarray, ktrans: float, ve: float, vp: float = 0.0) -> np.ndarray:
    """One curve, same exact convolution as :func:`tofts_model`, as a (T, T) matrix product."""
    kep = ktrans / ve
    dt = np.diff(t)
    e0, e1, _ = _e_functions(kep * dt)
    local = dt * (cp[1:] * (e0 - e1) + cp[:-1] * e1)  # (T-1,)
    lag = t[:, None] - t[None, 1:]  # t_n - t_{j+1}
    M = np.where(lag >= 0, np.exp(-kep * np.maximum(lag, 0.0)), 0.0)
    return ktrans * np.concatenate([[0.0], (M @ local)[1:]]) + vp * cp


def curve_fit_tofts_loop(ct, t, cp, extended=False, *, ktrans_max: float = 5.0, ve_min: float = 1e-3) -> dict:
    """Baseline: one :func:`scipy.optimize.curve_fit` per voxel (for benchmarks only).

    Same model, bounds and exact convolution as :func:`fit_tofts`, a fixed start
    (Ktrans 0.1 /min, ve 0.3, vp 0.02), the trust-region reflective solver with
    finite-difference Jacobian (curve_fit's default under bounds).

    Returns
    -------
    dict like :func:`fit_tofts` (``Ktrans``, ``ve``, ``vp`` if extended, ``rss``, ``ok``).

    Examples
    --------
    >>> t = np.linspace(0, 5, 31)
    >>> cp = np.exp(-0.3 * t) * (t > 0)
    >>> fit = curve_fit_tofts_loop(tofts_model(t, cp, 0.2, 0.3), t, cp)
    >>> round(float(fit["Ktrans"]), 3)
    0.2
    """
    from scipy.optimize import curve_fit

    n_params = 3 if extended else 2
    y, tt, c, ok, lead = _check_fit_inputs(ct, t, cp, n_params, 5.0)
    lo, hi = _bounds(extended, float(ktrans_max), float(ve_min))
    p0 = np.array([0.1, 0.3, 0.02][:n_params])

    def model(_t, *p):
        return _tofts_single(tt, c, p[0], p[1], p[2] if extended else 0.0)

    params = np.full((y.shape[0], n_params), np.nan)
    rss = np.full(y.shape[0], np.nan)
    for i in np.flatnonzero(ok):
        try:
            popt, _ = curve_fit(model, tt, y[i], p0=p0, bounds=(lo, hi))
        except (RuntimeError, ValueError):
            ok[i] = False
            continue
        params[i] = popt
        rss[i] = float(np.sum((y[i] - model(tt, *popt)) ** 2))
    out = {"Ktrans": params[:, 0], "ve": params[:, 1]}
    if extended:
        out["vp"] = params[:, 2]
    out.update({"rss": rss, "ok": ok & np.all(np.isfinite(params), axis=1)})
    return {k: v.reshape(lead) for k, v in out.items()}
