"""The project's deployments, work pools, and the calls that start or resume their runs.

`DEPLOYMENTS` is the single list the code registers (`studio-nova deploy`, `studio-nova server`);
`deploy/prefect.yaml` describes the same deployments for `prefect deploy --all`, and a test keeps
the two in step. Entrypoints are module paths, so a worker runs the installed package and needs no
copy of the repository.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    WorkerFilter,
    WorkerFilterStatus,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.flow_runs import resume_flow_run
from prefect.schedules import Cron
from prefect.states import Crashed
from prefect.workers.process import ProcessWorker

from studio_nova.app.server import CPU_POOL, GPU_POOL
from studio_nova.workflow.review_gate import Answer


def store_tag(store_url: str) -> str:
    """A short, stable name for a store, so flow runs of two output folders never get mixed up."""
    return "studio-nova-store-" + hashlib.sha256(store_url.encode()).hexdigest()[:12]


def shot_tag(store_url: str, shot_id: int) -> str:
    return f"{store_tag(store_url)}-shot-{shot_id}"


NIGHTLY_CRON = "0 1 * * *"  # 01:00 every night, after the day's reviews
ACTIVE_STATES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


@dataclass(frozen=True)
class Pool:
    name: str
    description: str
    concurrency_limit: int | None = None


# One render slot per GPU: every GPU worker takes one run at a time (`studio-nova worker --pool gpu`
# starts it with --limit 1), and the pool has no limit of its own, so N GPU workers render N shots.
POOLS = (
    Pool(CPU_POOL, "ingest, keyframes, review gates, render dispatch, conform"),
    Pool(GPU_POOL, "renders: each GPU worker runs one at a time (its render slot); no pool-wide limit"),
)


@dataclass(frozen=True)
class DeploymentSpec:
    flow: str  # module path of the flow object
    name: str
    pool: str
    description: str
    cron: str | None = None
    tags: tuple[str, ...] = ("studio-nova",)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def flow_name(self) -> str:
        return _load(self.flow).name

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


KEYFRAMES = DeploymentSpec(
    "studio_nova_flows.keyframes.keyframes_flow", "on-demand", CPU_POOL,
    "Ingest a cut, edit every shot's keyframes and open a review gate per shot.",
)
REVIEW = DeploymentSpec(
    "studio_nova_flows.review.review_flow", "review-gate", CPU_POOL,
    "One shot's review: waits (suspended, holding nothing) for approve / reject.",
)
NIGHTLY = DeploymentSpec(
    "studio_nova_flows.render.render_flow", "nightly", CPU_POOL,
    "Every approved, unrendered shot of the store, rendered on the GPU workers; then conform.", cron=NIGHTLY_CRON,
)
ON_APPROVAL = DeploymentSpec(
    "studio_nova_flows.render.render_flow", "on-approval", CPU_POOL,
    "The shots a reviewer just approved, rendered on the GPU workers; then conform.",
)
SLOT = DeploymentSpec(
    "studio_nova_flows.render.render_slot_flow", "slot", GPU_POOL,
    "One GPU worker's share of a render: claims the next shot under a lease, renders it, again until none is left.",
)
CONFORM = DeploymentSpec(
    "studio_nova_flows.render.conform_flow", "conform", CPU_POOL,
    "Relink every rendered shot into the cut; QC table and before/after stills.",
)
TRAIN = DeploymentSpec(
    "studio_nova_flows.train.train_flow", "train", GPU_POOL,
    "Train or fine-tune the NOVA adapter on the studio's own clips (no edited pairs); resume=true continues.",
)
DEPLOYMENTS = (KEYFRAMES, REVIEW, NIGHTLY, ON_APPROVAL, SLOT, CONFORM, TRAIN)


def _load(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def ensure_pools(pools: Sequence[Pool] = POOLS) -> None:
    """Create the work pools (process type, the worker's default job template) if missing, else
    set their description and concurrency limit. A worker started with the server creates its
    pool too (bare, unlimited) when it finds none; whichever comes first, the pool ends as
    described here."""
    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        for pool in pools:
            try:
                client.read_work_pool(pool.name)
            except ObjectNotFound:
                try:
                    client.create_work_pool(
                        WorkPoolCreate(
                            name=pool.name,
                            type="process",
                            description=pool.description,
                            base_job_template=template,
                            concurrency_limit=pool.concurrency_limit,
                        )
                    )
                    continue
                except ObjectAlreadyExists:  # a worker created it between the read and the create
                    pass
            client.update_work_pool(
                pool.name,
                WorkPoolUpdate(description=pool.description, concurrency_limit=pool.concurrency_limit),
            )


def register(
    nightly_out: str | None = None,
    specs: Iterable[DeploymentSpec] = DEPLOYMENTS,
    *,
    nightly_cron: str | None = None,
) -> list[str]:
    """Register the deployments with the server (idempotent). The nightly schedule needs to know
    which output folder (store) to render; without `nightly_out` it is registered paused.
    `nightly_cron` (the caller's `Settings.nightly_cron`, already validated) replaces the nightly's
    default `NIGHTLY_CRON`; cron schedules are in UTC."""
    ensure_pools()
    names = []
    for spec in specs:
        parameters = dict(spec.parameters)
        cron = spec.cron
        if spec is NIGHTLY:
            cron = nightly_cron or spec.cron
            if nightly_out:
                parameters["out"] = nightly_out
        deployment = _load(spec.flow).to_deployment(
            name=spec.name,
            schedule=Cron(cron, timezone="UTC") if cron else None,  # UTC said, not assumed
            paused=True if cron and not nightly_out else None,
            parameters=parameters,
            description=spec.description,
            tags=list(spec.tags),
            work_pool_name=spec.pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.apply(work_pool_name=spec.pool)
        names.append(spec.full_name)
    return names


def registered() -> set[str]:
    with get_client(sync_client=True) as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[s.name for s in DEPLOYMENTS]))
        )
        flows = {f.id: f.name for f in client.read_flows()}
    return {f"{flows.get(d.flow_id)}/{d.name}" for d in found}


# ----------------------------------------------------------------------------- runs of the gate


def active_runs(tag: str, deployment: DeploymentSpec | None = None) -> list[FlowRun]:
    """Runs carrying `tag` that are not finished (scheduled, pending, running or paused)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[tag]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE_STATES)),
            )
        )
        if deployment is None:
            return list(runs)
        ids = {d.id for d in client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment.name]))
        )}
    return [r for r in runs if r.deployment_id in ids]


