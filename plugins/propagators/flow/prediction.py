"""An in-between frame's edit, made from its known neighbours through optical flow.

The colour parts of the (one or two) known neighbours are interpolated in time and looked up on
the frame's own pixels. Their spatial parts arrive by two routes per side — DIS flow straight
to the known frame, and consecutive flows chained — the better one per pixel, the sides
weighted by temporal closeness × how well the colours a route lands on match the frame's own
(occlusions and dragged flow fail that test). The warped support of the spatial part is snapped
to the frame's own colour edges, and only its tiles are processed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .colour_lut import ColourLut
from .edit_model import FIELDS, KnownModel
from .guided_filter import apply_linear, guided_coefficients
from .optical_flow import Flows, pixel_grid, soften, warp
from .tiles import Box

_MATCH_SIGMA = 0.06  # colour difference (RMS over RGB) at which a route's weight drops to 1/e
_GATE_LOW = 0.4  # a snapped gate below this is a flow tail, not the edit


@dataclass
class Side:
    """A known neighbour of the frames of one segment and its chained flows to them."""

    index: int
    model: KnownModel
    chained: dict[int, tuple[np.ndarray, np.ndarray]]
    spatial: bool  # False: colour part only (no spatial model, or another scene)


def known_side(k: int, model: KnownModel, flows: Flows, frames: list[int],
               spatial: bool) -> Side:
    """A known neighbour; flows are only needed when its spatial part is to be used."""
    spatial = spatial and model.fields is not None
    return Side(k, model, flows.chain(k, frames) if spatial else {}, spatial)


def predict(source: np.ndarray, t: int, sides: list[Side], flows: Flows,
            snap: int) -> tuple[np.ndarray, np.ndarray]:
    """Delta and mask at frame t from its known neighbours (one or two).

    The colour part is looked up for every pixel. Each route (direct, chained; per side) is
    weighed at the flow scale by temporal closeness × how well the colours it lands on match
    this frame's; the spatial part is evaluated at full size only in the tiles where some
    warped support lands.
    """
    h, w = source.shape[:2]
    if len(sides) == 2:
        ka, kb = sides[0].index, sides[1].index
        temporal = [(kb - t) / (kb - ka), (t - ka) / (kb - ka)]
    else:
        temporal = [1.0]
    # Tables are linear in their values: blend them, then look up once.
    colour = ColourLut.blend([side.model.lut for side in sides], temporal)(source)
    delta, mask = colour[..., :3], colour[..., 3]
    spatial = [(tw, side) for tw, side in zip(temporal, sides) if side.spatial]
    if not spatial:
        return delta, mask

    # 1. Weigh every route at the flow scale.
    soft = soften(source, flows.size)
    routes: list[tuple[Side, np.ndarray, np.ndarray]] = []  # (side, flow, weight)
    gate = np.zeros(soft.shape[:2], np.float32)
    total = np.full(soft.shape[:2], 1e-6, np.float32)
    for tw, side in spatial:
        candidates = []
        for flow, valid in (flows.direct(t, side.index), side.chained[t]):
            seen = flows.sample(side.model.matching, flow)
            diff = soft - seen[..., :3]
            diff *= diff
            match = (diff[..., 0] + diff[..., 1] + diff[..., 2]) * np.float32(1.0 / 3.0)
            conf = np.exp(-match / (2.0 * _MATCH_SIGMA**2)) * valid
            candidates.append((flow, tw * conf * conf + 1e-6 * tw, seen[..., 3]))
        (flow_a, weight_a, gate_a), (flow_b, weight_b, gate_b) = candidates
        better = weight_a >= weight_b
        flow = np.where(better[..., None], flow_a, flow_b)
        weight = np.maximum(weight_a, weight_b)
        routes.append((side, flow, weight))
        gate += weight * np.where(better, gate_a, gate_b)
        total += weight
    for inner, box in flows.boxes(gate > 0, snap + 1):  # sparse: only where support lands
        _spatial(source, delta, mask, inner, box, routes, total, flows, snap)
    return delta, np.clip(mask, 0.0, 1.0)


def _spatial(source: np.ndarray, delta: np.ndarray, mask: np.ndarray, inner: Box, box: Box,
             routes: list[tuple[Side, np.ndarray, np.ndarray]], total: np.ndarray,
             flows: Flows, snap: int) -> None:
    """Warp the routes' spatial models into one box at full size, blend them, apply them to
    this frame's pixels and add the result to `delta` / `mask` inside `inner` (in place)."""
    y0, y1, x0, x1 = box
    acc = np.zeros((y1 - y0, x1 - x0, FIELDS), np.float32)
    norm = flows.full_size(total, box)
    gx, gy = pixel_grid(box)
    for side, flow, weight in routes:
        full = flows.full_size(flow, box, displacement=True)
        fields = warp(side.model.fields, gx, gy, full)
        acc += (flows.full_size(weight, box) / norm)[..., None] * fields
    part = source[y0:y1, x0:x1]
    gate = acc[..., 13:14]
    if snap:
        # Flow is least accurate at motion boundaries: snap the gate to this frame's own colour
        # edges (a guided filter of the gate), never reaching beyond where it was.
        snapped = apply_linear(guided_coefficients(part, gate, snap, 1e-3), part, 1)
        gate = np.where(gate > 0, np.clip((snapped - _GATE_LOW) / (1.0 - _GATE_LOW), 0.0, 1.0),
                        0.0).astype(np.float32)
    iy0, iy1, ix0, ix1 = inner
    crop = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    gate, acc, part = gate[crop], acc[crop], part[crop]
    delta[iy0:iy1, ix0:ix1] += gate * apply_linear(acc, part)
    mask[iy0:iy1, ix0:ix1] = np.clip(mask[iy0:iy1, ix0:ix1] + gate[..., 0] * acc[..., 12],
                                     0.0, 1.0)
