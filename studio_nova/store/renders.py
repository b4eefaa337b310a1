"""Renders: numbered versions of a shot's pixels, each tied to the request and inputs it renders.

A render version is never overwritten: `start_render` resumes the shot's unfinished render when
it renders the same edit with the same `identity` (backend, keyframes, encoder), and otherwise
closes it as superseded and opens the next version. A complete render is what the shot is
conformed to; `link_render` lets a shot reuse another shot's complete render of the same
identity instead of rendering it again. The work inside a render is split into chunks
(`chunks.py`).
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Select, func, select

from studio_nova.errors import StoreError
from studio_nova.store.core import StoreCore, move, transition_error
from studio_nova.store.inputs import JsonObject, Text, check
from studio_nova.store.records import RenderRecord, ShotRecord
from studio_nova.store.tables import (
    Chunk,
    ChunkStatus,
    Render,
    RenderStatus,
    ShotStatus,
    utcnow,
)


def unfinished_renders(shot_id: int) -> Select[tuple[Render]]:
    """The shot's renders still in progress."""
    return select(Render).where(
        Render.shot_id == shot_id, Render.status == RenderStatus.RENDERING.value
    )


def supersede(render: Render, error: str) -> None:
    """Close an unfinished render as failed: what it renders no longer stands."""
    render.status = RenderStatus.FAILED.value
    render.error = error
    render.finished_at = utcnow()


class RendersMixin(StoreCore):
    """Render versions of a shot: start, finish, fail, link, and lookups."""

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
        codec = check("codec", codec, Text)
        if identity is not None:
            identity = check("identity", identity, Text)
        inputs = check("inputs", inputs, JsonObject) if inputs is not None else None
        with self._tx(write=True) as s:
            shot = self._shot_row(s, shot_id, lock=True)
            newest_first = unfinished_renders(shot_id).order_by(Render.version.desc())
            for render in s.scalars(newest_first).all():
                if render.edit_version == shot.edit_version and render.identity == identity:
                    move(shot, ShotStatus.RENDERING)
                    return RenderRecord.from_row(render)
                supersede(render, "superseded: what decides its pixels changed before it finished")
            move(shot, ShotStatus.RENDERING, new_render=True)
            latest = s.scalar(select(func.max(Render.version)).where(Render.shot_id == shot_id))
            row = Render(
                shot_id=shot_id, version=(latest or 0) + 1, edit_version=shot.edit_version,
                codec=codec, status=RenderStatus.RENDERING.value, identity=identity,
                inputs=inputs,
            )
            s.add(row)
            s.flush()
            return RenderRecord.from_row(row)

    def finish_render(
        self,
        render_id: int,
        *,
        path: str | os.PathLike[str],
        proxy_path: str | os.PathLike[str] | None,
        qc: dict[str, Any],
    ) -> RenderRecord:
        """Mark a render complete (every planned chunk must be done) and the shot `rendered`."""
        path_text = check("path", os.fspath(path), Text)
        proxy_text = os.fspath(proxy_path) if proxy_path is not None else None
        qc = check("qc", qc, JsonObject)
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
            move(shot, ShotStatus.RENDERED)
            shot.render_id = render.id
            render.status = RenderStatus.COMPLETE.value
            render.path, render.proxy_path, render.qc = path_text, proxy_text, qc
            render.finished_at = utcnow()
            s.flush()
            return RenderRecord.from_row(render)

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
                raise transition_error(
                    shot, ShotStatus.RENDERED, "only an approved shot is linked to a render"
                )
            for own in s.scalars(unfinished_renders(shot_id)):
                supersede(own, f"superseded: linked to the identical render id {render_id}")
            if shot.render_id != render_id or shot.status != ShotStatus.CONFORMED.value:
                shot.status = ShotStatus.RENDERED.value
            shot.render_id = render_id
            return self._load_shot(s, shot_id)

    def find_render(self, identity: str) -> RenderRecord | None:
        """The newest complete render with this identity, of any shot of the store."""
        identity = check("identity", identity, Text)
        with self._tx(write=False) as s:
            row = s.scalars(
                select(Render)
                .where(Render.identity == identity, Render.status == RenderStatus.COMPLETE.value)
                .order_by(Render.id.desc())
                .limit(1)
            ).first()
            return RenderRecord.from_row(row) if row is not None else None

    def current_render(self, shot_id: int) -> RenderRecord | None:
        """The render the shot's clip is conformed to; None when the shot has none that stands
        (never rendered, or its request changed since)."""
        with self._tx(write=False) as s:
            shot = self._shot_row(s, shot_id)
            if shot.render_id is None:
                return None
            return RenderRecord.from_row(self._render_row(s, shot.render_id))

    def fail_render(self, render_id: int, error: str) -> RenderRecord:
        """Close a render as failed; a shot still rendering it moves to `failed` with the reason.
        A retry (`failed -> approved`, then start_render) opens the next version."""
        error = check("error", error, Text)
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
                move(shot, ShotStatus.FAILED, error=error)
            s.flush()
            return RenderRecord.from_row(render)

    def render(self, render_id: int) -> RenderRecord:
        with self._tx(write=False) as s:
            return RenderRecord.from_row(self._render_row(s, render_id))

    def renders(self, shot_id: int) -> list[RenderRecord]:
        """Every render version of the shot, oldest first."""
        with self._tx(write=False) as s:
            query = select(Render).where(Render.shot_id == shot_id).order_by(Render.version)
            rows = s.scalars(query)
            return [RenderRecord.from_row(r) for r in rows]

    def latest_render(self, shot_id: int, complete_only: bool = True) -> RenderRecord | None:
        query = select(Render).where(Render.shot_id == shot_id)
        if complete_only:
            query = query.where(Render.status == RenderStatus.COMPLETE.value)
        with self._tx(write=False) as s:
            row = s.scalars(query.order_by(Render.version.desc()).limit(1)).first()
            return RenderRecord.from_row(row) if row is not None else None
