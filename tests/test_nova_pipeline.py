"""NovaPipeline at toy size on the CPU: shapes, known frames, caching, guidance, input checks."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from studio_nova.pipelines.nova_pipeline import NovaPipeline, interpolate_known  # noqa: E402

H, W = 32, 48  # not square, so a height/width swap cannot pass


from nova_fixtures import _one_thread, tiny  # noqa: E402,F401  (shared fixtures)


@pytest.fixture(scope="module")
def pipe(tiny):
    pipe = NovaPipeline.from_local(tiny.base, tiny.adapter, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _video(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, H, W, 3), dtype=np.float32)


def _run(pipe, video, keyframes, anchors=None, seed=0, **kw):
    kw.setdefault("num_inference_steps", 2)
    return pipe(video, keyframes, anchors, generator=torch.Generator().manual_seed(seed), **kw).frames


@pytest.mark.parametrize("frames", [17, 81])
def test_a_two_step_run_returns_frames_of_the_input_size(pipe, frames):
    video = _video(frames)
    keyframes = {k: np.clip(video[k] * 0.5, 0, 1) for k in range(0, frames, 10)}
    out = _run(pipe, video, keyframes, prompt="red to teal")
    assert out.shape == (frames, H, W, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.std() > 0.01  # decoded content, not a constant


def test_anchors_come_back_as_their_vae_round_trip(pipe):
    video = _video(17, seed=1)
    anchors = {t: _video(9, seed=2)[t] for t in range(9)}  # 9 frames = latent frames 0, 1, 2
    out = _run(pipe, video, {16: video[16]}, anchors)
    round_trip = pipe.decode_latents(pipe.encode_video(pipe._to_pixels(np.stack(list(anchors.values())))))[0]
    assert np.abs(out[:9] - round_trip.numpy()).max() <= 1e-4
    # The rest was generated: it is not the round trip of anything known.
    assert np.abs(out[9:] - video[9:]).mean() > 0.05


def test_a_run_is_reproducible_from_its_generator_and_the_seed_matters(pipe):
    video = _video(17)
    keyframes = {0: video[0], 16: video[16]}
    a, b, c = (_run(pipe, video, keyframes, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_cached_dense_branch_equals_recomputing_it_every_step(pipe):
    video = _video(17, seed=5)
    keyframes = {0: video[0], 8: 1.0 - video[8], 16: video[16]}
    cached = _run(pipe, video, keyframes, prompt="make it blue")
    recomputed = _run(pipe, video, keyframes, prompt="make it blue", recompute_dense=True)
    assert np.abs(cached - recomputed).max() <= 1e-5


def test_the_instruction_is_encoded_once_and_reused(pipe):
    calls = []
    hook = pipe.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        video = _video(17)
        for _ in range(2):
            _run(pipe, video, {0: video[0]}, prompt="a unique instruction", text_guidance_scale=5.0)
    finally:
        hook.remove()
    assert len(calls) <= 2  # the instruction and "" (negative and dense context), first run only
    pipe._prompt_cache.clear()
    _run(pipe, video, {0: video[0]}, prompt="a unique instruction", text_guidance_scale=5.0)


def test_text_and_keyframe_guidance_scales_each_change_the_result(pipe):
    video = _video(17, seed=6)
    keyframes = {0: video[0], 16: 1.0 - video[16]}

    def run(text: float, keyframe: float) -> np.ndarray:  # latents: the toy VAE decoder damps differences
        return _run(pipe, video, keyframes, prompt="snow", text_guidance_scale=text,
                    keyframe_guidance_scale=keyframe, output_type="latent").numpy()

    plain, text, both = run(1.0, 1.0), run(8.0, 1.0), run(8.0, 4.0)
    assert np.abs(text - plain).max() > 1e-3
    assert np.abs(both - text).max() > 1e-3
    assert np.array_equal(run(8.0, 1.0), text)


def test_frames_between_known_frames_carry_the_linearly_interpolated_keyframes():
    a, b = np.zeros((2, 2, 3), np.float32), np.ones((2, 2, 3), np.float32)
    guide, known = interpolate_known({2: a, 6: b}, 9)
    assert known.tolist() == [False, False, True, False, False, False, True, False, False]
    np.testing.assert_allclose(guide[4], 0.5)
    np.testing.assert_allclose(guide[3], 0.25)
    np.testing.assert_array_equal(guide[0], a)  # before the first known frame: held
    np.testing.assert_array_equal(guide[8], b)  # after the last: held


def test_latent_frames_are_pinned_only_when_all_their_pixel_frames_are_known(pipe):
    known = np.zeros(17, bool)
    known[:9] = True
    known[12] = True
    assert pipe.known_latent_frames(known).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"video": np.zeros((16, H, W, 3), np.float32)}, "`video`"),
        ({"video": np.zeros((17, 30, W, 3), np.float32)}, "`video`"),
        ({"video": np.zeros((17, H, W, 3), np.uint8)}, "`video`"),
        ({"keyframes": {17: np.zeros((H, W, 3), np.float32)}}, "`keyframes`"),
        ({"keyframes": {0: np.zeros((H, W + 16, 3), np.float32)}}, "`keyframes`"),
        ({"keyframes": {}, "anchors": {}}, "`keyframes`"),
        ({"anchors": {-1: np.zeros((H, W, 3), np.float32)}}, "`anchors`"),
        ({"num_inference_steps": 0}, "`num_inference_steps`"),
        ({"text_guidance_scale": float("nan")}, "`text_guidance_scale`"),
        ({"output_type": "pil"}, "`output_type`"),
    ],
)
def test_bad_inputs_raise_value_errors_that_name_the_argument(pipe, kwargs, argument):
    call = {"video": np.zeros((17, H, W, 3), np.float32), "keyframes": {0: np.zeros((H, W, 3), np.float32)}}
    call.update(kwargs)
    steps = call.pop("num_inference_steps", 1)
    with pytest.raises(ValueError, match=argument):
        pipe(**call, num_inference_steps=steps)


def test_tiled_decode_is_an_option_that_leaves_the_vae_as_it_found_it(pipe):
    latents = torch.randn(1, 16, 3, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    plain = pipe.decode_latents(latents, tiling=False)
    tiled = pipe.decode_latents(latents, tiling=True)  # smaller than one tile: the same numbers
    assert plain.shape == (1, 9, H, W, 3)
    assert (plain - tiled).abs().max().item() <= 1e-5
    assert not pipe.vae.use_tiling
    assert pipe.decode_latents(latents).shape == plain.shape  # auto: no tiling on the CPU
