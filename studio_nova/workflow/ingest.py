"""Ingest a cut into the store: one shot per edited clip, re-planned only when its clip changed.

Only shots that pass every check (`workflow.checks`: the same ones `plan` makes) reach the store;
the others are reported failed with their reasons and the rest of the cut goes on.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio_nova.config import Settings
from studio_nova.cut.ingest import Shot
from studio_nova.cut.ingest import check_timeline as _check_timeline
from studio_nova.cut.naming import (
    cut_slug_candidates,
    shot_slug_candidates,
)
from studio_nova.media.fingerprint import (
    file_fingerprint,
    fingerprint_paths,
    json_digest,
)
from studio_nova.workflow.checks import checked_cut
from studio_nova.workflow.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    timeline_id: int
    shot_ids: list[int]
    problems: list[dict[str, Any]]  # clips that could not become shots, as JSON-able outcomes


def shot_fingerprint(shot: Shot) -> str:
    """What the shot's keyframes depend on: its media file as it is now (size, mtime, first and
    last MiB), its range, its edit request and the files the request names (a plate, a matte).
    A change makes a new edit version: new keyframes, a new review, a new render."""
    payload = {
        "media": file_fingerprint(shot.media),
        "first": shot.first_frame,
        "last": shot.last_frame,
        "edit": shot.edit.fingerprint(),
        "files": fingerprint_paths(shot.edit.params),
    }
    return json_digest(payload)[:32]


def check_timeline(timeline: str | Path, settings: Settings) -> Path:
    """Refuse a cut that cannot run at all (missing, unreadable, not a timeline, no clip asks for
    an edit) with a TimelineError naming the file, before anything is created: a runner calls
    this before it makes the output folder or opens the store. Opens no media. Returns the
    timeline's absolute path."""
    return _check_timeline(Path(timeline), settings)


def ingest_cut(ws: Workspace, timeline: str | Path) -> IngestReport:
    """Read the cut, check every shot (`workflow.checks`) and record those that pass; raises
    TimelineError only when the cut itself is unusable. Shots that fail a check are reported
    failed, with every reason, and are not recorded."""
    cut = checked_cut(Path(timeline), ws.settings)
    path = Path(timeline).resolve()
    timeline_id = ws.store.upsert_timeline(str(path), cut.name, cut_slug_candidates(cut.name, path.stem))
    cut_slug = ws.store.timeline(timeline_id).slug
    shot_ids = []
    for shot in cut.shots:
        record = ws.store.upsert_shot(
            timeline_id,
            key=shot.key,
            name=shot.name,
            media=str(shot.media),
            first_frame=shot.first_frame,
            last_frame=shot.last_frame,
            rate=shot.info.rate,
            width=shot.info.width,
            height=shot.info.height,
            bit_depth=shot.info.bit_depth,
            edit=asdict(shot.edit),
            fingerprint=shot_fingerprint(shot),
            slugs=shot_slug_candidates(shot.name, shot.key, cut_slug),
        )
        shot_ids.append(record.id)
    # One outcome per clip, in the `run --json` shape of a failed shot (a clip may fail several checks).
    errors: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for p in cut.problems:
        log.error("clip %s (%s) skipped: %s", p.name, p.key, p.error)
        errors.setdefault(p.key, []).append(str(p.error))
        names.setdefault(p.key, p.name)
    problems = [
        {
            "name": names[key],
            "key": key,
            "status": "failed",
            "error": "; ".join(found),
            "render": None,
            "proxy": None,
            "version": None,
            "first_frame": None,
            "last_frame": None,
            "qc": {},
        }
        for key, found in errors.items()
    ]
    return IngestReport(timeline_id=timeline_id, shot_ids=shot_ids, problems=problems)
