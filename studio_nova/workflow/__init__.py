"""The pipeline's steps as plain functions over a workspace (output folder + store).

Every step reads its inputs from the store and files, records what it made, and is idempotent: a
rerun continues where the last one stopped. Orchestrators (the in-process runner, Prefect flows in
`flows/`) call these; nothing here imports one.
"""

from studio_nova.workflow.conform import conform_timeline
from studio_nova.workflow.farm import FarmProgress, FarmTargets, farm_progress, farm_targets
from studio_nova.workflow.ingest import IngestReport, ingest_cut, shot_fingerprint
from studio_nova.workflow.keyframes import (
    approved_keyframes,
    edit_keyframes,
    effective_edit,
    original_keyframes,
)
from studio_nova.workflow.leases import HeldLease, is_transient, lease_length, worker_name
from studio_nova.workflow.render import (
    MASTER_CODEC,
    RENDER_FORMAT,
    RENDERABLE,
    RenderPlan,
    linked_render,
    needs_render,
    render,
    render_plan,
)
from studio_nova.workflow.review import (
    AUTO_REVIEWER,
    prepare_shot,
    resolve_shot,
    review,
)
from studio_nova.workflow.run import (
    RunReport,
    before_after_still,
    finish_run,
    guarded,
    qc_rows,
    renderable_shots,
    run_cut,
    shot_outcome,
)
from studio_nova.workflow.workspace import Workspace

__all__ = [
    "AUTO_REVIEWER", "FarmProgress", "FarmTargets", "HeldLease", "IngestReport", "MASTER_CODEC", "RENDERABLE", "RENDER_FORMAT", "RenderPlan",
    "RunReport", "Workspace", "approved_keyframes", "before_after_still", "conform_timeline",
    "edit_keyframes", "effective_edit", "farm_progress", "farm_targets", "finish_run", "guarded", "ingest_cut", "is_transient", "lease_length", "linked_render",
    "needs_render", "original_keyframes", "prepare_shot", "qc_rows", "render", "render_plan",
    "renderable_shots", "resolve_shot", "review", "run_cut", "shot_fingerprint", "shot_outcome", "worker_name",
]
