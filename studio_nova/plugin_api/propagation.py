"""The propagator contract: one chunk of source frames plus edited keyframes → edited frames.

Propagators are entry-point plugins in the group `studio_nova.propagators`. The class named by
the entry point is built by the registry with the run's settings: through its classmethod
``from_settings(settings, **options)`` when it has one, else as ``cls(**options)``; a propagator
never reads the environment itself. Its classmethod ``settings_options(settings) -> dict``, when
present, names the options it draws from the settings: a render's identity records them, so a
change of them makes a new render. `propagate()` is called once per chunk, in order, so the
chunk after an overlap receives the previous chunk's output on the shared frames as `anchors`
(known frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from studio_nova.errors import KeyframeError, PropagationError
from studio_nova.plugin_api.editing import EditedKeyframe


@dataclass
class CompositeGuide:
    """A background replacement's fused frames for a chunk (see studio_nova.render.background).

    `frames` is the subject of each source frame over the new background's frame for the same
    moment; where `changed` is 0 it *is* the source. A propagator that supports guides
    (`supports_guide = True`) makes its output from them: `flow` takes them as they are, `nova`
    lets them drive its sparse branch and keeps every foreground pixel from the source.
    """

    frames: np.ndarray  # (N, H, W, 3) float32 in [0, 1]
    alpha: np.ndarray  # (N, H, W) float32: foreground coverage (1 = subject)
    changed: np.ndarray  # (N, H, W) float32: how much of each pixel is not the source's
    background: np.ndarray  # (N, H, W, 3) float32: the new background alone


@dataclass
class ChunkInput:
    shot: str
    first_frame: int  # source frame of frames[0]
    frames: np.ndarray  # (N, H, W, 3) uint8 | uint16: the source, read-only
    keyframes: dict[int, EditedKeyframe]  # by index within the chunk
    anchors: dict[int, np.ndarray] = field(default_factory=dict)  # by index; (H, W, 3), frames' dtype
    instruction: str = ""  # the approved edit's instruction, for propagators that read text
    guide: CompositeGuide | None = None  # a background replacement's fused frames


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
    if chunk.guide is not None:
        g = chunk.guide
        shapes = (g.frames.shape, g.alpha.shape, g.changed.shape, g.background.shape)
        if shapes != ((n, h, w, 3), (n, h, w), (n, h, w), (n, h, w, 3)):
            raise PropagationError(f"the composite guide's shapes {shapes} do not fit {n} frames of {h}x{w}",
                                   shot=chunk.shot, frame=chunk.first_frame)
    for k, anchor in chunk.anchors.items():
        where = dict(shot=chunk.shot, frame=chunk.first_frame + k)
        if not 0 <= k < n:
            raise PropagationError(f"anchor index {k} is outside the chunk of {n} frames",
                                   **where)
        if anchor.shape != (h, w, 3) or anchor.dtype != frames.dtype:
            raise PropagationError(
                f"anchor is {anchor.dtype}{anchor.shape}, frames {frames.dtype}({h}, {w}, 3)",
                **where)


def guided_output(chunk: ChunkInput) -> ChunkOutput:
    """A background replacement's chunk made directly from its composite guide.

    Decoupled propagation: nothing is carried from keyframes, because every frame already has its
    own subject (the source's) and its own background (the plate's); the approved keyframes are
    these very composites. Where the guide leaves a pixel unchanged, the output is the source
    pixel bit for bit.
    """
    from studio_nova.media.frames import from_float

    if chunk.guide is None:
        raise PropagationError("the chunk carries no composite guide", shot=chunk.shot, frame=chunk.first_frame)
    out, masks = keep_unchanged(chunk.frames, from_float(chunk.guide.frames, chunk.frames.dtype), chunk.guide.changed)
    return ChunkOutput(frames=out, masks=masks)


def keep_unchanged(source: np.ndarray, fused: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames and masks from fused frames: the source pixel, bit for bit, where `changed` is 0;
    the mask (uint8) is `changed` scaled, and never 0 where the output differs from the source."""
    same = changed <= 0
    out = np.where(same[..., None], source, fused)
    masks = np.rint(np.clip(changed, 0.0, 1.0) * 255.0).astype(np.uint8)
    masks[(masks == 0) & ~same] = 1
    return out, masks
