"""The review gate's rules, without an orchestrator.

A reviewer's answer arrives from an orchestrator's form (the Prefect UI) or from `studio-nova
review` (`workflow.review`); both go through `check_answer` and `record_answer`, the one place a
decision is recorded, so the two paths cannot disagree. A review waits for days if it
must; when it is not answered in time it is *reported* on the shot (`review_state`), never turned
into a silent failure.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from studio_nova.config import Settings
from studio_nova.errors import ReviewError
from studio_nova.store import ReviewRecord, ShotRecord, Store
from studio_nova.workflow.review_page import KeyframePair, ReviewPage

DECISIONS = {"approve": "approved", "reject": "rejected"}


def review_timeout_hours(settings: Settings) -> float:
    """How long a review waits for an answer (STUDIO_NOVA_REVIEW_TIMEOUT_HOURS, default 48)."""
    return settings.review_timeout_hours


@dataclass(frozen=True)
class Answer:
    """One reviewer's answer, as the form and the CLI give it."""

    decision: str  # "approve" | "reject"
    reviewer: str
    notes: str = ""
    new_instruction: str = ""
    new_seed: int | None = None

    def as_input(self) -> dict[str, Any]:
        """The run input the UI form sends, so the CLI can resume a waiting run the same way."""
        return {
            "decision": self.decision,
            "reviewer": self.reviewer,
            "notes": self.notes,
            "new_instruction": self.new_instruction,
            "new_seed": self.new_seed,
        }


def check_answer(answer: Answer) -> str | None:
    """Why an answer cannot be accepted (to ask again), or None when it is usable."""
    if answer.decision not in DECISIONS:
        return f"decision must be 'approve' or 'reject', got {answer.decision!r}"
    if not answer.reviewer.strip():
        return "say who you are in 'reviewer'"
    if answer.new_seed is not None and answer.new_seed < 0:
        return f"new_seed must be 0 or more, got {answer.new_seed}"
    if answer.decision == "approve" and (answer.new_instruction.strip() or answer.new_seed is not None):
        return "a new instruction or seed only applies to a rejection; reject, or clear them to approve"
    return None


def record_answer(store: Store, shot_id: int, version: int, answer: Answer) -> ShotRecord:
    """Record the decision on keyframe `version`, once: an answer the store already holds (the CLI
    recorded it, or a resumed run replays it) is not recorded twice."""
    problem = check_answer(answer)
    if problem:
        raise ReviewError(problem, shot_id=shot_id)
    shot = store.shot(shot_id)
    latest = store.keyframes(shot_id)
    if shot.status != "in_review" or not latest or latest[0].version != version:
        return shot
    store.add_review(
        shot_id,
        decision=DECISIONS[answer.decision],
        reviewer=answer.reviewer.strip(),
        notes=answer.notes.strip(),
        new_instruction=answer.new_instruction.strip() or None,
        new_seed=answer.new_seed,
    )
    return store.shot(shot_id)


def default_reviewer(settings: Settings) -> str:
    return settings.reviewer or getpass.getuser()


@dataclass(frozen=True)
class ReviewState:
    """Where a shot's review stands: what version waits, since when, and whether it expired."""

    version: int | None
    requested_at: datetime | None
    expires_at: datetime | None
    expired: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyframe_version": self.version,
            "requested_at": self.requested_at.isoformat() if self.requested_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "expired": self.expired,
        }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def review_state(store: Store, shot: ShotRecord, timeout_hours: float, now: datetime | None = None) -> ReviewState:
    """The review of a shot's latest keyframes; `expired` only while it still waits for an answer."""
    latest = store.keyframes(shot.id)
    if not latest:
        return ReviewState(None, None, None, False)
    requested = _utc(latest[0].created_at)
    expires = requested + timedelta(hours=timeout_hours)
    now = _utc(now or datetime.now(timezone.utc))
    return ReviewState(latest[0].version, requested, expires, shot.status == "in_review" and now >= expires)


def _history_line(review: ReviewRecord) -> str:
    line = f"v{review.keyframe_version or 0:03d} {review.decision} by {review.reviewer}"
    if review.notes:
        line += f": {review.notes}"
    if review.new_instruction:
        line += f" (new instruction: {review.new_instruction})"
    if review.new_seed is not None:
        line += f" (new seed: {review.new_seed})"
    return line


def review_page(
    store: Store, shot_id: int, *, timeout_hours: float, problem: str | None = None
) -> ReviewPage:
    """The page for the shot's latest keyframe version."""
    shot = store.shot(shot_id)
    keyframes = store.keyframes(shot_id)
    if not keyframes:
        raise ReviewError("the shot has no keyframes to review yet", shot=shot.name, shot_id=shot_id)
    first = keyframes[0]
    state = review_state(store, shot, timeout_hours)
    return ReviewPage(
        shot=shot.name,
        key=shot.key,
        version=first.version,
        instruction=first.instruction,
        editor=first.editor,
        seed=first.seed,
        pairs=[KeyframePair(k.source_frame, k.original_path, k.edited_path) for k in keyframes],
        history=[_history_line(r) for r in store.reviews(shot_id)],
        problem=problem,
        expires_at=state.expires_at,
    )
