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

The observation noise model is additive Gaussian, independent per voxel and time point, with
standard deviation :attr:`InverseProblem.noise_sd_uM`: one figure for both species, or one per
observed species (``{"encapsulated": sd, "released": sd}``), because the two maps come from
different measurements (the carrier from :math:`\Delta R_2^*`, the released drug from
:math:`\Delta R_1`) and have different noise. :meth:`InverseProblem.noise_sd` gives the SD of
one species; both inverses divide each species' residuals by it (weighted least squares, the
maximum-likelihood weighting for independent Gaussian noise).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from core.drug_release.pressure import TissueGrid
from core.drug_release.transport import PlasmaInput, TransportParams, TransportSolution
from core.errors import InputError

__all__ = ["UNKNOWNS", "OBSERVED", "Unknown", "InverseProblem", "InverseResult", "with_parameters", "observe",
           "relative_errors", "normalised_pattern"]

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


def _positive_sd(value, what) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not (v > 0 and math.isfinite(v)):
        raise InputError(f"{what} = {value!r} is not a positive, finite noise SD",
                         fix="Give the noise standard deviation in µM, > 0 (e.g. from a host or background region).")
    return v


def _check_noise_sd(sd):
    """A float, or a dict species -> float with exactly the keys of OBSERVED."""
    if not isinstance(sd, Mapping):
        return _positive_sd(sd, "noise_sd_uM")
    extra = [k for k in sd if k not in OBSERVED]
    if extra:
        raise InputError(f"noise_sd_uM has key {extra[0]!r}, which is not an observed species",
                         fix=f"Use the keys {', '.join(OBSERVED)} (one SD per observed map), or one float for both.")
    missing = [k for k in OBSERVED if k not in sd]
    if missing:
        raise InputError(f"noise_sd_uM lacks the key {missing[0]!r}",
                         fix=f"Give an SD for each of {', '.join(OBSERVED)}, or one float for both.")
    return {k: _positive_sd(sd[k], f"noise_sd_uM[{k!r}]") for k in OBSERVED}


@dataclass(frozen=True)
class InverseProblem:
    r"""Data and known quantities of one inverse problem.

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
    noise_sd_uM : float or dict
        Standard deviation of the observation noise, µM: a float for both species, or a
        mapping with one SD per observed species, keys exactly :data:`OBSERVED`
        (``{"encapsulated": sd_carrier, "released": sd_released}``); each > 0 and finite.
        A mapping is stored as a plain dict of floats, a float as a float.
    dt_h : float, default=0.05
        Time step of the forward solver.
    carrier_permeability_pattern : ndarray, optional
        Known relative pattern :math:`m(x) \ge 0` of the carrier permeability on the grid (e.g.
        from DCE-MRI, :math:`K^{trans}/(S/V)`). Stored normalised to an S/V-weighted tumour mean
        of 1, so that the unknown ``permeability_carrier_um_per_h`` is that mean and the field is
        :math:`P_L(x) = \bar P_L\,m(x)`. Default: a uniform permeability.
    """

    grid: TissueGrid
    plasma: PlasmaInput
    base: TransportParams
    times_h: np.ndarray
    observed: dict
    unknowns: tuple
    noise_sd_uM: float | dict
    dt_h: float = 0.05
    carrier_permeability_pattern: np.ndarray | None = None

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
        object.__setattr__(self, "noise_sd_uM", _check_noise_sd(self.noise_sd_uM))
        if not 0 < self.dt_h <= float(t[0]):
            raise InputError(f"dt_h {self.dt_h!r} must be positive and not longer than the first imaging time")
        if self.carrier_permeability_pattern is not None:
            object.__setattr__(self, "carrier_permeability_pattern",
                               normalised_pattern(self.carrier_permeability_pattern, self.grid))

    def parameters(self, values: dict) -> TransportParams:
        """``base`` with the unknowns set to ``values`` (the carrier permeability scaled onto the pattern)."""
        return with_parameters(self.base, values, carrier_pattern=self.carrier_permeability_pattern)

    def noise_sd(self, name: str) -> float:
        """Noise SD of observed species ``name`` (a key of :data:`OBSERVED`), µM.

        Examples
        --------
        >>> from core.drug_release.inverse_demo import synthetic_problem
        >>> prob, _ = synthetic_problem(12, times_h=(1.0, 2.0), unknowns=("release_per_h",))
        >>> prob = dataclasses.replace(prob, noise_sd_uM={"encapsulated": 0.5, "released": 0.1})
        >>> prob.noise_sd("released")
        0.1
        """
        if name not in OBSERVED:
            raise InputError(f"{name!r} is not an observed species", fix=f"Use one of {', '.join(OBSERVED)}.")
        sd = self.noise_sd_uM
        return float(sd[name]) if isinstance(sd, dict) else float(sd)

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


def normalised_pattern(pattern, grid: TissueGrid) -> np.ndarray:
    """A relative permeability pattern scaled to an S/V-weighted tumour mean of 1.

    Raises
    ------
    InputError
        Not on the grid, negative or not finite, or zero over the vascularised tumour.

    Examples
    --------
    >>> g = TissueGrid(100.0, np.array([[0.01, 0.03]]), np.array([[True, True]]))
    >>> normalised_pattern(np.array([[1.0, 2.0]]), g).round(4).tolist()
    [[0.5714, 1.1429]]
    """
    m = np.asarray(pattern, float)
    if m.shape != tuple(grid.shape):
        raise InputError(f"the carrier permeability pattern has shape {m.shape}, the grid {tuple(grid.shape)}",
                         fix="Give the pattern on the transport grid.")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise InputError("the carrier permeability pattern holds negative, NaN or infinite values",
                         fix="Replace undefined voxels (e.g. failed DCE fits) by 1 before the inverse.")
    w = np.asarray(grid.vessel_surface_per_um, float) * np.asarray(grid.tumour, bool)
    mean = float(np.sum(w * m) / np.sum(w)) if np.sum(w) > 0 else 0.0
    if not mean > 0:
        raise InputError("the carrier permeability pattern is zero over the vascularised tumour",
                         fix="Check the pattern (e.g. Ktrans over S/V) and the vessel map.")
    return m / mean


def with_parameters(base: TransportParams, values: dict, *, carrier_pattern=None) -> TransportParams:
    """``base`` with the named parameters replaced (``vascular_pressure_mmhg`` goes into its fluid).

    With ``carrier_pattern`` (see :func:`normalised_pattern`), ``permeability_carrier_um_per_h``
    scales the pattern instead of replacing the field by a constant.

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
    new = {k: float(v) for k, v in values.items()}
    if carrier_pattern is not None and "permeability_carrier_um_per_h" in new:
        new["permeability_carrier_um_per_h"] = new["permeability_carrier_um_per_h"] * np.asarray(carrier_pattern, float)
    return dataclasses.replace(base, fluid=fluid, **new)


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
