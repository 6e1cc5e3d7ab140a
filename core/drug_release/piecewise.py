r"""Transport over consecutive periods of constant parameters (heating that stops, changing release).

:func:`~core.drug_release.transport.simulate` factorises its matrices once, for parameters
fixed in time. A protocol whose parameters change at given times (mild hyperthermia for one
hour, then body temperature) is simulated period by period with :func:`simulate_piecewise`,
each run starting from the final state of the previous one. Units as in
:mod:`core.drug_release.transport`: hours, µm, µM.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np

from core.drug_release.pressure import TissueGrid
from core.drug_release.transport import (MAX_DT_FRACTION, MassLedger, PlasmaInput, TransportParams,
                                         TransportSolution, simulate)
from core.errors import InputError

__all__ = ["Period", "FieldFunction", "default_dt_h", "simulate_piecewise"]


class Period(NamedTuple):
    """One period of constant parameters: it ends at ``t_end_h`` (h from injection), step ``dt_h``."""

    t_end_h: float
    params: TransportParams
    dt_h: float


def default_dt_h(params: TransportParams, fraction: float = 0.9, cap_h: float = 0.05) -> float:
    """Largest step (h) the accuracy guard of ``simulate`` accepts, times ``fraction``, at most ``cap_h``.

    The guard is :data:`~core.drug_release.transport.MAX_DT_FRACTION` /
    max(k_on + k_off, k_rel); heating (k_rel ~ 125 /h at 42 °C) forces steps of ~13 s.

    Examples
    --------
    >>> default_dt_h(TransportParams())
    0.05
    >>> round(default_dt_h(TransportParams(release_per_h=100.0)), 5)
    0.0045
    """
    rate = max(float(np.max(np.asarray(params.uptake_per_h) + np.asarray(params.efflux_per_h))),
               float(np.max(params.release_per_h)))
    return min(cap_h, fraction * MAX_DT_FRACTION / rate)


class FieldFunction:
    """A callable ``t_h -> field`` that always returns an array of ``shape`` (scalar outputs broadcast).

    Examples
    --------
    >>> f = FieldFunction(lambda t: 2.0 * t, (2, 3))
    >>> f(1.5).shape, f.at_point((1, 2))(1.5)
    ((2, 3), 3.0)
    """

    def __init__(self, fn: Callable, shape):
        self.fn, self.shape = fn, tuple(shape)

    def __call__(self, t_h):
        return np.broadcast_to(np.asarray(self.fn(t_h), float), self.shape)

    def at_point(self, ij) -> Callable:
        """The same curve at one voxel, a callable ``t_h -> float`` (for a micro window)."""
        return lambda t: float(self(t)[ij])


def _shifted(fn, t0):
    return lambda t: fn(np.asarray(t, float) + t0)


def simulate_piecewise(grid: TissueGrid, plasma: PlasmaInput, pieces, *, save_times_h, pressure_mmhg,
                       local_plasma_free=None) -> TransportSolution:
    """Run :func:`~core.drug_release.transport.simulate` over consecutive periods with their own parameters.

    Heating that stops after an hour changes the release-rate field at that time; the solver
    factorises its matrices once per run, so each period is one run started from the final
    state of the previous one (``initial=``), with the plasma curves shifted in time. The
    ledgers are joined: the cumulative terms of a period are added to the totals of the
    previous ones, so :meth:`MassLedger.residuals` of the joined run still balances (the
    second-order BDF2 restarts with one backward-Euler step at each change).

    Parameters
    ----------
    grid : TissueGrid
    plasma : PlasmaInput
        Plasma curves, time in h from injection.
    pieces : sequence of Period or (t_end_h, TransportParams, dt_h)
        Consecutive periods ending at ``t_end_h`` (h from injection, increasing).
    save_times_h : array-like
        Increasing times in [0, last t_end_h] to return.
    pressure_mmhg : ndarray or float
        IFP shared by all periods (their fluid parameters must agree).
    local_plasma_free : callable, optional
        ``t_h -> field`` (µM), time from injection; see ``simulate``.

    Returns
    -------
    TransportSolution
        At ``save_times_h``; ``dt_h`` is the shortest step used.

    Examples
    --------
    >>> sv = np.zeros((8, 8)); sv[4, 4] = 0.3
    >>> g = TissueGrid(5.0, sv, np.ones((8, 8), bool))
    >>> p = PlasmaInput.liposomal(10.0)
    >>> sol = simulate_piecewise(g, p, [(0.5, TransportParams(release_per_h=1.0), 0.05),
    ...                                 (1.0, TransportParams(), 0.05)], save_times_h=[0, 0.5, 1.0],
    ...                          pressure_mmhg=0.0)
    >>> sol.times_h.tolist(), sol.ledger.relative_imbalance() < 1e-8
    ([0.0, 0.5, 1.0], True)
    """
    save = np.asarray(save_times_h, float)
    t0, state, parts, dts = 0.0, None, [], []
    for t_end, params, dt in pieces:
        inside = save[(save > t0 + 1e-9) & (save < t_end - 1e-9)] - t0
        own = np.concatenate([[0.0], inside, [t_end - t0]])
        loc = None if local_plasma_free is None else (lambda t, t0=t0: local_plasma_free(t + t0))
        sol = simulate(grid, params, PlasmaInput(_shifted(plasma.carrier_uM, t0), _shifted(plasma.free_uM, t0)),
                       t_end_h=t_end - t0, dt_h=dt, save_times_h=own, pressure_mmhg=pressure_mmhg,
                       initial=state, local_plasma_free=loc)
        state = {k: getattr(sol, k)[-1] for k in ("encapsulated", "free", "bound")}
        parts.append((own + t0, sol))
        dts.append(sol.dt_h)
        t0 = t_end
    if abs(save[-1] - t0) > 1e-9 * max(1.0, t0) and save[-1] > t0:
        raise InputError(f"save time {save[-1]} h is after the last period ({t0} h)",
                         fix="Save within the simulated periods.")
    times, fields, ledger = [], {k: [] for k in ("encapsulated", "free", "bound")}, {}
    offset = None
    for j, (t_abs, sol) in enumerate(parts):
        led = sol.ledger
        cum = {f.name: getattr(led, f.name) for f in dataclasses.fields(MassLedger)}
        if offset is not None:
            for k in cum:
                if k not in ("times_h", "carrier", "free", "bound"):
                    cum[k] = cum[k] + offset[k]
        offset = {k: v[-1] for k, v in cum.items()}
        pick = [i for i, t in enumerate(t_abs) if np.any(np.abs(save - t) < 1e-9) and (j == 0 or i > 0)]
        times.extend(t_abs[pick])
        for k in fields:
            fields[k].append(getattr(sol, k)[pick])
        for k, v in cum.items():
            ledger.setdefault(k, []).append(v[pick] if k != "times_h" else t_abs[pick])
    led = MassLedger(**{k: np.concatenate(v) for k, v in ledger.items()})
    return TransportSolution(times_h=np.asarray(times), pressure_mmhg=np.broadcast_to(
        np.asarray(pressure_mmhg, float), grid.shape).copy(), ledger=led, dt_h=min(dts),
        **{k: np.concatenate(v) for k, v in fields.items()})
