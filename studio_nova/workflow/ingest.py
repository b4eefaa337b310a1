"""Ingest a cut into the store: one shot per edited clip, re-planned only when its clip changed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio_nova.cut.ingest import Shot, ingest
from studio_nova.cut.naming import (
    cut_slug_candidates,
    shot_slug_candidates,
)
from studio_nova.media.fingerprint import (
    file_fingerprint,
    fingerprint_paths,
    json_digest,
)
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


def ingest_cut(ws: Workspace, timeline: str | Path) -> IngestReport:
    """Read the cut and record its shots; raises TimelineError only when the cut itself is unusable."""
    cut = ingest(Path(timeline), ws.settings)
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
    problems = [
        {
            "name": p.name,
            "key": p.key,
            "status": "failed",
            "error": str(p.error),
            "render": None,
            "first_frame": None,
            "last_frame": None,
            "qc": {},
        }
        for p in cut.problems
    ]
    for p in cut.problems:
        log.error("clip %s (%s) skipped: %s", p.name, p.key, p.error)
    return IngestReport(timeline_id=timeline_id, shot_ids=shot_ids, problems=problems)
