"""Optical flow: where each pixel of a frame sits in a known frame (OpenCV DIS, on the CPU).

The spatial part of an edit is carried from a known frame to the others along these flows.
They are computed on grey images at a reduced *flow scale* (`flow_max_side`) and brought to
full size only in the tiles where an edit lands. The helpers below the class (8-bit input for
DIS, pixel grids, warping by a flow, softened colours to match routes on) are shared with the
rest of the propagator, scene-cut detection included.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .tiles import TILE, Box, tile_runs

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

_FINEST_SIDE = 320  # long side of the finest optical-flow level, in pixels
_DIS_PATCH = 8  # DIS's patch side: the least a level's short side can be


class Flows:
    """Where each pixel of a frame sits in a known frame, by two routes.

    - direct: DIS flow from the frame straight to the known frame (no drift, but large
      displacements, e.g. a thin occluder crossing an object, can drag the flow along);
    - chained: consecutive-frame flows composed from the known frame outwards (small steps
      track well, the error grows with distance).

    Everything is computed on grey images at the flow scale and upsampled on use. Which route
    to believe is judged per pixel by colour match (`prediction.predict`); a forward–backward
    check was measured to hurt (it rejects good routes near motion boundaries) and is not used.
    """

    def __init__(self, preset: str, h: int, w: int, max_side: int, frames: np.ndarray) -> None:
        self.frames = frames
        self.h, self.w = h, w
        scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
        self.size = (max(8, round(w * scale)), max(8, round(h * scale)))
        self.dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        # The presets fix the finest patch level relative to the image; what matters for edits
        # is the level's absolute size (boundaries of small objects), so pick the finest scale
        # that still leaves about _FINEST_SIDE pixels on the long side.
        long_side = max(self.size)
        target = _FINEST_SIDE // 2 if preset == "ultrafast" else _FINEST_SIDE
        finest = round(math.log2(max(long_side / target, 1.0)))
        # DIS matches 8×8 patches: its finest level must keep the short side at 8 pixels or more
        # (a 4096×16 strip would otherwise have no level to work on).
        finest = min(finest, int(math.log2(min(self.size) / _DIS_PATCH)))
        self.dis.setFinestScale(max(0, finest))
        sw, sh = self.size
        self.gx, self.gy = pixel_grid((0, sh, 0, sw))
        self._grey: dict[int, np.ndarray] = {}

    def forget_before(self, t: int) -> None:
        """Drop cached grey images of frames before t: frames are visited in order."""
        for key in [k for k in self._grey if k < t]:
            del self._grey[key]

    def grey(self, t: int) -> np.ndarray:
        if t not in self._grey:
            grey = cv2.cvtColor(eight_bit(self.frames[t]), cv2.COLOR_RGB2GRAY)
            if self.size != (self.w, self.h):
                grey = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)
            self._grey[t] = grey
        return self._grey[t]

    def sample(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        return warp(image, self.gx, self.gy, flow)

    def direct(self, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Flow t→k (pixel x of t sits at x + flow in k) and where it stays inside k."""
        flow = self.dis.calc(self.grey(t), self.grey(k), None)
        return flow, self.inside(flow)

    def chain(self, k: int, frames: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Composed flows from each of `frames` (consecutive, walking away from k) to k, and
        where the chain stayed inside the frames at every step."""
        sw, sh = self.size
        flow = np.zeros((sh, sw, 2), np.float32)
        valid = np.ones((sh, sw), np.float32)
        previous, out = k, {}
        for t in frames:
            step = self.dis.calc(self.grey(t), self.grey(previous), None)
            carried = self.sample(np.dstack([flow, valid]), step)
            flow = step + carried[..., :2]
            valid = carried[..., 2] * self.inside(step)
            out[t] = (flow, valid)
            previous = t
        return out

    def inside(self, flow: np.ndarray) -> np.ndarray:
        """1 where the flow lands inside the other frame, else 0 (nothing known there)."""
        sw, sh = self.size
        x, y = self.gx + flow[..., 0], self.gy + flow[..., 1]
        return ((x >= 0) & (x <= sw - 1) & (y >= 0) & (y <= sh - 1)).astype(np.float32)

    def boxes(self, low: np.ndarray, pad: int) -> list[tuple[Box, Box]]:
        """Full-size boxes covering the set cells of a flow-scale mask, as runs of TILE-pixel
        tiles along each tile row: [(inner box, box padded by `pad`)], boxes as (y0, y1, x0, x1).

        A sparse mask (a few clusters of residual spread over the frame) then costs its tiles,
        not its bounding box.
        """
        near = cv2.dilate(low.astype(np.uint8), np.ones((3, 3), np.uint8))
        ys, xs = np.nonzero(near)
        if len(ys) == 0:
            return []
        sw, sh = self.size
        tiles = np.zeros((-(-self.h // TILE), -(-self.w // TILE)), bool)
        # Each low-resolution cell covers full-size pixels [i·f, (i+1)·f): mark both ends.
        for lo_y, lo_x in ((ys * self.h) // sh, (xs * self.w) // sw), (
                ((ys + 1) * self.h - 1) // sh, ((xs + 1) * self.w - 1) // sw):
            tiles[lo_y // TILE, lo_x // TILE] = True
        return tile_runs(tiles, self.h, self.w, pad)

    def full_size(self, low: np.ndarray, box: Box,
                  displacement: bool = False) -> np.ndarray:
        """Bilinear upsampling of a flow-scale array into a full-size box; flow vectors
        (`displacement`) are rescaled to full-size pixels."""
        sw, sh = self.size
        y0, y1, x0, x1 = box
        if (sw, sh) == (self.w, self.h):
            return low[y0:y1, x0:x1]
        sx, sy = sw / self.w, sh / self.h
        # Pixel centres: full-size x maps to flow-scale (x + 0.5)·sx − 0.5, as cv2.resize does.
        matrix = np.array([[sx, 0.0, (x0 + 0.5) * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
        out = cv2.warpAffine(low, matrix, (x1 - x0, y1 - y0),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        if displacement:
            out[..., 0] *= 1.0 / sx
            out[..., 1] *= 1.0 / sy
        return out


def soften(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Blurred colours at the flow scale: matching frames through the flow should judge whether
    the same surface is seen, not fail on sub-pixel texture misalignment or noise."""
    if size != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(image, (5, 5), 1.0)


def eight_bit(frame: np.ndarray) -> np.ndarray:
    """A uint8 or uint16 frame as uint8 (DIS flow takes 8-bit images)."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    return frame


def pixel_grid(box: Box) -> tuple[np.ndarray, np.ndarray]:
    """The x and y coordinates (float32) of every pixel of a box (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box
    return np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))


def warp(image: np.ndarray, gx: np.ndarray, gy: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` sampled where the pixels at (gx, gy) land by `flow` (bilinear, edges replicated)."""
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
