"""Alembic environment of the studio-nova store.

Two ways in, one behaviour:
- `Store.open(url)` passes its own connection in `config.attributes["connection"]`;
- `alembic -c db/alembic.ini [-x url=URL] upgrade head` builds an engine from the URL
  (`-x url`, else STUDIO_NOVA_DATABASE_URL, else `sqlalchemy.url`).

Both use the store's engine settings (SQLite WAL, foreign keys, busy timeout, BEGIN IMMEDIATE)
so a migration run by hand behaves like the automatic one, and both run all pending migrations in
one transaction that is serialised against a concurrent migration of the same database.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from studio_nova.errors import StoreError
from studio_nova.store.engine import IMMEDIATE, create_store_engine
from studio_nova.store.migrations import MIGRATION_LOCK_ID
from studio_nova.store.tables import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name)


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("STUDIO_NOVA_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise StoreError(
            "no database to migrate: pass -x url=URL, set STUDIO_NOVA_DATABASE_URL, "
            "or set sqlalchemy.url in alembic.ini"
        )
    return url


def _migrate(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite supports transactional DDL once pysqlite no longer issues its own BEGIN
        # (the store's engine hooks take care of that), so a failed migration leaves nothing.
        transactional_ddl=True,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two workers opening a fresh database at once: the second waits, then finds head.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_store_engine(_url())
    try:
        with engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE: True})
            _migrate(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
