"""Engines and schema migrations of the case database.

The schema is created and upgraded only by Alembic migrations
(``core/cases/migrations/versions``), run programmatically by :func:`init_db`; there is
no ``create_all`` and no autogenerate at run time. The same migrations run from the
command line::

    alembic -c core/cases/alembic.ini upgrade head      # URL from THERABOARD_DB_URL
    python -c "from core.cases.db import init_db; init_db()"

Backends: SQLite (default, ``sqlite:///<data>/theraboard.db``; foreign keys are
switched on for every connection) and PostgreSQL through psycopg 3
(``postgresql+psycopg://user:password@host:port/dbname``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from core import config

__all__ = ["make_engine", "init_db", "alembic_config", "head_revision", "current_revision"]

_HERE = Path(__file__).resolve().parent
#: Key of the PostgreSQL advisory lock held while migrating ("TBCASES" in ASCII).
_MIGRATION_LOCK = 0x5442434153455300 >> 8


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (default :func:`core.config.db_url`), configured per backend.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL. ``postgresql://`` is taken to mean psycopg 3.

    Returns
    -------
    sqlalchemy.Engine
        For SQLite, every connection has ``PRAGMA foreign_keys=ON`` and waits up to 30 s
        for a lock; an in-memory database shares one connection.
    """
    url_obj = make_url(url or config.db_url())
    if url_obj.drivername == "postgresql":
        url_obj = url_obj.set(drivername="postgresql+psycopg")
    if url_obj.get_backend_name() == "sqlite":
        kwargs: dict = {"connect_args": {"timeout": 30}}
        if url_obj.database in (None, "", ":memory:"):
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            Path(url_obj.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url_obj, **kwargs)
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return create_engine(url_obj, pool_pre_ping=True)


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration of the shipped migrations (``core/cases/alembic.ini``).

    ``url`` is handed to ``env.py`` as an attribute, not through the ini file, so that
    passwords with ``%`` need no escaping.
    """
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    """Revision id of the newest migration script."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """Revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def init_db(url: str | None = None, *, engine: Engine | None = None) -> Engine:
    """Create or upgrade the case database to the newest schema and return its engine.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL; default :func:`core.config.db_url`.
    engine : sqlalchemy.Engine, optional
        Use this engine instead of making one from ``url``.

    Returns
    -------
    sqlalchemy.Engine

    Examples
    --------
    >>> engine = init_db("sqlite://")                     # doctest: +SKIP
    >>> current_revision(engine) == head_revision()        # doctest: +SKIP
    True
    """
    engine = engine or make_engine(url)
    if current_revision(engine) == head_revision():
        return engine
    cfg = alembic_config()
    if engine.dialect.name == "sqlite":  # env.py manages the transaction (foreign keys off while rebuilding)
        with engine.connect() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
        return engine
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # two processes starting at once: one migrates
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    return engine
