"""Read an editor's cut and turn every clip marked for editing into a `Shot`.

A cut arrives as OTIO or as anything an OTIO adapter reads (EDL, FCP 7 XML, FCPX XML, AAF).
Each video clip that carries an edit request (DESIGN section 4) becomes a shot addressed by a
`key` such as ``"V1/3"``: the key is computed from the clip's position in the cut, so `conform`
finds the same clip again in the same file without any id the NLE would have to keep.

Frame numbers are *source frames* (0-based, as ffmpeg decodes the media file). OTIO stores
rates as floats (23.976, 23.98, 29.97 ...), so every conversion snaps the rate to the exact
NTSC fraction first and rounds once, at the end, to the nearest frame.

A clip that cannot become a shot (missing media, frames outside the file, malformed request)
is reported as a `ShotProblem`; the other shots still come back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import opentimelineio as otio
from opentimelineio.opentime import RationalTime, TimeRange

from studio_nova.config import Settings
from studio_nova.cut.background_request import DEFAULT_INSTRUCTION, BackgroundRequest
from studio_nova.cut.naming import clip_label, clip_name
from studio_nova.cut.paths import _param_paths, path_refusal, resolve_media
from studio_nova.errors import (
    EditRequestError,
    MediaError,
    MediaRangeError,
    StudioNovaError,
    TimelineError,
)
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.media.timecode import snap_rate
from studio_nova.media.vfr import apply_vfr_policy

log = logging.getLogger(__name__)

#: Suffix → OTIO adapter. EDLs carry no frame rate, see `read_timeline`.
ADAPTERS: dict[str, str] = {
    ".otio": "otio_json",
    ".edl": "cmx_3600",
    ".xml": "fcp_xml",
    ".fcpxml": "fcpx_xml",
    ".aaf": "AAF",
}
DEFAULT_EDL_RATE = 24
MARKER_PREFIX = "NOVA:"
_EDIT_KEYS = frozenset({"instruction", "editor", "params", "seed", "kind", "background", "matte", "composite"})
_NO_REQUEST = (
    "no clip carries an edit request: add clip metadata studio_nova.edit "
    "or a marker named 'NOVA: …'"
)


# ----------------------------------------------------------------------------- reading the cut


def read_timeline(
    path: str | os.PathLike[str], *, edl_rate: float | Fraction = DEFAULT_EDL_RATE
) -> otio.schema.Timeline:
    """Read a cut with the adapter its suffix names.

    An EDL has no frame rate of its own, so the CMX 3600 adapter is told `edl_rate`
    (default 24 fps); pass the project's rate for 23.976 / 25 / 29.97 cuts or every timecode
    lands on the wrong frame.
    """
    path = Path(path)
    adapter = ADAPTERS.get(path.suffix.lower())
    if adapter is None:
        raise TimelineError(
            f"unknown timeline format {path.suffix!r}; use one of {', '.join(sorted(ADAPTERS))}",
            path=path,
        )
    if not path.is_file():
        raise TimelineError("timeline file not found", path=path)
    options: dict[str, Any] = {}
    if adapter == "cmx_3600":
        if edl_rate == DEFAULT_EDL_RATE:
            log.warning("%s: EDLs carry no frame rate; reading it at %s fps", path, edl_rate)
        options["rate"] = float(edl_rate)
    try:
        result = otio.adapters.read_from_file(str(path), adapter_name=adapter, **options)
    except Exception as exc:  # adapters raise anything from ParseError to KeyError on bad input
        hint = f" (read at {edl_rate} fps: is that the cut's rate?)" if adapter == "cmx_3600" else ""
        raise TimelineError(
            f"cannot read as {adapter}: {type(exc).__name__}: {exc}{hint}", path=path
        ) from exc
    return _single_timeline(result, path)


def _single_timeline(result: Any, path: Path) -> otio.schema.Timeline:
    """Adapters may return a collection (an XML with several sequences); we need exactly one."""
    if isinstance(result, otio.schema.Timeline):
        return result
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = [t for t in result.find_children(descended_from_type=otio.schema.Timeline)]
        if len(timelines) == 1:
            return timelines[0]
        raise TimelineError(
            f"the file holds {len(timelines)} timelines; export exactly one sequence", path=path
        )
    raise TimelineError(f"the file holds a {type(result).__name__}, not a timeline", path=path)


def iter_video_clips(timeline: otio.schema.Timeline) -> Iterator[tuple[str, otio.schema.Clip]]:
    """Every enabled clip on enabled video tracks, with the key that addresses it in the cut.

    Keys are ``V<n>/<i>``: the n-th video track (1-based, audio tracks not counted, like an NLE
    labels them) and the item's index in that track (0-based, gaps and transitions counted, so
    the index is its position in the file). A clip inside a nested stack continues the path:
    ``V1/3/V2/0``. Audio tracks, gaps and transitions are skipped.
    """
    yield from _walk_stack(timeline.tracks, "")


def _walk_stack(stack: otio.schema.Stack, prefix: str) -> Iterator[tuple[str, otio.schema.Clip]]:
    video = 0
    for index, child in enumerate(stack):
        if isinstance(child, otio.schema.Track):
            if child.kind != otio.schema.TrackKind.Video:
                continue
            video += 1
            if child.enabled:
                yield from _walk_track(child, f"{prefix}V{video}")
        elif prefix and child.enabled:
            # A bare item directly in a nested stack sits inside a video track already.
            yield from _walk_item(child, f"{prefix}{index}")


def _walk_track(track: otio.schema.Track, key: str) -> Iterator[tuple[str, otio.schema.Clip]]:
    for index, item in enumerate(track):
        if isinstance(item, otio.schema.Transition) or not item.enabled:
            continue
        yield from _walk_item(item, f"{key}/{index}")


def _walk_item(item: Any, key: str) -> Iterator[tuple[str, otio.schema.Clip]]:
    if isinstance(item, otio.schema.Clip):
        yield key, item
    elif isinstance(item, otio.schema.Stack):
        yield from _walk_stack(item, f"{key}/")
    elif isinstance(item, otio.schema.Track):
        yield from _walk_track(item, key)


# ---------------------------------------------------------------------------------- edit requests


@dataclass(frozen=True)
class EditRequest:
    """What to do to one shot: the instruction and the editor that carries it out."""

    instruction: str
    editor: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    seed: int = 0
    kind: str = "edit"  # "edit" (keyframe editor + propagation) | "background" (replacement)

    def fingerprint(self) -> str:
        """Same request → same hash, whatever the key order, so reruns can skip done work."""
        payload = {
            "instruction": self.instruction,
            "editor": self.editor,
            "params": self.params,
            "seed": self.seed,
        }
        if self.kind != "edit":  # requests made before kinds existed keep their hash
            payload["kind"] = self.kind
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def edit_request_of(clip: otio.schema.Clip, settings: Settings) -> EditRequest | None:
    """The clip's edit request, or None when it carries none.

    Clip metadata ``studio_nova.edit`` wins over a ``NOVA:`` marker because it is the more
    explicit of the two. The marker prefix is matched case-insensitively because EDLs store
    marker names in upper case.
    """
    return _edit_request(clip, settings, key=None)


def _edit_request(
    clip: otio.schema.Clip, settings: Settings, key: str | None, base_dir: Path | None = None
) -> EditRequest | None:
    ours = clip.metadata.get("studio_nova")
    if ours is not None and not isinstance(ours, Mapping):
        raise _bad_request(clip, key, f"metadata studio_nova must be a dict, got {ours!r}")
    if ours is not None and "edit" in ours:
        return _request_from_metadata(clip, _plain(ours["edit"]), settings, key, base_dir)
    instructions = []
    for marker in clip.markers:
        name = marker.name or ""
        if name[: len(MARKER_PREFIX)].upper() == MARKER_PREFIX:
            instructions.append(name[len(MARKER_PREFIX) :].strip())
    if not instructions:
        return None
    if len(set(instructions)) > 1:
        raise _bad_request(clip, key, f"several different NOVA: markers {instructions}; keep one")
    if not instructions[0]:
        raise _bad_request(clip, key, "the NOVA: marker has no instruction after 'NOVA:'")
    return EditRequest(
        instruction=instructions[0],
        editor=settings.default_editor,
        params=dict(settings.default_params),
        seed=settings.default_seed,
    )


def _request_from_metadata(
    clip: otio.schema.Clip, edit: Any, settings: Settings, key: str | None, base_dir: Path | None = None
) -> EditRequest:
    if not isinstance(edit, dict):
        raise _bad_request(clip, key, f"metadata studio_nova.edit must be a dict, got {edit!r}")
    unknown = sorted(set(edit) - _EDIT_KEYS)
    if unknown:
        raise _bad_request(
            clip, key, f"unknown keys {unknown} in studio_nova.edit; allowed: {sorted(_EDIT_KEYS)}"
        )
    kind = edit.get("kind", "edit")
    if kind not in ("edit", "background"):
        raise _bad_request(clip, key, f"studio_nova.edit.kind must be 'edit' or 'background', got {kind!r}")
    if kind == "background":
        return _background_request(clip, edit, settings, key, base_dir)
    stray = sorted({"background", "matte", "composite"} & set(edit))
    if stray:
        raise _bad_request(clip, key, f"{stray} belong to a background replacement: add \"kind\": \"background\"")
    instruction = edit.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise _bad_request(
            clip, key, f"studio_nova.edit.instruction must be a non-empty string, got {instruction!r}"
        )
    editor = edit.get("editor", settings.default_editor)
    if not isinstance(editor, str) or not editor:
        raise _bad_request(clip, key, f"studio_nova.edit.editor must be a plugin name, got {editor!r}")
    params = edit.get("params", settings.default_params)
    if not isinstance(params, dict):
        raise _bad_request(clip, key, f"studio_nova.edit.params must be a dict, got {params!r}")
    seed = edit.get("seed", settings.default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _bad_request(clip, key, f"studio_nova.edit.seed must be an integer, got {seed!r}")
    return EditRequest(instruction=instruction.strip(), editor=editor, params=dict(params), seed=seed)


def _background_request(
    clip: otio.schema.Clip, edit: dict, settings: Settings, key: str | None, base_dir: Path | None
) -> EditRequest:
    """A background replacement: its background / matte / composite entries become the params of
    the `background` editor, with relative paths resolved against the timeline's folder."""
    if "params" in edit:
        raise _bad_request(clip, key, "a background replacement takes background / matte / composite, not params")
    instruction = edit.get("instruction", DEFAULT_INSTRUCTION)
    if not isinstance(instruction, str) or not instruction.strip():
        raise _bad_request(clip, key, f"studio_nova.edit.instruction must be a non-empty string, got {instruction!r}")
    editor = edit.get("editor", "background")
    if not isinstance(editor, str) or not editor:
        raise _bad_request(clip, key, f"studio_nova.edit.editor must be a plugin name, got {editor!r}")
    seed = edit.get("seed", settings.default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _bad_request(clip, key, f"studio_nova.edit.seed must be an integer, got {seed!r}")
    try:
        request = BackgroundRequest.parse(edit, base_dir=base_dir)
    except ValueError as exc:
        raise _bad_request(clip, key, str(exc)) from None
    return EditRequest(
        instruction=instruction.strip(), editor=editor, params=request.to_params(), seed=seed, kind="background"
    )


def _bad_request(clip: otio.schema.Clip, key: str | None, reason: str) -> EditRequestError:
    extra = {"key": key} if key is not None else {}
    return EditRequestError(f"{clip_label(clip, key)}: {reason}", shot=clip_name(clip, key), **extra)


def _plain(value: Any) -> Any:
    """OTIO metadata (AnyDictionary / AnyVector) as plain dicts and lists, for JSON and equality."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


# -------------------------------------------------------------------------------------- shots


@dataclass(frozen=True)
class Shot:
    """One clip to edit, in source frames of its media file (DESIGN section 4).

    `record_in` is where the clip's first source frame sits on the timeline, in frames of
    `timeline_rate`, counted from the start of the cut (the timeline's start timecode is not
    added).
    """

    key: str
    name: str
    media: Path
    info: MediaInfo
    first_frame: int
    last_frame: int
    edit: EditRequest
    record_in: int
    timeline_rate: Fraction

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1


@dataclass(frozen=True)
class ShotProblem:
    """A clip that asked for an edit but could not become a shot, and why."""

    key: str
    name: str
    error: StudioNovaError


@dataclass(frozen=True)
class Cut:
    """The result of ingesting one timeline file."""

    path: Path
    name: str
    rate: Fraction
    shots: list[Shot]
    problems: list[ShotProblem]


def ingest(
    path: str | os.PathLike[str],
    settings: Settings,
    *,
    edl_rate: float | Fraction = DEFAULT_EDL_RATE,
) -> Cut:
    """Read the cut and return every clip marked for editing as a shot, failures as problems.

    Raises TimelineError when the file cannot be read or when no clip asks for an edit at all;
    everything that goes wrong with a single clip is a `ShotProblem` instead.
    """
    timeline_path = Path(os.path.abspath(path))
    timeline = read_timeline(timeline_path, edl_rate=edl_rate)
    rate = timeline_rate(timeline, default=edl_rate)
    probes: dict[Path, MediaInfo | MediaError] = {}
    shots: list[Shot] = []
    problems: list[ShotProblem] = []
    requested = 0
    for key, clip in iter_video_clips(timeline):
        try:
            edit = _edit_request(clip, settings, key, timeline_path.parent)
            if edit is None:
                continue
            requested += 1
            shots.append(_shot_of(key, clip, edit, timeline, timeline_path.parent, rate, probes, settings))
        except StudioNovaError as err:
            requested += isinstance(err, EditRequestError)
            problems.append(ShotProblem(key=key, name=clip_name(clip, key), error=err))
    if requested == 0:
        raise TimelineError(_NO_REQUEST, path=timeline_path)
    name = timeline.name if (timeline.name or "").strip() else timeline_path.stem
    return Cut(path=timeline_path, name=name, rate=rate, shots=shots, problems=problems)


def check_timeline(
    path: str | os.PathLike[str], settings: Settings, *, edl_rate: float | Fraction = DEFAULT_EDL_RATE
) -> Path:
    """What `ingest` would refuse the whole cut for, found without opening any media: the file
    exists, reads as a timeline, and some clip asks for an edit. A run calls this before it
    creates its output folder, so a wrong path leaves nothing behind. Returns the absolute path;
    raises TimelineError naming the file."""
    timeline_path = Path(os.path.abspath(path))
    timeline = read_timeline(timeline_path, edl_rate=edl_rate)
    for key, clip in iter_video_clips(timeline):
        try:
            if _edit_request(clip, settings, key, timeline_path.parent) is not None:
                return timeline_path
        except EditRequestError:  # a malformed request is still a request: that clip's problem
            return timeline_path
    raise TimelineError(_NO_REQUEST, path=timeline_path)


def timeline_rate(timeline: otio.schema.Timeline, *, default: float | Fraction = 24) -> Fraction:
    """The cut's record rate: its start timecode's rate, else its first video track's."""
    if timeline.global_start_time is not None:
        return snap_rate(timeline.global_start_time.rate)
    for track in timeline.video_tracks():
        if len(track):
            return snap_rate(track.duration().rate)
    return snap_rate(default)


def _shot_of(
    key: str,
    clip: otio.schema.Clip,
    edit: EditRequest,
    timeline: otio.schema.Timeline,
    base: Path,
    rate: Fraction,
    probes: dict[Path, MediaInfo | MediaError],
    settings: Settings,
) -> Shot:
    roots = settings.media_roots
    _refuse_time_effects(key, clip)
    media = resolve_media(clip, base, key=key)
    # Nothing the clip names is opened before it passed: not its media, not a plate in its request.
    url = clip.media_reference.target_url
    why = path_refusal(media, roots, file=True, named=url)
    if why is not None:
        raise MediaError(
            f"{clip_label(clip, key)}: its media {why}",
            shot=clip_name(clip, key),
            path=media,
            key=key,
            url=url,
        )
    for where, text in _param_paths(edit.params):
        named = Path(text).expanduser().absolute()
        why = path_refusal(named, roots, named=text)
        if why is not None:
            raise EditRequestError(
                f"{clip_label(clip, key)}: params {where}: {why}",
                shot=clip_name(clip, key),
                path=named,
                key=key,
            )
    info = _probe_once(media, probes, clip, key)
    # Variable frame rate: refused, or numbered at the cut's rate by its timestamps (`media.vfr`),
    # before any frame number is worked out; the shot keeps that view.
    try:
        info = apply_vfr_policy(info, settings.vfr, rate)
    except MediaError as err:
        raise type(err)(
            f"{clip_label(clip, key)}: its media {err.message}",
            shot=clip_name(clip, key),
            path=err.path or media,
            **{**err.details, "key": key},
        ) from err
    first, last = source_frames(clip, info, key=key)
    record = clip.transformed_time(clip.trimmed_range().start_time, timeline.tracks)
    return Shot(
        key=key,
        name=clip_name(clip, key),
        media=media,
        info=info,
        first_frame=first,
        last_frame=last,
        edit=edit,
        record_in=to_frames(record, rate),
        timeline_rate=rate,
    )


def _refuse_time_effects(key: str, clip: otio.schema.Clip) -> None:
    """A retimed clip's frames are not its source frames; rendering it would drift."""
    for effect in clip.effects:
        if isinstance(effect, otio.schema.TimeEffect):
            raise TimelineError(
                f"{clip_label(clip, key)} has a {type(effect).__name__} speed effect; edited clips "
                "must play at 100%: render the retime first or move the edit request",
                shot=clip_name(clip, key),
                key=key,
            )


def _probe_once(
    media: Path, probes: dict[Path, MediaInfo | MediaError], clip: otio.schema.Clip, key: str
) -> MediaInfo:
    """Probe each file once per cut; errors are re-raised naming the clip that needs the file."""
    if media not in probes:
        try:
            probes[media] = probe(media)
        except MediaError as err:
            probes[media] = err
    found = probes[media]
    if isinstance(found, MediaError):
        raise type(found)(
            f"{clip_label(clip, key)}: {found.message}",
            shot=clip_name(clip, key),
            path=found.path or media,
            **{**found.details, "key": key},
        ) from found
    return found


# ---------------------------------------------------------------------------- media and frames


#: Folders of the operating system, never footage: refused even when no media roots are set, so a
#: cut naming `/etc/shadow` (or `footage/../../etc/shadow`) gets a clear refusal, not an ffmpeg run.
def to_frames(time: RationalTime, rate: Fraction) -> int:
    """`time` as a whole number of frames at `rate`, exact for NTSC rates stored as floats."""
    return round_frames(Fraction(time.value) * Fraction(rate) / snap_rate(time.rate))


def round_frames(value: Fraction) -> int:
    """Half-up rounding: deterministic, unlike round()'s half-to-even."""
    return math.floor(value + Fraction(1, 2))


def seconds(time: RationalTime) -> Fraction:
    """`time` in exact seconds, its float rate snapped (23.976 → 24000/1001)."""
    return Fraction(time.value) / snap_rate(time.rate)


def source_frames(
    clip: otio.schema.Clip, info: MediaInfo, *, key: str | None = None
) -> tuple[int, int]:
    """First and last source frame (inclusive) the clip uses, checked against the file.

    first = source_range.start − available_range.start (DESIGN section 4); without an
    available_range the media's embedded start timecode stands in for it.
    """
    used = _used_range(clip, info)
    available = clip.media_reference.available_range if clip.media_reference else None
    rate = info.rate
    if available is not None:
        offset = (seconds(used.start_time) - seconds(available.start_time)) * rate
        first = round_frames(offset)
    else:
        first = to_frames(used.start_time, rate) - info.start_frame
    count = to_frames(used.duration, rate)
    last = first + count - 1
    if count < 1 or first < 0 or last >= info.frame_count:
        extra = {"key": key} if key is not None else {}
        raise MediaRangeError(
            f"{clip_label(clip, key)} asks for source frames {first}–{last} ({count} frames) but "
            f"{info.path.name} has frames 0–{info.frame_count - 1} at {info.rate} fps"
            + (f" (start timecode {info.timecode})" if info.timecode else "")
            + (
                ": it is a still image (one frame), not a movie; make a movie of the clip's length "
                "from it, or put it behind the subject as a `still` background"
                if info.is_image
                else ": check the clip's source range against its media"
            ),
            shot=clip_name(clip, key),
            path=info.path,
            requested=[first, last],
            available=[0, info.frame_count - 1],
            **extra,
        )
    return first, last


def _used_range(clip: otio.schema.Clip, info: MediaInfo) -> TimeRange:
    """The clip's source range; a clip without one uses its whole media."""
    if clip.source_range is not None:
        return clip.source_range
    ref = clip.media_reference
    if ref is not None and ref.available_range is not None:
        return ref.available_range
    rate = float(info.rate)
    return TimeRange(RationalTime(info.start_frame, rate), RationalTime(info.frame_count, rate))
