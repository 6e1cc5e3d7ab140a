"""Plain records returned by :class:`core.cases.repository.CaseRepository`.

They are frozen dataclasses detached from any database session, so pages and engines
can keep, cache and pass them around freely. Paths are relative to the data directory;
:meth:`CaseRepository.resolve` turns them into absolute paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from core.imaging.volume import PetDose

__all__ = [
    "STATUS_NEW",
    "STATUS_HAS_RESULTS",
    "STATUS_REVIEWED",
    "SeriesRecord",
    "MaskRecord",
    "ResultRecord",
    "CohortResultRecord",
    "LabelRecord",
    "AuditRecord",
    "CaseSummary",
    "CaseDetail",
    "CASE_COLUMNS",
]

#: Worklist table columns, the keys of :meth:`CaseSummary.as_row`.
CASE_COLUMNS = ("Study", "Pseudonym", "Label", "Status", "Series", "Site", "Synthetic", "Date")

#: Roles a PET can be fused over, most preferred first (see :meth:`CaseDetail.backgrounds`).
_BACKGROUND_ORDER = ("t1c", "t1", "flair", "ct", "dynamic_pet", "static_pet")

#: Case status on the worklist, in the order a case goes through them.
STATUS_NEW = "new"
STATUS_HAS_RESULTS = "has results"
STATUS_REVIEWED = "reviewed"


@dataclass(frozen=True)
class SeriesRecord:
    """One imported image series.

    Attributes
    ----------
    id, study_id : int
    modality : str
        DICOM modality code (``"PT"``, ``"MR"``, ``"CT"``, ``"NM"``).
    role : str
        One of :data:`core.cases.models.SERIES_ROLES`.
    description : str or None
    path : str
        Canonical NIfTI (``.nii.gz``) in the store; what :meth:`CaseRepository.load_series` reads.
    sha256 : str
        Hash of the canonical NIfTI.
    sidecar_path : str or None
        Its JSON sidecar in the store.
    original_format : str
        ``"nifti"`` or ``"dicom"``.
    original_files : tuple of str
        The original (for DICOM: de-identified) files in the store.
    original_names : tuple of str
        Their neutral names, in the same order: ``image.nii.gz``, ``image.json``,
        ``IM00001.dcm``..., and extra files of a cohort such as ``blood.tsv``.
    geometry : dict
        ``shape``, ``spacing_mm`` and ``affine`` (4x4 nested lists).
    timing : dict or None
        ``frame_start_s``, ``frame_duration_s``, ``decay_corrected``, ``decay_reference``
        for dynamic series.
    units : str
    dose : dict or None
        :class:`~core.imaging.PetDose` fields, taken before de-identification.
    created : datetime
    created_by : str
    """

    id: int
    study_id: int
    modality: str
    role: str
    description: str | None
    path: str
    sha256: str
    sidecar_path: str | None
    original_format: str
    original_files: tuple[str, ...]
    original_names: tuple[str, ...]
    geometry: dict[str, Any]
    timing: dict[str, Any] | None
    units: str
    dose: dict[str, Any] | None
    created: datetime
    created_by: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.geometry["shape"])

    def original_file(self, name: str) -> str | None:
        """Store path of the original file called ``name`` (e.g. ``"blood.tsv"``), or None."""
        return dict(zip(self.original_names, self.original_files, strict=True)).get(name)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(self.geometry["spacing_mm"])

    @property
    def n_frames(self) -> int:
        """Number of time frames (1 for a static series)."""
        return len(self.timing["frame_start_s"]) if self.timing else 1

    @property
    def pet_dose(self) -> PetDose | None:
        """The dose record as a :class:`~core.imaging.PetDose` (None when absent)."""
        if not self.dose:
            return None
        fields = dict(self.dose)
        if fields.get("decay_interval_s") is None:  # stored as null when unknown (NaN)
            fields["decay_interval_s"] = float("nan")
        return PetDose(**fields)


@dataclass(frozen=True)
class MaskRecord:
    """A binary mask of a study.

    Attributes
    ----------
    id, study_id : int
    series_id : int or None
        Series whose grid it lies on.
    name : str
        ``"tumour"``, ``"aggressive"``, ``"background"``, ...
    path, sha256 : str
        Its NIfTI in the store.
    sidecar_path : str or None
    source : str
        ``"user"``, ``"demo"`` or ``"computed"``.
    n_voxels : int
    volume_ml : float
    created : datetime
    created_by : str
    """

    id: int
    study_id: int
    series_id: int | None
    name: str
    path: str
    sha256: str
    sidecar_path: str | None
    source: str
    n_voxels: int
    volume_ml: float
    created: datetime
    created_by: str


@dataclass(frozen=True)
class ResultRecord:
    """A stored computation.

    Attributes
    ----------
    id, study_id : int
    kind : str
        What was computed, e.g. ``"kinetics.tac"`` or ``"radiomics.features"``.
    parameters : dict
        Everything the computation depended on besides the images.
    code_version : str
    summary : dict
        Small JSON results for tables and cards.
    artefact_path : str or None
        A larger artefact (``.npz``, ``.nii.gz``, ...) in the store.
    artefact_sha256 : str or None
    created : datetime
    created_by : str
    """

    id: int
    study_id: int
    kind: str
    parameters: dict[str, Any]
    code_version: str
    summary: dict[str, Any]
    artefact_path: str | None
    artefact_sha256: str | None
    created: datetime
    created_by: str


@dataclass(frozen=True)
class CohortResultRecord:
    """A stored computation over several studies (e.g. a model evaluated on a cohort).

    Attributes
    ----------
    id : int
    kind : str
        What was computed, e.g. ``"radiomics.evaluation"``.
    parameters : dict
        Everything the computation depended on besides the studies' images.
    study_ids : tuple of int
        The studies it used, in the order of its rows.
    code_version : str
    summary : dict
    artefact_path, artefact_sha256 : str or None
    created : datetime
    created_by : str
    """

    id: int
    kind: str
    parameters: dict[str, Any]
    study_ids: tuple[int, ...]
    code_version: str
    summary: dict[str, Any]
    artefact_path: str | None
    artefact_sha256: str | None
    created: datetime
    created_by: str


@dataclass(frozen=True)
class LabelRecord:
    """The diagnosis of a study according to one source.

    Attributes
    ----------
    id, study_id : int
    diagnosis : str
        e.g. ``"progression"`` or ``"radionecrosis"``.
    source : str
        e.g. ``"synthetic ground truth"``, ``"histology"``, ``"clinical follow-up"``.
    molecular : dict
        e.g. ``{"idh": "mutant", "codeletion_1p19q": False}``.
    details : dict
    set_by : str
    updated : datetime
    """

    id: int
    study_id: int
    diagnosis: str
    source: str
    molecular: dict[str, Any]
    details: dict[str, Any]
    set_by: str
    updated: datetime


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the audit trail."""

    id: int
    at: datetime
    who: str
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class CaseSummary:
    """One line of the worklist.

    Attributes
    ----------
    study_id : int
    pseudonym : str
    roles : tuple of str
        Series roles present, in :data:`~core.cases.models.SERIES_ROLES` order.
    modalities : tuple of str
        Modalities present, sorted.
    label : str or None
        Diagnosis of the most recently set label.
    label_source : str or None
    status : str
        ``"new"``, ``"has results"`` or ``"reviewed"``.
    synthetic : bool
    site : str or None
    n_series : int
    n_results : int
    study_date : date or None
        Shifted by de-identification, or None.
    description : str or None
    patient_id : int
    """

    study_id: int
    pseudonym: str
    roles: tuple[str, ...]
    modalities: tuple[str, ...]
    label: str | None
    label_source: str | None
    status: str
    synthetic: bool
    site: str | None
    n_series: int
    n_results: int
    study_date: date | None
    description: str | None
    patient_id: int

    def as_row(self) -> dict[str, Any]:
        """The summary as one worklist row, keyed by :data:`CASE_COLUMNS`."""
        return {
            "Study": self.study_id,
            "Pseudonym": self.pseudonym,
            "Label": self.label,
            "Status": self.status,
            "Series": ", ".join(self.roles),
            "Site": self.site,
            "Synthetic": self.synthetic,
            "Date": self.study_date,
        }


