"""The review gate of one shot, as a Prefect flow that suspends while it waits.

Suspending ends the run's process, so a review that waits overnight holds no worker, no GPU and no
render slot. On resume Prefect starts the flow again from the top; every step here is idempotent
(the store knows what was edited and decided, and a suspend key that was already answered returns
its answer at once), so the rerun walks straight back to where it stopped.
"""

from __future__ import annotations

import itertools
from typing import Literal

from prefect import flow, get_run_logger
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from studio_nova import workflow
from studio_nova.config import load_settings
from studio_nova.workflow import review_gate
from studio_nova.workflow.review_page import review_markdown
from studio_nova_flows import deployments


class ReviewInput(RunInput):
    """The form under the keyframes. Shape checks happen here; the rules in `review_gate`."""

    decision: Literal["approve", "reject"] = Field(
        "approve", description="approve renders the shot; reject re-edits its keyframes and asks again"
    )
    reviewer: str = Field("", description="your name, recorded with the decision")
    notes: str = Field("", description="what is wrong (on reject)")
    new_instruction: str = Field("", description="optional, on reject: a new instruction for the re-edit")
    new_seed: int | None = Field(None, description="optional, on reject: a new seed for the re-edit")


def _ask(ws: workflow.Workspace, shot_id: int, version: int, hours: float) -> review_gate.Answer | None:
    """Suspend until a usable answer arrives; an unusable one is asked again with the reason on
    the page. None when the store was answered elsewhere (the CLI) meanwhile."""
    problem = None
    for attempt in itertools.count():
        page = review_gate.review_page(ws.store, shot_id, timeout_hours=hours, problem=problem)
        form = ReviewInput.with_initial_data(description=review_markdown(page))
        reply = suspend_flow_run(
            wait_for_input=form, timeout=int(hours * 3600), key=f"review-shot{shot_id}-v{version}-{attempt}"
        )
        answer = review_gate.Answer(
            decision=reply.decision,
            reviewer=reply.reviewer,
            notes=reply.notes,
            new_instruction=reply.new_instruction,
            new_seed=reply.new_seed,
        )
        problem = review_gate.check_answer(answer)
        if problem is None:
            return answer
        if ws.store.shot(shot_id).status != "in_review":
            return None
        get_run_logger().warning("answer not accepted (%s); asking again", problem)
    return None  # unreachable: itertools.count() never ends


@flow(name="studio-nova-review", log_prints=True)
def review_flow(out: str, shot_id: int, backend: str | None = None, formats: list[str] | None = None) -> str:
    """Edit (or re-edit) one shot's keyframes, wait for a reviewer, and queue the approved render."""
    logger = get_run_logger()
    ws = workflow.Workspace.open(out, load_settings())
    try:
        hours = review_gate.review_timeout_hours(ws.settings)
        while True:
            workflow.guarded(ws, shot_id, lambda: workflow.prepare_shot(ws, shot_id))
            shot = ws.store.shot(shot_id)
            if shot.status != "in_review":
                break
            version = ws.store.keyframes(shot_id)[0].version
            answer = _ask(ws, shot_id, version, hours)
            if answer is not None:
                shot = review_gate.record_answer(ws.store, shot_id, version, answer)
                logger.info("%s: keyframes v%03d %s by %s", shot.name, version, shot.status, answer.reviewer)
            shot = ws.store.shot(shot_id)
            if shot.status != "rejected":
                break
        if shot.status in ("approved", "rendering"):
            run_id = deployments.request_render(ws.store.url, str(ws.out), [shot_id], backend=backend, formats=formats or [])
            logger.info("%s approved; render queued as flow run %s", shot.name, run_id)
        return shot.status
    finally:
        ws.close()
