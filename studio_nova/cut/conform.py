"""Hand the cut back to the NLE with every rendered shot relinked to its render.

The conformed cut keeps the editor's timing exactly (DESIGN section 4): each edited clip keeps
its own `source_range` and points at its render through an `ExternalReference` whose
`available_range` *is* that source range, so the render's frame 0 lines up with the clip's first
frame. Nothing else in the cut is touched. Clips are found again by the keys `ingest` gave them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse
from xml.etree import ElementTree

import opentimelineio as otio
from opentimelineio.opentime import RationalTime, TimeRange

from studio_nova.atomic import publish, temp_sibling
from studio_nova.cut.ingest import (
    DEFAULT_EDL_RATE,
    iter_video_clips,
    read_timeline,
    round_frames,
    seconds,
    to_frames,
)
from studio_nova.cut.paths import path_of_url
from studio_nova.errors import ConformError, MediaError, StudioNovaError
from studio_nova.media.probe import probe
from studio_nova.media.timecode import snap_rate

#: Format (OTIO adapter name) → suffix of the file written next to the conformed OTIO.
FORMATS: dict[str, str] = {
    "fcp_xml": ".xml",
    "cmx_3600": ".edl",
    "fcpx_xml": ".fcpxml",
    "AAF": ".aaf",
}

#: Frame sizes and rates of Final Cut Pro's predefined formats (`FFVideoFormat1080p2398`);
#: any other combination is written as a custom format (frameDuration, width and height only).
_FCPX_SIZE_NAMES = {
    (1920, 1080): "1080",
    (1280, 720): "720",
    (2048, 1080): "2048x1080",
    (3840, 2160): "3840x2160",
    (4096, 2160): "4096x2160",
}
_FCPX_RATE_NAMES = {
    Fraction(24000, 1001): "2398",
    Fraction(24): "24",
    Fraction(25): "25",
    Fraction(30000, 1001): "2997",
    Fraction(30): "30",
    Fraction(50): "50",
    Fraction(60000, 1001): "5994",
    Fraction(60): "60",
}
#: The only rates at which otio-fcpx-xml-adapter 1.0 can place connected clips (tracks above the
#: first video track, audio tracks): while writing it reads their frame rate back as
#: int(1 / frameDuration), 23 for 23.976, and knows no frame duration for 48 or 100.
_FCPX_LANE_RATES = frozenset(Fraction(r) for r in (24, 25, 30, 50, 60))


@dataclass(frozen=True)
class RenderedShot:
    """A finished render of one shot: the master covers source frames first..last of the shot."""

    key: str
    path: Path
    version: int
    first_frame: int
    last_frame: int
    rate: Fraction
    qc: dict[str, Any] = field(default_factory=dict, hash=False)
    proxy: Path | None = None

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1


def conform(
    timeline_path: str | os.PathLike[str],
    renders: Mapping[str, RenderedShot],
    out_path: str | os.PathLike[str],
    formats: Sequence[str] = (),
    *,
    edl_rate: float | Fraction = DEFAULT_EDL_RATE,
) -> dict[str, Path]:
    """Write the conformed cut to `out_path` (OTIO) and, per format, a sibling file.

    Returns ``{"otio": out_path, <format>: path, ...}``. Every output is written to a temporary
    name first and renamed only when all of them succeeded, so a format an adapter cannot
    represent (an EDL of a multi-track cut) leaves nothing half-written behind.
    """
    # 1. Check inputs
    timeline_path = Path(os.path.abspath(timeline_path))
    out_path = Path(os.path.abspath(out_path))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConformError(
            f"unknown conform format(s) {unknown}; use any of {sorted(FORMATS)}", path=out_path
        )
    siblings = [out_path, *(out_path.with_suffix(FORMATS[f]) for f in formats)]
    if timeline_path in siblings:
        raise ConformError(
            "the conformed cut would overwrite the editor's cut; choose another output path",
            path=timeline_path,
        )
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConformError(f"cannot create the output folder: {exc}", path=out_path.parent) from exc

    # 2. Re-read the cut and relink every rendered clip
    timeline = read_timeline(timeline_path, edl_rate=edl_rate)
    clips = dict(iter_video_clips(timeline))
    problems: list[str] = []
    for key, render in renders.items():
        try:
            clip = clips.get(key)
            if clip is None:
                raise ConformError(
                    f"the cut has no video clip at {key!r}; was it changed since ingest?",
                    path=timeline_path,
                    key=key,
                )
            relink(clip, key, render, timeline_path.parent)
        except ConformError as err:
            problems.append(str(err))
    if problems:
        raise ConformError(
            f"{len(problems)} render(s) cannot be conformed:\n  " + "\n  ".join(problems),
            path=timeline_path,
            problems=problems,
        )

    if out_path.parent != timeline_path.parent:
        _anchor_relative_media(timeline, timeline_path.parent)

    # 3. Serialise every output, then move them all into place
    outputs: list[tuple[str, Path, Callable[[Path], None]]] = [
        ("otio", out_path, _writer(timeline, "otio_json", timeline_path.parent))
    ]
    for fmt in dict.fromkeys(formats):
        writer = _writer(timeline, fmt, timeline_path.parent)
        outputs.append((fmt, out_path.with_suffix(FORMATS[fmt]), writer))
    return _write_all(outputs)


def _anchor_relative_media(timeline: otio.schema.Timeline, base: Path) -> None:
    """Make media paths that are relative to the editor's cut absolute.

    The conformed cut is written next to the renders, not next to the editor's cut, so a
    relative path there would point at a file that does not exist. The path names the same
    file; only its spelling changes.
    """
    for clip in timeline.find_clips():
        ref = clip.media_reference
        if not isinstance(ref, otio.schema.ExternalReference) or not ref.target_url:
            continue
        parsed = urlparse(ref.target_url)
        if parsed.scheme or Path(ref.target_url).is_absolute():
            continue
        ref.target_url = str(base / ref.target_url)


def relink(clip: otio.schema.Clip, key: str, render: RenderedShot, base: Path) -> None:
    """Point `clip` at its render, keeping its source_range (and so the cut's timing) as it is."""
    shot = {"shot": clip.name, "key": key}
    rate = Fraction(render.rate)
    if render.key != key:
        raise ConformError(f"render is for {render.key!r}, filed under {key!r}", **shot)
    if render.version < 1:
        raise ConformError(f"render version must be 1 or more, got {render.version}", **shot)
    if not Path(render.path).is_file():
        raise ConformError(
            f"render file is missing (version {render.version})", path=render.path, **shot
        )
    media_range = clip.media_reference.available_range if clip.media_reference else None
    if clip.source_range is None and media_range is None:
        raise ConformError(
            f"clip {clip.name!r} has neither a source range nor a media range: "
            "cannot tell which frames the render replaces",
            **shot,
        )
    used = clip.trimmed_range()
    clip_frames = to_frames(used.duration, rate)
    if render.frame_count != clip_frames:
        raise ConformError(
            f"clip {clip.name!r} is {clip_frames} frames at {rate} fps but the render has "
            f"{render.frame_count} ({render.first_frame}–{render.last_frame}); re-render the shot",
            path=render.path,
            **shot,
        )
    # Read everything needed from the old reference before replacing it: OTIO frees it then.
    original_media = _original_media(clip.media_reference, base)
    qc = _jsonable(render.qc, key)
    first = _first_frame(clip, rate)
    if first is not None and first != render.first_frame:
        raise ConformError(
            f"clip {clip.name!r} now starts at source frame {first} but the render starts at "
            f"{render.first_frame}; the cut changed since the render: re-render the shot",
            path=render.path,
            **shot,
        )
    clip.media_reference = otio.schema.ExternalReference(
        target_url=Path(os.path.abspath(render.path)).as_uri(),
        available_range=_available_range(used, rate, render.frame_count),
    )
    ours = dict(clip.metadata.get("studio_nova") or {})
    ours["render"] = {
        "version": render.version,
        "path": str(Path(os.path.abspath(render.path))),
        "proxy": str(Path(os.path.abspath(render.proxy))) if render.proxy else None,
        "qc": qc,
        "first_frame": render.first_frame,
        "last_frame": render.last_frame,
        "original_media": original_media,
    }
    clip.metadata["studio_nova"] = ours


def _available_range(used: TimeRange, rate: Fraction, frames: int) -> TimeRange:
    """The render's range: the clip's own source range, in the clip's rate when it is the render's.

    Reusing the clip's start value keeps `source_range − available_range` exactly zero, even at
    float NTSC rates such as 23.976, so re-ingesting the conformed cut finds frame 0.
    """
    start = used.start_time
    if snap_rate(start.rate) == rate:
        return TimeRange(RationalTime(start.value, start.rate), RationalTime(frames, start.rate))
    value = float(rate)
    return TimeRange(RationalTime(to_frames(start, rate), value), RationalTime(frames, value))


def _first_frame(clip: otio.schema.Clip, rate: Fraction) -> int | None:
    """The clip's first source frame when the cut says where its media starts, else None."""
    ref = clip.media_reference
    if clip.source_range is None or ref is None or ref.available_range is None:
        return None
    offset = seconds(clip.source_range.start_time) - seconds(ref.available_range.start_time)
    return round_frames(offset * rate)


def _original_media(ref: otio.core.MediaReference | None, base: Path) -> str | None:
    if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
        try:
            return str(path_of_url(ref.target_url, base))
        except StudioNovaError:
            return ref.target_url
    return None


def _jsonable(value: Any, key: str) -> Any:
    """QC figures as plain JSON types (numpy scalars included) so OTIO can store them."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, key) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    raise ConformError(f"QC value {value!r} ({type(value).__name__}) is not JSON data", key=key)


def _writer(timeline: otio.schema.Timeline, adapter: str, base: Path) -> Callable[[Path], None]:
    """A function writing `timeline` with `adapter`; adapters get a copy since some mutate it.

    `base` is the folder relative media paths are relative to (the editor's cut).
    """

    def write(path: Path) -> None:
        copy = timeline.deepcopy()
        if adapter == "AAF":
            # Our renders have no Avid mob ids; without this flag the writer refuses them.
            otio.adapters.write_to_file(
                copy, str(path), adapter_name=adapter, use_empty_mob_ids=True
            )
            return
        if adapter == "fcpx_xml":
            text = _fcpx_xml(copy, base)
        else:
            text = otio.adapters.write_to_string(copy, adapter_name=adapter)
        path.write_text(text, encoding="utf-8")

    return write


# ------------------------------------------------------------------------- FCP X XML


@dataclass(frozen=True)
class _FcpxFormat:
    """What a `<format>` of an FCPXML says: frame rate and frame size."""

    rate: Fraction
    width: int
    height: int

    def attributes(self, format_id: str) -> dict[str, str]:
        duration = 1 / self.rate
        out = {"id": format_id}
        size = _FCPX_SIZE_NAMES.get((self.width, self.height))
        rate = _FCPX_RATE_NAMES.get(self.rate)
        if size and rate:
            out["name"] = f"FFVideoFormat{size}p{rate}"
        out["frameDuration"] = f"{duration.numerator}/{duration.denominator}s"
        out["width"], out["height"] = str(self.width), str(self.height)
        return out


def _fcpx_xml(timeline: otio.schema.Timeline, base: Path) -> str:
    """FCPXML of `timeline` (a copy: it is changed) whose formats describe the cut's media.

    OTIO's fcpx adapter (otio-fcpx-xml-adapter 1.0) reads no metadata for `<format>`: it looks
    the frame duration up in a table of float rates, which misses NTSC rates as OTIO stores
    them (23.976, 29.97002997…), and names the format by running `ffprobe` (often absent).
    What it wrote was `<format frameDuration="" name=""/>`, which neither Final Cut Pro nor
    the adapter itself can read. So the timeline's times are first put at exact rates (so that
    every time lands on a frame boundary, e.g. 1001/24000s steps at 23.976), media paths
    become the file URLs FCPXML's `src` needs, and after the adapter has written the document
    every `<format>` is replaced by one per rate and frame size, read from the media itself.
    """
    _check_fcpx_lanes(timeline)
    _exact_rates(timeline)
    _file_urls(timeline, base)
    media = _fcpx_media_formats(timeline, base)
    project = _fcpx_project_format(timeline, media)
    text = otio.adapters.write_to_string(timeline, adapter_name="fcpx_xml")
    return _fill_fcpx_formats(text, media, project)


def _check_fcpx_lanes(timeline: otio.schema.Timeline) -> None:
    """Refuse a cut with connected clips at a rate the fcpx adapter cannot place them at."""
    nested = timeline.tracks.find_children(descended_from_type=otio.schema.Stack)
    for stack in [timeline.tracks, *nested]:
        tracks = [t for t in stack if isinstance(t, otio.schema.Track)]
        video = [t for t in tracks if t.kind == otio.schema.TrackKind.Video]
        lanes = video[1:] + [t for t in tracks if t.kind == otio.schema.TrackKind.Audio]
        for track in lanes:
            clips = [c for c in track if isinstance(c, (otio.schema.Clip, otio.schema.Stack))]
            if not clips:
                continue
            rate = snap_rate(clips[0].duration().rate)
            if rate not in _FCPX_LANE_RATES:
                name = repr(track.name) if track.name else f"(unnamed {track.kind.lower()})"
                raise ConformError(
                    f"track {name} holds connected clips, which the fcpx "
                    f"adapter places only at {', '.join(map(str, sorted(_FCPX_LANE_RATES)))} fps, "
                    f"not {float(rate):.3f}; write fcp_xml or AAF for this cut"
                )


def _exact_rates(timeline: otio.schema.Timeline) -> None:
    """Give every time in `timeline` its exact rate (23.976 → 24000/1001), frame counts kept."""

    def time(value: RationalTime) -> RationalTime:
        return RationalTime(value.value, float(snap_rate(value.rate)))

    def span(value: TimeRange | None) -> TimeRange | None:
        return None if value is None else TimeRange(time(value.start_time), time(value.duration))

    if timeline.global_start_time is not None:
        timeline.global_start_time = time(timeline.global_start_time)
    for item in [timeline.tracks, *timeline.tracks.find_children()]:
        if isinstance(item, otio.schema.Transition):
            item.in_offset, item.out_offset = time(item.in_offset), time(item.out_offset)
            continue
        item.source_range = span(item.source_range)
        for marker in item.markers:
            marker.marked_range = span(marker.marked_range)
        ref = getattr(item, "media_reference", None)
        if ref is not None and ref.available_range is not None:
            ref.available_range = span(ref.available_range)


def _file_urls(timeline: otio.schema.Timeline, base: Path) -> None:
    """Spell every local media path as the absolute file URL an FCPXML `src` must be."""
    for clip in timeline.find_clips():
        ref = clip.media_reference
        if isinstance(ref, otio.schema.ExternalReference) and ref.target_url:
            if not urlparse(ref.target_url).scheme:
                ref.target_url = path_of_url(ref.target_url, base).as_uri()


def _fcpx_media_formats(timeline: otio.schema.Timeline, base: Path) -> dict[str, _FcpxFormat]:
    """Rate and frame size of each media file the cut uses, by URL (files that probe as video)."""
    out: dict[str, _FcpxFormat] = {}
    seen: set[str] = set()
    for clip in timeline.find_clips():
        ref = clip.media_reference
        if not isinstance(ref, otio.schema.ExternalReference) or ref.target_url in seen:
            continue
        seen.add(ref.target_url)
        try:
            info = probe(path_of_url(ref.target_url, base, clip_name=clip.name))
        except MediaError:
            continue  # offline, remote or audio-only media: see _fill_fcpx_formats
        out[ref.target_url] = _FcpxFormat(info.rate, info.width, info.height)
    return out


def _fcpx_project_format(
    timeline: otio.schema.Timeline, media: Mapping[str, _FcpxFormat]
) -> _FcpxFormat:
    """The project's format: the cut's rate and the frame size of its first readable video."""
    video = [clip for _, clip in iter_video_clips(timeline)]
    if not video:
        raise ConformError("the cut has no video clip to take the FCPXML project format from")
    rate = snap_rate(video[0].trimmed_range().duration.rate)
    for clip in video:
        found = media.get(getattr(clip.media_reference, "target_url", None) or "")
        if found is not None:
            return _FcpxFormat(rate, found.width, found.height)
    raise ConformError(
        "FCPXML needs the project's frame size, but none of the cut's video media can be read"
    )


def _fill_fcpx_formats(text: str, media: Mapping[str, _FcpxFormat], project: _FcpxFormat) -> str:
    """Replace the adapter's `<format>` elements with ones that say rate and frame size.

    Sequences (the project's and compound clips') take the project format; an asset takes its
    media's format, or the project's when its media cannot be read (offline, remote,
    audio-only): Final Cut Pro reads the real format when it relinks such a file.
    """
    root = ElementTree.fromstring(text)
    resources = root.find("resources")
    if resources is None:
        raise ConformError("the fcpx_xml adapter wrote no <resources>")
    old_ids = []
    for element in resources.findall("format"):
        old_ids.append(element.get("id"))
        resources.remove(element)
    taken = {element.get("id") for element in root.iter()}
    ids: dict[_FcpxFormat, str] = {}

    def id_of(fmt: _FcpxFormat) -> str:
        if fmt not in ids:
            if old_ids:  # reuse the adapter's ids first (its project format is r1)
                ids[fmt] = old_ids.pop(0)
            else:
                number = 1
                while f"r{number}" in taken:
                    number += 1
                ids[fmt] = f"r{number}"
            taken.add(ids[fmt])
        return ids[fmt]

    id_of(project)
    for sequence in root.iter("sequence"):
        sequence.set("format", id_of(project))
    asset_formats = {}
    for asset in resources.iter("asset"):
        asset.set("format", id_of(media.get(asset.get("src", ""), project)))
        asset_formats[asset.get("id")] = asset.get("format")
    for asset_clip in root.iter("asset-clip"):
        asset_clip.set("format", asset_formats.get(asset_clip.get("ref"), id_of(project)))
    for index, (fmt, format_id) in enumerate(ids.items()):
        resources.insert(index, ElementTree.Element("format", fmt.attributes(format_id)))
    ElementTree.indent(root, space="    ")
    body = ElementTree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n{body}\n'


def _write_all(outputs: list[tuple[str, Path, Callable[[Path], None]]]) -> dict[str, Path]:
    temps: list[tuple[Path, Path]] = []
    try:
        for fmt, final, write in outputs:
            temp = temp_sibling(final)
            temps.append((temp, final))
            try:
                write(temp)
            except Exception as exc:  # adapters raise their own classes (NotSupportedError, ...)
                raise ConformError(
                    f"{fmt} cannot represent this cut: {type(exc).__name__}: {exc}", path=final
                ) from exc
        for temp, final in temps:
            publish(temp, final)
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
    return {fmt: final for fmt, final, _ in outputs}
