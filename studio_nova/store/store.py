"""The store: one class over SQLAlchemy that records everything a step produces.

Every call opens its own session and returns frozen records, never live ORM objects, so a record
can cross threads, Prefect tasks or a JSON dump without dragging a session along. Writes that read
before they write (claims, version numbers, lifecycle checks) are serialised: on SQLite by opening
the transaction with `BEGIN IMMEDIATE`, on PostgreSQL by row locks (`FOR UPDATE`, `SKIP LOCKED`
for the farm's claims). That is what makes a rerun, or a second worker, safe.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import ColumnElement, Engine, Select, create_engine, event, func, or_, select
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from studio_nova.errors import ReviewError, StateTransitionError, StoreError
from studio_nova.naming import first_free
from studio_nova.store.models import (
    ALLOWED_TRANSITIONS,
    Chunk,
    ChunkStatus,
    EditRequest,
    Keyframe,
    Render,
    RenderStatus,
    Review,
    ReviewDecision,
    Shot,
    ShotStatus,
    Timeline,
    utcnow,
)

# Execution option read by the SQLite `begin` hook: open the transaction as a writer.
IMMEDIATE = "studio_nova_immediate"
SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 10
DEFAULT_STALE_AFTER = timedelta(hours=1)
DEFAULT_MAX_ATTEMPTS = 3
# Serialises concurrent migrations of one PostgreSQL database (any constant shared by all).
MIGRATION_LOCK_ID = 0x5A0D_10A0
# Alembic keeps the running migration's context in a module-level proxy, so two threads of one
# process must not migrate at the same time (other processes are held off by the database).
_MIGRATING = threading.Lock()


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class TimelineRecord:
    id: int
    path: str
    name: str
    created_at: datetime
    updated_at: datetime
    slug: str | None = None  # file name of its conformed outputs (unique in the store)


@dataclass(frozen=True, slots=True)
class ShotRecord:
    id: int
    timeline_id: int
    key: str
    name: str
    media: str
    first_frame: int
    last_frame: int
    rate: Fraction
    width: int
    height: int
    bit_depth: int
    status: str
    error: str | None
    edit_version: int
    edit: dict[str, Any]
    fingerprint: str
    worker: str | None
    claimed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    slug: str | None = None  # folder name of its keyframes / renders / work (unique in the store)
    render_id: int | None = None  # the render its clip is conformed to

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1


@dataclass(frozen=True, slots=True)
class EditRequestRecord:
    id: int
    shot_id: int
    version: int
    fingerprint: str
    media: str
    first_frame: int
    last_frame: int
    edit: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyframeFile:
    """One keyframe handed to `Store.add_keyframe_version` (paths as the editor wrote them)."""

    source_frame: int
    original_path: str | os.PathLike[str]
    edited_path: str | os.PathLike[str]
    mask_path: str | os.PathLike[str] | None = None


@dataclass(frozen=True, slots=True)
class KeyframeRecord:
    id: int
    shot_id: int
    version: int
    edit_version: int
    source_frame: int
    original_path: str
    edited_path: str
    mask_path: str | None
    editor: str
    seed: int
    instruction: str
    info: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    id: int
    shot_id: int
    keyframe_version: int | None
    decision: str
    reviewer: str
    notes: str
    new_instruction: str | None
    new_seed: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RenderRecord:
    id: int
    shot_id: int
    version: int
    edit_version: int
    codec: str
    status: str
    path: str | None
    proxy_path: str | None
    qc: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    identity: str | None = None
    inputs: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """The version as it appears in file names: v001, v002, ..."""
        return f"v{self.version:03d}"


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    id: int
    render_id: int
    shot_id: int
    render_version: int
    index: int
    first_frame: int
    last_frame: int
    status: str
    attempts: int
    worker: str | None
    output: str | None
    error: str | None
    updated_at: datetime


def _timeline_record(row: Timeline) -> TimelineRecord:
    return TimelineRecord(row.id, row.path, row.name, row.created_at, row.updated_at, row.slug)


def _shot_record(row: Shot, edit: dict[str, Any]) -> ShotRecord:
    return ShotRecord(
        id=row.id, timeline_id=row.timeline_id, key=row.key, name=row.name, media=row.media,
        first_frame=row.first_frame, last_frame=row.last_frame,
        rate=Fraction(row.rate_num, row.rate_den), width=row.width, height=row.height,
        bit_depth=row.bit_depth, status=row.status, error=row.error,
        edit_version=row.edit_version, edit=dict(edit), fingerprint=row.fingerprint,
        worker=row.worker, claimed_at=row.claimed_at, created_at=row.created_at,
        updated_at=row.updated_at, slug=row.slug, render_id=row.render_id,
    )


def _edit_request_record(row: EditRequest) -> EditRequestRecord:
    return EditRequestRecord(
        row.id, row.shot_id, row.version, row.fingerprint, row.media, row.first_frame,
        row.last_frame, dict(row.edit), row.created_at,
    )


def _keyframe_record(row: Keyframe) -> KeyframeRecord:
    return KeyframeRecord(
        row.id, row.shot_id, row.version, row.edit_version, row.source_frame, row.original_path,
        row.edited_path, row.mask_path, row.editor, row.seed, row.instruction, dict(row.info),
        row.created_at,
    )


def _review_record(row: Review) -> ReviewRecord:
    return ReviewRecord(
        row.id, row.shot_id, row.keyframe_version, row.decision, row.reviewer, row.notes,
        row.new_instruction, row.new_seed, row.created_at,
    )


def _render_record(row: Render) -> RenderRecord:
    return RenderRecord(
        row.id, row.shot_id, row.version, row.edit_version, row.codec, row.status, row.path,
        row.proxy_path, dict(row.qc) if row.qc is not None else None, row.error,
        row.created_at, row.finished_at, row.identity,
        dict(row.inputs) if row.inputs is not None else None,
    )


def _chunk_record(row: Chunk) -> ChunkRecord:
    return ChunkRecord(
        row.id, row.render_id, row.shot_id, row.render_version, row.index, row.first_frame,
        row.last_frame, row.status, row.attempts, row.worker, row.output, row.error,
        row.updated_at,
    )


# --------------------------------------------------------------------------------------------
# Engine and migrations


def safe_url(url: str | URL) -> str:
    """The URL as it may appear in a message or log: password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _reason(exc: BaseException) -> str:
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
        raise StoreError(f"cannot open store {where!r}: {_reason(exc)}") from exc
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreError(f"cannot migrate store {where!r}: {_reason(exc)}") from exc


