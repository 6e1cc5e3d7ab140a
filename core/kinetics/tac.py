r"""Time-activity curves (TACs) of a region of a dynamic PET image.

For a region :math:`M` of :math:`N` voxels and frame :math:`t` with voxel values
:math:`C_v(t)` (Bq/ml, or SUV when ``suv=True``), :func:`extract_tac` computes

.. math::

    \bar C(t) = \frac{1}{N}\sum_{v \in M} C_v(t), \qquad
    C_\mathrm{max}(t) = \max_{v \in M} C_v(t), \qquad
    s(t) = \sqrt{\frac{1}{N}\sum_{v \in M}\left(C_v(t) - \bar C(t)\right)^2},

the standard deviation with ``ddof=0``: the region is the whole population of its voxels,
not a sample of a larger one, as region statistics of PET reading software report it
(this work). The peak is the PERCIST SULpeak construction (Wahl et al. 2009) applied to
every frame: the highest mean of a sphere of volume :math:`V_\mathrm{peak}` (1 ml,
radius :math:`r = (3 V_\mathrm{peak}/4\pi)^{1/3} = 6.20` mm, the 12 mm diameter
sphere of Lodge et al. 2012) over all sphere positions centred on a voxel of the region:

.. math::

    C_\mathrm{peak}(t) = \max_{c \in M}\ \frac{1}{|S_c|}\sum_{v \in S_c} C_v(t),\qquad
    S_c = \{v : \lVert x_v - x_c \rVert \le r\},

with :math:`x_v` the scanner position (mm) of the centre of voxel :math:`v`.

Choices (this work):

* a voxel belongs to the sphere when its centre lies inside it (no partial-voxel
  weights), so the discretised sphere holds 81 voxels (1.27 ml) on a 2.5 mm grid and
  123 voxels (0.98 ml) on a 2 mm grid;
* sphere centres are restricted to voxel centres of the region, but the sphere itself
  may include voxels outside the region (as PERCIST's peak is not confined to the
  segmented lesion); near the edge of the field of view it is cut by the image border
  and the mean is taken over the voxels that remain;
* the sphere position is chosen per frame, so ``peak`` is the highest 1 ml mean of each
  frame, not the curve of one fixed sphere.

All statistics are computed on the bounding box of the region padded by the sphere
radius, never on the whole volume.

References
----------
Wahl RL, Jacene H, Kasamon Y, Lodge MA. From RECIST to PERCIST: evolving considerations
for PET response criteria in solid tumors. J Nucl Med 2009;50 Suppl 1:122S-150S.
Lodge MA, Chaudhry MA, Wahl RL. Noise considerations for PET quantification using
maximum and peak standardized uptake value. J Nucl Med 2012;53:1041-1047.

Examples
--------
>>> import numpy as np
>>> from core.imaging.volume import DynamicVolume
>>> data = np.ones((8, 8, 8, 2), np.float32) * np.array([1000.0, 2000.0], np.float32)
>>> pet = DynamicVolume(data, np.diag([2.0, 2.0, 2.0, 1.0]), "PT", "Bq/ml",
...                     frame_start_s=np.array([0.0, 60.0]), frame_duration_s=np.array([60.0, 60.0]))
>>> mask = np.zeros((8, 8, 8), bool); mask[2:6, 2:6, 2:6] = True
>>> tac = extract_tac(pet, mask, "block")
>>> tac.mean.tolist(), tac.n_voxels, tac.volume_ml
([1000.0, 2000.0], 64, 0.512)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from core.errors import InputError, InvalidVoxelError, MaskError, TimingError
from core.imaging.validate import check_mask
from core.imaging.volume import DynamicVolume, Volume

__all__ = ["RegionTAC", "extract_tac", "voxel_tacs", "sphere_radius_mm", "PEAK_VOLUME_ML"]

#: Volume of the PERCIST peak sphere, ml (Wahl et al. 2009).
PEAK_VOLUME_ML = 1.0

_STATS = ("mean", "max", "peak", "std")


def _unit_suffix(unit: str) -> str:
    """Column-name form of a unit: ``"Bq/ml"`` -> ``"Bq_per_ml"``, ``"SUV"`` -> ``"SUV"``."""
    return unit.replace("/", "_per_").replace(" ", "_")


def _as_curve(value) -> np.ndarray:
    arr = np.array(value, dtype=float).reshape(-1)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class RegionTAC:
    """Per-frame statistics of one region of a dynamic PET image.

    Attributes
    ----------
    name : str
        Region name (``"tumour"``, ``"background"``, ...).
    frame_start_min, frame_end_min : ndarray of shape (T,)
        Frame start and end, minutes from the time reference (injection).
    mean, max, peak, std : ndarray of shape (T,)
        Region mean, maximum, 1 ml peak and standard deviation (``ddof=0``), in ``unit``;
        see the module docstring for the definitions.
    n_voxels : int
        Number of voxels in the region.
    volume_ml : float
        Region volume, ml (voxel count times voxel volume).
    unit : str
        ``"Bq/ml"`` or ``"SUV"`` (or the image's unit for other images).
    peak_volume_ml : float, default=1.0
        Nominal volume of the peak sphere, ml.

    Examples
    --------
    >>> tac = RegionTAC("r", [0.0, 1.0], [1.0, 3.0], mean=[1.0, 2.0], max=[2.0, 3.0],
    ...                 peak=[1.5, 2.5], std=[0.1, 0.2], n_voxels=10, volume_ml=0.16, unit="SUV")
    >>> tac.frame_mid_min.tolist(), list(tac.to_frame().columns)[4:6]
    ([0.5, 2.0], ['mean_SUV', 'max_SUV'])
    >>> RegionTAC.from_dict(tac.to_dict()).mean.tolist()
    [1.0, 2.0]
    """

    name: str
    frame_start_min: np.ndarray
    frame_end_min: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    peak: np.ndarray
    std: np.ndarray
    n_voxels: int
    volume_ml: float
    unit: str
    peak_volume_ml: float = field(default=PEAK_VOLUME_ML)

    def __post_init__(self):
        curves = {n: _as_curve(getattr(self, n)) for n in ("frame_start_min", "frame_end_min") + _STATS}
        lengths = {n: c.size for n, c in curves.items()}
        if len(set(lengths.values())) != 1 or lengths["mean"] == 0:
            shown = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise TimingError(f"the curves of region {self.name!r} need one value per frame, got lengths {shown}")
        if np.any(curves["frame_end_min"] <= curves["frame_start_min"]):
            raise TimingError(f"region {self.name!r}: every frame must end after it starts (minutes)")
        for n, c in curves.items():
            object.__setattr__(self, n, c)
        object.__setattr__(self, "n_voxels", int(self.n_voxels))
        object.__setattr__(self, "volume_ml", float(self.volume_ml))
        object.__setattr__(self, "peak_volume_ml", float(self.peak_volume_ml))

    @property
    def n_frames(self) -> int:
        return int(self.mean.size)

    @property
    def frame_mid_min(self) -> np.ndarray:
        """Frame mid-times, minutes."""
        return 0.5 * (self.frame_start_min + self.frame_end_min)

    @property
    def frame_duration_min(self) -> np.ndarray:
        """Frame durations, minutes."""
        return self.frame_end_min - self.frame_start_min

    def to_frame(self):
        """The curves as a :class:`pandas.DataFrame`, one row per frame.

        Columns: ``frame`` (0-based index, as :meth:`DynamicVolume.frame` takes it),
        ``start_min``, ``end_min``, ``mid_min``, ``mean_<unit>``, ``max_<unit>``,
        ``peak_<unit>``, ``std_<unit>`` (``<unit>`` is ``SUV`` or ``Bq_per_ml``) and
        ``n_voxels``.
        """
        import pandas as pd

        suffix = _unit_suffix(self.unit)
        cols = {
            "frame": np.arange(self.n_frames),
            "start_min": self.frame_start_min,
            "end_min": self.frame_end_min,
            "mid_min": self.frame_mid_min,
        }
        for stat in _STATS:
            cols[f"{stat}_{suffix}"] = getattr(self, stat)
        cols["n_voxels"] = np.full(self.n_frames, self.n_voxels)
        return pd.DataFrame(cols)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (lists of floats); :meth:`from_dict` reads it back."""
        out = {"name": self.name, "unit": self.unit, "n_voxels": self.n_voxels, "volume_ml": self.volume_ml,
               "peak_volume_ml": self.peak_volume_ml}
        for n in ("frame_start_min", "frame_end_min") + _STATS:
            out[n] = [float(v) for v in getattr(self, n)]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RegionTAC":
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        InputError
            When a field is missing.
        """
        required = ("name", "unit", "n_voxels", "volume_ml", "frame_start_min", "frame_end_min") + _STATS
        missing = [k for k in required if k not in d]
        if missing:
            raise InputError(f"the stored region curve lacks {', '.join(missing)}",
                             fix="Recompute the time-activity curve; the stored result is incomplete.")
        return cls(name=str(d["name"]), frame_start_min=d["frame_start_min"], frame_end_min=d["frame_end_min"],
                   mean=d["mean"], max=d["max"], peak=d["peak"], std=d["std"], n_voxels=d["n_voxels"],
                   volume_ml=d["volume_ml"], unit=str(d["unit"]),
                   peak_volume_ml=d.get("peak_volume_ml", PEAK_VOLUME_ML))


# --------------------------------------------------------------------- checks


def _check_dynamic(pet) -> DynamicVolume:
    if not isinstance(pet, DynamicVolume):
        kind = type(pet).__name__
        raise TimingError(f"a time-activity curve needs a dynamic PET image with frame timing, got a {kind}",
                          path=getattr(pet, "source", None),
                          fix="Load the dynamic series (all frames, with its PET-BIDS sidecar or DICOM timing).")
    if pet.data.ndim != 4:
        raise TimingError(f"a dynamic PET image needs 4D data, this one has shape {pet.data.shape}", path=pet.source,
                          fix="Re-export the dynamic series with all its frames.")
    return pet


def _named_mask(mask, pet: Volume, name: str) -> np.ndarray:
    """Validated boolean mask array; messages name the region."""
    try:
        return np.asarray(check_mask(mask, pet).data, dtype=bool)
    except MaskError as err:
        raise MaskError(f"mask {name!r}: {err.problem}", path=err.path, fix=err.fix) from None


def _scale(pet: DynamicVolume, suv: bool) -> tuple[float, str]:
    """Factor applied to voxel values and the resulting unit."""
    if not suv:
        return 1.0, pet.units
    reason = pet.suv_unavailable_reason
    if reason is not None:
        raise InputError(f"SUV is unavailable for this image: {reason}", path=pet.source,
                         fix="Enter the injected activity, patient weight and injection time in the study record, "
                             "or use Bq/ml (suv=False).")
    if pet.units != "Bq/ml":
        raise InputError(f"SUV needs activity concentrations in Bq/ml, this image is in {pet.units!r}",
                         path=pet.source, fix="Import the PET series in Bq/ml (the scanner's calibrated units).")
    return float(pet.suv_factor), "SUV"


def _check_finite(values: np.ndarray, pet: Volume, name: str, where: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        frames = np.flatnonzero(bad.any(axis=0))
        raise InvalidVoxelError(
            f"{rows.size} voxel(s) {where} region {name!r} hold NaN or infinite values "
            f"(first in frame {int(frames[0])}, {frames.size} frame(s) affected)", path=pet.source,
            fix="Re-export the image from the scanner or reconstruction software; TheraBoard does not guess "
                "missing voxel values.")


# ----------------------------------------------------------------------- peak


def sphere_radius_mm(volume_ml: float) -> float:
    r"""Radius (mm) of a sphere of ``volume_ml``: :math:`r = 10\,(3V/4\pi)^{1/3}`.

    Examples
    --------
    >>> round(sphere_radius_mm(1.0), 2)
    6.2
    """
    if not (math.isfinite(volume_ml) and volume_ml > 0):
        raise InputError(f"the peak sphere volume must be a positive number of ml, got {volume_ml!r}",
                         fix="Use peak_volume_ml=1.0 (PERCIST).")
    return 10.0 * (3.0 * volume_ml / (4.0 * math.pi)) ** (1.0 / 3.0)


def _sphere_offsets(affine: np.ndarray, radius_mm: float) -> np.ndarray:
    """Integer voxel offsets (K, 3) whose centres lie within ``radius_mm`` of the origin voxel."""
    lin = np.asarray(affine, dtype=float)[:3, :3]
    smallest = float(np.linalg.svd(lin, compute_uv=False).min())
    m = int(math.ceil(radius_mm / smallest))
    grid = np.mgrid[-m:m + 1, -m:m + 1, -m:m + 1].reshape(3, -1).T
    dist = np.linalg.norm(grid @ lin.T, axis=1)
    return grid[dist <= radius_mm * (1.0 + 1e-9)]


def _sphere_means(data: np.ndarray, ijk: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean (N, T) over the sphere around each voxel ``ijk`` (N, 3) of 4D ``data``.

    Works on the bounding box of ``ijk`` padded by the sphere (a correlation with the
    0/1 sphere kernel, frame by frame); voxels beyond the image border are left out of
    each mean (the box reaches the border only where the image ends).
    """
    shape = np.array(data.shape[:3])
    pad = np.abs(offsets).max(axis=0)
    lo = np.maximum(ijk.min(axis=0) - pad, 0)
    hi = np.minimum(ijk.max(axis=0) + pad + 1, shape)
    kernel = np.zeros(tuple(int(v) for v in 2 * pad + 1))
    kernel[tuple((offsets + pad).T)] = 1.0
    local = tuple((ijk - lo).T)
    counts = ndimage.correlate(np.ones(tuple(int(v) for v in hi - lo)), kernel, mode="constant", cval=0.0)[local]
    out = np.empty((ijk.shape[0], data.shape[3]))
    for t in range(data.shape[3]):
        box = np.asarray(data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2], t], dtype=np.float64)
        out[:, t] = ndimage.correlate(box, kernel, mode="constant", cval=0.0)[local]
    return out / counts[:, None]


