r"""Tissue grid and steady interstitial fluid pressure (IFP) of a tumour.

Units (all of :mod:`core.drug_release.transport` and this module): time in **hours**,
lengths in **µm**, pressure in **mmHg**, drug concentration in **µM** (doxorubicin
equivalent).

Grid
----
:class:`TissueGrid` is a 2D or 3D isotropic grid of voxels of edge ``spacing_um``. Each voxel
carries the vessel-wall surface density :math:`S/V` (1/µm). At micrometre scale (a tissue
window) mark the vessel voxels (lumen and wall) with the wall area divided by the vessel
volume (e.g. :math:`2/r` for a capillary of radius :math:`r` cut across): lumen voxels are
then strongly coupled to plasma, and the tissue around them sees the wall. At voxel scale
(a whole tumour), :math:`S/V` is a surface density field (Baxter & Jain 1989: 200 cm⁻¹ in
tumour, 70 cm⁻¹ in normal tissue). Functional lymphatics (surface density :math:`S_L/V`)
exist only outside the tumour (Jain 1987; Padera et al. 2002 Science 296:1883).

Fluid model (Baxter & Jain 1989)
--------------------------------
Darcy flow in the interstitium, :math:`\mathbf u = -K\nabla p`, with Starling filtration
from the vessels and drainage into lymphatics gives the steady elliptic problem

.. math::

   -\nabla\cdot(K\nabla p) = L_p \tfrac{S}{V}\,\bigl(p_v - p - \sigma_T(\pi_v - \pi_i)\bigr)
                           - L_{pL} \tfrac{S_L}{V}\,(p - p_L),

with :math:`p` the IFP, :math:`K` the interstitial hydraulic conductivity, :math:`L_p` the
vessel-wall hydraulic conductivity, :math:`p_v` the vascular pressure, :math:`\sigma_T` the
osmotic reflection coefficient of plasma proteins, :math:`\pi_v, \pi_i` the plasma and
interstitial oncotic pressures, :math:`L_{pL} S_L/V` the lymphatic filtration coefficient and
:math:`p_L` the lymphatic pressure. The **effective pressure**
:math:`p_e = p_v - \sigma_T(\pi_v - \pi_i)` is what the IFP tends to where vessels dominate.
For a uniform isolated sphere of radius :math:`R` with :math:`p(R) = 0` the solution is
(Baxter & Jain 1989, eq. for the alymphatic tumour)

.. math::

   \frac{p(r)}{p_e} = 1 - \frac{R}{r}\,\frac{\sinh(\alpha r/R)}{\sinh\alpha},
   \qquad \alpha = R\sqrt{L_p (S/V) / K},

and for a disc (2D) :math:`p/p_e = 1 - I_0(\alpha r/R)/I_0(\alpha)`: a plateau near
:math:`p_e` in the centre that rises with :math:`\alpha`, falling steeply at the periphery
(the centre value is :math:`p_e(1 - \alpha/\sinh\alpha)` in 3D).

Numerics: cell-centred finite volumes; the face conductivity between two voxels is the
harmonic mean of theirs (exact for a layered medium); **boundary condition** :math:`p = 0`
(mmHg, atmospheric/free-draining) at the outer faces of the domain, imposed through a
half-cell ghost. The system is symmetric positive definite; 2D grids (up to
:data:`DIRECT_SOLVE_MAX_UNKNOWNS` voxels) are solved directly (SuperLU), 3D grids by
Jacobi-preconditioned conjugate gradients (relative residual 1e-12).

Default parameters (tumour values of Baxter & Jain 1989, converted)
--------------------------------------------------------------------
=================  ============================  ===============================
symbol             literature (cgs)              here
=================  ============================  ===============================
:math:`K`          4.13e-8 cm²/(mmHg s)          14 868 µm²/(mmHg h)
:math:`L_p`        2.8e-7 cm/(mmHg s)            10.08 µm/(mmHg h)
:math:`S/V`        200 cm⁻¹ (tumour)             0.02 µm⁻¹ (given on the grid)
:math:`p_v`        15.6 mmHg                     15.6 mmHg
:math:`\pi_v`      20 mmHg                       20 mmHg
:math:`\pi_i`      15 mmHg (tumour)              15 mmHg
:math:`\sigma_T`   0.82 (tumour)                 0.82
:math:`L_{pL}`     (this work)                   1.296 µm/(mmHg h) (= normal-tissue
                                                 :math:`L_p` 0.36e-7 cm/(mmHg s))
:math:`p_L`        0 mmHg                        0 mmHg
=================  ============================  ===============================

Conversions: 1 cm²/(mmHg s) = 1e8 µm² × 3600 s/h = 3.6e11 µm²/(mmHg h); 1 cm/(mmHg s) =
3.6e7 µm/(mmHg h); 1 cm⁻¹ = 1e-4 µm⁻¹ (tested). With these values :math:`p_e` = 11.5 mmHg
and a 1 cm tumour has :math:`\alpha \approx 37`. Normal-tissue values (Baxter & Jain 1989:
:math:`K` 8.53e-9 cm²/(mmHg s), :math:`L_p` 0.36e-7 cm/(mmHg s), :math:`\pi_i` 10 mmHg,
:math:`\sigma_T` 0.91) are used outside the tumour by :meth:`FluidParams.tumour_and_host`.

References
----------
.. [1] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. I. Role of
   interstitial pressure and convection. Microvasc Res 1989;37:77-104.
.. [2] Baxter LT, Jain RK. Transport of fluid and macromolecules in tumors. II. Role of
   heterogeneous perfusion and lymphatics. Microvasc Res 1990;40:246-263.
.. [3] Jain RK. Transport of molecules in the tumor interstitium: a review. Cancer Res
   1987;47:3039-3051.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from threadpoolctl import threadpool_limits

from core.errors import GeometryError, InputError

__all__ = ["TissueGrid", "FluidParams", "interstitial_pressure", "interstitial_velocity",
           "filtration_rate_per_h", "lymph_drainage_per_h", "effective_pressure_mmhg",
           "check_grid", "check_field", "laplacian_matrix", "diffusion_matrix", "advection_matrix",
           "linear_solver", "fluid_fields", "CM2_PER_MMHG_S", "CM_PER_MMHG_S", "PER_CM", "DIRECT_SOLVE_MAX_UNKNOWNS"]

#: 1 cm²/(mmHg s) in µm²/(mmHg h).
CM2_PER_MMHG_S = 1e8 * 3600.0
#: 1 cm/(mmHg s) in µm/(mmHg h) (also 1 cm/s in µm/h).
CM_PER_MMHG_S = 1e4 * 3600.0
#: 1 cm⁻¹ in µm⁻¹.
PER_CM = 1e-4
#: Linear systems of 2D grids up to this many voxels (and of any grid up to 8 000 voxels) are
#: factorised by sparse LU; others (3D, where LU fill-in is slow: 48³ takes ~40 s) are solved
#: by ILU-preconditioned Krylov iterations.
DIRECT_SOLVE_MAX_UNKNOWNS = 250_000

Field = Union[float, np.ndarray]


# ----------------------------------------------------------------------------- grid
@dataclasses.dataclass(frozen=True)
class TissueGrid:
    """A 2D or 3D isotropic tissue grid with its vessels, tumour and lymphatics.

    Attributes
    ----------
    spacing_um : float
        Voxel edge, µm.
    vessel_surface_per_um : ndarray of shape (ny, nx) or (nz, ny, nx)
        Vessel-wall surface per tissue volume S/V, 1/µm; > 0 where a voxel holds vessel wall.
    tumour : bool ndarray of the same shape
        Tumour voxels.
    lymphatic_surface_per_um : float or ndarray, default=0.0
        Functional lymphatic surface per volume S_L/V, 1/µm; outside the tumour only.

    Examples
    --------
    >>> sv = np.zeros((8, 8)); sv[4, 4] = 0.2
    >>> g = TissueGrid(5.0, sv, np.ones((8, 8), bool))
    >>> g.shape, g.voxel_volume
    ((8, 8), 25.0)
    """

    spacing_um: float
    vessel_surface_per_um: np.ndarray
    tumour: np.ndarray
    lymphatic_surface_per_um: Field = 0.0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.vessel_surface_per_um))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def voxel_volume(self) -> float:
        """Voxel volume, µm³ in 3D (µm² per µm of depth in 2D)."""
        return float(self.spacing_um) ** self.ndim

    @property
    def vessels(self) -> np.ndarray:
        """Voxels with vessel wall (S/V > 0)."""
        return np.asarray(self.vessel_surface_per_um) > 0


def check_field(value, name: str, shape: tuple[int, ...], *, low: float = 0.0,
                high: float | None = None, unit: str = "") -> np.ndarray | float:
    """A scalar or a per-voxel field, finite and within [low, high]; a float or an array of ``shape``."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim and arr.shape != shape:
        raise GeometryError(f"{name} has shape {arr.shape} but the grid is {shape}",
                            fix="Give a scalar or one value per voxel of the grid.")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} holds NaN or infinite values", fix=f"Give finite values{unit}.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < low or (high is not None and hi > high):
        rng = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        bad = lo if lo < low else hi
        raise InputError(f"{name} = {bad:g}{unit} is out of range", fix=f"Give values {rng}{unit}.")
    return float(arr) if arr.ndim == 0 else arr


