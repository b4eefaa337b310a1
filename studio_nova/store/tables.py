"""The store's schema: ORM rows, the status vocabularies and the shot lifecycle.

The tables mirror what a rerun needs to continue where the last run stopped: every edit request,
keyframe version, review, render version and chunk is a row that is added, never deleted, so the
history of a shot can be read back in the morning. `db/versions/` creates exactly this schema
(a test compares the two), so a change here needs a new migration there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints make later migrations (and SQLite batch mode) able to address them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ShotStatus(StrEnum):
    INGESTED = "ingested"
    KEYFRAMES_READY = "keyframes_ready"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    RENDERING = "rendering"
    RENDERED = "rendered"
    CONFORMED = "conformed"
    FAILED = "failed"


class RenderStatus(StrEnum):
    RENDERING = "rendering"
    COMPLETE = "complete"
    FAILED = "failed"


class ChunkStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ReviewDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


_S = ShotStatus
# Shots move forward only. `failed` is reachable from anywhere and can be retried from the
# three points where work restarts. `rendered -> rendering` is deliberately absent: it is only
# possible through `Store.start_render`, which opens a new render version, so an existing
# render is never overwritten.
ALLOWED_TRANSITIONS: dict[ShotStatus, frozenset[ShotStatus]] = {
    _S.INGESTED: frozenset({_S.KEYFRAMES_READY, _S.FAILED}),
    _S.KEYFRAMES_READY: frozenset({_S.IN_REVIEW, _S.FAILED}),
    _S.IN_REVIEW: frozenset({_S.APPROVED, _S.REJECTED, _S.FAILED}),
    _S.APPROVED: frozenset({_S.RENDERING, _S.FAILED}),
    _S.REJECTED: frozenset({_S.KEYFRAMES_READY, _S.FAILED}),
    _S.RENDERING: frozenset({_S.RENDERING, _S.RENDERED, _S.FAILED}),
    _S.RENDERED: frozenset({_S.CONFORMED, _S.FAILED}),
    _S.CONFORMED: frozenset({_S.CONFORMED, _S.FAILED}),
    _S.FAILED: frozenset({_S.INGESTED, _S.KEYFRAMES_READY, _S.APPROVED, _S.FAILED}),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no timezone type and hands back naive values; storing UTC and re-attaching the zone
    on read gives both backends the same behaviour, and refusing naive input keeps local time
    from sneaking in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamps must be timezone-aware, got naive {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Timeline(Base):
    __tablename__ = "timelines"
    __table_args__ = (Index("uq_timelines_slug", "slug", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    # File name of the cut's conformed outputs, unique in the store (allocated once).
    slug: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Shot(Base):
    __tablename__ = "shots"
    __table_args__ = (
        UniqueConstraint("timeline_id", "key"),
        CheckConstraint(_in("status", ShotStatus), name="status"),
        CheckConstraint("first_frame >= 0 AND last_frame >= first_frame", name="frame_range"),
        CheckConstraint("rate_num > 0 AND rate_den > 0", name="rate"),
        Index("ix_shots_status", "status"),
        Index("uq_shots_slug", "slug", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timeline_id: Mapped[int] = mapped_column(ForeignKey("timelines.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    media: Mapped[str] = mapped_column(Text)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    rate_num: Mapped[int] = mapped_column(Integer)
    rate_den: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bit_depth: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    edit_version: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(128))
    # The render lease: who holds the shot, since when, and until when it holds without a
    # heartbeat (`store/leases.py`). `worker` stays as the last holder after a release.
    worker: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None] = mapped_column()
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    # Folder name of the shot's keyframes, renders and work files, unique in the store.
    slug: Mapped[str | None] = mapped_column(Text)
    # The render the shot's clip is conformed to: its own, or another shot's with the same
    # identity (the same shot in two cuts). No foreign key: renders already point at shots.
    render_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EditRequest(Base):
    """One version of what was asked of a shot; a changed request adds a row, never edits one."""

    __tablename__ = "edit_requests"
    __table_args__ = (UniqueConstraint("shot_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(128))
    media: Mapped[str] = mapped_column(Text)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    edit: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Keyframe(Base):
    """One keyframe of one keyframe version; the version-wide fields repeat on each row."""

    __tablename__ = "keyframes"
    __table_args__ = (UniqueConstraint("shot_id", "version", "source_frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    edit_version: Mapped[int] = mapped_column(Integer)
    source_frame: Mapped[int] = mapped_column(Integer)
    original_path: Mapped[str] = mapped_column(Text)
    edited_path: Mapped[str] = mapped_column(Text)
    mask_path: Mapped[str | None] = mapped_column(Text)
    editor: Mapped[str] = mapped_column(String(255))
    seed: Mapped[int] = mapped_column(BigInteger)
    instruction: Mapped[str] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint(_in("decision", ReviewDecision), name="decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"), index=True)
    keyframe_version: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(255))
    notes: Mapped[str] = mapped_column(Text)
    new_instruction: Mapped[str | None] = mapped_column(Text)
    new_seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Render(Base):
    __tablename__ = "renders"
    __table_args__ = (
        UniqueConstraint("shot_id", "version"),
        CheckConstraint(_in("status", RenderStatus), name="status"),
        Index("ix_renders_identity", "identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    edit_version: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(Text)
    proxy_path: Mapped[str | None] = mapped_column(Text)
    qc: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    # Hash of everything that decides the render's pixels, and what it was computed from.
    identity: Mapped[str | None] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("render_id", "index"),
        CheckConstraint(_in("status", ChunkStatus), name="status"),
        CheckConstraint("first_frame >= 0 AND last_frame >= first_frame", name="frame_range"),
        Index("ix_chunks_shot_id", "shot_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    render_id: Mapped[int] = mapped_column(ForeignKey("renders.id", ondelete="CASCADE"))
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"))
    render_version: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column("index", Integer)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # When the latest attempt was claimed and when the chunk was done: the farm's timeline.
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