def extract_tac(pet: DynamicVolume, mask, name: str = "region", *, suv: bool = False,
                peak_volume_ml: float = PEAK_VOLUME_ML) -> RegionTAC:
    r"""Mean, maximum, 1 ml peak and standard deviation of a region in every frame.

    Parameters
    ----------
    pet : DynamicVolume
        Dynamic PET, Bq/ml, shape (I, J, K, T).
    mask : Volume or ndarray of shape (I, J, K)
        Binary region on the PET grid (an array is taken to lie on it).
    name : str, default="region"
        Region name, kept in the result and quoted in error messages.
    suv : bool, default=False
        Report body-weight SUV (values times ``pet.suv_factor``) instead of Bq/ml.
    peak_volume_ml : float, default=1.0
        Volume of the peak sphere, ml (1 ml: PERCIST SULpeak, radius 6.20 mm).

    Returns
    -------
    RegionTAC
        Curves of shape (T,) in ``"Bq/ml"`` or ``"SUV"``; ``std`` uses ``ddof=0``.

    Raises
    ------
    TimingError
        ``pet`` is not a dynamic image.
    MaskError
        The mask is empty, not binary, or on another grid (the message names it).
    InvalidVoxelError
        NaN or infinite PET values inside the region or within the sphere radius of it.
    InputError
        ``suv=True`` while the dose record is incomplete (the message says what is missing).

    Notes
    -----
    See the module docstring for the equations and the discretisation of the sphere.

    References
    ----------
    Wahl RL, et al. J Nucl Med 2009;50 Suppl 1:122S-150S (PERCIST, SULpeak).
    Lodge MA, et al. J Nucl Med 2012;53:1041-1047 (12 mm peak sphere placed to maximise
    the enclosed mean).

    Examples
    --------
    >>> tac = extract_tac(case.pet, case.tumour_mask, "tumour", suv=True)   # doctest: +SKIP
    >>> tac.to_frame().head()                                             # doctest: +SKIP
    """
    pet = _check_dynamic(pet)
    m = _named_mask(mask, pet, name)
    factor, unit = _scale(pet, suv)
    radius = sphere_radius_mm(float(peak_volume_ml))
    ijk = np.argwhere(m)
    values = np.asarray(pet.data[m], dtype=np.float64)            # (N, T), same order as ijk
    _check_finite(values, pet, name, "inside")
    sphere = _sphere_means(pet.data, ijk, _sphere_offsets(pet.affine, radius))
    _check_finite(sphere, pet, name, f"within {radius:.1f} mm of")
    voxel_mm3 = round(abs(float(np.linalg.det(np.asarray(pet.affine, float)[:3, :3]))), 9)  # drop LU round-off
    return RegionTAC(
        name=name,
        frame_start_min=pet.frame_start_min,
        frame_end_min=pet.frame_end_min,
        mean=values.mean(axis=0) * factor,
        max=values.max(axis=0) * factor,
        peak=sphere.max(axis=0) * factor,
        std=values.std(axis=0, ddof=0) * factor,
        n_voxels=int(ijk.shape[0]),
        volume_ml=ijk.shape[0] * voxel_mm3 / 1000.0,
        unit=unit,
        peak_volume_ml=float(peak_volume_ml),
    )