@dataclass(frozen=True)
class CaseDetail:
    """Everything stored about one study (arrays are loaded separately).

    Attributes
    ----------
    summary : CaseSummary
    series, masks, labels, results : tuple of records
    reviewed_at : datetime or None
    reviewed_by : str or None
    """

    summary: CaseSummary
    series: tuple[SeriesRecord, ...] = field(default_factory=tuple)
    masks: tuple[MaskRecord, ...] = field(default_factory=tuple)
    labels: tuple[LabelRecord, ...] = field(default_factory=tuple)
    results: tuple[ResultRecord, ...] = field(default_factory=tuple)
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None

    @property
    def study_id(self) -> int:
        return self.summary.study_id

    @property
    def pseudonym(self) -> str:
        return self.summary.pseudonym

    @property
    def synthetic(self) -> bool:
        return self.summary.synthetic

    @property
    def label(self) -> str | None:
        return self.summary.label

    @property
    def status(self) -> str:
        return self.summary.status

    def series_by_role(self, role: str) -> SeriesRecord | None:
        """The newest series with ``role``, or None."""
        found = [s for s in self.series if s.role == role]
        return found[-1] if found else None

    def mask_by_name(self, name: str) -> MaskRecord | None:
        """The newest mask called ``name``, or None."""
        found = [m for m in self.masks if m.name == name]
        return found[-1] if found else None

    @property
    def pet(self) -> SeriesRecord | None:
        """The PET to read: the newest dynamic PET, else the newest static PET."""
        return self.series_by_role("dynamic_pet") or self.series_by_role("static_pet")

    def backgrounds(self) -> list[SeriesRecord]:
        """Series a PET can be fused over, in the order a reader prefers them.

        Contrast T1 first (the lesion's enhancement is what amino-acid PET is read
        against), then T1, FLAIR, CT and finally the PET itself when nothing else exists.
        """
        return [s for role in _BACKGROUND_ORDER for s in reversed(self.series) if s.role == role]
