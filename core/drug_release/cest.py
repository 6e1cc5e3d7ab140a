r"""Extracellular pH from ratiometric CEST-MRI with iopamidol: forward model, B0 correction, calibration.

Forward model (:func:`simulate_z_spectrum`)
-------------------------------------------
A Z-spectrum is the water signal after a long off-resonant saturation pulse of amplitude
:math:`B_1` at offset :math:`\Delta\omega` from water, divided by the unsaturated signal. We use
the analytic steady-state solution of the Bloch-McConnell equations in the large-shift limit
reviewed by Zaiss & Bachert (2013) [1]_ (saturation long compared with :math:`T_1`; no
semisolid magnetisation transfer):

.. math::

    Z(\Delta\omega) = \frac{\cos^2\theta\; R_{1w}}{R_{\mathrm{eff}} + \sum_i R_{ex,i}(\Delta\omega)},
    \qquad \theta = \arctan\frac{\omega_1}{\Delta\omega},\qquad
    R_{\mathrm{eff}} = R_{1w}\cos^2\theta + R_{2w}\sin^2\theta,

with :math:`\omega_1 = \gamma B_1`, water relaxation rates :math:`R_{1w} = 1/T_1`,
:math:`R_{2w} = 1/T_2` (water direct saturation), and one Lorentzian exchange term per
solute pool :math:`i` at chemical shift :math:`\delta_i` (ppm downfield of water, positive
offsets):

.. math::

    R_{ex,i} = f_i k_i \frac{\omega_1^2}{\omega_1^2 + k_i(k_i + R_{2s})}
               \frac{\Gamma_i^2/4}{\Gamma_i^2/4 + (\Delta\omega - \delta_i)^2},\qquad
    \Gamma_i = 2\sqrt{\frac{R_{2s} + k_i}{k_i}\,\omega_1^2 + (R_{2s} + k_i)^2},

where :math:`f_i = n_i\,c/(111\ \mathrm{M})` is the ratio of the pool's exchangeable protons
(:math:`n_i` per molecule, agent concentration :math:`c`) to water protons (2 x 55.5 M). The
exchange rate follows acid/base catalysis (as for amide protons),

.. math::

    k_i(\mathrm{pH}) = k_{0,i} + k_{b,i}\,10^{\mathrm{pH} - 14} + k_{a,i}\,10^{-\mathrm{pH}}
    \quad [\mathrm{s^{-1}}].

The agent is iopamidol, whose two amide pools resonate at about 4.2 and 5.5 ppm (Aime et al.
2005 [2]_; Longo et al. 2011 [3]_). The numbers of protons (2 and 1), the rate constants
(:data:`IOPAMIDOL_POOLS`) and the tissue defaults (7 T, :math:`T_1` = 2 s, :math:`T_2` = 80 ms,
:math:`R_{2s}` = 100 1/s, :math:`B_1` = 2 µT) are our choices (this work), not values fitted
to measurements: the 5.5 ppm pool is given faster base catalysis than the 4.2 ppm pool, so
that the ratio of the two effects rises monotonically with pH over 6.0-7.4, the responsive
behaviour the ratiometric method relies on [2]_ [3]_. Offsets are in ppm of the water frequency; a B0 offset moves the
whole spectrum (:math:`\Delta\omega \to \Delta\omega - \Delta_{B0}`).

Analysis
--------
* :func:`correct_b0`: the water minimum of each voxel is located by a least-squares parabola
  through the lowest sample and its two neighbours on each side, and the spectrum is shifted
  (linear interpolation) so that the minimum sits at 0 ppm.
* :func:`st_effect`: the asymmetry :math:`ST(\delta) = MTR_{asym} = Z(-\delta) - Z(+\delta)`.
* :func:`cest_ratio`: the ratiometric index of Aime et al. [2]_ and Longo et al. [3]_,

  .. math::

      RST = \frac{ST_a\,(1 - ST_b)}{ST_b\,(1 - ST_a)}
          = \frac{(M_0 - M_s)/M_s\,|_a}{(M_0 - M_s)/M_s\,|_b}.

  We use this form rather than :math:`ST_a/ST_b`: :math:`ST/(1-ST)` linearises the saturation
  of each pool (in the steady state :math:`1/Z - 1 \propto R_{ex}`), and both pools scale with
  the same concentration, so the index does not depend on the agent concentration. In the
  forward model above it changes by < 2 % from 5 to 40 mM at pH 6.0-7.4, against up to
  ~ 12 % for the simple ratio (this work, see the tests).
* :func:`calibrate_ph` fits :math:`\log_{10} RST` as a polynomial in pH (degree 1-4) and
  checks that it is strictly monotonic over the calibrated range; :func:`ph_map` inverts
  it. Voxels whose ratio lies outside the calibrated range, is undefined, or whose CEST
  effect is too small (agent absent) get ``ok = False`` and pH NaN: a pH is never clipped.
  Limitation: like any pH agent, the index responds only over a finite range. In this model
  it falls to a minimum near pH 5.8 and peaks near pH 7.8; a pH a little outside the
  calibrated range is flagged, but a pH far outside it (<= 5.5 or >= 8.2 at 20 mM) folds
  back into the calibrated range of the index and cannot be told apart from the ratio
  alone.
* :func:`default_calibration` is **simulated** with the forward model at pH 6.0-7.4 (this
  work), not measured on phantoms: use a measured calibration for real scans.

References
----------
.. [1] Zaiss M, Bachert P. Chemical exchange saturation transfer (CEST) and MR
   Z-spectroscopy in vivo: a review of theoretical approaches and methods. Phys Med Biol
   2013;58:R221-R269.
.. [2] Aime S, Calabi L, Biondi L, et al. Iopamidol: exploring the potential use of a
   well-established x-ray contrast agent for MRI. Magn Reson Med 2005;53:830-834.
.. [3] Longo DL, Dastrù W, Digilio G, et al. Iopamidol as a responsive MRI-chemical exchange
   saturation transfer contrast agent for pH mapping of kidneys: in vivo studies in mice at
   7 T. Magn Reson Med 2011;65:202-211.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from core.errors import InputError

__all__ = [
    "CestPool",
    "IOPAMIDOL_POOLS",
    "DEFAULT_OFFSETS_PPM",
    "simulate_z_spectrum",
    "correct_b0",
    "st_effect",
    "cest_ratio",
    "CestCalibration",
    "calibrate_ph",
    "ph_map",
    "ph_map_from_z",
    "default_calibration",
]

#: Proton gyromagnetic ratio, rad/s/T.
GAMMA_RAD_S_T = 2.0 * np.pi * 42.577478e6
#: Water proton concentration, M (2 x 55.5 M).
WATER_PROTONS_M = 111.0
#: Physical pH range accepted by the forward model.
PH_RANGE = (4.0, 9.0)
#: Centre of the calibration polynomial, pH.
PH_CENTER = 7.0
#: A saturation offset grid, ppm: -8 to 8 ppm in 0.1 ppm steps (this work).
DEFAULT_OFFSETS_PPM = np.round(np.linspace(-8.0, 8.0, 161), 6)


@dataclasses.dataclass(frozen=True)
class CestPool:
    """An exchangeable proton pool of a CEST agent.

    Attributes
    ----------
    name : str
        Label, e.g. ``"amide 4.2 ppm"``.
    offset_ppm : float
        Chemical shift from water, ppm (positive downfield).
    protons : float
        Exchangeable protons per molecule.
    k0_per_s : float
        pH-independent exchange rate, 1/s.
    kb_per_m_s : float
        Base-catalysis constant, 1/(M s): adds :math:`k_b 10^{pH-14}`.
    ka_per_m_s : float, default=0
        Acid-catalysis constant, 1/(M s): adds :math:`k_a 10^{-pH}`.
    r2_per_s : float, default=100
        Transverse relaxation rate of the pool, 1/s (this work).
    """

    name: str
    offset_ppm: float
    protons: float
    k0_per_s: float
    kb_per_m_s: float
    ka_per_m_s: float = 0.0
    r2_per_s: float = 100.0

    def exchange_rate_per_s(self, ph) -> np.ndarray:
        """Exchange rate :math:`k_0 + k_b 10^{pH-14} + k_a 10^{-pH}` (1/s) at ``ph``."""
        ph = np.asarray(ph, float)
        return self.k0_per_s + self.kb_per_m_s * 10.0 ** (ph - 14.0) + self.ka_per_m_s * 10.0 ** (-ph)


#: The two amide pools of iopamidol (shifts from Aime et al. 2005; rates and proton counts
#: this work, chosen so that the ratiometric index rises monotonically over pH 6.0-7.4).
IOPAMIDOL_POOLS = (
    CestPool("amide 4.2 ppm", 4.2, 2.0, 5.0, 6.0e8),
    CestPool("amide 5.5 ppm", 5.5, 1.0, 5.0, 4.0e10),
)


# --- validation helpers ------------------------------------------------------------------------

def _check_offsets(offsets_ppm) -> np.ndarray:
    off = np.asarray(offsets_ppm, float)
    if off.ndim != 1 or off.size < 5:
        raise InputError(f"saturation offsets must be a 1D list of at least 5 values, got shape {off.shape}",
                         fix="Give the offsets of the Z-spectrum in ppm, e.g. -8 to 8 ppm.")
    if not np.all(np.isfinite(off)):
        raise InputError("saturation offsets contain NaN or infinite values", fix="Remove them.")
    if np.any(np.diff(off) <= 0):
        raise InputError("saturation offsets are not strictly increasing",
                         fix="Sort the Z-spectrum by offset (ppm) and drop repeated offsets (e.g. M0 scans).")
    return off


def _check_z(z, off: np.ndarray) -> np.ndarray:
    z = np.asarray(z, float)
    if z.ndim < 1 or z.shape[-1] != off.size:
        raise InputError(f"Z-spectra have shape {z.shape} but there are {off.size} offsets",
                         fix="The last axis of the Z-spectra must match the offsets.")
    if not np.all(np.isfinite(z)):
        bad = int(np.sum(~np.isfinite(z)))
        raise InputError(f"Z-spectra contain {bad} NaN or infinite values",
                         fix="Mask out background voxels before the analysis, or replace them.")
    return z


def _finite_array(x, name: str, *, lo=None, hi=None, unit: str = "") -> np.ndarray:
    a = np.asarray(x, float)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} contains NaN or infinite values", fix=f"Give finite {name} values.")
    if (lo is not None and np.any(a < lo)) or (hi is not None and np.any(a > hi)):
        allowed = f">= {lo:g}" if hi is None else f"<= {hi:g}" if lo is None else f"in [{lo:g}, {hi:g}]"
        raise InputError(f"{name} must be {allowed} {unit}".rstrip() + f", got {a.min():g} to {a.max():g}",
                         fix=f"Check the values and units of {name}.")
    return a


def _interp_rows(off: np.ndarray, z: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear interpolation of each spectrum ``z[..., :]`` (on ``off``) at ``q[..., m]``.

    ``q`` broadcasts against ``z.shape[:-1] + (m,)``; beyond the grid the edge value is held.
    """
    n = off.size
    shape = np.broadcast_shapes(z.shape[:-1], q.shape[:-1]) + (q.shape[-1],)
    q = np.broadcast_to(q, shape)
    zb = np.broadcast_to(z, shape[:-1] + (n,))
    idx = np.clip(np.searchsorted(off, q) - 1, 0, n - 2)
    t = np.clip((q - off[idx]) / (off[idx + 1] - off[idx]), 0.0, 1.0)
    z0 = np.take_along_axis(zb, idx, axis=-1)
    z1 = np.take_along_axis(zb, idx + 1, axis=-1)
    return z0 + t * (z1 - z0)


