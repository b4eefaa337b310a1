"""Conform a cut: relink every rendered shot's clip to its current render.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from studio_nova.cut.conform import RenderedShot, conform
from studio_nova.workflow.render import linked_render
from studio_nova.workflow.workspace import Workspace

log = logging.getLogger(__name__)


def conform_timeline(
    ws: Workspace, timeline_id: int, timeline: str | Path | None = None, formats: Sequence[str] = ()
) -> dict[str, Path]:
    """Write the cut's own OUT/conformed/<cut>.otio (and the asked-for formats) with every
    rendered shot relinked; clips whose request changed since their render keep their media."""
    record = ws.store.timeline(timeline_id)
    renders = {}
    shots = ws.store.shots(timeline_id=timeline_id)
    for shot in shots:
        latest = linked_render(ws, shot)
        if latest is not None and latest.path:
            renders[shot.key] = RenderedShot(
                key=shot.key,
                path=Path(latest.path),
                version=latest.version,
                first_frame=shot.first_frame,
                last_frame=shot.last_frame,
                rate=shot.rate,
                qc=latest.qc,
                proxy=Path(latest.proxy_path) if latest.proxy_path else None,
            )
    written = conform(Path(timeline or record.path), renders, ws.conformed_path(record), formats=formats)
    for shot in shots:
        if shot.key in renders and shot.status == "rendered":
            ws.store.set_status(shot.id, "conformed")
    return written
