r"""Graphical analyses: Patlak and Logan plots, with a plasma or a reference input.

Both turn the late part of the curves into a straight line whose slope is the quantity
of interest, fitted by weighted linear least squares over the frames that start at or
after :math:`t^*` (default 10 min, this work: the linear phase of amino-acid tracers in
brain is reached within minutes; pick it from the plot for other tracers).

Patlak (Patlak, Blasberg & Fenstermacher 1983), irreversible uptake. When the reversible
compartments have equilibrated with plasma,
:math:`C_T(t) = K_i \int_0^t C_P\,ds + V_0\, C_P(t)`. Averaged over frame :math:`f` this
stays exactly linear:

.. math::

    \frac{\bar C_T(f)}{\bar C_P(f)} = K_i\,
    \frac{\overline{\textstyle\int_0^t C_P}(f)}{\bar C_P(f)} + V_0,

and both frame averages of the input are computed exactly from its piecewise-linear
samples (:func:`core.kinetics.compartment.convolve_exponentials` with rate 0). Outputs
``Ki`` (ml/cm3/min) and ``intercept`` (:math:`V_0`, ml/cm3). In a voxel that is a
fraction :math:`v_B` blood the slope is :math:`(1 - v_B) K_i`; the blood adds only to
the intercept. With a reference region
(Patlak & Blasberg 1985) :math:`C_P` is replaced by the reference curve, known only as
frame averages (its running integral then assumes a constant value within each frame),
and ``Ki`` is the influx relative to the reference (1/min).

Logan (Logan et al. 1990), reversible uptake:

.. math::

    \frac{\int_0^t C_T\,ds}{C_T(t)} = V_T\,\frac{\int_0^t C_P\,ds}{C_T(t)} + b,

exact for a one-tissue compartment and asymptotically linear otherwise. The tissue
integral up to the middle of frame :math:`f` is taken from the frame averages,
:math:`\sum_{j<f} \bar C_T(j)\,\Delta_j + \bar C_T(f)\,\Delta_f / 2`. Outputs ``VT``
(ml/cm3) and ``intercept``. With a reference region (Logan et al. 1996) the abscissa is
:math:`(\int_0^t C_R\,ds + C_R(t)/k_2')/C_T(t)` and the slope is the distribution volume
ratio ``DVR`` (:math:`BP_{ND} = DVR - 1`); without :math:`k_2'` the term is dropped,
which leaves the slope unbiased once :math:`C_R/C_T` is constant (it moves into the
intercept).

Both methods are biased by noise (Logan, negatively) and by a plasma input that keeps
falling steeply in the fitted window (Patlak slope :math:`K_1 k_3/(k_2 + k_3 - \lambda)`
for an input decaying as :math:`e^{-\lambda t}`); compartment fits do not share that bias.

References
----------
Patlak CS, Blasberg RG, Fenstermacher JD. Graphical evaluation of blood-to-brain
transfer constants from multiple-time uptake data. J Cereb Blood Flow Metab 1983;3:1-7.
Patlak CS, Blasberg RG. Graphical evaluation of blood-to-brain transfer constants from
multiple-time uptake data. Generalizations. J Cereb Blood Flow Metab 1985;5:584-590.
Logan J, Fowler JS, Volkow ND, et al. Graphical analysis of reversible radioligand
binding from time-activity measurements applied to [N-11C-methyl]-(-)-cocaine PET studies
in human subjects. J Cereb Blood Flow Metab 1990;10:740-747.
Logan J, Fowler JS, Volkow ND, et al. Distribution volume ratios without blood sampling
from graphical analysis of PET data. J Cereb Blood Flow Metab 1996;16:834-840.
"""

from __future__ import annotations

import numpy as np

from core.errors import InputError, TimingError
from core.kinetics.compartment import convolve_exponentials, frame_average

__all__ = ["patlak", "logan", "DEFAULT_T_STAR_MIN"]

DEFAULT_T_STAR_MIN = 10.0


