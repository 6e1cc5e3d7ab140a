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
        assert current_revision(engine) == head_revision() == "0003"
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


def _series_with_role(conn, role: str) -> None:
    conn.execute(text("INSERT INTO patients (pseudonym, synthetic, created) VALUES (:n, false, CURRENT_TIMESTAMP)"),
                 {"n": f"P-{role}"})
    pid = conn.execute(text("SELECT max(id) FROM patients")).scalar_one()
    conn.execute(text("INSERT INTO studies (patient_id, created) VALUES (:p, CURRENT_TIMESTAMP)"), {"p": pid})
    sid = conn.execute(text("SELECT max(id) FROM studies")).scalar_one()
    conn.execute(text(
        "INSERT INTO series (study_id, modality, role, path, sha256, original_format, geometry, units, "
        "created, created_by) VALUES (:s, 'MR', :r, 'p', 's', 'nifti', '{}', 'a.u.', CURRENT_TIMESTAMP, 'x')"),
        {"s": sid, "r": role})


def test_revision_0003_adds_the_preclinical_mri_roles_and_downgrades(case_db_url):
    from alembic import command

    from core.cases.db import alembic_config

    engine = init_db(case_db_url)
    try:
        with engine.begin() as conn:
            _series_with_role(conn, "cest")
        with pytest.raises(IntegrityError, match="ck_series_role|CHECK constraint failed"):
            with engine.begin() as conn:
                conn.execute(text("UPDATE series SET role = 'xray'"))
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        command.downgrade(cfg, "0002")
        assert current_revision(engine) == "0002"
        with engine.begin() as conn:  # series of the new roles go with the downgrade; the old CHECK is back
            assert conn.execute(text("SELECT count(*) FROM series")).scalar_one() == 0
        with pytest.raises(IntegrityError, match="ck_series_role|CHECK constraint failed"):
            with engine.begin() as conn:
                _series_with_role(conn, "dce")
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            _series_with_role(conn, "dce")
    finally:
        engine.dispose()


def test_upgrading_a_filled_store_to_0003_keeps_every_row(case_db_url):
    """SQLite rebuilds ``series`` for the new CHECK: the cascade to its files and masks must not fire."""
    from alembic import command

    from core.cases.db import alembic_config

    engine = make_engine(case_db_url)
    try:
        cfg = alembic_config(engine.url.render_as_string(hide_password=False))
        command.upgrade(cfg, "0002")
        with engine.begin() as conn:
            _series_with_role(conn, "ct")
            conn.execute(text("INSERT INTO series_files (series_id, name, path, sha256, size_bytes) "
                              "VALUES (1, 'image.nii.gz', 'p', 's', 10)"))
            conn.execute(text("INSERT INTO masks (study_id, series_id, name, path, sha256, source, n_voxels, "
                              "volume_ml, created, created_by) VALUES (1, 1, 'tumour', 'm', 's', 'demo', 5, 0.1, "
                              "CURRENT_TIMESTAMP, 'x')"))
        init_db(engine=engine)
        assert current_revision(engine) == "0003"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM series_files")).scalar_one() == 1
            assert conn.execute(text("SELECT series_id FROM masks")).scalar_one() == 1
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
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
    assert current_revision(make_engine(env["THERABOARD_DB_URL"])) == "0003"
    sql = subprocess.run([*cmd, "upgrade", "head", "--sql"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert sql.returncode == 0 and "CREATE TABLE series" in sql.stdout
