r"""Voxel S-values of the project's own Monte Carlo, cached in ``assets/kernels``.

A voxel S-value :math:`S(\mathbf{v}_k \leftarrow \mathbf{v}_0)` is the mean absorbed dose to a
target voxel per decay in a cubic source voxel of the same size, in an infinite homogeneous medium
(MIRD Pamphlet 17, Bolch et al. 1999). Here it is computed by :func:`core.dosimetry.montecarlo.
monte_carlo_dose` with a uniform source in the central voxel of a soft-tissue cube at least
30 cm wide (so that photons scattered back from afar count, as in an infinite medium), electrons
always transported (they cross the faces of voxels of a few millimetres), alphas and recoils
deposited locally. The energy imparted is folded into one octant by the cube's symmetry: the 8
mirror images and the 6 permutations of the axes are averaged, which divides the variance by up
to 48 away from the symmetry planes.

The medium is the ICRP soft tissue composition of the NIST catalogue at 1.04 g/cm³, the density
of the soft tissue used for the published tables of Lanconelli et al. (2012), so that the values
compare directly. Units: mGy per MBq s, index ``[0, 0, 0]`` the source voxel.

References
----------
.. [1] Bolch WE, Bouchet LG, Robertson JS, et al. MIRD Pamphlet No. 17: the dosimetry of
   nonuniform activity distributions - radionuclide S values at the voxel level. J Nucl Med
   1999;40:11S-36S.
.. [2] Lanconelli N, Pacilio M, Lo Meo S, et al. A free database of radionuclide voxel S values for
   the dosimetry of nonuniform activity distributions. Phys Med Biol 2012;57:517-533.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.dosimetry.nuclides import canonical_name
from core.errors import InputError

__all__ = ["VSVKernel", "voxel_s_values", "compute_voxel_s_values", "fold_octant", "kernel_path",
           "SHIPPED_KERNELS", "KERNEL_DENSITY_G_ML"]

#: Where shipped kernels live (computed by ``python -m core kernels``).
SHIPPED_KERNELS = Path(__file__).resolve().parents[2] / "assets" / "kernels"
#: Density of the kernel medium, g/cm^3 (soft tissue as in Lanconelli et al. 2012).
KERNEL_DENSITY_G_ML = 1.04
_MIN_HALF_WIDTH_MM = 150.0
#: Bremsstrahlung photons per radiative event in kernel runs: they alone reach the far voxels of
#: pure beta emitters such as 90Y (this work).
_BREMS_SPLIT = 16
#: Version of the kernel physics; cached kernels of another version are recomputed
#: (2: class-II electrons with delta rays and bremsstrahlung).
_FORMAT = 2


@dataclass(frozen=True)
class VSVKernel:
    """One octant of voxel S-values with its provenance.

    Attributes
    ----------
    nuclide : str
    voxel_mm : float
    octant : ndarray (size, size, size)
        mGy per MBq s; ``[0, 0, 0]`` is the source voxel.
    rel_uncertainty : ndarray (size, size, size)
        One standard deviation over the value (after folding).
    meta : dict
        Histories, medium, density, time, format version.
    """

    nuclide: str
    voxel_mm: float
    octant: np.ndarray
    rel_uncertainty: np.ndarray
    meta: dict = field(default_factory=dict)


def kernel_path(nuclide: str, voxel_mm: float, size: int, folder: Path | None = None) -> Path:
    """The cache file of one kernel: ``<folder>/<Nuclide>_<voxel>mm_<size>.npz``."""
    folder = SHIPPED_KERNELS if folder is None else Path(folder)
    return folder / f"{canonical_name(nuclide)}_{float(voxel_mm):.3f}mm_{int(size)}.npz"


def _user_cache() -> Path:
    from core import config

    return config.data_dir() / "kernels"


def fold_octant(cube: np.ndarray, size: int) -> np.ndarray:
    """Average a centred cube of odd side over its 8 mirror images and 6 axis permutations.

    Parameters
    ----------
    cube : ndarray (n, n, n), n odd and >= 2*size-1
        Values around the central voxel ``cube[c, c, c]``.
    size : int

    Returns
    -------
    ndarray (size, size, size)

    Examples
    --------
    >>> cube = np.zeros((5, 5, 5)); cube[2, 2, 3] = 6.0
    >>> float(fold_octant(cube, 2)[0, 0, 1]), float(fold_octant(cube, 2)[1, 0, 0])   # 6 face neighbours
    (1.0, 1.0)
    """
    n = cube.shape[0]
    if cube.shape != (n, n, n) or n % 2 == 0 or n < 2 * size - 1:
        raise InputError(f"cannot fold a cube of shape {cube.shape} into an octant of side {size}")
    c = n // 2
    core = cube[c - size + 1:c + size, c - size + 1:c + size, c - size + 1:c + size]
    mirrored = sum(core[tuple(slice(None, None, s) for s in signs)]
                   for signs in itertools.product((1, -1), repeat=3)) / 8.0
    octant = mirrored[size - 1:, size - 1:, size - 1:]
    return sum(np.transpose(octant, p) for p in itertools.permutations(range(3))) / 6.0


def compute_voxel_s_values(nuclide: str, voxel_mm: float, size: int = 6, *, n_photons: int = 2_000_000,
                           n_electrons: int = 1_000_000, n_batches: int = 10, seed: int = 0, device=None,
                           progress=None) -> VSVKernel:
    """Run the Monte Carlo for one kernel (module docstring); nothing is cached here."""
    from core.dosimetry import materials as mat
    from core.dosimetry.montecarlo import monte_carlo_dose

    voxel_mm = float(voxel_mm)
    if not (math.isfinite(voxel_mm) and 0.1 <= voxel_mm <= 20.0):
        raise InputError(f"voxel size {voxel_mm!r} mm is outside 0.1-20 mm")
    if not 1 <= int(size) <= 32:
        raise InputError(f"kernel size {size!r} is outside 1-32 voxels")
    half = max(int(size) + 1, int(math.ceil(_MIN_HALF_WIDTH_MM / voxel_mm)))
    n = 2 * half + 1
    tia = np.zeros((n, n, n))
    tia[half, half, half] = 1.0                        # 1 MBq h in the source voxel
    tissue = mat.MATERIALS.index("soft tissue")
    result = monte_carlo_dose(tia, nuclide, KERNEL_DENSITY_G_ML, tissue, voxel_mm, n_photons=n_photons,
                              n_electrons=n_electrons, n_batches=n_batches, electrons="transport",
                              electron_range_fraction=0.0, brems_split=_BREMS_SPLIT, seed=seed,
                              device=device, progress=progress)
    to_mgy_per_mbq_s = 1000.0 / 3600.0
    octant = fold_octant(result.dose_gy, size) * to_mgy_per_mbq_s
    sigma = fold_octant((result.rel_uncertainty * result.dose_gy) ** 2, size)
    # folding averages up to 48 images: the variance of the mean shrinks by the number of distinct images
    images = _image_counts(size)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(octant > 0, np.sqrt(sigma / images) * to_mgy_per_mbq_s / octant, 0.0)
    meta = {"format": _FORMAT, "nuclide": canonical_name(nuclide), "voxel_mm": voxel_mm, "size": int(size),
            "medium": "soft tissue (ICRP, NIST composition)", "density_g_cm3": KERNEL_DENSITY_G_ML,
            "grid_voxels": n, "histories": result.histories, "batches": n_batches, "seed": seed,
            "time_s": round(result.time_s, 1), "device": result.device, "energy_mev": result.energy_mev,
            "units": "mGy/(MBq s)"}
    return VSVKernel(canonical_name(nuclide), voxel_mm, octant, rel, meta)


def _image_counts(size: int) -> np.ndarray:
    """How many distinct voxels of the full cube map onto each octant voxel (1 to 48)."""
    full = np.zeros((2 * size - 1,) * 3)
    idx = np.indices(full.shape) - (size - 1)
    key = np.sort(np.abs(idx), axis=0)
    counts = np.zeros((size, size, size))
    for a, b, c in itertools.product(range(size), repeat=3):
        s = sorted((a, b, c))
        counts[a, b, c] = np.sum((key[0] == s[0]) & (key[1] == s[1]) & (key[2] == s[2]))
    return counts


def save_kernel(kernel: VSVKernel, path: Path) -> Path:
    """Write a kernel atomically (temporary file then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.part")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, octant=kernel.octant, rel_uncertainty=kernel.rel_uncertainty,
                                meta=np.array(json.dumps(kernel.meta)))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_kernel(path: Path) -> VSVKernel:
    """Read a kernel written by :func:`save_kernel`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return VSVKernel(meta["nuclide"], float(meta["voxel_mm"]), z["octant"], z["rel_uncertainty"], meta)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"the kernel file is unreadable ({exc})", path=path,
                         fix="Delete it; it is recomputed on the next request.") from exc


def voxel_kernel(nuclide: str, voxel_mm: float, size: int = 6, *, compute: bool = True, **mc_options) -> VSVKernel:
    """The kernel with provenance: shipped, else cached in the data folder, else computed and cached."""
    for folder in (SHIPPED_KERNELS, _user_cache()):
        path = kernel_path(nuclide, voxel_mm, size, folder)
        if path.exists():
            kernel = load_kernel(path)
            if kernel.meta.get("format") == _FORMAT:     # older physics: recompute
                return kernel
    if not compute:
        raise InputError(f"no kernel for {canonical_name(nuclide)} at {voxel_mm} mm is cached",
                         fix="Compute it with `python -m core kernels`.")
    kernel = compute_voxel_s_values(nuclide, voxel_mm, size, **mc_options)
    save_kernel(kernel, kernel_path(nuclide, voxel_mm, size, _user_cache()))
    return kernel


def voxel_s_values(nuclide: str, voxel_mm: float, size: int = 6) -> np.ndarray:
    """Voxel S-values (mGy per MBq s) of a cubic source voxel in soft tissue, one octant.

    Parameters
    ----------
    nuclide : str
        ``"Lu-177"``, ``"Y-90"``, ``"I-131"``, ``"Ac-225"`` (with its progeny in equilibrium) ...
    voxel_mm : float
        Side of the cubic voxel, mm.
    size : int, default=6
        Octant side in voxels.

    Returns
    -------
    ndarray of shape (size, size, size)
        ``[0, 0, 0]`` the source voxel, ``[i, j, k]`` the voxel ``i, j, k`` voxels away.

    Examples
    --------
    >>> s = voxel_s_values("Lu-177", 4.8)          # shipped in assets/kernels
    >>> s.shape
    (6, 6, 6)
    """
    return voxel_kernel(nuclide, voxel_mm, size).octant.copy()