def request_review(store_url: str, out: str, shot_id: int, *, backend: str | None, formats: Sequence[str]) -> UUID:
    """Open the shot's review gate unless one is already open (reruns must not open a second)."""
    tag = shot_tag(store_url, shot_id)
    existing = active_runs(tag, REVIEW)
    if existing:
        return existing[0].id
    run = run_deployment(
        REVIEW.full_name,
        parameters={"out": out, "shot_id": shot_id, "backend": backend, "formats": list(formats)},
        tags=["studio-nova", store_tag(store_url), tag],
        timeout=0,
        as_subflow=False,
    )
    return run.id


def request_render(store_url: str, out: str, shot_ids: Sequence[int], *, backend: str | None, formats: Sequence[str]) -> UUID:
    """Queue a render of these shots on the GPU pool; the caller does not wait for it."""
    run = run_deployment(
        ON_APPROVAL.full_name,
        parameters={"out": out, "shot_ids": list(shot_ids), "backend": backend, "formats": list(formats)},
        tags=["studio-nova", store_tag(store_url), *(shot_tag(store_url, i) for i in shot_ids)],
        timeout=0,
        as_subflow=False,
    )
    return run.id


# ----------------------------------------------------------------------------- the farm's slots


def request_slot(store_url: str, out: str, shot_ids: Sequence[int], *, backend: str | None, dispatcher_tag: str) -> UUID:
    """Queue one GPU worker's share of a render (`render_slot_flow`) on the GPU pool."""
    run = run_deployment(
        SLOT.full_name,
        parameters={"out": out, "shot_ids": list(shot_ids), "backend": backend},
        tags=["studio-nova", store_tag(store_url), dispatcher_tag],
        timeout=0,
        as_subflow=False,
    )
    return run.id


def gpu_slots() -> int:
    """Render slots the farm has now: one per online GPU-pool worker (at least one, so that a
    render queued before any worker is up runs when the first one starts)."""
    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(
            GPU_POOL, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
        )
    return max(1, len(workers))


def queued_slots(dispatcher_tag: str) -> int:
    """The dispatcher's slot runs not started yet (scheduled or pending)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[dispatcher_tag]),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
                ),
            )
        )
    return len(runs)


def mark_lost(holder: str, message: str) -> bool:
    """Mark the slot run whose worker held a lease that ran out as crashed, so the UI does not
    show a lost worker's run as running forever. `holder` is a `worker_name` ending in the run's
    id; False when it names no run that is still running."""
    try:
        run_id = UUID(holder.rsplit(":", 1)[-1])
    except ValueError:
        return False
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            return False
        if run.state is None or run.state.type != StateType.RUNNING:
            return False
        client.set_flow_run_state(run_id, Crashed(message=message), force=True)
    return True


@dataclass(frozen=True)
class GateOutcome:
    action: str  # "resumed" | "waiting" | "render-requested" | "review-requested"
    flow_run_id: UUID | None


def answer_gate(
    store_url: str, out: str, shot_id: int, status: str, answer: Answer, *, formats: Sequence[str] = ()
) -> GateOutcome:
    """After the CLI recorded a decision: resume the shot's paused review run with the same input
    the UI form gives; with no run waiting, start what the decision calls for."""
    runs = active_runs(shot_tag(store_url, shot_id), REVIEW)
    paused = [r for r in runs if r.state is not None and r.state.type == StateType.PAUSED]
    if paused:
        resume_flow_run(paused[0].id, run_input=answer.as_input())
        return GateOutcome("resumed", paused[0].id)
    if runs:
        return GateOutcome("waiting", runs[0].id)  # about to suspend; it reads the store first
    if status == "approved":
        return GateOutcome("render-requested", request_render(store_url, out, [shot_id], backend=None, formats=formats))
    return GateOutcome("review-requested", request_review(store_url, out, shot_id, backend=None, formats=formats))
