"""Keyframes of a shot: the originals decoded from the media, edited by the shot's editor plugin,
written and recorded as one version.
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

from studio_nova.config import Settings
from studio_nova.cut.plan import plan_keyframes
from studio_nova.errors import MediaError, PluginError
from studio_nova.media.decode import read_frames
from studio_nova.media.frames import to_float
from studio_nova.media.info import MediaInfo
from studio_nova.media.keyframe_files import (
    keyframe_filename,
    read_mask_png,
    read_png,
    write_mask_png,
    write_png,
)
from studio_nova.media.probe import probe
from studio_nova.media.vfr import apply_vfr_policy
from studio_nova.plugin_api.editing import (
    EditContext,
    EditedKeyframe,
    EditResult,
    Keyframe,
    ShotSource,
)
from studio_nova.plugin_api.registry import load_editor
from studio_nova.store import (
    KeyframeFile,
    ShotRecord,
)
from studio_nova.workflow.workspace import Workspace

log = logging.getLogger(__name__)


def effective_edit(ws: Workspace, shot: ShotRecord) -> dict[str, Any]:
    """The cut's edit request, with the instruction / seed of the latest rejection applied."""
    edit = dict(shot.edit)
    for review in ws.store.reviews(shot.id):
        if review.decision == "rejected":
            if review.new_instruction:
                edit["instruction"] = review.new_instruction
            if review.new_seed is not None:
                edit["seed"] = review.new_seed
    return edit


def original_keyframes(
    media: Path, first: int, last: int, interval: int, *, info: MediaInfo | None = None
) -> list[Keyframe]:
    """Decode a shot's keyframes in one streaming pass over its range. `info` is the media as the
    shot numbers its frames (a variable-frame-rate file's constant-rate view, `media_view`);
    default: the file as probed now."""
    info = probe(media) if info is None else info
    wanted = set(plan_keyframes(first, last, interval=interval))
    out = []
    for offset, frame in enumerate(read_frames(info, first, last)):
        if first + offset in wanted:
            out.append(Keyframe(source_frame=first + offset, image=to_float(frame)))
    return out


def media_view(media: Path, rate: Fraction, settings: Settings, *, shot: str | None = None) -> MediaInfo:
    """The shot's media as ingest numbered its frames: probed, and a variable-frame-rate file
    refused or conformed to the shot's `rate` by the `vfr` setting (`media.vfr`)."""
    try:
        return apply_vfr_policy(probe(media), settings.vfr, rate)
    except MediaError as err:
        raise type(err)(err.message, shot=shot, path=err.path or media, **err.details) from err


def edit_keyframes(ws: Workspace, shot_id: int) -> ShotRecord:
    """Have the shot's editor make a new keyframe version and send it to review."""
    shot = ws.store.shot(shot_id)
    edit = effective_edit(ws, shot)
    try:
        editor = load_editor(edit["editor"], ws.settings)
    except PluginError as err:  # say whose editor it is: the batch reports it per shot
        raise PluginError(
            f"clip {shot.name!r} ({shot.key}): {err.message}", shot=shot.name, key=shot.key, **err.details
        ) from err
    originals = original_keyframes(
        Path(shot.media), shot.first_frame, shot.last_frame, ws.settings.keyframe_interval,
        info=media_view(Path(shot.media), shot.rate, ws.settings, shot=shot.name),
    )
    result = editor.edit(
        EditContext(
            shot=shot.name,
            keyframes=originals,
            instruction=edit.get("instruction", ""),
            params=edit.get("params") or {},
            seed=int(edit.get("seed") or 0),
            source=ShotSource(Path(shot.media), shot.first_frame, shot.last_frame, ws.generated_dir(shot), shot.rate),
            settings=ws.settings,
        )
    )
    _check_edit_result(result, originals, shot.name, edit["editor"])
    previous = ws.store.keyframes(shot.id)
    version = (max(k.version for k in previous) + 1) if previous else 1
    folder = ws.keyframe_dir(shot, version)
    files = []
    for original, edited in zip(originals, result.keyframes):
        name = keyframe_filename(original.source_frame)
        paths = (folder / "original" / name, folder / "edited" / name, folder / "mask" / name)
        write_png(paths[0], original.image, shot.bit_depth, overwrite=True)
        write_png(paths[1], edited.image, shot.bit_depth, overwrite=True)
        write_mask_png(paths[2], edited.mask, overwrite=True)
        files.append(KeyframeFile(original.source_frame, str(paths[0]), str(paths[1]), str(paths[2])))
    ws.store.add_keyframe_version(
        shot.id,
        editor=edit["editor"],
        seed=int(edit.get("seed") or 0),
        instruction=edit.get("instruction", ""),
        info=_jsonable(result.info),
        frames=files,
    )
    ws.store.set_status(shot.id, "keyframes_ready")
    ws.store.set_status(shot.id, "in_review")
    return ws.store.shot(shot.id)


def _check_edit_result(result: EditResult, originals: list[Keyframe], shot: str, editor: str) -> None:
    if not isinstance(result, EditResult) or len(result.keyframes) != len(originals):
        got = len(result.keyframes) if isinstance(result, EditResult) else type(result).__name__
        raise PluginError(f"editor {editor!r} returned {got} keyframes for {len(originals)}", shot=shot)
    for original, edited in zip(originals, result.keyframes):
        if edited.source_frame != original.source_frame:
            raise PluginError(
                f"editor {editor!r} returned frame {edited.source_frame} where {original.source_frame} was expected",
                shot=shot,
            )
        if edited.image.shape != original.image.shape or edited.mask.shape != original.image.shape[:2]:
            raise PluginError(
                f"editor {editor!r} returned image {edited.image.shape} / mask {edited.mask.shape} "
                f"for a keyframe of {original.image.shape}",
                shot=shot,
                frame=original.source_frame,
            )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def approved_keyframes(ws: Workspace, shot: ShotRecord) -> dict[int, EditedKeyframe]:
    return {
        k.source_frame: EditedKeyframe(k.source_frame, read_png(Path(k.edited_path)), read_mask_png(Path(k.mask_path)))
        for k in ws.store.keyframes(shot.id)
    }
