"""`plan`, `run` and `demo`: a cut (or the demo's own) through the pipeline."""

from __future__ import annotations

from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from studio_nova.app.cli.output import JsonFlag, emit, number, run_settings, status, table
from studio_nova.app.cli.progress import run_display

Timeline = Annotated[Path, typer.Argument(metavar="TIMELINE", help="the cut (.otio .edl .xml .fcpxml .aaf)",
                                          show_default=False)]
Orchestrator = Literal["prefect", "none"]
IN_PROCESS = "none"


class ConformFormat(str, Enum):
    fcp_xml = "fcp_xml"
    cmx_3600 = "cmx_3600"
    fcpx_xml = "fcpx_xml"


def _rate_number(rate: Fraction) -> float | int:
    return int(rate) if rate.denominator == 1 else round(float(rate), 6)


def plan(timeline: Timeline, as_json: JsonFlag = False) -> int:
    """The shots a cut would edit: media, frames, chunks, keyframes."""
    from studio_nova.cut.plan import plan_shot
    from studio_nova.workflow.checks import checked_cut

    settings = run_settings()
    cut = checked_cut(timeline, settings)  # every check `run` makes before it renders
    shots = []
    for shot in cut.shots:
        planned = plan_shot(shot.first_frame, shot.last_frame, length=settings.chunk_length,
                            overlap=settings.chunk_overlap, interval=settings.keyframe_interval)
        shots.append({
            "name": shot.name,
            "key": shot.key,
            "media": str(shot.media),
            "rate": _rate_number(shot.info.rate),
            "rate_fraction": f"{shot.info.rate.numerator}/{shot.info.rate.denominator}",
            "width": shot.info.width,
            "height": shot.info.height,
            "bit_depth": shot.info.bit_depth,
            "first_frame": planned.first_frame,
            "last_frame": planned.last_frame,
            "chunks": [list(c) for c in planned.chunks],
            "keyframes": planned.keyframes,
            "edit": {"instruction": shot.edit.instruction, "editor": shot.edit.editor,
                     "params": shot.edit.params, "seed": shot.edit.seed},
        })
    problems = [_plan_problem(p) for p in cut.problems]
    rows = [(s["name"], s["key"], f"{s['first_frame']}-{s['last_frame']}", s["rate"], f"{s['width']}x{s['height']}",
             len(s["chunks"]), len(s["keyframes"]), s["edit"]["editor"], "") for s in shots]
    rows += [(p["name"], p["key"], "", "", "", "", "", "", status("skipped").append(f": {p['error']}")) for p in problems]
    columns = ["Shot", "Key", "Frames", number("fps"), "Size", number("Chunks"), number("Keyframes"), "Editor", "Note"]
    emit(as_json, {"shots": shots, "problems": problems}, table(columns, rows) if rows else "no shots")
    return 0 if shots else 1


def _plan_problem(problem: Any) -> dict[str, Any]:
    """A clip `run` would not render: its name and key, the error (naming the clip and the file,
    saying what to do), the error's type and the file it is about."""
    error = problem.error
    return {"name": problem.name, "key": problem.key, "error": str(error), "type": type(error).__name__,
            "path": str(error.path) if error.path is not None else None}


def _shots_table(shots: list[dict[str, Any]]) -> Any:
    return table(["Shot", "Status", "Render / error"],
                 [(s["name"], status(s["status"]), s.get("error") or s.get("render") or "") for s in shots])


