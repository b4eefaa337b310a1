"""A render spread over a farm: which shots still need a worker, who holds which, who was lost.

A farm render (the nightly, or an on-approval one) has a list of target shots. GPU workers take
them one at a time under a lease (`render.render`, `leases.HeldLease`) and a dispatcher watches
the store (`farm_progress`) to keep enough workers coming until every target is settled. The
store is the only truth here: an orchestrator may still show a lost worker's run as running,
but its lease has run out and its shot is `waiting` again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from studio_nova.store import ShotRecord
from studio_nova.store.tables import utcnow
from studio_nova.workflow.render import RENDERABLE, needs_render
from studio_nova.workflow.workspace import Workspace

#: What a worker of a farm render claims: an approved or interrupted shot, or a rendered one whose
#: render no longer matches (the dispatcher only lists those; a current one is released at once).
CLAIMABLE = RENDERABLE


@dataclass(frozen=True)
class FarmTargets:
    """The shots of one farm render, and for each rendered-but-stale one the render it had when
    the farm render began (it is settled once the shot links another)."""

    shot_ids: tuple[int, ...]
    stale_render: Mapping[int, int | None] = field(default_factory=dict)


def farm_targets(ws: Workspace, shot_ids: Sequence[int], backend: str | None = None) -> FarmTargets:
    """The shots of `shot_ids` that need a render now (`needs_render`), in order."""
    wanted = [i for i in dict.fromkeys(shot_ids) if needs_render(ws, i, backend)]
    stale = {}
    for shot_id in wanted:
        shot = ws.store.shot(shot_id)
        if shot.status in ("rendered", "conformed"):
            stale[shot_id] = shot.render_id
    return FarmTargets(tuple(wanted), stale)


@dataclass(frozen=True)
class FarmProgress:
    waiting: tuple[int, ...]  # need a worker: nobody holds them (never claimed, released, or lost)
    held: Mapping[int, str]  # shot id -> the worker holding a live lease on it
    lost: Mapping[int, str]  # shot id -> a worker whose lease ran out before it finished (also waiting)
    settled: tuple[int, ...]  # rendered, linked or failed

    @property
    def pending(self) -> int:
        return len(self.waiting) + len(self.held)


def farm_progress(ws: Workspace, targets: FarmTargets) -> FarmProgress:
    """Where each target stands, from the store alone."""
    now = utcnow()
    waiting, settled = [], []
    held: dict[int, str] = {}
    lost: dict[int, str] = {}
    for shot_id in targets.shot_ids:
        shot = ws.store.shot(shot_id)
        if not _pending(shot, targets):
            settled.append(shot_id)
        elif shot.lease_is_live(now):
            held[shot_id] = shot.worker or "?"
        else:
            waiting.append(shot_id)
            if shot.lease_expires_at is not None and shot.worker:  # not released: its worker went silent
                lost[shot_id] = shot.worker
    return FarmProgress(tuple(waiting), held, lost, tuple(settled))


def _pending(shot: ShotRecord, targets: FarmTargets) -> bool:
    if shot.status in ("approved", "rendering"):
        return True
    if shot.id in targets.stale_render and shot.status in ("rendered", "conformed"):
        return shot.render_id == targets.stale_render[shot.id]
    return False
