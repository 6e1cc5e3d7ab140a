r"""Geometry and tissue fields of the preclinical drug-release phantom (:mod:`core.phantoms.drug_tumour`).

A 2D slice of a subcutaneous mouse tumour in host tissue, built at two scales from one fine
vessel network:

* **fine network** (``fine_um`` = 4 µm pixels over the whole slice): the zero level set of a
  smooth Gaussian random field (correlation length ``vessel_corr_um`` = 55 µm), a web of curves of
  mean spacing about :math:`\pi\ell` (Rice's formula for the zero crossings of a Gaussian
  process along a line), drawn 3 pixels (12 µm) wide. Segments are kept where a second,
  coarser random field plus a radial trend is positive: dense at the tumour rim, patchy
  towards the core, an almost avascular (necrotic-ish) centre, a regular sparser bed in the
  host (this work);
* **voxel scale** (``spacing_um`` = 100 µm): the vascular volume fraction :math:`f_v` of each
  voxel (share of its fine pixels that are vessel) and the vessel surface density of
  cylinders of radius :math:`r_c`, :math:`S/V = 2 f_v / r_c` (1/µm; :math:`r_c` = 6 µm, half
  the drawn width). At the rim :math:`f_v` ~8 % gives ~0.027 1/µm (0.007 in the core, 0.013 in
  host), the order of the 200 cm⁻¹ tumour value of Baxter & Jain (1989);
* **micro window**: ``window_px`` x ``window_px`` fine pixels (default 128 x 4 µm = 512 µm)
  cropped from the same network half-way between the centre and the rim, vessel pixels
  marked with :math:`S/V = 2/r_c` (lumen and wall, as :mod:`core.drug_release.pressure` asks).

Tissue fields (this work, values chosen for a plausible demo, not fitted to data):
relative vessel permeability :math:`m(\mathbf x)` = radial trend (1.3 at the rim, 0.5 in the
core) x log-normal smooth random field (log-SD 0.35), 0.1 (carrier) or 0.5 (small molecules)
times lower in host vessels; interstitial fraction 0.3 (rim) to 0.45 (core), 0.15 in host;
extracellular pH 7.3 at the rim falling to 6.6 in the hypoxic core (+- 0.05 random), 7.38 in
host, within the 6.0-7.4 range of the CEST calibration; native T1 at 7 T 1900-2300 ms
(tumour, longer in the oedematous core) and 1600 ms (host).

Randomness: every field draws from its own ``SeedSequence(seed, spawn_key=(index, stream))``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from core.drug_release.microwindow import window_periods
from core.drug_release.piecewise import FieldFunction, simulate_piecewise
from core.drug_release.pressure import FluidParams, TissueGrid
from core.drug_release.scenarios import DEFAULT_SETTINGS, ScenarioSettings, scenario_setup
from core.drug_release.transport import TransportParams
from core.errors import InputError
from core.imaging.volume import DynamicVolume

__all__ = ["Geometry", "make_geometry", "smooth_field", "rng_for", "simulate_piecewise", "transport_setup",
           "micro_truth", "slice_affine", "times_volume", "SLICE_MM", "VESSEL_RADIUS_UM", "FINE_UM",
           "TRANSIT_TIME_S", "HEATING"]

#: Nominal capillary radius r_c of the drawn vessels, µm (half of the 12 µm drawn width).
VESSEL_RADIUS_UM = 6.0
#: Pixel of the fine vessel network and the micro window, µm.
FINE_UM = 4.0
_DEFAULT_HEATING = DEFAULT_SETTINGS["thermosensitive"].heating
#: Transit time of blood through a voxel's heated vessels, s (this work; ``core.drug_release.scenarios.Heating``).
TRANSIT_TIME_S = _DEFAULT_HEATING.transit_time_s
#: Mild hyperthermia (this work): target °C, duration from injection (h), heated radius
#: (fraction of the tumour's equivalent radius), logistic edge (mm); from ``scenarios.Heating``.
HEATING = dict(temperature_c=_DEFAULT_HEATING.temperature_c, heating_h=_DEFAULT_HEATING.duration_h,
               radius_frac=_DEFAULT_HEATING.radius_frac, edge_mm=_DEFAULT_HEATING.edge_mm)


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of study ``index`` (as in :mod:`core.phantoms.torso`)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), int(stream))))


def smooth_field(rng: np.random.Generator, shape, corr_px: float) -> np.ndarray:
    """A smooth Gaussian random field of unit variance and correlation length ``corr_px`` pixels."""
    g = ndimage.gaussian_filter(rng.standard_normal(shape), corr_px, mode="wrap")
    return (g - g.mean()) / (g.std() + 1e-30)


@dataclasses.dataclass(frozen=True, eq=False)
class Geometry:
    """Tumour slice geometry at voxel and micro scale (see the module docstring).

    Attributes
    ----------
    spacing_um : float
        Voxel edge, µm.
    radius_norm : ndarray (H, W)
        Elliptic radius, 1 at the tumour boundary.
    tumour : bool ndarray (H, W)
    vessel_fraction : ndarray (H, W)
        Vascular volume fraction f_v.
    vessel_surface_per_um : ndarray (H, W)
        S/V = 2 f_v / r_c, 1/µm.
    permeability_factor : ndarray (H, W)
        Relative vessel permeability m (tumour), for the carrier; small molecules use
        :attr:`permeability_factor_small`.
    permeability_factor_small : ndarray (H, W)
    interstitial_fraction, ph, t1_ms, m0 : ndarray (H, W)
    centre_vox : tuple of float
        Tumour centre, voxel indices (row, column).
    micro_vessels : bool ndarray (window_px, window_px)
    micro_origin_um : tuple of float
        Position of the window's first pixel corner in the slice, µm (row, column).
    micro_voxel : tuple of int
        The voxel of the coarse grid at the window centre.
    """

    spacing_um: float
    radius_norm: np.ndarray
    tumour: np.ndarray
    vessel_fraction: np.ndarray
    vessel_surface_per_um: np.ndarray
    permeability_factor: np.ndarray
    permeability_factor_small: np.ndarray
    interstitial_fraction: np.ndarray
    ph: np.ndarray
    t1_ms: np.ndarray
    m0: np.ndarray
    centre_vox: tuple
    micro_vessels: np.ndarray
    micro_origin_um: tuple
    micro_voxel: tuple


def _tumour_shape(rng, size, spacing_um):
    """Elliptic radius (1 at the boundary) of a slightly lobulated ellipse, and its centre."""
    mm = spacing_um / 1000.0
    a = rng.uniform(2.2, 2.8) * (size * mm / 6.4)             # semi-axes, mm (scaled with the field of view)
    b = a * rng.uniform(0.8, 1.0)
    theta = rng.uniform(0, math.pi)
    c = (size - 1) / 2 + rng.uniform(-1.5, 1.5, 2) * (size / 64)
    y, x = (np.indices((size, size)) - c[:, None, None]) * mm
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    phi = np.arctan2(v, u)
    lobes = 1 + 0.06 * np.cos(3 * phi + rng.uniform(0, 6.3)) + 0.04 * np.cos(5 * phi + rng.uniform(0, 6.3))
    return np.sqrt((u / a) ** 2 + (v / b) ** 2) / lobes, (float(c[0]), float(c[1]))


def _fine_network(rng, n_fine, radius_fine, corr_um):
    """Vessel mask at FINE_UM: zero set of a smooth field, thinned by a radial trend."""
    g = smooth_field(rng, (n_fine, n_fine), corr_um / FINE_UM)
    s = np.sign(g)
    lines = np.zeros((n_fine, n_fine), bool)
    lines[:, :-1] |= s[:, :-1] != s[:, 1:]
    lines[:-1, :] |= s[:-1, :] != s[1:, :]
    keep_noise = smooth_field(rng, (n_fine, n_fine), 150.0 / FINE_UM)
    r = radius_fine
    # trend: +1.5 at the rim (r ~ 0.9), -0.5 in the centre, -0.4 in the host far from the tumour (this work)
    inner = -0.5 + 2.0 * np.clip((r - 0.2) / 0.7, 0, 1) ** 1.5
    trend = np.where(r < 1.0, inner, -0.4 + 1.9 * np.exp(-(r - 1.0) / 0.08))
    keep = keep_noise + trend > 0
    return ndimage.binary_dilation(lines & keep, structure=np.ones((3, 3), bool))


def make_geometry(rng_shape, rng_vessels, rng_fields, *, size: int = 64, spacing_um: float = 100.0,
                  window_px: int = 128, vessel_corr_um: float = 55.0, heterogeneous: bool = True) -> Geometry:
    """Draw the tumour slice (module docstring). ``spacing_um`` must be a multiple of 4 µm."""
    factor = int(round(spacing_um / FINE_UM))
    if factor < 2 or abs(factor * FINE_UM - spacing_um) > 1e-9:
        raise InputError(f"spacing_um = {spacing_um} is not a multiple of {FINE_UM:g} µm (>= 8 µm)",
                         fix="Use e.g. 100.0 µm voxels.")
    if size * factor < window_px + 2 * factor:
        raise InputError(f"a {size}-voxel slice is too small for a {window_px}-pixel micro window",
                         fix="Use a larger size or a smaller window_px.")
    rn, centre = _tumour_shape(rng_shape, size, spacing_um)
    tumour = rn < 1.0
    n_fine = size * factor
    coarse_idx = (np.arange(n_fine) + 0.5) / factor - 0.5
    rn_fine = ndimage.map_coordinates(rn, np.meshgrid(coarse_idx, coarse_idx, indexing="ij"), order=1, mode="nearest")
    fine = _fine_network(rng_vessels, n_fine, rn_fine, vessel_corr_um)
    vf = fine.reshape(size, factor, size, factor).mean(axis=(1, 3))
    sv = 2.0 * vf / VESSEL_RADIUS_UM

    # micro window: about half-way from the centre to the rim, the first (angle, radius) whose
    # vessel fraction is 2-12 %, else the candidate closest to 5 %
    ang0 = rng_fields.uniform(0, 2 * math.pi)
    half = window_px / 2
    best = None
    for ang in ang0 + np.arange(8) * math.pi / 4:
        for frac in (0.5, 0.6, 0.4, 0.7):
            rad_vox = frac * _radius_along(rn, centre, ang)
            cy, cx = centre[0] + rad_vox * math.sin(ang), centre[1] + rad_vox * math.cos(ang)
            y0 = min(max(int(round((cy + 0.5) * factor - half)), 0), n_fine - window_px)
            x0 = min(max(int(round((cx + 0.5) * factor - half)), 0), n_fine - window_px)
            f = float(fine[y0:y0 + window_px, x0:x0 + window_px].mean())
            if best is None or abs(f - 0.05) < abs(best[0] - 0.05):
                best = (f, y0, x0)
            if 0.02 < f < 0.12:
                break
        if 0.02 < best[0] < 0.12:
            break
    _, y0, x0 = best
    win = fine[y0:y0 + window_px, x0:x0 + window_px]
    micro_voxel = (int((y0 + half) // factor), int((x0 + half) // factor))

    r = rn
    rim = np.clip(r, 0, 1)
    noise = smooth_field(rng_fields, (size, size), 400.0 / spacing_um)
    if heterogeneous:
        trend = 0.5 + 0.8 * rim ** 2
        m = np.where(tumour, trend * np.exp(0.35 * noise - 0.35 ** 2 / 2), 0.1)
        m_small = np.where(tumour, m, 0.5)
    else:
        m = np.ones((size, size))
        m_small = np.ones((size, size))
    phi = np.where(tumour, 0.45 - 0.15 * rim ** 2, 0.15)
    ph_noise = smooth_field(rng_fields, (size, size), 300.0 / spacing_um)
    ph = np.where(tumour, 6.6 + 0.7 * rim ** 2 + 0.05 * ph_noise, 7.38)
    ph = np.clip(ph, 6.05, 7.38)
    t1 = np.where(tumour, 2300.0 - 400.0 * rim ** 2, 1600.0) * (1 + 0.02 * smooth_field(rng_fields, (size, size), 2.0))
    m0 = 1000.0 * (1 + 0.05 * smooth_field(rng_fields, (size, size), 3.0))
    return Geometry(spacing_um=float(spacing_um), radius_norm=rn, tumour=tumour, vessel_fraction=vf,
                    vessel_surface_per_um=sv, permeability_factor=m, permeability_factor_small=m_small,
                    interstitial_fraction=phi, ph=ph, t1_ms=t1, m0=m0, centre_vox=centre,
                    micro_vessels=np.ascontiguousarray(win), micro_origin_um=(y0 * FINE_UM, x0 * FINE_UM),
                    micro_voxel=micro_voxel)


def _radius_along(rn, centre, ang):
    """Distance (voxels) from the centre to the tumour boundary along angle ``ang``."""
    for d in np.arange(0.0, rn.shape[0], 0.25):
        y, x = centre[0] + d * math.sin(ang), centre[1] + d * math.cos(ang)
        if not (0 <= y <= rn.shape[0] - 1 and 0 <= x <= rn.shape[1] - 1):
            return d
        if ndimage.map_coordinates(rn, [[y], [x]], order=1)[0] >= 1.0:
            return d
    return float(rn.shape[0]) / 2


# ----------------------------------------------------------------------------- transport set-up
def transport_setup(geo, scenario, settings):
    """Grid, params of each period, plasma, local plasma free drug, temperature and release maps.

    The scenario physics is :func:`core.drug_release.scenarios.scenario_setup`; this builds the
    grid and tissue parameters of the phantom's geometry and the settings from its
    ``SCENARIO_SETTINGS`` entry (heating :data:`HEATING` for the thermosensitive scenario).
    """
    tum = geo.tumour
    grid = TissueGrid(geo.spacing_um, geo.vessel_surface_per_um, tum,
                      lymphatic_surface_per_um=np.where(tum, 0.0, 0.005))
    fluid = FluidParams.tumour_and_host(tum)
    base = TransportParams(permeability_carrier_um_per_h=TransportParams.permeability_carrier_um_per_h
                           * geo.permeability_factor,
                           permeability_free_um_per_h=TransportParams.permeability_free_um_per_h
                           * geo.permeability_factor_small,
                           interstitial_fraction=geo.interstitial_fraction, fluid=fluid)
    st = ScenarioSettings(dose_uM=settings["dose_uM"], half_life_h=settings["half_life_h"],
                          t_end_h=settings["t_end_h"],
                          heating=_DEFAULT_HEATING if scenario == "thermosensitive" else None)
    setup = scenario_setup(scenario, grid, base, centre_vox=geo.centre_vox, settings=st)
    return grid, list(setup.pieces), setup.plasma, setup.local_plasma_free, setup.temperature_c, setup.release_per_h


def micro_truth(geo, grid_pieces, plasma, local, pressure, settings):
    """The micro-window truth: vessels S/V = 2/r_c, parameters of the window's voxel, uniform IFP."""
    ij = geo.micro_voxel
    sv = np.where(geo.micro_vessels, 2.0 / VESSEL_RADIUS_UM, 0.0)
    mgrid = TissueGrid(FINE_UM, sv, np.ones(sv.shape, bool))
    t_micro = settings["micro_t_end_h"]
    pieces = window_periods(grid_pieces, ij, t_micro)
    loc = None if local is None else FieldFunction(local.at_point(ij), sv.shape)
    save = np.round(np.arange(0.0, t_micro + 1e-9, 0.05), 9)
    return mgrid, simulate_piecewise(mgrid, plasma, pieces, save_times_h=save,
                                     pressure_mmhg=float(pressure[ij]), local_plasma_free=loc)


