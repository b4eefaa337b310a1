"""A known frame's edit and its two-part model: what gets carried to the other frames.

A known frame (keyframe, or anchor from the previous chunk) gives the edit as a delta
`D = edited − source` and a mask. Its model is a colour part (`colour_lut`), applied to every
frame's own pixels, plus a spatial part for what colour does not explain: a local linear model
of the residual, `R ≈ A(x)·F + b(x)` with the source as guide (`guided_filter`), fitted only
where the residual is worth carrying. The model — not the residual — is what is warped to the
other frames (`prediction`), so their noise and detail stay their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studio_nova.media.frames import to_float
from studio_nova.plugin_api.editing import EditedKeyframe
from studio_nova.plugin_api.propagation import ChunkInput

from .colour_lut import ColourLut, fit_lut
from .guided_filter import local_linear
from .optical_flow import soften
from .tiles import covered_tiles, tile_runs

_CARRY = 2.0 / 255.0  # residual (per channel) the spatial part is worth carrying
_DENSITY = 0.2  # share of a 5×5 neighbourhood over _CARRY for a pixel to be carried
FIELDS = 14  # per pixel: A (9), b (3), mask residual, gate


def known_edit(chunk: ChunkInput, k: int, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delta and mask of a known frame. A keyframe wins over an anchor for modelling: it is
    the artist's own edit, the anchor a propagated copy of it."""
    kf: EditedKeyframe | None = chunk.keyframes.get(k)
    if kf is not None:
        mask = np.clip(np.asarray(kf.mask, np.float32), 0.0, 1.0)
        delta = np.asarray(kf.image, np.float32) - source
        delta[mask <= 0] = 0.0  # the mask says the edit left these pixels alone
        return delta, mask
    anchor = chunk.anchors[k]
    delta = to_float(anchor) - source
    mask = np.any(anchor != chunk.frames[k], axis=-1).astype(np.float32)
    return delta, mask


@dataclass(frozen=True)
class FitParams:
    """The propagator's options that a known frame's model is fitted with."""

    lut_size: int
    radius: int
    eps: float
    tolerance: float


@dataclass
class KnownModel:
    """One known frame's edit, both parts, as the frames around it use it."""

    lut: ColourLut
    fields: np.ndarray | None  # (H, W, FIELDS) float32; None: colour explains the whole edit
    # (h, w, 4) float32 at the flow scale: the known frame softened (to match routes against)
    # and where `fields` matter; None with `fields`
    matching: np.ndarray | None


def fit_model(source: np.ndarray, delta: np.ndarray, mask: np.ndarray, params: FitParams,
              flow_size: tuple[int, int]) -> KnownModel:
    """Both parts of one known frame's edit: the LUT, then a local linear model of the rest."""
    lut = fit_lut(source, delta, mask, params.lut_size, params.tolerance)
    explained = lut(source)
    residual = delta - explained[..., :3]
    mask_residual = mask - explained[..., 3]
    # Where the residual is worth carrying, with a pixel of slack for the flow: outside it the
    # spatial model would only leak the guided filter's smoothing onto untouched pixels.
    # (The delta decides, not the mask: a mask feathered beyond the painted pixels must not
    # carry a spatial model of nothing onto untouched pixels.)
    support = np.abs(residual).max(axis=-1) > _CARRY
    # Scattered pixels are the LUT's own small misfits (clipped colours, say), not an edit of
    # a place; carrying them would cost a full-frame spatial pass for nothing visible.
    density = cv2.boxFilter(support.astype(np.float32), -1, (5, 5))
    support &= density >= _DENSITY
    h, w = source.shape[:2]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(support.astype(np.uint8), 8)
    small = stats[:, cv2.CC_STAT_AREA] < (min(h, w) / 45.0) ** 2
    small[0] = True  # the background label
    support[small[labels]] = False
    if not support.any():
        return KnownModel(lut, None, None)
    support = cv2.dilate(support.astype(np.uint8), np.ones((3, 3), np.uint8))
    fields = np.zeros((h, w, FIELDS), np.float32)
    # The model matters only where the support is: fit it on the support's tiles alone.
    tiles = covered_tiles(support > 0)
    for (iy0, iy1, ix0, ix1), (y0, y1, x0, x1) in tile_runs(tiles, h, w, 2 * params.radius):
        coeffs = local_linear(source[y0:y1, x0:x1], residual[y0:y1, x0:x1], params.radius,
                              params.eps)
        fields[iy0:iy1, ix0:ix1, :12] = coeffs[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
    fields[..., 12] = mask_residual
    fields[..., 13] = support
    low = support.astype(np.float32)
    if flow_size != (w, h):  # any supported pixel marks its low-resolution cell
        low = (cv2.resize(low, flow_size, interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
    return KnownModel(lut, fields, np.dstack([soften(source, flow_size), low]))
