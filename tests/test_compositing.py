"""Fusing a subject and a new background along a matte, against a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from studio_nova.cut.background_request import BackgroundRequest
from studio_nova.errors import EditRequestError, PluginError, PropagationError
from studio_nova.media.compositing import (
    CompositeOptions,
    composite,
    despill,
    edge_band,
    estimate_behind,
    fill_from,
    spill_channel,
    unmix,
)
from studio_nova.plugin_api.editing import EditedKeyframe
from studio_nova.plugin_api.propagation import ChunkInput, CompositeGuide, guided_output
from studio_nova.render import qc
from studio_nova.render.background import background_qc

H, W = 120, 200
NONE = CompositeOptions(spill="none", light_wrap=0.0)


def _scene(seed: int = 0):
    """A textured disc with a soft (motion-blur-like) edge over an unevenly lit green screen."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    screen = np.stack([0.12 + 0.06 * xx / W, 0.55 + 0.25 * yy / H, 0.18 + 0.04 * np.sin(xx / 23)], -1)
    alpha = np.clip((36 - np.hypot(xx - 100, yy - 60)) / 5 + 0.5, 0, 1)
    texture = 0.55 + 0.25 * np.sin(xx / 5 + yy / 9)[..., None] * np.array([1.0, 0.6, 0.4])
    fg = np.clip(texture * np.array([0.95, 0.55, 0.45]) + rng.normal(0, 0.01, (H, W, 3)), 0, 1)
    plate = np.stack([0.3 + 0.2 * np.sin(xx / 11), 0.35 + 0.1 * np.cos(yy / 9), 0.55 + 0.1 * np.sin(xx / 17)], -1)
    a = alpha[..., None]
    source = a * fg + (1 - a) * screen
    truth = a * fg + (1 - a) * plate
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return f32(source), f32(alpha), f32(fg), f32(screen), f32(plate), f32(truth)


def test_unmixing_removes_the_old_background_from_soft_edges():
    source, alpha, fg, screen, plate, truth = _scene()
    naive = alpha[..., None] * source + (1 - alpha[..., None]) * plate
    fused = composite(source, alpha, plate, options=NONE).image
    edge = (alpha > 0.05) & (alpha < 0.95)
    assert qc.psnr(fused, truth) > 50.0  # the screen behind is estimated, not given
    assert qc.psnr(naive, truth) < 45.0
    assert qc.psnr(fused[edge], truth[edge]) > qc.psnr(naive[edge], truth[edge]) + 15
    with_truth = composite(source, alpha, plate, behind=screen, options=NONE).image
    assert qc.psnr(with_truth, truth) > 60.0


def test_interior_is_the_source_bit_for_bit_and_only_edges_are_treated():
    source, alpha, *_ , plate, _ = _scene()
    options = CompositeOptions(light_wrap=0.5, spill="green", edge_px=6)
    fused = composite(source, alpha, plate, options=options)
    deep = edge_band(alpha, 6) <= 0
    assert deep.sum() > 500
    assert np.array_equal(fused.image[deep], source[deep])
    assert np.all(fused.changed[deep] == 0)
    # Every pixel that changed is marked as changed.
    assert np.all(fused.changed[np.any(fused.image != source, axis=-1)] > 0)
    # Light wrap brightens the rim towards the background, never further in than the band.
    rim = (alpha >= 0.999) & ~deep
    plain = composite(source, alpha, plate, options=CompositeOptions(light_wrap=0.0, spill="green"))
    assert np.abs(fused.image[rim] - plain.image[rim]).max() > 0.005


def test_despill_takes_out_a_green_cast_and_keeps_other_colours():
    rgb = np.array([[[0.5, 0.7, 0.4], [0.8, 0.3, 0.2], [0.2, 0.25, 0.9], [0.8, 0.8, 0.1]]], np.float32)
    out = despill(rgb, channel=1)
    excess = lambda x: x[..., 1] - np.maximum(x[..., 0], x[..., 2])  # noqa: E731
    assert excess(out)[0, 0] <= 1e-6 < excess(rgb)[0, 0]
    assert np.allclose(out[0, 0], [0.5, 0.5, 0.4])
    assert np.allclose(out[0, 1:], rgb[0, 1:])  # no green excess (a yellow included): untouched
    source, alpha, _, screen, _, _ = _scene()
    assert spill_channel("auto", screen, alpha) == 1
    grey = np.full_like(screen, 0.5)
    assert spill_channel("auto", grey, alpha) is None
    assert spill_channel("blue", grey, alpha) == 2 and spill_channel("none", screen, alpha) is None


