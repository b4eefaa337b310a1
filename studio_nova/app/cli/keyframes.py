"""`keyframes export`: each shot's original keyframes as files, for painting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from studio_nova.app.cli.output import JsonFlag, emit, number, run_settings, status, table
from studio_nova.app.cli.run import Timeline
from studio_nova.errors import StudioNovaError

app = typer.Typer(help="Keyframe files for painting.")


@app.command()
def export(
    timeline: Timeline,
    out: Annotated[Path, typer.Option(help="one folder per shot is written here", show_default=False)],
    as_json: JsonFlag = False,
) -> int:
    """Write each shot's original keyframes, one folder per shot."""
    from studio_nova.cut.ingest import ingest
    from studio_nova.cut.naming import shot_slug_candidates, unique_names
    from studio_nova.media.keyframe_files import keyframe_filename, write_png
    from studio_nova.workflow import original_keyframes

    settings = run_settings()
    cut = ingest(timeline, settings)
    slugs = unique_names(shot_slug_candidates(s.name, s.key) for s in cut.shots)
    shots = []
    for shot, slug in zip(cut.shots, slugs):
        folder = out / slug
        entry: dict[str, Any] = {"name": shot.name, "key": shot.key, "dir": str(folder), "keyframes": []}
        try:
            for kf in original_keyframes(shot.media, shot.first_frame, shot.last_frame, settings.keyframe_interval,
                                         info=shot.info):
                write_png(folder / keyframe_filename(kf.source_frame), kf.image, shot.info.bit_depth)
                entry["keyframes"].append(kf.source_frame)
        except StudioNovaError as exc:
            entry["error"] = str(exc)
        shots.append(entry)
    problems = [{"name": p.name, "key": p.key, "error": str(p.error)} for p in cut.problems]
    rows = [(s["name"], len(s["keyframes"]), s["dir"], status("failed").append(f": {s['error']}") if "error" in s else "")
            for s in shots]
    emit(as_json, {"shots": shots, "problems": problems},
         table(["Shot", number("Keyframes"), "Folder", "Error"], rows) if rows else "no shots")
    return 0 if any(not s.get("error") for s in shots) else 1
