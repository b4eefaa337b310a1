"""Degradation simulation (issue 5): each augmentation is checked for what it does, as a number.

Frames come from the synthetic scene generator (textured, so blur and warps have something to
act on); nothing here needs a model or a media file.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from studio_nova.footage.synthetic import make_scene
from studio_nova.training.degrade import (
    DEGRADATIONS,
    INTERVAL_RANGE,
    affine_warp,
    anchored_control,
    blend,
    colour_shift,
    cut_and_paste,
    degrade_keyframe,
    gaussian_blur,
    keyframe_indices,
    moving_masks,
    random_region,
    source_fidelity,
)


def _clip(frames: int = 33, width: int = 96, height: int = 64, seed: int = 3) -> np.ndarray:
    return make_scene(frames, width, height, seed=seed).frames.astype(np.float32) / 255.0


def _laplacian_variance(image: np.ndarray, mask: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F)[mask].var())


def _box(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    region = np.zeros((height, width), np.float32)
    region[top:bottom, left:right] = 1.0
    return region


def test_a_blurred_region_is_blurrier_and_the_rest_of_the_keyframe_is_untouched():
    frame = _clip()[0]
    region = _box(64, 96, 10, 20, 50, 80)
    degraded, b, ops = degrade_keyframe(frame, np.random.default_rng(0), kinds=("blur",), region=region)
    assert [op.kind for op in ops] == ["blur"] and ops[0].params["sigma"] >= 0.8
    inside = np.zeros((64, 96), bool)
    inside[14:46, 24:76] = True  # away from the region's edge, where the kernel reaches outside
    before, after = _laplacian_variance(frame, inside), _laplacian_variance(degraded, inside)
    assert after < 0.5 * before, (before, after)
    outside = b == 0
    assert np.array_equal(degraded[outside], frame[outside])


def test_gaussian_blur_strength_grows_with_sigma():
    frame = _clip()[0]
    whole = np.ones((64, 96), bool)
    variances = [_laplacian_variance(gaussian_blur(frame, s), whole) for s in (0.5, 1.0, 2.0, 4.0)]
    assert variances == sorted(variances, reverse=True)
    assert variances[-1] < 0.05 * _laplacian_variance(frame, whole)


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_every_degradation_changes_its_region_and_nothing_else(kind):
    frame = _clip()[5]
    region = _box(64, 96, 8, 8, 56, 60)
    degraded, b, ops = degrade_keyframe(frame, np.random.default_rng(1), kinds=(kind,), region=region)
    assert [op.kind for op in ops] == [kind]
    assert np.abs(degraded - frame)[region == 1].mean() > 0.004
    assert np.array_equal(degraded[b == 0], frame[b == 0])
    assert degraded.dtype == np.float32 and degraded.min() >= 0.0 and degraded.max() <= 1.0


def test_the_affine_warp_moves_content_by_its_shift():
    frame = _clip()[0]
    moved = affine_warp(frame, angle=0.0, scale=1.0, dx=5.0, dy=-3.0)
    np.testing.assert_allclose(moved[3:61, 15:90], frame[6:64, 10:85], atol=1e-5)


def test_the_colour_shift_is_a_gain_and_offset_per_channel():
    flat = np.full((16, 16, 3), 0.5, np.float32)
    shifted = colour_shift(flat, gain=(1.2, 1.0, 0.8), offset=(0.05, 0.0, -0.1))
    np.testing.assert_allclose(shifted[0, 0], [0.65, 0.5, 0.3], atol=1e-6)
    np.testing.assert_allclose(colour_shift(flat, (1, 1, 1), (0, 0, 0), gamma=2.0)[0, 0], 0.25, atol=1e-6)


def test_blend_is_the_degraded_image_inside_and_the_clean_one_outside():
    clean, damaged = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
    b = np.array([[0, 0.25, 0.5, 1.0]] * 4, np.float32)
    np.testing.assert_allclose(blend(clean, damaged, b)[..., 0], b)


def test_random_regions_are_soft_shapes_with_a_fully_degraded_core():
    rng = np.random.default_rng(5)
    regions = [random_region(rng, 64, 96, full_frame_prob=0.0) for _ in range(50)]
    for b in regions:
        assert b.min() == 0.0 and b.max() == 1.0
        assert 0.03 < b.mean() < 0.75
    assert any(0.0 < v < 1.0 for b in regions for v in np.unique(b)), "edges are feathered"
    assert random_region(np.random.default_rng(0), 8, 8, full_frame_prob=1.0).min() == 1.0


def test_keyframes_start_and_end_on_the_window_and_step_by_the_interval():
    assert keyframe_indices(81, 10) == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert keyframe_indices(17, 8) == [0, 8, 16]
    assert keyframe_indices(17, 12) == [0, 12, 16]
    assert keyframe_indices(17, 20) == [0, 16]


def test_interpolated_frames_lie_between_their_keyframes():
    clip = _clip(frames=41)
    control = anchored_control(clip, np.random.default_rng(7))
    keys = sorted(control.keyframes)
    assert INTERVAL_RANGE[0] <= control.interval <= INTERVAL_RANGE[1]
    assert keys == keyframe_indices(41, control.interval)
    assert np.array_equal(np.flatnonzero(control.is_known), keys)
    for k in keys:
        assert np.array_equal(control.guide[k], control.keyframes[k])
        assert not np.array_equal(control.keyframes[k], clip[k]), "every keyframe is degraded"
    for a, b in zip(keys, keys[1:]):
        lo = np.minimum(control.keyframes[a], control.keyframes[b])
        hi = np.maximum(control.keyframes[a], control.keyframes[b])
        for t in range(a + 1, b):
            alpha = (t - a) / (b - a)
            frame = control.guide[t]
            assert np.all(frame >= lo - 1e-6) and np.all(frame <= hi + 1e-6)
            np.testing.assert_allclose(frame, (1 - alpha) * control.keyframes[a] + alpha * control.keyframes[b],
                                       atol=1e-6)


def test_the_keyframe_interval_covers_the_range_the_model_is_robust_to():
    intervals = {anchored_control(_clip(frames=21, width=32, height=32), np.random.default_rng(s)).interval
                 for s in range(60)}
    assert min(intervals) == 8 and max(intervals) == 20 and len(intervals) >= 10


def test_a_pasted_region_equals_the_pasted_content_exactly():
    target, other = _clip(seed=3), _clip(seed=4)
    fidelity = source_fidelity(target, other, np.random.default_rng(11))
    m = fidelity.masks.astype(bool)
    assert set(np.unique(fidelity.masks)) == {0.0, 1.0}
    assert np.array_equal(fidelity.pseudo_source[m], other[m])
    assert np.array_equal(fidelity.pseudo_source[~m], target[~m])
    coverage = fidelity.masks.mean(axis=(1, 2))
    assert coverage.min() > 0.0 and coverage.max() < 0.9


def test_paste_masks_move_over_the_window():
    masks = moving_masks(np.random.default_rng(2), 33, 64, 96, shapes=(1, 1))
    ys, xs = np.nonzero(masks[0])
    ye, xe = np.nonzero(masks[-1])
    moved = np.hypot(ye.mean() - ys.mean(), xe.mean() - xs.mean())
    assert moved > 2.0
    assert not np.array_equal(masks[0], masks[16])


def test_cut_and_paste_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        cut_and_paste(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3)), np.zeros((2, 4, 8)))