def run(
    timeline: Timeline,
    out: Annotated[Path, typer.Option(help="output folder (renders, keyframes, store, conformed cut)",
                                      show_default=False)],
    backend: Annotated[Optional[str], typer.Option(help="propagator plugin (default: STUDIO_NOVA_BACKEND or flow)")] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="approve every shot's keyframes without review")] = False,
    formats: Annotated[Optional[list[ConformFormat]], typer.Option("--format", help="also write the cut as this")] = None,
    orchestrator: Annotated[Orchestrator, typer.Option(
        help="prefect (ephemeral when PREFECT_API_URL is unset) or none (in-process)")] = "prefect",
    as_json: JsonFlag = False,
) -> int:
    """Ingest → keyframes → review → render → conform.

    SIGTERM or Ctrl-C: an in-process run stops after the chunk it is rendering (a second signal
    stops at once); a Prefect run stops at once (Prefect marks its flow run Crashed). Either way
    the finished chunks are kept, the shots' statuses are printed with `"interrupted": SIGNAL`, the
    exit status is 128 + the signal, and the same command run again goes on from there."""
    import logging

    from studio_nova.app.cli.output import SignalReceived, graceful_stop, interruption_reported, received_signal
    from studio_nova.app.runner import load_orchestrator, run_timeline

    settings = run_settings()
    in_process = orchestrator == IN_PROCESS
    with graceful_stop(enabled=in_process) as stop, run_display(enabled=in_process) as display:
        try:
            result = run_timeline(timeline, out, settings=settings, backend=backend, auto_approve=auto_approve,
                                  formats=[f.value for f in formats or []], orchestrator=orchestrator,
                                  progress=display, stop=stop if in_process else None)
        except (SignalReceived, Exception) as exc:  # stopped at once, or broken by the stop (Prefect's
            # temporary server gets a terminal's Ctrl-C too): report what the store holds
            signum = exc.signum if isinstance(exc, SignalReceived) else received_signal()
            if signum is None:
                raise
            logging.getLogger(__name__).debug("stopped by %s", signum, exc_info=exc)
            interruption_reported()
            result, stop.signum = _stopped_at_once(timeline, out, settings, in_process), signum
    if result.get("interrupted"):
        return _interrupted(result, stop.signum or 0, out, as_json)
    waiting = [s for s in result["shots"] if s["status"] == "in_review"]
    gates = result.get("gates")
    follow = None
    if waiting and gates is not None:
        follow = f"waiting for review in the Prefect UI (or `studio-nova review approve|reject SHOT --out {out}`):"
        for shot in waiting:
            run_id = gates.get(str(_shot_id(out, shot["key"])))
            url = load_orchestrator(orchestrator).run_url(run_id) if run_id else "(gate not opened)"
            follow += f"\n  {shot['name']}: {url}"
    elif waiting:
        names = ", ".join(s["name"] for s in waiting)
        follow = f"waiting for review: {names} (studio-nova review approve SHOT --out {out})"
    emit(as_json, result, _shots_table(result["shots"]), f"conformed cut: {result['conformed']}", follow)
    nothing_ran = bool(result["shots"]) and all(s["status"] == "failed" for s in result["shots"])
    return 1 if nothing_ran else 0


def _stopped_at_once(timeline: Path, out: Path, settings: Any, in_process: bool) -> dict[str, Any]:
    """The report of a run a signal stopped at once: the cut's shots as the store has them."""
    import logging

    from studio_nova.app.runner import stored_report

    logging.getLogger(__name__).warning(
        "the chunk in progress was abandoned (nothing of it is kept under a real name)%s",
        "" if in_process else "; the Prefect flow run ends Crashed",
    )
    return stored_report(timeline, out, settings)


def _interrupted(result: dict[str, Any], signum: int, out: Path, as_json: bool) -> int:
    """A run stopped by a signal: what finished, `"interrupted": SIGNAL`, exit status 128 + signal."""
    import sys

    from studio_nova.app.cli.output import signal_name

    name = signal_name(signum)
    result["interrupted"] = name
    emit(as_json, result, _shots_table(result["shots"]) if result["shots"] else None,
         f"stopped by {name}: finished chunks are kept; run the same command again to go on")
    if as_json:
        print(f"studio-nova: stopped by {name}; run the same command again to go on (output: {out})",
              file=sys.stderr)
    return 128 + signum


def _shot_id(out: Path, key: str) -> int | None:
    from studio_nova import workflow

    ws = workflow.Workspace.open(out, run_settings())
    try:
        found = [s for s in ws.store.find_shots(key) if s.key == key]
        return found[0].id if found else None
    finally:
        ws.close()


def demo(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("studio-nova-demo"),
    backend: Annotated[Optional[str], typer.Option(help="propagator (default: flow)")] = None,
    orchestrator: Annotated[Orchestrator, typer.Option(help="prefect or none (in-process)")] = "prefect",
    as_json: JsonFlag = False,
) -> int:
    """Synthetic footage with a known edit, through the whole pipeline."""
    from studio_nova.app.demo import run_demo
    from studio_nova.app.runner import prepare_output

    settings = run_settings()
    prepare_output(out)  # a file or a read-only folder at --out is reported before any footage is made
    with run_display(enabled=orchestrator == IN_PROCESS) as display:
        result = run_demo(out, settings=settings, backend=backend, orchestrator=orchestrator, progress=display)
    rows = [(s["name"], status(s["status"]), s.get("psnr_db"), s.get("psnr_edit_db"), s.get("ssim_outside_edit"),
             s.get("seam_psnr_db"), s.get("fps")) for s in result["shots"]]
    columns = ["Shot", "Status", number("PSNR dB"), number("edit dB"), number("SSIM outside edit"),
               number("seam dB"), number("fps")]
    emit(as_json, result, table(columns, rows), f"conformed cut: {result['conformed']}")
    return 0 if all(s["status"] != "failed" for s in result["shots"]) else 1