def check_grid(grid: TissueGrid) -> TissueGrid:
    """Validate a :class:`TissueGrid`; raise :class:`InputError` saying what to fix."""
    if not isinstance(grid, TissueGrid):
        raise InputError(f"expected a TissueGrid, got {type(grid).__name__}",
                         fix="Build one with TissueGrid(spacing_um, vessel_surface_per_um, tumour).")
    h = float(grid.spacing_um)
    if not np.isfinite(h) or h <= 0:
        raise GeometryError(f"spacing_um = {grid.spacing_um} is not a positive length",
                            fix="Give the voxel edge in µm, e.g. 5.0 for a tissue window.")
    sv = np.asarray(grid.vessel_surface_per_um)
    if sv.ndim not in (2, 3) or min(sv.shape) < 2:
        raise GeometryError(f"vessel_surface_per_um has shape {sv.shape}",
                            fix="Give a 2D or 3D array with at least 2 voxels per axis.")
    check_field(sv, "vessel_surface_per_um", sv.shape, unit=" 1/µm")
    tum = np.asarray(grid.tumour)
    if tum.shape != sv.shape or tum.dtype != bool:
        raise GeometryError(f"tumour mask has shape {tum.shape} and dtype {tum.dtype}; the grid is {sv.shape}",
                            fix="Give a boolean tumour mask with the shape of vessel_surface_per_um.")
    lym = check_field(grid.lymphatic_surface_per_um, "lymphatic_surface_per_um", sv.shape, unit=" 1/µm")
    if np.any(np.broadcast_to(lym, sv.shape)[tum] > 0):
        raise InputError("lymphatic_surface_per_um is > 0 inside the tumour (tumours have no functional "
                         "lymphatics)", fix="Set lymphatic surface to 0 in tumour voxels.")
    return grid


