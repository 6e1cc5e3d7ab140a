r"""Voxel S-value (VSV) convolution: absorbed dose from a time-integrated activity map.

MIRD Pamphlet 17 [1]_ writes the mean absorbed dose to a target voxel :math:`k` as the sum over
source voxels :math:`h` of the time-integrated activity times the voxel S-value of their
offset,

.. math::

    D_k = \sum_h \tilde A_h \, S(k \leftarrow h), \qquad
    D = \tilde A \circledast S,

a 3-D convolution when :math:`S` depends only on the offset (a homogeneous medium).
:math:`S` comes from :func:`core.dosimetry.voxel_s_values` as one octant (index ``[0, 0, 0]`` is
the source voxel, mGy per MBq s, soft tissue); the full kernel follows by mirror symmetry in
the three axes (:func:`full_kernel`). Units: :math:`\tilde A` in MBq h is turned into MBq s
(:math:`\times 3600`) and mGy into Gy (:math:`\times 10^{-3}`).

The convolution is computed by FFT (``scipy.signal.fftconvolve``, or ``torch.fft`` on
:func:`core.config.device`) with zero padding to the linear-convolution size, so no activity
wraps around the map edges; activity outside the map is taken as zero and energy that would
be deposited outside it is lost. ``method="direct"`` sums the kernel directly
(``scipy.ndimage.convolve`` with zero boundary), slow but obviously right, for tests and
small maps.

Heterogeneous tissue
--------------------
The kernel is for soft tissue of density :math:`\rho_{ref}` (ICRU soft tissue, 1.04 g/ml by
default). ``density_correction="mass"`` scales the dose by the ratio of densities,

.. math::

    D_k^{\rho} = D_k \, \frac{\rho_{ref}}{\rho_k},

which keeps the energy deposited in each voxel (dose times mass) equal to the homogeneous
one; it is the simplest and the most common heterogeneity correction of VSV dosimetry, among
those compared by Dieudonné et al. [2]_ (it ignores that particles travel farther in lung
and less far in bone). ``"none"`` leaves the dose of soft tissue. In both, voxels with density
below 0.01 g/ml (air, the same threshold as :mod:`core.dosimetry.local`) get dose 0
(this work).

References
----------
.. [1] Bolch WE, Bouchet LG, Robertson JS, et al. MIRD Pamphlet No. 17: the dosimetry of
   nonuniform activity distributions--radionuclide S values at the voxel level. J Nucl Med
   1999;40:11S-36S.
.. [2] Dieudonné A, Hobbs RF, Lebtahi R, et al. Study of the impact of tissue density
   heterogeneities on 3-dimensional abdominal dosimetry: comparison between dose kernel
   convolution and direct Monte Carlo methods. J Nucl Med 2013;54:236-243.
"""

from __future__ import annotations

import numpy as np

from core.dosimetry.checks import check_density
from core.errors import GeometryError, InputError

__all__ = ["full_kernel", "vsv_dose", "AIR_DENSITY_G_ML", "SOFT_TISSUE_DENSITY_G_ML"]

#: Voxels below this density (g/ml) are air and get dose 0 (this work; as core.dosimetry.local).
AIR_DENSITY_G_ML = 0.01
#: ICRU soft tissue density (g/ml), the default reference density of the kernels.
SOFT_TISSUE_DENSITY_G_ML = 1.04

_SECONDS_PER_HOUR = 3600.0
_GY_PER_MGY = 1e-3
_METHODS = ("fft", "torch", "direct")
_CORRECTIONS = ("none", "mass")


def _check_octant(octant) -> np.ndarray:
    k = np.asarray(octant, dtype=float)
    if k.ndim != 3 or min(k.shape) < 1:
        raise InputError(f"the S-value kernel has shape {k.shape}, not one 3-D octant",
                         fix="Pass the octant from core.dosimetry.voxel_s_values (index [0, 0, 0] = source voxel).")
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise InputError("the S-value kernel holds negative or non-finite values",
                         fix="Recompute it with core.dosimetry.voxel_s_values.")
    return k


def full_kernel(octant) -> np.ndarray:
    """The full 3-D kernel from one octant by mirror symmetry in the three axes.

    Parameters
    ----------
    octant : array-like of shape (a, b, c)
        S-values with the source voxel at ``[0, 0, 0]`` (any unit; usually mGy per MBq s).

    Returns
    -------
    ndarray of shape (2a-1, 2b-1, 2c-1)
        ``full[a-1+i, b-1+j, c-1+k] = octant[|i|, |j|, |k|]``; the source voxel is the centre.

    Examples
    --------
    >>> k = full_kernel(np.arange(8.0).reshape(2, 2, 2))
    >>> k.shape, k[1, 1, 1].item(), k[0, 1, 1].item(), k[2, 1, 1].item()
    ((3, 3, 3), 0.0, 4.0, 4.0)
    """
    k = _check_octant(octant)
    for axis in range(3):
        mirrored = np.flip(np.take(k, np.arange(1, k.shape[axis]), axis=axis), axis=axis)
        k = np.concatenate([mirrored, k], axis=axis)
    return np.ascontiguousarray(k)


def _voxel3(voxel_mm, what: str) -> np.ndarray:
    size = np.broadcast_to(np.asarray(voxel_mm, dtype=float), (3,)) if np.ndim(voxel_mm) <= 1 else None
    if size is None or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise InputError(f"{what} {voxel_mm!r} mm is not one or three positive numbers")
    return size


