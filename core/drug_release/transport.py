r"""Transport of liposomal (encapsulated) and free doxorubicin in tumour tissue: the forward solver.

Units: time in **hours**, lengths in **µm**, concentrations in **µM** doxorubicin equivalent
per **tissue** volume (interstitial concentration is :math:`c/\varphi`), pressure in mmHg.
Amounts in the mass ledger are µM·µm³ in 3D (1 µM·µm³ = 1e-21 mol) and µM·µm² per µm of
depth in 2D. The grid, IFP and Darcy flow come from :mod:`core.drug_release.pressure`.

Equations (linear in the concentrations)
----------------------------------------
For the encapsulated drug :math:`c_L`, the free drug :math:`c_F` and the bound/intracellular
drug :math:`c_B`,

.. math::

   \partial_t c_L &= \nabla\cdot\bigl(D_L\varphi\nabla(c_L/\varphi)\bigr)
       - \nabla\cdot(\mathbf u\, c_L/\varphi)
       + P_L \tfrac{S}{V}\,(c_{pL} - c_L/\varphi)
       + (1-\sigma_L)\,\bigl[J_v^+ c_{pL} - J_v^- c_L/\varphi\bigr]
       - Q_L\, c_L/\varphi - k_{rel}\, c_L \\
   \partial_t c_F &= \nabla\cdot\bigl(D_F\varphi\nabla(c_F/\varphi)\bigr)
       - \nabla\cdot(\mathbf u\, c_F/\varphi)
       + P_F \tfrac{S}{V}\,(c_{pF} - c_F/\varphi)
       + (1-\sigma_F)\,\bigl[J_v^+ c_{pF} - J_v^- c_F/\varphi\bigr]
       - Q_L\, c_F/\varphi + k_{rel}\, c_L - k_{on} c_F + k_{off} c_B \\
   \partial_t c_B &= k_{on} c_F - k_{off} c_B

* transvascular exchange: Kedem–Katchalsky/Starling form as used by Baxter & Jain (1989),
  the diffusive term :math:`P S/V\,\Delta c` plus solvent drag :math:`(1-\sigma) J_v c`
  with :math:`J_v/V = L_p S/V (p_v - p - \sigma_T\Delta\pi)` (1/h, from the steady IFP) and
  the drag concentration taken upwind: plasma where fluid leaves the vessel
  (:math:`J_v^+ = \max(J_v, 0)`), interstitium where it is reabsorbed
  (:math:`J_v^- = \max(-J_v, 0)`). We use the additive form, not the Péclet-weighted one
  (this work: simpler, linear, and within the uncertainty of the permeabilities);
* :math:`c_{pL}(t), c_{pF}(t)` plasma concentrations (:class:`PlasmaInput`); the vascular
  volume itself is not a compartment of the grid. ``simulate(local_plasma_free=...)`` adds a
  per-voxel field :math:`\Delta c_{pF}(\mathbf x, t)` to :math:`c_{pF}` in the inflow terms
  (:math:`P_F S/V\,c_{pF}` and :math:`J_v^+ c_{pF}`): free drug released inside heated vessels
  by thermosensitive liposomes (Manzoor et al. 2012), counted in ``free_from_plasma``;
* :math:`\mathbf u` Darcy velocity (convection of interstitial fluid) and
  :math:`Q_L = L_{pL} S_L/V\,(p - p_L)^+` lymphatic drainage (1/h), both carrying the
  interstitial concentration;
* :math:`k_{rel}` release of encapsulated drug (1/h; a scalar or per-voxel field, e.g. from
  pH or temperature, see the release-rate laws); :math:`k_{on}, k_{off}` cellular uptake and
  binding, release back (1/h). With a steady pressure every coefficient is fixed in time, so
  the system matrix is built and factorised once.

Numerics
--------
Cell-centred finite volumes; diffusive face coefficients are harmonic means of
:math:`D\varphi`; advection is first-order upwind with the Darcy face velocities (so the
scheme is conservative and the fluid balance of the pressure solve carries over). **Outer
boundary**: zero diffusive flux for every species; no drug enters by advection; drug
leaving with outflowing interstitial fluid (where the IFP boundary condition p = 0 drives
fluid out) is counted in the ledger as ``*_to_boundary`` (closing the boundary to drug while
fluid leaves would pile drug up there). With no flow (no vessels, or a prescribed uniform
pressure) the boundary is closed. Time stepping: BDF2 (A-stable, second order; the first
step backward Euler), the carrier block and the free/bound block solved one after the other
(the bound species eliminated locally), each matrix factorised once
(:func:`core.drug_release.pressure.linear_solver`). Plasma terms are time-dependent
sources evaluated at the new time level. The mass ledger accumulates every exchange with
the same BDF2 weights, so the balance holds to round-off. BDF2 does not guarantee
positivity: tiny negative undershoots (far below the peak) can appear after abrupt inputs.

**Time step guard (accuracy, not stability)**: the scheme is stable for any ``dt_h``, but a
step longer than :data:`MAX_DT_FRACTION` of the fastest reaction time scale
:math:`1/\max(k_{on}+k_{off}, k_{rel})` would misrepresent uptake/release, so it is refused.

Default parameters
------------------
=========================  ===========================  ========================================
parameter                  default                      source
=========================  ===========================  ========================================
:math:`D_F`                1e-7 cm²/s = 36 000 µm²/h    (this work), order of magnitude for
                                                        doxorubicin in tumour interstitium
:math:`D_L` (100 nm)       1e-9 cm²/s = 360 µm²/h       (this work): Stokes–Einstein in water at
                                                        37 °C gives 6.6e-8 cm²/s for a 50 nm
                                                        radius; hindered ~60-fold in interstitium
:math:`P_F`                3e-5 cm/s = 1 080 µm/h       (this work), small-molecule order
:math:`P_L`                3e-8 cm/s = 1.08 µm/h        (this work), order of magnitude of tumour
                                                        vessel permeability to large particles
                                                        (Yuan et al. 1995)
:math:`\sigma_F, \sigma_L` 0.0, 0.9                     (this work)
:math:`k_{rel}`            0.01 /h                      (this work), slow leak of non-triggered
                                                        PEGylated liposomes
:math:`k_{on}`             6 /h                         (this work), see below
:math:`k_{off}`            0.3 /h                       (this work), bound:free 20 at equilibrium
:math:`\varphi`            0.3                          (this work), order of magnitude for
                                                        tumour interstitium (Jain 1987)
=========================  ===========================  ========================================

**Penetration**: the free-drug penetration length from a vessel is set by
:math:`\lambda = \sqrt{D_F/k_{on}}` (≈ 77 µm with the defaults, shortened in 2D/3D by
geometric spreading and by plasma clearance). :math:`k_{on}` was chosen (this work) so that
free doxorubicin penetrates of the order of 50 µm from a vessel, as issue 7 states from
Primeau et al. (2005), who measured doxorubicin fluorescence falling with distance from
vessels. Checked by ``tests/unit/test_drug_release_transport.py::
test_free_drug_penetration_distance``: a capillary (radius 10 µm) in a 2D 320 µm window,
free-drug bolus, 2 h: the free-drug exposure (AUC) falls to 1/e at 59 µm and to half at
39 µm from the vessel (total drug: 53 and 35 µm).

References
----------
.. [1] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. I. Role of
   interstitial pressure and convection. Microvasc Res 1989;37:77-104.
.. [2] Jain RK. Transport of molecules in the tumor interstitium: a review. Cancer Res
   1987;47:3039-3051.
.. [3] Primeau AJ, Rendon A, Hedley D, Lilge L, Tannock IF. The distribution of the
   anticancer drug doxorubicin in relation to blood vessels in solid tumors. Clin Cancer Res
   2005;11:8782-8788.
.. [4] Yuan F, Dellian M, Fukumura D, et al. Vascular permeability in a human tumor
   xenograft: molecular size dependence and cutoff size. Cancer Res 1995;55:3752-3756.
.. [5] Manzoor AA, Lindner LH, Landon CD, et al. Overcoming limitations in nanoparticle drug
   delivery: triggered, intravascular release to improve drug penetration into tumors. Cancer
   Res 2012;72:5566-5575.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from core.drug_release.pressure import (CM_PER_MMHG_S, Field, FluidParams, TissueGrid, advection_matrix,
                                        check_field, check_grid, diffusion_matrix, filtration_rate_per_h,
                                        interstitial_pressure, interstitial_velocity, linear_solver,
                                        lymph_drainage_per_h)
from core.errors import GeometryError, InputError, TimingError

__all__ = ["TransportParams", "PlasmaInput", "MassLedger", "TransportSolution", "simulate", "param_fields",
           "MAX_DT_FRACTION", "CM2_PER_S"]

#: 1 cm²/s in µm²/h.
CM2_PER_S = 1e8 * 3600.0
#: dt_h may be at most this fraction of the fastest reaction time scale (accuracy guard).
MAX_DT_FRACTION = 0.5
_SPECIES = ("encapsulated", "free", "bound")


@dataclasses.dataclass(frozen=True)
class TransportParams:
    """Drug-transport parameters; each a scalar or a per-voxel field (see the module table).

    Attributes
    ----------
    diffusion_free_um2_per_h : float or ndarray, default=36000.0 (1e-7 cm²/s)
    diffusion_carrier_um2_per_h : float or ndarray, default=360.0 (1e-9 cm²/s)
    permeability_free_um_per_h : float or ndarray, default=1080.0 (3e-5 cm/s)
    permeability_carrier_um_per_h : float or ndarray, default=1.08 (3e-8 cm/s)
    reflection_free : float or ndarray, default=0.0
    reflection_carrier : float or ndarray, default=0.9
    release_per_h : float or ndarray, default=0.01
        k_rel, release of encapsulated drug.
    uptake_per_h : float or ndarray, default=6.0
        k_on, cellular uptake/binding of free drug.
    efflux_per_h : float or ndarray, default=0.3
        k_off, return of bound drug to the free pool.
    interstitial_fraction : float or ndarray, default=0.3
        phi, in (0, 1].
    fluid : FluidParams, default=FluidParams()
        For the IFP, filtration and lymph drainage.

    Examples
    --------
    >>> TransportParams(release_per_h=0.5).release_per_h
    0.5
    """

    diffusion_free_um2_per_h: Field = 1e-7 * CM2_PER_S
    diffusion_carrier_um2_per_h: Field = 1e-9 * CM2_PER_S
    permeability_free_um_per_h: Field = 3e-5 * CM_PER_MMHG_S
    permeability_carrier_um_per_h: Field = 3e-8 * CM_PER_MMHG_S
    reflection_free: Field = 0.0
    reflection_carrier: Field = 0.9
    release_per_h: Field = 0.01
    uptake_per_h: Field = 6.0
    efflux_per_h: Field = 0.3
    interstitial_fraction: Field = 0.3
    fluid: FluidParams = FluidParams()


_RANGES = {
    "diffusion_free_um2_per_h": (0.0, None, " µm²/h"),
    "diffusion_carrier_um2_per_h": (0.0, None, " µm²/h"),
    "permeability_free_um_per_h": (0.0, None, " µm/h"),
    "permeability_carrier_um_per_h": (0.0, None, " µm/h"),
    "reflection_free": (0.0, 1.0, ""),
    "reflection_carrier": (0.0, 1.0, ""),
    "release_per_h": (0.0, None, " 1/h"),
    "uptake_per_h": (0.0, None, " 1/h"),
    "efflux_per_h": (0.0, None, " 1/h"),
    "interstitial_fraction": (0.0, 1.0, ""),
}


def param_fields(params: TransportParams, shape) -> dict:
    """Every field of ``params`` checked and broadcast to ``shape`` (the solver and the I-PINN use these)."""
    if not isinstance(params, TransportParams):
        raise InputError(f"expected TransportParams, got {type(params).__name__}", fix="Pass TransportParams(...).")
    out = {k: np.broadcast_to(check_field(getattr(params, k), f"TransportParams.{k}", shape, low=lo, high=hi,
                                          unit=u), shape).astype(float)
           for k, (lo, hi, u) in _RANGES.items()}
    if np.any(out["interstitial_fraction"] <= 0):
        raise InputError("interstitial_fraction is 0 somewhere", fix="Give a volume fraction in (0, 1].")
    return out


# ----------------------------------------------------------------------------- plasma
def _exp_sum(amplitudes, rates):
    a = tuple(float(x) for x in amplitudes)
    k = tuple(float(x) for x in rates)

    def f(t_h):
        t = np.asarray(t_h, float)
        return sum(ai * np.exp(-ki * t) for ai, ki in zip(a, k)) + 0.0 * t
    return f


def _zero(t_h):
    return np.zeros_like(np.asarray(t_h, float))


@dataclasses.dataclass(frozen=True)
class PlasmaInput:
    """Plasma concentrations of encapsulated and free drug (µM) as functions of time (h).

    Attributes
    ----------
    carrier_uM : callable
        ``carrier_uM(t_h) -> µM``, encapsulated drug in plasma; vectorised over ``t_h``.
    free_uM : callable
        ``free_uM(t_h) -> µM``, free drug in plasma.
    label : str, default=""

    Examples
    --------
    >>> p = PlasmaInput.liposomal(100.0, half_life_h=20.0)
    >>> round(float(p.carrier_uM(20.0)), 6), float(p.free_uM(1.0))
    (50.0, 0.0)
    """

    carrier_uM: Callable = _zero
    free_uM: Callable = _zero
    label: str = ""

    @classmethod
    def liposomal(cls, dose_uM0: float, half_life_h: float = 20.0, *, free_fraction: float = 0.0) -> "PlasmaInput":
        """Mono-exponential encapsulated drug, :math:`c_{pL} = c_0 2^{-t/T}`.

        ``half_life_h`` default 20 h (this work: PEGylated liposomes circulate in mice with
        half-lives of the order of tens of hours). ``free_fraction`` puts that fraction of
        the carrier curve as free drug in plasma (leak in blood), default 0.
        """
        c0 = _positive(dose_uM0, "dose_uM0", " µM")
        k = math.log(2) / _positive(half_life_h, "half_life_h", " h")
        ff = float(free_fraction)
        if not 0 <= ff <= 1:
            raise InputError(f"free_fraction = {free_fraction} is not in [0, 1]", fix="Give a fraction in [0, 1].")
        return cls(_exp_sum([c0], [k]), _exp_sum([ff * c0], [k]) if ff > 0 else _zero,
                   f"liposomal {c0:g} µM, t1/2 {half_life_h:g} h")

    @classmethod
    def free_drug(cls, dose_uM0: float, half_lives_h: Sequence[float] = (5 / 60, 10.0),
                  fractions: Sequence[float] = (0.95, 0.05)) -> "PlasmaInput":
        """Bi-exponential (or multi-) fast clearance of free drug, :math:`c_{pF} = c_0\\sum_i f_i 2^{-t/T_i}`.

        Defaults: 95 % cleared with a 5 min half-life (distribution), 5 % with 10 h
        (elimination) (this work: the shape of free doxorubicin pharmacokinetics in mice,
        fast distribution then slow elimination); no carrier.
        """
        c0 = _positive(dose_uM0, "dose_uM0", " µM")
        if len(half_lives_h) != len(fractions) or len(fractions) == 0:
            raise InputError(f"{len(half_lives_h)} half-lives but {len(fractions)} fractions",
                             fix="Give one fraction per half-life.")
        ks = [math.log(2) / _positive(t, "half_lives_h", " h") for t in half_lives_h]
        fr = [float(f) for f in fractions]
        if min(fr) < 0 or abs(sum(fr) - 1) > 1e-9:
            raise InputError(f"fractions {list(fractions)} must be >= 0 and sum to 1", fix="Normalise the fractions.")
        return cls(_zero, _exp_sum([c0 * f for f in fr], ks), f"free drug {c0:g} µM")


def _positive(x, name, unit=""):
    v = float(x)
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{name} = {x}{unit} is not positive", fix=f"Give {name} > 0{unit}.")
    return v


def _plasma_at(fn, times, name):
    try:
        v = np.asarray(fn(times), float)
        if v.shape != times.shape:
            v = np.broadcast_to(v, times.shape).astype(float)
    except Exception:                                      # not vectorised: evaluate one by one
        v = np.array([float(fn(float(t))) for t in times])
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        bad = v[~np.isfinite(v) | (v < 0)][0]
        raise InputError(f"plasma {name} concentration is {bad} µM at some time",
                         fix="Give a plasma curve that is finite and >= 0 (µM) over [0, t_end_h].")
    return v


def _local_at(fn, t_h, shape):
    """The per-voxel plasma free-drug addition at ``t_h`` (flat, µM), 0.0 without one."""
    if fn is None:
        return 0.0
    v = np.asarray(fn(float(t_h)), float)
    if v.ndim and v.shape != shape:
        raise GeometryError(f"local_plasma_free({t_h:g}) has shape {v.shape} but the grid is {shape}",
                            fix="Return a scalar or one value per voxel (µM).")
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise InputError(f"local_plasma_free({t_h:g}) holds NaN, infinite or negative values",
                         fix="Return finite concentrations >= 0 µM.")
    return np.broadcast_to(v, shape).ravel()


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class MassLedger:
    """Amounts (µM·µm³ in 3D, µM·µm² per µm depth in 2D) at the saved times.

    ``*_from_plasma``, ``*_to_plasma``, ``*_to_lymph``, ``*_to_boundary`` and ``released`` are
    cumulative since t = 0; ``carrier``, ``free``, ``bound`` the amounts in the tissue.
    """

    times_h: np.ndarray
    carrier: np.ndarray
    free: np.ndarray
    bound: np.ndarray
    carrier_from_plasma: np.ndarray
    carrier_to_plasma: np.ndarray
    carrier_to_lymph: np.ndarray
    carrier_to_boundary: np.ndarray
    free_from_plasma: np.ndarray
    free_to_plasma: np.ndarray
    free_to_lymph: np.ndarray
    free_to_boundary: np.ndarray
    released: np.ndarray

    def residuals(self) -> dict:
        """Amount in tissue minus (initial + in - out), per balance: 'carrier', 'free+bound', 'total'."""
        car = self.carrier - self.carrier[0] - (self.carrier_from_plasma - self.carrier_to_plasma
                                                - self.carrier_to_lymph - self.carrier_to_boundary - self.released)
        fb = self.free + self.bound
        fre = fb - fb[0] - (self.free_from_plasma - self.free_to_plasma - self.free_to_lymph
                            - self.free_to_boundary + self.released)
        return {"carrier": car, "free+bound": fre, "total": car + fre}

    def relative_imbalance(self) -> float:
        """Largest |residual| relative to the largest amount that entered or was present."""
        scale = max(float(np.max(np.abs(a))) for a in (self.carrier, self.free + self.bound, self.carrier_from_plasma,
                                                       self.free_from_plasma, self.released))
        worst = max(float(np.max(np.abs(r))) for r in self.residuals().values())
        return worst / scale if scale > 0 else worst


@dataclasses.dataclass(frozen=True)
class TransportSolution:
    """Concentrations (µM per tissue volume) at ``times_h``, arrays of shape (n_times, *grid.shape).

    Attributes
    ----------
    times_h : ndarray (n_times,)
    encapsulated, free, bound : ndarray (n_times, *shape)
    pressure_mmhg : ndarray (*shape)
        The steady IFP used.
    ledger : MassLedger
    dt_h : float
        The time step actually used (t_end_h / number of steps).
    """

    times_h: np.ndarray
    encapsulated: np.ndarray
    free: np.ndarray
    bound: np.ndarray
    pressure_mmhg: np.ndarray
    ledger: MassLedger
    dt_h: float

    def species(self, name: str) -> np.ndarray:
        """``'encapsulated'``, ``'free'``, ``'bound'`` or ``'total'`` (sum of the three)."""
        if name == "total":
            return self.encapsulated + self.free + self.bound
        if name not in _SPECIES:
            raise InputError(f"unknown species {name!r}", fix=f"Use one of {_SPECIES + ('total',)}.")
        return getattr(self, name)


def _check_times(t_end_h, dt_h, save_times_h, rates_max):
    t_end = float(t_end_h)
    dt = float(dt_h)
    if not np.isfinite(t_end) or t_end <= 0:
        raise TimingError(f"t_end_h = {t_end_h} is not a positive duration", fix="Give the simulated time in hours.")
    if not np.isfinite(dt) or dt <= 0 or dt > t_end:
        raise TimingError(f"dt_h = {dt_h} must be in (0, t_end_h = {t_end:g}]", fix="Give a time step in hours.")
    if rates_max > 0 and dt > MAX_DT_FRACTION / rates_max:
        raise TimingError(
            f"dt_h = {dt:g} h is longer than {MAX_DT_FRACTION:g} x the fastest reaction time scale "
            f"({1 / rates_max:.3g} h); the implicit scheme stays stable, but uptake/release would be inaccurate",
            fix=f"Use dt_h <= {MAX_DT_FRACTION / rates_max:.3g} h.")
    n_steps = int(math.ceil(t_end / dt - 1e-9))
    dt = t_end / n_steps
    if save_times_h is None:
        stride = max(1, int(math.ceil(n_steps / 240)))
        save = np.arange(0, n_steps + 1, stride) * dt
        if save[-1] < t_end - 1e-12:
            save = np.append(save, t_end)
    else:
        save = np.asarray(save_times_h, float).ravel()
        if save.size == 0 or not np.all(np.isfinite(save)) or np.any(np.diff(save) <= 0) \
                or save[0] < 0 or save[-1] > t_end * (1 + 1e-12):
            raise TimingError(f"save_times_h must be increasing within [0, {t_end:g}] h, got {save[:6].tolist()}...",
                              fix="Give sorted times in hours between 0 and t_end_h.")
    return t_end, dt, n_steps, save


def _initial(initial, shape):
    out = {}
    for name in _SPECIES:
        v = None if initial is None else initial.get(name)
        if v is None:
            out[name] = np.zeros(int(np.prod(shape)))
            continue
        out[name] = np.broadcast_to(check_field(v, f"initial {name}", shape, unit=" µM"), shape).astype(float).ravel()
    if initial is not None and set(initial) - set(_SPECIES):
        raise InputError(f"unknown initial species {sorted(set(initial) - set(_SPECIES))}",
                         fix=f"Use keys {_SPECIES}.")
    return out


_LEDGER_TERMS = ("carrier_from_plasma", "carrier_to_plasma", "carrier_to_lymph", "carrier_to_boundary",
                 "free_from_plasma", "free_to_plasma", "free_to_lymph", "free_to_boundary", "released")


def _check_pressure(pressure_mmhg, grid, fluid):
    if pressure_mmhg is None:
        return interstitial_pressure(grid, fluid)
    p = np.asarray(pressure_mmhg, float)
    if p.ndim == 0:
        p = np.full(grid.shape, float(p))
    if p.shape != grid.shape:
        raise GeometryError(f"pressure_mmhg has shape {p.shape} but the grid is {grid.shape}",
                            fix="Give an IFP map on the grid (mmHg), a scalar, or None to solve for it.")
    if not np.all(np.isfinite(p)):
        raise InputError("pressure_mmhg holds NaN or infinite values", fix="Give a finite IFP map in mmHg.")
    return p


# The vectors of one step are small: multithreaded BLAS only spins (a 24³ run took 14.7 s
# instead of 0.2 s on a loaded 2-core machine), so the solver runs single-threaded BLAS.
@threadpool_limits.wrap(limits=1, user_api="blas")
def simulate(grid: TissueGrid, params: TransportParams = TransportParams(), plasma: PlasmaInput = PlasmaInput(), *,
             t_end_h: float, dt_h: float, save_times_h=None, pressure_mmhg=None,
             initial: dict | None = None, local_plasma_free: Callable | None = None) -> TransportSolution:
    r"""Simulate encapsulated, free and bound doxorubicin in tissue (equations in the module docstring).

    Parameters
    ----------
    grid : TissueGrid
    params : TransportParams, default=TransportParams()
    plasma : PlasmaInput, default=PlasmaInput() (no drug in plasma)
        Plasma curves, µM, of time in hours after injection (t = 0 at the start).
    t_end_h : float
        Simulated duration, h.
    dt_h : float
        Time step, h; rounded down so that a whole number of steps fills ``t_end_h``; at most
        :data:`MAX_DT_FRACTION` / max(k_on + k_off, k_rel) (accuracy guard).
    save_times_h : array-like, optional
        Increasing times in [0, t_end_h] to store (linear interpolation between steps);
        default every step, thinned to at most 240 saves and ~160 MB.
    pressure_mmhg : ndarray or float, optional
        A prescribed IFP (e.g. lowered after radiotherapy); default: the steady solution of
        :func:`~core.drug_release.pressure.interstitial_pressure`. A uniform pressure means no flow.
    initial : dict, optional
        Initial ``'encapsulated'``, ``'free'``, ``'bound'`` concentrations, µM (scalar or field);
        default 0.
    local_plasma_free : callable, optional
        ``local_plasma_free(t_h) -> ndarray of grid.shape`` (or a scalar), µM >= 0, added to
        the plasma free-drug concentration of each voxel's vessels in the inflow terms (e.g.
        intravascular release of thermosensitive liposomes in a heated region); evaluated at
        every step, counted in the ledger's ``free_from_plasma``. Default none.

    Returns
    -------
    TransportSolution

    Examples
    --------
    >>> sv = np.zeros((16, 16)); sv[8, 8] = 0.4
    >>> g = TissueGrid(5.0, sv, np.ones((16, 16), bool))
    >>> sol = simulate(g, plasma=PlasmaInput.free_drug(10.0), t_end_h=0.5, dt_h=0.05)
    >>> sol.free.shape, sol.ledger.relative_imbalance() < 1e-8
    ((11, 16, 16), True)
    """
    check_grid(grid)
    shape, n = grid.shape, int(np.prod(grid.shape))
    h, vol = float(grid.spacing_um), grid.voxel_volume
    f = param_fields(params, shape)
    if not isinstance(plasma, PlasmaInput):
        raise InputError(f"expected PlasmaInput, got {type(plasma).__name__}",
                         fix="Use PlasmaInput.liposomal(...) or PlasmaInput.free_drug(...).")
    rates_max = float(max(np.max(f["uptake_per_h"] + f["efflux_per_h"]), np.max(f["release_per_h"])))
    t_end, dt, n_steps, save = _check_times(t_end_h, dt_h, save_times_h, rates_max)
    if save_times_h is None:
        cap = max(11, int(2e7 // (3 * n)))
        if save.size > cap:
            keep = np.unique(np.round(np.linspace(0, save.size - 1, cap)).astype(int))
            save = save[keep]
    c0 = _initial(initial, shape)

    p = _check_pressure(pressure_mmhg, grid, params.fluid)
    vel = interstitial_velocity(p, grid, params.fluid)
    jv = filtration_rate_per_h(p, grid, params.fluid).ravel()
    jp, jm = np.maximum(jv, 0), np.maximum(-jv, 0)
    q = np.maximum(lymph_drainage_per_h(p, grid, params.fluid), 0).ravel()
    sv = np.asarray(grid.vessel_surface_per_um, float).ravel()
    r = {k: v.ravel() for k, v in f.items()}
    phi = f["interstitial_fraction"]
    adv, out_rate = advection_matrix(vel, phi, h)

    times = np.arange(n_steps + 1) * dt
    cp = {"carrier": _plasma_at(plasma.carrier_uM, times, "carrier"), "free": _plasma_at(plasma.free_uM, times, "free")}
    gain, back, ops = {}, {}, {}
    for s, key in (("carrier", "carrier"), ("free", "free")):
        gain[s] = r[f"permeability_{key}_um_per_h"] * sv + (1 - r[f"reflection_{key}"]) * jp
        back[s] = (r[f"permeability_{key}_um_per_h"] * sv + (1 - r[f"reflection_{key}"]) * jm) / r["interstitial_fraction"]
        ops[s] = (diffusion_matrix(f[f"diffusion_{key}_um2_per_h"], phi, h) + adv
                  - sp.diags(back[s] + q / r["interstitial_fraction"]))
    krel, kon, koff = r["release_per_h"], r["uptake_per_h"], r["efflux_per_h"]
    ops["carrier"] = ops["carrier"] - sp.diags(krel)
    ops["free"] = ops["free"] - sp.diags(kon)
    lymph_rate = q / r["interstitial_fraction"]
    with_carrier = bool(np.any(cp["carrier"] > 0) or np.any(c0["encapsulated"] > 0))
    eye = sp.identity(n, format="csr")
    solvers = {}

    def solver(kind, gamma):
        if (kind, gamma) not in solvers:
            if kind == "carrier":
                a = eye - gamma * ops["carrier"]
            else:
                a = eye - gamma * ops["free"] - sp.diags(gamma ** 2 * koff * kon / (1 + gamma * koff))
            solvers[(kind, gamma)] = linear_solver(a, ndim=grid.ndim)
        return solvers[(kind, gamma)]

    state = {k: v.copy() for k, v in c0.items()}
    prev = None
    cum = dict.fromkeys(_LEDGER_TERMS, 0.0)
    last_inc = dict.fromkeys(_LEDGER_TERMS, 0.0)
    n_save = save.size
    out = {k: np.empty((n_save,) + shape) for k in _SPECIES}
    led = {k: np.empty(n_save) for k in _LEDGER_TERMS}
    amounts = {k: np.empty(n_save) for k in ("carrier", "free", "bound")}
    si = 0

    def record(w, old_state, new_state, old_cum, new_cum):
        nonlocal si
        for k in _SPECIES:
            out[k][si] = ((1 - w) * old_state[k] + w * new_state[k]).reshape(shape)
        for k in _LEDGER_TERMS:
            led[k][si] = (1 - w) * old_cum[k] + w * new_cum[k]
        for k, sk in (("carrier", "encapsulated"), ("free", "free"), ("bound", "bound")):
            amounts[k][si] = vol * float(out[sk][si].sum())
        si += 1

    while si < n_save and save[si] <= 1e-12:
        record(0.0, state, state, cum, cum)
    for step in range(1, n_steps + 1):
        bdf2 = prev is not None
        gamma = 2 * dt / 3 if bdf2 else dt
        rhs = {k: (4 * state[k] - prev[k]) / 3 if bdf2 else state[k] for k in _SPECIES}
        if with_carrier:
            new_l = solver("carrier", gamma)(rhs["encapsulated"] + gamma * gain["carrier"] * cp["carrier"][step])
        else:
            new_l = np.zeros(n)
        denom = 1 + gamma * koff
        cpf = cp["free"][step] + _local_at(local_plasma_free, times[step], shape)
        b = (rhs["free"] + gamma * (gain["free"] * cpf + krel * new_l)
             + gamma * koff * rhs["bound"] / denom)
        new_f = solver("free", gamma)(b)
        new_b = (rhs["bound"] + gamma * kon * new_f) / denom
        new = {"encapsulated": new_l, "free": new_f, "bound": new_b}
        rates = {
            "carrier_from_plasma": float(gain["carrier"].sum()) * cp["carrier"][step],
            "carrier_to_plasma": float(back["carrier"] @ new_l),
            "carrier_to_lymph": float(lymph_rate @ new_l),
            "carrier_to_boundary": float(out_rate @ new_l),
            "free_from_plasma": float(np.sum(gain["free"] * cpf)),
            "free_to_plasma": float(back["free"] @ new_f),
            "free_to_lymph": float(lymph_rate @ new_f),
            "free_to_boundary": float(out_rate @ new_f),
            "released": float(krel @ new_l),
        }
        new_cum = {}
        for k in _LEDGER_TERMS:
            inc = vol * dt * rates[k]
            inc = (2 * inc + last_inc[k]) / 3 if bdf2 else inc
            last_inc[k] = inc
            new_cum[k] = cum[k] + inc
        t0, t1 = times[step - 1], times[step]
        while si < n_save and save[si] <= t1 + 1e-9 * dt:
            record(min(1.0, (save[si] - t0) / dt), state, new, cum, new_cum)
        prev, state, cum = state, new, new_cum

    ledger = MassLedger(times_h=save.copy(), **amounts, **led)
    return TransportSolution(times_h=save.copy(), encapsulated=out["encapsulated"], free=out["free"],
                             bound=out["bound"], pressure_mmhg=p, ledger=ledger, dt_h=dt)
