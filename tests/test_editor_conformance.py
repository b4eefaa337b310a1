"""Every built-in editor passes the conformance suite third-party editors run against themselves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from studio_nova.errors import EditRequestError
from studio_nova.media.frames import from_float, to_float
from studio_nova.media.keyframe_files import keyframe_filename, write_png
from studio_nova.plugin_api.editing import EditContext, EditedKeyframe, EditResult
from studio_nova.testing import (
    ConformanceError,
    conformance_keyframes,
    conformance_region,
    run_editor_conformance,
)
from studio_nova_plugins.editors.artist import ArtistEditor
from studio_nova_plugins.editors.recolor import RecolorEditor

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_recolor_conforms() -> None:
    report = run_editor_conformance(RecolorEditor, bad_params=[{"saturation": -1}, {"gamma": 0}])
    assert report.editor == "recolor"
    assert "pixels outside the region are the original ones (frame 100)" in report.checks
    assert "a region of the wrong size is refused with a StudioNovaError" in report.checks


def test_artist_conforms(tmp_path: Path) -> None:
    keyframes = conformance_keyframes(3)
    for keyframe in keyframes:
        painted = keyframe.image.copy()
        painted[16:26, 6:40] = (0.1, 0.2, 0.9)  # over the car, and across the region's edge
        write_png(tmp_path / keyframe_filename(keyframe.source_frame), painted, 8)
    report = run_editor_conformance(
        ArtistEditor, params={"dir": str(tmp_path)}, keyframes=keyframes, bad_params=[{"folder": "x"}]
    )
    assert report.runs == 6


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from studio_nova.testing.tiny_models import ensure_tiny_model

    return ensure_tiny_model("flux-kontext", tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from studio_nova.testing.tiny_models import ensure_tiny_model

    return ensure_tiny_model("qwen-image-edit", tmp_path_factory.getbasetemp() / "tiny-models")


def test_flux_kontext_conforms(tiny_flux: Path) -> None:
    from studio_nova_plugins.editors.flux_kontext import FluxKontextEditor

    params = {"model_dir": str(tiny_flux), "steps": 2, "max_area": 24 * 32}
    report = run_editor_conformance(
        FluxKontextEditor, params=params, bad_params=[{**params, "steps": 0}, {**params, "sampler": "x"}]
    )
    assert report.editor == "flux-kontext"


def test_qwen_image_edit_conforms(tiny_qwen: Path) -> None:
    from studio_nova_plugins.editors.qwen_image_edit import QwenImageEditEditor

    params = {"model_dir": str(tiny_qwen), "steps": 2, "max_area": 32 * 32, "true_cfg_scale": 1.0}
    # One keyframe keeps this in seconds; the multi-keyframe path is in test_model_editors.
    run_editor_conformance(
        QwenImageEditEditor, params=params, keyframes=conformance_keyframes(1), bad_params=[{**params, "dtype": "int8"}]
    )


# --- the suite catches what it claims to catch -----------------------------------------------


class _LeakyRegionEditor(RecolorEditor):
    """Edits everywhere whatever the region says."""

    name = "leaky"

    def edit(self, context: EditContext) -> EditResult:
        return super().edit(EditContext(**{**context.__dict__, "region": None}))


class _NoisyEditor(RecolorEditor):
    """Adds seed-independent noise: not deterministic."""

    name = "noisy"
    _calls = 0

    def edit(self, context: EditContext) -> EditResult:
        result = super().edit(context)
        _NoisyEditor._calls += 1
        rng = np.random.default_rng(_NoisyEditor._calls)
        keyframes = []
        for k in result.keyframes:
            noisy = np.clip(k.image + rng.random(k.image.shape, np.float32) * 0.01, 0, 1)
            keyframes.append(EditedKeyframe(k.source_frame, noisy, np.ones_like(k.mask)))
        return EditResult(keyframes, result.info)


class _DroppingEditor(RecolorEditor):
    """Returns one keyframe fewer than it was given."""

    name = "dropping"

    def edit(self, context: EditContext) -> EditResult:
        result = super().edit(context)
        return EditResult(result.keyframes[:-1], result.info)


class _ValueErrorEditor(RecolorEditor):
    """Refuses a bad region with a plain ValueError instead of a StudioNovaError."""

    name = "value-error"

    def edit(self, context: EditContext) -> EditResult:
        if context.region is not None and np.shape(context.region) != np.shape(context.keyframes[0].image)[:2]:
            raise ValueError("bad region")
        return super().edit(context)


class _NoSeedEditor(RecolorEditor):
    name = "no-seed"

    def edit(self, context: EditContext) -> EditResult:
        result = super().edit(context)
        return EditResult(result.keyframes, {k: v for k, v in result.info.items() if k != "seed"})


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        (_LeakyRegionEditor, "pixels outside the region are the original ones"),
        (_NoisyEditor, "the same seed gives the same keyframe"),
        (_DroppingEditor, "one edited keyframe per input keyframe"),
        (_ValueErrorEditor, "must raise a StudioNovaError subclass, got ValueError"),
        (_NoSeedEditor, "info['seed'] is the seed used"),
    ],
)
def test_the_suite_catches_a_broken_editor(factory: type, fragment: str) -> None:
    with pytest.raises(ConformanceError) as error:
        run_editor_conformance(factory)
    assert fragment in str(error.value) and factory.name in str(error.value)


def test_an_editor_that_changes_nothing_is_caught() -> None:
    with pytest.raises(ConformanceError, match="changes at least one keyframe"):
        run_editor_conformance(RecolorEditor, instruction="", params={"key": {"hue": 285}, "hue_shift": 30})


def test_conformance_inputs_are_exact_8_bit_values_with_a_soft_region() -> None:
    keyframes = conformance_keyframes(2)
    for keyframe in keyframes:
        # Exactly what decoding an 8-bit file gives, so file-based editors can round-trip them.
        assert np.array_equal(to_float(from_float(keyframe.image, np.uint8)), keyframe.image)
    region = conformance_region()
    assert region[0, 0] == 1.0 and region[0, -1] == 0.0
    assert 0 < region[0, 30] < 1
    with pytest.raises(ValueError):
        conformance_keyframes(0)
    with pytest.raises(EditRequestError):
        RecolorEditor().edit(EditContext("s", keyframes, "red to blue", region=np.ones((3, 3))))
