"""`plate`: a background video, trimmed, looped or held to the shot, framed to the source frame.

Params (the request's ``background.params``):

- ``video`` (required): the plate, any file the media layer decodes (8- or 10/12/16-bit); a
  relative path resolves against the timeline's folder.
- ``start``: the plate frame shown at the shot's first frame (default 0); ``end``: the last plate
  frame to use (default the plate's last).
- ``loop``, for a shot longer than ``start..end``: ``loop`` (default: start again at ``start``),
  ``pingpong`` (play backwards, then forwards again; the turning frames are not doubled),
  ``hold`` (hold ``end``), ``error`` (refuse: the request says how many frames are missing).
- ``retime``: ``frame`` (default: plate frame ``start + i`` for shot frame ``i``) or ``time``
  (the plate frame nearest to the same moment, when plate and shot rates differ).
- ``fit``, ``anchor``, ``fill``: how the plate fills the frame, as for ``still``.

Frames are decoded as a stream through the media layer, once per call and only over the plate
range the call needs (nearby frames in one read, far-apart ones in separate seeks); each decoded
frame is framed at once, so no more than the call's own output is ever held. Offsets map to
plate frames independently, so chunked calls agree exactly on the frames they share.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from studio_nova.errors import EditRequestError, MediaError
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.plugin_api.backgrounds import BackgroundContext
from studio_nova_plugins.backgrounds._common import (
    LOOPS,
    RETIMES,
    Framing,
    StaticPlan,
    apply_static,
    check_offsets,
    choice_param,
    int_param,
    loop_steps,
    path_param,
    reject_unknown,
    resolve_file,
    shot_steps,
    static_plan,
)

# Needed plate frames closer than this are decoded in one read (decoding the few in between is
# cheaper than another seek and ffmpeg start); farther apart, each group gets its own seek.
MAX_GAP = 16


class PlateBackground:
    """A background video, trimmed / looped / held to the shot and framed to the source frame."""

    name = "plate"
    params = ("video", "start", "end", "loop", "retime", "fit", "anchor", "fill")

    def __init__(
        self,
        *,
        video: Any = None,
        start: Any = 0,
        end: Any = None,
        loop: Any = "loop",
        retime: Any = "frame",
        fit: Any = "cover",
        anchor: Any = (0.5, 0.5),
        fill: Any = 0.0,
        **unknown: Any,
    ) -> None:
        reject_unknown(self.name, unknown, self.params)
        if video is None:
            raise EditRequestError(
                'plate background needs params video, e.g. {"video": "plates/harbour.mov"}', param="video"
            )
        self.video = path_param(self.name, "video", video)
        self.start = int_param(self.name, "start", start, 0)
        self.end = None if end is None else int_param(self.name, "end", end, 0)
        if self.end is not None and self.end < self.start:
            raise EditRequestError(
                f"plate background param end ({self.end}) is before start ({self.start})", param="end"
            )
        self.loop = choice_param(self.name, "loop", loop, LOOPS)
        self.retime = choice_param(self.name, "retime", retime, RETIMES)
        self.framing = Framing.parse(self.name, fit, anchor, fill)
        self._plan: tuple[tuple[int, int, int, int], StaticPlan] | None = None
        if Path(self.video).expanduser().is_absolute():
            resolve_file(self.name, "video", self.video, None)  # a missing file fails at once

    @classmethod
    def readiness(cls) -> tuple[bool, str | None]:
        return True, None

    def frames(self, context: BackgroundContext, offsets: Sequence[int]) -> np.ndarray:
        # 1. Which plate frame each offset shows.
        steps = check_offsets(offsets)
        info = self._probe(context)
        indices = self.plate_frames(info, context, steps)
        out = np.empty((len(steps), context.height, context.width, 3), np.float32)
        if not len(steps):
            return out
        plan = self._static_plan(info, context)
        # 2. Decode the needed plate frames in a few streamed reads, framing each on arrival.
        wanted = np.unique(indices)
        breaks = np.nonzero(np.diff(wanted) > MAX_GAP)[0] + 1
        for group in np.split(wanted, breaks):
            first, last = int(group[0]), int(group[-1])
            needed = set(group.tolist())
            for index, frame in zip(range(first, last + 1), read_frames(info, first, last), strict=True):
                if index not in needed:
                    continue
                places = np.nonzero(indices == index)[0]
                apply_static(to_float(frame), plan, out[places[0]])
                out[places[1:]] = out[places[0]]
        return out

    def plate_frames(self, info: MediaInfo, context: BackgroundContext, offsets: np.ndarray) -> np.ndarray:
        """The plate frame (0-based, as ffmpeg decodes) shown at each shot offset."""
        plate = str(info.path)
        if self.start >= info.frame_count:
            raise EditRequestError(
                f"plate background param start ({self.start}) is beyond the plate, which has "
                f"{info.frame_count} frames (0..{info.frame_count - 1})",
                shot=context.shot,
                path=plate,
                param="start",
            )
        end = info.frame_count - 1 if self.end is None else self.end
        if end >= info.frame_count:
            raise EditRequestError(
                f"plate background param end ({end}) is beyond the plate, which has {info.frame_count} "
                f"frames (0..{info.frame_count - 1})",
                shot=context.shot,
                path=plate,
                param="end",
            )
        length = end - self.start + 1
        if self.loop == "error":
            needed = (
                int(shot_steps(np.array([max(context.frame_count - 1, 0)]), self.retime, info.rate, context.rate)[0])
                + 1
            )
            if needed > length:
                raise EditRequestError(
                    f"plate background: the shot needs {needed} plate frames from frame {self.start} "
                    f"({context.frame_count} shot frames, retime {self.retime}) but frames {self.start}..{end} "
                    f"are only {length}; use loop loop|pingpong|hold, or a longer plate",
                    shot=context.shot,
                    path=plate,
                    param="loop",
                )
        steps = shot_steps(offsets, self.retime, Fraction(info.rate), Fraction(context.rate))
        return self.start + loop_steps(steps, length, self.loop)

    def _probe(self, context: BackgroundContext) -> MediaInfo:
        path = resolve_file(self.name, "video", self.video, context.base_dir, context.shot)
        try:
            return probe(path)
        except MediaError as exc:
            raise EditRequestError(
                f"plate background param video cannot be read as video: {exc.message}",
                shot=context.shot,
                path=path,
                param="video",
            ) from exc

    def _static_plan(self, info: MediaInfo, context: BackgroundContext) -> StaticPlan:
        key = (info.width, info.height, context.width, context.height)
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, static_plan(self.framing, info.width, info.height, context.width, context.height))
        return self._plan[1]
