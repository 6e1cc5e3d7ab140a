r"""Forward compartment models: tissue time-activity curves from an input function.

A linear compartment model responds to the arterial plasma input :math:`C_P(t)` with a
tissue concentration that is the convolution of the input with the model's impulse
response function (IRF), a sum of decaying exponentials (Gunn et al. 2001):

.. math::

    C_T(t) = (C_P \otimes h)(t), \qquad h(t) = \sum_i \phi_i\, e^{-\theta_i t},

and the PET measurement adds the activity of the blood in the tissue's vasculature
(fractional blood volume :math:`v_B`, whole-blood activity :math:`C_B`):

.. math::

    C_\mathrm{PET}(t) = (1 - v_B)\, C_T(t) + v_B\, C_B(t).

Models (Phelps et al. 1979 for the FDG form; notation of Innis et al. 2007):

* one-tissue (1TCM): :math:`dC_T/dt = K_1 C_P - k_2 C_T`, so :math:`h(t) = K_1 e^{-k_2 t}`.
* reversible two-tissue (2TCM), free/non-displaceable :math:`C_1` and bound or
  metabolised :math:`C_2`, :math:`C_T = C_1 + C_2`:

  .. math::

      \frac{dC_1}{dt} = K_1 C_P - (k_2 + k_3) C_1 + k_4 C_2, \qquad
      \frac{dC_2}{dt} = k_3 C_1 - k_4 C_2,

  .. math::

      h(t) = \frac{K_1}{\alpha_2 - \alpha_1}\left[(k_3 + k_4 - \alpha_1) e^{-\alpha_1 t}
             + (\alpha_2 - k_3 - k_4) e^{-\alpha_2 t}\right],\quad
      \alpha_{1,2} = \tfrac12\left[s \mp \sqrt{s^2 - 4 k_2 k_4}\right],\ s = k_2 + k_3 + k_4.

* irreversible two-tissue (:math:`k_4 = 0`, e.g. FDG phosphorylation, FDOPA
  decarboxylation): :math:`\alpha_1 = 0,\ \alpha_2 = k_2 + k_3` and
  :math:`h(t) = \frac{K_1}{k_2 + k_3}\left[k_3 + k_2 e^{-(k_2 + k_3) t}\right]`;
  the net influx constant is :math:`K_i = K_1 k_3 / (k_2 + k_3)`.

Exact convolution
-----------------
The input is a piecewise-linear function through its samples :math:`(t_j, C_j)` (the
curve a physician sees when the samples are joined), so on each interval
:math:`[t_j, t_{j+1}]` of length :math:`\Delta` it is :math:`C_j + b_j u` with
:math:`u = t - t_j`. The convolution with one exponential,
:math:`I(t) = \int_0^t C_P(s) e^{-\theta (t - s)} ds`, then obeys the exact recursion

.. math::

    I_{j+1} = e^{-x} I_j + \Delta\left[C_j\,\varphi_1(x) + b_j \Delta\,\varphi_2(x)\right],
    \qquad x = \theta\Delta,

and its exact integral over the interval (used for frame averages) is

.. math::

    \int_{t_j}^{t_{j+1}} I\,dt = \Delta\left[I_j\,\varphi_1(x) + C_j\Delta\,\varphi_2(x)
                                  + b_j\Delta^2\varphi_3(x)\right],

with :math:`\varphi_n(x) = \sum_{k\ge 0} (-x)^k/(k+n)!`, i.e.
:math:`\varphi_1 = (1 - e^{-x})/x`, :math:`\varphi_2 = (x - 1 + e^{-x})/x^2`,
:math:`\varphi_3 = (x^2/2 - x + 1 - e^{-x})/x^3` (series near :math:`x = 0`, so
:math:`\theta = 0`, the trapped compartment, is exact too). Frame boundaries are
inserted into the input grid (exact for a piecewise-linear input), so a frame average
:math:`\frac{1}{t_e - t_s}\int_{t_s}^{t_e} C_\mathrm{PET}\,dt` carries no
discretisation error. Nothing is sampled on a fixed step: accuracy is limited only by
how well the piecewise-linear samples describe the true input.

Before its first sample the input is taken to rise linearly from zero at
:math:`t = 0` (a sample ``(0, 0)`` is prepended when the grid starts later).

Every function broadcasts over parameter sets: pass arrays of ``K1``, ``k2`` ... (of
any common shape ``P``) and get curves of shape ``P + (n_times,)`` or
``P + (n_frames,)``.

References
----------
Gunn RN, Gunn SR, Cunningham VJ. Positron emission tomography compartmental models.
J Cereb Blood Flow Metab 2001;21:635-652.
Phelps ME, Huang SC, Hoffman EJ, Selin C, Sokoloff L, Kuhl DE. Tomographic measurement
of local cerebral glucose metabolic rate in humans with (F-18)2-fluoro-2-deoxy-D-glucose:
validation of method. Ann Neurol 1979;6:371-388.
Innis RB, Cunningham VJ, Delforge J, et al. Consensus nomenclature for in vivo imaging
of reversibly binding radioligands. J Cereb Blood Flow Metab 2007;27:1533-1539.

Examples
--------
>>> import numpy as np
>>> t = np.linspace(0.0, 60.0, 601)                      # min
>>> cp = 100.0 * t * np.exp(-t / 0.5) + 5.0 * np.exp(-t / 60.0) * (t > 0)
>>> tac = two_tissue_tac(t, cp, K1=0.1, k2=0.15, k3=0.05, k4=0.0, vB=0.05)
>>> tac.shape
(601,)
>>> frames = two_tissue_tac(t, cp, K1=[0.1, 0.2], k2=0.15, k3=0.05, vB=0.05,
...                         frame_start_min=[0, 10], frame_end_min=[10, 60])
>>> frames.shape
(2, 2)
"""

