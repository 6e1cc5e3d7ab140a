r"""Tissue materials and the CT calibration (HU to mass density and material) for Monte Carlo dosimetry.

Materials
---------
Five tissue materials, :data:`MATERIALS` (``"air"``, ``"lung"``, ``"adipose"``, ``"soft tissue"``,
``"bone"``), plus ``"water"`` and ``"icru soft tissue"`` for kernels, each with the elemental mass
fractions and nominal density of xraylib's NIST compound catalogue [4]_ (``"Air, Dry (near sea level)"``,
``"Lung (ICRP)"``, ``"Adipose Tissue (ICRP)"``, ``"Tissue, Soft (ICRP)"``, ``"Bone, Cortical (ICRP)"``,
``"Water, Liquid"``, ``"Tissue, Soft (ICRU four-component)"``). Nothing is typed by hand. The material
index of a voxel only selects the *composition* (it matters for the photoelectric effect below about
100 keV); the voxel's *density* comes from the CT calibration, so a lung voxel at -700 HU has the ICRP
lung composition at about 0.3 g/cm^3 (the catalogue's 1.05 g/cm^3 is that of lung tissue, not of
inflated lung).

HU to density
-------------
A bilinear air-water-bone curve (this work, in the spirit of the stoichiometric calibration of
Schneider, Pedroni & Lomax [1]_ but with two segments):

.. math::

    \rho(H) = \begin{cases}
        \rho_w + (\rho_w - \rho_a)\,H/1000, & H \le 0,\\
        \rho_w + (\rho_b - \rho_w)\,H/H_b, & H > 0,
    \end{cases}

with :math:`\rho_a` = 0.001205, :math:`\rho_w` = 1 and :math:`\rho_b` = 1.85 g/cm^3 (catalogue
densities of air, water and ICRP cortical bone). The bone node :math:`H_b` is *computed*, not
assumed: the CT number of cortical bone at an effective CT energy of 70 keV (this work; a 120 kVp
spectrum has a mean energy of roughly 60-70 keV), :math:`H_b = 1000(\mu_b/\mu_w - 1)` with linear
attenuation coefficients from xraydb [3]_; it comes out near 1400 HU, as measured cortical bone does
at 120 kVp. HU is clipped to [-1000, 3000] before the curve, so padding values outside the field of
view (-2048, -3024) read as air and metal does not give absurd densities (3000 HU -> about 2.9 g/cm^3).

HU to material
--------------
Thresholds (this work), placed like the coarse tissue bins of Schneider, Bortfeld & Schlegel [2]_:

============  ===================  ==========================================================
index, name   HU range             rationale
============  ===================  ==========================================================
0 air         H < -950             air and the body's outside
1 lung        -950 <= H < -120     inflated lung down to the fat range
2 adipose     -120 <= H < -20      fat
3 soft tissue -20 <= H < 120       muscle, organs, blood, contrast-free soft tissue
4 bone        H >= 120             bone and bone/soft-tissue mixtures (composition of cortical bone)
============  ===================  ==========================================================

References
----------
.. [1] Schneider U, Pedroni E, Lomax A. The calibration of CT Hounsfield units for radiotherapy
   treatment planning. Phys Med Biol 1996;41:111-124.
.. [2] Schneider W, Bortfeld T, Schlegel W. Correlation between CT numbers and tissue parameters needed
   for Monte Carlo simulations of clinical dose distributions. Phys Med Biol 2000;45:459-478.
.. [3] xraydb: X-ray reference data (Elam, Ravel & Sieber 2002 tables), https://xraypy.github.io/XrayDB/
.. [4] Schoonjans T et al. The xraylib library for X-ray-matter interactions. Recent developments.
   Spectrochim Acta B 2011;66:776-784 (NIST compound catalogue).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from core.errors import InputError

__all__ = ["MATERIALS", "KERNEL_MATERIALS", "NIST_NAMES", "HU_THRESHOLDS", "Material", "material",
           "bone_node_hu", "hu_to_density", "hu_to_material", "material_maps", "AIR_DENSITY_G_CM3",
           "HU_CLIP"]

#: Tissue materials indexed by :func:`hu_to_material` (index = position in the tuple).
MATERIALS = ("air", "lung", "adipose", "soft tissue", "bone")
#: Extra materials for kernels and tests (not produced by the CT calibration).
KERNEL_MATERIALS = ("water", "icru soft tissue")
#: Our name -> xraylib NIST compound name.
NIST_NAMES = {
    "air": "Air, Dry (near sea level)",
    "lung": "Lung (ICRP)",
    "adipose": "Adipose Tissue (ICRP)",
    "soft tissue": "Tissue, Soft (ICRP)",
    "bone": "Bone, Cortical (ICRP)",
    "water": "Water, Liquid",
    "icru soft tissue": "Tissue, Soft (ICRU four-component)",
}
#: Lower HU bound of materials 1..4 (lung, adipose, soft tissue, bone); see the module docstring.
HU_THRESHOLDS = (-950.0, -120.0, -20.0, 120.0)
#: HU clip applied before the density curve.
HU_CLIP = (-1000.0, 3000.0)
#: Effective CT energy used to place the bone node of the density curve (this work), keV.
CT_EFFECTIVE_KEV = 70.0


@dataclass(frozen=True)
class Material:
    """Composition of one material.

    Attributes
    ----------
    name : str
        Our name (``"soft tissue"``).
    nist_name : str
        xraylib NIST catalogue name.
    density_g_cm3 : float
        Nominal density of the catalogue, g/cm^3.
    z : tuple of int
        Atomic numbers of the elements.
    mass_fractions : tuple of float
        Mass fraction of each element (sum 1).
    """

    name: str
    nist_name: str
    density_g_cm3: float
    z: tuple
    mass_fractions: tuple


@lru_cache(maxsize=None)
def material(name: str) -> Material:
    """Composition and nominal density of a named material, from xraylib's NIST catalogue.

    Parameters
    ----------
    name : str
        One of :data:`MATERIALS` or :data:`KERNEL_MATERIALS` (case-insensitive).

    Returns
    -------
    Material

    Examples
    --------
    >>> m = material("water")
    >>> m.z, round(m.density_g_cm3, 3)
    ((1, 8), 1.0)
    """
    import xraylib

    key = str(name).strip().lower()
    if key not in NIST_NAMES:
        raise InputError(f"unknown material {name!r}", fix=f"Use one of {sorted(NIST_NAMES)}.")
    data = xraylib.GetCompoundDataNISTByName(NIST_NAMES[key])
    z = tuple(int(v) for v in data["Elements"])
    w = np.asarray(data["massFractions"], float)
    keep = w > 0
    w = w[keep] / w[keep].sum()
    z = tuple(zi for zi, k in zip(z, keep) if k)
    return Material(key, NIST_NAMES[key], float(data["density"]), z, tuple(float(v) for v in w))


#: Density of dry air (xraylib NIST catalogue), g/cm^3: the lower clip of :func:`hu_to_density`.
AIR_DENSITY_G_CM3 = 0.001205
_WATER_G_CM3 = 1.0


@lru_cache(maxsize=None)
def bone_node_hu() -> float:
    """CT number of ICRP cortical bone at the effective CT energy (70 keV, this work), HU.

    :math:`H_b = 1000\\,(\\rho_b (\\mu/\\rho)_b / \\rho_w (\\mu/\\rho)_w - 1)` with total mass attenuation
    coefficients from xraydb's Elam tables mixed by mass fraction.

    Examples
    --------
    >>> 1200 < bone_node_hu() < 1700
    True
    """
    import xraydb

    def mu_rho(mat: Material) -> float:
        e_ev = CT_EFFECTIVE_KEV * 1e3
        return float(sum(w * xraydb.mu_elam(int(z), e_ev) for z, w in zip(mat.z, mat.mass_fractions)))

    bone, water = material("bone"), material("water")
    return 1000.0 * (bone.density_g_cm3 * mu_rho(bone) / (water.density_g_cm3 * mu_rho(water)) - 1.0)


def _bone_density() -> float:
    return material("bone").density_g_cm3


def hu_to_density(hu) -> np.ndarray:
    """Mass density (g/cm^3) from CT numbers by the bilinear air-water-bone curve (module docstring).

    Parameters
    ----------
    hu : array-like
        CT numbers, HU (rescaled: water 0, air -1000). Clipped to :data:`HU_CLIP` first.

    Returns
    -------
    ndarray of float64
        Density, g/cm^3, monotone non-decreasing in HU, 0.001205 at -1000 HU, 1.0 at 0 HU,
        1.85 (cortical bone) at :func:`bone_node_hu`.

    References
    ----------
    .. [1] Schneider U, Pedroni E, Lomax A. Phys Med Biol 1996;41:111-124.

    Examples
    --------
    >>> hu_to_density([-1000, 0]).round(6).tolist()
    [0.001205, 1.0]
    """
    h = np.clip(np.asarray(hu, float), *HU_CLIP)
    low = _WATER_G_CM3 + (_WATER_G_CM3 - AIR_DENSITY_G_CM3) * h / 1000.0
    high = _WATER_G_CM3 + (_bone_density() - _WATER_G_CM3) * h / bone_node_hu()
    return np.where(h <= 0, low, high)


def hu_to_material(hu) -> np.ndarray:
    """Material index into :data:`MATERIALS` from CT numbers by the thresholds :data:`HU_THRESHOLDS`.

    Parameters
    ----------
    hu : array-like
        CT numbers, HU.

    Returns
    -------
    ndarray of int64
        0 air, 1 lung, 2 adipose, 3 soft tissue, 4 bone.

    References
    ----------
    .. [1] Schneider W, Bortfeld T, Schlegel W. Phys Med Biol 2000;45:459-478.

    Examples
    --------
    >>> hu_to_material([-1000, -700, -80, 40, 1000]).tolist()
    [0, 1, 2, 3, 4]
    """
    h = np.asarray(hu, float)
    return np.searchsorted(np.asarray(HU_THRESHOLDS), h, side="right").astype(np.int64)


def material_maps(ct_hu) -> tuple[np.ndarray, np.ndarray]:
    """Density and material maps of a CT in HU, checked for the usual mistakes.

    Parameters
    ----------
    ct_hu : ndarray or Volume
        CT numbers in HU (a :class:`core.imaging.volume.Volume` is read from ``.data``).

    Returns
    -------
    density : ndarray of float32
        g/cm^3 (:func:`hu_to_density`).
    material : ndarray of int64
        Index into :data:`MATERIALS` (:func:`hu_to_material`).

    Raises
    ------
    InputError
        NaN or infinite voxels; values outside -10000..30000 HU; a CT whose values all lie in
        0..4095 and span more than 500 (stored pixel values: air reads about 0 and water 1024; a
        rescaled CT with air, lung or fat anywhere has negative values).

    Examples
    --------
    >>> rho, mat = material_maps(np.array([[[-1000.0, 0.0]]]))
    >>> rho.dtype.name, mat.tolist()
    ('float32', [[[0, 3]]])
    """
    data = getattr(ct_hu, "data", ct_hu)
    h = np.asarray(data, float)
    if h.size == 0:
        raise InputError("the CT is empty", fix="Load a CT volume with voxels.")
    if not np.all(np.isfinite(h)):
        raise InputError(f"the CT holds {int(np.sum(~np.isfinite(h)))} NaN or infinite voxels",
                         fix="Mask or fill them (e.g. with -1000 HU, air) before dosimetry.")
    lo, hi = float(h.min()), float(h.max())
    if lo < -10000 or hi > 30000:
        raise InputError(f"CT values {lo:g}..{hi:g} are not Hounsfield units",
                         fix="Load the CT in HU (water 0, air -1000).")
    if lo >= 0 and hi <= 4095 and hi - lo > 500:
        raise InputError(f"CT values {lo:g}..{hi:g} are all positive and look like stored pixel values, not HU",
                         fix="Apply the DICOM RescaleSlope and RescaleIntercept (HU = slope * value + "
                             "intercept, usually intercept -1024).")
    return hu_to_density(h).astype(np.float32), hu_to_material(h)
