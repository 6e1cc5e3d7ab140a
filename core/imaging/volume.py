"""Image records: :class:`Volume` (3D) and :class:`DynamicVolume` (3D + time).

Conventions (see DESIGN.md):

* ``data`` is indexed ``[i, j, k]`` (and ``[..., t]`` for dynamic data) exactly as
  nibabel returns it; ``affine`` maps voxel indices to scanner millimetres in RAS+.
* Frame timing is in **seconds** from the time reference (injection for PET-BIDS,
  ``TimeZero``); kinetic APIs convert to minutes at their boundary.
* PET voxels are stored as activity concentration in Bq/ml. SUV is a view computed
  with :func:`suv_bw_factor`; it is only available when the dose record is complete.

Body-weight SUV (Boellaard et al., EANM FDG PET/CT guideline v2.0, EJNMMI 2015;
Kinahan & Fletcher, Semin Ultrasound CT MR 2010):

.. math::

    \\mathrm{SUV_{bw}} = \\frac{C_\\mathrm{PET}\\,[\\mathrm{Bq/ml}] \\cdot W\\,[\\mathrm{g}]}
                        {A_\\mathrm{inj}\\,[\\mathrm{Bq}] \\cdot 2^{-\\Delta t / T_{1/2}}}

where :math:`\\Delta t` is the time from the assay of the injected activity to the
time the image is decay-corrected to (series start for DICOM ``DecayCorrection=START``,
zero for images decay-corrected to injection), and tissue density is taken as 1 g/ml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["PetDose", "Volume", "DynamicVolume", "suv_bw_factor", "spacing_from_affine"]


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along i, j, k: the norms of the affine's first three columns."""
    affine = np.asarray(affine, dtype=float)
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


_MISSING_WORDS = {
    "injected_activity_bq": "the injected activity",
    "body_weight_kg": "the patient weight",
    "half_life_s": "the radionuclide half-life",
    "decay_interval_s": "the injection time (needed to decay-correct the dose)",
}


@dataclass(frozen=True)
class PetDose:
    """What is needed for body-weight SUV.

    Attributes
    ----------
    injected_activity_bq : float or None
        Assayed injected activity, Bq.
    body_weight_kg : float or None
        Patient weight, kg.
    half_life_s : float or None
        Physical half-life of the radionuclide, s (e.g. 6586.2 s for 18F).
    decay_interval_s : float
        Time from the activity assay (injection) to the decay-correction reference of
        the image, s. Zero when the image is decay-corrected to injection.
    radionuclide : str, optional
        For example ``"18F"``.
    tracer : str, optional
        For example ``"FDOPA"``.
    """

    injected_activity_bq: float | None
    body_weight_kg: float | None
    half_life_s: float | None
    decay_interval_s: float = 0.0
    radionuclide: str | None = None
    tracer: str | None = None

    @property
    def missing(self) -> list[str]:
        """Names of the fields that SUV needs and that are missing or not positive."""
        out = []
        for name in ("injected_activity_bq", "body_weight_kg", "half_life_s"):
            value = getattr(self, name)
            if value is None or not math.isfinite(value) or value <= 0:
                out.append(name)
        # NaN when the injection time is unknown but the image is decay-corrected to
        # the scan start (DICOM DecayCorrection START): the decay factor is then unknown.
        if self.decay_interval_s is None or not math.isfinite(self.decay_interval_s):
            out.append("decay_interval_s")
        return out

    @property
    def suv_available(self) -> bool:
        return not self.missing


