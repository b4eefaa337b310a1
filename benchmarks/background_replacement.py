"""Background replacement quality and speed, through the product's own path.

Synthetic green- and blue-screen shots with a known ground-truth composite (`make_greenscreen`:
a textured figure moving and deforming, motion blur, an unevenly lit noisy screen, spill, an
optional head of fine hair strands) are written as camera originals (ProRes 422 HQ), cut into an
OTIO timeline with a `"kind": "background"` request over a panning plate, rendered by the
pipeline (in-process, `flow`) and the decoded master compared with the truth:

- `psnr_db`: every pixel of every frame against the truth (composite over the plate as its codec
  gave it back, so the key is judged, not the plate's codec);
- `interior_psnr_db`: deep inside the subject, master against the decoded source (codec loss only);
- the render's own QC (`fg_fidelity_db`, `bg_motion_ratio`, `edge_bleed`, `edge_halo`) and speed;
- peak resident memory of the process.

    python benchmarks/background_replacement.py --out /tmp/bg [--size 640x360] [--frames 48] \\
        [--json-out benchmarks/results/background_replacement.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import opentimelineio as otio

from studio_nova import workflow
from studio_nova.config import load_settings
from studio_nova.footage.greenscreen import make_greenscreen
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.probe import probe
from studio_nova.render import qc

CASES = {
    # name: (make_greenscreen options, matte request)
    "green_chroma": ({}, {"source": "chroma", "params": {"screen": "green"}}),
    "blue_chroma": ({"screen": "blue"}, {"source": "chroma", "params": {"screen": "blue"}}),
    "green_hair_chroma": ({"hair": True}, {"source": "chroma", "params": {"screen": "green"}}),
    "green_hard_chroma": (
        {"noise": 0.03, "vignetting": 0.6, "shadow": 0.6, "hair": True},
        {"source": "chroma", "params": {"screen": "green"}},
    ),
    "green_matte_file": ({}, {"source": "file", "params": {"path": "matte.mkv"}}),
    "alpha_4444": ({}, {"source": "alpha"}),
}


def _decode(path: Path) -> np.ndarray:
    info = probe(path)
    return np.stack([to_float(f) for f in read_frames(info, 0, info.frame_count - 1)])


def run_case(root: Path, name: str, frames: int, width: int, height: int) -> dict:
    options, matte = CASES[name]
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shot = make_greenscreen(frames, width, height, seed=11, **options)
    source = shot.write_with_alpha(folder / "source_4444.mov") if name == "alpha_4444" else shot.write_source(folder / "source.mov")
    plate_path = shot.write_plate(folder / "plate.mov")
    if matte["source"] == "file":
        shot.write_matte(folder / "matte.mkv")
    rate = float(shot.fps)
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url=source.name,
            available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(frames, rate)),
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(frames, rate)),
    )
    clip.metadata["studio_nova"] = {"edit": {
        "kind": "background",
        "background": {"source": "plate", "params": {"video": plate_path.name}},
        "matte": matte,
    }}
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name=name)
    timeline.tracks.append(track)
    cut = folder / "cut.otio"
    otio.adapters.write_to_file(timeline, str(cut))

    ws = workflow.Workspace.open(folder / "out", load_settings())
    started = time.perf_counter()
    try:
        [outcome] = workflow.run_cut(ws, cut, auto_approve=True).to_dict()["shots"]
    finally:
        ws.close()
    seconds = time.perf_counter() - started
    if outcome["status"] != "conformed":
        return {"case": name, "status": outcome["status"], "error": outcome.get("error")}
    out = _decode(Path(outcome["render"]))
    truth = shot.truth_over(_decode(plate_path))
    deep = shot.interior(erode=8)
    decoded_source = _decode(source)
    return {
        "case": name,
        "status": outcome["status"],
        "psnr_db": round(qc.psnr(out, truth), 3),
        "interior_psnr_db": round(qc.psnr(out[deep], decoded_source[deep]), 3) if deep.any() else None,
        "qc": outcome["qc"].get("background"),
        "render_fps": outcome["qc"].get("render_fps"),
        "pipeline_seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    root = Path(args.out)
    results = [run_case(root, name, args.frames, width, height) for name in args.cases]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "size": f"{width}x{height}",
        "frames": args.frames,
        "backend": "flow",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cases": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n")
    return 0 if all(r["status"] == "conformed" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
