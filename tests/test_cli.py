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
from test_pipeline import KEYED, H, W, _clip, _timeline, _write

from studio_nova.footage.synthetic import hue_rotate, make_scene
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.keyframe_files import write_png
from studio_nova.media.probe import probe
from studio_nova.render import qc


def studio_nova(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
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
    assert Path(report["conformed"]) == out / "conformed" / "prefect.otio"  # one file per cut
    assert (out / "conformed" / "prefect.xml").exists()
    assert (out / ".prefect").is_dir(), "ephemeral Prefect keeps its files inside --out"
    cut = otio.adapters.read_from_file(report["conformed"])
    assert cut.duration() == otio.adapters.read_from_file(str(timeline)).duration()

    listed = studio_nova("review", "list", "--out", str(out), "--all", "--json")
    assert json.loads(listed.stdout)["shots"][0]["status"] == "conformed"


def test_two_cuts_through_prefect_in_one_folder_keep_their_own_files_and_reviews(scene_media, tmp_path):
    """The same clip name in two cuts with other media: each cut its own conformed file and
    render, and `review` tells the two shots apart by the folder name `review list` shows."""
    root, media, _ = scene_media
    other = _write(tmp_path / "C001.mov", make_scene(40, W, H, seed=31, noise=0.01).frames)
    edit = {"instruction": "red to teal", "editor": "recolor", "params": KEYED}
    cuts = [
        _timeline(tmp_path / "reel_a.otio", [_clip("sh010", media, 0, 20, edit=edit)]),
        _timeline(tmp_path / "reel_b.otio", [_clip("sh010", other, 0, 20, total=40, edit=edit)]),
    ]
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    reports = []
    for cut in cuts:
        result = studio_nova("run", str(cut), "--out", str(out), "--auto-approve", "--json", env=env)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(result.stdout))
    assert [Path(r["conformed"]).name for r in reports] == ["reel_a.otio", "reel_b.otio"]
    renders = [r["shots"][0]["render"] for r in reports]
    assert [r["shots"][0]["status"] for r in reports] == ["conformed", "conformed"] and len(set(renders)) == 2
    from studio_nova_plugins.editors.recolor import recolor_image

    # The truth of each cut: its own media, recoloured.
    sources = [
        np.stack([recolor_image(to_float(f), KEYED)[0] for f in read_frames(probe(m), 0, 19)]) for m in (media, other)
    ]
    for index, report in enumerate(reports):
        rendered = to_float(np.stack(list(read_frames(probe(report["shots"][0]["render"]), 0, 19))))
        own, wrong = qc.psnr(rendered, sources[index]), qc.psnr(rendered, sources[1 - index])
        assert own > 30 and own > wrong + 6, f"cut {index}'s render looks like the other cut's media ({own:.1f} vs {wrong:.1f} dB)"
        linked = otio.adapters.read_from_file(report["conformed"]).find_clips()[0].media_reference.target_url
        assert linked.endswith(Path(report["shots"][0]["render"]).name)

    listed = json.loads(studio_nova("review", "list", "--out", str(out), "--all", "--json").stdout)["shots"]
    folders = [s["shot"] for s in listed]
    assert len(set(folders)) == 2 and {s["name"] for s in listed} == {"sh010"}
    ambiguous = studio_nova("review", "approve", "sh010", "--out", str(out), "--json")
    assert ambiguous.returncode != 0 and all(f in ambiguous.stderr + ambiguous.stdout for f in folders)
    for ref in ("reel_b:sh010", "reel_b:V1/0", next(f for f in folders if f != "sh010")):
        found = studio_nova("review", "approve", ref, "--out", str(out), "--json")
        assert "is conformed, not waiting for review" in found.stderr, (ref, found.stderr)  # found it
