"""Background replacement end to end: a synthetic green-screen shot with a known ground-truth
composite, through ingest → keyframes → review → render (flow) → conform, with the matte from a
chroma key, from a matte file and from the source's own alpha channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.footage.greenscreen import make_greenscreen
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.probe import probe
from studio_nova.plugin_api.editing import Keyframe, ShotSource
from studio_nova.render import qc
from studio_nova.testing import run_editor_conformance
from studio_nova_plugins.editors.background import BackgroundEditor

W, H, N = 256, 144, 30
RATE = 25.0
SETTINGS = dict(chunk_length=17, chunk_overlap=4)  # several chunks and seams in a short shot


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    root = tmp_path_factory.mktemp("greenscreen")
    gs = make_greenscreen(N, W, H, seed=7)
    (root / "plates").mkdir()
    (root / "mattes").mkdir()
    files = {
        "source": gs.write_source(root / "GS001.mov"),
        "plate": gs.write_plate(root / "plates" / "harbour.mov"),
        "matte": gs.write_matte(root / "mattes" / "GS001_matte.mkv"),
        "alpha": gs.write_with_alpha(root / "GS001_4444.mov"),
    }
    return root, gs, files


def _cut(root: Path, media: Path, matte: dict, name: str, frames: int = N) -> Path:
    clip = otio.schema.Clip(
        name="sh010",
        media_reference=otio.schema.ExternalReference(
            target_url=str(media),
            available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, RATE), otio.opentime.RationalTime(frames, RATE)),
        ),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, RATE), otio.opentime.RationalTime(frames, RATE)),
    )
    clip.metadata["studio_nova"] = {"edit": {
        "kind": "background",
        "instruction": "harbour behind the dancer",
        "background": {"source": "plate", "params": {"video": "plates/harbour.mov"}},  # relative to the cut
        "matte": matte,
    }}
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name=name)
    timeline.tracks.append(track)
    path = root / f"{name}.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def _decode(path: Path) -> np.ndarray:
    info = probe(path)
    return np.stack([to_float(f) for f in read_frames(info, 0, info.frame_count - 1)])


@pytest.mark.parametrize(
    ("variant", "matte"),
    [
        ("chroma", {"source": "chroma", "params": {"screen": "green"}}),
        ("file", {"source": "file", "params": {"path": "mattes/GS001_matte.mkv"}}),
        ("alpha", {"source": "alpha"}),
    ],
)
def test_a_green_screen_shot_gets_a_moving_plate_behind_its_subject(shot, tmp_path, variant, matte):
    root, gs, files = shot
    media = files["alpha"] if variant == "alpha" else files["source"]
    cut = _cut(root, media, matte, f"cut_{variant}")
    ws = workflow.Workspace.open(tmp_path / "out", Settings(**SETTINGS))
    try:
        report = workflow.run_cut(ws, cut, auto_approve=True).to_dict()
        [outcome] = report["shots"]
        assert outcome["status"] == "conformed", outcome.get("error")
        [record] = ws.store.shots()
        keyframes = ws.store.keyframes(record.id)
    finally:
        ws.close()
    master = Path(outcome["render"])
    out = _decode(master)
    source = _decode(media)
    plate = _decode(files["plate"])
    truth = gs.truth_over(plate)  # the plate as the master codec gave it back: judge the key, not the plate codec

    # Against the ground-truth composite, over every frame.
    psnr = qc.psnr(out, truth)
    assert psnr >= 35.0, f"{variant}: {psnr:.2f} dB"

    # Deep inside the matte, the subject is the source up to the master codec's loss.
    deep = gs.interior(erode=6)
    assert deep.sum() > 2000
    interior = qc.psnr(out[deep], source[deep])
    reencoded = qc.psnr(_decode(gs.write_source(tmp_path / "again.mov"))[deep], gs.source[deep])
    assert interior >= min(reencoded, 45.0) - 1.0, (interior, reencoded)

    # The background moves with the plate: in a strip the subject never enters, each frame shows
    # the plate's frame for that moment, clearly not the one before.
    rows = np.flatnonzero(gs.alpha.max(axis=(0, 2)) < 0.001)
    strip = rows[rows > H // 2]  # the ground under the figure's feet: textured, panning
    assert len(strip) >= 12
    for t in range(1, N):
        here = qc.psnr(out[t][strip], plate[t][strip])
        assert here >= 35.0, (t, here)
        assert here > qc.psnr(out[t][strip], plate[t - 1][strip]) + 6.0, t  # not lagging, not frozen

    # QC carries the background figures; keyframes are the composites the render made.
    bg = outcome["qc"]["background"]
    assert bg["fg_fidelity_db"] >= 60.0  # exact but where two chunks disagree on an overlap frame
    assert 0.9 < bg["bg_motion_ratio"] < 1.1
    assert bg["edge_bleed"] < 6.0  # levels; compositing without unmixing leaves ≈ 20 (tests/test_compositing.py)
    assert [k.source_frame for k in keyframes] == [0, 10, 20, 29]


def test_the_background_editor_passes_the_editor_conformance_suite(shot):
    root, gs, files = shot
    info = probe(files["source"])
    frames = [Keyframe(f, to_float(next(iter(read_frames(info, f, f))))) for f in (0, 10, 20)]
    params = {
        "background": {"source": "plate", "params": {"video": str(files["plate"])}},
        "matte": {"source": "chroma", "params": {}},
    }
    report = run_editor_conformance(
        BackgroundEditor, instruction="harbour", params=params, keyframes=frames,
        source=ShotSource(files["source"], 0, N - 1),
        bad_params=[
            {"matte": {"source": "chroma", "params": {}}},
            {**params, "matte": {"source": "nope"}},
            {**params, "background": {"source": "plate", "params": {"video": str(root / "missing.mov")}}},
        ],
    )
    assert report.runs >= 7


def test_mattes_and_backgrounds_list_say_what_is_ready(monkeypatch):
    import json
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("STUDIO_NOVA_")}
    for kind, ready, waiting in (("mattes", {"alpha", "file", "chroma"}, "segmentation"),
                                 ("backgrounds", {"still", "plate"}, "generator")):
        done = subprocess.run([sys.executable, "-m", "studio_nova.app.cli", kind, "list", "--json"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        statuses = {s["name"]: s for s in json.loads(done.stdout)[kind]}
        assert {n for n, s in statuses.items() if s["ready"]} == ready
        assert "STUDIO_NOVA_" in statuses[waiting]["reason"]


def test_backend_nova_keeps_every_foreground_pixel_of_the_source(shot, tmp_path, monkeypatch):
    """With nova, the composites drive the sparse branch and the source the dense branch; the
    (random, tiny) model may repaint the background, never the subject."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from studio_nova.models.tiny import init_tiny

    tiny = init_tiny(tmp_path / "nova", seed=0)
    monkeypatch.setenv("STUDIO_NOVA_NOVA_BASE", str(tiny.base))
    monkeypatch.setenv("STUDIO_NOVA_NOVA_ADAPTER", str(tiny.adapter))
    monkeypatch.setenv("STUDIO_NOVA_NOVA_STEPS", "2")
    monkeypatch.setenv("STUDIO_NOVA_DEVICE", "cpu")
    root, gs, files = shot
    cut = _cut(root, files["source"], {"source": "file", "params": {"path": "mattes/GS001_matte.mkv"}}, "cut_nova")
    ws = workflow.Workspace.open(tmp_path / "out", Settings(**SETTINGS))
    try:
        [outcome] = workflow.run_cut(ws, cut, backend="nova", auto_approve=True).to_dict()["shots"]
    finally:
        ws.close()
    assert outcome["status"] == "conformed", outcome.get("error")
    assert outcome["qc"]["backend"] == "nova"
    assert outcome["qc"]["background"]["fg_fidelity_db"] == 100.0
    out, source = _decode(Path(outcome["render"])), _decode(files["source"])
    deep = gs.interior(erode=6)
    reencoded = qc.psnr(_decode(gs.write_source(tmp_path / "again.mov"))[deep], gs.source[deep])
    assert qc.psnr(out[deep], source[deep]) >= min(reencoded, 45.0) - 1.0