def suv_bw_factor(dose: PetDose) -> float:
    """Factor (g/Bq) that turns Bq/ml into SUVbw: ``suv = bq_per_ml * factor``.

    Examples
    --------
    >>> d = PetDose(injected_activity_bq=200e6, body_weight_kg=70.0, half_life_s=6586.2,
    ...             decay_interval_s=0.0)
    >>> round(5000.0 * suv_bw_factor(d), 4)   # 5 kBq/ml in a 70 kg patient given 200 MBq
    1.75
    """
    if dose.missing:
        raise ValueError(f"SUV needs {', '.join(dose.missing)}")
    decayed = dose.injected_activity_bq * 2.0 ** (-dose.decay_interval_s / dose.half_life_s)
    return dose.body_weight_kg * 1000.0 / decayed


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image on a grid in scanner space.

    Attributes
    ----------
    data : ndarray of shape (I, J, K)
        Voxel values in ``units``.
    affine : ndarray of shape (4, 4)
        Voxel index to RAS+ millimetres.
    modality : str
        DICOM modality code: ``"PT"``, ``"MR"``, ``"CT"``, ``"NM"`` or ``"SEG"`` for masks.
    units : str
        ``"Bq/ml"`` for PET, ``"HU"`` for CT, ``"a.u."`` for MRI, ``"label"`` for masks.
    dose : PetDose, optional
        Dose record of a PET image; SUV is available when it is complete.
    source : str, optional
        Path the volume was read from (for error messages and provenance).
    meta : dict
        Anything else worth keeping (series description, sequence, tracer, ...).
    """

    data: np.ndarray
    affine: np.ndarray
    modality: str = "OT"
    units: str = "a.u."
    dose: PetDose | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return spacing_from_affine(self.affine)

    @property
    def suv_available(self) -> bool:
        return self.modality == "PT" and self.dose is not None and self.dose.suv_available

    @property
    def suv_unavailable_reason(self) -> str | None:
        """Why SUV cannot be shown, in words, or None when it can."""
        if self.modality != "PT":
            return "SUV applies to PET only"
        if self.dose is None:
            return "the file carries no injected activity, body weight or half-life"
        if self.dose.missing:
            return "the file lacks " + ", ".join(_MISSING_WORDS[m] for m in self.dose.missing)
        return None

    @property
    def suv_factor(self) -> float:
        """SUVbw per Bq/ml (g/Bq), see :func:`suv_bw_factor`; raises when SUV is unavailable."""
        if not self.suv_available:
            raise ValueError(f"SUV is unavailable: {self.suv_unavailable_reason}")
        return suv_bw_factor(self.dose)

    def centroid_mm(self) -> np.ndarray:
        """Scanner position (mm) of the centre of mass of the non-zero voxels (of a mask)."""
        ijk = np.argwhere(self.data[..., 0] if self.data.ndim == 4 else self.data)
        if ijk.size == 0:
            raise ValueError("the volume has no non-zero voxel")
        return self.voxel_to_mm(ijk.mean(axis=0))

    def to_suv(self) -> np.ndarray:
        """Voxel values as SUVbw (requires a complete dose record and Bq/ml data)."""
        if not self.suv_available:
            raise ValueError(f"SUV is unavailable: {self.suv_unavailable_reason}")
        if self.units != "Bq/ml":
            raise ValueError(f"SUV needs Bq/ml data, this volume is in {self.units}")
        return self.data * suv_bw_factor(self.dose)

    def with_data(self, data: np.ndarray, **changes: Any) -> "Volume":
        """A copy on the same grid with new voxel values (and optionally other fields)."""
        return replace(self, data=data, **changes)

    def voxel_to_mm(self, ijk) -> np.ndarray:
        """RAS+ millimetres of voxel index (or indices, shape (..., 3))."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def mm_to_voxel(self, xyz) -> np.ndarray:
        """Fractional voxel index of RAS+ millimetres (shape (..., 3))."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=float)
        return xyz @ inv[:3, :3].T + inv[:3, 3]


@dataclass(frozen=True, eq=False)
class DynamicVolume(Volume):
    """A series of 3D frames on one grid, with frame timing.

    Attributes
    ----------
    data : ndarray of shape (I, J, K, T)
    frame_start_s : ndarray of shape (T,)
        Frame start times in seconds from the time reference (injection).
    frame_duration_s : ndarray of shape (T,)
        Frame durations in seconds.
    decay_corrected : bool
        Whether voxel values are decay-corrected.
    decay_reference : str
        What they are decay-corrected to: ``"injection"``, ``"scan_start"`` or
        ``"none"``.
    """

    frame_start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_duration_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    decay_corrected: bool = True
    decay_reference: str = "injection"

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[-1])

    @property
    def frame_end_s(self) -> np.ndarray:
        return self.frame_start_s + self.frame_duration_s

    @property
    def frame_mid_s(self) -> np.ndarray:
        return self.frame_start_s + 0.5 * self.frame_duration_s

    @property
    def frame_start_min(self) -> np.ndarray:
        return self.frame_start_s / 60.0

    @property
    def frame_end_min(self) -> np.ndarray:
        return self.frame_end_s / 60.0

    @property
    def frame_mid_min(self) -> np.ndarray:
        return self.frame_mid_s / 60.0

    def frame(self, index: int) -> Volume:
        """Frame ``index`` as a static :class:`Volume` (a view, not a copy)."""
        if not -self.n_frames <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range for {self.n_frames} frames")
        return Volume(
            data=self.data[..., index],
            affine=self.affine,
            modality=self.modality,
            units=self.units,
            dose=self.dose,
            source=self.source,
            meta={**self.meta, "frame_index": int(index)},
        )

    def sum_frames(self, start_s: float, end_s: float) -> Volume:
        """Duration-weighted mean image over frames lying within ``[start_s, end_s]``.

        This is the static "summed" image of guideline practice (for example the
        20-40 min window of amino-acid PET). Frames must lie wholly in the window.
        """
        sel = (self.frame_start_s >= start_s - 1e-6) & (self.frame_end_s <= end_s + 1e-6)
        if not sel.any():
            raise ValueError(
                f"no frame lies within {start_s:.0f}-{end_s:.0f} s "
                f"(frames span {self.frame_start_s[0]:.0f}-{self.frame_end_s[-1]:.0f} s)"
            )
        w = self.frame_duration_s[sel]
        mean = np.tensordot(self.data[..., sel], w / w.sum(), axes=([-1], [0]))
        return Volume(mean.astype(np.float32), self.affine, self.modality, self.units,
                      self.dose, self.source, {**self.meta, "window_s": (start_s, end_s)})