def test_fill_and_unmix_are_exact_on_constant_colours():
    rng = np.random.default_rng(1)
    colour = np.array([0.2, 0.7, 0.3], np.float32)
    image = np.broadcast_to(colour, (64, 96, 3)).copy()
    weight = (rng.random((64, 96)) < 0.05).astype(np.float32)
    assert np.allclose(fill_from(image, weight), colour, atol=1e-5)
    alpha = np.clip(rng.random((64, 96)).astype(np.float32), 0, 1)
    fg = np.array([0.9, 0.1, 0.5], np.float32)
    mixed = alpha[..., None] * fg + (1 - alpha[..., None]) * colour
    solved = unmix(mixed, alpha, np.broadcast_to(colour, mixed.shape))
    trusted = (alpha >= 0.2) & (alpha < 0.999)  # opaque pixels are the source as it is
    assert np.allclose(solved[trusted], fg, atol=1e-4)
    assert np.allclose(estimate_behind(mixed, alpha)[alpha <= 0.02], colour, atol=0.02)


def test_a_hard_matte_is_feathered_and_a_soft_one_is_not():
    source, alpha, _, _, plate, _ = _scene()
    hard = (alpha >= 0.5).astype(np.float32)
    assert set(np.unique(composite(source, hard, plate, options=NONE).alpha)) - {0.0, 1.0}
    assert np.array_equal(composite(source, alpha, plate, options=NONE).alpha, alpha)


def test_background_qc_sees_bleed_motion_and_fidelity():
    source, alpha, fg, screen, plate, truth = _scene()
    shifted = np.roll(plate, 3, axis=1)
    frames = np.stack([source, source])
    alphas = np.stack([alpha, alpha])
    plates = np.stack([plate, shifted])
    good = np.stack([composite(f, alpha, p, options=NONE).image for f, p in zip(frames, plates)])
    naive = alphas[..., None] * frames + (1 - alphas[..., None]) * plates
    frozen = np.stack([good[0], good[0]])
    g, n, f = (background_qc(frames, x, alphas, plates) for x in (good, naive, frozen))
    assert g["fg_fidelity_db"] == 100.0
    assert 0.95 < g["bg_motion_ratio"] < 1.05 and f["bg_motion_ratio"] < 0.05
    assert n["edge_bleed"] > 5 * g["edge_bleed"] and n["edge_bleed"] > 5.0


def test_guided_output_is_exact_where_unchanged():
    source, alpha, _, _, plate, _ = _scene()
    frames = np.stack([np.rint(source * 255).astype(np.uint8)] * 3)
    fused = [composite(f.astype(np.float32) / 255, alpha, plate) for f in frames]
    guide = CompositeGuide(
        frames=np.stack([c.image for c in fused]), alpha=np.stack([c.alpha for c in fused]),
        changed=np.stack([c.changed for c in fused]), background=np.stack([plate] * 3),
    )
    kf = EditedKeyframe(0, fused[0].image, fused[0].changed)
    out = guided_output(ChunkInput("s", 0, frames, {0: kf}, guide=guide))
    same = guide.changed == 0
    assert same.sum() > 1000
    assert np.array_equal(out.frames[same], frames[same]) and np.all(out.masks[same] == 0)
    assert np.all(out.masks[~same] > 0)
    bad = CompositeGuide(guide.frames[:2], guide.alpha[:2], guide.changed[:2], guide.background[:2])
    from studio_nova_plugins.propagators.flow import FlowPropagator

    with pytest.raises(PropagationError, match="guide"):
        FlowPropagator().propagate(ChunkInput("s", 0, frames, {0: kf}, guide=bad))


def test_requests_are_parsed_with_clear_errors(tmp_path):
    request = BackgroundRequest.parse(
        {"kind": "background", "background": {"source": "plate", "params": {"video": "plates/a.mov"}},
         "composite": {"light_wrap": 0.3}},
        base_dir=tmp_path,
    )
    assert request.matte == "chroma" and request.background == "plate"
    assert request.background_params["video"] == str(tmp_path / "plates" / "a.mov")
    assert request.options.light_wrap == 0.3
    again = BackgroundRequest.from_params(request.to_params())
    assert again == request
    for bad, message in [
        ({}, "needs background"),
        ({"background": "sky.png"}, "must be a dict"),
        ({"background": {"source": "plate", "video": "a.mov"}}, "unknown keys"),
        ({"background": {"source": "still"}, "composite": {"glow": 1}}, "unknown composite"),
        ({"background": {"source": "still"}, "composite": {"spill": "red"}}, "spill must be"),
        ({"background": {"source": "still"}, "colour": 1}, "unknown keys"),
    ]:
        with pytest.raises(ValueError, match=message):
            BackgroundRequest.parse(bad)
    with pytest.raises(EditRequestError, match="needs background"):
        BackgroundRequest.from_params({})


def test_a_propagator_without_guides_is_refused(tmp_path):
    from studio_nova.render.shot import MemoryLedger, render_shot

    class Plain:
        name = "plain"

        def propagate(self, chunk):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(PluginError, match="cannot render a background replacement"):
        render_shot(
            shot="s", info=None, first_frame=0, last_frame=4, chunks=[(0, 4)], keyframes={},
            propagator=Plain(), work_dir=tmp_path, master_path=tmp_path / "m.mov",
            proxy_path=tmp_path / "p.mp4", ledger=MemoryLedger(), guide=lambda s, f: None,
        )