def _convolve_fft_torch(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    import torch

    from core.config import device

    dev = device()
    full = [n + m - 1 for n, m in zip(a.shape, k.shape)]
    ta = torch.as_tensor(a, dtype=torch.float64, device=dev)
    tk = torch.as_tensor(k, dtype=torch.float64, device=dev)
    out = torch.fft.irfftn(torch.fft.rfftn(ta, s=full) * torch.fft.rfftn(tk, s=full), s=full)
    start = [(m - 1) // 2 for m in k.shape]
    out = out[tuple(slice(s, s + n) for s, n in zip(start, a.shape))]
    return out.cpu().numpy()


def _convolve(a: np.ndarray, k: np.ndarray, method: str) -> np.ndarray:
    if method == "fft":
        from scipy.signal import fftconvolve

        return fftconvolve(a, k, mode="same")
    if method == "torch":
        return _convolve_fft_torch(a, k)
    from scipy.ndimage import convolve

    return convolve(a, k, mode="constant", cval=0.0)


def vsv_dose(tia_mbq_h, kernel_octant, density_g_ml=None, *, voxel_mm=None, kernel_voxel_mm=None,
             method: str = "fft", density_correction: str = "mass",
             reference_density: float = SOFT_TISSUE_DENSITY_G_ML) -> np.ndarray:
    r"""Absorbed dose (Gy) per voxel by voxel S-value convolution (module docstring).

    .. math::

        D = 10^{-3}\, \bigl(3600\,\tilde A \circledast S\bigr)\;
        \bigl[\times\,\rho_{ref}/\rho \text{ for } \texttt{"mass"}\bigr]

    Parameters
    ----------
    tia_mbq_h : array-like of shape (nx, ny, nz)
        Time-integrated activity per voxel, MBq h (finite, >= 0).
    kernel_octant : array-like of shape (a, b, c)
        One octant of voxel S-values, mGy per (MBq s), source voxel at ``[0, 0, 0]``
        (:func:`core.dosimetry.voxel_s_values`).
    density_g_ml : array-like of shape (nx, ny, nz) or None, default=None
        Mass density per voxel (g/ml) from the CT. ``None``: homogeneous soft tissue, no
        correction and no air mask.
    voxel_mm : float or sequence of 3 float, optional
        Voxel size of the activity map, mm. Checked against ``kernel_voxel_mm`` when both are
        given.
    kernel_voxel_mm : float or sequence of 3 float, optional
        Voxel size the kernel was computed for, mm. Raises :class:`InputError` when it differs
        from ``voxel_mm`` by more than 1 % on any axis.
    method : {"fft", "torch", "direct"}, default="fft"
        ``"fft"``: ``scipy.signal.fftconvolve``; ``"torch"``: ``torch.fft`` on
        :func:`core.config.device` (float64); ``"direct"``: ``scipy.ndimage.convolve``.
    density_correction : {"mass", "none"}, default="mass"
        ``"mass"`` scales by ``reference_density / density`` (ignored when ``density_g_ml``
        is None).
    reference_density : float, default=1.04
        Density (g/ml) of the medium the kernel was computed in.

    Returns
    -------
    ndarray of float64, shape (nx, ny, nz)
        Gy per voxel; 0 where the density is below 0.01 g/ml.

    References
    ----------
    Bolch et al. 1999 (MIRD 17); Dieudonné et al. 2013 (module docstring).

    Examples
    --------
    >>> tia = np.zeros((5, 5, 5)); tia[2, 2, 2] = 1.0           # 1 MBq h in one voxel
    >>> octant = np.array([[[1.0, 0.1], [0.1, 0.0]], [[0.1, 0.0], [0.0, 0.0]]])  # mGy/(MBq s)
    >>> d = vsv_dose(tia, octant)
    >>> round(float(d[2, 2, 2]), 6), round(float(d[1, 2, 2]), 6)   # 3600 MBq s x S x 1e-3
    (3.6, 0.36)
    """
    if method not in _METHODS:
        raise InputError(f"convolution method {method!r} is not one of {_METHODS}")
    if density_correction not in _CORRECTIONS:
        raise InputError(f"density correction {density_correction!r} is not one of {_CORRECTIONS}")
    if not (np.isfinite(reference_density) and reference_density > 0):
        raise InputError(f"reference density {reference_density!r} g/ml is not positive")
    tia = np.asarray(tia_mbq_h, dtype=float)
    if tia.ndim != 3:
        raise InputError(f"the time-integrated activity map has shape {tia.shape}, not 3-D")
    if not np.all(np.isfinite(tia)) or np.any(tia < 0):
        raise InputError("the time-integrated activity holds negative or non-finite voxels",
                         fix="Compute it with core.dosimetry.tia and mask invalid voxels.")
    octant = _check_octant(kernel_octant)
    if voxel_mm is not None and kernel_voxel_mm is not None:
        map_size, kernel_size = _voxel3(voxel_mm, "voxel size"), _voxel3(kernel_voxel_mm, "kernel voxel size")
        if np.any(np.abs(map_size / kernel_size - 1.0) > 0.01):
            raise GeometryError(
                f"the activity map has voxels of {tuple(map_size.round(4))} mm but the kernel was computed for "
                f"{tuple(kernel_size.round(4))} mm (more than 1 % apart)",
                fix="Compute the kernel for the map's voxel size (voxel_s_values(nuclide, voxel_mm)) "
                    "or resample the map onto the kernel's voxel size.")
    rho = None if density_g_ml is None else check_density(density_g_ml, tia.shape)

    dose = _convolve(tia * _SECONDS_PER_HOUR, full_kernel(octant), method) * _GY_PER_MGY
    np.maximum(dose, 0.0, out=dose)  # FFT round-off leaves tiny negatives far from any activity
    if rho is not None:
        air = rho < AIR_DENSITY_G_ML
        if density_correction == "mass":
            dose = dose * (reference_density / np.where(air, 1.0, rho))
        dose[air] = 0.0
    return dose