# ----------------------------------------------------------------------------- file helpers
#: Slice thickness of the 2D images, mm (this work).
SLICE_MM = 1.0


def slice_affine(spacing_mm: float, n: int, origin_mm=None) -> np.ndarray:
    """Voxel (i, j, k) to mm: i, j in-plane (``spacing_mm``), k the slice (1 mm); centred slice by default."""
    o = -(n - 1) / 2 * spacing_mm if origin_mm is None else None
    a = np.diag([spacing_mm, spacing_mm, SLICE_MM, 1.0])
    a[:3, 3] = [o, o, 0.0] if origin_mm is None else [origin_mm[0], origin_mm[1], 0.0]
    return a


def times_volume(data_t_first, affine, times_s, units, sidecar):
    """A DynamicVolume of (T, H, W) data at start times ``times_s``; each frame lasts until the next."""
    t = np.asarray(times_s, float)
    gaps = np.diff(t)
    dur = np.append(gaps, gaps[-1] if gaps.size else 1.0)
    return DynamicVolume(np.moveaxis(np.asarray(data_t_first, np.float32), 0, -1)[:, :, None, :], affine, "MR", units,
                         meta={"sidecar": sidecar}, frame_start_s=t, frame_duration_s=dur, decay_corrected=False,
                         decay_reference="none")