# --- forward model -----------------------------------------------------------------------------

def simulate_z_spectrum(offsets_ppm, ph, agent_mM, *, b1_uT=2.0, b0_shift_ppm=0.0, field_t: float = 7.0,
                        t1_s=2.0, t2_s=0.08, pools: tuple[CestPool, ...] = IOPAMIDOL_POOLS,
                        noise_sd: float = 0.0, rng=None) -> np.ndarray:
    r"""Steady-state Z-spectra of tissue holding a pH-responsive CEST agent (iopamidol).

    Parameters
    ----------
    offsets_ppm : array-like of shape (n_offsets,)
        Saturation offsets from water, ppm.
    ph : array-like of shape (...)
        Extracellular pH per voxel, in [4, 9].
    agent_mM : array-like broadcastable with ``ph``
        Agent concentration, mM (>= 0).
    b1_uT : float or array-like, default=2.0
        Saturation amplitude, µT (> 0); an array models B1 inhomogeneity.
    b0_shift_ppm : float or array-like, default=0
        B0 offset per voxel, ppm: the water resonance appears at this offset.
    field_t : float, default=7.0
        Main field, T (preclinical 7 T, this work).
    t1_s, t2_s : float or array-like, default=2.0, 0.08
        Water :math:`T_1` and :math:`T_2`, s (this work).
    pools : tuple of CestPool, default=IOPAMIDOL_POOLS
        Exchanging pools of the agent.
    noise_sd : float, default=0
        Standard deviation of Gaussian noise added to Z (fraction of M0).
    rng : numpy.random.Generator or int, optional
        Random generator or seed for the noise.

    Returns
    -------
    z : ndarray of shape broadcast(...) + (n_offsets,)
        Normalised water signal :math:`M_z/M_0`.

    Examples
    --------
    >>> z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, [6.5, 7.2], 20.0)
    >>> z.shape, bool(z[0, 80] < 0.01)
    ((2, 161), True)
    """
    off = _finite_array(offsets_ppm, "saturation offsets")
    if off.ndim != 1 or off.size == 0:
        raise InputError(f"saturation offsets must be a 1D list, got shape {off.shape}",
                         fix="Give the offsets of the Z-spectrum in ppm.")
    ph = _finite_array(ph, "pH", lo=PH_RANGE[0], hi=PH_RANGE[1])
    conc = _finite_array(agent_mM, "agent concentration", lo=0.0, unit="mM")
    b1 = _finite_array(b1_uT, "B1", lo=1e-3, hi=50.0, unit="µT")
    shift = _finite_array(b0_shift_ppm, "B0 shift", lo=-5.0, hi=5.0, unit="ppm")
    t1 = _finite_array(t1_s, "T1", lo=1e-3, hi=10.0, unit="s")
    t2 = _finite_array(t2_s, "T2", lo=1e-4, hi=10.0, unit="s")
    if not (np.isfinite(field_t) and 0.1 <= field_t <= 30.0):
        raise InputError(f"field strength must lie in [0.1, 30] T, got {field_t!r}", fix="Give B0 in tesla.")
    if not (np.isfinite(noise_sd) and noise_sd >= 0):
        raise InputError(f"noise_sd must be >= 0, got {noise_sd!r}", fix="Give the noise as a fraction of M0.")
    if np.any(t2 > t1):
        raise InputError("T2 must not exceed T1", fix="Check that T1 and T2 are in seconds and not swapped.")

    shape = np.broadcast_shapes(ph.shape, conc.shape, b1.shape, shift.shape, t1.shape, t2.shape)
    ex = lambda a: np.broadcast_to(a, shape)[..., None]  # noqa: E731  (voxel axes + offset axis)
    ppm_rad = GAMMA_RAD_S_T * field_t * 1e-6                   # rad/s per ppm
    w1 = ex(GAMMA_RAD_S_T * b1 * 1e-6)
    dw = (off - ex(shift)) * ppm_rad                           # offset from the water resonance, rad/s
    r1, r2 = 1.0 / ex(t1), 1.0 / ex(t2)
    cos2 = dw**2 / (dw**2 + w1**2)
    reff = r1 * cos2 + r2 * (1.0 - cos2)
    rex = np.zeros(np.broadcast_shapes(dw.shape, w1.shape))
    for pool in pools:
        k = pool.exchange_rate_per_s(ex(ph))
        f = pool.protons * ex(conc) * 1e-3 / WATER_PROTONS_M
        r2s = pool.r2_per_s
        rmax = f * k * w1**2 / (w1**2 + k * (k + r2s))
        half_g2 = (r2s + k) / k * w1**2 + (r2s + k) ** 2          # (Gamma/2)^2
        rex = rex + rmax * half_g2 / (half_g2 + (dw - pool.offset_ppm * ppm_rad) ** 2)
    z = cos2 * r1 / (reff + rex)
    if noise_sd > 0:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        z = z + gen.normal(0.0, noise_sd, z.shape)
    return z


