"""Cohort results: computations over several studies (model training and evaluation).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "cohort_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("parameters", _json(), nullable=False),
        sa.Column("study_ids", _json(), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("artefact_path", sa.String(512), nullable=True),
        sa.Column("artefact_sha256", sa.String(64), nullable=True),
        sa.Column("summary", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohort_results")),
    )
    op.create_index("ix_cohort_results_kind", "cohort_results", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_cohort_results_kind", table_name="cohort_results")
    op.drop_table("cohort_results")
