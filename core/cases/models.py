"""ORM models of the case database (SQLAlchemy 2, typed ``Mapped[...]``).

Only :mod:`core.cases.repository` and the migrations import this module; everything
else receives plain dataclasses from :mod:`core.cases.records`.

The schema holds no direct identifiers: a patient is a pseudonym, study dates are the
de-identification's shifted dates (or absent), and image files live in the
content-addressed store (:mod:`core.cases.store`), referenced by path relative to the
data directory and their SHA-256.

==============  =======================================================================
table           one row per
==============  =======================================================================
patients        pseudonymous patient (``synthetic`` for demo data)
studies         imaging study (visit) of a patient at a site
series          imported image: role, canonical NIfTI in the store, geometry, timing,
                units and the PET dose record taken before de-identification
series_files    original (de-identified) file of a series kept in the store
masks           binary mask on a study's grid (tumour, aggressive, background, ...)
results         computed result: kind, parameters, code version, summary, artefact
labels          diagnosis of a study from one source, with molecular status
audit_events    who did what to which object, when
==============  =======================================================================
"""

from __future__ import annotations

from datetime import date, datetime, UTC
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "SERIES_ROLES",
    "ORIGINAL_FORMATS",
    "MASK_SOURCES",
    "Base",
    "Patient",
    "Study",
    "Series",
    "SeriesFile",
    "Mask",
    "Result",
    "CohortResult",
    "Label",
    "AuditEvent",
]

#: What a series is for. ``dynamic_pet`` is 4D with frame timing, ``spect`` may be (one frame per
#: acquisition after a therapy, times from injection); MRI roles are set by
#: the importer or the cohort manifest (they cannot be told reliably from the header).
#: Preclinical drug-release MRI (revision 0003): ``dce`` (DCE-MRI signal, frames in time),
#: ``vfa`` (variable-flip-angle T1 mapping; one frame per flip angle, angles in the sidecar's
#: ``FlipAngles``), ``cest`` (Z-spectrum; one frame per saturation offset, ``OffsetsPpm``),
#: ``delta_r2star`` and ``delta_r1`` (relaxation-rate changes of the carrier label and the
#: released drug, one frame per imaging time point), ``vessel_map`` (vessel surface per
#: tissue volume, 1/µm) and ``temperature`` (°C, MR thermometry during heating).
SERIES_ROLES = ("dynamic_pet", "static_pet", "t1", "t1c", "flair", "ct", "spect", "other",
                "dce", "vfa", "cest", "delta_r2star", "delta_r1", "vessel_map", "temperature")
#: Format the series arrived in.
ORIGINAL_FORMATS = ("nifti", "dicom")
#: Who drew a mask: a user, the demo generator, or an engine.
MASK_SOURCES = ("user", "demo", "computed")

#: Stable constraint names, so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with the naming convention and type map of the schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSONType,
        datetime: DateTime(timezone=True),
        date: Date(),
    }


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    synthetic: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    studies: Mapped[list[Study]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True)


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    description: Mapped[str | None] = mapped_column(String(256))
    study_date: Mapped[date | None]
    site: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="Series.id")
    masks: Mapped[list[Mask]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="Mask.id")
    results: Mapped[list[Result]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="Result.id")
    labels: Mapped[list[Label]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True, order_by="Label.id")


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (
        CheckConstraint(_in("role", SERIES_ROLES), name="role"),
        CheckConstraint(_in("original_format", ORIGINAL_FORMATS), name="original_format"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(String(8))
    role: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(256))
    #: Canonical NIfTI in the store, relative to the data directory: what viewers load.
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    #: Its PET-BIDS JSON sidecar in the store (None when the writer made none).
    sidecar_path: Mapped[str | None] = mapped_column(String(512))
    sidecar_sha256: Mapped[str | None] = mapped_column(String(64))
    original_format: Mapped[str] = mapped_column(String(8))
    #: ``{"shape": [...], "spacing_mm": [...], "affine": [[...] x4]}``
    geometry: Mapped[dict[str, Any]]
    #: ``{"frame_start_s": [...], "frame_duration_s": [...], "decay_corrected": bool,
    #: "decay_reference": str}`` for dynamic series, else None.
    timing: Mapped[dict[str, Any] | None]
    units: Mapped[str] = mapped_column(String(16))
    #: :class:`core.imaging.PetDose` fields, computed from the original headers before
    #: de-identification; None for non-PET series.
    dose: Mapped[dict[str, Any] | None]
    created: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="local")

    study: Mapped[Study] = relationship(back_populates="series")
    files: Mapped[list[SeriesFile]] = relationship(
        back_populates="series", cascade="all, delete-orphan", passive_deletes=True, order_by="SeriesFile.id")


class SeriesFile(Base):
    __tablename__ = "series_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    #: Neutral file name (``IM00001.dcm``, ``image.nii.gz``, ``image.json``): never the
    #: original name, which may carry identifiers.
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)

    series: Mapped[Series] = relationship(back_populates="files")


class Mask(Base):
    __tablename__ = "masks"
    __table_args__ = (CheckConstraint(_in("source", MASK_SOURCES), name="source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    #: Series whose grid the mask is drawn on (None when not known).
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sidecar_path: Mapped[str | None] = mapped_column(String(512))
    sidecar_sha256: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    n_voxels: Mapped[int] = mapped_column(BigInteger)
    volume_ml: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="local")

    study: Mapped[Study] = relationship(back_populates="masks")


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (Index("ix_results_study_kind", "study_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]]
    code_version: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="local")
    artefact_path: Mapped[str | None] = mapped_column(String(512))
    artefact_sha256: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]]

    study: Mapped[Study] = relationship(back_populates="results")


class CohortResult(Base):
    """A computation over several studies (e.g. a model evaluated on a cohort).

    ``study_ids`` lists the studies it used, in order; deleting a study does not delete
    the cohort result, which keeps the pseudonymous ids it was computed on.
    """

    __tablename__ = "cohort_results"
    __table_args__ = (Index("ix_cohort_results_kind", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]]
    study_ids: Mapped[list[int]] = mapped_column(JSONType)
    code_version: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="local")
    artefact_path: Mapped[str | None] = mapped_column(String(512))
    artefact_sha256: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]]


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("study_id", "source", name="uq_labels_study_source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    #: For example ``"progression"`` or ``"radionecrosis"``.
    diagnosis: Mapped[str] = mapped_column(String(64))
    #: ``"synthetic ground truth"``, ``"histology"``, ``"clinical follow-up"``, ...
    source: Mapped[str] = mapped_column(String(64))
    #: Molecular status, e.g. ``{"idh": "mutant", "codeletion_1p19q": false}``.
    molecular: Mapped[dict[str, Any]]
    #: Anything else the source states (the generator's ground truth, a report id, ...).
    details: Mapped[dict[str, Any]]
    set_by: Mapped[str] = mapped_column(String(64), default="local")
    updated: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="labels")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    who: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]]
