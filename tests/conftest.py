"""Shared test fixtures: case databases on SQLite and on a real PostgreSQL server.

``case_db_url`` is parametrised over both backends, so every test that uses it runs
twice. The PostgreSQL server is started once per session by pytest-postgresql
(``postgresql_proc``) on a free port in pytest's temp dir, through
``tests/support/pg_ctl.sh``, which runs ``pg_ctl`` as the ``postgres`` user when the
tests run as root. Each test gets a fresh database.

Without PostgreSQL the PostgreSQL variants *fail* (install it with
``apt-get install -y postgresql``); set ``THERABOARD_SKIP_PG=1`` to skip them on purpose.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from pytest_postgresql import factories
from pytest_postgresql.janitor import DatabaseJanitor

PG_CTL_WRAPPER = Path(__file__).resolve().parent / "support" / "pg_ctl.sh"
def _skip_pg() -> bool:
    return os.environ.get("THERABOARD_SKIP_PG", "").strip() == "1"


# PostgreSQL runs unless THERABOARD_SKIP_PG=1 says otherwise; a missing server fails, never skips.
BACKENDS = ("sqlite", pytest.param("postgresql", marks=[
    pytest.mark.postgres, pytest.mark.skipif(_skip_pg(), reason="THERABOARD_SKIP_PG=1")]))

if not os.access(PG_CTL_WRAPPER, os.X_OK):  # a checkout may lose the exec bit
    PG_CTL_WRAPPER.chmod(0o755)

case_postgresql_proc = factories.postgresql_proc(executable=str(PG_CTL_WRAPPER), port=None)


@pytest.fixture(params=BACKENDS)
def case_db_url(request, tmp_path):
    """SQLAlchemy URL of an empty case database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}"
        return
    try:
        proc = request.getfixturevalue("case_postgresql_proc")
    except Exception as err:  # noqa: BLE001 - turn any start-up failure into a clear test failure
        pytest.fail(f"PostgreSQL could not be started ({type(err).__name__}: {err}). Install it "
                    "(apt-get install -y postgresql) or set THERABOARD_SKIP_PG=1 to skip these tests.",
                    pytrace=False)
    dbname = f"tb_{uuid.uuid4().hex[:16]}"
    with DatabaseJanitor(user=proc.user, host=proc.host, port=proc.port, dbname=dbname,
                         password=proc.password):
        yield f"postgresql+psycopg://{proc.user}@{proc.host}:{proc.port}/{dbname}"


@pytest.fixture
def case_repo(case_db_url, tmp_path):
    """A migrated :class:`~core.cases.repository.CaseRepository` with its own data directory."""
    from core.cases.repository import CaseRepository

    repo = CaseRepository(case_db_url, tmp_path / "data")
    try:
        yield repo
    finally:
        repo.close()
