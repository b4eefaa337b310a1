"""Prefect flows for `studio-nova run`: thin wrappers over `studio_nova.workflow`.

Each shot's steps are separate tasks so the Prefect UI shows, per shot, where it is and why it
failed; the domain logic (and idempotency) lives in `studio_nova.workflow`.

With `gate=True` (a Prefect server with the project's deployments) the flow renders nothing
itself: a shot waiting for review gets its own review-gate run, and approved shots are queued on
the GPU pool, so no person's decision ever keeps a render slot or this process waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from studio_nova import workflow
from studio_nova.config import load_settings


def _workspace(out: str) -> workflow.Workspace:
    return workflow.Workspace.open(out, load_settings())


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition for every step: retry what may not happen again (the store
    unreachable for a moment, a GPU out of memory the render's own retries did not outlast), never
    a bad input, which fails its shot once (`workflow.is_transient`)."""
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and workflow.is_transient(error)


#: Task retries where they belong: a step is idempotent (it goes on from the store), so a retry
#: after a transient failure continues it.
RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [5, 30], "retry_condition_fn": retry_if_transient}


@task(name="ingest", **RETRIES)
def ingest_task(timeline: str, out: str) -> dict[str, Any]:
    ws = _workspace(out)
    try:
        report = workflow.ingest_cut(ws, timeline)
        return {"timeline_id": report.timeline_id, "shot_ids": report.shot_ids, "problems": report.problems}
    finally:
        ws.close()


@task(name="keyframes-and-review", task_run_name="keyframes-{shot_id}", **RETRIES)
def prepare_task(out: str, shot_id: int, auto_approve: bool) -> str:
    ws = _workspace(out)
    try:
        workflow.guarded(ws, shot_id, lambda: workflow.prepare_shot(ws, shot_id, auto_approve=auto_approve))
        return ws.store.shot(shot_id).status
    finally:
        ws.close()


@task(name="render-shot", task_run_name="render-{shot_id}", **RETRIES)
def render_task(out: str, shot_id: int, backend: str | None, worker: str | None = None) -> str:
    """Render one shot under its lease (`worker`: the lease holder's name, a slot run's)."""
    ws = _workspace(out)
    if worker:
        ws.worker = worker
    try:
        shot = ws.store.shot(shot_id)
        if shot.status not in workflow.RENDERABLE:
            return shot.status
        artifact: list[Any] = []  # made at the first finished chunk: an up-to-date render has none

        def progress(done: int, total: int) -> None:
            if not artifact:
                artifact.append(create_progress_artifact(
                    progress=0.0, key=None, description=f"render of {shot.name} ({shot.key})"
                ))
            update_progress_artifact(artifact_id=artifact[0], progress=100.0 * done / total)

        workflow.guarded(ws, shot_id, lambda: workflow.render(ws, shot_id, backend=backend, progress=progress))
        return ws.store.shot(shot_id).status
    finally:
        ws.close()


@task(name="conform", **RETRIES)
def finish_task(out: str, report: dict[str, Any], timeline: str, formats: list[str]) -> dict[str, Any]:
    ws = _workspace(out)
    try:
        ingest = workflow.IngestReport(**report)
        return workflow.finish_run(ws, ingest, timeline, formats).to_dict()
    finally:
        ws.close()


@task(name="open-gates", **RETRIES)
def gate_task(out: str, shot_ids: list[int], backend: str | None, formats: list[str]) -> dict[str, str]:
    """Open a review gate per waiting shot and queue one render of the shots that need one."""
    from studio_nova_flows import deployments

    ws = _workspace(out)
    try:
        url, folder = ws.store.url, str(ws.out)
        statuses = {i: ws.store.shot(i).status for i in shot_ids}
        stale = [i for i in shot_ids if workflow.needs_render(ws, i, backend)]
    finally:
        ws.close()
    opened = {}
    for shot_id, status in statuses.items():
        if status == "in_review":
            opened[str(shot_id)] = str(deployments.request_review(url, folder, shot_id, backend=backend, formats=formats))
    if stale:  # approved, interrupted, or rendered from inputs that changed since
        opened["render"] = str(deployments.request_render(url, folder, stale, backend=backend, formats=formats))
    return opened


def run_shots(
    timeline: str, out: str, backend: str | None, auto_approve: bool, formats: list[str], gate: bool
) -> dict[str, Any]:
    """The body shared by `run_flow` and the keyframes deployment."""
    logger = get_run_logger()
    timeline = str(Path(timeline).resolve())
    report = ingest_task(timeline, out)
    logger.info("%d shots to edit, %d clips skipped", len(report["shot_ids"]), len(report["problems"]))
    for shot_id in report["shot_ids"]:
        status = prepare_task(out, shot_id, auto_approve)
        if not gate and status in workflow.RENDERABLE:
            render_task(out, shot_id, backend)
    result = finish_task(out, report, timeline, formats)
    if gate:
        result["gates"] = gate_task(out, report["shot_ids"], backend, formats)
    return result


@flow(name="studio-nova-run", log_prints=True)
def run_flow(
    timeline: str,
    out: str,
    backend: str | None = None,
    auto_approve: bool = False,
    formats: list[str] | None = None,
    gate: bool = False,
) -> dict[str, Any]:
    """ingest → keyframes → review → render → conform for one cut."""
    return run_shots(timeline, out, backend, auto_approve, list(formats or []), gate)