def _late_frames(fs: np.ndarray, fe: np.ndarray, t_star: float | None) -> np.ndarray:
    t_star = DEFAULT_T_STAR_MIN if t_star is None else float(t_star)
    if not np.isfinite(t_star) or t_star < 0:
        raise InputError(f"t_star must be a time >= 0 min, got {t_star!r}")
    sel = fs >= t_star - 1e-9
    if sel.sum() < 3:
        raise TimingError(f"only {int(sel.sum())} frames start at or after t* = {t_star:g} min; a graphical "
                          "analysis needs at least 3", fix=f"Choose t_star below {fs[-3]:g} min.")
    return sel


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Per-curve weighted least-squares line y = a x + b over the last axis."""
    W = w.sum()
    xm = (w * x).sum(-1, keepdims=True) / W
    ym = (w * y).sum(-1, keepdims=True) / W
    sxx = (w * (x - xm) ** 2).sum(-1)
    sxy = (w * (x - xm) * (y - ym)).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sxy / sxx
    b = ym[..., 0] - a * xm[..., 0]
    rss = (w * (y - a[..., None] * x - b[..., None]) ** 2).sum(-1)
    ok = np.isfinite(a) & np.isfinite(b) & (sxx > 0)
    return a, b, rss, ok


def _frame_weights(weights, fs, fe, sel):
    from core.kinetics.fitting import _weights

    return _weights(weights, fs, fe)[sel]


def _input_integrals(input_time, input_conc, reference, fs, fe):
    """Frame averages of the input and of its running integral (exact for plasma)."""
    if reference is not None:
        ref = np.asarray(reference, dtype=float)
        dur = fe - fs
        before = np.concatenate([[0.0], np.cumsum(ref * dur)[:-1]])
        # frames may have gaps: the reference is taken as zero there (frames usually abut)
        return ref, before + 0.5 * ref * dur
    avg = frame_average(input_time, input_conc, fs, fe)
    integral = convolve_exponentials(input_time, input_conc, 0.0, frame_start_min=fs, frame_end_min=fe)
    return avg, integral


def patlak(tac, frame_start_min, frame_end_min, *, input_time=None, input_conc=None, reference=None,
           t_star: float | None = None, weights="duration") -> dict[str, np.ndarray]:
    """Patlak plot slope and intercept for curves of shape (..., T).

    Use through :func:`core.kinetics.fit` (``model="patlak"``), which validates the
    arguments. Returns ``Ki``, ``intercept``, ``rss``, ``ok`` of shape ``tac.shape[:-1]``.
    """
    y_all = np.asarray(tac, dtype=float)
    fs, fe = np.asarray(frame_start_min, float), np.asarray(frame_end_min, float)
    sel = _late_frames(fs, fe, t_star)
    cin, integral = _input_integrals(input_time, input_conc, reference, fs, fe)
    if np.any(cin[sel] <= 0):
        raise InputError("the input is zero in a frame of the Patlak window", fix="Choose a later t_star or check the input.")
    x = integral[sel] / cin[sel]
    y = y_all[..., sel] / cin[sel]
    w = _frame_weights(weights, fs, fe, sel)
    a, b, rss, ok = _weighted_line(np.broadcast_to(x, y.shape), y, w)
    ok &= np.all(np.isfinite(y), axis=-1)
    return {"Ki": np.where(ok, a, np.nan), "intercept": np.where(ok, b, np.nan),
            "rss": np.where(ok, rss, np.nan), "ok": ok}


def logan(tac, frame_start_min, frame_end_min, *, input_time=None, input_conc=None, reference=None,
          t_star: float | None = None, k2_ref: float | None = None, weights="duration") -> dict[str, np.ndarray]:
    """Logan plot slope (``VT``, or ``DVR`` with a reference) for curves of shape (..., T).

    Use through :func:`core.kinetics.fit` (``model="logan"``). Curves that are not
    positive in every frame of the window fail (``ok = False``).
    """
    y_all = np.asarray(tac, dtype=float)
    fs, fe = np.asarray(frame_start_min, float), np.asarray(frame_end_min, float)
    sel = _late_frames(fs, fe, t_star)
    cin, integral = _input_integrals(input_time, input_conc, reference, fs, fe)
    if reference is not None and k2_ref is not None:
        if not (np.isfinite(k2_ref) and k2_ref > 0):
            raise InputError(f"k2_ref must be a positive rate in 1/min, got {k2_ref!r}")
        integral = integral + cin / float(k2_ref)
    dur = fe - fs
    safe = np.where(np.isfinite(y_all), y_all, 0.0)
    tissue_int = np.concatenate([np.zeros(y_all.shape[:-1] + (1,)), np.cumsum(safe * dur, axis=-1)[..., :-1]],
                                axis=-1) + 0.5 * safe * dur
    ct = y_all[..., sel]
    positive = np.all(np.isfinite(ct) & (ct > 0), axis=-1)
    denom = np.where(positive[..., None], ct, 1.0)
    x = integral[sel] / denom
    y = tissue_int[..., sel] / denom
    w = _frame_weights(weights, fs, fe, sel)
    a, b, rss, ok = _weighted_line(x, y, w)
    ok &= positive & np.all(np.isfinite(y_all), axis=-1)
    key = "VT" if reference is None else "DVR"
    return {key: np.where(ok, a, np.nan), "intercept": np.where(ok, b, np.nan),
            "rss": np.where(ok, rss, np.nan), "ok": ok}
