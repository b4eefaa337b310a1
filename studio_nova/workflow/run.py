"""A whole run without an orchestrator, its per-shot outcomes, and the nightly's reports.

Prefect flows (`flows/`) call the steps one shot at a time; `run_cut` chains them without Prefect
for studios on another orchestrator and for tests. A step that fails marks only its shot `failed`
with the reason; the other shots go on. A `stop` flag (set by the application on SIGTERM / Ctrl-C)
ends the run at the next chunk boundary, every finished chunk recorded and nothing failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from studio_nova.cut.naming import version_label
from studio_nova.errors import LeaseLost, StoreUnavailable, StudioNovaError
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.probe import probe
from studio_nova.render.shot import RenderObserver, RenderStopped, StopFlag, stop_requested
from studio_nova.workflow.conform import conform_timeline
from studio_nova.workflow.ingest import IngestReport, ingest_cut
from studio_nova.workflow.keyframes import media_view
from studio_nova.workflow.render import linked_render, render
from studio_nova.workflow.review import prepare_shot
from studio_nova.workflow.workspace import Workspace

log = logging.getLogger(__name__)


def shot_outcome(ws: Workspace, shot_id: int) -> dict[str, Any]:
    """The `--json` shape of one shot (see the README's CLI contract)."""
    shot = ws.store.shot(shot_id)
    latest = linked_render(ws, shot)
    outcome: dict[str, Any] = {
        "name": shot.name,
        "key": shot.key,
        "status": shot.status,
        "render": latest.path if latest else None,
        "proxy": latest.proxy_path if latest else None,
        "version": version_label(latest.version) if latest else None,
        "first_frame": shot.first_frame,
        "last_frame": shot.last_frame,
        "qc": dict(latest.qc) if latest else {},
    }
    if shot.status == "failed":
        outcome["error"] = shot.error
    return outcome


def guarded(ws: Workspace, shot_id: int, step: Callable[[], Any]) -> None:
    """Run one shot's step; on failure mark only that shot failed, with the reason. A render
    stopped on request (`RenderStopped`) is no failure: it is passed on, the shot left as it is; nor
    is a lease lost to another worker (`LeaseLost`), which finishes the shot. An unavailable store
    (`StoreUnavailable`) is passed on too: the failure cannot be recorded, and the orchestrator
    retries the step."""
    try:
        step()
    except RenderStopped:
        raise
    except LeaseLost as exc:  # another worker has the shot now and finishes it: no failure
        log.warning("%s", exc)
    except StoreUnavailable:  # nothing can be recorded, and nothing is wrong with the shot: retried
        raise
    except StudioNovaError as exc:
        log.error("%s", exc)
        ws.store.set_status(shot_id, "failed", error=str(exc))
    except Exception as exc:  # a bug or a broken plugin must not take the other shots down
        log.exception("shot %s failed", shot_id)
        ws.store.set_status(shot_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")


@dataclass
class RunReport:
    conformed: str | None
    shots: list[dict[str, Any]]
    formats: dict[str, str] = field(default_factory=dict)
    #: The run stopped early on request: what finished is recorded, the rest waits for a rerun
    #: (nothing was conformed). `to_dict` then carries `"interrupted": true`; the application
    #: replaces it with the signal's name.
    interrupted: bool = False

    @property
    def nothing_ran(self) -> bool:
        return bool(self.shots) and all(s["status"] == "failed" for s in self.shots)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"conformed": self.conformed, "formats": self.formats, "shots": self.shots}
        if self.interrupted:
            out["interrupted"] = True
        return out


def finish_run(
    ws: Workspace, report: IngestReport, timeline: str | Path, formats: Sequence[str]
) -> RunReport:
    """Conform what is rendered and report every shot (including clips that never became shots)."""
    conformed: str | None = None
    written: dict[str, str] = {}
    try:
        paths = conform_timeline(ws, report.timeline_id, timeline, formats)
        conformed = str(paths.pop("otio"))
        written = {k: str(v) for k, v in paths.items()}
    except StudioNovaError as exc:
        log.error("conform failed: %s", exc)
        written = {"error": str(exc)}
    shots = [shot_outcome(ws, i) for i in report.shot_ids] + report.problems
    return RunReport(conformed=conformed, shots=shots, formats=written)


class RunObserver(RenderObserver, Protocol):
    """What `run_cut` tells as it goes (a terminal display, a log): each shot's turn, and its
    render's progress (`render_progress`, a `RenderProgress` before and after each chunk)."""

    def shot_started(self, shot: str, index: int, shots: int) -> None: ...

    def shot_finished(self, shot: str, status: str) -> None: ...


def run_cut(
    ws: Workspace,
    timeline: str | Path,
    *,
    backend: str | None = None,
    auto_approve: bool = False,
    formats: Sequence[str] = (),
    progress: RunObserver | None = None,
    stop: StopFlag | None = None,
) -> RunReport:
    """ingest → keyframes → review → render → conform, without an orchestrator.

    With `stop` set (checked before each shot's steps and between render chunks) the run ends
    early: the shot being rendered keeps its finished chunks and stays `rendering`, shots not
    reached stay as they are, nothing is conformed, and the report says `interrupted`; a rerun
    goes on from there."""
    report = ingest_cut(ws, timeline)
    for index, shot_id in enumerate(report.shot_ids):
        if stop_requested(stop):
            break
        name = ws.store.shot(shot_id).name
        if progress is not None:
            progress.shot_started(name, index, len(report.shot_ids))
        guarded(ws, shot_id, lambda: prepare_shot(ws, shot_id, auto_approve=auto_approve))
        try:
            if not stop_requested(stop):
                guarded(ws, shot_id, lambda: render(ws, shot_id, backend=backend, progress=progress, stop=stop))
        except RenderStopped as exc:
            log.warning("%s", exc)
        if progress is not None:
            progress.shot_finished(name, ws.store.shot(shot_id).status)
    if stop_requested(stop):
        shots = [shot_outcome(ws, i) for i in report.shot_ids] + report.problems
        return RunReport(conformed=None, shots=shots, interrupted=True)
    return finish_run(ws, report, timeline, formats)


# ------------------------------------------------------------------- nightly render and reports


def renderable_shots(ws: Workspace, timeline_id: int | None = None) -> list[int]:
    """Approved shots not rendered yet, and renders interrupted half-way: the nightly's work list."""
    return [
        s.id for s in ws.store.shots(timeline_id=timeline_id) if s.status in ("approved", "rendering")
    ]


def qc_rows(ws: Workspace, timeline_id: int | None = None) -> list[dict[str, Any]]:
    """One row per rendered shot with its latest render's QC figures, for the morning table."""
    rows = []
    for shot in ws.store.shots(timeline_id=timeline_id):
        latest = linked_render(ws, shot)
        if latest is None:
            continue
        qc = latest.qc or {}
        rows.append(
            {
                "shot": shot.name,
                "key": shot.key,
                "version": version_label(latest.version),
                "frames": qc.get("frames"),
                "chunks": qc.get("chunks"),
                "edited_coverage": qc.get("edited_coverage"),
                "untouched_exact": qc.get("untouched_exact"),
                "seam_psnr_db": qc.get("seam_psnr_db"),
                "render_fps": qc.get("render_fps"),
                "backend": qc.get("backend"),
                "render": latest.path,
            }
        )
    return rows


def before_after_still(ws: Workspace, shot_id: int) -> tuple[int, Any, Any] | None:
    """The middle frame of a rendered shot: (source frame, source image, rendered image)."""
    shot = ws.store.shot(shot_id)
    latest = linked_render(ws, shot)
    if latest is None or not latest.path:
        return None
    middle = (shot.first_frame + shot.last_frame) // 2
    [before] = list(read_frames(media_view(Path(shot.media), shot.rate, ws.settings, shot=shot.name), middle, middle))
    offset = middle - shot.first_frame
    [after] = list(read_frames(probe(Path(latest.path)), offset, offset))
    return middle, to_float(before), to_float(after)
