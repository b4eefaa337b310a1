"""Chunks: a render's frames split into ranges that workers claim, render and hand back.

A render farm shares one render between workers through its chunks. A claim is a row lock
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite claims run one at a time under
`BEGIN IMMEDIATE`), so no chunk is handed out twice; it holds until the chunk is done or failed,
or goes stale (`stale_after`: a dead worker), and a chunk claimed `max_attempts` times is not
handed out again. Completing a chunk twice with the same output is a no-op, so a retried task
is harmless. A render is finished only once all its chunks are done (`renders.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from studio_nova.errors import LeaseLost, StoreError
from studio_nova.store.core import StoreCore
from studio_nova.store.inputs import Integer, Text, check
from studio_nova.store.records import ChunkRecord
from studio_nova.store.tables import Chunk, ChunkStatus, Render, RenderStatus, utcnow


class ChunksMixin(StoreCore):
    """A render's chunk plan and the claims by which workers share it out."""

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
            first = check("first_frame", pair[0], Integer)
            last = check("last_frame", pair[1], Integer)
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
                return [ChunkRecord.from_row(c) for c in existing]
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
            return [ChunkRecord.from_row(c) for c in rows]

    def chunks(self, render_id: int) -> list[ChunkRecord]:
        with self._tx(write=False) as s:
            query = select(Chunk).where(Chunk.render_id == render_id).order_by(Chunk.index)
            rows = s.scalars(query)
            return [ChunkRecord.from_row(c) for c in rows]

    def _claimable(self, cutoff: datetime, *, done_too: bool = False) -> ColumnElement[bool]:
        again = [ChunkStatus.PENDING.value, ChunkStatus.FAILED.value] + ([ChunkStatus.DONE.value] if done_too else [])
        condition = or_(
            Chunk.status.in_(again),
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
        chunk.updated_at = chunk.started_at = utcnow()
        chunk.finished_at = None
        return ChunkRecord.from_row(chunk)

    def claim_chunk(
        self,
        chunk_id: int,
        worker: str,
        *,
        stale_after: timedelta | None = None,
        again: bool = False,
    ) -> ChunkRecord | None:
        """Give the chunk to `worker` (pending, failed, or running but stale → running,
        attempts + 1). None when it is not to be had: done, held by a live worker, out of
        attempts, or its render is no longer in progress. With `again`, a done chunk is handed
        out too (its files were lost: it is rendered again)."""
        worker = check("worker", worker, Text)
        cutoff = self._cutoff(stale_after)
        with self._tx(write=True) as s:
            query = (
                select(Chunk)
                .join(Render, Render.id == Chunk.render_id)
                .where(
                    Chunk.id == chunk_id,
                    Render.status == RenderStatus.RENDERING.value,
                    self._claimable(cutoff, done_too=again),
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
        worker = check("worker", worker, Text)
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

    def complete_chunk(
        self, chunk_id: int, output: str | os.PathLike[str], *, worker: str | None = None
    ) -> ChunkRecord:
        """Mark a running chunk done with the file it produced (again with the same output is a
        no-op, so a retried task is harmless). With `worker`, only while that worker holds the
        claim: a worker whose chunk was taken over must not record it (`LeaseLost`)."""
        output_text = check("output", os.fspath(output), Text)
        with self._tx(write=True) as s:
            row = self._chunk_row(s, chunk_id, lock=True)
            if row.status == ChunkStatus.DONE.value and row.output == output_text:
                return ChunkRecord.from_row(row)
            self._check_running(s, row, "completed", worker)
            row.status, row.output = ChunkStatus.DONE.value, output_text
            row.updated_at = row.finished_at = utcnow()
            s.flush()
            return ChunkRecord.from_row(row)

    def fail_chunk(self, chunk_id: int, error: str, *, worker: str | None = None) -> ChunkRecord:
        """Mark a running chunk failed; it can be claimed again while attempts remain. With
        `worker`, only while that worker holds the claim (`LeaseLost` otherwise)."""
        error = check("error", error, Text)
        with self._tx(write=True) as s:
            row = self._chunk_row(s, chunk_id, lock=True)
            self._check_running(s, row, "fail", worker)
            row.status, row.error = ChunkStatus.FAILED.value, error
            row.updated_at = utcnow()
            s.flush()
            return ChunkRecord.from_row(row)

    def _check_running(self, session: Session, row: Chunk, verb: str, worker: str | None) -> None:
        """With `worker`: the chunk must still be its claim, and the shot's lease must not have
        gone to another worker (a worker thought lost records nothing once it was taken over)."""
        if worker is not None:
            shot = self._shot_row(session, row.shot_id)
            taken = shot.worker != worker and shot.lease_expires_at is not None and shot.lease_expires_at > utcnow()
            if row.worker != worker or taken:
                raise LeaseLost(
                    f"chunk {row.index} was taken over by {shot.worker if taken else row.worker} (this worker, "
                    f"{worker}, was thought lost); it is not recorded here", shot=shot.name,
                )
        if row.status != ChunkStatus.RUNNING.value:
            raise StoreError(
                f"chunk {row.index} of render {row.render_id} is {row.status!r}; only a "
                f"running (claimed) chunk can {'be ' if verb == 'completed' else ''}{verb}",
                chunk_id=row.id, render_id=row.render_id,
            )
