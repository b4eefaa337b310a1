"""The `background` editor: keyframes of a background replacement, for review.

Each keyframe is the source frame's subject composited over the new background's frame for the
same moment (edge unmixing, spill suppression, light wrap: `studio_nova.media.compositing`), exactly as
the render will make every other frame, so what a reviewer approves is what the shot becomes.
Its params are those of the edit request (`studio_nova.render.background`): the pipeline fills
them from a clip's ``"kind": "background"`` request. The edit mask of a keyframe is how much of
each pixel is not the source's (≈ 1 − matte).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from studio_nova.cut.background_request import BackgroundRequest
from studio_nova.errors import KeyframeError, PluginError
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import from_float
from studio_nova.media.probe import probe
from studio_nova.media.vfr import apply_vfr_policy
from studio_nova.plugin_api.editing import EditContext, EditedKeyframe, EditResult
from studio_nova.plugin_api.registry import BACKGROUNDS, MATTES, load_plugin
from studio_nova.render.background import BackgroundReplacement


class BackgroundEditor:
    """Background replacement: the subject over a new, moving background, fused along a matte.

    The pipeline calls `edit` once per batch of consecutive keyframes. With a matte source that
    tracks in order (`sequential`), the tracking runs over the shot from its first frame on a
    fixed grid of runs, and this instance keeps it where it stopped (the matte source's state and
    the last run's frames), so the next batch continues it: a shot is tracked once, and the
    keyframes are the same however they are batched. A batch that starts before where the
    tracking stands (another request, or the same again) starts it over.
    """

    name = "background"

    def __init__(self) -> None:
        self._tracking: _Tracking | None = None

    @staticmethod
    def check_params(params: Mapping[str, Any], *, instruction: str = "", settings: Any = None, **_: Any) -> None:
        """Refuse a request `edit` would refuse: the request itself, and the matte and background
        sources it names (installed, and built from their params as a render builds them; that
        looks at files only, e.g. that a plate exists)."""
        request = BackgroundRequest.from_params(params)
        load_plugin(MATTES, request.matte, **request.matte_params)
        load_plugin(BACKGROUNDS, request.background, **request.background_params)

    def edit(self, context: EditContext) -> EditResult:
        if context.source is None:
            raise PluginError(
                "the background editor needs the shot's media (EditContext.source); the pipeline "
                "sets it, a direct caller must too", shot=context.shot,
            )
        request = BackgroundRequest.from_params(context.params)
        region = None
        if context.region is not None:
            region = np.clip(np.asarray(context.region, np.float32), 0.0, 1.0)
            size = np.shape(context.keyframes[0].image)[:2] if context.keyframes else region.shape
            if region.shape != tuple(size):
                raise KeyframeError(f"the region is {region.shape}, the keyframes {tuple(size)}", shot=context.shot)
        media = probe(Path(context.source.media))
        if context.source.rate is not None:  # a variable-rate source, numbered as ingest numbered it
            media = apply_vfr_policy(media, context.settings.vfr, context.source.rate)
        replacement = BackgroundReplacement(
            request,
            shot=context.shot,
            media=media,
            first_frame=context.source.first_frame,
            last_frame=context.source.last_frame,
            seed=context.seed,
            instruction=context.instruction,
            cache_dir=context.source.work_dir,
            settings=context.settings,
        )
        if replacement.sequential:
            key = _tracking_key(request, media, context)
            frames = [k.source_frame for k in context.keyframes]
            tracking = self._tracking
            if tracking is None or tracking.key != key or (frames and not tracking.can_reach(frames[0])):
                tracking = self._tracking = _Tracking(key, replacement, media)
            fused_frames = (tracking.fused(f) for f in frames)
        else:
            fused_frames = _fused_keyframes(replacement, media, context)
        edited = []
        for keyframe, fused in zip(context.keyframes, fused_frames):
            image, mask = fused
            if region is not None:  # confine the replacement: outside the region, the original
                original = np.asarray(keyframe.image, np.float32)
                image = np.where((region > 0)[..., None], region[..., None] * image + (1 - region[..., None]) * original, original)
                mask = np.where(region > 0, mask * region, 0.0)
                differs = np.any(image != original, axis=-1)
                mask = np.where(differs, np.maximum(mask, 1.0 / 255.0), mask)
            edited.append(EditedKeyframe(keyframe.source_frame, image.astype(np.float32), mask.astype(np.float32)))
        params = request.to_params()
        info = {
            "editor": self.name,
            "kind": "background",
            "seed": context.seed,
            "model": _model_name(replacement.background_source),
            "settings": {k: params[k] for k in ("matte", "background", "composite")},
        }
        return EditResult(keyframes=edited, info=info)


def _fused_keyframes(replacement: BackgroundReplacement, media, context: EditContext):
    """(image, changed) of each keyframe, for a matte source that sees each keyframe alone."""
    # The keyframes are the decoded originals already (float of the source's integers, so the
    # round trip is exact): no second decode of each one.
    for keyframe in context.keyframes:
        original = from_float(np.asarray(keyframe.image, np.float32), np.dtype(media.dtype_name))
        fused = replacement.fuse(original[None], keyframe.source_frame)
        yield fused.images[0], fused.changed[0]


_RUN = 32  # frames per run of a sequential matte source


def _tracking_key(request: BackgroundRequest, media, context: EditContext) -> str:
    """What decides a sequential tracking's frames: a batch continues a tracking of the same."""
    source = context.source
    return json.dumps(
        [context.shot, str(media.path), source.first_frame, source.last_frame, str(source.work_dir),
         str(source.rate), context.seed, context.instruction, request.to_params()],
        sort_keys=True, default=str,
    )


class _Tracking:
    """A sequential matte source run over the shot in order, in overlapping runs of `_RUN` frames
    on a grid fixed from the shot's first frame (each run starts on the previous run's last frame,
    which carries the tracker's mask). Holds the last run's fused frames only."""

    def __init__(self, key: str, replacement: BackgroundReplacement, media) -> None:
        self.key, self.replacement, self.media = key, replacement, media
        self.last = replacement.last_frame
        self.next_start = replacement.first_frame
        self.run_start: int | None = None
        self.run_end = replacement.first_frame - 1
        self.run = None

    def can_reach(self, frame: int) -> bool:
        """Whether `frame` is not behind the run held (the tracking only goes forward)."""
        return self.run_start is None or frame >= self.run_start

    def fused(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.replacement.first_frame <= frame <= self.last:
            raise KeyframeError(
                f"keyframe {frame} is outside the shot ({self.replacement.first_frame}..{self.last})",
                shot=self.replacement.shot, frame=frame,
            )
        if not self.can_reach(frame):
            raise KeyframeError("keyframes must come in source-frame order", shot=self.replacement.shot, frame=frame)
        # A frame shared by two runs is taken from the later one (it starts from the carried mask).
        while self.run is None or frame > self.run_end or (frame == self.run_end and self.run_end < self.last):
            start = self.next_start
            end = min(self.last, start + _RUN - 1)
            self.run = None  # let the last run go before the next is made
            self.run = self.replacement.fuse(np.stack(list(read_frames(self.media, start, end))), start)
            self.run_start, self.run_end = start, end
            self.next_start = end if end < self.last else end + 1
        return self.run.images[frame - self.run_start], self.run.changed[frame - self.run_start]


def _model_name(source: object) -> str | None:
    """The model a background source used (a generator's), as the editor contract records it."""
    model = getattr(source, "model", None)
    return None if model is None else str(model)
