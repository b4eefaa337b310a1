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
    from studio_nova.cut.ingest import ingest
    from studio_nova.cut.plan import plan_shot

    settings = run_settings()
    cut = ingest(timeline, settings)
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
    problems = [{"name": p.name, "key": p.key, "error": str(p.error)} for p in cut.problems]
    rows = [(s["name"], s["key"], f"{s['first_frame']}-{s['last_frame']}", s["rate"], f"{s['width']}x{s['height']}",
             len(s["chunks"]), len(s["keyframes"]), s["edit"]["editor"], "") for s in shots]
    rows += [(p["name"], p["key"], "", "", "", "", "", "", status("skipped").append(f": {p['error']}")) for p in problems]
    columns = ["Shot", "Key", "Frames", number("fps"), "Size", number("Chunks"), number("Keyframes"), "Editor", "Note"]
    emit(as_json, {"shots": shots, "problems": problems}, table(columns, rows) if rows else "no shots")
    return 0 if shots else 1


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
    """Ingest → keyframes → review → render → conform."""
    from studio_nova.app.runner import load_orchestrator, run_timeline

    with run_display(enabled=orchestrator == IN_PROCESS) as display:
        result = run_timeline(timeline, out, settings=run_settings(), backend=backend, auto_approve=auto_approve,
                              formats=[f.value for f in formats or []], orchestrator=orchestrator, progress=display)
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

    with run_display(enabled=orchestrator == IN_PROCESS) as display:
        result = run_demo(out, settings=run_settings(), backend=backend, orchestrator=orchestrator, progress=display)
    rows = [(s["name"], status(s["status"]), s.get("psnr_db"), s.get("psnr_edit_db"), s.get("ssim_outside_edit"),
             s.get("seam_psnr_db"), s.get("fps")) for s in result["shots"]]
    columns = ["Shot", "Status", number("PSNR dB"), number("edit dB"), number("SSIM outside edit"),
               number("seam dB"), number("fps")]
    emit(as_json, result, table(columns, rows), f"conformed cut: {result['conformed']}")
    return 0 if all(s["status"] != "failed" for s in result["shots"]) else 1
