"""Bringing a database to the schema this code knows, with Alembic, on first use.

`Store.open` calls `upgrade_to_head`, so nobody runs migrations by hand; `alembic -c
db/alembic.ini upgrade head` does the same through `db/env.py`. Two things make that safe with
several workers starting at once: PostgreSQL serialises migrations with an advisory lock
(`MIGRATION_LOCK_ID`, taken in `db/env.py`) and SQLite with `BEGIN IMMEDIATE`; and within one
process a lock keeps two threads out of Alembic's module-level migration context. A database
written by a newer studio-nova is refused rather than touched.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from studio_nova.errors import StoreError
from studio_nova.store.engine import IMMEDIATE, error_reason, safe_url

# Serialises concurrent migrations of one PostgreSQL database (any constant shared by all).
MIGRATION_LOCK_ID = 0x5A0D_10A0
# Alembic keeps the running migration's context in a module-level proxy, so two threads of one
# process must not migrate at the same time (other processes are held off by the database).
_MIGRATING = threading.Lock()


def migrations_folder() -> Path:
    """Where the Alembic scripts live (the `db/` folder, installed as studio_nova_migrations)."""
    try:
        import studio_nova_migrations
    except ImportError as exc:
        raise StoreError(
            "the store's migrations (package studio_nova_migrations, folder db/) are not "
            "importable; install studio-nova (pip install -e .)"
        ) from exc
    return Path(studio_nova_migrations.__file__).resolve().parent


def migration_config() -> Config:
    """An Alembic config for programmatic use: no ini file, so the host's logging is left alone."""
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()).replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database to the newest schema this code knows (a no-op when it is there)."""
    config = migration_config()
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    where = safe_url(engine.url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
        if current == heads:
            return
        known = {revision.revision for revision in script.walk_revisions()}
        if current - known:
            raise StoreError(
                f"store {where!r} is at schema revision {sorted(current - known)}, which this "
                "version of studio-nova does not know (a newer studio-nova wrote it); "
                "upgrade studio-nova"
            )
        with _MIGRATING, engine.connect() as connection:
            connection.execution_options(**{IMMEDIATE: True})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as exc:
        raise StoreError(f"cannot open store {where!r}: {error_reason(exc)}") from exc
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreError(f"cannot migrate store {where!r}: {error_reason(exc)}") from exc
