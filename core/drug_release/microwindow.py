r"""A micrometre tissue window around one image voxel: stochastic vessels, voxel parameters, outcomes.

The voxel-scale transport (100 µm voxels) averages the perivascular gradient away; the
window resolves it at ``spacing_um`` (default 4 µm) around image voxel ``ij``. Units as in
:mod:`core.drug_release.transport`: hours, µm, µM per tissue volume.

Vessels (:func:`micro_window`)
------------------------------
Vessels are taken **perpendicular to the slice** (capillaries of radius :math:`r_c` cut
across). :math:`N` circles of radius :math:`r_c` in an area :math:`A` of slice of unit depth
have wall surface :math:`2\pi r_c N` per volume :math:`A`, so a voxel of surface density
:math:`S/V` (1/µm) holds on average

.. math::

   \lambda = \frac{(S/V)\,A_{voxel}}{2\pi r_c}

cross-sections. Each voxel of the ``n_voxels`` x ``n_voxels`` neighbourhood of ``ij``
(clamped to the image at its edges) receives a Poisson(:math:`\lambda`) number of centres at
uniform positions inside it (a Poisson point process of intensity :math:`\lambda/A` per
voxel); pixels whose centres lie within :math:`r_c` of a centre are vessel (lumen and wall)
and carry :math:`S/V = 2/r_c`, as :mod:`core.drug_release.pressure` asks and as the phantom's
micro window does. The expected vessel area fraction is then :math:`\lambda\pi r_c^2/A =
(S/V)\,r_c/2 = f_v`, the vascular fraction behind the phantom's :math:`S/V = 2f_v/r_c`
(:math:`1 - e^{-f_v}` once discs overlap: a Boolean model). This is a reconstruction
*consistent with* the map, not the true network: repeat with other seeds to see the spread.

Parameters (:func:`params_at`, :func:`window_periods`)
------------------------------------------------------
Every field of the voxel-scale :class:`~core.drug_release.transport.TransportParams` (and of
its :class:`~core.drug_release.pressure.FluidParams`) is replaced by its value at ``ij``; the
window's interstitial fluid pressure is uniform, the voxel's IFP, so there is no Darcy flow
inside the window (its 500 µm are much shorter than the IFP gradients of the tumour), while
the transvascular filtration still sees :math:`p_v - p_{ij}`.

Outcomes (:func:`window_outcomes`)
----------------------------------
Free-drug exposure (AUC, µM·h) per pixel, its mean per distance-to-nearest-vessel bin, the
penetration distance (1/e of the perivascular value, :func:`~core.drug_release.outcomes.
penetration_distance_um`) and the lethal fraction of the non-vessel tissue pixels.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy import ndimage

from core.drug_release.outcomes import concentration_vs_distance, exposure_auc, penetration_distance_um
from core.drug_release.pressure import FluidParams, TissueGrid, check_grid
from core.drug_release.transport import TransportParams
from core.errors import GeometryError, InputError

__all__ = ["micro_window", "vessel_centres_um", "expected_vessels_per_voxel", "params_at", "window_periods",
           "window_outcomes", "default_window_voxel", "WINDOW_SPACING_UM", "WINDOW_VOXELS"]

#: Pixel of the micro window, µm (as the phantom's fine network).
WINDOW_SPACING_UM = 4.0
#: Voxels per side of the window's neighbourhood (5 x 100 µm = 500 µm).
WINDOW_VOXELS = 5


# ----------------------------------------------------------------------------- vessels
def _check_sv_map(vessel_surface_per_um, ij):
    sv = np.asarray(vessel_surface_per_um, float)
    if sv.ndim != 2:
        raise GeometryError(f"vessel_surface_per_um has shape {sv.shape}; the window needs a 2D map",
                            fix="Give the 2D vessel-surface map (1/µm) of one slice.")
    if not np.all(np.isfinite(sv)) or np.any(sv < 0):
        raise InputError("vessel_surface_per_um holds NaN, infinite or negative values",
                         fix="Give S/V >= 0 1/µm in every voxel.")
    try:
        i, j = (int(v) for v in ij)
    except (TypeError, ValueError):
        raise InputError(f"voxel index {ij!r} is not a (row, column) pair", fix="Give ij=(row, column).") from None
    if not (0 <= i < sv.shape[0] and 0 <= j < sv.shape[1]):
        raise GeometryError(f"voxel {ij!r} is outside the {sv.shape} map", fix="Give a voxel inside the image.")
    return sv, (i, j)


def _check_window_geometry(spacing_um, voxel_um, n_voxels, vessel_radius_um):
    h, v, r = float(spacing_um), float(voxel_um), float(vessel_radius_um)
    for name, x in (("spacing_um", h), ("voxel_um", v), ("vessel_radius_um", r)):
        if not math.isfinite(x) or x <= 0:
            raise InputError(f"{name} = {x!r} is not a positive length", fix=f"Give {name} in µm.")
    per = int(round(v / h))
    if per < 2 or abs(per * h - v) > 1e-9 * v:
        raise GeometryError(f"voxel_um = {v:g} µm is not a whole multiple (>= 2) of spacing_um = {h:g} µm",
                            fix="Use e.g. 100 µm voxels with 4 µm window pixels.")
    if int(n_voxels) != n_voxels or n_voxels < 1 or n_voxels % 2 == 0:
        raise InputError(f"n_voxels = {n_voxels!r} must be an odd whole number >= 1",
                         fix="Use 5 (the voxel and two neighbours on each side).")
    return h, v, r, per, int(n_voxels)


def expected_vessels_per_voxel(vessel_surface_per_um, voxel_um: float, vessel_radius_um: float = 6.0):
    r"""Poisson mean of vessel cross-sections per voxel, :math:`\lambda = (S/V) A / (2\pi r_c)`.

    Parameters
    ----------
    vessel_surface_per_um : float or ndarray
        S/V, 1/µm.
    voxel_um : float
        Voxel edge, µm (area :math:`A` = ``voxel_um``²).
    vessel_radius_um : float, default=6.0

    Examples
    --------
    >>> round(float(expected_vessels_per_voxel(0.02, 100.0, 6.0)), 3)
    5.305
    """
    return np.asarray(vessel_surface_per_um, float) * float(voxel_um) ** 2 / (2 * math.pi * float(vessel_radius_um))


def vessel_centres_um(vessel_surface_per_um, ij, rng: np.random.Generator, *, voxel_um: float,
                      n_voxels: int = WINDOW_VOXELS, vessel_radius_um: float = 6.0) -> np.ndarray:
    """Vessel centres of the window (module docstring), µm from the window's top-left corner.

    Parameters
    ----------
    vessel_surface_per_um : ndarray (H, W)
        Voxel-scale S/V map, 1/µm.
    ij : (int, int)
        The window's central voxel.
    rng : numpy.random.Generator
    voxel_um : float
        Voxel edge of the map, µm.
    n_voxels : int, default=5
    vessel_radius_um : float, default=6.0

    Returns
    -------
    ndarray (N, 2)
        (row, column) positions, µm, voxel by voxel in raster order.

    Examples
    --------
    >>> c = vessel_centres_um(np.full((3, 3), 0.02), (1, 1), np.random.default_rng(0), voxel_um=100.0, n_voxels=3)
    >>> c.shape[1], bool(np.all((c >= 0) & (c < 300)))
    (2, True)
    """
    sv, (i, j) = _check_sv_map(vessel_surface_per_um, ij)
    _check_window_geometry(float(voxel_um) / 2, voxel_um, n_voxels, vessel_radius_um)
    half = int(n_voxels) // 2
    out = []
    for a in range(int(n_voxels)):
        for b in range(int(n_voxels)):
            ii = min(max(i - half + a, 0), sv.shape[0] - 1)
            jj = min(max(j - half + b, 0), sv.shape[1] - 1)
            lam = float(expected_vessels_per_voxel(sv[ii, jj], voxel_um, vessel_radius_um))
            k = int(rng.poisson(lam))
            if k:
                out.append((rng.uniform(0.0, 1.0, (k, 2)) + [a, b]) * float(voxel_um))
    return np.concatenate(out) if out else np.zeros((0, 2))


def micro_window(vessel_surface_per_um, ij, *, spacing_um: float = WINDOW_SPACING_UM, voxel_um: float,
                 n_voxels: int = WINDOW_VOXELS, vessel_radius_um: float = 6.0, seed: int = 0) -> TissueGrid:
    r"""A stochastic micro-vascular window around voxel ``ij``, consistent with its S/V map.

    Parameters
    ----------
    vessel_surface_per_um : ndarray (H, W)
        Voxel-scale vessel surface density S/V, 1/µm (e.g. the phantom's ``vessel_surface``).
    ij : (int, int)
        The central voxel (row, column); neighbours beyond the image repeat the edge voxel.
    spacing_um : float, default=4.0
        Window pixel, µm; ``voxel_um`` must be a whole multiple of it.
    voxel_um : float
        Voxel edge of the map, µm.
    n_voxels : int, default=5
        Neighbourhood side, voxels (odd); the window is ``n_voxels * voxel_um / spacing_um``
        pixels per side.
    vessel_radius_um : float, default=6.0
        Capillary radius :math:`r_c`, µm (the phantom's ``VESSEL_RADIUS_UM``).
    seed : int, default=0
        Seed of the window's own generator (deterministic).

    Returns
    -------
    TissueGrid
        ``spacing_um`` pixels; vessel pixels carry :math:`S/V = 2/r_c`, others 0; the whole
        window is tumour, without lymphatics.

    Examples
    --------
    >>> g = micro_window(np.full((8, 8), 0.02), (4, 4), voxel_um=100.0, seed=1)
    >>> g.shape, round(float(g.vessel_surface_per_um.max()), 4)
    ((125, 125), 0.3333)
    """
    sv, ij = _check_sv_map(vessel_surface_per_um, ij)
    h, v, r, per, n = _check_window_geometry(spacing_um, voxel_um, n_voxels, vessel_radius_um)
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed = {seed!r} must be a whole number >= 0", fix="Give seed >= 0.")
    centres = vessel_centres_um(sv, ij, np.random.default_rng(int(seed)), voxel_um=v, n_voxels=n,
                                vessel_radius_um=r)
    size = n * per
    ves = np.zeros((size, size), bool)
    reach = int(math.ceil(r / h)) + 1
    for cy, cx in centres:
        i0, j0 = int(cy // h), int(cx // h)
        ys = np.arange(max(i0 - reach, 0), min(i0 + reach + 1, size))
        xs = np.arange(max(j0 - reach, 0), min(j0 + reach + 1, size))
        d2 = ((ys[:, None] + 0.5) * h - cy) ** 2 + ((xs[None, :] + 0.5) * h - cx) ** 2
        ves[np.ix_(ys, xs)] |= d2 <= r * r
    return TissueGrid(h, np.where(ves, 2.0 / r, 0.0), np.ones((size, size), bool))


def default_window_voxel(grid: TissueGrid) -> tuple:
    """The tumour voxel with the median vessel surface among vascularised tumour voxels (raster order breaks ties).

    Examples
    --------
    >>> tum = np.zeros((6, 6), bool); tum[1:4, 1:4] = True
    >>> sv = np.where(tum, np.arange(36.0).reshape(6, 6) / 100, 0.0)
    >>> default_window_voxel(TissueGrid(100.0, sv, tum))
    (2, 2)
    """
    check_grid(grid)
    sv = np.asarray(grid.vessel_surface_per_um, float)
    idx = np.flatnonzero(np.asarray(grid.tumour, bool).ravel() & (sv.ravel() > 0))
    if idx.size == 0:
        raise InputError("the tumour has no vascularised voxel (S/V > 0)",
                         fix="Give window_ij explicitly, or a vessel-surface map with tumour vessels.")
    pick = idx[np.argsort(sv.ravel()[idx], kind="stable")[(idx.size - 1) // 2]]
    return tuple(int(v) for v in np.unravel_index(pick, sv.shape))


# ----------------------------------------------------------------------------- parameters
def _value_at(v, ij):
    return float(np.asarray(v)[ij]) if np.ndim(v) else v


def params_at(params: TransportParams, ij) -> TransportParams:
    """``params`` with every per-voxel field (also of ``params.fluid``) replaced by its value at ``ij``.

    Examples
    --------
    >>> p = TransportParams(release_per_h=np.array([[0.1, 0.2], [0.3, 0.4]]))
    >>> params_at(p, (1, 0)).release_per_h
    0.3
    """
    if not isinstance(params, TransportParams):
        raise InputError(f"expected TransportParams, got {type(params).__name__}", fix="Pass TransportParams(...).")
    vals = {}
    for f in dataclasses.fields(TransportParams):
        v = getattr(params, f.name)
        if f.name == "fluid":
            v = FluidParams(**{g.name: _value_at(getattr(v, g.name), ij) for g in dataclasses.fields(FluidParams)})
        else:
            v = _value_at(v, ij)
        vals[f.name] = v
    return TransportParams(**vals)


def window_periods(periods, ij, t_end_h: float, *, max_dt_h: float = 0.05) -> list:
    """The voxel-scale periods cut at ``t_end_h``, with the parameters of voxel ``ij``.

    Parameters
    ----------
    periods : sequence of (t_end_h, TransportParams, dt_h)
        As for :func:`~core.drug_release.scenarios.simulate_piecewise`.
    ij : (int, int)
    t_end_h : float
        End of the window simulation, h (the periods after it are dropped).
    max_dt_h : float, default=0.05
        The window's time step is at most this, h.

    Returns
    -------
    list of (t_end_h, TransportParams, dt_h)

    Examples
    --------
    >>> window_periods([(1.0, TransportParams(), 0.05), (24.0, TransportParams(), 0.05)], (0, 0), 2.0)[-1][0]
    2.0
    """
    out = []
    for t_end, params, dt in periods:
        out.append((min(t_end, t_end_h), params_at(params, ij), min(dt, max_dt_h)))
        if t_end >= t_end_h:
            break
    return out


# ----------------------------------------------------------------------------- outcomes
def window_outcomes(grid_window: TissueGrid, solution, *, threshold_uM_h: float, bin_um: float = 8.0) -> dict:
    """Free-drug exposure of a micro window against distance from the nearest vessel.

    Parameters
    ----------
    grid_window : TissueGrid
        The window (:func:`micro_window`).
    solution : TransportSolution
        Its simulation, saved densely enough for the free-drug AUC.
    threshold_uM_h : float
        Lethal free-drug exposure, µM·h.
    bin_um : float, default=8.0
        Distance bin, µm.

    Returns
    -------
    dict
        ``distance_um`` (bin centres), ``auc_uM_h`` (mean AUC per bin, NaN where empty),
        ``n`` (pixels per bin), ``penetration_um`` (1/e distance, NaN if the profile never
        falls that low or there are no vessels), ``lethal_fraction`` (share of non-vessel
        pixels with AUC >= threshold), ``window_auc_uM_h`` (the AUC map, µM·h).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> sv = np.zeros((6, 6)); sv[0, 0] = 0.3
    >>> g = TissueGrid(4.0, sv, np.ones((6, 6), bool))
    >>> sol = SimpleNamespace(times_h=np.array([0.0, 1.0]), species=lambda n: np.ones((2, 6, 6)))
    >>> window_outcomes(g, sol, threshold_uM_h=0.5)["lethal_fraction"]
    1.0
    """
    check_grid(grid_window)
    b = float(bin_um)
    if not math.isfinite(b) or b <= 0:
        raise InputError(f"bin_um = {bin_um!r} is not a positive length", fix="Give the distance bin in µm, e.g. 8.")
    thr = float(threshold_uM_h)
    if not math.isfinite(thr) or thr <= 0:
        raise InputError(f"threshold_uM_h = {threshold_uM_h!r} is not a positive exposure",
                         fix="Give the lethal exposure in µM·h, e.g. 1.0.")
    auc = exposure_auc(solution, "free")
    if auc.shape != grid_window.shape:
        raise GeometryError(f"the solution is on a {auc.shape} grid but the window is {grid_window.shape}",
                            fix="Pass the solution simulated on this window.")
    ves = grid_window.vessels
    tissue = ~ves
    lethal = float(np.mean(auc[tissue] >= thr)) if tissue.any() else float("nan")
    if not ves.any():
        return {"distance_um": np.zeros(0), "auc_uM_h": np.zeros(0), "n": np.zeros(0, int),
                "penetration_um": float("nan"), "lethal_fraction": lethal, "window_auc_uM_h": auc}
    d = ndimage.distance_transform_edt(tissue) * float(grid_window.spacing_um)
    centres, mean, count = concentration_vs_distance(auc, d, np.arange(0.0, d.max() + b + 1e-9, b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pen = penetration_distance_um(centres, mean)
    return {"distance_um": centres, "auc_uM_h": mean, "n": count, "penetration_um": float(pen),
            "lethal_fraction": lethal, "window_auc_uM_h": auc}