def test_a_tracking_matte_runs_in_order_for_keyframes_and_across_render_chunks(tmp_path):
    """`segmentation` tracks from its prompt in order: the keyframes are keyed by running it
    through the shot, and render chunks and batches hand it the overlap it carries its mask over."""
    pytest.importorskip("transformers")
    from studio_nova.testing.tiny_sam2 import build_tiny_sam2

    folder = build_tiny_sam2(tmp_path / "sam2")
    gs = make_greenscreen(24, 64, 48, seed=3)
    (tmp_path / "plates").mkdir()
    media = gs.write_source(tmp_path / "GS002.mov")
    gs.write_plate(tmp_path / "plates" / "harbour.mov")
    matte = {"source": "segmentation", "params": {"model_dir": str(folder), "points": [[32, 20]]}}
    cut = _cut(tmp_path, media, matte, "cut_sam", frames=24)
    ws = workflow.Workspace.open(tmp_path / "out", Settings(chunk_length=9, chunk_overlap=4))
    try:
        [outcome] = workflow.run_cut(ws, cut, auto_approve=True).to_dict()["shots"]
        [record] = ws.store.shots()
        frames = [k.source_frame for k in ws.store.keyframes(record.id)]
    finally:
        ws.close()
    assert outcome["status"] == "conformed", outcome.get("error")
    assert frames == [0, 10, 20, 23] and outcome["qc"]["chunks"] >= 4
