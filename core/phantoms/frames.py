r"""Dynamic PET frame schedules and the decay bookkeeping of a frame.

A schedule is written as blocks ``((count, duration_s), ...)`` that tile the
acquisition from injection: short frames while the bolus passes, long frames on the
late plateau. Frame times are kept in **seconds** as in :class:`core.imaging.DynamicVolume`
and PET-BIDS (``FrameTimesStart``, ``FrameDuration``); the kinetic code converts to
minutes at its boundary.

Decay over a frame (the textbook frame-average correction that scanner software applies
and PET-BIDS records as ``DecayCorrectionFactor``): a source of decay-corrected
concentration :math:`C` counted from :math:`t_s` to :math:`t_s + \Delta t` yields counts
proportional to :math:`C \int_{t_s}^{t_s+\Delta t} e^{-\lambda t} dt`; the factor that
restores the injection-time concentration from the frame's mean count rate is

.. math::

    \mathrm{DF} = \frac{\lambda \Delta t\, e^{\lambda t_s}}{1 - e^{-\lambda \Delta t}},
    \qquad \lambda = \ln 2 / T_{1/2}.

References
----------
Norgaard M, Matheson GJ, Hansen HD, et al. PET-BIDS, an extension to the brain imaging
data structure for positron emission tomography. Sci Data 2022;9:65.
"""

from __future__ import annotations

import math

import numpy as np

from core.errors import TimingError

__all__ = [
    "F18_HALF_LIFE_S",
    "frame_schedule",
    "check_frame_schedule",
    "frame_decay_factors",
    "input_time_grid_min",
]

#: Physical half-life of fluorine-18: 109.77 min (DDEP/LNHB recommended data; the value
#: DICOM RadionuclideHalfLife commonly carries).
F18_HALF_LIFE_S = 6586.2


def frame_schedule(blocks) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous frames from injection, from blocks of ``(count, duration_s)``.

    Parameters
    ----------
    blocks : sequence of (int, float)
        For example ``((12, 10), (6, 30), (5, 60), (5, 240))``: 28 frames over 30 min.

    Returns
    -------
    frame_start_s, frame_duration_s : ndarray of shape (n_frames,)

    Examples
    --------
    >>> start, dur = frame_schedule(((2, 10), (1, 60)))
    >>> start.tolist(), dur.tolist()
    ([0.0, 10.0, 20.0], [10.0, 10.0, 60.0])
    """
    durations = []
    for count, duration_s in blocks:
        if int(count) != count or count < 1 or not (duration_s > 0 and math.isfinite(duration_s)):
            raise TimingError(f"frame block ({count!r}, {duration_s!r}) needs a positive whole count and a positive duration in s")
        durations.extend([float(duration_s)] * int(count))
    duration = np.asarray(durations, dtype=float)
    start = np.concatenate([[0.0], np.cumsum(duration)[:-1]])
    return start, duration


def check_frame_schedule(frame_start_s, frame_duration_s) -> tuple[np.ndarray, np.ndarray]:
    """Validate frame timing: finite, non-negative, positive durations, strictly increasing, no overlap.

    Returns the arrays as float ndarrays; raises :class:`core.errors.TimingError` with the
    first offending frame otherwise.
    """
    start = np.asarray(frame_start_s, dtype=float)
    dur = np.asarray(frame_duration_s, dtype=float)
    if start.ndim != 1 or start.shape != dur.shape or start.size == 0:
        raise TimingError(f"frame starts {start.shape} and durations {dur.shape} must be 1D of equal, non-zero length")
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(dur))):
        raise TimingError("frame timing holds NaN or infinite values")
    if start[0] < 0 or np.any(dur <= 0):
        raise TimingError(f"frames must start at t >= 0 s with positive durations (first start {start[0]!r} s, shortest {dur.min()!r} s)")
    if np.any(start[1:] < start[:-1] + dur[:-1] - 1e-6):
        j = int(np.argmax(start[1:] < start[:-1] + dur[:-1] - 1e-6))
        raise TimingError(f"frame {j + 1} starts at {start[j + 1]!r} s, before frame {j} ends at {start[j] + dur[j]!r} s")
    return start, dur


def frame_decay_factors(frame_start_s, frame_duration_s, half_life_s: float = F18_HALF_LIFE_S) -> np.ndarray:
    r"""Frame decay-correction factors to injection, :math:`\lambda\Delta t\,e^{\lambda t_s}/(1 - e^{-\lambda\Delta t})`.

    Examples
    --------
    >>> round(float(frame_decay_factors([0.0], [1e-6])[0]), 6)
    1.0
    >>> round(float(frame_decay_factors([F18_HALF_LIFE_S], [1e-6])[0]), 6)
    2.0
    """
    start, dur = check_frame_schedule(frame_start_s, frame_duration_s)
    lam = math.log(2.0) / float(half_life_s)
    x = lam * dur
    return x * np.exp(lam * start) / (-np.expm1(-x))


def input_time_grid_min(end_min: float, *, early_step_s: float = 2.0, late_step_s: float = 15.0,
                        switch_min: float = 5.0) -> np.ndarray:
    """Sample times (minutes) for an input function: fine while the bolus passes, then coarse.

    The default 2 s step resolves the FDOPA bolus (peak width of a few tens of seconds)
    to well under 1 % in the tissue curves; after ``switch_min`` a 15 s step follows the
    slow exponentials. Frame boundaries need not fall on the grid: the convolution in
    :mod:`core.kinetics.compartment` inserts them exactly.

    Examples
    --------
    >>> g = input_time_grid_min(30.0)
    >>> float(g[0]), float(g[-1]), bool(np.all(np.diff(g) > 0))
    (0.0, 30.0, True)
    """
    if not end_min > 0:
        raise TimingError(f"the input grid needs a positive end time, got {end_min!r} min")
    early = np.arange(0.0, min(switch_min, end_min), early_step_s / 60.0)
    late = np.arange(early[-1] + early_step_s / 60.0 if early.size else 0.0, end_min, late_step_s / 60.0)
    grid = np.unique(np.concatenate([early, late, [end_min]]))
    return grid