# ----------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class FluidParams:
    """Fluid-transport parameters (scalars or per-voxel fields), tumour defaults of Baxter & Jain 1989.

    Attributes
    ----------
    hydraulic_conductivity_um2_per_mmhg_h : float or ndarray, default=4.13e-8 cm²/(mmHg s) = 14 868
        Interstitial hydraulic conductivity K.
    vessel_conductivity_um_per_mmhg_h : float or ndarray, default=2.8e-7 cm/(mmHg s) = 10.08
        Vessel-wall hydraulic conductivity L_p.
    vascular_pressure_mmhg : float or ndarray, default=15.6
    plasma_oncotic_mmhg : float or ndarray, default=20.0
    interstitial_oncotic_mmhg : float or ndarray, default=15.0
    osmotic_reflection : float or ndarray, default=0.82
        sigma_T, in [0, 1].
    lymphatic_conductivity_um_per_mmhg_h : float or ndarray, default=1.296
        L_pL (this work: normal-tissue L_p of Baxter & Jain 1989).
    lymphatic_pressure_mmhg : float, default=0.0

    Examples
    --------
    >>> round(FluidParams().hydraulic_conductivity_um2_per_mmhg_h)
    14868
    """

    hydraulic_conductivity_um2_per_mmhg_h: Field = 4.13e-8 * CM2_PER_MMHG_S
    vessel_conductivity_um_per_mmhg_h: Field = 2.8e-7 * CM_PER_MMHG_S
    vascular_pressure_mmhg: Field = 15.6
    plasma_oncotic_mmhg: Field = 20.0
    interstitial_oncotic_mmhg: Field = 15.0
    osmotic_reflection: Field = 0.82
    lymphatic_conductivity_um_per_mmhg_h: Field = 0.36e-7 * CM_PER_MMHG_S
    lymphatic_pressure_mmhg: float = 0.0

    @classmethod
    def tumour_and_host(cls, tumour: np.ndarray, **overrides) -> "FluidParams":
        """Tumour values inside ``tumour``, normal-tissue values (Baxter & Jain 1989) outside.

        Examples
        --------
        >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
        >>> float(FluidParams.tumour_and_host(m).osmotic_reflection[0, 0])
        0.91
        """
        m = np.asarray(tumour, bool)
        fields = dict(
            hydraulic_conductivity_um2_per_mmhg_h=np.where(m, 4.13e-8, 8.53e-9) * CM2_PER_MMHG_S,
            vessel_conductivity_um_per_mmhg_h=np.where(m, 2.8e-7, 0.36e-7) * CM_PER_MMHG_S,
            interstitial_oncotic_mmhg=np.where(m, 15.0, 10.0),
            osmotic_reflection=np.where(m, 0.82, 0.91),
        )
        fields.update(overrides)
        return cls(**fields)


