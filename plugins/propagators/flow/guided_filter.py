"""The guided filter: a local linear model `target ≈ A(x)·guide + b(x)` with a colour guide.

The `flow` propagator needs it twice: to model what colour does not explain of a keyframe's
edit as a function of that frame's own pixels (so the model, not the residual, can be warped to
another frame and applied to its pixels, keeping their noise and detail), and to snap a warped
gate to a frame's own colour edges. Coefficients are laid out channel-major: A (3×c, one block
of c per guide channel) then b (c), per pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

_GUIDED_RADIUS = 4  # wider guided-filter windows are computed on a subsampled copy


def local_linear(guide: np.ndarray, target: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Guided-filter coefficients (H, W, 4c) of a c-channel target: A (3×c, guide channel-major)
    then b, averaged over the windows covering each pixel, such that target ≈ A·guide + b."""
    h, w = guide.shape[:2]
    c = target.shape[-1]
    g0, g1, g2 = guide[..., 0], guide[..., 1], guide[..., 2]
    prod = np.stack([g0 * g0, g0 * g1, g0 * g2, g1 * g1, g1 * g2, g2 * g2], -1)
    cross = (guide[..., :, None] * target[..., None, :]).reshape(h, w, 3 * c)
    means = _box(np.concatenate([guide, target, prod, cross], -1), radius)
    mg, mt = means[..., 0:3], means[..., 3:3 + c]
    mp, mc = means[..., 3 + c:9 + c], means[..., 9 + c:].reshape(h, w, 3, c)
    s00 = mp[..., 0] - mg[..., 0] * mg[..., 0] + eps
    s01 = mp[..., 1] - mg[..., 0] * mg[..., 1]
    s02 = mp[..., 2] - mg[..., 0] * mg[..., 2]
    s11 = mp[..., 3] - mg[..., 1] * mg[..., 1] + eps
    s12 = mp[..., 4] - mg[..., 1] * mg[..., 2]
    s22 = mp[..., 5] - mg[..., 2] * mg[..., 2] + eps
    c00 = s11 * s22 - s12 * s12
    c01 = s02 * s12 - s01 * s22
    c02 = s01 * s12 - s02 * s11
    c11 = s00 * s22 - s02 * s02
    c12 = s01 * s02 - s00 * s12
    c22 = s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    cov = mc - mg[..., :, None] * mt[..., None, :]  # (h, w, 3, c)
    # A = Σ⁻¹·cov with Σ⁻¹ = cofactors / det, row by row (cheaper than einsum on 3×3 blocks).
    inv_det = (1.0 / det)[..., None]
    a0 = (c00[..., None] * cov[..., 0, :] + c01[..., None] * cov[..., 1, :]
          + c02[..., None] * cov[..., 2, :]) * inv_det
    a1 = (c01[..., None] * cov[..., 0, :] + c11[..., None] * cov[..., 1, :]
          + c12[..., None] * cov[..., 2, :]) * inv_det
    a2 = (c02[..., None] * cov[..., 0, :] + c12[..., None] * cov[..., 1, :]
          + c22[..., None] * cov[..., 2, :]) * inv_det
    b = mt - mg[..., 0:1] * a0 - mg[..., 1:2] * a1 - mg[..., 2:3] * a2
    coeffs = np.concatenate([a0, a1, a2, b], -1).astype(np.float32)
    return _box(coeffs, radius)


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(image, -1, (size, size), borderType=cv2.BORDER_REFLECT)


def guided_coefficients(guide: np.ndarray, target: np.ndarray, radius: int,
                        eps: float) -> np.ndarray:
    """`local_linear` at full size, or for wide windows on a subsampled copy with the
    coefficients upsampled (the fast guided filter): the coefficients are smooth, and applying
    them to the full-size guide keeps its edges."""
    step = radius // _GUIDED_RADIUS
    h, w = guide.shape[:2]
    if step < 2 or min(h, w) < 4 * step:
        return local_linear(guide, target, radius, eps)
    size = (max(1, round(w / step)), max(1, round(h / step)))
    small_guide = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
    small_target = cv2.resize(target, size, interpolation=cv2.INTER_AREA)
    if small_target.ndim == 2:
        small_target = small_target[..., None]
    coeffs = local_linear(small_guide, small_target, max(1, round(radius / step)), eps)
    coeffs = cv2.resize(coeffs, (w, h), interpolation=cv2.INTER_LINEAR)
    return coeffs if coeffs.ndim == 3 else coeffs[..., None]


def apply_linear(fields: np.ndarray, image: np.ndarray, c: int = 3) -> np.ndarray:
    """A·image + b of c-channel coefficients (laid out as `local_linear` returns them)."""
    out = image[..., 0:1] * fields[..., 0:c]
    out += image[..., 1:2] * fields[..., c:2 * c]
    out += image[..., 2:3] * fields[..., 2 * c:3 * c]
    out += fields[..., 3 * c:4 * c]
    return out
