"""Review decisions on a shot's keyframe version, and the step that takes a shot up to review.
"""

from __future__ import annotations

import logging

from studio_nova.errors import ReviewError
from studio_nova.store import ShotRecord
from studio_nova.workflow.keyframes import edit_keyframes
from studio_nova.workflow.review_gate import Answer, check_answer, default_reviewer, record_answer
from studio_nova.workflow.workspace import Workspace

log = logging.getLogger(__name__)

AUTO_REVIEWER = "auto-approve"


def resolve_shot(ws: Workspace, ref: str) -> ShotRecord:
    """A shot by clip name, cut key or folder name; `CUT:REF` looks in one cut only (a run
    folder may hold several cuts with the same clip names and keys). Ambiguity is an error that
    lists what to type instead."""
    found = ws.store.find_shots(ref)
    cut, sep, rest = ref.partition(":")
    if not found and sep:
        timelines = [t for t in ws.store.timelines() if cut.lower() in ((t.slug or "").lower(), t.name.lower())]
        found = [s for t in timelines for s in ws.store.find_shots(rest, timeline_id=t.id)] if rest else []
    if not found:
        raise ReviewError(f"no shot named {ref!r} in {ws.out}; `studio-nova review list` shows them")
    if len(found) > 1:
        cuts = {t.id: t.slug for t in ws.store.timelines()}
        choices = ", ".join(f"{cuts.get(s.timeline_id)}:{s.key} (folder {s.slug})" for s in found)
        raise ReviewError(f"{len(found)} shots match {ref!r}; give one of: {choices}")
    return found[0]


def review(
    ws: Workspace,
    ref: str,
    decision: str,
    *,
    reviewer: str | None = None,
    notes: str = "",
    new_instruction: str | None = None,
    new_seed: int | None = None,
) -> ShotRecord:
    """Approve or reject the keyframes a shot is waiting on (`decision`: approve / approved,
    reject / rejected), checked and recorded by the gate's rules like an answer from the form."""
    shot = resolve_shot(ws, ref)
    if shot.status != "in_review":
        raise ReviewError(f"shot is {shot.status}, not waiting for review", shot=shot.name)
    verb = {"approved": "approve", "rejected": "reject"}.get(decision, decision)
    answer = Answer(
        decision=verb,
        reviewer=reviewer or default_reviewer(ws.settings),
        notes=notes or "",
        new_instruction=new_instruction or "",
        new_seed=new_seed,
    )
    problem = check_answer(answer)
    if problem:
        raise ReviewError(problem, shot=shot.name)
    return record_answer(ws.store, shot.id, ws.store.keyframes(shot.id)[0].version, answer)


def prepare_shot(ws: Workspace, shot_id: int, *, auto_approve: bool = False) -> ShotRecord:
    """Bring a shot up to review (editing or re-editing keyframes) and, if asked, approve it."""
    shot = ws.store.shot(shot_id)
    if shot.status == "failed":
        shot = _retry_failed(ws, shot)
    if shot.status in ("ingested", "rejected"):
        shot = edit_keyframes(ws, shot.id)
    elif shot.status == "keyframes_ready":
        ws.store.set_status(shot.id, "in_review")
        shot = ws.store.shot(shot.id)
    if shot.status == "in_review" and auto_approve:
        ws.store.add_review(shot.id, decision="approved", reviewer=AUTO_REVIEWER, notes="--auto-approve")
        shot = ws.store.shot(shot.id)
    return shot


def _retry_failed(ws: Workspace, shot: ShotRecord) -> ShotRecord:
    """Send a failed shot back to the last step it had finished."""
    latest = ws.store.keyframes(shot.id)
    approved = any(
        r.decision == "approved" and latest and r.keyframe_version == latest[0].version
        for r in ws.store.reviews(shot.id)
    )
    ws.store.set_status(shot.id, "approved" if approved else "ingested")
    return ws.store.shot(shot.id)
