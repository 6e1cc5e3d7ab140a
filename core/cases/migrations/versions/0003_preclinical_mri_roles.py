"""Series roles of preclinical drug-release MRI: DCE, VFA T1 mapping, CEST, drug relaxometry,
vessel-density and temperature maps.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The lists as they are at this revision (not imported from the models, which move on).
OLD_ROLES = ("dynamic_pet", "static_pet", "t1", "t1c", "flair", "ct", "spect", "other")
NEW_ROLES = OLD_ROLES + ("dce", "vfa", "cest", "delta_r2star", "delta_r1", "vessel_map", "temperature")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _series_table(roles: tuple[str, ...]) -> sa.Table:
    """The ``series`` table as it stands before the change (revision 0001's definition, frozen here).

    Handed to batch mode as ``copy_from``: SQLite rebuilds the table from it instead of
    reflecting it (which offline ``--sql`` runs cannot do).
    """
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    return sa.Table(
        "series", sa.MetaData(),
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
        sa.Column("geometry", json, nullable=False),
        sa.Column("timing", json, nullable=True),
        sa.Column("units", sa.String(16), nullable=False),
        sa.Column("dose", json, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.CheckConstraint(_in("role", roles), name=op.f("ck_series_role")),
        sa.CheckConstraint(_in("original_format", ("nifti", "dicom")), name=op.f("ck_series_original_format")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE",
                                name=op.f("fk_series_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.Index(op.f("ix_series_study_id"), "study_id"),
        sa.Index(op.f("ix_series_sha256"), "sha256"),
    )


def _replace_role_check(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    # batch mode: SQLite rebuilds the table, PostgreSQL alters it in place
    with op.batch_alter_table("series", copy_from=_series_table(old)) as batch:
        batch.drop_constraint(op.f("ck_series_role"), type_="check")
        batch.create_check_constraint("role", _in("role", new))


def upgrade() -> None:
    _replace_role_check(OLD_ROLES, NEW_ROLES)


def downgrade() -> None:
    op.execute(f"DELETE FROM series WHERE NOT ({_in('role', OLD_ROLES)})")
    _replace_role_check(NEW_ROLES, OLD_ROLES)
