"""What every part of the store stands on: one transaction per call, rows by id, the lifecycle.

`Store` is composed of parts by concern (`shots`, `reviews`, `renders`, `chunks`); each part is
a mixin over `StoreCore`, which is defined here rather than in `store.py` so the parts can build
on it without importing the class they are composed into.

Every call opens its own transaction (`_tx`). One that reads before it writes (claims, version
numbers, lifecycle checks) passes `write=True`, which SQLite turns into `BEGIN IMMEDIATE`; on
PostgreSQL the same calls lock the rows they read (`lock=True` below, `FOR UPDATE`). Every
change of a shot's status goes through `move`, which enforces `ALLOWED_TRANSITIONS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from studio_nova.errors import StateTransitionError, StoreError, StoreUnavailable
from studio_nova.store.engine import IMMEDIATE, error_reason, safe_url
from studio_nova.store.records import ShotRecord
from studio_nova.store.tables import (
    ALLOWED_TRANSITIONS,
    Chunk,
    EditRequest,
    Render,
    Shot,
    ShotStatus,
    utcnow,
)


def shot_select() -> Select[tuple[Shot, dict[str, Any]]]:
    """Shots joined with their current edit request, so a record carries what was asked."""
    return select(Shot, EditRequest.edit).join(
        EditRequest, (EditRequest.shot_id == Shot.id) & (EditRequest.version == Shot.edit_version)
    )


def transition_error(shot: Shot, to: ShotStatus, why: str) -> StateTransitionError:
    return StateTransitionError(
        f"cannot move shot {shot.id} (key {shot.key!r}) from {shot.status!r} to {to.value!r}: "
        f"{why}",
        shot=shot.name, shot_id=shot.id, key=shot.key, from_status=shot.status, to_status=to.value,
    )


def move(
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
        raise transition_error(shot, to, why)
    if to is ShotStatus.FAILED and not (error and error.strip()):
        raise ValueError(f"error is required when shot {shot.id} moves to 'failed'")
    shot.status = to.value  # a render lease is not touched: it holds across the render's steps
    if error is not None:
        shot.error = error


class StoreCore:
    """The engine, its sessions and the claim settings; the parts of `Store` build on this."""

    def __init__(
        self, engine: Engine, *, stale_after: timedelta, max_attempts: int | None
    ) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.stale_after = stale_after
        self.max_attempts = max_attempts

    @property
    def url(self) -> str:
        """The store's URL with the password hidden."""
        return safe_url(self._engine.url)

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                if write:
                    session.connection(execution_options={IMMEDIATE: True})
                yield session
        except (OperationalError, InterfaceError) as exc:  # unreachable, dropped, or busy: try again later
            raise StoreUnavailable(f"store {self.url!r} is unavailable: {error_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.url!r}: {error_reason(exc)}") from exc

    def _cutoff(self, stale_after: timedelta | None) -> datetime:
        return utcnow() - (self.stale_after if stale_after is None else stale_after)

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
        row, edit = session.execute(shot_select().where(Shot.id == shot_id)).one()
        return ShotRecord.from_row(row, edit)
