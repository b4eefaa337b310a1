"""Quality-control figures for renders: fidelity to a truth, seams between chunks, exactness.

Every function takes frames either as float in [0, 1] or as uint8 / uint16 codes (scaled to
[0, 1] by their full-scale value), single images (H, W, C) or stacks (N, H, W, C), so the same
figures can be computed on decoded renders and on in-memory results. Masks are (H, W) or
(N, H, W), boolean or float weights in [0, 1].
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from studio_nova.media.frames import max_value

_SSIM_SIGMA = 1.5  # Wang et al. 2004, and scikit-image's gaussian_weights=True
_SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): the window scikit-image uses for sigma 1.5
_K1, _K2 = 0.01, 0.03


def _unit(image: np.ndarray) -> np.ndarray:
    """Frames as float64 in [0, 1]: integer codes are scaled, floats are taken as they are."""
    array = np.asarray(image)
    if array.dtype.kind in "ui":
        return array.astype(np.float64) / max_value(array.dtype)
    if array.dtype.kind == "f":
        return array.astype(np.float64)
    raise TypeError(f"frames must be integer codes or floats in [0, 1], got {array.dtype}")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _unit(a), _unit(b)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    return x, y


def _weights(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A per-pixel weight of the image's shape less its channel axis, or None for all pixels."""
    if mask is None:
        return None
    weights = np.asarray(mask, dtype=np.float64)
    pixel_shape = shape[:-1]
    if weights.shape != pixel_shape:
        raise ValueError(f"mask shape {weights.shape} does not match pixels {pixel_shape}")
    return weights


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (peak 1.0); `inf` when the (masked) pixels are equal.

    A float mask weights pixels, so a soft matte counts its edge pixels partly.
    """
    x, y = _pair(a, b)
    sq = (x - y) ** 2
    weights = _weights(mask, x.shape)
    if weights is None:
        mse = float(sq.mean())
    else:
        total = float(weights.sum())
        if total <= 0:
            raise ValueError("mask selects no pixels")
        mse = float((sq * weights[..., None]).sum() / (total * x.shape[-1]))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def _blur(image: np.ndarray) -> np.ndarray:
    size = 2 * _SSIM_RADIUS + 1
    # BORDER_REFLECT is scipy.ndimage's "reflect", which scikit-image's filter uses.
    return cv2.GaussianBlur(image, (size, size), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def _ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM of one single-channel image pair, per pixel (Gaussian window, population stats)."""
    c1, c2 = (_K1 * 1.0) ** 2, (_K2 * 1.0) ** 2
    mx, my = _blur(x), _blur(y)
    sxx = _blur(x * x) - mx * mx
    syy = _blur(y * y) - my * my
    sxy = _blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return num / den


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean structural similarity (Gaussian window σ = 1.5, data range 1), over channels.

    Without a mask, a border of the window radius is left out of the mean (as scikit-image
    does); with one, the SSIM map is averaged with the mask as weights. Stacks of frames give
    the mean over frames.
    """
    x, y = _pair(a, b)
    if x.ndim not in (3, 4):
        raise ValueError(f"expected (H, W, C) or (N, H, W, C) frames, got shape {x.shape}")
    weights = _weights(mask, x.shape)
    if x.ndim == 3:
        x, y = x[None], y[None]
        weights = None if weights is None else weights[None]
    r = _SSIM_RADIUS
    total, count = 0.0, 0.0
    for i in range(x.shape[0]):
        maps = np.stack(
            [_ssim_map(x[i, ..., c], y[i, ..., c]) for c in range(x.shape[-1])], axis=-1
        ).mean(axis=-1)
        if weights is None:
            if maps.shape[0] <= 2 * r or maps.shape[1] <= 2 * r:
                raise ValueError(f"images must be larger than {2 * r + 1} pixels for SSIM")
            inner = maps[r:-r, r:-r]
            total += float(inner.sum())
            count += inner.size
        else:
            total += float((maps * weights[i]).sum())
            count += float(weights[i].sum())
    if count <= 0:
        raise ValueError("mask selects no pixels")
    return total / count


def seam_psnr(prev_overlap: np.ndarray, next_overlap: np.ndarray) -> float:
    """How well two neighbouring chunks agree on the frames they share (PSNR in dB).

    A visible seam is a jump between what the chunks made of the same frames; `inf` means
    they made the same pixels.
    """
    return psnr(prev_overlap, next_overlap)


def exact_fraction(out: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    """Share of pixels outside `mask` (where it is 0 / False) whose every channel equals the source.

    Pixels an edit does not touch must come back bit-exactly; 1.0 means they all did. With
    nothing outside the mask the answer is 1.0 (no pixel was changed that should not be).
    """
    o, s = np.asarray(out), np.asarray(source)
    if o.shape != s.shape:
        raise ValueError(f"images differ in shape: {o.shape} vs {s.shape}")
    if o.dtype != s.dtype:
        raise ValueError(f"images differ in dtype: {o.dtype} vs {s.dtype}")
    outside = np.asarray(mask) == 0
    if outside.shape != o.shape[:-1]:
        raise ValueError(f"mask shape {outside.shape} does not match pixels {o.shape[:-1]}")
    n = int(outside.sum())
    if n == 0:
        return 1.0
    equal = np.all(o == s, axis=-1)
    return float(equal[outside].sum()) / n
