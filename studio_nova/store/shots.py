"""The cut as the store knows it: timelines, their shots, each shot's edit requests and status.

A shot is keyed by its timeline and its key in the cut. Ingesting the cut again is safe: the
same fingerprint finds the stored shot with its state (a rerun goes on where it stopped), a
new one opens a new edit version back at `ingested`. Shots also carry the names of their
folders (slugs), allocated here so that no two shots or cuts of one store share an output path.
The render leases by which workers share the shots out are in `leases.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from studio_nova.cut.naming import first_free
from studio_nova.errors import StoreError
from studio_nova.store.core import StoreCore, move, shot_select
from studio_nova.store.inputs import ShotFields, Status, Text, check, check_fields
from studio_nova.store.records import EditRequestRecord, ShotRecord, TimelineRecord
from studio_nova.store.renders import supersede, unfinished_renders
from studio_nova.store.tables import (
    Chunk,
    ChunkStatus,
    EditRequest,
    Render,
    RenderStatus,
    Shot,
    ShotStatus,
    Timeline,
)


def _allocate_slug(session: Session, column: Any, candidates: Sequence[str], fallback: str) -> str:
    """A name no row of `column`'s table holds yet (`studio_nova.cut.naming.first_free`).

    Names are allocated by the store (not derived from names each time) so that any two shots,
    or two cuts, of one store get distinct output paths, whatever their names."""
    taken = session.scalars(select(column).where(column.is_not(None)))
    return first_free([c for c in candidates if c] or [fallback], taken)


class ShotsMixin(StoreCore):
    """Timelines and shots: `upsert_*` from the cut, lookups and status changes."""

    # ---------------------------------------------------------------- timelines

    def upsert_timeline(
        self, path: str | os.PathLike[str], name: str, slugs: Sequence[str] = ()
    ) -> int:
        """The id of the timeline at `path`, created on first sight (its name kept current).
        A new timeline gets the first of `slugs` no other timeline of the store has."""
        path_text = check("path", os.fspath(path), Text)
        name = check("name", name, Text)
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
            return TimelineRecord.from_row(row)

    def timelines(self) -> list[TimelineRecord]:
        with self._tx(write=False) as s:
            rows = s.scalars(select(Timeline).order_by(Timeline.id))
            return [TimelineRecord.from_row(r) for r in rows]

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
        new = check_fields(
            ShotFields, key=key, name=name, media=os.fspath(media), first_frame=first_frame,
            last_frame=last_frame, rate=rate, width=width, height=height, bit_depth=bit_depth,
            edit=edit, fingerprint=fingerprint,
        )
        with self._tx(write=True) as s:
            if s.get(Timeline, timeline_id) is None:
                raise StoreError(f"no timeline with id {timeline_id} in the store", shot=new.name)
            row = s.scalars(
                select(Shot)
                .where(Shot.timeline_id == timeline_id, Shot.key == new.key)
                .with_for_update()
            ).one_or_none()
            if row is not None and row.fingerprint == new.fingerprint:
                row.name = new.name
                if row.slug is None:
                    row.slug = _allocate_slug(s, Shot.slug, slugs, "shot")
                return self._load_shot(s, row.id)
            if row is None:
                row = Shot(timeline_id=timeline_id, key=new.key, edit_version=1)
                row.slug = _allocate_slug(s, Shot.slug, slugs, "shot")
                s.add(row)
            else:
                row.edit_version += 1
                row.slug = row.slug or _allocate_slug(s, Shot.slug, slugs, "shot")
                row.render_id = None  # its render renders a request that no longer stands
                for render in s.scalars(unfinished_renders(row.id)):
                    supersede(render, f"superseded by edit version {row.edit_version}")
            row.name, row.media = new.name, new.media
            row.first_frame, row.last_frame = new.first_frame, new.last_frame
            row.rate_num, row.rate_den = new.rate.numerator, new.rate.denominator
            row.width, row.height, row.bit_depth = new.width, new.height, new.bit_depth
            row.fingerprint = new.fingerprint
            row.status, row.error = ShotStatus.INGESTED.value, None
            row.claimed_at = row.lease_expires_at = None  # a render of the old request stops
            s.flush()
            s.add(
                EditRequest(
                    shot_id=row.id, version=row.edit_version, fingerprint=new.fingerprint,
                    media=new.media, first_frame=new.first_frame, last_frame=new.last_frame,
                    edit=new.edit,
                )
            )
            return self._load_shot(s, row.id)

    def shot(self, shot_id: int) -> ShotRecord:
        with self._tx(write=False) as s:
            self._shot_row(s, shot_id)
            return self._load_shot(s, shot_id)

    def shots(
        self, timeline_id: int | None = None, status: str | ShotStatus | None = None
    ) -> list[ShotRecord]:
        query = shot_select().order_by(Shot.id)
        if timeline_id is not None:
            query = query.where(Shot.timeline_id == timeline_id)
        if status is not None:
            query = query.where(Shot.status == check("status", status, Status).value)
        with self._tx(write=False) as s:
            return [ShotRecord.from_row(row, edit) for row, edit in s.execute(query)]

    def find_shots(self, name_or_key: str, timeline_id: int | None = None) -> list[ShotRecord]:
        """Shots whose name, key or folder name (slug) equals `name_or_key`, ignoring case (what
        a person types; the slug tells apart same-named shots of two cuts in one run folder)."""
        wanted = check("name_or_key", name_or_key, Text).lower()
        query = (
            shot_select()
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
            return [ShotRecord.from_row(row, edit) for row, edit in s.execute(query)]

    def edit_requests(self, shot_id: int) -> list[EditRequestRecord]:
        """Every edit request the shot has had, oldest first."""
        with self._tx(write=False) as s:
            rows = s.scalars(
                select(EditRequest)
                .where(EditRequest.shot_id == shot_id)
                .order_by(EditRequest.version)
            )
            return [EditRequestRecord.from_row(r) for r in rows]

    def set_status(
        self, shot_id: int, status: str | ShotStatus, error: str | None = None
    ) -> ShotRecord:
        """Move a shot one step of its lifecycle; `failed` needs the reason, which is kept as the
        shot's last error (a retry does not erase it)."""
        to = check("status", status, Status)
        with self._tx(write=True) as s:
            row = self._shot_row(s, shot_id, lock=True)
            retried = row.status == ShotStatus.FAILED.value and to is ShotStatus.APPROVED
            move(row, to, error=error)
            if retried:  # a person's retry: every unfinished chunk of its open render may run again
                open_renders = select(Render.id).where(
                    Render.shot_id == shot_id, Render.status == RenderStatus.RENDERING.value
                )
                for chunk in s.scalars(
                    select(Chunk).where(Chunk.render_id.in_(open_renders), Chunk.status != ChunkStatus.DONE.value)
                ):
                    chunk.attempts = 0
            return self._load_shot(s, shot_id)
