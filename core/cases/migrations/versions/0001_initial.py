"""Initial case-store schema: patients, studies, series (+ files), masks, results,
labels and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2025-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERIES_ROLES = ("dynamic_pet", "static_pet", "t1", "t1c", "flair", "ct", "spect", "other")
ORIGINAL_FORMATS = ("nifti", "dicom")
MASK_SOURCES = ("user", "demo", "computed")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("created", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_patients_pseudonym")),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("reviewed_at", _ts(), nullable=True),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("created", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="CASCADE",
                                name=op.f("fk_studies_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
    )
    op.create_index(op.f("ix_studies_patient_id"), "studies", ["patient_id"])

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(8), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sidecar_path", sa.String(512), nullable=True),
        sa.Column("sidecar_sha256", sa.String(64), nullable=True),
        sa.Column("original_format", sa.String(8), nullable=False),
        sa.Column("geometry", _json(), nullable=False),
        sa.Column("timing", _json(), nullable=True),
        sa.Column("units", sa.String(16), nullable=False),
        sa.Column("dose", _json(), nullable=True),
        sa.Column("created", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.CheckConstraint(_in("role", SERIES_ROLES), name=op.f("ck_series_role")),
        sa.CheckConstraint(_in("original_format", ORIGINAL_FORMATS), name=op.f("ck_series_original_format")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_series_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
    )
    op.create_index(op.f("ix_series_study_id"), "series", ["study_id"])
    op.create_index(op.f("ix_series_sha256"), "series", ["sha256"])

    op.create_table(
        "series_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], ondelete="CASCADE",
                                name=op.f("fk_series_files_series_id_series")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series_files")),
    )
    op.create_index(op.f("ix_series_files_series_id"), "series_files", ["series_id"])
    op.create_index(op.f("ix_series_files_sha256"), "series_files", ["sha256"])

    op.create_table(
        "masks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sidecar_path", sa.String(512), nullable=True),
        sa.Column("sidecar_sha256", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("n_voxels", sa.BigInteger(), nullable=False),
        sa.Column("volume_ml", sa.Float(), nullable=False),
        sa.Column("created", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.CheckConstraint(_in("source", MASK_SOURCES), name=op.f("ck_masks_source")),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], ondelete="SET NULL",
                                name=op.f("fk_masks_series_id_series")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_masks_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_masks")),
    )
    op.create_index(op.f("ix_masks_study_id"), "masks", ["study_id"])
    op.create_index(op.f("ix_masks_sha256"), "masks", ["sha256"])

    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("parameters", _json(), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("created", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("artefact_path", sa.String(512), nullable=True),
        sa.Column("artefact_sha256", sa.String(64), nullable=True),
        sa.Column("summary", _json(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_results_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
    )
    op.create_index("ix_results_study_kind", "results", ["study_id", "kind"])

    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("diagnosis", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("molecular", _json(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("updated", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_labels_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("study_id", "source", name="uq_labels_study_source"),
    )
    op.create_index(op.f("ix_labels_study_id"), "labels", ["study_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("who", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("details", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])
    op.create_index("ix_audit_events_object", "audit_events", ["object_type", "object_id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("labels")
    op.drop_table("results")
    op.drop_table("masks")
    op.drop_table("series_files")
    op.drop_table("series")
    op.drop_table("studies")
    op.drop_table("patients")