def voxel_tacs(pet: DynamicVolume, mask, *, suv: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The curve of every voxel of a region, for clustering and voxel-wise fitting.

    Parameters
    ----------
    pet : DynamicVolume
        Dynamic PET, Bq/ml, shape (I, J, K, T).
    mask : Volume or ndarray of shape (I, J, K)
        Binary region on the PET grid.
    suv : bool, default=False
        Return SUV instead of Bq/ml.

    Returns
    -------
    curves : ndarray of shape (N, T), float64
        One row per voxel, in C order of the voxel indices.
    ijk : ndarray of shape (N, 3), int
        Voxel indices of the rows (``pet.voxel_to_mm(ijk)`` gives scanner mm).

    Raises
    ------
    TimingError, MaskError, InvalidVoxelError, InputError
        As :func:`extract_tac`.

    Examples
    --------
    >>> curves, ijk = voxel_tacs(case.pet, case.tumour_mask)   # doctest: +SKIP
    >>> curves.shape[1] == case.pet.n_frames                   # doctest: +SKIP
    True
    """
    pet = _check_dynamic(pet)
    name = "region"
    if isinstance(mask, Volume):
        name = str(mask.meta.get("label_name", name))
    m = _named_mask(mask, pet, name)
    factor, _ = _scale(pet, suv)
    ijk = np.argwhere(m)
    values = np.asarray(pet.data[m], dtype=np.float64)
    _check_finite(values, pet, name, "inside")
    return values * factor if factor != 1.0 else values, ijk.astype(np.intp)
