"""Schema migrations on SQLite and PostgreSQL: programmatic upgrade, models match the
migration, foreign keys enforced, and the alembic command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from core.cases.db import current_revision, head_revision, init_db, make_engine
from core.cases.models import Base

ROOT = Path(__file__).resolve().parents[2]
NEW_PATIENT = text("INSERT INTO patients (pseudonym, synthetic, created) VALUES ('P', false, CURRENT_TIMESTAMP)")


def test_init_db_upgrades_to_head_and_matches_the_models(case_db_url):
    engine = init_db(case_db_url)
    try:
        assert current_revision(engine) == head_revision() == "0002"
        assert set(inspect(engine).get_table_names()) >= {
            "patients", "studies", "series", "series_files", "masks", "results", "labels", "audit_events"}
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
        assert init_db(engine=engine) is engine  # already at head: nothing to do
    finally:
        engine.dispose()


def test_foreign_keys_and_constraints_are_enforced(case_db_url):
    engine = init_db(case_db_url)
    try:
        with pytest.raises(IntegrityError):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO studies (patient_id, created) VALUES (12345, CURRENT_TIMESTAMP)"))
        with engine.begin() as conn:
            conn.execute(NEW_PATIENT)
            pid = conn.execute(text("SELECT id FROM patients")).scalar_one()
            conn.execute(text("INSERT INTO studies (patient_id, created) VALUES (:p, CURRENT_TIMESTAMP)"), {"p": pid})
        with pytest.raises(IntegrityError):
            with engine.begin() as conn:
                conn.execute(NEW_PATIENT)
        with pytest.raises(IntegrityError):  # CHECK on the role
            with engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO series (study_id, modality, role, path, sha256, original_format, geometry, units, "
                    "created, created_by) VALUES (1, 'PT', 'xray', 'p', 's', 'nifti', '{}', 'Bq/ml', "
                    "CURRENT_TIMESTAMP, 'x')"))
        with engine.begin() as conn:  # deleting a patient deletes its studies
            conn.execute(text("DELETE FROM patients"))
            assert conn.execute(text("SELECT count(*) FROM studies")).scalar_one() == 0
    finally:
        engine.dispose()


def test_plain_postgresql_url_means_psycopg3():
    engine = make_engine("postgresql://u@localhost:1/db")
    assert engine.dialect.driver == "psycopg"


def test_alembic_command_line(tmp_path):
    env = {**os.environ, "THERABOARD_DATA_DIR": str(tmp_path), "THERABOARD_DB_URL": f"sqlite:///{tmp_path}/cli.db"}
    cmd = [sys.executable, "-m", "alembic", "-c", "core/cases/alembic.ini"]
    done = subprocess.run([*cmd, "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert current_revision(make_engine(env["THERABOARD_DB_URL"])) == "0002"
    sql = subprocess.run([*cmd, "upgrade", "head", "--sql"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert sql.returncode == 0 and "CREATE TABLE series" in sql.stdout
