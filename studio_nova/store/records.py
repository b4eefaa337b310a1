"""What the store hands back: frozen records, one per table, built from ORM rows in one place.

A record is a plain value, never a live ORM object, so it can cross threads, Prefect tasks or a
JSON dump without dragging a session along; its JSON fields are copies, so changing one changes
nothing in the store. Each record's `from_row` is the only place that reads an ORM row into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from studio_nova.store.tables import (
    Chunk,
    EditRequest,
    Keyframe,
    Render,
    Review,
    Shot,
    Timeline,
)


@dataclass(frozen=True, slots=True)
class TimelineRecord:
    id: int
    path: str
    name: str
    created_at: datetime
    updated_at: datetime
    slug: str | None = None  # file name of its conformed outputs (unique in the store)

    @classmethod
    def from_row(cls, row: Timeline) -> TimelineRecord:
        return cls(row.id, row.path, row.name, row.created_at, row.updated_at, row.slug)


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
    lease_expires_at: datetime | None = None  # the render lease of `worker` holds until then

    def lease_is_live(self, now: datetime) -> bool:
        """Whether a worker holds the shot's render lease at `now`."""
        return self.lease_expires_at is not None and self.lease_expires_at > now

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1

    @classmethod
    def from_row(cls, row: Shot, edit: dict[str, Any]) -> ShotRecord:
        """`edit` is the shot's current edit request (a shot row does not hold it)."""
        return cls(
            id=row.id, timeline_id=row.timeline_id, key=row.key, name=row.name, media=row.media,
            first_frame=row.first_frame, last_frame=row.last_frame,
            rate=Fraction(row.rate_num, row.rate_den), width=row.width, height=row.height,
            bit_depth=row.bit_depth, status=row.status, error=row.error,
            edit_version=row.edit_version, edit=dict(edit), fingerprint=row.fingerprint,
            worker=row.worker, claimed_at=row.claimed_at, created_at=row.created_at,
            updated_at=row.updated_at, slug=row.slug, render_id=row.render_id,
            lease_expires_at=row.lease_expires_at,
        )


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

    @classmethod
    def from_row(cls, row: EditRequest) -> EditRequestRecord:
        return cls(
            row.id, row.shot_id, row.version, row.fingerprint, row.media, row.first_frame,
            row.last_frame, dict(row.edit), row.created_at,
        )


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

    @classmethod
    def from_row(cls, row: Keyframe) -> KeyframeRecord:
        return cls(
            row.id, row.shot_id, row.version, row.edit_version, row.source_frame,
            row.original_path, row.edited_path, row.mask_path, row.editor, row.seed,
            row.instruction, dict(row.info), row.created_at,
        )


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

    @classmethod
    def from_row(cls, row: Review) -> ReviewRecord:
        return cls(
            row.id, row.shot_id, row.keyframe_version, row.decision, row.reviewer, row.notes,
            row.new_instruction, row.new_seed, row.created_at,
        )


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

    @classmethod
    def from_row(cls, row: Render) -> RenderRecord:
        return cls(
            row.id, row.shot_id, row.version, row.edit_version, row.codec, row.status, row.path,
            row.proxy_path, dict(row.qc) if row.qc is not None else None, row.error,
            row.created_at, row.finished_at, row.identity,
            dict(row.inputs) if row.inputs is not None else None,
        )


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
    started_at: datetime | None = None  # when its latest attempt was claimed
    finished_at: datetime | None = None  # when it was done

    @classmethod
    def from_row(cls, row: Chunk) -> ChunkRecord:
        return cls(
            row.id, row.render_id, row.shot_id, row.render_version, row.index, row.first_frame,
            row.last_frame, row.status, row.attempts, row.worker, row.output, row.error,
            row.updated_at, row.started_at, row.finished_at,
        )
