r"""Outcome measures of a drug-transport simulation: exposure, lethal fraction, penetration.

Units as in :mod:`core.drug_release.transport`: hours, µm, µM (doxorubicin per tissue volume).

* **Exposure** :math:`\mathrm{AUC}(x) = \int_0^{T} c(x, t)\,dt` (µM·h), trapezoid rule over
  the saved times of a :class:`~core.drug_release.transport.TransportSolution` (save densely
  enough to resolve the fast free-drug peak; the default saves every step up to 240).
* **Lethal fraction**: share of tumour voxels whose AUC reaches a threshold. Default
  threshold :data:`DEFAULT_LETHAL_AUC_UM_H` = 1.0 µM·h of free drug per tissue volume
  (this work): a configurable placeholder, not a literature value. Set it from the cell
  line's clonogenic data when known (see "The lethal threshold" below).
* **Distance to the nearest vessel**: Euclidean distance transform
  (``scipy.ndimage.distance_transform_edt``) between voxel centres, in µm; vessel voxels
  (S/V > 0) are at 0, their neighbours at one spacing.
* **Penetration distance**: the distance at which the radial profile (mean per distance bin)
  first falls to ``fraction`` (default :math:`1/e`; 0.5 gives the half-value distance) of
  its perivascular value, the mean of the first non-empty bin, linearly interpolated
  between bin centres. Primeau et al. (2005) measured doxorubicin fluorescence falling with
  distance from vessels in this way.

The lethal threshold
--------------------
No literature figure for a lethal *exposure* (AUC) of doxorubicin could be verified for this
default, so 1.0 µM·h is ours (this work). What the literature we read does say:

* the tumour-cord model of Eikenberry (2009) and the liposome model of Zhan & Xu (2013)
  decide cell death from the **peak intracellular** concentration, not from an AUC; the
  physiological model of Harashima et al. (1999) drives its cell-kill kinetics with the
  **free extracellular** doxorubicin (and finds an optimum liposomal release rate constant
  around 0.06 /h);
* in vitro, one study of human mammary epithelial cells found clonogenic dose-response
  curves after 1 h and 4 h exposures superimposable against concentration x time (the AUC
  is the right measure over such exposures), while one of mouse sarcoma cells found that a
  long low exposure kills less than a short high one of the same AUC (the peak matters over
  longer ones). A single AUC threshold is therefore a simplification for exposures of a few
  hours.

Which species: :func:`exposure_auc` integrates any of them. ``"free"`` (default) is the
extracellular free drug, the quantity in-vitro exposures are stated in; ``"bound"`` is the
cell-associated (intracellular) drug, the quantity the peak-intracellular models above use;
``"total"`` includes the encapsulated drug, which is not bioavailable and should not be
used for kill. Use one species consistently with the threshold's source.

Units: our concentrations are **per tissue volume**. An in-vitro threshold is a
concentration in the medium, which corresponds to the **interstitial fluid**
concentration :math:`c_F/\varphi` (interstitial fraction :math:`\varphi`, 0.3 by default in
:class:`~core.drug_release.transport.TransportParams`): a medium
exposure of :math:`A` µM·h is reached where the tissue AUC is :math:`\varphi A`. Pass
``interstitial_fraction`` to :func:`lethal_fraction` to compare :math:`\mathrm{AUC}/\varphi`
with a threshold stated as a medium exposure. Mass units: 1 µg/ml of doxorubicin
(free base, 543.5 g/mol) is 1.84 µM; of the hydrochloride (580.0 g/mol) 1.72 µM.

References
----------
.. [1] Primeau AJ, Rendon A, Hedley D, Lilge L, Tannock IF. The distribution of the
   anticancer drug doxorubicin in relation to blood vessels in solid tumors. Clin Cancer Res
   2005;11:8782-8788.
.. [2] Eikenberry S. A tumor cord model for doxorubicin delivery and dose optimization in
   solid tumors. Theor Biol Med Model 2009;6:16.
.. [3] Zhan W, Xu XY. A mathematical model for thermosensitive liposomal delivery of
   doxorubicin to solid tumour. J Drug Deliv 2013;2013:172529.
.. [4] Harashima H, Iida S, Urakami Y, Tsuchihashi M, Kiwada H. Optimization of antitumor
   effect of liposomally encapsulated doxorubicin based on simulations by
   pharmacokinetic/pharmacodynamic modeling. J Control Release 1999;61:93-106.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import ndimage

from core.drug_release.pressure import TissueGrid, check_grid
from core.errors import GeometryError, InputError, MaskError

__all__ = ["exposure_auc", "lethal_fraction", "distance_to_vessel_um", "concentration_vs_distance",
           "penetration_distance_um", "DEFAULT_LETHAL_AUC_UM_H"]

#: Default lethal exposure, µM·h of free drug per tissue volume (this work: a placeholder; no literature
#: AUC threshold could be verified, see the module docstring).
DEFAULT_LETHAL_AUC_UM_H = 1.0


def exposure_auc(solution, species: str = "free") -> np.ndarray:
    """Per-voxel area under the concentration curve, µM·h (trapezoid over ``solution.times_h``).

    Parameters
    ----------
    solution : TransportSolution
    species : {'free', 'bound', 'encapsulated', 'total'}, default='free'

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> s = SimpleNamespace(times_h=np.array([0.0, 1.0, 2.0]), species=lambda n: np.ones((3, 2, 2)))
    >>> float(exposure_auc(s)[0, 0])
    2.0
    """
    c = np.asarray(solution.species(species), float)
    t = np.asarray(solution.times_h, float)
    if t.size < 2:
        raise InputError(f"the solution holds {t.size} saved time", fix="Save at least two times to integrate.")
    return np.trapezoid(c, t, axis=0)


def lethal_fraction(auc, tumour_mask, threshold_uM_h: float = DEFAULT_LETHAL_AUC_UM_H,
                    interstitial_fraction=None) -> float:
    """Fraction of tumour voxels whose exposure AUC is at or above ``threshold_uM_h``.

    Parameters
    ----------
    auc : ndarray
        Exposure per voxel, µM·h per tissue volume, from :func:`exposure_auc` (``"free"`` for
        the extracellular drug, ``"bound"`` for the cell-associated drug; module docstring).
    tumour_mask : bool ndarray of the same shape
    threshold_uM_h : float, default=DEFAULT_LETHAL_AUC_UM_H (1.0, this work)
        Lethal exposure, µM·h, > 0.
    interstitial_fraction : float or ndarray of auc's shape, optional
        When given, ``auc / interstitial_fraction`` (the exposure of the interstitial fluid,
        comparable to an in-vitro medium exposure) is compared with the threshold; each
        value in (0, 1]. Default: ``auc`` itself.

    Examples
    --------
    >>> lethal_fraction(np.array([0.5, 2.0, 3.0]), np.array([True, True, False]))
    0.5
    >>> lethal_fraction(np.array([0.5, 2.0]), np.array([True, True]), 4.0, interstitial_fraction=0.5)
    0.5
    """
    a = np.asarray(auc, float)
    m = np.asarray(tumour_mask)
    if m.shape != a.shape:
        raise MaskError(f"tumour mask has shape {m.shape} but the AUC map is {a.shape}",
                        fix="Give a mask on the same grid as the exposure map.")
    m = m.astype(bool)
    if not m.any():
        raise MaskError("tumour mask is empty", fix="Give a mask with at least one tumour voxel.")
    thr = float(threshold_uM_h)
    if not np.isfinite(thr) or thr <= 0:
        raise InputError(f"threshold_uM_h = {threshold_uM_h} is not a positive exposure",
                         fix="Give the lethal exposure in µM·h, e.g. 1.0.")
    if not np.all(np.isfinite(a[m])):
        raise InputError("the AUC map holds NaN or infinite values in the tumour", fix="Check the simulation.")
    if interstitial_fraction is not None:
        try:
            phi = np.broadcast_to(np.asarray(interstitial_fraction, float), a.shape)
        except (ValueError, TypeError):
            raise InputError(f"interstitial_fraction of shape {np.shape(interstitial_fraction)} does not fit the "
                             f"AUC map {a.shape}", fix="Give a scalar or a map on the same grid.") from None
        bad = ~((phi > 0) & (phi <= 1))
        if np.any(bad[m]):
            raise InputError(f"interstitial_fraction = {float(phi[m][bad[m]][0])!r} is not a volume fraction in (0, 1]",
                             fix="Give the interstitial volume fraction, e.g. 0.3 (TransportParams default).")
        a = np.where(m, a / np.where(bad, 1.0, phi), a)
    return float(np.mean(a[m] >= thr))


def distance_to_vessel_um(grid: TissueGrid) -> np.ndarray:
    """Distance from each voxel centre to the nearest vessel voxel (S/V > 0), µm.

    Examples
    --------
    >>> sv = np.zeros((5, 5)); sv[2, 2] = 0.2
    >>> float(distance_to_vessel_um(TissueGrid(5.0, sv, np.ones((5, 5), bool)))[2, 4])
    10.0
    """
    check_grid(grid)
    ves = grid.vessels
    if not ves.any():
        raise InputError("the grid has no vessel voxels (vessel_surface_per_um is 0 everywhere)",
                         fix="Mark vessels with S/V > 0 to measure distances from them.")
    return ndimage.distance_transform_edt(~ves) * float(grid.spacing_um)


def concentration_vs_distance(field, distance_um, bins_um, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of ``field`` per distance bin.

    Parameters
    ----------
    field : ndarray
        Concentration (µM) or exposure (µM·h) map.
    distance_um : ndarray of the same shape
    bins_um : array-like, increasing
        Bin edges, µm; a voxel belongs to ``[edge_i, edge_i+1)``.
    mask : bool ndarray, optional
        Voxels to include (e.g. the tumour), default all.

    Returns
    -------
    centres_um, mean, count : ndarray (n_bins,)
        ``mean`` is NaN in empty bins.

    Examples
    --------
    >>> c, m, n = concentration_vs_distance(np.array([4.0, 2.0, 1.0]), np.array([0.0, 5.0, 12.0]), [0, 10, 20])
    >>> m.tolist(), n.tolist()
    ([3.0, 1.0], [2, 1])
    """
    f = np.asarray(field, float)
    d = np.asarray(distance_um, float)
    if f.shape != d.shape:
        raise GeometryError(f"field has shape {f.shape} but distance map {d.shape}", fix="Use maps of the same grid.")
    edges = np.asarray(bins_um, float).ravel()
    if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise InputError(f"bins_um must be at least two increasing edges, got {edges[:6].tolist()}",
                         fix="Give bin edges in µm, e.g. np.arange(0, 155, 5).")
    sel = np.isfinite(f) & np.isfinite(d)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != f.shape:
            raise MaskError(f"mask has shape {m.shape}, field {f.shape}", fix="Use a mask of the same grid.")
        sel &= m
    idx = np.digitize(d[sel], edges) - 1
    ok = (idx >= 0) & (idx < edges.size - 1)
    count = np.bincount(idx[ok], minlength=edges.size - 1).astype(int)
    total = np.bincount(idx[ok], weights=f[sel][ok], minlength=edges.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return 0.5 * (edges[:-1] + edges[1:]), mean, count


def penetration_distance_um(centres_um, profile, fraction: float = 1 / math.e) -> float:
    """Distance (µm) where ``profile`` first falls to ``fraction`` of its perivascular value.

    The perivascular value is the first finite entry of ``profile``; the crossing is linearly
    interpolated between bin centres. Returns NaN with a warning when the profile never falls
    that low (the drug reaches the whole range, or the window is too small).

    Examples
    --------
    >>> round(penetration_distance_um([0, 10, 20, 30], [1.0, 0.6, 0.3, 0.1], fraction=0.5), 2)
    13.33
    """
    x = np.asarray(centres_um, float).ravel()
    y = np.asarray(profile, float).ravel()
    if x.shape != y.shape or x.size < 2:
        raise InputError(f"{x.size} distances but {y.size} profile values", fix="Give one value per distance bin.")
    if not 0 < float(fraction) < 1:
        raise InputError(f"fraction = {fraction} is not in (0, 1)", fix="Use 1/e (default) or 0.5.")
    good = np.isfinite(y)
    x, y = x[good], y[good]
    if x.size < 2 or y[0] <= 0:
        warnings.warn("profile is empty or zero next to the vessels; penetration distance undefined", RuntimeWarning)
        return float("nan")
    target = float(fraction) * y[0]
    below = np.nonzero(y <= target)[0]
    if below.size == 0:
        warnings.warn(f"profile never falls to {fraction:.3g} of its perivascular value within "
                      f"{x[-1]:g} µm", RuntimeWarning)
        return float("nan")
    k = int(below[0])
    x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
    return float(x0 + (y0 - target) / (y0 - y1) * (x1 - x0)) if y0 != y1 else float(x1)
