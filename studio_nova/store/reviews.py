"""Keyframes and their review: the human gate between an edit and its render.

An editor's keyframes are stored as numbered versions of the shot (a re-edit adds a version,
never overwrites one); a review decides on the latest version and moves the shot to `approved`
or `rejected` in the same transaction, so a decision and the state it implies cannot drift
apart. Only a shot `in_review` can be decided on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from studio_nova.errors import ReviewError
from studio_nova.store.core import StoreCore, move
from studio_nova.store.inputs import (
    AnyText,
    Decision,
    Integer,
    JsonObject,
    KeyframeFile,
    Text,
    check,
)
from studio_nova.store.records import KeyframeRecord, ReviewRecord
from studio_nova.store.tables import Keyframe, Review, ReviewDecision, Shot, ShotStatus


def _latest_version(session: Session, shot_id: int) -> int | None:
    """The shot's newest keyframe version; None before its first."""
    return session.scalar(select(func.max(Keyframe.version)).where(Keyframe.shot_id == shot_id))


class ReviewsMixin(StoreCore):
    """Keyframe versions of a shot and the reviews that decide on them."""

    # ---------------------------------------------------------------- keyframes

    def add_keyframe_version(
        self,
        shot_id: int,
        *,
        editor: str,
        seed: int,
        instruction: str,
        info: dict[str, Any],
        frames: Sequence[KeyframeFile],
    ) -> int:
        """Record a new set of keyframes and return its version (1, 2, ...); older versions stay.

        The shot's status is not changed here: the caller moves it to `keyframes_ready` once the
        files are really there.
        """
        editor = check("editor", editor, Text)
        seed = check("seed", seed, Integer)
        instruction = check("instruction", instruction, AnyText)
        info = check("info", info, JsonObject)
        if not frames:
            raise ValueError("frames must hold at least one KeyframeFile")
        with self._tx(write=True) as s:
            shot = self._shot_row(s, shot_id, lock=True)
            seen: set[int] = set()
            for frame in frames:
                if not isinstance(frame, KeyframeFile):
                    raise ValueError(f"frames must hold KeyframeFile items, got {frame!r}")
                number = check("source_frame", frame.source_frame, Integer)
                if not shot.first_frame <= number <= shot.last_frame:
                    raise ValueError(
                        f"keyframe source_frame {number} is outside shot {shot.name!r} "
                        f"(source frames {shot.first_frame}-{shot.last_frame})"
                    )
                if number in seen:
                    raise ValueError(f"keyframe source_frame {number} is listed twice")
                seen.add(number)
            version = (_latest_version(s, shot_id) or 0) + 1
            for frame in sorted(frames, key=lambda f: f.source_frame):
                s.add(
                    Keyframe(
                        shot_id=shot_id, version=version, edit_version=shot.edit_version,
                        source_frame=frame.source_frame,
                        original_path=check(
                            "original_path", os.fspath(frame.original_path), Text
                        ),
                        edited_path=check("edited_path", os.fspath(frame.edited_path), Text),
                        mask_path=(
                            os.fspath(frame.mask_path) if frame.mask_path is not None else None
                        ),
                        editor=editor, seed=seed, instruction=instruction, info=info,
                    )
                )
            return version

    def keyframes(self, shot_id: int, version: int | None = None) -> list[KeyframeRecord]:
        """The keyframes of one version (the latest by default), in source-frame order; empty
        when the shot has none (or not that version)."""
        with self._tx(write=False) as s:
            if version is None:
                version = _latest_version(s, shot_id)
                if version is None:
                    return []
            rows = s.scalars(
                select(Keyframe)
                .where(Keyframe.shot_id == shot_id, Keyframe.version == version)
                .order_by(Keyframe.source_frame)
            )
            return [KeyframeRecord.from_row(r) for r in rows]

    # ---------------------------------------------------------------- reviews

    def add_review(
        self,
        shot_id: int,
        *,
        decision: str | ReviewDecision,
        reviewer: str,
        notes: str = "",
        new_instruction: str | None = None,
        new_seed: int | None = None,
    ) -> ReviewRecord:
        """Record a decision on the shot's latest keyframes and move it to approved / rejected,
        in one transaction, so a decision and the state it implies cannot drift apart."""
        verdict = check("decision", decision, Decision)
        reviewer = check("reviewer", reviewer, Text)
        notes = check("notes", notes, AnyText)
        if new_seed is not None:
            new_seed = check("new_seed", new_seed, Integer)
        with self._tx(write=True) as s:
            shot = s.get(Shot, shot_id, with_for_update=True)
            if shot is None:
                raise ReviewError(f"no shot with id {shot_id} to review", shot_id=shot_id)
            if shot.status != ShotStatus.IN_REVIEW.value:
                raise ReviewError(
                    f"shot {shot.id} (key {shot.key!r}) is {shot.status!r}, not waiting for "
                    "review; only shots in 'in_review' can be approved or rejected",
                    shot=shot.name, shot_id=shot.id, status=shot.status,
                )
            keyframe_version = _latest_version(s, shot_id)
            move(shot, ShotStatus(verdict.value))
            row = Review(
                shot_id=shot_id, keyframe_version=keyframe_version, decision=verdict.value,
                reviewer=reviewer, notes=notes, new_instruction=new_instruction,
                new_seed=new_seed,
            )
            s.add(row)
            s.flush()
            return ReviewRecord.from_row(row)

    def reviews(self, shot_id: int) -> list[ReviewRecord]:
        """Every decision on the shot, oldest first."""
        with self._tx(write=False) as s:
            rows = s.scalars(
                select(Review)
                .where(Review.shot_id == shot_id)
                .order_by(Review.created_at, Review.id)
            )
            return [ReviewRecord.from_row(r) for r in rows]
