"""The CLI contract: JSON shapes, artist keyframes round trip, Prefect-orchestrated run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from studio_nova import qc
from studio_nova.frames import to_float
from studio_nova.keyframe_files import write_png
from studio_nova.media.decode import read_frames
from studio_nova.media.probe import probe
from studio_nova.synthetic import hue_rotate, make_scene

from test_pipeline import KEYED, H, W, _clip, _timeline, _write


def studio_nova(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio_nova.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def scene_media(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    scene = make_scene(90, W, H, seed=9, noise=0.01)
    media = _write(root / "B001.mov", scene.frames, timecode="01:00:00:00")
    return root, media, scene


def test_plan_json_reports_source_frames_chunks_and_keyframes(scene_media):
    root, media, _ = scene_media
    timeline = _timeline(
        root / "plan.otio",
        [_clip("sh030", media, 3, 85, media_start=90000, total=90, edit={"instruction": "red to blue", "editor": "recolor"})],
    )
    result = studio_nova("plan", str(timeline), "--json")
    assert result.returncode == 0, result.stderr
    [shot] = json.loads(result.stdout)["shots"]
    assert shot["name"] == "sh030" and shot["media"] == str(media)
    assert (shot["rate"], shot["width"], shot["height"]) == (25, W, H)
    assert (shot["first_frame"], shot["last_frame"]) == (3, 87)
    assert shot["chunks"] == [[3, 83], [7, 87]]
    assert shot["keyframes"] == [3, 13, 23, 33, 43, 53, 63, 73, 83, 87]


def test_artist_keyframes_exported_painted_and_propagated(scene_media, tmp_path):
    root, media, scene = scene_media
    paint_dir = tmp_path / "paint"
    edit = {"instruction": "repaint the target", "editor": "artist", "params": {"dir": str(paint_dir / "sh040")}}
    timeline = _timeline(root / "artist.otio", [_clip("sh040", media, 0, 90, edit=edit)])

    exported = studio_nova("keyframes", "export", str(timeline), "--out", str(paint_dir), "--json")
    assert exported.returncode == 0, exported.stderr
    [entry] = json.loads(exported.stdout)["shots"]
    assert entry["keyframes"] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 89]
    files = sorted((paint_dir / "sh040").glob("*.png"))
    assert [f.name for f in files][:2] == ["000000.png", "000010.png"]

    # A person paints the first three keyframes only: the run must say which are still to paint.
    target = scene.masks["target"]
    source = {i: to_float(f) for i, f in enumerate(read_frames(probe(media), 0, 89))}

    def painted(i: int) -> np.ndarray:
        return source[i] + target[i][..., None] * (hue_rotate(source[i], 150.0) - source[i])

    for f in files:
        f.unlink()
    for i in (0, 10, 20):
        write_png(paint_dir / "sh040" / f"{i:06d}.png", painted(i), 8)
    out = tmp_path / "out"
    first = studio_nova("run", str(timeline), "--out", str(out), "--auto-approve", "--orchestrator", "none", "--json")
    [shot] = json.loads(first.stdout)["shots"]
    assert shot["status"] == "failed"
    assert "000030.png" in shot["error"] and "000089.png" in shot["error"] and "000010.png" not in shot["error"]

    for i in (30, 40, 50, 60, 70, 80, 89):
        write_png(paint_dir / "sh040" / f"{i:06d}.png", painted(i), 8)
    second = studio_nova("run", str(timeline), "--out", str(out), "--auto-approve", "--orchestrator", "none", "--json")
    assert second.returncode == 0, second.stderr
    [shot] = json.loads(second.stdout)["shots"]
    assert shot["status"] == "conformed", shot
    render = probe(Path(shot["render"]))
    scores = [qc.psnr(to_float(o), to_float(np.clip(np.rint(painted(i) * 255), 0, 255).astype(np.uint8)))
              for i, o in enumerate(read_frames(render, 0, 89))]
    assert np.mean(scores) >= 30.0, f"mean {np.mean(scores):.1f} dB, worst {min(scores):.1f} dB"


def test_run_through_prefect_writes_the_conformed_cut_and_formats(scene_media, tmp_path):
    root, media, _ = scene_media
    timeline = _timeline(
        root / "prefect.otio",
        [_clip("sh050", media, 0, 30, edit={"instruction": "red to teal", "editor": "recolor", "params": KEYED})],
    )
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    result = studio_nova(
        "run", str(timeline), "--out", str(out), "--auto-approve", "--format", "fcp_xml", "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["shots"][0]["status"] == "conformed"
    assert Path(report["conformed"]) == out / "conformed.otio"
    assert (out / "conformed.xml").exists()
    assert (out / ".prefect").is_dir(), "ephemeral Prefect keeps its files inside --out"
    cut = otio.adapters.read_from_file(report["conformed"])
    assert cut.duration() == otio.adapters.read_from_file(str(timeline)).duration()

    listed = studio_nova("review", "list", "--out", str(out), "--all", "--json")
    assert json.loads(listed.stdout)["shots"][0]["status"] == "conformed"
