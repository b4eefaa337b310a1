"""The propagator contract: one chunk of source frames plus edited keyframes → edited frames.

Propagators are entry-point plugins in the group `studio_nova.propagators`. The class named by
the entry point is instantiated with keyword options from configuration; `propagate()` is called
once per chunk, in order, so the chunk after an overlap receives the previous chunk's output on
the shared frames as `anchors` (known frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from studio_nova.editing import EditedKeyframe
from studio_nova.errors import KeyframeError, PropagationError


@dataclass
class ChunkInput:
    shot: str
    first_frame: int  # source frame of frames[0]
    frames: np.ndarray  # (N, H, W, 3) uint8 | uint16: the source, read-only
    keyframes: dict[int, EditedKeyframe]  # by index within the chunk
    anchors: dict[int, np.ndarray] = field(default_factory=dict)  # by index; (H, W, 3), frames' dtype
    instruction: str = ""  # the approved edit's instruction, for propagators that read text


@dataclass
class ChunkOutput:
    frames: np.ndarray  # (N, H, W, 3), same dtype as ChunkInput.frames
    masks: np.ndarray  # (N, H, W) uint8, 0..255: how much of each pixel the edit replaced


@runtime_checkable
class Propagator(Protocol):
    name: str

    def propagate(self, chunk: ChunkInput) -> ChunkOutput: ...


def check_chunk(chunk: ChunkInput) -> None:
    """Validate a chunk up front, so a propagator's failure names the shot and frame at fault."""
    frames = chunk.frames
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        raise PropagationError(f"frames must be (N, H, W, 3), got {shape}", shot=chunk.shot)
    if frames.dtype not in (np.uint8, np.uint16):
        raise PropagationError(f"frames must be uint8 or uint16, got {frames.dtype}",
                               shot=chunk.shot)
    n, h, w = frames.shape[:3]
    if not chunk.keyframes and not chunk.anchors:
        raise KeyframeError("the chunk has no keyframe and no anchor: nothing to propagate",
                            shot=chunk.shot, frame=chunk.first_frame)
    for k, kf in chunk.keyframes.items():
        where = dict(shot=chunk.shot, frame=chunk.first_frame + k)
        if not 0 <= k < n:
            raise KeyframeError(f"keyframe index {k} is outside the chunk of {n} frames", **where)
        image, mask = np.asarray(kf.image), np.asarray(kf.mask)
        if image.shape != (h, w, 3):
            raise KeyframeError(f"edited keyframe is {image.shape}, the source ({h}, {w}, 3)",
                                **where)
        if mask.shape != (h, w):
            raise KeyframeError(f"keyframe mask is {mask.shape}, the source ({h}, {w})", **where)
        if image.dtype.kind != "f" or mask.dtype.kind != "f":
            raise KeyframeError("edited keyframe and mask must be float images in [0, 1]",
                                **where)
    for k, anchor in chunk.anchors.items():
        where = dict(shot=chunk.shot, frame=chunk.first_frame + k)
        if not 0 <= k < n:
            raise PropagationError(f"anchor index {k} is outside the chunk of {n} frames",
                                   **where)
        if anchor.shape != (h, w, 3) or anchor.dtype != frames.dtype:
            raise PropagationError(
                f"anchor is {anchor.dtype}{anchor.shape}, frames {frames.dtype}({h}, {w}, 3)",
                **where)