# --- analysis ----------------------------------------------------------------------------------

def correct_b0(z, offsets_ppm, *, half_points: int = 2) -> tuple[np.ndarray, np.ndarray]:
    r"""Shift each Z-spectrum so that its water minimum lies at 0 ppm.

    The minimum is the vertex of a least-squares parabola through the lowest sample and
    ``half_points`` samples on each side; the spectrum is then resampled (linear
    interpolation, edge values held) as :math:`Z_{corr}(\Delta\omega) = Z(\Delta\omega + \Delta_{B0})`.

    Parameters
    ----------
    z : array-like of shape (..., n_offsets)
        Z-spectra.
    offsets_ppm : array-like of shape (n_offsets,)
        Strictly increasing offsets, ppm.
    half_points : int, default=2
        Neighbours on each side of the lowest sample used in the parabola.

    Returns
    -------
    z_corrected : ndarray of shape (..., n_offsets)
    shift_ppm : ndarray of shape (...)
        Estimated B0 offset, ppm.

    Examples
    --------
    >>> z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, 7.0, 20.0, b0_shift_ppm=0.23)
    >>> _, shift = correct_b0(z, DEFAULT_OFFSETS_PPM)
    >>> round(float(shift), 2)
    0.23
    """
    off = _check_offsets(offsets_ppm)
    z = _check_z(z, off)
    if not (isinstance(half_points, (int, np.integer)) and 1 <= half_points <= (off.size - 1) // 2):
        raise InputError(f"half_points must be an integer from 1 to {(off.size - 1) // 2}, got {half_points!r}",
                         fix="Use 2 (five points around the minimum).")
    n = off.size
    i0 = np.clip(np.argmin(z, axis=-1), half_points, n - 1 - half_points)
    idx = i0[..., None] + np.arange(-half_points, half_points + 1)
    x = off[idx] - off[i0][..., None]                                 # centred for conditioning
    y = np.take_along_axis(z, idx, axis=-1)
    design = np.stack([x**2, x, np.ones_like(x)], axis=-1)           # (..., m, 3)
    gram = np.einsum("...mi,...mj->...ij", design, design)
    rhs = np.einsum("...mi,...m->...i", design, y)
    a, b, _ = np.moveaxis(np.linalg.solve(gram, rhs[..., None])[..., 0], -1, 0)
    span = x[..., -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(a > 0, -b / (2.0 * a), 0.0)
    vertex = np.clip(vertex, x[..., 0], span)
    shift = off[i0] + vertex
    return _interp_rows(off, z, off + shift[..., None]), shift


def st_effect(z, offsets_ppm, at_ppm: float) -> np.ndarray:
    r"""Saturation-transfer effect :math:`MTR_{asym}(\delta) = Z(-\delta) - Z(+\delta)`.

    Parameters
    ----------
    z : array-like of shape (..., n_offsets)
        B0-corrected Z-spectra.
    offsets_ppm : array-like of shape (n_offsets,)
        Strictly increasing offsets, ppm; must cover :math:`\pm\delta`.
    at_ppm : float
        Offset :math:`\delta` of the pool, ppm (> 0).

    Returns
    -------
    ndarray of shape (...)
        The asymmetry (fraction of M0), linearly interpolated between offsets.

    Examples
    --------
    >>> z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, 6.8, 20.0)
    >>> bool(st_effect(z, DEFAULT_OFFSETS_PPM, 4.2) > 0.02)
    True
    """
    off = _check_offsets(offsets_ppm)
    z = _check_z(z, off)
    if not (np.isfinite(at_ppm) and at_ppm > 0):
        raise InputError(f"the CEST offset must be > 0 ppm, got {at_ppm!r}", fix="Give e.g. 4.2 (ppm).")
    if -at_ppm < off[0] or at_ppm > off[-1]:
        raise InputError(f"offsets {off[0]:g} to {off[-1]:g} ppm do not cover ±{at_ppm:g} ppm",
                         fix="Acquire the Z-spectrum on both sides of water beyond the CEST offset.")
    both = _interp_rows(off, z, np.array([-at_ppm, at_ppm]))
    return both[..., 0] - both[..., 1]


def cest_ratio(z, offsets_ppm, ppm_a: float = 4.2, ppm_b: float = 5.5) -> np.ndarray:
    r"""Ratiometric CEST index :math:`RST = ST_a(1 - ST_b) / (ST_b(1 - ST_a))`.

    Concentration-independent because both pools scale with the same agent concentration
    (Aime et al. 2005; Longo et al. 2011). Where either effect is <= 0 or >= 1 the index is
    undefined and NaN is returned (flagged later by :func:`ph_map`).

    Parameters
    ----------
    z : array-like of shape (..., n_offsets)
        B0-corrected Z-spectra.
    offsets_ppm : array-like of shape (n_offsets,)
        Offsets, ppm.
    ppm_a, ppm_b : float, default=4.2, 5.5
        Offsets of the two pools, ppm.

    Returns
    -------
    ndarray of shape (...)

    Examples
    --------
    >>> z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, [6.5, 7.2], 20.0)
    >>> r = cest_ratio(z, DEFAULT_OFFSETS_PPM)
    >>> bool(r[1] > r[0])
    True
    """
    st_a = st_effect(z, offsets_ppm, ppm_a)
    st_b = st_effect(z, offsets_ppm, ppm_b)
    valid = (st_a > 0) & (st_a < 1) & (st_b > 0) & (st_b < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = st_a * (1.0 - st_b) / (st_b * (1.0 - st_a))
    return np.where(valid, r, np.nan)


# --- calibration -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CestCalibration:
    r"""A calibration of the ratiometric index against pH.

    :math:`\log_{10} RST = \sum_j c_j\,(\mathrm{pH} - 7)^{d-j}` (``numpy.polyval`` order; centred
    at pH 7 for conditioning), strictly monotonic over ``ph_range``.

    Attributes
    ----------
    ph_points : tuple of float
        pH of the calibration samples.
    ratio_points : tuple of float
        Measured (or simulated) index of each sample.
    coefficients : tuple of float
        Polynomial coefficients of :math:`\log_{10} RST` in (pH - 7), highest degree first.
    ph_range : tuple of float
        Calibrated pH range (min, max); no pH is reported outside it.
    ppm_a, ppm_b : float
        Offsets of the two pools, ppm.
    source : str
        Where the samples come from (``"simulated ..."`` or a phantom description).
    """

    ph_points: tuple
    ratio_points: tuple
    coefficients: tuple
    ph_range: tuple
    ppm_a: float = 4.2
    ppm_b: float = 5.5
    source: str = "measured"

    def ratio(self, ph) -> np.ndarray:
        """The calibrated index at ``ph``."""
        return 10.0 ** np.polyval(self.coefficients, np.asarray(ph, float) - PH_CENTER)

    @property
    def ratio_range(self) -> tuple[float, float]:
        """(min, max) index over the calibrated pH range."""
        ends = self.ratio(np.array(self.ph_range))
        return float(ends.min()), float(ends.max())

    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        ph = np.linspace(*self.ph_range, 4001)
        logr = np.polyval(self.coefficients, ph - PH_CENTER)
        return (logr, ph) if logr[-1] > logr[0] else (logr[::-1], ph[::-1])


def calibrate_ph(ph_values, ratios, *, degree: int = 3, ppm_a: float = 4.2, ppm_b: float = 5.5,
                 source: str = "measured") -> CestCalibration:
    r"""Fit :math:`\log_{10} RST` as a monotonic polynomial of (pH - 7).

    Least squares on :math:`\log_{10} RST`; the fit is refused unless its derivative keeps one
    sign over the calibrated range, so that the inversion in :func:`ph_map` is unique.

    Parameters
    ----------
    ph_values : array-like of shape (n,)
        pH of the calibration phantoms, in [4, 9].
    ratios : array-like of shape (n,)
        Their ratiometric indices (> 0), from :func:`cest_ratio`.
    degree : int, default=3
        Polynomial degree, 1 to 4; needs at least ``degree + 2`` samples.
    ppm_a, ppm_b : float, default=4.2, 5.5
        Pool offsets the ratios were measured at, ppm.
    source : str, default="measured"
        Provenance of the samples.

    Returns
    -------
    CestCalibration

    Raises
    ------
    InputError
        Non-finite or non-positive ratios, too few samples, or a fit that is not strictly
        monotonic over the calibrated range.

    Examples
    --------
    >>> cal = calibrate_ph([6.0, 6.4, 6.8, 7.2], [0.2, 0.5, 1.2, 3.0], degree=1)
    >>> cal.ph_range
    (6.0, 7.2)
    """
    ph = _finite_array(ph_values, "calibration pH", lo=PH_RANGE[0], hi=PH_RANGE[1]).ravel()
    r = np.asarray(ratios, float).ravel()
    if ph.size != r.size:
        raise InputError(f"{ph.size} calibration pH values but {r.size} ratios", fix="Give one ratio per pH.")
    if not (isinstance(degree, (int, np.integer)) and 1 <= degree <= 4):
        raise InputError(f"degree must be 1 to 4, got {degree!r}", fix="Use 1 (log-linear) to 4.")
    if ph.size < degree + 2 or np.unique(ph).size < degree + 1:
        raise InputError(f"{ph.size} calibration samples are too few for a degree-{degree} fit",
                         fix=f"Measure at least {degree + 2} phantoms at distinct pH, or lower the degree.")
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise InputError("calibration ratios must be finite and > 0",
                         fix="Drop phantoms with no measurable CEST effect at either offset.")
    coef = np.polyfit(ph - PH_CENTER, np.log10(r), degree)
    grid = np.linspace(ph.min(), ph.max(), 4001) - PH_CENTER
    slope = np.polyval(np.polyder(coef), grid)
    if not (np.all(slope > 0) or np.all(slope < 0)):
        raise InputError(f"the degree-{degree} calibration curve is not monotonic over pH "
                         f"{ph.min():g}-{ph.max():g}",
                         fix="Lower the degree, narrow the pH range, or check the phantom measurements.")
    return CestCalibration(tuple(ph.tolist()), tuple(r.tolist()), tuple(float(c) for c in coef),
                           (float(ph.min()), float(ph.max())), float(ppm_a), float(ppm_b), source)


def ph_map(ratio, calibration: CestCalibration, *, st_a=None, st_b=None,
           min_st: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Invert a calibration: pH per voxel from the ratiometric index.

    Parameters
    ----------
    ratio : array-like of shape (...)
        Index from :func:`cest_ratio` (NaN where undefined).
    calibration : CestCalibration
    st_a, st_b : array-like of shape (...), optional
        The two ST effects; when given, voxels where either is below ``min_st`` (agent
        absent or too dilute) are flagged.
    min_st : float, default=0.005
        Smallest usable ST effect, fraction of M0 (this work; raise it to about three times
        the noise of an ST effect).

    Returns
    -------
    ph : ndarray of shape (...)
        pH, NaN where not ok.
    ok : ndarray of bool, shape (...)
        False where the index is undefined, outside the calibrated range, or the CEST
        effect is too small.

    Examples
    --------
    >>> cal = calibrate_ph([6.0, 6.4, 6.8, 7.2], [0.2, 0.5, 1.2, 3.0], degree=1)
    >>> ph, ok = ph_map([0.5, 50.0], cal)
    >>> ok.tolist()
    [True, False]
    """
    if not isinstance(calibration, CestCalibration):
        raise InputError(f"calibration must be a CestCalibration, got {type(calibration).__name__}",
                         fix="Build one with calibrate_ph() or default_calibration().")
    r = np.asarray(ratio, float)
    if np.any(np.isinf(r)):
        raise InputError("CEST ratios contain infinite values", fix="Give NaN for undefined ratios.")
    lo, hi = calibration.ratio_range
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(r) & (r >= lo) & (r <= hi)
    for name, st in (("st_a", st_a), ("st_b", st_b)):
        if st is not None:
            st = _finite_array(st, name)
            ok = ok & (st >= min_st)
    logr_grid, ph_grid = calibration._grid()
    with np.errstate(divide="ignore", invalid="ignore"):
        logr = np.log10(np.where(ok, r, 1.0))
    ph = np.interp(logr, logr_grid, ph_grid)
    return np.where(ok, ph, np.nan), np.asarray(ok)


def ph_map_from_z(z, offsets_ppm, calibration: CestCalibration | None = None, *, b0_correct: bool = True,
                  min_st: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """pH map from Z-spectra: B0 correction, ST effects, ratio, calibration.

    Parameters
    ----------
    z : array-like of shape (..., n_offsets)
        Z-spectra.
    offsets_ppm : array-like of shape (n_offsets,)
        Offsets, ppm.
    calibration : CestCalibration, optional
        Default: :func:`default_calibration` (simulated).
    b0_correct : bool, default=True
        Centre the water minimum first (:func:`correct_b0`).
    min_st : float, default=0.005
        Smallest usable ST effect at either offset, fraction of M0 (this work).

    Returns
    -------
    ph, ok : ndarray of shape (...)
        As :func:`ph_map`.

    Examples
    --------
    >>> z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, [6.6, 7.0], 20.0, b0_shift_ppm=0.1)
    >>> ph, ok = ph_map_from_z(z, DEFAULT_OFFSETS_PPM)
    >>> np.round(ph, 1).tolist(), ok.tolist()
    ([6.6, 7.0], [True, True])
    """
    cal = default_calibration() if calibration is None else calibration
    if b0_correct:
        z, _ = correct_b0(z, offsets_ppm)
    st_a = st_effect(z, offsets_ppm, cal.ppm_a)
    st_b = st_effect(z, offsets_ppm, cal.ppm_b)
    return ph_map(cest_ratio(z, offsets_ppm, cal.ppm_a, cal.ppm_b), cal, st_a=st_a, st_b=st_b, min_st=min_st)


@functools.lru_cache(maxsize=8)
def default_calibration(*, b1_uT: float = 2.0, field_t: float = 7.0, agent_mM: float = 20.0) -> CestCalibration:
    """A calibration **simulated** with :func:`simulate_z_spectrum` at pH 6.0-7.4 (this work).

    Fifteen noise-free phantoms (pH 6.0 to 7.4 in steps of 0.1, ``agent_mM`` iopamidol) on
    :data:`DEFAULT_OFFSETS_PPM`, fitted with a quartic (largest fit error about 0.005 pH over
    the range, this work). Not a measured calibration.

    Parameters
    ----------
    b1_uT : float, default=2.0
        Saturation amplitude, µT.
    field_t : float, default=7.0
        Main field, T.
    agent_mM : float, default=20.0
        Iopamidol concentration of the simulated phantoms, mM.

    Returns
    -------
    CestCalibration

    Examples
    --------
    >>> default_calibration().ph_range
    (6.0, 7.4)
    """
    ph = np.round(np.linspace(6.0, 7.4, 15), 6)
    z = simulate_z_spectrum(DEFAULT_OFFSETS_PPM, ph, agent_mM, b1_uT=b1_uT, field_t=field_t)
    ratios = cest_ratio(z, DEFAULT_OFFSETS_PPM)
    return calibrate_ph(ph, ratios, degree=4,
                        source=f"simulated with simulate_z_spectrum ({field_t:g} T, B1 {b1_uT:g} µT, "
                               f"{agent_mM:g} mM iopamidol; this work, not measured)")
