"""The `nova` propagator: configuration errors, the chunk contract at any source size and depth,
and a whole cut run end to end with `backend="nova"` on a tiny random checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio_nova import workflow  # noqa: E402
from studio_nova.config import Settings, load_settings  # noqa: E402
from studio_nova.errors import ConfigError, KeyframeError  # noqa: E402
from studio_nova.footage.synthetic import make_scene  # noqa: E402
from studio_nova.media.decode import read_frames  # noqa: E402
from studio_nova.media.encode import VideoWriter  # noqa: E402
from studio_nova.media.frames import from_float, max_value, to_float  # noqa: E402
from studio_nova.media.probe import probe  # noqa: E402
from studio_nova.plugin_api.editing import EditedKeyframe  # noqa: E402
from studio_nova.plugin_api.propagation import ChunkInput, ChunkOutput  # noqa: E402
from studio_nova.plugin_api.registry import load_propagator  # noqa: E402
from studio_nova_plugins.propagators.nova import NovaPropagator, model_size  # noqa: E402

W, H = 128, 72
RATE = Fraction(25)


import nova_fixtures  # noqa: E402

_one_thread, tiny = nova_fixtures._one_thread, nova_fixtures.tiny  # the shared fixtures, by name




@pytest.fixture
def nova_env(tiny, monkeypatch):
    monkeypatch.setenv("STUDIO_NOVA_NOVA_BASE", str(tiny.base))
    monkeypatch.setenv("STUDIO_NOVA_NOVA_ADAPTER", str(tiny.adapter))
    monkeypatch.setenv("STUDIO_NOVA_NOVA_STEPS", "2")
    monkeypatch.setenv("STUDIO_NOVA_DEVICE", "cpu")
    return tiny


def _keyframe(frames: np.ndarray, k: int, region: tuple[slice, slice]) -> EditedKeyframe:
    source = to_float(frames[k])
    mask = np.zeros(frames.shape[1:3], np.float32)
    mask[region] = 1.0
    edited = source.copy()
    edited[region] = (0.1, 0.3, 0.9)
    return EditedKeyframe(k, edited, mask)


def test_missing_weights_name_the_setting_and_what_to_point_it_at(tiny, monkeypatch, tmp_path):
    for key in ("STUDIO_NOVA_NOVA_BASE", "STUDIO_NOVA_NOVA_ADAPTER"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="STUDIO_NOVA_NOVA_BASE.*Wan2.1-VACE-1.3B-diffusers") as err:
        NovaPropagator()
    assert err.value.details["setting"] == "nova_base"
    with pytest.raises(ConfigError, match="STUDIO_NOVA_NOVA_ADAPTER.*safetensors"):
        NovaPropagator(base=str(tiny.base))
    with pytest.raises(ConfigError, match="STUDIO_NOVA_NOVA_BASE must point at") as err:
        NovaPropagator(base=str(tmp_path), adapter=str(tiny.adapter))
    assert err.value.path == tmp_path
    with pytest.raises(ConfigError, match="STUDIO_NOVA_NOVA_ADAPTER must point at"):
        NovaPropagator(base=str(tiny.base), adapter=str(tmp_path / "nope.safetensors"))


def test_model_size_keeps_the_aspect_at_the_trained_area_in_multiples_of_16():
    assert model_size(1080, 1920, (480, 832)) == (480, 848)
    assert model_size(480, 832, (480, 832)) == (480, 832)
    assert model_size(72, 128, (32, 32)) == (32, 48)
    assert model_size(2000, 10, (32, 32)) == (448, 16)  # never below one 16-px block


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_chunk_at_the_source_size_keeps_known_frames_and_untouched_pixels_exactly(nova_env, dtype):
    propagator = load_propagator("nova", load_settings())
    assert isinstance(propagator, NovaPropagator) and propagator.name == "nova"
    rng = np.random.default_rng(0)
    frames = (rng.random((19, H, W, 3)) * max_value(dtype)).astype(dtype)  # 19: not 4n+1, padded
    region = (slice(10, 40), slice(20, 70))
    keyframes = {k: _keyframe(frames, k, region) for k in (6, 12, 18)}
    anchors = {j: np.clip(frames[j].astype(np.int64) + 7, 0, max_value(dtype)).astype(dtype) for j in range(4)}
    out = propagator.propagate(ChunkInput("sh010", 100, frames, keyframes, anchors))

    assert isinstance(out, ChunkOutput)
    assert out.frames.shape == frames.shape and out.frames.dtype == frames.dtype
    assert out.masks.shape == frames.shape[:3] and out.masks.dtype == np.uint8
    for j, anchor in anchors.items():
        assert np.array_equal(out.frames[j], anchor)
    for k, kf in keyframes.items():
        inside = kf.mask > 0
        assert np.array_equal(out.frames[k][~inside], frames[k][~inside])
        assert np.array_equal(out.frames[k][inside], from_float(kf.image, dtype)[inside])
        assert np.array_equal(out.masks[k] > 0, inside)
    untouched = out.masks == 0
    assert np.array_equal(out.frames[untouched], frames[untouched])
    between = out.masks[[t for t in range(19) if t not in anchors and t not in keyframes]]
    assert between.max() > 0, "random weights change the picture: the estimated mask must see it"


def test_a_chunk_with_nothing_known_is_refused_naming_the_shot(nova_env):
    frames = np.zeros((5, H, W, 3), np.uint8)
    with pytest.raises(KeyframeError, match="sh020"):
        load_propagator("nova", load_settings()).propagate(ChunkInput("sh020", 0, frames, {}, {}))


# ------------------------------------------------------------------------------ end to end


def _clip(name: str, media: Path, first: int, count: int, edit: dict | None) -> otio.schema.Clip:
    tc = 90000  # 01:00:00:00 at 25 fps
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url=str(media),
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(tc, 25), otio.opentime.RationalTime(40, 25)
            ),
        ),
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(tc + first, 25), otio.opentime.RationalTime(count, 25)
        ),
    )
    if edit is not None:
        clip.metadata["studio_nova"] = {"edit": edit}
    return clip


@pytest.fixture(scope="module")
def cut(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nova-footage")
    scene = make_scene(40, W, H, seed=5, noise=0.01)
    media = root / "A001.mov"
    with VideoWriter(media, width=W, height=H, rate=RATE, codec="prores_hq", input_dtype=np.uint8,
                     timecode="01:00:00:00") as writer:
        for frame in scene.frames:
            writer.write(frame)
    edit = {"instruction": "red to teal", "editor": "recolor", "params": {"hue_shift": 130}}
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.extend([_clip("sh010", media, 3, 30, edit), _clip("sh020", media, 0, 10, None)])
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(track)
    path = root / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def _settings() -> Settings:
    return Settings(chunk_length=17, chunk_overlap=4, keyframe_interval=8)


def test_run_cut_with_backend_nova_completes_with_the_same_outputs_and_contracts_as_flow(nova_env, cut, tmp_path):
    results = {}
    for backend in ("flow", "nova"):
        ws = workflow.Workspace.open(tmp_path / backend, _settings())
        results[backend] = workflow.run_cut(ws, cut, backend=backend, auto_approve=True).to_dict()
        ws.close()
    flow, nova = results["flow"], results["nova"]

    [shot] = nova["shots"]
    assert shot["status"] == "conformed", shot.get("error")
    assert set(shot) == set(flow["shots"][0])
    assert set(shot["qc"]) == set(flow["shots"][0]["qc"])
    assert (shot["first_frame"], shot["last_frame"], shot["version"]) == (3, 32, "v001")
    assert shot["qc"]["backend"] == "nova" and shot["qc"]["chunks"] == 2 and shot["qc"]["frames"] == 30
    assert shot["qc"]["untouched_exact"] == 1.0  # every pixel nova left alone is the source pixel
    assert shot["qc"]["seam_psnr_db"] is not None

    info = probe(Path(shot["render"]))
    assert (info.frame_count, info.rate, info.width, info.height) == (30, RATE, W, H)
    assert info.timecode == "01:00:00:03"
    assert Path(shot["proxy"]).is_file()
    frames = list(read_frames(info, 0, 29))
    assert len(frames) == 30 and frames[0].shape == (H, W, 3)

    conformed = otio.adapters.read_from_file(nova["conformed"])
    original = otio.adapters.read_from_file(str(cut))
    for a, b in zip(original.video_tracks()[0], conformed.video_tracks()[0]):
        assert a.duration() == b.duration() and a.source_range == b.source_range
    edited = conformed.video_tracks()[0][0]
    assert edited.metadata["studio_nova"]["render"]["version"] == 1
    assert edited.media_reference.target_url.endswith("sh010_v001.mov")


def test_studio_nova_run_backend_nova_on_the_command_line(nova_env, cut, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_NOVA_")}
    env.update({
        "STUDIO_NOVA_NOVA_BASE": str(nova_env.base), "STUDIO_NOVA_NOVA_ADAPTER": str(nova_env.adapter),
        "STUDIO_NOVA_NOVA_STEPS": "2", "STUDIO_NOVA_DEVICE": "cpu", "STUDIO_NOVA_CHUNK_LENGTH": "17",
        "STUDIO_NOVA_CHUNK_OVERLAP": "4", "STUDIO_NOVA_KEYFRAME_INTERVAL": "8", "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    })
    done = subprocess.run(
        [sys.executable, "-m", "studio_nova.app.cli", "run", str(cut), "--out", str(tmp_path / "out"),
         "--backend", "nova", "--auto-approve", "--orchestrator", "none", "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [shot] = json.loads(done.stdout)["shots"]
    assert shot["status"] == "conformed" and shot["qc"]["backend"] == "nova"
    assert Path(json.loads(done.stdout)["conformed"]).is_file()


def test_an_incomplete_base_folder_is_a_config_error_naming_what_is_missing(tiny, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny.base, base, ignore=shutil.ignore_patterns("text_encoder"))
    propagator = NovaPropagator(base=str(base), adapter=str(tiny.adapter), steps=1, device="cpu")
    frames = np.zeros((5, H, W, 3), np.uint8)
    with pytest.raises(ConfigError, match="text_encoder/ is missing"):
        propagator.propagate(ChunkInput("sh030", 0, frames, {0: _keyframe(frames, 0, (slice(0, 8), slice(0, 8)))}))


def test_a_background_replacement_chunk_keeps_the_subject_and_follows_the_plate(nova_env):
    """With a composite guide, nova's output is the guide plus (behind the subject only) the
    model's change of it: every opaque subject pixel is the source's, keyframes and anchors are
    as given, and the background moves as the plate does."""
    from studio_nova.media.compositing import composite
    from studio_nova.plugin_api.propagation import CompositeGuide

    propagator = load_propagator("nova", load_settings())
    n = 9
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(3)
    green = np.array([0.15, 0.7, 0.2], np.float32)
    frames, fused = [], []
    plate = rng.random((H, W + 4 * n, 3)).astype(np.float32)
    for t in range(n):
        alpha = np.clip((18 - np.hypot(xx - 40 - 3 * t, yy - 36)) / 2 + 0.5, 0, 1).astype(np.float32)
        subject = np.clip(0.5 + 0.3 * np.sin(xx / 4 + t)[..., None] * np.array([1, 0.4, 0.2]), 0, 1)
        image = alpha[..., None] * subject + (1 - alpha[..., None]) * green
        frame = from_float(image.astype(np.float32), np.uint8)
        frames.append(frame)
        fused.append(composite(to_float(frame), alpha, plate[:, 4 * t : 4 * t + W]))
    frames = np.stack(frames)
    guide = CompositeGuide(
        frames=np.stack([c.image for c in fused]), alpha=np.stack([c.alpha for c in fused]),
        changed=np.stack([c.changed for c in fused]),
        background=np.stack([plate[:, 4 * t : 4 * t + W] for t in range(n)]),
    )
    keyframes = {k: EditedKeyframe(k, fused[k].image, fused[k].changed) for k in (0, 8)}
    anchors = {0: from_float(fused[0].image, np.uint8)}
    out = propagator.propagate(ChunkInput("bg010", 0, frames, keyframes, anchors, guide=guide))

    same = guide.changed == 0
    assert same.sum() > 0.05 * same.size
    assert np.array_equal(out.frames[same], frames[same])
    assert np.all(out.masks[1:][~same[1:]] > 0) and np.all(out.masks[1:][same[1:]] == 0)  # 0: an anchor
    assert np.array_equal(out.frames[0], anchors[0])
    assert np.array_equal(out.frames[8], from_float(np.where(same[8][..., None], to_float(frames[8]), fused[8].image), np.uint8))
    clear = guide.alpha <= 0.001
    # The random model changes the background somewhat, but it is still the moving plate.
    moved = [np.abs(to_float(out.frames[t]) - to_float(out.frames[t - 1]))[clear[t] & clear[t - 1]].mean()
             for t in range(2, 8)]
    assert min(moved) > 0.05