_FLUID_RANGES = {
    "hydraulic_conductivity_um2_per_mmhg_h": (0.0, None, " µm²/(mmHg h)"),
    "vessel_conductivity_um_per_mmhg_h": (0.0, None, " µm/(mmHg h)"),
    "vascular_pressure_mmhg": (-50.0, 200.0, " mmHg"),
    "plasma_oncotic_mmhg": (0.0, 100.0, " mmHg"),
    "interstitial_oncotic_mmhg": (0.0, 100.0, " mmHg"),
    "osmotic_reflection": (0.0, 1.0, ""),
    "lymphatic_conductivity_um_per_mmhg_h": (0.0, None, " µm/(mmHg h)"),
    "lymphatic_pressure_mmhg": (-50.0, 200.0, " mmHg"),
}


def fluid_fields(fluid: FluidParams, shape) -> dict:
    """Every field of ``fluid`` checked and broadcast to ``shape`` (pressure solve, solver and I-PINN)."""
    if not isinstance(fluid, FluidParams):
        raise InputError(f"expected FluidParams, got {type(fluid).__name__}", fix="Pass FluidParams(...).")
    out = {}
    for name, (lo, hi, unit) in _FLUID_RANGES.items():
        out[name] = np.broadcast_to(check_field(getattr(fluid, name), f"FluidParams.{name}", shape,
                                                low=lo, high=hi, unit=unit), shape)
    if not np.all(out["hydraulic_conductivity_um2_per_mmhg_h"] > 0):
        raise InputError("hydraulic conductivity K is 0 somewhere", fix="Give K > 0 in every voxel.")
    return out


def effective_pressure_mmhg(fluid: FluidParams = FluidParams()) -> Field:
    """Effective pressure p_e = p_v - sigma_T (pi_v - pi_i), mmHg (11.5 with the defaults).

    Examples
    --------
    >>> round(effective_pressure_mmhg(), 2)
    11.5
    """
    return fluid.vascular_pressure_mmhg - fluid.osmotic_reflection * (
        fluid.plasma_oncotic_mmhg - fluid.interstitial_oncotic_mmhg)


