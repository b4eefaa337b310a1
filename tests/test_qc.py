"""QC figures against known values and against scikit-image's reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from studio_nova.render import qc


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    a = rng.random((48, 64, 3))
    b = np.clip(a + rng.normal(0.0, 0.05, a.shape), 0.0, 1.0)
    return a.astype(np.float32), b.astype(np.float32)


def test_psnr_of_a_known_error_is_known():
    a = np.zeros((4, 4, 3), np.float32)
    b = np.full((4, 4, 3), 0.1, np.float32)
    assert qc.psnr(a, b) == pytest.approx(20.0)  # mse 0.01 → 20 dB
    assert qc.psnr(a, a) == math.inf


def test_psnr_matches_scikit_image_and_treats_codes_as_their_scale(pair):
    a, b = pair
    assert qc.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-4)
    a8 = np.rint(a * 255).astype(np.uint8)
    b8 = np.rint(b * 255).astype(np.uint8)
    assert qc.psnr(a8, b8) == pytest.approx(peak_signal_noise_ratio(a8, b8), abs=1e-6)
    a16 = a8.astype(np.uint16) * 257
    b16 = b8.astype(np.uint16) * 257
    assert qc.psnr(a16, b16) == pytest.approx(qc.psnr(a8, b8), abs=1e-6)


def test_psnr_mask_selects_pixels():
    a = np.zeros((2, 2, 3), np.float32)
    b = a.copy()
    b[0, 0] = 0.5
    mask = np.array([[False, True], [True, True]])
    assert qc.psnr(a, b, mask) == math.inf
    assert qc.psnr(a, b, ~mask) == pytest.approx(10 * math.log10(1 / 0.25))
    with pytest.raises(ValueError):
        qc.psnr(a, b, np.zeros((2, 2), bool))


def test_ssim_matches_scikit_image(pair):
    a, b = pair
    ours = qc.ssim(a, b)
    reference = structural_similarity(
        a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    assert ours == pytest.approx(reference, abs=1e-6)
    assert qc.ssim(a, a) == pytest.approx(1.0)


def test_ssim_of_a_stack_is_the_mean_of_its_frames(pair):
    a, b = pair
    stack_a, stack_b = np.stack([a, a]), np.stack([b, a])
    assert qc.ssim(stack_a, stack_b) == pytest.approx((qc.ssim(a, b) + 1.0) / 2.0)


def test_ssim_with_a_mask_ignores_what_is_outside_it(pair):
    a, b = pair
    c = a.copy()
    c[:, 32:] = 1.0 - a[:, 32:]  # damage the right half only
    left = np.zeros(a.shape[:2], bool)
    left[:, :20] = True
    assert qc.ssim(a, c, left) == pytest.approx(1.0)
    assert qc.ssim(a, c, ~left) < 0.5


def test_seam_psnr_is_infinite_when_chunks_agree_and_finite_when_not():
    prev = np.full((3, 8, 8, 3), 100, np.uint8)
    assert qc.seam_psnr(prev, prev.copy()) == math.inf
    jump = prev.copy()
    jump[:] = 110
    assert qc.seam_psnr(prev, jump) == pytest.approx(20 * math.log10(255 / 10))


def test_exact_fraction_counts_changed_pixels_outside_the_mask():
    source = np.zeros((1, 4, 5, 3), np.uint8)
    out = source.copy()
    out[0, 0, 0, 1] = 1  # one channel of one pixel changed, outside the mask
    out[0, 3, 4] = 9  # changed inside the mask: allowed
    mask = np.zeros((1, 4, 5), np.float32)
    mask[0, 3, 4] = 1.0
    assert qc.exact_fraction(out, source, mask) == pytest.approx(18 / 19)
    assert qc.exact_fraction(source, source, mask) == 1.0
    with pytest.raises(ValueError):
        qc.exact_fraction(out, source.astype(np.uint16), mask)