from __future__ import annotations

import math

import numpy as np

from core.errors import InputError, TimingError

__all__ = [
    "one_tissue_irf",
    "two_tissue_irf",
    "convolve_exponentials",
    "frame_average",
    "model_tac",
    "one_tissue_tac",
    "two_tissue_tac",
    "irreversible_two_tissue_tac",
    "macro_parameters",
]

# Below this x = theta * dt the phi functions are summed as series (cancellation-free).
_SERIES_BELOW = 0.05
_SERIES_TERMS = 8


# --------------------------------------------------------------------------- checks


def _check_time_grid(t_min, name: str = "t_min") -> np.ndarray:
    t = np.asarray(t_min, dtype=float)
    if t.ndim != 1 or t.size < 2:
        raise TimingError(f"{name} must be a 1D array of at least 2 times in minutes, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise TimingError(f"{name} holds NaN or infinite times")
    if t[0] < 0:
        raise TimingError(f"{name} must start at or after injection (t >= 0 min), got {t[0]!r}")
    steps = np.diff(t)
    if np.any(steps <= 0):
        j = int(np.argmax(steps <= 0))
        raise TimingError(
            f"{name} must increase strictly, but t[{j}] = {t[j]!r} and t[{j + 1}] = {t[j + 1]!r} min",
            fix="Sort the samples and remove duplicate times.",
        )
    return t


def _check_curve(values, n_t: int, name: str) -> np.ndarray:
    c = np.asarray(values, dtype=float)
    if c.ndim == 0 or c.shape[-1] != n_t:
        raise InputError(f"{name} must have the time grid's length {n_t} on its last axis, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise InputError(f"{name} holds NaN or infinite values")
    return c


def _check_nonnegative(value, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        bad = a[~(np.isfinite(a) & (a >= 0))].ravel()[:3] if a.ndim else a
        raise InputError(f"{name} must be finite and >= 0, got {bad!r}")
    return a


def _check_fraction(value, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(a)) or np.any((a < 0) | (a > 1)):
        raise InputError(f"{name} must lie in [0, 1], got {a.ravel()[:3]!r}")
    return a


def _check_frames(frame_start_min, frame_end_min, t_last: float) -> tuple[np.ndarray, np.ndarray]:
    if frame_start_min is None and frame_end_min is None:
        return None, None
    if frame_start_min is None or frame_end_min is None:
        raise TimingError("give both frame_start_min and frame_end_min, or neither")
    fs = np.atleast_1d(np.asarray(frame_start_min, dtype=float))
    fe = np.atleast_1d(np.asarray(frame_end_min, dtype=float))
    if fs.ndim != 1 or fs.shape != fe.shape:
        raise TimingError(f"frame starts {fs.shape} and ends {fe.shape} must be 1D of equal length")
    if not (np.all(np.isfinite(fs)) and np.all(np.isfinite(fe))):
        raise TimingError("frame times hold NaN or infinite values")
    if np.any(fs < 0) or np.any(fe <= fs):
        j = int(np.argmax((fs < 0) | (fe <= fs)))
        raise TimingError(f"frame {j} runs from {fs[j]!r} to {fe[j]!r} min: it must start at t >= 0 and end after it starts")
    if np.any(fe > t_last * (1 + 1e-12)):
        raise TimingError(
            f"frames end at {fe.max():.4g} min but the input function stops at {t_last:.4g} min",
            fix="Extend the input function to the end of the last frame.",
        )
    return fs, np.minimum(fe, t_last)


# ------------------------------------------------------------- impulse responses


def one_tissue_irf(K1, k2) -> tuple[np.ndarray, np.ndarray]:
    r"""Impulse response of the one-tissue model, :math:`h(t) = K_1 e^{-k_2 t}`.

    Parameters
    ----------
    K1 : array-like
        Influx rate constant, ml/cm3/min.
    k2 : array-like
        Efflux rate constant, 1/min.

    Returns
    -------
    amplitudes, rates : ndarray of shape ``broadcast(K1, k2).shape + (1,)``
        :math:`\phi` (ml/cm3/min) and :math:`\theta` (1/min) of :math:`h = \sum \phi e^{-\theta t}`.
    """
    K1 = _check_nonnegative(K1, "K1")
    k2 = _check_nonnegative(k2, "k2")
    K1, k2 = np.broadcast_arrays(K1, k2)
    return K1[..., None].astype(float), k2[..., None].astype(float)


def two_tissue_irf(K1, k2, k3, k4=0.0) -> tuple[np.ndarray, np.ndarray]:
    r"""Impulse response of the two-tissue model as two exponentials.

    .. math::

        h(t) = K_1\left[c_1 e^{-\alpha_1 t} + c_2 e^{-\alpha_2 t}\right],\quad
        c_1 = \frac{\alpha_2 - k_2}{\alpha_2 - \alpha_1},\ c_2 = \frac{k_2 - \alpha_1}{\alpha_2 - \alpha_1}

    (the same as the :math:`(k_3 + k_4 - \alpha_1)` form in the module docstring, since
    :math:`\alpha_1 + \alpha_2 = k_2 + k_3 + k_4`). :math:`\alpha_1` is computed as
    :math:`2 k_2 k_4 / (s + \sqrt{s^2 - 4 k_2 k_4})` to avoid cancellation; with
    :math:`k_4 = 0` it is exactly 0 (irreversible trapping). When the two rates coincide
    (:math:`k_3 = 0,\ k_2 = k_4`) the split :math:`c_1 = c_2 = 1/2` is the limit.

    Parameters
    ----------
    K1 : array-like
        ml/cm3/min.
    k2, k3, k4 : array-like
        1/min; ``k4=0`` (default) gives the irreversible model.

    Returns
    -------
    amplitudes, rates : ndarray of shape ``broadcast(K1, k2, k3, k4).shape + (2,)``

    Examples
    --------
    >>> amp, rate = two_tissue_irf(0.1, 0.15, 0.05)        # irreversible
    >>> [round(float(v), 6) for v in rate]
    [0.0, 0.2]
    >>> [round(float(v), 6) for v in amp]                   # K1*k3/(k2+k3), K1*k2/(k2+k3)
    [0.025, 0.075]
    """
    K1 = _check_nonnegative(K1, "K1")
    k2 = _check_nonnegative(k2, "k2")
    k3 = _check_nonnegative(k3, "k3")
    k4 = _check_nonnegative(k4, "k4")
    K1, k2, k3, k4 = (a.astype(float) for a in np.broadcast_arrays(K1, k2, k3, k4))
    s = k2 + k3 + k4
    root = np.sqrt(np.maximum(s * s - 4.0 * k2 * k4, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha1 = np.where(s + root > 0, 2.0 * k2 * k4 / (s + root), 0.0)
    alpha2 = s - alpha1
    gap = alpha2 - alpha1
    degenerate = gap <= 1e-12 * np.maximum(s, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        c1 = np.where(degenerate, 0.5, (alpha2 - k2) / np.where(degenerate, 1.0, gap))
    c2 = 1.0 - c1
    amplitudes = np.stack([K1 * c1, K1 * c2], axis=-1)
    rates = np.stack([alpha1, alpha2], axis=-1)
    return amplitudes, rates


# ------------------------------------------------------------- exact convolution


def _phi(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi_1, phi_2, phi_3 of x >= 0 (see module docstring), accurate for all x."""
    small = x < _SERIES_BELOW
    xs = np.where(small, 0.0, x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        em = -np.expm1(-xs)  # 1 - e^{-x}
        d1 = em / xs
        d2 = (xs - em) / xs**2
        d3 = (0.5 * xs * xs - xs + em) / xs**3
    if not np.any(small):
        return d1, d2, d3
    # Series: phi_n(x) = sum_k (-x)^k / (k + n)!
    s1 = np.zeros_like(x)
    s2 = np.zeros_like(x)
    s3 = np.zeros_like(x)
    term = np.ones_like(x)
    for k in range(_SERIES_TERMS):
        s1 = s1 + term / math.factorial(k + 1)
        s2 = s2 + term / math.factorial(k + 2)
        s3 = s3 + term / math.factorial(k + 3)
        term = term * (-x)
    return np.where(small, s1, d1), np.where(small, s2, d2), np.where(small, s3, d3)


def _merged_grid(t: np.ndarray, c: np.ndarray, extra: np.ndarray | None):
    """Insert the times ``extra`` into the grid (linear interpolation of ``c``, exact)."""
    if t[0] > 0:
        t = np.concatenate([[0.0], t])
        c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    if extra is None or extra.size == 0:
        return t, c
    grid = np.union1d(t, extra)
    if grid.size == t.size:
        return t, c
    idx = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 2)
    w = (grid - t[idx]) / (t[idx + 1] - t[idx])
    c_new = c[..., idx] * (1.0 - w) + c[..., idx + 1] * w
    # keep original samples bit-exact
    on_node = np.isin(grid, t)
    if np.any(on_node):
        c_new[..., on_node] = c[..., np.searchsorted(t, grid[on_node])]
    return grid, c_new


def convolve_exponentials(t_min, input_values, rates, *, frame_start_min=None, frame_end_min=None) -> np.ndarray:
    r"""Exact convolution of a piecewise-linear input with :math:`e^{-\theta t}`.

    .. math::

        I(t) = \int_0^t C(s)\, e^{-\theta (t - s)}\, ds

    evaluated at the sample times, or averaged over frames, by the recursion in the
    module docstring (exact for the piecewise-linear input; no time step).

    Parameters
    ----------
    t_min : array-like of shape (n_t,)
        Sample times of the input, minutes from injection, strictly increasing, >= 0.
    input_values : array-like of shape (..., n_t)
        Input samples (any concentration unit); leading axes broadcast against ``rates``.
    rates : array-like
        :math:`\theta \ge 0` in 1/min, any shape ``R``.
    frame_start_min, frame_end_min : array-like of shape (n_frames,), optional
        When given, return frame averages :math:`\frac{1}{t_e - t_s}\int_{t_s}^{t_e} I\,dt`
        instead of values at ``t_min``. Frames must end by ``t_min[-1]``.

    Returns
    -------
    ndarray of shape ``broadcast(R, input_values.shape[:-1]) + (n_t,)`` or ``... + (n_frames,)``
        In the input's unit times minutes.

    Examples
    --------
    >>> t = np.linspace(0, 10, 11)
    >>> out = convolve_exponentials(t, t, 0.0)   # integral of s ds = t^2 / 2
    >>> float(out[-1])
    50.0
    """
    t = _check_time_grid(t_min)
    c = _check_curve(input_values, t.size, "input_values")
    theta = _check_nonnegative(rates, "rates")
    fs, fe = _check_frames(frame_start_min, frame_end_min, float(t[-1]))
    extra = None if fs is None else np.concatenate([fs, fe])
    grid, cg = _merged_grid(t, c, extra)
    want_frames = fs is not None

    out_shape = np.broadcast_shapes(theta.shape, cg.shape[:-1])
    theta_b = np.broadcast_to(theta, out_shape)
    n = grid.size
    # Only the nodes the caller asked for are stored (time-major, contiguous rows).
    if want_frames:
        i_s = np.searchsorted(grid, fs)
        i_e = np.searchsorted(grid, fe)
        wanted = np.unique(np.concatenate([i_s, i_e]))
    else:
        wanted = np.searchsorted(grid, t)
    row_of = np.full(n, -1)
    row_of[wanted] = np.arange(wanted.size)
    stored = np.zeros((wanted.size,) + out_shape, dtype=float)
    state = np.zeros(out_shape, dtype=float)
    area = np.zeros(out_shape, dtype=float)
    cg_t = np.moveaxis(cg, -1, 0)
    dt = np.diff(grid)
    # phi depends on theta * dt only: recompute it only when the step length changes
    # (grids are piecewise uniform), which keeps the loop to a few multiply-adds.
    step_key = np.round(dt, 12)
    last_key = None
    for j in range(n - 1):
        d = dt[j]
        if step_key[j] != last_key:
            last_key = step_key[j]
            x = theta_b * d
            p1, p2, p3 = _phi(x)
            decay = np.exp(-x)
            p1d, p2d, p3d = d * p1, d * d * p2, d * d * d * p3
        cj = cg_t[j]
        bj = (cg_t[j + 1] - cj) / d
        if want_frames:
            area = area + d * state * p1 + cj * p2d + bj * p3d
        state = decay * state + cj * p1d + bj * p2d
        r = row_of[j + 1]
        if r >= 0:
            stored[r] = area if want_frames else state
    if not want_frames:
        return np.moveaxis(stored, 0, -1)
    cum = np.moveaxis(stored, 0, -1)
    return (cum[..., row_of[i_e]] - cum[..., row_of[i_s]]) / (fe - fs)


def frame_average(t_min, values, frame_start_min, frame_end_min) -> np.ndarray:
    r"""Exact frame averages of a piecewise-linear curve, :math:`\frac{1}{t_e - t_s}\int_{t_s}^{t_e} C\,dt`.

    Parameters
    ----------
    t_min : array-like of shape (n_t,)
        Sample times in minutes.
    values : array-like of shape (..., n_t)
        Curve samples (joined linearly; zero-ramp before the first sample as elsewhere).
    frame_start_min, frame_end_min : array-like of shape (n_frames,)

    Returns
    -------
    ndarray of shape ``values.shape[:-1] + (n_frames,)``

    Examples
    --------
    >>> float(frame_average([0, 10], [0, 10], [0], [10])[0])
    5.0
    """
    t = _check_time_grid(t_min)
    c = _check_curve(values, t.size, "values")
    fs, fe = _check_frames(frame_start_min, frame_end_min, float(t[-1]))
    if fs is None:
        raise TimingError("frame_average needs frame_start_min and frame_end_min")
    grid, cg = _merged_grid(t, c, np.concatenate([fs, fe]))
    seg = 0.5 * (cg[..., 1:] + cg[..., :-1]) * np.diff(grid)
    cum = np.concatenate([np.zeros(cg.shape[:-1] + (1,)), np.cumsum(seg, axis=-1)], axis=-1)
    i_s = np.searchsorted(grid, fs)
    i_e = np.searchsorted(grid, fe)
    return (cum[..., i_e] - cum[..., i_s]) / (fe - fs)


def model_tac(
    t_min,
    plasma,
    amplitudes,
    rates,
    *,
    vB=0.0,
    blood=None,
    frame_start_min=None,
    frame_end_min=None,
) -> np.ndarray:
    r"""PET tissue curve of any sum-of-exponentials IRF:
    :math:`(1 - v_B)\,(C_P \otimes \sum_i \phi_i e^{-\theta_i t}) + v_B C_B`.

    Parameters
    ----------
    t_min : array-like of shape (n_t,)
        Input sample times, minutes.
    plasma : array-like of shape (n_t,) or (..., n_t)
        Arterial plasma input :math:`C_P` (e.g. Bq/ml); batched inputs broadcast
        against the parameter shape ``P``.
    amplitudes, rates : array-like of shape ``P + (n_exp,)``
        From :func:`one_tissue_irf` or :func:`two_tissue_irf`.
    vB : array-like broadcastable to ``P``, default=0.0
        Fractional blood volume in [0, 1].
    blood : array-like like ``plasma``, optional
        Whole-blood activity :math:`C_B`; the plasma curve when omitted.
    frame_start_min, frame_end_min : array-like of shape (n_frames,), optional
        Return frame averages instead of values at ``t_min``.

    Returns
    -------
    ndarray of shape ``P + (n_t,)`` or ``P + (n_frames,)``, in the unit of ``plasma``.
    """
    t = _check_time_grid(t_min)
    cp = _check_curve(plasma, t.size, "plasma")
    cb = cp if blood is None else _check_curve(blood, t.size, "blood")
    amp = np.asarray(amplitudes, dtype=float)
    theta = np.asarray(rates, dtype=float)
    if amp.shape != theta.shape or amp.ndim == 0:
        raise InputError(f"amplitudes {amp.shape} and rates {theta.shape} must share one shape P + (n_exp,)")
    vB = _check_fraction(vB, "vB")
    conv = convolve_exponentials(
        t, cp[..., None, :], theta, frame_start_min=frame_start_min, frame_end_min=frame_end_min
    )
    tissue = np.sum(amp[..., None] * conv, axis=-2)
    if frame_start_min is None:
        blood_part = cb
    else:
        blood_part = frame_average(t, cb, frame_start_min, frame_end_min)
    return (1.0 - vB)[..., None] * tissue + vB[..., None] * blood_part


def one_tissue_tac(t_min, plasma, K1, k2, *, vB=0.0, blood=None, frame_start_min=None, frame_end_min=None):
    r"""One-tissue model curve, :math:`(1 - v_B) K_1 e^{-k_2 t} \otimes C_P + v_B C_B`.

    Parameters are those of :func:`model_tac`, with ``K1`` (ml/cm3/min) and ``k2``
    (1/min) arrays of any common shape ``P``.

    Examples
    --------
    >>> t = np.linspace(0, 30, 301)
    >>> cp = np.full_like(t, 10.0)                     # constant input -> K1/k2 * Cp at equilibrium
    >>> round(float(one_tissue_tac(t, cp, 0.1, 0.5)[-1]), 3)
    2.0
    """
    amp, rate = one_tissue_irf(K1, k2)
    return model_tac(t_min, plasma, amp, rate, vB=vB, blood=blood,
                     frame_start_min=frame_start_min, frame_end_min=frame_end_min)


def two_tissue_tac(t_min, plasma, K1, k2, k3, k4=0.0, *, vB=0.0, blood=None, frame_start_min=None, frame_end_min=None):
    r"""Two-tissue model curve (reversible, or irreversible with ``k4=0``).

    Parameters are those of :func:`model_tac`, with ``K1`` (ml/cm3/min) and ``k2``,
    ``k3``, ``k4`` (1/min) arrays of any common shape ``P``. See :func:`two_tissue_irf`.
    """
    amp, rate = two_tissue_irf(K1, k2, k3, k4)
    return model_tac(t_min, plasma, amp, rate, vB=vB, blood=blood,
                     frame_start_min=frame_start_min, frame_end_min=frame_end_min)


def irreversible_two_tissue_tac(t_min, plasma, K1, k2, k3, *, vB=0.0, blood=None, frame_start_min=None, frame_end_min=None):
    r"""Irreversible two-tissue model curve (:math:`k_4 = 0`): trapping at rate :math:`k_3`.

    .. math::

        C_T = \frac{K_1}{k_2 + k_3}\left[k_3 \int_0^t C_P\,ds
              + k_2\, C_P \otimes e^{-(k_2 + k_3) t}\right]
    """
    return two_tissue_tac(t_min, plasma, K1, k2, k3, 0.0, vB=vB, blood=blood,
                          frame_start_min=frame_start_min, frame_end_min=frame_end_min)


def macro_parameters(K1, k2, k3=0.0, k4=0.0) -> dict[str, np.ndarray]:
    r"""Macro-parameters of the two-tissue model (one-tissue with ``k3=0``).

    Returns
    -------
    dict with
        ``"VND"`` = :math:`K_1/k_2` (ml/cm3), ``"VT"`` = :math:`K_1/k_2\,(1 + k_3/k_4)`
        (infinite when :math:`k_3 > 0 = k_4`), ``"Ki"`` = :math:`K_1 k_3/(k_2 + k_3)`
        (ml/cm3/min, the net influx of the irreversible model), ``"BPND"`` = :math:`k_3/k_4`.

    Examples
    --------
    >>> round(float(macro_parameters(0.1, 0.15, 0.05)["Ki"]), 4)
    0.025
    """
    K1, k2, k3, k4 = (_check_nonnegative(v, n) for v, n in ((K1, "K1"), (k2, "k2"), (k3, "k3"), (k4, "k4")))
    with np.errstate(divide="ignore", invalid="ignore"):
        vnd = np.where(k2 > 0, K1 / np.where(k2 > 0, k2, 1.0), np.inf)
        bpnd = np.where(k4 > 0, k3 / np.where(k4 > 0, k4, 1.0), np.where(k3 > 0, np.inf, 0.0))
        ki = np.where(k2 + k3 > 0, K1 * k3 / np.where(k2 + k3 > 0, k2 + k3, 1.0), 0.0)
    return {"VND": vnd, "VT": vnd * (1.0 + bpnd), "Ki": ki, "BPND": bpnd}
