r"""Dose-volume histograms (DVH) and organ dose tables from a dose map and a label map.

For a structure of :math:`N` voxels with doses :math:`d_i` (all voxels of equal volume), the
cumulative DVH is the fraction of the structure's volume receiving at least a dose :math:`D`,

.. math::

    V(D) = \frac{1}{N} \sum_i [\, d_i \ge D \,],

and the differential DVH the fraction of voxels per dose bin. The dose-volume metrics follow
ICRU Report 83 [1]_:

* :math:`D_{x\%}`: the minimum dose received by the hottest :math:`x` % of the volume, computed
  from the voxel doses (not from the binned histogram) as the :math:`(100 - x)`-th percentile
  with linear interpolation between voxels (``numpy.percentile``, this work); :math:`D_{2\%}`
  is the "near-maximum", :math:`D_{98\%}` the "near-minimum", :math:`D_{50\%}` the median;
* :math:`V_{x\,Gy}`: the fraction of the volume receiving at least :math:`x` Gy.

The organ table reports volume, mass (from a density map), mean (mass-weighted
:math:`\sum_i m_i d_i / \sum_i m_i` when densities are given, which is the organ's absorbed
dose as MIRD defines it, energy over mass [2]_), median, min, max, :math:`D_{2\%}` and
:math:`D_{98\%}` per structure.

References
----------
.. [1] ICRU Report 83: Prescribing, recording, and reporting photon-beam intensity-modulated
   radiation therapy (IMRT). J ICRU 2010;10(1).
.. [2] Bolch WE, Eckerman KF, Sgouros G, Thomas SR. MIRD Pamphlet No. 21: a generalized schema for
   radiopharmaceutical dosimetry. J Nucl Med 2009;50:477-484.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import numpy as np
import pandas as pd

from core.dosimetry.checks import check_density
from core.errors import GeometryError, InputError, MaskError

__all__ = ["DVH", "dose_volume_histogram", "organ_dose_table"]

_METRIC = re.compile(r"^(D)(\d+(?:\.\d+)?)%?$|^(V)(\d+(?:\.\d+)?)Gy$")


@dataclasses.dataclass(frozen=True)
class DVH:
    """Dose-volume histogram of one structure.

    Attributes
    ----------
    dose_gy : ndarray of shape (n_bins + 1,)
        Bin edges (Gy), increasing from ``min(0, min dose)`` to the maximum dose.
    volume_fraction : ndarray of shape (n_bins + 1,)
        Cumulative DVH: fraction of the volume receiving at least ``dose_gy[k]`` (1 at the first
        edge, non-increasing).
    differential : ndarray of shape (n_bins,)
        Fraction of the volume in each bin ``[dose_gy[k], dose_gy[k+1])`` (the last bin closed);
        sums to 1.
    volume_ml : float
        Volume of the structure, ml.
    voxel_doses_gy : ndarray
        The structure's voxel doses, sorted increasing (for exact :meth:`d` and :meth:`v`).
    """

    dose_gy: np.ndarray
    volume_fraction: np.ndarray
    differential: np.ndarray
    volume_ml: float
    voxel_doses_gy: np.ndarray = dataclasses.field(repr=False)

    def d(self, percent: float) -> float:
        """:math:`D_{x\\%}` (Gy): minimum dose to the hottest ``percent`` % of the volume.

        Examples
        --------
        >>> dvh = dose_volume_histogram(np.arange(101.0), np.ones(101, bool))
        >>> dvh.d(2), dvh.d(50), dvh.d(98)
        (98.0, 50.0, 2.0)
        """
        if not 0 <= percent <= 100:
            raise InputError(f"D{percent}%: the volume percentage must be in [0, 100]")
        return float(np.percentile(self.voxel_doses_gy, 100.0 - percent))

    def v(self, dose_gy: float) -> float:
        """:math:`V_{x\\,Gy}`: fraction (0-1) of the volume receiving at least ``dose_gy`` Gy.

        Examples
        --------
        >>> dose_volume_histogram(np.arange(10.0), np.ones(10, bool)).v(7.0)
        0.3
        """
        d = self.voxel_doses_gy
        return float((d.size - np.searchsorted(d, dose_gy, side="left")) / d.size)

    def metric(self, name: str) -> float:
        """A metric by name: ``"D2"``, ``"D98%"``, ``"D50"`` (Gy) or ``"V20Gy"`` (fraction).

        Examples
        --------
        >>> dvh = dose_volume_histogram(np.arange(10.0), np.ones(10, bool))
        >>> dvh.metric("V7Gy"), dvh.metric("D50")
        (0.3, 4.5)
        """
        m = _METRIC.match(name.strip())
        if not m:
            raise InputError(f"DVH metric {name!r} is not understood",
                             fix="Use D<percent> (e.g. 'D2', 'D98%') or V<dose>Gy (e.g. 'V20Gy').")
        return self.d(float(m.group(2))) if m.group(1) else self.v(float(m.group(4)))


def _check_dose(dose_gy) -> np.ndarray:
    dose = np.asarray(dose_gy, dtype=float)
    if not np.all(np.isfinite(dose)):
        raise InputError(f"the dose map holds {int((~np.isfinite(dose)).sum())} NaN or infinite voxels",
                         fix="Recompute the dose or set voxels outside the body to 0.")
    return dose


def _voxel_ml(voxel_mm) -> float:
    size = np.asarray(voxel_mm, dtype=float)
    if size.ndim > 1 or size.size not in (1, 3) or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise InputError(f"voxel size {voxel_mm!r} mm is not one or three positive numbers")
    return float(np.prod(np.broadcast_to(size, (3,)))) / 1000.0


def dose_volume_histogram(dose_gy, mask, bins=200, *, voxel_mm=None) -> DVH:
    """Cumulative and differential DVH of the voxels in ``mask``.

    Parameters
    ----------
    dose_gy : array-like
        Dose map, Gy (finite).
    mask : array-like of bool, same shape
        The structure (non-empty).
    bins : int or array-like of float, default=200
        Number of equal bins from ``min(0, min dose)`` to the maximum dose, or increasing bin
        edges in Gy (doses outside them count in the cumulative DVH but not in the differential).
    voxel_mm : float or sequence of 3 float, optional
        Voxel size (mm) to report ``volume_ml``; NaN when not given.

    Returns
    -------
    DVH

    Examples
    --------
    >>> dvh = dose_volume_histogram(np.full((4, 4, 4), 20.0), np.ones((4, 4, 4), bool), bins=4)
    >>> dvh.dose_gy.tolist(), dvh.volume_fraction.tolist()
    ([0.0, 5.0, 10.0, 15.0, 20.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    dose = _check_dose(dose_gy)
    m = np.asarray(mask)
    if m.shape != dose.shape:
        raise GeometryError(f"mask {m.shape} and dose map {dose.shape} are on different grids",
                            fix="Resample the mask onto the dose grid (nearest neighbour).")
    values = np.sort(dose[m.astype(bool)])
    if values.size == 0:
        raise MaskError("the structure's mask is empty", fix="Draw or select a structure with at least one voxel.")
    if np.ndim(bins) == 0:
        if int(bins) < 1:
            raise InputError(f"bins={bins!r} must be at least 1")
        hi = float(values[-1])
        lo = min(0.0, float(values[0]))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or not np.all(np.isfinite(edges)):
            raise InputError("DVH bin edges must be at least two increasing finite doses (Gy)")
    n = values.size
    cumulative = (n - np.searchsorted(values, edges, side="left")) / n
    differential = np.histogram(values, bins=edges)[0] / n
    volume = n * _voxel_ml(voxel_mm) if voxel_mm is not None else float("nan")
    return DVH(edges, cumulative, differential, volume, values)


def organ_dose_table(dose_gy, labels, names: Mapping[int, str], voxel_mm, density_g_ml=None) -> pd.DataFrame:
    """Volume, mass and dose statistics per structure of a label map.

    Parameters
    ----------
    dose_gy : array-like of shape (nx, ny, nz)
        Dose map, Gy (finite).
    labels : array-like of int, same shape
        Label map (0 = background).
    names : mapping of int to str
        Label value to structure name; every listed label must have at least one voxel.
    voxel_mm : float or sequence of 3 float
        Voxel size, mm.
    density_g_ml : array-like, same shape, optional
        Mass density (g/ml). When given, ``mass_g`` is reported and ``mean_gy`` is mass-weighted;
        otherwise ``mass_g`` is NaN and the mean is over volume.

    Returns
    -------
    pandas.DataFrame
        Indexed by structure name, columns ``label, volume_ml, mass_g, mean_gy, median_gy,
        min_gy, max_gy, D2_gy, D98_gy`` (D2/D98 as :meth:`DVH.d`).

    Examples
    --------
    >>> dose = np.arange(8.0).reshape(2, 2, 2); lab = np.ones((2, 2, 2), int); lab[0] = 2
    >>> t = organ_dose_table(dose, lab, {1: "kidney", 2: "tumour"}, 10.0)
    >>> t.loc["kidney", ["volume_ml", "mean_gy", "max_gy"]].tolist()
    [4.0, 5.5, 7.0]
    """
    dose = _check_dose(dose_gy)
    lab = np.asarray(labels)
    if lab.shape != dose.shape:
        raise GeometryError(f"label map {lab.shape} and dose map {dose.shape} are on different grids",
                            fix="Resample the labels onto the dose grid (nearest neighbour).")
    voxel_ml = _voxel_ml(voxel_mm)
    rho = None if density_g_ml is None else check_density(density_g_ml, dose.shape, grid="dose")
    rows = []
    for value, name in names.items():
        mask = lab == value
        if not mask.any():
            raise MaskError(f"structure {name!r} (label {value}) has no voxel in the label map",
                            fix="Check the label values or drop the structure from the names.")
        d = dose[mask]
        dvh = dose_volume_histogram(dose, mask, bins=1)
        if rho is not None:
            m = rho[mask] * voxel_ml
            mass = float(m.sum())
            mean = float((m * d).sum() / mass) if mass > 0 else float(d.mean())
        else:
            mass, mean = float("nan"), float(d.mean())
        rows.append(dict(structure=name, label=value, volume_ml=d.size * voxel_ml, mass_g=mass, mean_gy=mean,
                         median_gy=float(np.median(d)), min_gy=float(d.min()), max_gy=float(d.max()),
                         D2_gy=dvh.d(2), D98_gy=dvh.d(98)))
    return pd.DataFrame(rows).set_index("structure")
