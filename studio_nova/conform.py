"""Hand the cut back to the NLE with every rendered shot relinked to its render.

The conformed cut keeps the editor's timing exactly (DESIGN section 4): each edited clip keeps
its own `source_range` and points at its render through an `ExternalReference` whose
`available_range` *is* that source range, so the render's frame 0 lines up with the clip's first
frame. Nothing else in the cut is touched. Clips are found again by the keys `ingest` gave them.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import opentimelineio as otio
from opentimelineio.opentime import RationalTime, TimeRange

from studio_nova.errors import ConformError, StudioNovaError
from studio_nova.ingest import (
    DEFAULT_EDL_RATE,
    iter_video_clips,
    path_of_url,
    read_timeline,
    round_frames,
    seconds,
    to_frames,
)
from studio_nova.media.timecode import snap_rate

#: Format (OTIO adapter name) → suffix of the file written next to the conformed OTIO.
FORMATS: dict[str, str] = {
    "fcp_xml": ".xml",
    "cmx_3600": ".edl",
    "fcpx_xml": ".fcpxml",
    "AAF": ".aaf",
}


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
        ("otio", out_path, _writer(timeline, "otio_json"))
    ]
    for fmt in dict.fromkeys(formats):
        outputs.append((fmt, out_path.with_suffix(FORMATS[fmt]), _writer(timeline, fmt)))
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


def _writer(timeline: otio.schema.Timeline, adapter: str) -> Callable[[Path], None]:
    """A function writing `timeline` with `adapter`; adapters get a copy since some mutate it."""

    def write(path: Path) -> None:
        copy = timeline.deepcopy()
        if adapter == "AAF":
            # Our renders have no Avid mob ids; without this flag the writer refuses them.
            otio.adapters.write_to_file(
                copy, str(path), adapter_name=adapter, use_empty_mob_ids=True
            )
            return
        text = otio.adapters.write_to_string(copy, adapter_name=adapter)
        path.write_text(text, encoding="utf-8")

    return write


def _write_all(outputs: list[tuple[str, Path, Callable[[Path], None]]]) -> dict[str, Path]:
    temps: list[tuple[Path, Path]] = []
    try:
        for fmt, final, write in outputs:
            handle, name = tempfile.mkstemp(
                prefix=f".{final.name}.", suffix=".tmp", dir=final.parent
            )
            os.close(handle)
            temp = Path(name)
            temps.append((temp, final))
            try:
                write(temp)
            except Exception as exc:  # adapters raise their own classes (NotSupportedError, ...)
                raise ConformError(
                    f"{fmt} cannot represent this cut: {type(exc).__name__}: {exc}", path=final
                ) from exc
        for temp, final in temps:
            os.replace(temp, final)
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
    return {fmt: final for fmt, final, _ in outputs}
