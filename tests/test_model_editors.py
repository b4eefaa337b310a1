"""`flux-kontext` and `qwen-image-edit`: their whole code path on tiny local models, on CPU.

The pipelines are the real diffusers classes loaded with `from_pretrained` from folders built
here; a recording subclass only observes what the editor hands the pipeline and what it returns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from studio_nova.config import Settings
from studio_nova.errors import ConfigError, EditRequestError, StudioNovaError
from studio_nova.plugin_api.editing import EditContext, Keyframe
from studio_nova.testing import conformance_keyframes

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

from studio_nova.testing.tiny_models import ensure_tiny_model  # noqa: E402
from studio_nova.workflow.editor_status import editor_statuses, format_statuses  # noqa: E402
from studio_nova_plugins.editors import _model_editing as shared  # noqa: E402
from studio_nova_plugins.editors.flux_kontext import FluxKontextEditor  # noqa: E402
from studio_nova_plugins.editors.qwen_image_edit import QwenImageEditEditor  # noqa: E402

FLUX_AREA = 24 * 32  # 40×56 keyframes → a 24×32 working size on the tiny VAE's 2-px grid
QWEN_AREA = 32 * 32  # → 32×32 on the tiny model's 32-px grid


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model("flux-kontext", tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model("qwen-image-edit", tmp_path_factory.getbasetemp() / "tiny-models")


def recording(editor_cls: type, pipeline_cls_name: str) -> type:
    """The editor, loading a subclass of its real pipeline that records every call."""
    import diffusers

    base = getattr(diffusers, pipeline_cls_name)

    class RecordingPipeline(base):  # type: ignore[misc, valid-type]
        calls: list[dict[str, Any]]

        def __call__(self, **kwargs: Any) -> Any:
            out = super().__call__(**kwargs)
            self.calls.append({**kwargs, "output": np.array(out.images[0])})
            return out

    class RecordingEditor(editor_cls):  # type: ignore[misc, valid-type]
        def _load(self, folder: Path, dtype: Any) -> Any:
            # The editor's own `_load` runs; it just finds the recording subclass in diffusers.
            setattr(diffusers, pipeline_cls_name, RecordingPipeline)
            try:
                pipe = super()._load(folder, dtype)
            finally:
                setattr(diffusers, pipeline_cls_name, base)
            assert type(pipe) is RecordingPipeline
            pipe.calls = []
            return pipe

    return RecordingEditor


def pixels(pil_image: Any) -> np.ndarray:
    return np.asarray(pil_image, dtype=np.uint8)


def expected_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return pixels(shared.to_pil(shared.resize(image, *size)))


def ctx(keyframes: list[Keyframe], params: dict[str, Any], **kw: Any) -> EditContext:
    instruction = kw.pop("instruction", "make the car blue")
    return EditContext(shot="sh010", keyframes=keyframes, instruction=instruction, params=params, **kw)


# --- consistency-aware editing: what the pipeline receives ------------------------------------


def test_flux_edits_the_first_keyframe_alone_and_later_ones_beside_the_first_edited(flux_dir: Path) -> None:
    keyframes = conformance_keyframes(3)
    editor = recording(FluxKontextEditor, "FluxKontextPipeline")()
    result = editor.edit(ctx(keyframes, {"model_dir": str(flux_dir), "steps": 2, "max_area": FLUX_AREA}, seed=7))
    calls = editor._pipe.calls
    size = shared.working_size(40, 56, FLUX_AREA, 2)
    assert size == (24, 32) and len(calls) == 3
    # 1. The first keyframe goes alone, at the working size, with the bare instruction.
    first = calls[0]
    assert (first["height"], first["width"]) == size and first["prompt"] == "make the car blue"
    assert np.array_equal(pixels(first["image"]), expected_input(keyframes[0].image, size))
    # 2. Every later one goes on a canvas: the first *edited* keyframe left, itself right.
    first_edited = result.keyframes[0].image
    for call, keyframe in zip(calls[1:], keyframes[1:]):
        canvas = pixels(call["image"])
        assert (call["height"], call["width"]) == (size[0], 2 * size[1]) and canvas.shape == (24, 64, 3)
        assert np.array_equal(canvas[:, : size[1]], expected_input(first_edited, size))
        assert np.array_equal(canvas[:, size[1] :], expected_input(keyframe.image, size))
        assert call["prompt"].startswith("make the car blue. Apply this edit to the right image only")
        assert call["generator"].initial_seed() == 7
    # 3. The right half of the model's canvas, back at the source size, is the edit (mask=full).
    params = {"model_dir": str(flux_dir), "steps": 2, "max_area": FLUX_AREA, "mask": "full"}
    full = editor.edit(ctx(keyframes, params, seed=7))
    model_out = calls[-1]["output"][:, size[1] :]
    assert np.array_equal(full.keyframes[-1].image, shared.resize(model_out, 40, 56))
    assert np.all(full.keyframes[-1].mask == 1)
    assert [k.source_frame for k in full.keyframes] == [100, 110, 120]


def test_qwen_gets_the_first_edited_keyframe_as_picture_2(qwen_dir: Path) -> None:
    keyframes = conformance_keyframes(2)
    editor = recording(QwenImageEditEditor, "QwenImageEditPlusPipeline")()
    params = {"model_dir": str(qwen_dir), "steps": 2, "max_area": QWEN_AREA, "true_cfg_scale": 1.0}
    result = editor.edit(ctx(keyframes, params, seed=3))
    calls = editor._pipe.calls
    size = shared.working_size(40, 56, QWEN_AREA, 32)
    assert size == (32, 32) and len(calls) == 2
    assert len(calls[0]["image"]) == 1 and calls[0]["prompt"] == "make the car blue"
    assert np.array_equal(pixels(calls[0]["image"][0]), expected_input(keyframes[0].image, size))
    picture_1, picture_2 = calls[1]["image"]
    assert np.array_equal(pixels(picture_1), expected_input(keyframes[1].image, size))
    assert np.array_equal(pixels(picture_2), expected_input(result.keyframes[0].image, size))
    assert calls[1]["prompt"].startswith("make the car blue in Picture 1. Picture 2 shows the same edit")
    assert (calls[1]["height"], calls[1]["width"]) == size and calls[1]["true_cfg_scale"] == 1.0
    assert calls[1]["negative_prompt"] is None  # guidance off: no second pass


def test_a_given_reference_is_used_for_every_keyframe_including_the_first(flux_dir: Path) -> None:
    keyframes = conformance_keyframes(2)
    reference = np.full((20, 30, 3), 0.25, np.float32)  # any size: it is resized to the working size
    editor = recording(FluxKontextEditor, "FluxKontextPipeline")()
    params = {"model_dir": str(flux_dir), "steps": 2, "max_area": FLUX_AREA}
    result = editor.edit(ctx(keyframes, params, reference=reference))
    size = (24, 32)
    for call in editor._pipe.calls:
        assert np.array_equal(pixels(call["image"])[:, : size[1]], expected_input(reference, size))
    assert result.info["reference"] == "given"


# --- determinism, regions, sizes -------------------------------------------------------------


def test_same_seed_same_keyframes_other_seed_other_keyframes(flux_dir: Path) -> None:
    keyframes = conformance_keyframes(1)
    params = {"model_dir": str(flux_dir), "steps": 2, "max_area": FLUX_AREA, "mask": "full"}
    a = FluxKontextEditor().edit(ctx(keyframes, params, seed=11))
    b = FluxKontextEditor().edit(ctx(keyframes, params, seed=11))
    c = FluxKontextEditor().edit(ctx(keyframes, params, seed=12))
    for x, y, z in zip(a.keyframes, b.keyframes, c.keyframes):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
        assert np.abs(x.image - z.image).mean() > 1e-3
    assert a.info["seed"] == 11 and a.info["settings"]["steps"] == 2 and a.info["model"] == str(flux_dir.resolve())


def test_a_region_confines_the_edit_and_inside_it_is_the_model_output(qwen_dir: Path) -> None:
    keyframes = conformance_keyframes(1, height=48, width=64)
    region = np.zeros((48, 64), np.float32)
    region[8:30, 10:40] = 1.0
    editor = recording(QwenImageEditEditor, "QwenImageEditPlusPipeline")()
    params = {"model_dir": str(qwen_dir), "steps": 2, "max_area": QWEN_AREA, "true_cfg_scale": 1.0, "mask": "full"}
    result = editor.edit(ctx(keyframes, params, region=region))
    edited, original = result.keyframes[0], keyframes[0].image
    model_out = shared.resize(editor._pipe.calls[0]["output"], 48, 64)
    inside = region == 1
    assert np.array_equal(edited.image[~inside], original[~inside])
    assert np.array_equal(edited.image[inside], model_out[inside])
    assert np.array_equal(edited.mask, region)
    assert np.abs(edited.image[inside] - original[inside]).mean() > 0.01  # the model did change it


def test_working_size_keeps_the_aspect_on_the_model_grid() -> None:
    assert shared.working_size(480, 832, 1024 * 1024, 16) == (784, 1344)
    assert shared.working_size(1080, 1920, 1024 * 1024, 16) == (768, 1360)
    assert shared.working_size(8, 8, 64, 32) == (32, 32)  # never below one grid cell
    with pytest.raises(ValueError):
        shared.working_size(0, 8, 64, 16)


def test_difference_mask_is_zero_where_nothing_changed_and_one_where_much_did() -> None:
    original = np.full((40, 40, 3), 0.5, np.float32)
    edited = original.copy()
    edited[10:30, 10:30] = (0.9, 0.1, 0.1)
    edited[0, 0] += 0.01  # VAE-sized drift
    image, mask = shared.composite(original, edited, None, "difference", 0.06)
    assert np.all(mask[15:25, 15:25] == 1) and mask[0, 0] == 0 and mask[39, 39] == 0
    assert np.array_equal(image[mask == 0], original[mask == 0])


# --- settings, weights, readiness ------------------------------------------------------------


def test_missing_weights_name_the_setting_and_the_layout(tmp_path: Path) -> None:
    keyframes = conformance_keyframes(1)
    with pytest.raises(ConfigError) as error:
        FluxKontextEditor(Settings()).edit(ctx(keyframes, {}))
    message = str(error.value)
    assert "STUDIO_NOVA_FLUX_KONTEXT_DIR" in message and "text_encoder_2/" in message
    assert "Nothing is downloaded" in message
    assert error.value.shot == "sh010"
    (tmp_path / "transformer").mkdir()
    with pytest.raises(ConfigError) as error:
        QwenImageEditEditor(Settings(qwen_image_edit_dir=str(tmp_path))).edit(ctx(keyframes, {}))
    assert "STUDIO_NOVA_QWEN_IMAGE_EDIT_DIR" in str(error.value) and "processor/" in str(error.value)
    assert "transformer/config.json" in str(error.value) and error.value.path == tmp_path


def test_readiness_says_why_not(tmp_path: Path, flux_dir: Path) -> None:
    ready, reason = FluxKontextEditor.readiness(Settings())
    assert not ready and "STUDIO_NOVA_FLUX_KONTEXT_DIR is not set" in reason
    ready, reason = FluxKontextEditor.readiness(Settings(flux_kontext_dir=str(tmp_path / "nope")))
    assert not ready and "does not exist" in reason
    (tmp_path / "model_index.json").write_text("{}")
    ready, reason = QwenImageEditEditor.readiness(Settings(qwen_image_edit_dir=str(tmp_path)))
    assert not ready and "lacks transformer/, vae/, text_encoder/, tokenizer/, processor/, scheduler/" in reason
    assert FluxKontextEditor.readiness(Settings(flux_kontext_dir=str(flux_dir))) == (True, None)


def test_editors_list_reports_every_editor_with_readiness(monkeypatch: pytest.MonkeyPatch, flux_dir: Path) -> None:
    monkeypatch.delenv("STUDIO_NOVA_FLUX_KONTEXT_DIR", raising=False)
    monkeypatch.delenv("STUDIO_NOVA_QWEN_IMAGE_EDIT_DIR", raising=False)
    statuses = {s["name"]: s for s in editor_statuses()}
    assert {"recolor", "artist", "flux-kontext", "qwen-image-edit"} <= set(statuses)
    assert statuses["recolor"]["ready"] is True and statuses["recolor"]["reason"] is None
    assert statuses["flux-kontext"]["ready"] is False
    assert "STUDIO_NOVA_FLUX_KONTEXT_DIR is not set" in statuses["flux-kontext"]["reason"]
    json.dumps(statuses)
    monkeypatch.setenv("STUDIO_NOVA_FLUX_KONTEXT_DIR", str(flux_dir))
    statuses = {s["name"]: s for s in editor_statuses()}
    assert statuses["flux-kontext"]["ready"] is True and statuses["qwen-image-edit"]["ready"] is False
    assert "flux-kontext     ready" in format_statuses(list(statuses.values()))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"steps": 0}, "steps"),
        ({"dtype": "int8"}, "dtype"),
        ({"max_area": "big"}, "max_area"),
        ({"offload": "yes"}, "offload"),
        ({"mask": "soft"}, "mask"),
        ({"reference_prompt": "no placeholder"}, "reference_prompt"),
        ({"sampler": "euler"}, "sampler"),
        ({"model_dir": ""}, "model_dir"),
    ],
)
def test_bad_params_are_refused_before_loading(params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(EditRequestError) as error:
        FluxKontextEditor(Settings()).edit(ctx(conformance_keyframes(1), params))
    assert fragment in str(error.value) and error.value.shot == "sh010"


def test_an_empty_instruction_is_refused() -> None:
    with pytest.raises(EditRequestError, match="instruction"):
        QwenImageEditEditor(Settings()).edit(ctx(conformance_keyframes(1), {}, instruction="  "))


def test_offload_on_a_cpu_is_a_config_error(flux_dir: Path) -> None:
    editor = FluxKontextEditor(Settings(device="cpu"))
    with pytest.raises(ConfigError, match="offload"):
        editor.edit(ctx(conformance_keyframes(1), {"model_dir": str(flux_dir), "offload": True}))


def test_bf16_runs_and_is_recorded(flux_dir: Path) -> None:
    params = {"model_dir": str(flux_dir), "steps": 1, "max_area": FLUX_AREA, "dtype": "bf16"}
    editor = FluxKontextEditor(Settings(device="cpu"))
    result = editor.edit(ctx(conformance_keyframes(1), params))
    import torch

    assert editor._pipe.transformer.dtype == torch.bfloat16
    assert result.info["settings"]["dtype"] == "bf16" and result.keyframes[0].image.dtype == np.float32


def test_a_model_failure_names_the_frame(flux_dir: Path) -> None:
    class Broken(FluxKontextEditor):
        def _generate(self, *args: Any) -> np.ndarray:
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(StudioNovaError) as error:
        Broken(Settings(device="cpu")).edit(ctx(conformance_keyframes(2), {"model_dir": str(flux_dir), "steps": 1}))
    assert error.value.frame == 100 and "out of memory" in str(error.value)


# --- through the pipeline: a rejected review gives a new keyframe version ---------------------


def test_a_rejected_model_edit_is_re_edited_as_a_new_version_and_the_old_one_is_kept(
    tmp_path: Path, flux_dir: Path
) -> None:
    import hashlib
    from fractions import Fraction

    import opentimelineio as otio

    from studio_nova import workflow
    from studio_nova.media.encode import VideoWriter
    from studio_nova.media.keyframe_files import read_png

    rng = np.random.default_rng(4)
    media = tmp_path / "A001.mov"
    with VideoWriter(media, width=48, height=32, rate=Fraction(25), codec="prores_hq", input_dtype=np.uint8) as writer:
        for _ in range(11):
            writer.write(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    edit = {
        "instruction": "make the car blue",
        "editor": "flux-kontext",
        "params": {"model_dir": str(flux_dir), "steps": 1, "max_area": FLUX_AREA},
        "seed": 5,
    }
    frames = otio.opentime.TimeRange(otio.opentime.RationalTime(0, 25), otio.opentime.RationalTime(11, 25))
    clip = otio.schema.Clip(
        name="sh010",
        media_reference=otio.schema.ExternalReference(target_url=str(media), available_range=frames),
        source_range=frames,
    )
    clip.metadata["studio_nova"] = {"edit": edit}
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(track)
    cut = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(cut))

    ws = workflow.Workspace.open(tmp_path / "out", Settings())
    try:
        [shot_id] = workflow.ingest_cut(ws, cut).shot_ids
        assert workflow.prepare_shot(ws, shot_id).status == "in_review"
        first = ws.store.keyframes(shot_id)
        assert [k.source_frame for k in first] == [0, 10] and first[0].seed == 5
        assert first[0].info["editor"] == "flux-kontext" and first[0].info["seed"] == 5
        kept = {k.edited_path: hashlib.sha256(Path(k.edited_path).read_bytes()).hexdigest() for k in first}

        workflow.review(ws, "sh010", "rejected", reviewer="ana", new_seed=6)
        assert workflow.prepare_shot(ws, shot_id).status == "in_review"
        second = ws.store.keyframes(shot_id)
        assert {k.version for k in second} == {2} and second[0].seed == 6 and second[0].info["seed"] == 6
        assert {k.version for k in ws.store.keyframes(shot_id, version=1)} == {1}
        for path, digest in kept.items():
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest, "version 1 is kept as it was"
        assert not np.array_equal(
            read_png(Path(second[0].edited_path)), read_png(Path(first[0].edited_path))
        )
    finally:
        ws.close()


@pytest.mark.gpu
def test_bf16_on_cuda_is_deterministic_for_a_seed(flux_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    params = {"model_dir": str(flux_dir), "steps": 2, "max_area": FLUX_AREA, "dtype": "bf16"}
    keyframes = conformance_keyframes(2)
    a = FluxKontextEditor(Settings(device="cuda")).edit(ctx(keyframes, params, seed=3))
    b = FluxKontextEditor(Settings(device="cuda")).edit(ctx(keyframes, params, seed=3))
    for x, y in zip(a.keyframes, b.keyframes):
        assert x.image.shape == (40, 56, 3) and x.image.dtype == np.float32
        assert np.abs(x.image - y.image).max() < 1e-2
