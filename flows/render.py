"""Render and conform flows: the GPU pool's work, and the reports a TD reads in the morning.

`render_flow` runs on the GPU pool, nightly over every approved, unrendered shot of a store, or
right after an approval for the shots named. Each render shows a progress artifact that moves as
chunks finish; the conform that follows publishes the QC table and before/after stills.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from studio_nova import workflow
from studio_nova.config import load_settings
from studio_nova.errors import StudioNovaError
from studio_nova.workflow.review_page import Still, stills_markdown
from studio_nova_flows.run import render_task


@flow(name="studio-nova-render", log_prints=True)
def render_flow(
    out: str, shot_ids: list[int] | None = None, backend: str | None = None, formats: list[str] | None = None
) -> dict[str, Any]:
    """Render the named shots (default: every approved, unrendered one), then conform their cuts."""
    logger = get_run_logger()
    ws = workflow.Workspace.open(out, load_settings())
    try:
        targets = list(shot_ids) if shot_ids is not None else workflow.renderable_shots(ws)
    finally:
        ws.close()
    logger.info("rendering %d shots: %s", len(targets), targets)
    statuses = {str(shot_id): render_task(out, shot_id, backend) for shot_id in targets}
    conformed = conform_flow(out, formats=formats) if targets else None
    return {"rendered": statuses, "conform": conformed}


@flow(name="studio-nova-conform", log_prints=True)
def conform_flow(out: str, timeline_id: int | None = None, formats: list[str] | None = None) -> dict[str, Any]:
    """Write the conformed cut(s) and publish the QC table and before/after stills."""
    logger = get_run_logger()
    ws = workflow.Workspace.open(out, load_settings())
    try:
        written: dict[str, Any] = {}
        timelines = [t for t in ws.store.timelines() if timeline_id is None or t.id == timeline_id]
        for timeline in timelines:
            try:
                paths = workflow.conform_timeline(ws, timeline.id, formats=list(formats or []))
                written[timeline.name] = {k: str(v) for k, v in paths.items()}
            except StudioNovaError as exc:
                logger.error("conform of %s failed: %s", timeline.name, exc)
                written[timeline.name] = {"error": str(exc)}
        rows = workflow.qc_rows(ws, timeline_id)
        create_table_artifact(
            table=rows or [{"shot": "(none rendered yet)"}],
            key="studio-nova-qc",
            description=f"QC of every rendered shot in {ws.out}",
        )
        stills = []
        for shot in ws.store.shots(timeline_id=timeline_id):
            try:
                still = workflow.before_after_still(ws, shot.id)
            except StudioNovaError as exc:
                logger.warning("no still for %s: %s", shot.name, exc)
                continue
            if still is not None:
                latest = workflow.linked_render(ws, shot)
                version = f"v{latest.version:03d}" if latest else "?"
                stills.append(Still(shot.name, version, still[0], still[1], still[2]))
        create_markdown_artifact(
            markdown=stills_markdown(stills),
            key="studio-nova-stills",
            description=f"before | after of every rendered shot in {ws.out}",
        )
        return {"conformed": written, "qc": rows}
    finally:
        ws.close()
