"""Render and conform flows: the farm's work, and the reports a TD reads in the morning.

`render_flow` (nightly over every approved, unrendered shot of a store, or right after an
approval for the shots named) runs on the CPU pool and renders nothing itself: it dispatches
`render_slot_flow` runs to the GPU pool, one per free GPU worker, watches the store until every
target is rendered or failed, and conforms. Each slot run claims the next target under a lease
(SKIP LOCKED on PostgreSQL), renders it with a heartbeat, releases it, and claims the next until
none is left. A worker lost mid-render stops renewing its lease; once it runs out the dispatcher
marks that run crashed and sends another slot run, which resumes the shot at its first unfinished
chunk. Each shot's render shows a progress artifact that moves as chunks finish.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from studio_nova import workflow
from studio_nova.config import load_settings
from studio_nova.errors import StudioNovaError
from studio_nova.workflow.farm import CLAIMABLE, farm_progress, farm_targets
from studio_nova.workflow.leases import worker_name
from studio_nova.workflow.review_page import Still, stills_markdown
from studio_nova_flows import deployments
from studio_nova_flows.run import render_task


@flow(name="studio-nova-render", log_prints=True)
def render_flow(
    out: str, shot_ids: list[int] | None = None, backend: str | None = None, formats: list[str] | None = None
) -> dict[str, Any]:
    """Render the named shots (default: every approved, unrendered one) on the GPU pool's
    workers, then conform their cuts."""
    logger = get_run_logger()
    settings = load_settings()
    ws = workflow.Workspace.open(out, settings)
    try:
        wanted = list(shot_ids) if shot_ids is not None else workflow.renderable_shots(ws)
        targets = farm_targets(ws, wanted, backend)
        store_url = ws.store.url
        logger.info("rendering %d shots on the GPU pool: %s", len(targets.shot_ids), list(targets.shot_ids))
        if targets.shot_ids:
            _dispatch(ws, store_url, targets, backend, poll=settings.farm_poll_seconds)
        statuses = {str(i): ws.store.shot(i).status for i in targets.shot_ids}
    finally:
        ws.close()
    conformed = conform_flow(out, formats=formats) if targets.shot_ids else None
    return {"rendered": statuses, "conform": conformed}


def _dispatch(ws: workflow.Workspace, store_url: str, targets: Any, backend: str | None, *, poll: float) -> None:
    """Keep slot runs coming until every target is settled: one per GPU worker at first, then one
    more whenever a shot waits (never claimed, or lost with its worker) and no slot run is queued."""
    logger = get_run_logger()
    tag = f"studio-nova-render-{flow_run.get_id()}"
    out, ids = str(ws.out), list(targets.shot_ids)

    def submit(count: int) -> None:
        for _ in range(count):
            deployments.request_slot(store_url, out, ids, backend=backend, dispatcher_tag=tag)

    slots = deployments.gpu_slots()
    submit(min(len(ids), slots))
    crashed: set[str] = set()
    while True:
        time.sleep(poll)
        progress = farm_progress(ws, targets)
        if not progress.pending:
            return
        for shot_id, holder in progress.lost.items():
            if holder not in crashed:
                crashed.add(holder)
                name = ws.store.shot(shot_id).name
                logger.warning("%s: its worker %s stopped renewing its lease; the shot goes to another worker",
                               name, holder)
                deployments.mark_lost(holder, f"worker lost: its lease on {name} ran out; another worker resumes it")
        queued = deployments.queued_slots(tag)
        want = min(progress.pending, max(slots, deployments.gpu_slots()))
        if progress.waiting and queued == 0 and len(progress.held) < want:
            submit(min(len(progress.waiting), want - len(progress.held)))


@flow(name="studio-nova-render-slot", log_prints=True)
def render_slot_flow(out: str, shot_ids: list[int], backend: str | None = None) -> dict[str, str]:
    """One GPU worker's share of a farm render: claim the next of `shot_ids` that nobody holds,
    render it under its lease, release it; again until none is left."""
    logger = get_run_logger()
    settings = load_settings()
    worker = worker_name(str(flow_run.get_id()))
    done: dict[str, str] = {}
    while True:
        ws = workflow.Workspace.open(out, settings)
        try:
            shot = ws.store.claim_next_shot(
                worker, CLAIMABLE, shot_ids=[i for i in shot_ids if str(i) not in done],
                lease=workflow.lease_length(settings),
            )
        finally:
            ws.close()
        if shot is None:
            return done
        logger.info("%s claimed %s (%s)", worker, shot.name, shot.key)
        try:
            done[str(shot.id)] = render_task(out, shot.id, backend, worker=worker)
        finally:
            ws = workflow.Workspace.open(out, settings)
            try:
                ws.store.release_shot(shot.id, worker)
            finally:
                ws.close()


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