# --------------------------------------------------------------------------------------------
# Validation helpers


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _int(name: str, value: object, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _json(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON-serialisable: {exc}") from exc


def _rate(value: object) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (Fraction, int, float)):
        raise ValueError(f"rate must be a Fraction, got {value!r}")
    rate = Fraction(value)
    if isinstance(value, float):  # OTIO's 23.976023976... is 24000/1001, not its binary digits
        rate = rate.limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {value!r}")
    return rate


def _status(value: str | ShotStatus) -> ShotStatus:
    try:
        return ShotStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in ShotStatus)
        raise ValueError(f"status must be one of {allowed}; got {value!r}") from None


def _shot_select() -> Select[tuple[Shot, dict[str, Any]]]:
    """Shots joined with their current edit request, so a record carries what was asked."""
    return select(Shot, EditRequest.edit).join(
        EditRequest, (EditRequest.shot_id == Shot.id) & (EditRequest.version == Shot.edit_version)
    )


def _transition_error(shot: Shot, to: ShotStatus, why: str) -> StateTransitionError:
    return StateTransitionError(
        f"cannot move shot {shot.id} (key {shot.key!r}) from {shot.status!r} to {to.value!r}: "
        f"{why}",
        shot=shot.name, shot_id=shot.id, key=shot.key, from_status=shot.status, to_status=to.value,
    )


def _move(
    shot: Shot, to: ShotStatus, *, error: str | None = None, new_render: bool = False
) -> None:
    """Apply one lifecycle step; every state change goes through here."""
    current = ShotStatus(shot.status)
    allowed = ALLOWED_TRANSITIONS[current]
    opens_render = (
        new_render
        and current in (ShotStatus.RENDERED, ShotStatus.CONFORMED)
        and to is ShotStatus.RENDERING
    )
    if to not in allowed and not opens_render:
        if current in (ShotStatus.RENDERED, ShotStatus.CONFORMED) and to is ShotStatus.RENDERING:
            why = "a rendered shot is re-rendered only through start_render (a new render version)"
        else:
            why = f"from {current.value!r} a shot may go to {', '.join(sorted(allowed))}"
        raise _transition_error(shot, to, why)
    if to is ShotStatus.FAILED and not (error and error.strip()):
        raise ValueError(f"error is required when shot {shot.id} moves to 'failed'")
    shot.status = to.value
    shot.claimed_at = None  # a claim holds for the status it was made in
    if error is not None:
        shot.error = error


def _allocate_slug(session: Session, column: Any, candidates: Sequence[str], fallback: str) -> str:
    """A name no row of `column`'s table holds yet (`studio_nova.naming.first_free`).

    Names are allocated by the store (not derived from names each time) so that any two shots,
    or two cuts, of one store get distinct output paths, whatever their names."""
    taken = session.scalars(select(column).where(column.is_not(None)))
    return first_free([c for c in candidates if c] or [fallback], taken)


# --------------------------------------------------------------------------------------------
# The store


