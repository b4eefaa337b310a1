"""The store's engine: from a URL to a configured SQLAlchemy engine, and nothing else.

It is its own module because three places need it and none of them needs the rest of the store:
`Store.open`, the Alembic environment (`db/env.py`, so a migration run by hand behaves like the
automatic one) and the tests. It decides three things:
- which URLs are accepted (a bare `postgresql://` means psycopg2) and how a URL may be shown
  (`safe_url`: never with its password);
- how SQLite behaves: WAL, foreign keys, a busy timeout, and transactions the store opens
  itself, so a writer can begin with `BEGIN IMMEDIATE` (the `IMMEDIATE` execution option) and wait
  for another writer instead of failing with "database is locked";
- how a driver's error reads in a `StoreError` (`error_reason`).
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from studio_nova.errors import StoreError

# Execution option read by the SQLite `begin` hook: open the transaction as a writer.
IMMEDIATE = "studio_nova_immediate"
SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 10


def safe_url(url: str | URL) -> str:
    """The URL as it may appear in a message or log: password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def error_reason(exc: BaseException) -> str:
    """The driver's own words, on one line: they say what is wrong (refused, no such db, ...)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(line.strip() for line in str(cause).splitlines() if line.strip())
    return text or type(cause).__name__


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"store URL {safe_url(url)!r} is not a database URL ({exc}); "
            "expected e.g. sqlite:///path/to/studio-nova.db or postgresql://user@host/db"
        ) from exc
    # A bare postgresql:// means psycopg2 (the driver studio-nova ships with); SQLAlchemy 2.1
    # would pick psycopg 3. `postgres://` is the spelling some hosting tools hand out.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _sqlite_file(parsed: URL) -> Path | None:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL once (the mode is stored in the file).

    Switching needs an exclusive lock and SQLite answers SQLITE_BUSY at once instead of using
    the busy timeout, so two workers opening a new store together retry here for a while.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() in ("wal", "memory"):
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _install_sqlite_hooks(engine: Engine) -> None:
    """Let the store, not pysqlite, decide how a transaction begins (deferred or immediate).

    pysqlite's own implicit BEGIN is deferred: two writers that both read first would then fail
    with "database is locked" instead of waiting. Emitting BEGIN ourselves lets writers open with
    BEGIN IMMEDIATE, which waits on the busy timeout and then sees the other's commit.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # safe under WAL, much faster
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_store_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine configured for the store (SQLite hooks, PostgreSQL timeouts); no I/O yet
    except creating the SQLite file's folder."""
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"store {safe_url(parsed)!r}: cannot create the folder of the SQLite file "
                    f"({exc.strerror or exc})",
                    path=path.parent,
                ) from exc
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
        if parsed.get_driver_name() == "psycopg2" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError, TypeError) as exc:
        raise StoreError(
            f"store URL {safe_url(parsed)!r} cannot be used: {exc}; "
            "supported: sqlite:///FILE and postgresql://USER@HOST/DB (psycopg2)"
        ) from exc
    if backend == "sqlite":
        _install_sqlite_hooks(engine)
    return engine
