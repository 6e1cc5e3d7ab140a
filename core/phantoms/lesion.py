r"""Geometry of a treated glioma lesion on the 2 mm MNI grid.

A lesion is an irregular blob: a sum of 3-7 random Gaussians (spread 0.5 r, widths
0.4-0.75 r) multiplied by a log-normal smooth noise field, thresholded at the level that
gives the drawn volume, restricted to parenchyma of one hemisphere (at least 3 mm from
the mid-sagittal plane, at least 4 mm from the striatum), kept as its largest connected
component with holes filled. This is how lesion masks are synthesised in simulation
studies of PET segmentation (irregular, non-spherical, infiltrative borders); sizes
follow recurrent high-grade glioma series, equivalent radius 9-20 mm (3-34 ml).

Sub-structures:

* necrotic core: voxels deeper than 45-60 % of the lesion's maximal depth, with an
  irregular border (radiation necrosis and recurrent glioblastoma both have necrotic
  cores; ring enhancement is common to both, the clinical problem this cohort poses);
* aggressive sub-region: a compact part (20-40 % of the viable lesion, at least 1.5 ml
  where possible) around a high-uptake point, standing for a focus of higher grade;
* uptake texture: a smooth log-normal field (3 mm correlation, 15-30 % SD) that scales
  the local density of tracer-avid tissue;
* contrast enhancement pattern for T1c: ``"rim"``, ``"solid"`` or ``"patchy"``
  (soap-bubble); vasogenic oedema spreads through white matter with an exponential
  fall-off of 5-25 mm.

Positions are drawn where gliomas arise: hemispheric white matter and cortex at least
12 mm deep, 18 mm or more lateral, axial level -15 to +55 mm (supratentorial), and
clear of the striatum by the lesion radius plus 6 mm.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.phantoms.anatomy import Anatomy

__all__ = ["Lesion", "make_lesion", "ENHANCEMENT_PATTERNS"]

ENHANCEMENT_PATTERNS = ("rim", "solid", "patchy")


@dataclass(frozen=True, eq=False)
class Lesion:
    """A lesion on the anatomy grid (all arrays share the anatomy's shape).

    Attributes
    ----------
    mask : ndarray of bool
        Whole lesion, necrotic core included.
    necrosis : ndarray of bool
        Necrotic core (may be empty).
    aggressive : ndarray of bool or None
        Aggressive sub-region inside the viable lesion, or None.
    texture : ndarray of float32
        Multiplicative uptake modulation, mean about 1 over the lesion, 1 elsewhere.
    enhancement : ndarray of float32
        Contrast enhancement in [0, 1] for T1c.
    oedema : ndarray of float32
        Vasogenic oedema in [0, 1] around the lesion.
    centre_mm : tuple of float
        Seed point (RAS mm).
    hemisphere : str
        ``"left"`` or ``"right"``.
    """

    mask: np.ndarray
    necrosis: np.ndarray
    aggressive: np.ndarray | None
    texture: np.ndarray
    enhancement: np.ndarray
    oedema: np.ndarray
    centre_mm: tuple[float, float, float]
    hemisphere: str
    voxel_volume_ml: float

    @property
    def viable(self) -> np.ndarray:
        return self.mask & ~self.necrosis

    @property
    def volume_ml(self) -> float:
        return float(self.mask.sum()) * self.voxel_volume_ml

    @property
    def aggressive_volume_ml(self) -> float:
        return 0.0 if self.aggressive is None else float(self.aggressive.sum()) * self.voxel_volume_ml

    @property
    def necrosis_volume_ml(self) -> float:
        return float(self.necrosis.sum()) * self.voxel_volume_ml


@functools.lru_cache(maxsize=2)
def _maps(anatomy: Anatomy):
    f = anatomy.fractions
    vox = anatomy.voxel_size_mm
    parenchyma = (f["grey_matter"] + f["white_matter"]) >= 0.5
    striatum = (f["caudate"] + f["putamen"]) > 0.0
    striatum_mm = ndimage.distance_transform_edt(~striatum) * vox
    x, y, z = anatomy.coordinates_mm()
    return parenchyma, striatum_mm.astype(np.float32), x, y, z


def _smooth_noise(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    """Gaussian random field of unit SD and correlation ``sigma_vox``."""
    white = rng.standard_normal(shape).astype(np.float32)
    field = ndimage.gaussian_filter(white, sigma_vox, mode="reflect")
    sd = float(field.std())
    return field / sd if sd > 0 else field


def _box(centre_ijk, half: int, shape) -> tuple[slice, slice, slice]:
    return tuple(slice(max(0, c - half), min(n, c + half + 1)) for c, n in zip(centre_ijk, shape))


def make_lesion(
    anatomy: Anatomy,
    rng: np.random.Generator,
    *,
    radius_mm: float,
    necrotic: bool,
    aggressive: bool,
    enhancement_pattern: str,
    oedema_mm: float,
    hemisphere: str | None = None,
) -> Lesion:
    """Draw one lesion (see module docstring for the recipe).

    Parameters
    ----------
    anatomy : Anatomy
    rng : numpy.random.Generator
        The patient's generator; the lesion consumes a fixed sequence of draws.
    radius_mm : float
        Equivalent-sphere radius of the target volume.
    necrotic, aggressive : bool
        Whether to carve a necrotic core and an aggressive sub-region.
    enhancement_pattern : {"rim", "solid", "patchy"}
    oedema_mm : float
        e-folding distance of the surrounding oedema.
    hemisphere : {"left", "right"}, optional
        The patient's side (RAS+: left is +x); drawn at random when omitted.
    """
    if enhancement_pattern not in ENHANCEMENT_PATTERNS:
        raise ValueError(f"enhancement_pattern must be one of {ENHANCEMENT_PATTERNS}, got {enhancement_pattern!r}")
    parenchyma, striatum_mm, x, y, z = _maps(anatomy)
    vox = anatomy.voxel_size_mm
    shape = anatomy.shape
    if hemisphere is None:
        hemisphere = "right" if rng.random() < 0.5 else "left"
    side = 1.0 if hemisphere == "left" else -1.0  # RAS+: the patient's left is +x

    candidates = (parenchyma & (anatomy.brain_depth_mm >= max(12.0, 0.7 * radius_mm))
                  & (side * x >= 18.0) & (z >= -15.0) & (z <= 55.0)
                  & (striatum_mm >= radius_mm + 6.0))
    idx = np.flatnonzero(candidates)
    if idx.size == 0:  # very large radius: relax the striatum clearance
        idx = np.flatnonzero(parenchyma & (side * x >= 18.0) & (striatum_mm >= 10.0))
    centre = np.array(np.unravel_index(idx[rng.integers(idx.size)], shape))
    centre_mm = tuple(float(v) for v in (anatomy.affine[:3, :3] @ centre + anatomy.affine[:3, 3]))

    half = int(math.ceil((2.4 * radius_mm + 8.0) / vox))
    box = _box(centre, half, shape)
    bx, by, bz = x[box[0], :, :], y[:, box[1], :], z[:, :, box[2]]
    bshape = (bx.shape[0], by.shape[1], bz.shape[2])

    n_g = int(rng.integers(3, 8))
    field = np.zeros(bshape, np.float32)
    for _ in range(n_g):
        c = np.asarray(centre_mm) + rng.normal(0.0, 0.5 * radius_mm, 3)
        s = radius_mm * rng.uniform(0.4, 0.75)
        w = rng.uniform(0.5, 1.0)
        field += w * np.exp(-((bx - c[0]) ** 2 + (by - c[1]) ** 2 + (bz - c[2]) ** 2) / (2 * s * s))
    field *= np.exp(0.25 * _smooth_noise(rng, bshape, 2.0))

    allowed = parenchyma[box] & (side * bx >= 3.0) & (striatum_mm[box] >= 4.0)
    target = max(8, int(round(4.0 / 3.0 * math.pi * radius_mm**3 / vox**3)))
    values = field[allowed]
    if values.size <= target:
        thr = values.min() if values.size else np.inf
    else:
        thr = np.partition(values, values.size - target)[values.size - target]
    local = allowed & (field >= thr)
    labels, n_lab = ndimage.label(local)
    if n_lab > 1:
        sizes = ndimage.sum_labels(local, labels, index=np.arange(1, n_lab + 1))
        local = labels == (1 + int(np.argmax(sizes)))
    local = ndimage.binary_fill_holes(local)

    depth = ndimage.distance_transform_edt(local) * vox
    core = np.zeros(bshape, bool)
    if necrotic and depth.max() >= 5.0:
        frac = rng.uniform(0.45, 0.6)
        core = local & (depth + 1.5 * _smooth_noise(rng, bshape, 1.5) >= frac * depth.max())
        core = ndimage.binary_opening(core)
    elif necrotic:
        _smooth_noise(rng, bshape, 1.5)  # keep the draw sequence fixed

    viable = local & ~core
    sigma_h = rng.uniform(0.15, 0.30)
    texture_local = np.exp(sigma_h * _smooth_noise(rng, bshape, 1.5) - 0.5 * sigma_h**2).astype(np.float32)

    agg_local = None
    if aggressive and viable.any():
        n_viable = int(viable.sum())
        frac = rng.uniform(0.2, 0.4)
        min_vox = int(round(1.5 / (vox**3 / 1000.0)))
        n_agg = min(max(int(round(frac * n_viable)), min_vox), int(0.6 * n_viable))
        weights = (texture_local[viable] ** 4).astype(float)
        pick = rng.choice(n_viable, p=weights / weights.sum())
        seed = np.argwhere(viable)[pick]
        dist = np.sqrt(((np.indices(bshape).T - seed).T ** 2).sum(0)) * vox
        dist = dist + 2.0 * _smooth_noise(rng, bshape, 1.5)
        d = dist[viable]
        cut = np.partition(d, n_agg - 1)[n_agg - 1] if n_agg > 0 else -np.inf
        agg_local = viable & (dist <= cut)
        labels, n_lab = ndimage.label(agg_local)
        if n_lab > 1:
            sizes = ndimage.sum_labels(agg_local, labels, index=np.arange(1, n_lab + 1))
            agg_local = labels == (1 + int(np.argmax(sizes)))
        texture_local = np.where(agg_local, np.maximum(texture_local, 1.0), texture_local)

    rim_mm = rng.uniform(2.5, 6.0)
    patches = _smooth_noise(rng, bshape, 1.5)
    if enhancement_pattern == "rim":
        enh = (local & (depth <= rim_mm)).astype(np.float32)
    elif enhancement_pattern == "solid":
        enh = viable.astype(np.float32) * np.clip(0.6 + 0.4 * texture_local, 0, 1.3)
    else:
        enh = ((local & (depth <= rim_mm + 2.0)) | viable).astype(np.float32) * (patches > -0.2)
    enh[core] = 0.0
    enh = np.clip(ndimage.gaussian_filter(enh, 0.5), 0.0, 1.0)

    mask = np.zeros(shape, bool)
    mask[box] = local
    necrosis = np.zeros(shape, bool)
    necrosis[box] = core
    agg = None
    if agg_local is not None:
        agg = np.zeros(shape, bool)
        agg[box] = agg_local
    texture = np.ones(shape, np.float32)
    texture[box] = np.where(local, texture_local, 1.0)
    enhancement = np.zeros(shape, np.float32)
    enhancement[box] = enh

    outside_mm = ndimage.distance_transform_edt(~mask) * vox
    f = anatomy.fractions
    tissue = f["grey_matter"] + f["white_matter"]
    wm_share = np.divide(f["white_matter"], tissue, out=np.zeros_like(tissue), where=tissue > 0)
    oedema = np.exp(-outside_mm / max(oedema_mm, 1e-3)) * (0.25 + 0.75 * wm_share) * anatomy.brain
    oedema = np.where(mask | (side * x < 0.0), 0.0, oedema)
    oedema = np.where(oedema < 0.05, 0.0, oedema).astype(np.float32)

    return Lesion(mask=mask, necrosis=necrosis, aggressive=agg, texture=texture, enhancement=enhancement,
                  oedema=oedema, centre_mm=centre_mm, hemisphere=hemisphere,
                  voxel_volume_ml=vox**3 / 1000.0)