class Store:
    """The pipeline's memory. Open with `Store.open(url)`; safe to share between threads."""

    def __init__(
        self, engine: Engine, *, stale_after: timedelta, max_attempts: int | None
    ) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.stale_after = stale_after
        self.max_attempts = max_attempts

    @classmethod
    def open(
        cls,
        url: str | URL,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        echo: bool = False,
    ) -> Store:
        """Connect, create or upgrade the schema, and return a ready store.

        `stale_after`: how long a claim (shot or running chunk) holds before another worker may
        take it over. `max_attempts`: a chunk claimed this many times is not handed out again.
        """
        if stale_after < timedelta(0):
            raise ValueError(f"stale_after must not be negative, got {stale_after}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 (or None), got {max_attempts}")
        engine = create_store_engine(url, echo=echo)
        try:
            upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, stale_after=stale_after, max_attempts=max_attempts)

    @property
    def url(self) -> str:
        """The store's URL with the password hidden."""
        return safe_url(self._engine.url)

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The underlying engine, for admin tools and tests that need plain SQL."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                if write:
                    session.connection(execution_options={IMMEDIATE: True})
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.url!r}: {_reason(exc)}") from exc

    # ---------------------------------------------------------------- lookups (inside a session)

    @staticmethod
    def _shot_row(session: Session, shot_id: int, *, lock: bool = False) -> Shot:
        row = session.get(Shot, shot_id, with_for_update=lock or None)
        if row is None:
            raise StoreError(f"no shot with id {shot_id} in the store", shot_id=shot_id)
        return row

    @staticmethod
    def _render_row(session: Session, render_id: int, *, lock: bool = False) -> Render:
        row = session.get(Render, render_id, with_for_update=lock or None)
        if row is None:
            raise StoreError(f"no render with id {render_id} in the store", render_id=render_id)
        return row

    @staticmethod
    def _chunk_row(session: Session, chunk_id: int, *, lock: bool = False) -> Chunk:
        row = session.get(Chunk, chunk_id, with_for_update=lock or None)
        if row is None:
            raise StoreError(f"no chunk with id {chunk_id} in the store", chunk_id=chunk_id)
        return row

    @staticmethod
    def _load_shot(session: Session, shot_id: int) -> ShotRecord:
        session.flush()
        row, edit = session.execute(_shot_select().where(Shot.id == shot_id)).one()
        return _shot_record(row, edit)

    def _cutoff(self, stale_after: timedelta | None) -> datetime:
        return utcnow() - (self.stale_after if stale_after is None else stale_after)

    # ---------------------------------------------------------------- timelines

    def upsert_timeline(
        self, path: str | os.PathLike[str], name: str, slugs: Sequence[str] = ()
    ) -> int:
        """The id of the timeline at `path`, created on first sight (its name kept current).
        A new timeline gets the first of `slugs` no other timeline of the store has."""
        path_text = _text("path", os.fspath(path))
        name = _text("name", name)
        with self._tx(write=True) as s:
            row = s.scalars(select(Timeline).where(Timeline.path == path_text)).one_or_none()
            if row is None:
                row = Timeline(path=path_text, name=name)
                s.add(row)
            elif row.name != name:
                row.name = name
            if row.slug is None:
                row.slug = _allocate_slug(s, Timeline.slug, slugs, "cut")
            s.flush()
            return row.id

    def timeline(self, timeline_id: int) -> TimelineRecord:
        with self._tx(write=False) as s:
            row = s.get(Timeline, timeline_id)
            if row is None:
                raise StoreError(f"no timeline with id {timeline_id} in the store")
            return _timeline_record(row)

    def timelines(self) -> list[TimelineRecord]:
        with self._tx(write=False) as s:
            return [_timeline_record(r) for r in s.scalars(select(Timeline).order_by(Timeline.id))]

    # ---------------------------------------------------------------- shots

    def upsert_shot(
        self,
        timeline_id: int,
        *,
        key: str,
        name: str,
        media: str | os.PathLike[str],
        first_frame: int,
        last_frame: int,
        rate: Fraction,
        width: int,
        height: int,
        bit_depth: int,
        edit: dict[str, Any],
        fingerprint: str,
        slugs: Sequence[str] = (),
    ) -> ShotRecord:
        """Record a shot of the cut. A new shot gets the first of `slugs` no other shot of the
        store has (its folder name). Same fingerprint: the stored shot, state kept (a rerun goes
        on where it stopped). New fingerprint: a new edit version, back to `ingested`; earlier
        edit requests, keyframes and renders stay, and an unfinished render is closed as failed
        because it renders a request that no longer stands."""
        key, name = _text("key", key), _text("name", name)
        media_text = _text("media", os.fspath(media))
        first_frame = _int("first_frame", first_frame, minimum=0)
        last_frame = _int("last_frame", last_frame, minimum=first_frame)
        frame_rate = _rate(rate)
        width = _int("width", width, minimum=1)
        height = _int("height", height, minimum=1)
        bit_depth = _int("bit_depth", bit_depth, minimum=1)
        edit = _json("edit", edit)
        fingerprint = _text("fingerprint", fingerprint)
        with self._tx(write=True) as s:
            if s.get(Timeline, timeline_id) is None:
                raise StoreError(f"no timeline with id {timeline_id} in the store", shot=name)
            row = s.scalars(
                select(Shot)
                .where(Shot.timeline_id == timeline_id, Shot.key == key)
                .with_for_update()
            ).one_or_none()
            if row is not None and row.fingerprint == fingerprint:
                row.name = name
                if row.slug is None:
                    row.slug = _allocate_slug(s, Shot.slug, slugs, "shot")
                return self._load_shot(s, row.id)
            if row is None:
                row = Shot(timeline_id=timeline_id, key=key, edit_version=1)
                row.slug = _allocate_slug(s, Shot.slug, slugs, "shot")
                s.add(row)
            else:
                row.edit_version += 1
                row.slug = row.slug or _allocate_slug(s, Shot.slug, slugs, "shot")
                row.render_id = None  # its render renders a request that no longer stands
                self._supersede_renders(s, row)
            row.name, row.media = name, media_text
            row.first_frame, row.last_frame = first_frame, last_frame
            row.rate_num, row.rate_den = frame_rate.numerator, frame_rate.denominator
            row.width, row.height, row.bit_depth = width, height, bit_depth
            row.fingerprint = fingerprint
            row.status, row.error, row.claimed_at = ShotStatus.INGESTED.value, None, None
            s.flush()
            s.add(
                EditRequest(
                    shot_id=row.id, version=row.edit_version, fingerprint=fingerprint,
                    media=media_text, first_frame=first_frame, last_frame=last_frame, edit=edit,
                )
            )
            return self._load_shot(s, row.id)

    @staticmethod
    def _supersede_renders(session: Session, shot: Shot) -> None:
        unfinished = session.scalars(
            select(Render).where(
                Render.shot_id == shot.id, Render.status == RenderStatus.RENDERING.value
            )
        )
        for render in unfinished:
            render.status = RenderStatus.FAILED.value
            render.error = f"superseded by edit version {shot.edit_version}"
            render.finished_at = utcnow()

    def shot(self, shot_id: int) -> ShotRecord:
        with self._tx(write=False) as s:
            self._shot_row(s, shot_id)
            return self._load_shot(s, shot_id)

    def shots(
        self, timeline_id: int | None = None, status: str | ShotStatus | None = None
    ) -> list[ShotRecord]:
        query = _shot_select().order_by(Shot.id)
        if timeline_id is not None:
            query = query.where(Shot.timeline_id == timeline_id)
        if status is not None:
            query = query.where(Shot.status == _status(status).value)
        with self._tx(write=False) as s:
            return [_shot_record(row, edit) for row, edit in s.execute(query)]

    def find_shots(self, name_or_key: str, timeline_id: int | None = None) -> list[ShotRecord]:
        """Shots whose name, key or folder name (slug) equals `name_or_key`, ignoring case (what
        a person types; the slug tells apart same-named shots of two cuts in one run folder)."""
        wanted = _text("name_or_key", name_or_key).lower()
        query = (
            _shot_select()
            .where(
                or_(
                    func.lower(Shot.name) == wanted,
                    func.lower(Shot.key) == wanted,
                    func.lower(Shot.slug) == wanted,
                )
            )
            .order_by(Shot.id)
        )
        if timeline_id is not None:
            query = query.where(Shot.timeline_id == timeline_id)
        with self._tx(write=False) as s:
            return [_shot_record(row, edit) for row, edit in s.execute(query)]

    def edit_requests(self, shot_id: int) -> list[EditRequestRecord]:
        """Every edit request the shot has had, oldest first."""
        with self._tx(write=False) as s:
            rows = s.scalars(
                select(EditRequest)
                .where(EditRequest.shot_id == shot_id)
                .order_by(EditRequest.version)
            )
            return [_edit_request_record(r) for r in rows]

    def set_status(
        self, shot_id: int, status: str | ShotStatus, error: str | None = None
    ) -> ShotRecord:
        """Move a shot one step of its lifecycle; `failed` needs the reason, which is kept as the
        shot's last error (a retry does not erase it)."""
        to = _status(status)
        with self._tx(write=True) as s:
            row = self._shot_row(s, shot_id, lock=True)
            _move(row, to, error=error)
            return self._load_shot(s, shot_id)

    def claim_next_shot(
        self,
        worker: str,
        status: str | ShotStatus = ShotStatus.APPROVED,
        *,
        timeline_id: int | None = None,
        stale_after: timedelta | None = None,
    ) -> ShotRecord | None:
        """Hand one unclaimed shot in `status` to `worker`, or None when there is none left.

        Two workers never get the same shot: PostgreSQL skips rows another transaction holds
        (`FOR UPDATE SKIP LOCKED`), SQLite runs claims one at a time (`BEGIN IMMEDIATE`). A claim
        ends when the shot changes status, or goes stale after `stale_after` (a dead worker).
        """
        worker = _text("worker", worker)
        wanted = _status(status)
        cutoff = self._cutoff(stale_after)
        query = (
            select(Shot)
            .where(
                Shot.status == wanted.value,
                or_(Shot.claimed_at.is_(None), Shot.claimed_at < cutoff),
            )
            .order_by(Shot.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if timeline_id is not None:
            query = query.where(Shot.timeline_id == timeline_id)
        with self._tx(write=True) as s:
            row = s.scalars(query).first()
            if row is None:
                return None
            row.worker, row.claimed_at = worker, utcnow()
            return self._load_shot(s, row.id)

    # ---------------------------------------------------------------- keyframes

    def add_keyframe_version(
        self,
        shot_id: int,
        *,
        editor: str,
        seed: int,
        instruction: str,
        info: dict[str, Any],
        frames: Sequence[KeyframeFile],
    ) -> int:
        """Record a new set of keyframes and return its version (1, 2, ...); older versions stay.

        The shot's status is not changed here: the caller moves it to `keyframes_ready` once the
        files are really there.
        """
        editor = _text("editor", editor)
        seed = _int("seed", seed)
        if not isinstance(instruction, str):
            raise ValueError(f"instruction must be a string, got {instruction!r}")
        info = _json("info", info)
        if not frames:
            raise ValueError("frames must hold at least one KeyframeFile")
        with self._tx(write=True) as s:
            shot = self._shot_row(s, shot_id, lock=True)
            seen: set[int] = set()
            for frame in frames:
                if not isinstance(frame, KeyframeFile):
                    raise ValueError(f"frames must hold KeyframeFile items, got {frame!r}")
                number = _int("source_frame", frame.source_frame)
                if not shot.first_frame <= number <= shot.last_frame:
                    raise ValueError(
                        f"keyframe source_frame {number} is outside shot {shot.name!r} "
                        f"(source frames {shot.first_frame}-{shot.last_frame})"
                    )
                if number in seen:
                    raise ValueError(f"keyframe source_frame {number} is listed twice")
                seen.add(number)
            latest = s.scalar(select(func.max(Keyframe.version)).where(Keyframe.shot_id == shot_id))
            version = (latest or 0) + 1
            for frame in sorted(frames, key=lambda f: f.source_frame):
                s.add(
                    Keyframe(
                        shot_id=shot_id, version=version, edit_version=shot.edit_version,
                        source_frame=frame.source_frame,
                        original_path=_text("original_path", os.fspath(frame.original_path)),
                        edited_path=_text("edited_path", os.fspath(frame.edited_path)),
                        mask_path=(
                            os.fspath(frame.mask_path) if frame.mask_path is not None else None
                        ),
                        editor=editor, seed=seed, instruction=instruction, info=info,
                    )
                )
            return version

    def keyframes(self, shot_id: int, version: int | None = None) -> list[KeyframeRecord]:
        """The keyframes of one version (the latest by default), in source-frame order; empty
        when the shot has none (or not that version)."""
        with self._tx(write=False) as s:
            if version is None:
                version = s.scalar(
                    select(func.max(Keyframe.version)).where(Keyframe.shot_id == shot_id)
                )
                if version is None:
                    return []
            rows = s.scalars(
                select(Keyframe)
                .where(Keyframe.shot_id == shot_id, Keyframe.version == version)
                .order_by(Keyframe.source_frame)
            )
            return [_keyframe_record(r) for r in rows]

    # ---------------------------------------------------------------- reviews

    def add_review(
        self,
        shot_id: int,
        *,
        decision: str | ReviewDecision,
        reviewer: str,
        notes: str = "",
        new_instruction: str | None = None,
        new_seed: int | None = None,
    ) -> ReviewRecord:
        """Record a decision on the shot's latest keyframes and move it to approved / rejected,
        in one transaction, so a decision and the state it implies cannot drift apart."""
        try:
            verdict = ReviewDecision(decision)
        except ValueError:
            raise ValueError(
                f"decision must be 'approved' or 'rejected', got {decision!r}"
            ) from None
        reviewer = _text("reviewer", reviewer)
        if not isinstance(notes, str):
            raise ValueError(f"notes must be a string, got {notes!r}")
        if new_seed is not None:
            new_seed = _int("new_seed", new_seed)
        with self._tx(write=True) as s:
            shot = s.get(Shot, shot_id, with_for_update=True)
            if shot is None:
                raise ReviewError(f"no shot with id {shot_id} to review", shot_id=shot_id)
            if shot.status != ShotStatus.IN_REVIEW.value:
                raise ReviewError(
                    f"shot {shot.id} (key {shot.key!r}) is {shot.status!r}, not waiting for "
                    "review; only shots in 'in_review' can be approved or rejected",
                    shot=shot.name, shot_id=shot.id, status=shot.status,
                )
            keyframe_version = s.scalar(
                select(func.max(Keyframe.version)).where(Keyframe.shot_id == shot_id)
            )
            _move(shot, ShotStatus(verdict.value))
            row = Review(
                shot_id=shot_id, keyframe_version=keyframe_version, decision=verdict.value,
                reviewer=reviewer, notes=notes, new_instruction=new_instruction,
                new_seed=new_seed,
            )
            s.add(row)
            s.flush()
            return _review_record(row)

    def reviews(self, shot_id: int) -> list[ReviewRecord]:
        """Every decision on the shot, oldest first."""
        with self._tx(write=False) as s:
            rows = s.scalars(
                select(Review)
                .where(Review.shot_id == shot_id)
                .order_by(Review.created_at, Review.id)
            )
            return [_review_record(r) for r in rows]

    # ---------------------------------------------------------------- renders

    def start_render(
        self,
        shot_id: int,
        codec: str,
        *,
        identity: str | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> RenderRecord:
        """The shot's unfinished render of its current edit and `identity` (resumed), or a new
        render version (1, 2, ... -> v001, v002); the shot moves to `rendering` either way.

        An unfinished render of another identity (the backend, the keyframes or the encoder
        changed since it started) is closed as failed, never resumed: its chunks would not fit."""
        codec = _text("codec", codec)
        if identity is not None:
            identity = _text("identity", identity)
        inputs = _json("inputs", inputs) if inputs is not None else None
        with self._tx(write=True) as s:
            shot = self._shot_row(s, shot_id, lock=True)
            unfinished = s.scalars(
                select(Render)
                .where(Render.shot_id == shot_id, Render.status == RenderStatus.RENDERING.value)
                .order_by(Render.version.desc())
            ).all()
            for render in unfinished:
                if render.edit_version == shot.edit_version and render.identity == identity:
                    _move(shot, ShotStatus.RENDERING)
                    return _render_record(render)
                render.status = RenderStatus.FAILED.value
                render.error = "superseded: what decides its pixels changed before it finished"
                render.finished_at = utcnow()
            _move(shot, ShotStatus.RENDERING, new_render=True)
            latest = s.scalar(select(func.max(Render.version)).where(Render.shot_id == shot_id))
            row = Render(
                shot_id=shot_id, version=(latest or 0) + 1, edit_version=shot.edit_version,
                codec=codec, status=RenderStatus.RENDERING.value, identity=identity,
                inputs=inputs,
            )
            s.add(row)
            s.flush()
            return _render_record(row)

    def finish_render(
        self,
        render_id: int,
        *,
        path: str | os.PathLike[str],
        proxy_path: str | os.PathLike[str] | None,
        qc: dict[str, Any],
    ) -> RenderRecord:
        """Mark a render complete (every planned chunk must be done) and the shot `rendered`."""
        path_text = _text("path", os.fspath(path))
        proxy_text = os.fspath(proxy_path) if proxy_path is not None else None
        qc = _json("qc", qc)
        with self._tx(write=True) as s:
            render = self._render_row(s, render_id, lock=True)
            shot = self._shot_row(s, render.shot_id, lock=True)
            if render.status != RenderStatus.RENDERING.value:
                raise StoreError(
                    f"render v{render.version:03d} of shot {shot.id} is {render.status!r}; "
                    "only a render in progress can be finished",
                    shot=shot.name, render_id=render_id,
                )
            unfinished = s.scalars(
                select(Chunk.index)
                .where(Chunk.render_id == render_id, Chunk.status != ChunkStatus.DONE.value)
                .order_by(Chunk.index)
            ).all()
            if unfinished:
                raise StoreError(
                    f"render v{render.version:03d} of shot {shot.id} still has chunks not done "
                    f"(indices {list(unfinished)}); finish them before the render",
                    shot=shot.name, render_id=render_id,
                )
            _move(shot, ShotStatus.RENDERED)
            shot.render_id = render.id
            render.status = RenderStatus.COMPLETE.value
            render.path, render.proxy_path, render.qc = path_text, proxy_text, qc
            render.finished_at = utcnow()
            s.flush()
            return _render_record(render)

    def link_render(self, shot_id: int, render_id: int) -> ShotRecord:
        """Make a complete render (the shot's own, or another shot's with the same identity) the
        one the shot is conformed to, and move the shot to `rendered`; nothing is rendered.
        An unfinished render of the shot is closed: the linked one replaces it."""
        with self._tx(write=True) as s:
            shot = self._shot_row(s, shot_id, lock=True)
            render = self._render_row(s, render_id)
            if render.status != RenderStatus.COMPLETE.value:
                raise StoreError(
                    f"render v{render.version:03d} (id {render_id}) is {render.status!r}; only a "
                    "complete render can be linked", shot=shot.name, render_id=render_id,
                )
            linkable = (ShotStatus.APPROVED, ShotStatus.RENDERING, ShotStatus.RENDERED,
                        ShotStatus.CONFORMED)
            if ShotStatus(shot.status) not in linkable:
                raise _transition_error(shot, ShotStatus.RENDERED, "only an approved shot is linked to a render")
            for own in s.scalars(
                select(Render).where(
                    Render.shot_id == shot_id, Render.status == RenderStatus.RENDERING.value
                )
            ):
                own.status, own.finished_at = RenderStatus.FAILED.value, utcnow()
                own.error = f"superseded: linked to the identical render id {render_id}"
            if shot.render_id != render_id or shot.status != ShotStatus.CONFORMED.value:
                shot.status, shot.claimed_at = ShotStatus.RENDERED.value, None
            shot.render_id = render_id
            return self._load_shot(s, shot_id)

    def find_render(self, identity: str) -> RenderRecord | None:
        """The newest complete render with this identity, of any shot of the store."""
        identity = _text("identity", identity)
        with self._tx(write=False) as s:
            row = s.scalars(
                select(Render)
                .where(Render.identity == identity, Render.status == RenderStatus.COMPLETE.value)
                .order_by(Render.id.desc())
                .limit(1)
            ).first()
            return _render_record(row) if row is not None else None

    def current_render(self, shot_id: int) -> RenderRecord | None:
        """The render the shot's clip is conformed to; None when the shot has none that stands
        (never rendered, or its request changed since)."""
        with self._tx(write=False) as s:
            shot = self._shot_row(s, shot_id)
            if shot.render_id is None:
                return None
            return _render_record(self._render_row(s, shot.render_id))

    def fail_render(self, render_id: int, error: str) -> RenderRecord:
        """Close a render as failed; a shot still rendering it moves to `failed` with the reason.
        A retry (`failed -> approved`, then start_render) opens the next version."""
        error = _text("error", error)
        with self._tx(write=True) as s:
            render = self._render_row(s, render_id, lock=True)
            shot = self._shot_row(s, render.shot_id, lock=True)
            if render.status == RenderStatus.COMPLETE.value:
                raise StoreError(
                    f"render v{render.version:03d} of shot {shot.id} is complete; a complete "
                    "render is never marked failed (start a new version instead)",
                    shot=shot.name, render_id=render_id,
                )
            render.status, render.error = RenderStatus.FAILED.value, error
            render.finished_at = render.finished_at or utcnow()
            current = render.edit_version == shot.edit_version
            if shot.status == ShotStatus.RENDERING.value and current:
                _move(shot, ShotStatus.FAILED, error=error)
            s.flush()
            return _render_record(render)

    def render(self, render_id: int) -> RenderRecord:
        with self._tx(write=False) as s:
            return _render_record(self._render_row(s, render_id))

    def renders(self, shot_id: int) -> list[RenderRecord]:
        """Every render version of the shot, oldest first."""
        with self._tx(write=False) as s:
            query = select(Render).where(Render.shot_id == shot_id).order_by(Render.version)
            rows = s.scalars(query)
            return [_render_record(r) for r in rows]

    def latest_render(self, shot_id: int, complete_only: bool = True) -> RenderRecord | None:
        query = select(Render).where(Render.shot_id == shot_id)
        if complete_only:
            query = query.where(Render.status == RenderStatus.COMPLETE.value)
        with self._tx(write=False) as s:
            row = s.scalars(query.order_by(Render.version.desc()).limit(1)).first()
            return _render_record(row) if row is not None else None

    # ---------------------------------------------------------------- chunks

    def plan_chunks(self, render_id: int, ranges: Sequence[tuple[int, int]]) -> list[ChunkRecord]:
        """Create the render's chunks (source-frame ranges, inclusive). Idempotent: a render that
        already has this plan returns its chunks with their progress; a different plan is an
        error, since chunks already rendered would no longer fit."""
        if not ranges:
            raise ValueError("ranges must hold at least one (first_frame, last_frame) pair")
        plan: list[tuple[int, int]] = []
        for pair in ranges:
            if len(pair) != 2:
                raise ValueError(f"each range must be (first_frame, last_frame), got {pair!r}")
            first, last = _int("first_frame", pair[0]), _int("last_frame", pair[1])
            if last < first:
                raise ValueError(f"chunk range {pair!r} ends before it starts")
            if plan and (first <= plan[-1][0] or last <= plan[-1][1]):
                raise ValueError(f"chunk ranges must move forward; {pair!r} follows {plan[-1]!r}")
            plan.append((first, last))
        with self._tx(write=True) as s:
            render = self._render_row(s, render_id, lock=True)
            shot = self._shot_row(s, render.shot_id)
            existing = s.scalars(
                select(Chunk).where(Chunk.render_id == render_id).order_by(Chunk.index)
            ).all()
            if existing:
                if [(c.first_frame, c.last_frame) for c in existing] != plan:
                    raise StoreError(
                        f"render v{render.version:03d} of shot {shot.id} already has a different "
                        f"chunk plan ({len(existing)} chunks); start a new render version to "
                        "change it",
                        shot=shot.name, render_id=render_id,
                    )
                return [_chunk_record(c) for c in existing]
            if render.status != RenderStatus.RENDERING.value:
                raise StoreError(
                    f"render v{render.version:03d} of shot {shot.id} is {render.status!r}; "
                    "chunks are planned only for a render in progress",
                    shot=shot.name, render_id=render_id,
                )
            if plan[0][0] < shot.first_frame or plan[-1][1] > shot.last_frame:
                raise ValueError(
                    f"chunk ranges {plan[0][0]}-{plan[-1][1]} leave shot {shot.name!r} "
                    f"(source frames {shot.first_frame}-{shot.last_frame})"
                )
            rows = [
                Chunk(
                    render_id=render_id, shot_id=shot.id, render_version=render.version,
                    index=index, first_frame=first, last_frame=last,
                    status=ChunkStatus.PENDING.value, attempts=0,
                )
                for index, (first, last) in enumerate(plan)
            ]
            s.add_all(rows)
            s.flush()
            return [_chunk_record(c) for c in rows]

    def chunks(self, render_id: int) -> list[ChunkRecord]:
        with self._tx(write=False) as s:
            query = select(Chunk).where(Chunk.render_id == render_id).order_by(Chunk.index)
            rows = s.scalars(query)
            return [_chunk_record(c) for c in rows]

    def _claimable(self, cutoff: datetime) -> ColumnElement[bool]:
        condition = or_(
            Chunk.status.in_([ChunkStatus.PENDING.value, ChunkStatus.FAILED.value]),
            (Chunk.status == ChunkStatus.RUNNING.value) & (Chunk.updated_at < cutoff),
        )
        if self.max_attempts is not None:
            condition = condition & (Chunk.attempts < self.max_attempts)
        return condition

    @staticmethod
    def _take(chunk: Chunk, worker: str) -> ChunkRecord:
        chunk.status = ChunkStatus.RUNNING.value
        chunk.attempts += 1
        chunk.worker = worker
        chunk.updated_at = utcnow()
        return _chunk_record(chunk)

    def claim_chunk(
        self,
        chunk_id: int,
        worker: str,
        *,
        stale_after: timedelta | None = None,
    ) -> ChunkRecord | None:
        """Give the chunk to `worker` (pending, failed, or running but stale → running,
        attempts + 1). None when it is not to be had: done, held by a live worker, out of
        attempts, or its render is no longer in progress."""
        worker = _text("worker", worker)
        cutoff = self._cutoff(stale_after)
        with self._tx(write=True) as s:
            query = (
                select(Chunk)
                .join(Render, Render.id == Chunk.render_id)
                .where(
                    Chunk.id == chunk_id,
                    Render.status == RenderStatus.RENDERING.value,
                    self._claimable(cutoff),
                )
                .with_for_update(of=Chunk)
                .execution_options(populate_existing=True)
            )
            row = s.scalars(query).first()
            if row is None:
                self._chunk_row(s, chunk_id)  # unknown id -> StoreError, not None
                return None
            record = self._take(row, worker)
            s.flush()
            return record

    def claim_next_chunk(
        self,
        render_id: int,
        worker: str,
        *,
        stale_after: timedelta | None = None,
    ) -> ChunkRecord | None:
        """The render's first claimable chunk, claimed for `worker`; None when none is left.
        Several workers can call this on one render: no chunk is handed out twice
        (`FOR UPDATE SKIP LOCKED` on PostgreSQL, one claim at a time on SQLite)."""
        worker = _text("worker", worker)
        cutoff = self._cutoff(stale_after)
        with self._tx(write=True) as s:
            render = self._render_row(s, render_id)
            if render.status != RenderStatus.RENDERING.value:
                return None
            query = (
                select(Chunk)
                .where(Chunk.render_id == render_id, self._claimable(cutoff))
                .order_by(Chunk.index)
                .limit(1)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
            row = s.scalars(query).first()
            if row is None:
                return None
            record = self._take(row, worker)
            s.flush()
            return record

    def complete_chunk(self, chunk_id: int, output: str | os.PathLike[str]) -> ChunkRecord:
        """Mark a running chunk done with the file it produced (again with the same output is a
        no-op, so a retried task is harmless)."""
        output_text = _text("output", os.fspath(output))
        with self._tx(write=True) as s:
            row = self._chunk_row(s, chunk_id, lock=True)
            if row.status == ChunkStatus.DONE.value and row.output == output_text:
                return _chunk_record(row)
            if row.status != ChunkStatus.RUNNING.value:
                raise StoreError(
                    f"chunk {row.index} of render {row.render_id} is {row.status!r}; only a "
                    "running (claimed) chunk can be completed",
                    chunk_id=chunk_id, render_id=row.render_id,
                )
            row.status, row.output = ChunkStatus.DONE.value, output_text
            row.updated_at = utcnow()
            s.flush()
            return _chunk_record(row)

    def fail_chunk(self, chunk_id: int, error: str) -> ChunkRecord:
        """Mark a running chunk failed; it can be claimed again while attempts remain."""
        error = _text("error", error)
        with self._tx(write=True) as s:
            row = self._chunk_row(s, chunk_id, lock=True)
            if row.status != ChunkStatus.RUNNING.value:
                raise StoreError(
                    f"chunk {row.index} of render {row.render_id} is {row.status!r}; only a "
                    "running (claimed) chunk can fail",
                    chunk_id=chunk_id, render_id=row.render_id,
                )
            row.status, row.error = ChunkStatus.FAILED.value, error
            row.updated_at = utcnow()
            s.flush()
            return _chunk_record(row)
