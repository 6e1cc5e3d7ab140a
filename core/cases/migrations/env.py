"""Alembic environment of the case database.

Run by :func:`core.cases.db.init_db` (which hands over an open connection in
``config.attributes["connection"]``) or by the ``alembic`` command line with
``-c core/cases/alembic.ini`` (URL from ``THERABOARD_DB_URL``). Migrations on SQLite
run in batch mode so that later ``ALTER TABLE`` steps work there too. A batch step rebuilds
a table (copy, drop, rename); with foreign keys on, SQLite's drop would first delete the
table's rows and cascade to the tables that refer to it (a series' files, its masks), so
foreign keys are switched off for the migration (outside any transaction, where SQLite
honours the pragma), checked with ``PRAGMA foreign_key_check`` at the end, and switched on again.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from core.cases.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    """Run the migrations on ``connection``; on SQLite it must not be inside a transaction."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        if connection.in_transaction():
            connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        if connection.exec_driver_sql("PRAGMA foreign_keys").scalar() != 0:
            raise RuntimeError("SQLite foreign keys could not be switched off for the migration (a transaction "
                               "was already open); a table rebuild would cascade deletes, so nothing was changed")
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows whose references are broken: {broken[:5]}")
    finally:
        if sqlite:
            if connection.in_transaction():
                connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def run_migrations_offline() -> None:
    """Emit SQL for ``alembic upgrade --sql`` without a database."""
    from core import config as tb_config

    context.configure(
        url=config.attributes.get("url") or tb_config.db_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the caller's connection, or one made from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from core.cases.db import make_engine

    engine = make_engine(config.attributes.get("url"))
    try:
        with engine.connect() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
