"""Render leases: how the workers of a farm share out shots, and how a lost worker's shot is
taken over.

A worker renders a shot only while it holds the shot's lease: `claim_shot` / `claim_next_shot`
take it (the row is locked, `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite runs claims one at a
time under `BEGIN IMMEDIATE`), `renew_lease` is the worker's heartbeat, `release_shot` ends it.
A lease that is not renewed runs out (`lease_expires_at`); the shot is then free, and the next
worker to claim it resumes its render at the first unfinished chunk (the chunk ledger,
`chunks.py`). A worker whose lease was taken over learns it at its next heartbeat (`LeaseLost`)
and stops. Status changes leave the lease alone: it holds across approve → rendering → rendered.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select

from studio_nova.errors import LeaseLost
from studio_nova.store.core import StoreCore
from studio_nova.store.inputs import Status, Text, check
from studio_nova.store.records import ShotRecord
from studio_nova.store.tables import Shot, ShotStatus, utcnow


def _free(now: datetime, stale_before: datetime | None = None) -> ColumnElement[bool]:
    """No live lease on the shot: never claimed, released, or run out (or, with `stale_before`,
    claimed before then whatever it said)."""
    free = or_(Shot.lease_expires_at.is_(None), Shot.lease_expires_at <= now)
    if stale_before is not None:
        free = or_(free, Shot.claimed_at < stale_before)
    return free


def _take(row: Shot, worker: str, now: datetime, lease: timedelta) -> None:
    row.worker, row.claimed_at, row.lease_expires_at = worker, now, now + lease


class LeasesMixin(StoreCore):
    """Shot leases: claim (one shot or the next of several), heartbeat, release."""

    def _lease(self, lease: timedelta | None) -> timedelta:
        lease = self.stale_after if lease is None else lease
        if lease <= timedelta(0):
            raise ValueError(f"a lease must last longer than 0 s, got {lease}")
        return lease

    def claim_next_shot(
        self,
        worker: str,
        status: str | ShotStatus | Collection[str | ShotStatus] = ShotStatus.APPROVED,
        *,
        shot_ids: Collection[int] | None = None,
        timeline_id: int | None = None,
        lease: timedelta | None = None,
        stale_after: timedelta | None = None,
    ) -> ShotRecord | None:
        """Hand `worker` the first shot (by id) in `status` (one or several) that nobody holds a
        live lease on, leased for `lease` (default: the store's `stale_after`); None when there
        is none left. `shot_ids` / `timeline_id` narrow the choice. `stale_after` also frees
        claims made longer ago than that (whatever their lease said).

        Two workers never get the same shot: PostgreSQL skips rows another transaction holds
        (`FOR UPDATE SKIP LOCKED`), SQLite runs claims one at a time (`BEGIN IMMEDIATE`)."""
        worker = check("worker", worker, Text)
        statuses = [status] if isinstance(status, (str, ShotStatus)) else list(status)
        wanted = [check("status", one, Status).value for one in statuses]
        lease = self._lease(lease)
        now = utcnow()
        stale_before = now - stale_after if stale_after is not None else None
        query = (
            select(Shot)
            .where(Shot.status.in_(wanted), _free(now, stale_before))
            .order_by(Shot.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if shot_ids is not None:
            query = query.where(Shot.id.in_(list(shot_ids)))
        if timeline_id is not None:
            query = query.where(Shot.timeline_id == timeline_id)
        with self._tx(write=True) as s:
            row = s.scalars(query).first()
            if row is None:
                return None
            _take(row, worker, now, lease)
            return self._load_shot(s, row.id)

    def claim_shot(
        self, shot_id: int, worker: str, *, lease: timedelta | None = None, take_over_from: str | None = None
    ) -> ShotRecord | None:
        """Take (or, for its holder, extend) the shot's lease; None while another worker holds a
        live one (read `shot(shot_id).worker` for whom). `take_over_from` names a holder the
        caller knows is dead (a process of this machine that is gone): its live lease is taken."""
        worker = check("worker", worker, Text)
        lease = self._lease(lease)
        now = utcnow()
        with self._tx(write=True) as s:
            row = self._shot_row(s, shot_id, lock=True)
            live = row.lease_expires_at is not None and row.lease_expires_at > now
            if live and row.worker not in (worker, take_over_from):
                return None
            if not live or row.worker != worker:
                row.claimed_at = now
            row.worker, row.lease_expires_at = worker, now + lease
            return self._load_shot(s, shot_id)

    def renew_lease(self, shot_id: int, worker: str, *, lease: timedelta | None = None) -> datetime:
        """The holder's heartbeat: extend its lease to `lease` from now and return the new end.
        `LeaseLost` when the shot is no longer the worker's: another worker took it over after
        the lease ran out, or the lease was released (e.g. the cut changed the shot's request)."""
        worker = check("worker", worker, Text)
        lease = self._lease(lease)
        now = utcnow()
        with self._tx(write=True) as s:
            row = self._shot_row(s, shot_id, lock=True)
            if row.worker != worker or row.lease_expires_at is None:
                why = (
                    f"{row.worker} took it over after this worker's lease ran out"
                    if row.worker != worker else "its lease was released (was its request changed?)"
                )
                raise LeaseLost(
                    f"this worker ({worker}) no longer holds the shot: {why}; it stops, the shot "
                    "goes on from its ledger", shot=row.name, holder=row.worker,
                )
            row.lease_expires_at = now + lease
            return row.lease_expires_at

    def release_shot(self, shot_id: int, worker: str) -> bool:
        """End `worker`'s lease on the shot (True), or do nothing when it does not hold it (False).
        The shot keeps `worker` as its last holder."""
        worker = check("worker", worker, Text)
        with self._tx(write=True) as s:
            row = self._shot_row(s, shot_id, lock=True)
            if row.worker != worker or row.lease_expires_at is None:
                return False
            row.lease_expires_at = None
            return True
