"""The synthetic green-screen shot: its parts relate exactly as documented, and its files hold them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from studio_nova.footage.greenscreen import KEY_CHANNEL, make_greenscreen
from studio_nova.media.decode import read_alpha, read_frames
from studio_nova.media.probe import probe

N, W, H = 8, 160, 96


@pytest.fixture(scope="module")
def shot():
    return make_greenscreen(N, W, H, seed=7)


def test_arrays_have_the_documented_shapes_types_and_range(shot):
    for name in ("source", "foreground", "screen", "noise", "plate", "truth"):
        array = getattr(shot, name)
        assert array.shape == (N, H, W, 3) and array.dtype == np.float32, name
    for name in ("alpha", "spill"):
        assert getattr(shot, name).shape == (N, H, W), name
    for name in ("source", "alpha", "foreground", "screen", "plate", "truth"):
        array = getattr(shot, name)
        assert array.min() >= 0.0 and array.max() <= 1.0, name


def test_same_seed_same_shot_other_seed_other_shot(shot):
    again = make_greenscreen(N, W, H, seed=7)
    other = make_greenscreen(N, W, H, seed=8)
    assert np.array_equal(again.source, shot.source)
    assert not np.array_equal(other.source, shot.source)


def test_source_is_the_documented_mix_of_subject_spill_screen_and_noise(shot):
    a = shot.alpha[..., None]
    seen = shot.foreground.copy()
    seen[..., KEY_CHANNEL["green"]] += shot.spill
    model = a * seen + (1 - a) * shot.screen + shot.noise
    unclipped = (model > 0) & (model < 1)
    assert np.abs(model - shot.source)[unclipped].max() < 1e-5
    truth = a * np.clip(shot.foreground + shot.noise, 0, 1) + (1 - a) * shot.plate
    assert np.abs(truth - shot.truth).max() < 1e-5
    assert np.abs(shot.truth_over(shot.plate) - shot.truth).max() < 1e-6


def test_inside_the_solid_spill_free_subject_the_truth_is_the_source(shot):
    inside = shot.interior()
    assert inside.sum() > 0.02 * inside.size
    assert np.array_equal(shot.truth[inside], shot.source[inside])
    # Spill sits only near the edge: 3 px inside the solid subject there is none.
    assert (shot.spill[shot.interior(3)] == 0).all()
    assert shot.spill.max() > 0.05


def test_edges_are_soft_from_motion_blur_and_the_subject_deforms(shot):
    soft = (shot.alpha > 0.02) & (shot.alpha < 0.98)
    still = make_greenscreen(N, W, H, seed=7, static=True)
    still_soft = (still.alpha > 0.02) & (still.alpha < 0.98)
    assert soft.sum() > 2 * still_soft.sum()  # blur widens edges well beyond antialiasing
    # Non-rigid: the covered area changes from frame to frame (a rigid move would keep it).
    areas = shot.alpha.sum(axis=(1, 2))
    assert areas.max() / areas.min() > 1.03
    # The static shot only changes by its noise.
    assert np.array_equal(still.alpha[0], still.alpha[-1])


@pytest.mark.parametrize("screen", ["green", "blue"])
def test_no_subject_colour_is_more_key_coloured_than_red_or_other(screen):
    shot = make_greenscreen(4, W, H, seed=1, screen=screen, hair=True)
    k = KEY_CHANNEL[screen]
    others = [c for c in range(3) if c != k]
    f = shot.foreground[shot.alpha > 0]
    excess = f[:, k] - np.maximum(f[:, others[0]], f[:, others[1]])
    assert excess.max() < -0.01
    # ... and one part is close to the key (the cyan-ish accent): a real test for a keyer.
    assert np.percentile(excess, 99.5) > -0.08
    screen_excess = shot.screen[..., k] - np.maximum(shot.screen[..., others[0]], shot.screen[..., others[1]])
    assert screen_excess.min() > 0.05


def test_screen_is_unevenly_lit_and_carries_the_moving_shadow(shot):
    green = shot.screen[..., 1]
    assert green.max() / green.min() > 1.4  # gradient, vignetting, folds, shadow
    assert not np.array_equal(shot.screen[0], shot.screen[-1])  # the shadow moves


def test_plate_pans_by_plate_shift_px_per_frame(shot):
    sx, sy = shot.plate_shift
    grey = shot.plate.mean(axis=-1)
    (dx, dy), _ = cv2.phaseCorrelate(grey[0].astype(np.float64), grey[2].astype(np.float64))
    assert abs(dx + 2 * sx) < 0.5 and abs(dy + 2 * sy) < 0.5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="screen"):
        make_greenscreen(2, W, H, screen="red")
    with pytest.raises(ValueError, match="n_frames"):
        make_greenscreen(0, W, H)
    with pytest.raises(ValueError, match="motion_blur"):
        make_greenscreen(2, W, H, motion_blur=0)


def test_writers_round_trip_through_real_files(shot, tmp_path):
    source = probe(shot.write_source(tmp_path / "source.mov"))
    assert (source.codec, source.frame_count, source.width, source.height) == ("prores", N, W, H)
    decoded = np.stack(list(read_frames(source, 0, N - 1))).astype(np.float32) / 65535
    assert np.abs(decoded - shot.source).mean() < 0.01

    matte = probe(shot.write_matte(tmp_path / "matte.mkv"))
    grey = np.stack(list(read_frames(matte, 0, N - 1)))[..., 0].astype(np.float32) / 65535
    assert np.abs(grey - shot.alpha).max() < 1e-4  # lossless, 16-bit

    pattern = shot.write_matte(tmp_path / "seq")
    files = sorted((tmp_path / "seq").glob("*.png"))
    assert len(files) == N and pattern.name == "matte.%04d.png"
    first = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert first.dtype == np.uint16 and np.abs(first / 65535 - shot.alpha[0]).max() < 1e-4

    rgba = probe(shot.write_with_alpha(tmp_path / "element.mov"))
    assert rgba.has_alpha and rgba.pix_fmt.startswith("yuva444")
    alpha = np.stack(list(read_alpha(rgba, 0, N - 1)))
    assert np.abs(alpha - shot.alpha).max() < 2e-3  # 10-bit alpha
