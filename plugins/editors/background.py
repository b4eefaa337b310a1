"""The `background` editor: keyframes of a background replacement, for review.

Each keyframe is the source frame's subject composited over the new background's frame for the
same moment (edge unmixing, spill suppression, light wrap: `studio_nova.media.compositing`), exactly as
the render will make every other frame, so what a reviewer approves is what the shot becomes.
Its params are those of the edit request (`studio_nova.render.background`): the pipeline fills
them from a clip's ``"kind": "background"`` request. The edit mask of a keyframe is how much of
each pixel is not the source's (≈ 1 − matte).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

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
    """Background replacement: the subject over a new, moving background, fused along a matte."""

    name = "background"

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
        edited = []
        for keyframe, fused in zip(context.keyframes, _fused_keyframes(replacement, media, context)):
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
    """(image, changed) of each keyframe. A matte source that tracks through the shot in order
    (`sequential`) is run over every frame up to the last keyframe, in overlapping runs; any
    other sees each keyframe alone."""
    frames = [k.source_frame for k in context.keyframes]
    if not replacement.sequential:
        # The keyframes are the decoded originals already (float of the source's integers, so
        # the round trip is exact): no second decode of each one.
        for keyframe in context.keyframes:
            original = from_float(np.asarray(keyframe.image, np.float32), np.dtype(media.dtype_name))
            fused = replacement.fuse(original[None], keyframe.source_frame)
            yield fused.images[0], fused.changed[0]
        return
    wanted, start, last = set(frames), replacement.first_frame, max(frames, default=replacement.first_frame)
    found: dict[int, tuple] = {}
    while start <= last:
        end = min(last, start + _RUN - 1)
        fused = replacement.fuse(np.stack(list(read_frames(media, start, end))), start)
        for f in wanted & set(range(start, end + 1)):
            found[f] = (fused.images[f - start], fused.changed[f - start])
        start = end if end < last else end + 1  # one frame of overlap carries the tracker's mask
    for f in frames:
        yield found[f]


_RUN = 32  # frames per run of a sequential matte source


def _model_name(source: object) -> str | None:
    """The model a background source used (a generator's), as the editor contract records it."""
    model = getattr(source, "model", None)
    return None if model is None else str(model)
