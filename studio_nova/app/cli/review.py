"""`review list|approve|reject`: the review gate from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from studio_nova.app.cli.output import JsonFlag, emit, run_settings, status, table
from studio_nova.errors import StudioNovaError

app = typer.Typer(help="List, approve or reject shots waiting for review.")

Out = Annotated[Optional[Path], typer.Option(help="the run's output folder")]
Shot = Annotated[str, typer.Argument(metavar="SHOT", help="clip name or cut key (e.g. V1/3)", show_default=False)]
Notes = Annotated[str, typer.Option(help="why (kept with the decision)")]
Reviewer = Annotated[Optional[str], typer.Option(help="name recorded with the decision (default: STUDIO_NOVA_REVIEWER)")]

FOLLOW_GATE = {
    "resumed": "its review run goes on in Prefect",
    "waiting": "its review run reads the decision when it starts",
    "render-requested": "its render is queued on the GPU pool",
    "review-requested": "its keyframes are re-edited in a new review run",
}


def _open_workspace(out: Path | None) -> Any:
    from studio_nova import workflow

    settings = run_settings()
    if out is None and not settings.database_url:
        raise StudioNovaError("say which run to review: --out DIR (or set STUDIO_NOVA_DATABASE_URL)")
    folder = out if out is not None else Path.cwd()
    if out is not None and not (folder / "studio-nova.db").exists() and not settings.database_url:
        raise StudioNovaError(f"no studio-nova run in {folder} (no studio-nova.db there)", path=folder)
    return workflow.Workspace.open(folder, settings)


@app.command("list")
def list_shots(
    out: Out = None,
    all_shots: Annotated[bool, typer.Option("--all", help="every shot, not only those waiting")] = False,
    as_json: JsonFlag = False,
) -> int:
    """The shots waiting for review (or every shot), with their keyframes and reviews."""
    from studio_nova.workflow import review_gate

    ws = _open_workspace(out)
    try:
        hours = review_gate.review_timeout_hours(ws.settings)
        rows = []
        for shot in ws.store.shots(status=None if all_shots else "in_review"):
            keyframes = ws.store.keyframes(shot.id)
            state = review_gate.review_state(ws.store, shot, hours)
            rows.append({
                "name": shot.name,
                "key": shot.key,
                "shot": shot.slug,  # unique in the run folder: what to type when names repeat
                "status": shot.status,
                "keyframe_version": keyframes[0].version if keyframes else None,
                "keyframes": [k.edited_path for k in keyframes],
                "reviews": [
                    {"decision": r.decision, "reviewer": r.reviewer, "notes": r.notes, "time": r.created_at.isoformat()}
                    for r in ws.store.reviews(shot.id)
                ],
                "review_expires_at": state.expires_at.isoformat() if state.expires_at else None,
                "review_expired": state.expired,
            })
    finally:
        ws.close()
    human = table(
        ["Shot", "Key", "Folder", "Status", "Keyframes", "Review"],
        [(r["name"], r["key"], r["shot"], status(r["status"]), f"v{r['keyframe_version'] or 0:03d}",
          status("failed").append("EXPIRED (answer here to go on)") if r["review_expired"] else "") for r in rows],
    ) if rows else "nothing waiting for review"
    emit(as_json, {"shots": rows}, human)
    return 0


@app.command()
def approve(shot: Shot, out: Out = None, notes: Notes = "", reviewer: Reviewer = None, as_json: JsonFlag = False) -> int:
    """Approve a shot's keyframes: it renders next."""
    return _decide("approve", shot, out, notes, reviewer, None, None, as_json)


@app.command()
def reject(
    shot: Shot,
    out: Out = None,
    notes: Notes = "",
    reviewer: Reviewer = None,
    instruction: Annotated[Optional[str], typer.Option(help="new instruction for the re-edit")] = None,
    seed: Annotated[Optional[int], typer.Option(help="new seed for the re-edit")] = None,
    as_json: JsonFlag = False,
) -> int:
    """Reject a shot's keyframes: they are re-edited (a new version; old ones are kept)."""
    return _decide("reject", shot, out, notes, reviewer, instruction, seed, as_json)


def _decide(verb: str, ref: str, out: Path | None, notes: str, reviewer: str | None,
            instruction: str | None, seed: int | None, as_json: bool) -> int:
    """Record the decision, then resolve the shot's review gate in Prefect the way the form does."""
    from studio_nova import workflow
    from studio_nova.app.runner import connected
    from studio_nova.workflow import review_gate

    ws = _open_workspace(out)
    try:
        shot = workflow.review(ws, ref, verb, reviewer=reviewer, notes=notes or "",
                               new_instruction=instruction, new_seed=seed)
        decision = "approved" if verb == "approve" else "rejected"
        recorded = ws.store.reviews(shot.id)[-1]  # what the orchestrator's form is answered with
        answer = review_gate.Answer(decision=verb, reviewer=recorded.reviewer, notes=recorded.notes,
                                    new_instruction=recorded.new_instruction or "", new_seed=recorded.new_seed)
        payload: dict[str, Any] = {"name": shot.name, "key": shot.key, "status": shot.status}
        orchestrator = connected(ws.settings)
        if orchestrator is not None:
            outcome = orchestrator.answer_review(ws.store.url, ws.out, shot, answer)
            payload["gate"] = {"action": outcome.action, "flow_run_id": outcome.run_id}
            follow = FOLLOW_GATE[outcome.action]
        elif decision == "approved":
            follow = "it renders on the next `studio-nova run`"
        else:
            follow = "its keyframes are re-edited on the next `studio-nova run`"
    finally:
        ws.close()
    emit(as_json, payload, f"{shot.name}: {shot.status}; {follow}")
    return 0
