r"""The inverse problem of drug release, shared by the classical inverse and the I-PINN.

Given sparse imaging time points of a preclinical study, the concentration of
**encapsulated** drug (carrier label, for example :math:`\Delta R_2^*` of iron-oxide or
susceptibility maps of the liposomes) and of **released** drug (free plus cell-bound, for
example the :math:`T_1` change of a co-released agent) on the image grid, and what is known
of the animal (the vessel surface map and tumour mask from imaging, the plasma curves from
blood samples), estimate the transport parameters that the images do not show directly:

=====================================  ================================================
name                                   what it is (units of :class:`TransportParams`)
=====================================  ================================================
``release_per_h``                      first-order release rate :math:`k_{rel}`, 1/h
``diffusion_free_um2_per_h``           free-drug diffusion coefficient :math:`D_F`, µm²/h
``permeability_carrier_um_per_h``      vessel permeability to the carrier :math:`P_L`, µm/h
``vascular_pressure_mmhg``             microvascular pressure :math:`p_v`, mmHg, which
                                       sets the interstitial fluid pressure field through
                                       :func:`core.drug_release.pressure.interstitial_pressure`
=====================================  ================================================

Each unknown is a scalar over the tumour (the tumour is where the images constrain it); the
forward model is :func:`core.drug_release.transport.simulate` with every other parameter as
in :attr:`InverseProblem.base`. Both solvers work in the logarithm of the parameters (all
positive) within :attr:`Unknown.bounds`, and both report a one-standard-deviation
uncertainty per parameter. :func:`with_parameters` builds the :class:`TransportParams` of a
parameter vector, :func:`observe` the predicted observations of a forward solution, so that
the data term of both methods is the same.

The observation noise model is additive Gaussian with standard deviation
:attr:`InverseProblem.noise_sd_uM` per voxel and time point.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from core.drug_release.pressure import TissueGrid
from core.drug_release.transport import PlasmaInput, TransportParams, TransportSolution
from core.errors import InputError

__all__ = ["UNKNOWNS", "OBSERVED", "Unknown", "InverseProblem", "InverseResult", "with_parameters", "observe",
           "relative_errors"]

#: Parameters the inverse can estimate, with default bounds (this work: two decades around the
#: defaults of :class:`TransportParams` and the Baxter-Jain vascular pressure).
UNKNOWNS = {
    "release_per_h": (1e-4, 10.0),
    "diffusion_free_um2_per_h": (1e3, 1e6),
    "permeability_carrier_um_per_h": (1e-2, 1e2),
    "vascular_pressure_mmhg": (1.0, 60.0),
}
#: Observed species: encapsulated drug, and released drug = free + bound.
OBSERVED = ("encapsulated", "released")


@dataclass(frozen=True)
class Unknown:
    """One parameter to estimate: its name (a key of :data:`UNKNOWNS`), start value and bounds."""

    name: str
    initial: float
    bounds: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        if self.name not in UNKNOWNS:
            raise InputError(f"{self.name!r} is not a parameter the inverse can estimate",
                             fix=f"Use one of {', '.join(UNKNOWNS)}.")
        lo, hi = self.bounds if self.bounds != (0.0, 0.0) else UNKNOWNS[self.name]
        if not (0 < lo < hi and math.isfinite(hi)):
            raise InputError(f"bounds {self.bounds!r} of {self.name} are not 0 < low < high")
        if not lo <= self.initial <= hi:
            raise InputError(f"start value {self.initial!r} of {self.name} is outside its bounds [{lo}, {hi}]")
        object.__setattr__(self, "bounds", (float(lo), float(hi)))


@dataclass(frozen=True)
class InverseProblem:
    """Data and known quantities of one inverse problem.

    Attributes
    ----------
    grid : TissueGrid
        Image grid with the vessel surface map and the tumour mask.
    plasma : PlasmaInput
        Plasma curves of carrier and free drug (µM, time in h).
    base : TransportParams
        Known parameters; the unknowns replace their fields.
    times_h : ndarray (n_times,)
        Imaging times, h after injection, increasing, > 0.
    observed : dict
        ``"encapsulated"`` and ``"released"`` (free + bound): arrays (n_times, *grid.shape), µM.
    unknowns : tuple of Unknown
    noise_sd_uM : float
        Standard deviation of the observation noise, µM.
    dt_h : float, default=0.05
        Time step of the forward solver.
    """

    grid: TissueGrid
    plasma: PlasmaInput
    base: TransportParams
    times_h: np.ndarray
    observed: dict
    unknowns: tuple
    noise_sd_uM: float
    dt_h: float = 0.05

    def __post_init__(self):
        t = np.asarray(self.times_h, float)
        if t.ndim != 1 or t.size < 1 or not np.all(np.isfinite(t)) or np.any(t <= 0) or np.any(np.diff(t) <= 0):
            raise InputError(f"imaging times {self.times_h!r} h must be positive and increasing")
        object.__setattr__(self, "times_h", t)
        shape = (t.size, *self.grid.shape)
        for name in OBSERVED:
            if name not in self.observed:
                raise InputError(f"the observations lack {name!r}", fix=f"Give {', '.join(OBSERVED)}.")
            a = np.asarray(self.observed[name], float)
            if a.shape != shape:
                raise InputError(f"observed {name} has shape {a.shape}, expected {shape} (times x grid)")
            if not np.all(np.isfinite(a)):
                raise InputError(f"observed {name} holds NaN or infinite values",
                                 fix="Mask or interpolate the bad voxels before the inverse.")
        if not self.unknowns or len({u.name for u in self.unknowns}) != len(self.unknowns):
            raise InputError("the unknowns must be a non-empty list of distinct parameters")
        if not (self.noise_sd_uM > 0 and math.isfinite(self.noise_sd_uM)):
            raise InputError(f"noise_sd_uM {self.noise_sd_uM!r} must be positive")
        if not 0 < self.dt_h <= float(t[0]):
            raise InputError(f"dt_h {self.dt_h!r} must be positive and not longer than the first imaging time")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(u.name for u in self.unknowns)

    def initial_vector(self) -> np.ndarray:
        return np.array([u.initial for u in self.unknowns], float)


@dataclass(frozen=True)
class InverseResult:
    """Estimates of one method.

    Attributes
    ----------
    method : str
        ``"classical"`` or ``"pinn"``.
    estimates : dict
        Parameter name -> value.
    std : dict
        Parameter name -> one standard deviation (how it is obtained is the method's docstring).
    wall_s : float
    iterations : int
    history : ndarray
        Loss per iteration (or per evaluation).
    pressure_mmhg : ndarray
        The interstitial fluid pressure field of the estimates.
    extra : dict
        Method-specific details (forward solves, final loss terms).
    """

    method: str
    estimates: dict
    std: dict
    wall_s: float
    iterations: int
    history: np.ndarray
    pressure_mmhg: np.ndarray
    extra: dict = field(default_factory=dict)


def with_parameters(base: TransportParams, values: dict) -> TransportParams:
    """``base`` with the named parameters replaced (``vascular_pressure_mmhg`` goes into its fluid).

    Examples
    --------
    >>> p = with_parameters(TransportParams(), {"release_per_h": 0.1, "vascular_pressure_mmhg": 20.0})
    >>> p.release_per_h, p.fluid.vascular_pressure_mmhg
    (0.1, 20.0)
    """
    values = dict(values)
    fluid = base.fluid
    if "vascular_pressure_mmhg" in values:
        fluid = dataclasses.replace(fluid, vascular_pressure_mmhg=float(values.pop("vascular_pressure_mmhg")))
    unknown = set(values) - set(UNKNOWNS)
    if unknown:
        raise InputError(f"unknown parameters {sorted(unknown)}", fix=f"Use {', '.join(UNKNOWNS)}.")
    return dataclasses.replace(base, fluid=fluid, **{k: float(v) for k, v in values.items()})


def observe(solution: TransportSolution, times_h) -> dict:
    """Predicted observations of a forward solution at ``times_h`` (which it must have saved)."""
    idx = []
    for t in np.asarray(times_h, float):
        j = int(np.argmin(np.abs(solution.times_h - t)))
        if abs(solution.times_h[j] - t) > 1e-6 * max(1.0, t):
            raise InputError(f"the forward solution has no saved time at {t} h",
                             fix="Pass the imaging times as save_times_h to simulate.")
        idx.append(j)
    return {"encapsulated": solution.encapsulated[idx], "released": solution.free[idx] + solution.bound[idx]}


def relative_errors(estimates: dict, truth: dict) -> dict:
    """Signed relative error of each estimate against the truth, (est - true) / true."""
    return {k: (float(estimates[k]) - float(truth[k])) / float(truth[k]) for k in estimates if k in truth}