# ----------------------------------------------------------------------------- finite volumes
def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = a + b
    return np.divide(2.0 * a * b, s, out=np.zeros_like(s), where=s > 0)


def _pairs(shape, axis):
    """Flat indices of the two voxels on each side of every interior face along ``axis``."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    lo = [slice(None)] * len(shape)
    hi = [slice(None)] * len(shape)
    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
    return idx[tuple(lo)], idx[tuple(hi)], tuple(lo), tuple(hi)


def laplacian_matrix(coef: np.ndarray, spacing_um: float, *, dirichlet_boundary: bool) -> sp.csr_matrix:
    r"""The finite-volume operator :math:`-\nabla\cdot(\mathrm{coef}\,\nabla\,\cdot)` (positive semi-definite).

    Face coefficients are harmonic means; with ``dirichlet_boundary`` the outer faces hold the
    value 0 through a half-cell ghost (coefficient :math:`2\,\mathrm{coef}_i/h^2`), otherwise
    they carry no flux.
    """
    shape = coef.shape
    n = coef.size
    h2 = float(spacing_um) ** 2
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    flat = coef.ravel()
    for ax in range(coef.ndim):
        i, j, _, _ = _pairs(shape, ax)
        i, j = i.ravel(), j.ravel()
        t = _harmonic(flat[i], flat[j]) / h2
        rows += [i, j]
        cols += [j, i]
        vals += [-t, -t]
        np.add.at(diag, i, t)
        np.add.at(diag, j, t)
        if dirichlet_boundary:
            idx = np.arange(n).reshape(shape)
            for edge in (0, -1):
                b = np.take(idx, edge, axis=ax).ravel()
                np.add.at(diag, b, 2.0 * flat[b] / h2)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def linear_solver(a: sp.spmatrix, *, ndim: int, symmetric: bool = False):
    """A callable ``solve(b)`` for the fixed matrix ``a``, factorised or preconditioned once.

    Sparse LU (SuperLU, minimum-degree ordering) for 2D grids up to
    :data:`DIRECT_SOLVE_MAX_UNKNOWNS` unknowns and any grid up to 8 000; else
    Jacobi-preconditioned CG (symmetric) or BiCGSTAB, relative residual 1e-12 (an incomplete
    LU costs ~3 s to build at 48³ and saves little on these diagonally dominant systems).
    """
    a = sp.csc_matrix(a)
    n = a.shape[0]
    if n <= 8000 or (ndim == 2 and n <= DIRECT_SOLVE_MAX_UNKNOWNS):
        lu = sla.splu(a, permc_spec="MMD_AT_PLUS_A")
        return lu.solve
    a_csr = a.tocsr()
    inv_d = 1.0 / a_csr.diagonal()      # Jacobi preconditioner: cheap to build, robust to parameter contrasts
    prec = sla.LinearOperator(a.shape, lambda x: inv_d * x)
    krylov = sla.cg if symmetric else sla.bicgstab

    def solve(b):
        x, info = krylov(a_csr, b, x0=inv_d * b, rtol=1e-12, atol=0.0, maxiter=20 * int(n ** (1 / 3) + 10) ** 2, M=prec)
        if info != 0:
            raise InputError(f"the implicit linear solve did not converge (info={info})",
                             fix="Check for extreme parameter contrasts between voxels, or reduce dt_h for transport.")
        return x

    return solve


# ----------------------------------------------------------------------------- drug transport operators
def diffusion_matrix(coef: np.ndarray, phi: np.ndarray, h: float) -> sp.csr_matrix:
    """Matrix of :math:`\\nabla\\cdot(D\\varphi\\nabla(c/\\varphi))` acting on c, zero-flux boundary."""
    shape, n = coef.shape, coef.size
    dphi = (coef * phi).ravel()
    inv_phi = 1.0 / phi.ravel()
    rows, cols, vals = [], [], []
    for ax in range(coef.ndim):
        i, j, _, _ = _pairs(shape, ax)
        i, j = i.ravel(), j.ravel()
        t = _harmonic(dphi[i], dphi[j]) / h ** 2
        # flux i->j = t (c_i/phi_i - c_j/phi_j)
        rows += [i, i, j, j]
        cols += [i, j, j, i]
        vals += [-t * inv_phi[i], t * inv_phi[j], -t * inv_phi[j], t * inv_phi[i]]
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def advection_matrix(velocity, phi: np.ndarray, h: float):
    """Upwind matrix of :math:`-\\nabla\\cdot(u c/\\varphi)` and the boundary outflow rate per voxel (1/h)."""
    shape, n = phi.shape, phi.size
    inv_phi = 1.0 / phi.ravel()
    rows, cols, vals = [], [], []
    out_rate = np.zeros(n)
    idx = np.arange(n).reshape(shape)
    for ax, u in enumerate(velocity):
        i, j, _, _ = _pairs(shape, ax)
        i, j = i.ravel(), j.ravel()
        inner = [slice(None)] * len(shape)
        inner[ax] = slice(1, -1)
        uf = u[tuple(inner)].ravel() / h
        up, um = np.maximum(uf, 0), np.minimum(uf, 0)
        # flux i->j = up c_i/phi_i + um c_j/phi_j
        rows += [i, j, i, j]
        cols += [i, i, j, j]
        vals += [-up * inv_phi[i], up * inv_phi[i], -um * inv_phi[j], um * inv_phi[j]]
        first = np.take(idx, 0, axis=ax).ravel()
        last = np.take(idx, -1, axis=ax).ravel()
        np.add.at(out_rate, first, np.maximum(-np.take(u, 0, axis=ax).ravel(), 0) / h * inv_phi[first])
        np.add.at(out_rate, last, np.maximum(np.take(u, -1, axis=ax).ravel(), 0) / h * inv_phi[last])
    adv = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return adv - sp.diags(out_rate), out_rate


# ----------------------------------------------------------------------------- pressure and flow
def filtration_rate_per_h(pressure_mmhg: np.ndarray, grid: TissueGrid, fluid: FluidParams = FluidParams()) -> np.ndarray:
    r"""Transvascular fluid filtration per tissue volume, :math:`J_v/V = L_p S/V (p_v - p - \sigma_T\Delta\pi)`, 1/h."""
    f = fluid_fields(fluid, grid.shape)
    pe = f["vascular_pressure_mmhg"] - f["osmotic_reflection"] * (f["plasma_oncotic_mmhg"] - f["interstitial_oncotic_mmhg"])
    return f["vessel_conductivity_um_per_mmhg_h"] * np.asarray(grid.vessel_surface_per_um, float) * (pe - pressure_mmhg)


def lymph_drainage_per_h(pressure_mmhg: np.ndarray, grid: TissueGrid, fluid: FluidParams = FluidParams()) -> np.ndarray:
    r"""Lymphatic fluid drainage per tissue volume, :math:`L_{pL} S_L/V (p - p_L)`, 1/h."""
    f = fluid_fields(fluid, grid.shape)
    sl = np.broadcast_to(np.asarray(grid.lymphatic_surface_per_um, float), grid.shape)
    return f["lymphatic_conductivity_um_per_mmhg_h"] * sl * (pressure_mmhg - f["lymphatic_pressure_mmhg"])


@threadpool_limits.wrap(limits=1, user_api="blas")     # small vectors: threads only spin
def interstitial_pressure(grid: TissueGrid, fluid: FluidParams = FluidParams()) -> np.ndarray:
    r"""Steady interstitial fluid pressure, mmHg (Baxter & Jain 1989), with p = 0 on the outer boundary.

    Solves :math:`-\nabla\cdot(K\nabla p) = L_p S/V (p_e - p) - L_{pL} S_L/V (p - p_L)` by finite
    volumes (harmonic-mean face conductivities).

    Parameters
    ----------
    grid : TissueGrid
    fluid : FluidParams, default=FluidParams()

    Returns
    -------
    ndarray of grid.shape
        IFP, mmHg.

    Examples
    --------
    >>> sv = np.full((20, 20), 0.02)
    >>> p = interstitial_pressure(TissueGrid(100.0, sv, np.ones((20, 20), bool)))
    >>> bool(0 < p.max() < 11.5)
    True
    """
    check_grid(grid)
    f = fluid_fields(fluid, grid.shape)
    sv = np.asarray(grid.vessel_surface_per_um, float)
    sl = np.broadcast_to(np.asarray(grid.lymphatic_surface_per_um, float), grid.shape)
    a_v = f["vessel_conductivity_um_per_mmhg_h"] * sv
    a_l = f["lymphatic_conductivity_um_per_mmhg_h"] * sl
    pe = f["vascular_pressure_mmhg"] - f["osmotic_reflection"] * (f["plasma_oncotic_mmhg"] - f["interstitial_oncotic_mmhg"])
    k = np.ascontiguousarray(f["hydraulic_conductivity_um2_per_mmhg_h"], float)
    a = laplacian_matrix(k, grid.spacing_um, dirichlet_boundary=True) + sp.diags((a_v + a_l).ravel())
    b = (a_v * pe + a_l * f["lymphatic_pressure_mmhg"]).ravel()
    p = linear_solver(a, ndim=grid.ndim, symmetric=True)(b)
    return p.reshape(grid.shape)


def interstitial_velocity(pressure_mmhg: np.ndarray, grid: TissueGrid,
                          fluid: FluidParams = FluidParams()) -> tuple[np.ndarray, ...]:
    r"""Darcy face velocities :math:`u = -K\nabla p`, µm/h, one array per axis.

    The array for axis ``a`` has ``shape[a] + 1`` entries along that axis: face ``k`` lies between
    voxels ``k-1`` and ``k``; faces 0 and ``shape[a]`` are the outer boundary (where p = 0 is
    imposed at the face, half a voxel from the centre). Positive means towards higher index.

    Examples
    --------
    >>> g = TissueGrid(100.0, np.full((10, 10), 0.02), np.ones((10, 10), bool))
    >>> uy, ux = interstitial_velocity(interstitial_pressure(g), g)
    >>> uy.shape, bool(ux[0, -1] > 0)
    ((11, 10), True)
    """
    check_grid(grid)
    p = np.asarray(pressure_mmhg, float)
    if p.shape != grid.shape or not np.all(np.isfinite(p)):
        raise GeometryError(f"pressure has shape {p.shape} (finite: {bool(np.all(np.isfinite(p)))}); grid is {grid.shape}",
                            fix="Give a finite IFP map (mmHg) on the grid, e.g. from interstitial_pressure(grid).")
    k = np.asarray(fluid_fields(fluid, grid.shape)["hydraulic_conductivity_um2_per_mmhg_h"], float)
    h = float(grid.spacing_um)
    out = []
    for ax in range(p.ndim):
        shp = list(p.shape)
        shp[ax] += 1
        u = np.zeros(shp)
        _, _, lo, hi = _pairs(p.shape, ax)
        inner = [slice(None)] * p.ndim
        inner[ax] = slice(1, -1)
        u[tuple(inner)] = -_harmonic(k[lo], k[hi]) * (p[hi] - p[lo]) / h
        first = [slice(None)] * p.ndim
        last = [slice(None)] * p.ndim
        first[ax], last[ax] = 0, -1
        u[tuple(first)] = -2.0 * np.take(k, 0, axis=ax) * np.take(p, 0, axis=ax) / h   # (p_cell - 0)/(h/2), outward = negative
        u[tuple(last)] = 2.0 * np.take(k, -1, axis=ax) * np.take(p, -1, axis=ax) / h
        out.append(u)
    return tuple(out)
