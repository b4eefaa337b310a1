"""Keyframes of a shot: the originals decoded from the media, edited by the shot's editor plugin,
written and recorded as one version.

Memory does not grow with the shot's length. The originals are decoded in one streaming pass and
edited in batches of consecutive keyframes spanning at most one chunk (`Settings.chunk_length`
frames), each batch written before the next is decoded; at render time `approved_keyframes` is a
mapping that reads each keyframe from its files when it is asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from fractions import Fraction
from itertools import islice
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
) -> Iterator[Keyframe]:
    """Decode a shot's keyframes in one streaming pass over its range, one at a time (decoding
    goes only as far as the caller reads). `info` is the media as the shot numbers its frames (a
    variable-frame-rate file's constant-rate view, `media_view`); default: the file as probed now."""
    info = probe(media) if info is None else info
    wanted = plan_keyframes(first, last, interval=interval)
    return _decode_keyframes(info, first, wanted)


def _decode_keyframes(info: MediaInfo, first: int, wanted: Sequence[int]) -> Iterator[Keyframe]:
    targets = set(wanted)
    for offset, frame in enumerate(read_frames(info, first, wanted[-1])):
        if first + offset in targets:
            yield Keyframe(source_frame=first + offset, image=to_float(frame))


def keyframe_batches(frames: Sequence[int], span: int) -> list[list[int]]:
    """`frames` (ascending) cut into runs of consecutive keyframes that lie within `span` frames
    of their run's first: what one editor call gets (`span` is a chunk's length)."""
    if span < 1:
        raise ValueError(f"span must be at least 1 frame, got {span}")
    batches: list[list[int]] = []
    for frame in frames:
        if batches and frame - batches[-1][0] < span:
            batches[-1].append(frame)
        else:
            batches.append([frame])
    return batches


def media_view(media: Path, rate: Fraction, settings: Settings, *, shot: str | None = None) -> MediaInfo:
    """The shot's media as ingest numbered its frames: probed, and a variable-frame-rate file
    refused or conformed to the shot's `rate` by the `vfr` setting (`media.vfr`)."""
    try:
        return apply_vfr_policy(probe(media), settings.vfr, rate)
    except MediaError as err:
        raise type(err)(err.message, shot=shot, path=err.path or media, **err.details) from err


def edit_keyframes(ws: Workspace, shot_id: int) -> ShotRecord:
    """Have the shot's editor make a new keyframe version and send it to review.

    The editor is called once per batch of consecutive keyframes (`keyframe_batches`: at most a
    chunk's length of source frames each), so memory holds one batch, not the shot. Batches after
    the first get the first edited keyframe as `EditContext.reference` (when the request gives
    none), which is what a consistent editor does with it within one call (docs/editors.md); the
    version's `info` is the first batch's, with what later batches add to its dict entries (e.g.
    `artist`'s per-file hashes)."""
    shot = ws.store.shot(shot_id)
    edit = effective_edit(ws, shot)
    try:
        editor = load_editor(edit["editor"], ws.settings)
    except PluginError as err:  # say whose editor it is: the batch reports it per shot
        raise PluginError(
            f"clip {shot.name!r} ({shot.key}): {err.message}", shot=shot.name, key=shot.key, **err.details
        ) from err
    info = media_view(Path(shot.media), shot.rate, ws.settings, shot=shot.name)
    wanted = plan_keyframes(shot.first_frame, shot.last_frame, interval=ws.settings.keyframe_interval)
    batches = keyframe_batches(wanted, ws.settings.chunk_length)
    previous = ws.store.keyframes(shot.id)
    version = (max(k.version for k in previous) + 1) if previous else 1
    folder = ws.keyframe_dir(shot, version)
    source = ShotSource(Path(shot.media), shot.first_frame, shot.last_frame, ws.generated_dir(shot), shot.rate)
    files: list[KeyframeFile] = []
    recorded: dict[str, Any] | None = None
    reference: Any = None  # the first edited keyframe, for the batches after the first
    with closing(_decode_keyframes(info, shot.first_frame, wanted)) as originals:
        for frames in batches:
            batch = list(islice(originals, len(frames)))
            result = editor.edit(
                EditContext(
                    shot=shot.name,
                    keyframes=batch,
                    instruction=edit.get("instruction", ""),
                    params=edit.get("params") or {},
                    seed=int(edit.get("seed") or 0),
                    reference=reference,
                    source=source,
                    settings=ws.settings,
                )
            )
            _check_edit_result(result, batch, shot.name, edit["editor"])
            if reference is None:
                reference = result.keyframes[0].image
            recorded = _jsonable(result.info) if recorded is None else _merge_info(recorded, _jsonable(result.info))
            files.extend(_write_batch(folder, batch, result.keyframes, shot.bit_depth))
            del batch, result
    ws.store.add_keyframe_version(
        shot.id,
        editor=edit["editor"],
        seed=int(edit.get("seed") or 0),
        instruction=edit.get("instruction", ""),
        info=recorded or {},
        frames=files,
    )
    ws.store.set_status(shot.id, "keyframes_ready")
    ws.store.set_status(shot.id, "in_review")
    return ws.store.shot(shot.id)


def _write_batch(
    folder: Path, originals: Sequence[Keyframe], edited: Sequence[EditedKeyframe], bit_depth: int
) -> list[KeyframeFile]:
    files = []
    for original, result in zip(originals, edited):
        name = keyframe_filename(original.source_frame)
        paths = (folder / "original" / name, folder / "edited" / name, folder / "mask" / name)
        write_png(paths[0], original.image, bit_depth, overwrite=True)
        write_png(paths[1], result.image, bit_depth, overwrite=True)
        write_mask_png(paths[2], result.mask, overwrite=True)
        files.append(KeyframeFile(original.source_frame, str(paths[0]), str(paths[1]), str(paths[2])))
    return files


def _merge_info(first: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """One version's `info` from its batches': the first batch's values stand; a dict entry gains
    the keys a later batch adds (per-keyframe figures such as `artist`'s file hashes)."""
    merged = dict(first)
    for key, value in later.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = _merge_info(merged[key], value)
        elif merged[key] != value:
            log.debug("editor info %r differs between keyframe batches (%r, then %r): the first is kept",
                      key, merged[key], value)
    return merged


def _check_edit_result(result: EditResult, originals: Sequence[Keyframe], shot: str, editor: str) -> None:
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


class ApprovedKeyframes(Mapping[int, EditedKeyframe]):
    """A keyframe version by source frame: the keys (source frames) are held, each keyframe is
    read from its edited image and mask files when it is looked up, and nothing is kept, so a
    render holds only the keyframes of the chunk it is working on."""

    def __init__(self, records: Sequence[Any]) -> None:
        self._paths = {int(k.source_frame): (str(k.edited_path), str(k.mask_path)) for k in records}

    def __getitem__(self, frame: int) -> EditedKeyframe:
        edited, mask = self._paths[frame]
        return EditedKeyframe(frame, read_png(Path(edited)), read_mask_png(Path(mask)))

    def __contains__(self, frame: object) -> bool:  # without reading the files
        return frame in self._paths

    def __iter__(self) -> Iterator[int]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"ApprovedKeyframes({len(self)} keyframes: {list(self._paths)[:3]}…)"


def approved_keyframes(ws: Workspace, shot: ShotRecord) -> Mapping[int, EditedKeyframe]:
    """The shot's keyframes (its latest version) for rendering, read from their files on access."""
    return ApprovedKeyframes(ws.store.keyframes(shot.id))
