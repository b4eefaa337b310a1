"""Synthetic footage: deterministic, moving, occluded, noisy, with masks that match the pixels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from studio_nova.footage.synthetic import (
    TARGET_RGB,
    apply_through_mask,
    colour_grade,
    colour_key,
    hue_rotate,
    make_scene,
)

N, W, H = 40, 320, 180


@pytest.fixture(scope="module")
def scene():
    return make_scene(N, W, H, seed=3)


def test_when_the_seed_is_the_same_then_the_footage_is_identical(scene):
    again = make_scene(N, W, H, seed=3)
    other = make_scene(N, W, H, seed=4)
    assert np.array_equal(scene.frames, again.frames)
    assert all(np.array_equal(scene.masks[k], again.masks[k]) for k in scene.masks)
    assert not np.array_equal(scene.frames, other.frames)


def test_scene_has_the_promised_shapes_and_objects(scene):
    assert scene.frames.shape == (N, H, W, 3) and scene.frames.dtype == np.uint8
    assert {"target", "twin", "occluder", "ball", "box"} <= set(scene.masks)
    for name, mask in scene.masks.items():
        assert mask.shape == (N, H, W) and mask.dtype == np.float32, name
        assert 0.0 <= mask.min() and mask.max() <= 1.0, name
        # every object is in view in every frame
        assert (mask.sum(axis=(1, 2)) > 100).all(), name


def test_masks_are_antialiased_not_binary(scene):
    target = scene.masks["target"]
    rim = ((target > 0.05) & (target < 0.95)).sum()
    inside = (target >= 0.95).sum()
    assert 0.01 < rim / inside < 0.2  # a thin rim of partial coverage around a solid object


def test_target_and_twin_share_a_colour_that_nothing_else_has(scene):
    frames = scene.frames.astype(np.float32) / 255.0
    red = np.asarray(TARGET_RGB, np.float32)
    for name in ("target", "twin"):
        inside = scene.masks[name] > 0.99
        mean = frames[inside].mean(axis=0)
        assert np.abs(mean - red).max() < 0.08, (name, mean)
    others = sum(scene.masks[k] for k in scene.masks if k not in ("target", "twin"))
    background = (scene.masks["target"] + scene.masks["twin"] + others) < 0.01
    key = colour_key(frames)
    assert key[scene.masks["target"] > 0.99].mean() > 0.9
    assert key[background].mean() < 0.01


def test_camera_moves_every_pixel(scene):
    # With a panning camera, consecutive frames differ far beyond the noise everywhere.
    diff = np.abs(scene.frames[1:].astype(np.int16) - scene.frames[:-1]).mean(axis=(1, 2, 3))
    assert diff.min() > 3.0
    still = make_scene(6, W, H, seed=3, camera_motion=False, occluder=False, noise=0.0)
    background = sum(still.masks.values()) == 0
    both = background[1:] & background[:-1]
    steady = np.abs(still.frames[1:].astype(np.int16) - still.frames[:-1])[both]
    assert both.sum() > 0.5 * both.size and steady.max() == 0


def test_occluder_passes_in_front_of_the_target(scene):
    area = scene.masks["target"].sum(axis=(1, 2))
    # The visible target shrinks while the pole is in front of it (it otherwise only grows
    # with the zoom), and the pole is then where the target would be.
    hidden = 1.0 - area / np.maximum.accumulate(area)
    t = int(np.argmax(hidden))
    assert hidden[t] > 0.05
    rows, cols = np.nonzero(scene.masks["target"][t] > 0.5)
    pole = scene.masks["occluder"][t, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert (pole > 0.5).sum() > 0.05 * len(rows)
    # Visible masks never overlap: what is behind is hidden.
    assert sum(scene.masks.values()).max() <= 1.0 + 1e-5


def test_noise_has_the_requested_strength():
    clean = make_scene(4, W, H, seed=5, noise=0.0).frames.astype(np.float32)
    noisy = make_scene(4, W, H, seed=5, noise=0.02).frames.astype(np.float32)
    sigma = (noisy - clean).std() / 255.0
    assert 0.017 < sigma < 0.023


def test_drawing_is_fast_enough_for_the_demo():
    start = time.perf_counter()
    make_scene(30, 320, 180, seed=1)
    per_frame = (time.perf_counter() - start) / 30
    print(f"make_scene: {per_frame * 1000:.1f} ms per 320x180 frame")
    assert per_frame < 0.05  # generous: the machine is shared; the target is ~5 ms


def test_hue_rotation_keeps_grey_and_turns_red_away_from_red():
    grey = np.full((1, 1, 3), 0.4, np.float32)
    assert np.allclose(hue_rotate(grey, 120.0), grey, atol=1e-6)
    red = np.array([[[0.8, 0.1, 0.1]]], np.float32)
    turned = hue_rotate(red, 120.0)[0, 0]
    assert turned[1] > turned[0]  # 120° takes red towards green
    assert np.allclose(hue_rotate(red, 360.0), red, atol=1e-5)


def test_grade_and_mask_blend_against_known_values():
    image = np.array([[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]], np.float32)
    graded = colour_grade(image, lift=0.1, gamma=1.0, gain=0.9)
    assert np.allclose(graded[0, 0], 0.1 + 0.8 * 0.5)
    assert np.allclose(graded[0, 1], 0.1)
    frames = np.full((1, 1, 2, 3), 128, np.uint8)
    mask = np.array([[[1.0, 0.0]]], np.float32)
    out = apply_through_mask(frames, lambda x: x * 0.0, mask)
    assert np.allclose(out[0, 0, 0], 0.0) and np.allclose(out[0, 0, 1], 128 / 255.0)
