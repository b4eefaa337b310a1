"""A corpus of bad and awkward inputs, each run through `studio-nova run` the way a user runs it.

Every per-shot case puts ONE bad or awkward clip (media, range, edit request or place in the cut)
on the track beside a good shot and runs

    studio-nova run CUT --out DIR --orchestrator none --auto-approve --json

in this process (`studio_nova.app.cli.main`). What is asserted is the README's promise, not any
wording:

- a bad clip is reported `failed`, with an `error` that names it (clip name or key in the cut, or
  the file at fault) and says what is wrong (one of a few words a person would use for it);
  an awkward clip the pipeline supports renders at the source's size and length;
- the good shot is rendered and conformed all the same;
- no source file (media, cut, plate) is changed, and nothing is written beside them;
- exit status 0, since something ran, and one JSON document on stdout.

`plan --json` must refuse the same clips the same way (it makes every check `run` makes), with
the good shot planned.

Run-level cases (a cut that cannot be read, a bad setting, a bad --out, a cut of only bad shots)
check exit status 1 and the `{"error": {...}}` document naming the file or the variable, for `run`
and `plan`, and that no output folder is left behind when nothing could run.

Media are made here, a few frames of 64×48 (`bad_inputs_media`); the whole file runs in about a
minute on two cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import bad_inputs_media as media
import numpy as np
import opentimelineio as otio
import pytest
from test_pipeline import _clip, _timeline

from studio_nova.app.cli import main
from studio_nova.media import ffmpeg_bin
from studio_nova.media.probe import probe

GOOD, BAD = "SH100", "SH900"  # upper case: never part of a pytest temp path
GOOD_FRAMES = 9
EDIT = {"instruction": "a warmer grade", "editor": "recolor", "params": {"hue_shift": 30}}

FAILS, RENDERS, EITHER = "fails", "renders", "renders or fails clearly"

# What a person would call each kind of problem (any one, case-insensitive, outside the echoed
# file name and clip name).
MISSING = ("does not exist", "doesn't exist", "not found", "missing", "no such file", "cannot find", "can't find")
NOT_MEDIA = (
    "not a video", "not a movie", "not a media", "not media", "isn't a video", "no video",
    "cannot read", "can't read", "cannot be read", "unreadable", "not recogni", "unrecogni",
    "unknown format", "unsupported", "corrupt", "damaged", "invalid data",
)
TRUNCATED = (
    "truncated", "incomplete", "cut short", "unfinished", "not finished", "partial", "corrupt",
    "damaged", "ends early", "ends before", "fewer frames",
)
STILL = ("still", "image", "picture", "single frame", "one frame", "1 frame", "only frame")
RANGE = (
    "source range", "beyond", "outside", "past the end", "out of range", "exceeds", "longer than",
    "has frames", "only has", "asks for",
)
NO_FRAMES = ("0 frames", "zero", "no frames", "empty", "duration", "length", "negative", "source range")
UNKNOWN = ("unknown", "not installed", "no such", "not known", "does not know", "not one of", "allowed")


@dataclass
class Bad:
    """What a case puts in the cut after the good clip, and how its outcome is recognised."""

    items: list[Any]  # OTIO items appended to V1 after the good clip
    file: Path | str | None = None  # the file at fault, which the error may name instead of the clip
    name: str = BAD
    key: str = "V1/1"
    frames: int | None = GOOD_FRAMES  # when it renders: its length (None: any) ...
    size: tuple[int, int] = (64, 48)  # ... and frame size
    timeline_dir: str = "."  # where the cut lives, relative to the case's sources
    good_media: Path | None = None  # another file for the good clip (one inside a media root)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, Path], Bad]  # (the case's sources folder, the good media) -> Bad
    expect: str
    says: tuple[str, ...] = ()
    name_only: bool = False  # the media is the good one: only the clip name or key identifies it
    check: Callable[[dict, Bad], None] | None = None  # more about the bad shot's outcome


def _bad(media_path: Path | str, count: int = GOOD_FRAMES, **kw: Any) -> otio.schema.Clip:
    kw.setdefault("edit", EDIT)
    return _clip(kw.pop("name", BAD), media_path, kw.pop("first", 0), count, **kw)


def _edit_clip(good: Path, edit: Any, *, metadata: Any = None, name: str = BAD) -> otio.schema.Clip:
    """The good media under a clip whose edit request is `edit` (or whose studio_nova metadata is
    `metadata`): only the request is bad."""
    clip = _clip(name, good, 0, GOOD_FRAMES)
    clip.metadata["studio_nova"] = metadata if metadata is not None else {"edit": edit}
    return clip


def _no_available_range(name: str, media_path: Path, start: int, count: int, rate: float = 25.0) -> otio.schema.Clip:
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(target_url=str(media_path)),
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(count, rate)
        ),
    )
    clip.metadata["studio_nova"] = {"edit": EDIT}
    return clip


def _file_case(make: Callable[[Path], Path], filename: str, count: int = GOOD_FRAMES, **kw: Any):
    def build(src: Path, good: Path) -> Bad:
        path = make(src / filename)
        return Bad([_bad(path, count, **kw)], file=path)

    return build


# ------------------------------------------------------------------------------------ media files


def _missing(src: Path, good: Path) -> Bad:
    path = src / "A900_missing.mov"
    return Bad([_bad(path)], file=path)


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _png_renamed(path: Path) -> Path:
    return media.still_png(path.with_suffix(".png")).rename(path)


def _zip(path: Path) -> Path:
    return media.zip_file(path, media.write_movie(path.parent / "inner" / "A900.mov", GOOD_FRAMES))


def _truncated_prores(path: Path) -> Path:
    whole = media.write_movie(path.parent / "whole" / "A900_whole.mov", 30)
    return media.truncated(path, whole, 0.5)


def _truncated_mp4(path: Path) -> Path:
    whole = media.faststart_mp4(path.parent / "whole" / "A900_whole.mp4", 30)
    return media.truncated(path, whole, 0.5)


def _unreadable(src: Path, good: Path) -> Bad:
    if os.geteuid() == 0:
        pytest.skip("root reads a chmod 000 file anyway")
    path = media.write_movie(src / "A900_locked.mov", GOOD_FRAMES)
    path.chmod(0)
    return Bad([_bad(path)], file=path)


def _directory(src: Path, good: Path) -> Bad:
    path = src / "A900_folder.mov"
    path.mkdir()
    return Bad([_bad(path)], file=path)


def _http(src: Path, good: Path) -> Bad:
    url = "http://media.example.com/A900.mov"
    return Bad([_bad(url)], file=url)


def _file_url_with_host(src: Path, good: Path) -> Bad:
    url = "file://fileserver/share/A900.mov"
    return Bad([_bad(url)], file=url)


def _relative_dotdot(src: Path, good: Path) -> Bad:
    """The cut in cuts/, the media in media/ beside it, linked as ../media/…: an ordinary layout."""
    path = media.write_movie(src / "media" / "A900.mov", GOOD_FRAMES, seed=3)
    (src / "cuts").mkdir()
    return Bad([_bad("../media/A900.mov")], file=path, timeline_dir="cuts")


def _relative_outside_media_roots(src: Path, good: Path) -> Bad:
    """The same ../media/… link with STUDIO_NOVA_MEDIA_ROOTS naming only the cut's folder (which
    also holds the good clip's media): the link leaves every media root."""
    bad = _relative_dotdot(src, good)
    bad.good_media = Path(shutil.copy2(good, src / "cuts" / "SH100.mov"))
    bad.env = {"STUDIO_NOVA_MEDIA_ROOTS": str(src / "cuts")}
    return bad


# ---------------------------------------------------------------------------------- ranges and time


def _beyond(src: Path, good: Path) -> Bad:
    return Bad([_bad(good, GOOD_FRAMES, first=5, total=GOOD_FRAMES)], file=good)


def _zero_duration(src: Path, good: Path) -> Bad:
    return Bad([_bad(good, 0, total=GOOD_FRAMES)], file=good)


def _negative_duration(src: Path, good: Path) -> Bad:
    return Bad([_bad(good, -5, first=8, total=GOOD_FRAMES)], file=good)


def _before_available(src: Path, good: Path) -> Bad:
    return Bad([_bad(good, 5, first=-3, total=GOOD_FRAMES)], file=good)


def _timecode_mismatch(src: Path, good: Path) -> Bad:
    """The media starts at 10:00:00:00; the clip (no available_range) asks from 01:00:00:00."""
    path = media.write_movie(src / "A900_tc10.mov", GOOD_FRAMES, timecode="10:00:00:00")
    return Bad([_no_available_range(BAD, path, 90000, 5)], file=path)


def _timecode_available_range_disagrees(src: Path, good: Path) -> Bad:
    """available_range says the media starts at 01:00:00:00, the file says 10:00:00:00; the clip
    is frames 2–6 of it by the cut's own numbers (README: first = source − available start)."""
    path = media.write_movie(src / "A900_tc10.mov", GOOD_FRAMES, timecode="10:00:00:00")
    return Bad([_bad(path, 5, first=2, media_start=90000, total=GOOD_FRAMES)], file=path, frames=5)


def _check_timecode_rule(outcome: dict, bad: Bad) -> None:
    if outcome["status"] == "failed":
        assert "10:00:00:00" in outcome["error"], "a refusal should show the file's own start timecode"
    else:
        assert (outcome["first_frame"], outcome["last_frame"]) == (2, 6)


def _rate_mismatch(src: Path, good: Path) -> Bad:
    """The cut says 24 fps, the file is 25 fps: one second of the cut is 25 of its frames."""
    path = media.write_movie(src / "A900_25fps.mov", 30)
    return Bad([_bad(path, 24, total=30, rate=24.0)], file=path, frames=25)


def _check_rates_named(outcome: dict, bad: Bad) -> None:
    if outcome["status"] == "failed":
        text = _without(outcome["error"], bad.file)
        assert "24" in text and "25" in text, f"a refusal should give both rates: {outcome['error']}"


def _vfr(src: Path, good: Path) -> Bad:
    path = media.vfr_movie(src / "A900_phone.mp4")
    return Bad([_bad(path, 20, total=media.VFR_FRAMES)], file=path, frames=20)


def _vfr_resample(src: Path, good: Path) -> Bad:
    bad = _vfr(src, good)
    bad.env = {"STUDIO_NOVA_VFR": "resample"}
    bad.frames = None  # at whatever constant rate it picks ...
    return bad


#: Rates a master can be conformed at; a VFR file's average (e.g. 31.91) is none of them.
STANDARD_RATES = {Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                  Fraction(48), Fraction(50), Fraction(60000, 1001), Fraction(60)}


def _check_covers_clip_time(outcome: dict, bad: Bad) -> None:
    """... a standard constant rate, and the render holds the clip's 20 frames at 25 fps of time:
    0.8 s, to a frame."""
    info = probe(outcome["render"])
    assert info.rate in STANDARD_RATES, f"the resampled render runs at {info.rate} fps, not a constant standard rate"
    seconds = Fraction(info.frame_count) / info.rate
    assert abs(seconds - Fraction(20, 25)) <= 1 / info.rate, (
        f"the resampled render holds {info.frame_count} frames at {info.rate} fps = {float(seconds):.3f} s, "
        "not the clip's 0.8 s"
    )


def _check_measured_rates(outcome: dict, bad: Bad) -> None:
    text = _without(outcome["error"], bad.file)
    for rate in media.VFR_RATES:
        assert re.search(rf"(?<![\d.]){rate}(?![\d])", text), f"the measured rate {rate} fps is not given: {text}"


def _speed_effect(src: Path, good: Path) -> Bad:
    clip = _bad(good)
    clip.effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    return Bad([clip], file=good)


# -------------------------------------------------------------------------- sizes and bit depths


def _sized(width: int, height: int, codec: str, suffix: str = ".mov", dtype: type = np.uint8):
    def build(src: Path, good: Path) -> Bad:
        path = media.write_movie(src / f"A900_{width}x{height}{suffix}", GOOD_FRAMES, width, height,
                                 codec=codec, dtype=dtype)
        return Bad([_bad(path)], file=path, size=(width, height))

    return build


def _still(src: Path, good: Path) -> Bad:
    path = media.still_png(src / "A900_still.png")
    return Bad([_bad(path)], file=path)


def _image_sequence(src: Path, good: Path) -> Bad:
    """A numbered PNG sequence (frame 4 missing) as the clip's media reference."""
    folder = src / "seq"
    folder.mkdir()
    for frame in range(GOOD_FRAMES):
        if frame != 4:
            media.still_png(folder / f"A900.{frame:04d}.png")
    ref = otio.schema.ImageSequenceReference(
        target_url_base=str(folder) + "/", name_prefix="A900.", name_suffix=".png", start_frame=0,
        frame_zero_padding=4, rate=25,
        available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, 25),
                                                otio.opentime.RationalTime(GOOD_FRAMES, 25)),
    )
    clip = otio.schema.Clip(name=BAD, media_reference=ref, source_range=ref.available_range)
    clip.metadata["studio_nova"] = {"edit": EDIT}
    return Bad([clip], file=folder)


def _missing_reference(src: Path, good: Path) -> Bad:
    clip = otio.schema.Clip(
        name=BAD, media_reference=otio.schema.MissingReference(),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, 25),
                                             otio.opentime.RationalTime(GOOD_FRAMES, 25)),
    )
    clip.metadata["studio_nova"] = {"edit": EDIT}
    return Bad([clip])


# ---------------------------------------------------------------------------------- edit requests


def _edit(**changes: Any) -> Callable[[Path, Path], Bad]:
    def build(src: Path, good: Path) -> Bad:
        return Bad([_edit_clip(good, {**EDIT, **changes})])

    return build


def _metadata(value: Any) -> Callable[[Path, Path], Bad]:
    def build(src: Path, good: Path) -> Bad:
        return Bad([_edit_clip(good, None, metadata=value)])

    return build


def _markers(*names: str) -> Callable[[Path, Path], Bad]:
    def build(src: Path, good: Path) -> Bad:
        clip = _clip(BAD, good, 0, GOOD_FRAMES)
        for name in names:
            clip.markers.append(otio.schema.Marker(name=name, marked_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(0, 25), otio.opentime.RationalTime(1, 25))))
        return Bad([clip])

    return build


def _background(**request: Any) -> Callable[[Path, Path], Bad]:
    """A background replacement request; `plate.png` beside the cut is a usable still."""

    def build(src: Path, good: Path) -> Bad:
        media.still_png(src / "plate.png")
        edit = {"kind": "background", "background": {"source": "still", "params": {"image": "plate.png"}}}
        edit.update(request)
        return Bad([_edit_clip(good, edit)])

    return build


def _missing_plate(src: Path, good: Path) -> Bad:
    edit = {"kind": "background",
            "background": {"source": "plate", "params": {"video": "plates/missing_plate.mov"}}}
    return Bad([_edit_clip(good, edit)], file=src / "plates" / "missing_plate.mov")


def _artist_unpainted(src: Path, good: Path) -> Bad:
    (src / "paint").mkdir()
    edit = {"instruction": "paint it", "editor": "artist", "params": {"dir": str(src / "paint")}}
    return Bad([_edit_clip(good, edit)])


def _mentions(*words: str) -> Callable[[dict, Bad], None]:
    def check(outcome: dict, bad: Bad) -> None:
        for word in words:
            assert word in outcome["error"], f"the error should name {word!r}: {outcome['error']}"

    return check


# ---------------------------------------------------------------------------- the cut's structure


def _empty_name(src: Path, good: Path) -> Bad:
    return Bad([_bad(good, name="")], name="")


def _empty_name_missing_media(src: Path, good: Path) -> Bad:
    path = src / "A900_missing.mov"
    return Bad([_bad(path, name="")], name="", file=path)


def _duplicate_names(src: Path, good: Path) -> Bad:
    return Bad([_bad(good, 5, first=2, total=GOOD_FRAMES, name=GOOD)], name=GOOD, frames=5)


def _check_distinct_render(outcome: dict, bad: Bad) -> None:
    assert outcome["render"] != outcome["good_render"], "two clips of one name must not share a render"


def _duplicate_name_missing_media(src: Path, good: Path) -> Bad:
    path = src / "A900_missing.mov"
    return Bad([_bad(path, name=GOOD)], name="", file=path)  # the name is ambiguous: key or file


def _gap_and_transition(src: Path, good: Path) -> Bad:
    gap = otio.schema.Gap(source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(0, 25), otio.opentime.RationalTime(5, 25)))
    transition = otio.schema.Transition(in_offset=otio.opentime.RationalTime(2, 25),
                                        out_offset=otio.opentime.RationalTime(2, 25))
    return Bad([gap, transition, _bad(good, 5, first=1, total=GOOD_FRAMES)], key="V1/3", frames=5)


def _nested_stack(src: Path, good: Path) -> Bad:
    inner = otio.schema.Track(name="inner", kind=otio.schema.TrackKind.Video)
    inner.append(_bad(good, 5, first=3, total=GOOD_FRAMES))
    stack = otio.schema.Stack(name="compound")
    stack.append(inner)
    return Bad([stack], key="V1/1/V1/0", frames=5)


CASES = [
    # media files
    Case("missing_media", _missing, FAILS, MISSING),
    Case("empty_file", _file_case(_empty, "A900_empty.mov"), FAILS, ("empty", "0 bytes", "zero bytes", "no data")),
    Case("audio_only", _file_case(media.audio_only, "A900_audio.mov"), FAILS,
         ("no video", "audio only", "audio-only", "only audio", "only an audio")),
    Case("text_named_mov", _file_case(media.text_file, "A900_notes.mov"), FAILS, NOT_MEDIA),
    Case("png_renamed_mov", _file_case(_png_renamed, "A900_frame.mov"), FAILS, STILL + NOT_MEDIA),
    Case("zip_named_mov", _file_case(_zip, "A900_delivery.mov"), FAILS, NOT_MEDIA + ("zip", "archive")),
    Case("truncated_prores_mov", _file_case(_truncated_prores, "A900_cut.mov"), FAILS, TRUNCATED),
    Case("truncated_faststart_mp4", _file_case(_truncated_mp4, "A900_cut.mp4", 30, total=30), FAILS, TRUNCATED),
    Case("unreadable_chmod_000", _unreadable, FAILS, ("permission", "cannot be read", "can't be read", "not readable",
                                                      "unreadable", "access")),
    Case("directory_as_media", _directory, FAILS, ("directory", "folder", "not a file")),
    Case("remote_http_url", _http, FAILS, ("not a local", "remote", "local file", "download", "network")),
    Case("file_url_with_host", _file_url_with_host, FAILS, ("host", "server", "local", "network")),
    Case("relative_url_with_dotdot", _relative_dotdot, RENDERS),
    Case("relative_url_outside_media_roots", _relative_outside_media_roots, FAILS,
         ("outside", "media root", "MEDIA_ROOTS", "not under", "not inside", "not within", "not allowed")),
    # ranges, timecode, rates
    Case("range_beyond_media", _beyond, FAILS, RANGE),
    Case("zero_duration", _zero_duration, FAILS, NO_FRAMES),
    Case("negative_duration", _negative_duration, FAILS, NO_FRAMES),
    Case("range_before_available_range", _before_available, FAILS, RANGE + ("before",)),
    Case("timecode_offset_mismatch", _timecode_mismatch, FAILS, ("timecode",),
         check=_mentions("10:00:00:00")),
    Case("available_range_vs_file_timecode", _timecode_available_range_disagrees, EITHER, ("timecode",),
         check=_check_timecode_rule),
    Case("rate_mismatch_clip_vs_media", _rate_mismatch, EITHER, ("rate", "fps"), check=_check_rates_named),
    Case("variable_frame_rate_refused", _vfr, FAILS, ("variable", "vfr"), check=_check_measured_rates),
    Case("variable_frame_rate_resampled", _vfr_resample, RENDERS, check=_check_covers_clip_time),
    Case("speed_effect", _speed_effect, FAILS, ("speed", "retime", "time warp", "timewarp", "100%")),
    # sizes and depths
    Case("odd_size_161x121", _sized(161, 121, "prores_4444"), RENDERS),
    Case("tiny_2x2", _sized(2, 2, "ffv1", ".mkv"), EITHER, ("size", "small", "pixels", "2x2", "2×2")),
    Case("huge_aspect_4096x16", _sized(4096, 16, "prores_hq"), RENDERS),
    Case("source_10bit_prores", _sized(64, 48, "prores_hq", dtype=np.uint16), RENDERS),
    Case("source_16bit_ffv1", _sized(64, 48, "ffv1", ".mkv", dtype=np.uint16), RENDERS),
    Case("still_image_as_media", _still, EITHER, STILL),
    Case("image_sequence_missing_frame", _image_sequence, FAILS,
         ("not supported", "unsupported", "transcode", "missing")),
    Case("clip_without_media_reference", _missing_reference, FAILS,
         ("no media", "missing", "offline", "relink", "not linked")),
    # edit requests
    Case("unknown_editor", _edit(editor="paintbrush-9000"), FAILS, UNKNOWN, name_only=True,
         check=_mentions("paintbrush-9000")),
    Case("editor_not_a_string", _edit(editor=7), FAILS, ("editor",), name_only=True),
    Case("params_not_a_dict", _edit(params="hue_shift=30"), FAILS, ("params",), name_only=True),
    Case("unknown_params", _edit(params={"hue_shfit": 30}), FAILS, UNKNOWN, name_only=True,
         check=_mentions("hue_shfit")),
    Case("instruction_not_a_string", _edit(instruction=42), FAILS, ("instruction",), name_only=True),
    Case("seed_not_an_integer", _edit(seed="seven"), FAILS, ("seed",), name_only=True),
    Case("nova_marker_empty_instruction", _markers("NOVA:   "), FAILS, ("instruction", "empty", "nothing after"),
         name_only=True),
    Case("two_different_nova_markers", _markers("NOVA: warmer", "NOVA: colder"), FAILS, ("marker",),
         name_only=True),
    Case("background_missing_plate", _missing_plate, FAILS, MISSING, check=_mentions("missing_plate.mov")),
    Case("background_unknown_matte_source", _background(matte={"source": "telepathy"}), FAILS, UNKNOWN,
         name_only=True, check=_mentions("telepathy")),
    Case("background_unknown_request_key", _background(lighting="soft"), FAILS, UNKNOWN, name_only=True,
         check=_mentions("lighting")),
    Case("background_entry_unknown_key",
         _background(background={"source": "still", "params": {"image": "plate.png"}, "blend": 1}), FAILS,
         UNKNOWN, name_only=True, check=_mentions("blend")),
    Case("background_unknown_composite_option", _background(composite={"glow": 1.0}), FAILS, UNKNOWN,
         name_only=True, check=_mentions("glow")),
    Case("kind_unknown", _edit(kind="restyle"), FAILS, ("kind",), name_only=True, check=_mentions("restyle")),
    Case("metadata_not_a_dict", _metadata("recolor please"), FAILS, ("dict", "object", "mapping"), name_only=True),
    Case("edit_not_a_dict", _metadata({"edit": ["recolor"]}), FAILS, ("dict", "object", "mapping"), name_only=True),
    Case("artist_keyframes_not_painted", _artist_unpainted, FAILS, ("paint", "missing"), name_only=True),
    # the cut's structure
    Case("empty_clip_name", _empty_name, RENDERS),
    Case("empty_clip_name_missing_media", _empty_name_missing_media, FAILS, MISSING),
    Case("duplicate_clip_names", _duplicate_names, RENDERS, check=_check_distinct_render),
    Case("duplicate_name_missing_media", _duplicate_name_missing_media, FAILS, MISSING),
    Case("gap_and_transition_in_track", _gap_and_transition, RENDERS),
    Case("clip_in_nested_stack", _nested_stack, RENDERS),
]


# ------------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def good_media(tmp_path_factory) -> Path:
    return media.write_movie(tmp_path_factory.mktemp("good") / "SH100.mov", GOOD_FRAMES, seed=1)


def studio_nova(capsys, *args: str) -> tuple[int, str, str]:
    """`studio-nova ARGS` in this process: (exit status, stdout, stderr). An exception that escapes
    `main` is a crash the user would see as a traceback: reported as such."""
    capsys.readouterr()
    try:
        status = main(list(args))
    except Exception as exc:  # noqa: BLE001 - the point is to show it
        out, err = capsys.readouterr()
        pytest.fail(f"studio-nova {' '.join(args)} crashed: {type(exc).__name__}: {exc}\nstderr:\n{err[-2000:]}")
    out, err = capsys.readouterr()
    return status, out, err


def _json(out: str, err: str) -> dict:
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON document:\n{out[:2000]}\nstderr:\n{err[-2000:]}")


def _without(message: str, *echoes: Any) -> str:
    """The message with the file names and clip names it echoes taken out, so that a word found
    in it is the message's own and not part of a name."""
    for echo in echoes:
        if echo:
            message = message.replace(str(echo), "").replace(Path(str(echo)).name, "")
    return message


def _says(message: str, words: tuple[str, ...], *echoes: Any) -> bool:
    text = _without(message, *echoes).lower()
    return any(word.lower() in text for word in words)


def _names(outcome: dict, bad: Bad, name_only: bool) -> bool:
    message = outcome.get("error") or ""
    handles = [bad.name, bad.key] if bad.name else [bad.key]
    if not name_only and bad.file is not None:
        handles += [str(bad.file), Path(str(bad.file)).name]
    return any(handle and handle in message for handle in handles)


def _expect(condition: Any, message: str) -> None:
    """An assertion whose report is just the user-visible fact (wording varies, so show it all)."""
    if not condition:
        pytest.fail(message, pytrace=False)


def _assert_rendered(shot: dict, frames: int | None, size: tuple[int, int]) -> None:
    _expect(shot["status"] == "conformed",
            f"{shot['name']!r} ({shot['key']}) was expected to render; it is {shot['status']}: {shot.get('error')}")
    _expect(shot["render"] and Path(shot["render"]).is_file() and Path(shot["proxy"]).is_file(),
            f"{shot['key']}: render {shot['render']} / proxy {shot['proxy']} missing")
    info = probe(shot["render"])
    _expect((frames is None or info.frame_count == frames) and (info.width, info.height) == size,
            f"render of {shot['key']} is {info.frame_count} frames of {info.width}x{info.height}, "
            f"expected {frames} of {size[0]}x{size[1]}")


def _set_up(case: Case, good_media: Path, tmp_path: Path, monkeypatch) -> tuple[Bad, Path, Path]:
    """The case's sources in tmp_path/src and its cut (the good clip, then the bad items)."""
    src = tmp_path / "src"
    src.mkdir()
    bad = case.build(src, good_media)
    for variable, value in bad.env.items():
        monkeypatch.setenv(variable, value)
    good_path = bad.good_media or good_media
    timeline = _timeline(src / bad.timeline_dir / "cut.otio", [_clip(GOOD, good_path, 0, GOOD_FRAMES, edit=EDIT),
                                                                *bad.items])
    return bad, src, timeline


def _assert_refused(case: Case, bad: Bad, outcome: dict) -> None:
    error = outcome.get("error") or ""
    _expect(not error.startswith("internal error"), f"{case.id}: a crash, not a reason: {error}")
    _expect(_names(outcome, bad, case.name_only), f"{case.id}: the error does not say which clip: {error}")
    _expect(_says(error, case.says, bad.file, bad.name),
            f"{case.id}: the error does not say what is wrong (expected one of {case.says}): {error}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_clip_is_reported_by_name_and_the_good_shot_still_renders(case, good_media, tmp_path, capsys,
                                                                        monkeypatch):
    bad, src, timeline = _set_up(case, good_media, tmp_path, monkeypatch)
    before = media.snapshot(src, good_media.parent)

    status, out, err = studio_nova(capsys, "run", str(timeline), "--out", str(tmp_path / "out"),
                                   "--orchestrator", "none", "--auto-approve", "--json")

    result = _json(out, err)
    assert "error" not in result, f"the whole run failed: {result.get('error')}"
    shots = {s["key"]: s for s in result["shots"]}
    assert set(shots) == {"V1/0", bad.key}, f"outcomes {sorted(shots)}: {json.dumps(result['shots'], indent=1)}"
    good, outcome = shots["V1/0"], shots[bad.key]

    # (b) the good shot is rendered and the conformed cut links its render
    _assert_rendered(good, GOOD_FRAMES, (64, 48))
    conformed = otio.adapters.read_from_file(result["conformed"])
    linked = conformed.video_tracks()[0][0].media_reference.target_url
    assert Path(good["render"]).name in linked, f"the conformed cut links {linked}, not the good render"

    # (a) the bad clip: a failure that names it and says what is wrong, or a correct render
    if case.expect == FAILS or (case.expect == EITHER and outcome["status"] == "failed"):
        _expect(outcome["status"] == "failed",
                f"{case.id}: expected a failure, got {outcome['status']} (render {outcome.get('render')})")
        _assert_refused(case, bad, outcome)
    else:
        _assert_rendered(outcome, bad.frames, bad.size)
    if case.check is not None:
        case.check({**outcome, "good_render": good["render"]}, bad)

    # (c) sources untouched, nothing written beside them; (d) exit status 0: something ran
    assert media.snapshot(src, good_media.parent) == before, "a source file was changed or added"
    assert status == 0, f"exit status {status} although the good shot ran"


REFUSED = [c for c in CASES if c.expect == FAILS]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_plan_reports_every_clip_that_run_would_refuse(case, good_media, tmp_path, capsys, monkeypatch):
    """`plan` makes every check `run` makes: the same clips are refused, by name, before a night's
    batch is started; the good shot is planned; nothing is written anywhere."""
    bad, src, timeline = _set_up(case, good_media, tmp_path, monkeypatch)
    before = media.snapshot(tmp_path, good_media.parent)

    status, out, err = studio_nova(capsys, "plan", str(timeline), "--json")

    result = _json(out, err)
    _expect(status == 0 and [s["key"] for s in result.get("shots", [])] == ["V1/0"],
            f"{case.id}: exit status {status}; planned {[s['key'] for s in result.get('shots', [])]}, expected the "
            f"good shot V1/0 only: {json.dumps(result)[:1500]}")
    problems = {p["key"]: p for p in result["problems"]}
    _expect(bad.key in problems, f"{case.id}: plan does not report {bad.key}; problems: {result['problems']}")
    _assert_refused(case, bad, problems[bad.key])
    assert media.snapshot(tmp_path, good_media.parent) == before, "plan wrote or changed a file"


# ------------------------------------------------------------------------------ nothing could run


def test_a_cut_of_only_bad_shots_exits_1_and_reports_every_failure(good_media, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    empty = _empty(src / "A901_empty.mov")
    timeline = _timeline(src / "cut.otio", [
        _bad(src / "A900_missing.mov"),
        _bad(empty, name="SH901"),
        _edit_clip(good_media, {**EDIT, "editor": "paintbrush-9000"}, name="SH902"),
    ])
    before = media.snapshot(src, good_media.parent)

    status, out, err = studio_nova(capsys, "run", str(timeline), "--out", str(tmp_path / "out"),
                                   "--orchestrator", "none", "--auto-approve", "--json")

    result = _json(out, err)
    shots = {s["key"]: s for s in result.get("shots", [])}
    assert set(shots) == {"V1/0", "V1/1", "V1/2"}, f"every clip needs its outcome: {result}"
    for key, name in (("V1/0", BAD), ("V1/1", "SH901"), ("V1/2", "SH902")):
        assert shots[key]["status"] == "failed" and shots[key]["error"], shots[key]
        assert name in shots[key]["error"] or key in shots[key]["error"], shots[key]["error"]
    assert status == 1, f"exit status {status}: nothing could run"
    assert media.snapshot(src, good_media.parent) == before


@dataclass(frozen=True)
class RunCase:
    id: str
    build: Callable[[Path, Path], tuple[Path, str]]  # (sources, good media) -> (timeline, what the error names)
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def _cut_of(good: Path, src: Path) -> Path:
    return _timeline(src / "cut.otio", [_clip(GOOD, good, 0, GOOD_FRAMES, edit=EDIT)])


def _timeline_missing(src: Path, good: Path) -> tuple[Path, str]:
    path = src / "nowhere.otio"
    return path, str(path)


def _timeline_text(src: Path, good: Path) -> tuple[Path, str]:
    path = src / "notes.otio"
    path.write_text("Reel 2, shot 10: make the car blue.\n")
    return path, str(path)


def _timeline_truncated(src: Path, good: Path) -> tuple[Path, str]:
    whole = _cut_of(good, src).read_text()
    path = src / "half.otio"
    path.write_text(whole[: len(whole) // 2])
    return path, str(path)


def _timeline_suffix(src: Path, good: Path) -> tuple[Path, str]:
    path = src / "cut.txt"
    path.write_text(_cut_of(good, src).read_text())
    return path, str(path)


def _timeline_no_requests(src: Path, good: Path) -> tuple[Path, str]:
    return _timeline(src / "plain.otio", [_clip(GOOD, good, 0, GOOD_FRAMES)]), str(src / "plain.otio")


def _with_setting(src: Path, good: Path) -> tuple[Path, str]:
    return _cut_of(good, src), ""


RUN_CASES = [
    RunCase("timeline_missing", _timeline_missing, MISSING),
    RunCase("timeline_not_otio", _timeline_text, ("cannot read", "can't read", "cannot be read", "not a", "invalid",
                                                  "parse", "json", "otio")),
    RunCase("timeline_truncated_json", _timeline_truncated, ("cannot read", "can't read", "cannot be read", "invalid",
                                                             "parse", "json", "truncated", "incomplete")),
    RunCase("timeline_unknown_suffix", _timeline_suffix, ("format", "suffix", "extension", ".otio")),
    RunCase("timeline_without_edit_requests", _timeline_no_requests, ("no clip", "nothing to edit", "edit request")),
    RunCase("default_params_not_json", _with_setting, ("json", "invalid", "parse"),
            {"STUDIO_NOVA_DEFAULT_PARAMS": "{hue_shift: 30"}),
    RunCase("default_params_not_an_object", _with_setting, ("dict", "object", "mapping", "invalid"),
            {"STUDIO_NOVA_DEFAULT_PARAMS": "[30]"}),
    RunCase("chunk_length_not_4n_plus_1", _with_setting, ("4n+1", "4n + 1", "4·n+1"),
            {"STUDIO_NOVA_CHUNK_LENGTH": "80"}),
    RunCase("chunk_overlap_not_multiple_of_4", _with_setting, ("multiple of 4",), {"STUDIO_NOVA_CHUNK_OVERLAP": "6"}),
    RunCase("vfr_policy_unknown", _with_setting, ("refuse", "resample"), {"STUDIO_NOVA_VFR": "guess"}),
    RunCase("media_roots_relative", _with_setting, ("absolute",), {"STUDIO_NOVA_MEDIA_ROOTS": "media/plates"}),
]


@pytest.mark.parametrize("command", ["run", "plan"])
@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_when_nothing_can_run_the_json_error_names_the_cause_and_no_output_folder_is_made(
    case, command, good_media, tmp_path, capsys, monkeypatch
):
    src = tmp_path / "src"
    src.mkdir()
    timeline, named = case.build(src, good_media)
    for variable, value in case.env.items():
        monkeypatch.setenv(variable, value)
    named = named or next(iter(case.env))
    out_dir = tmp_path / "out"
    before = media.snapshot(src, good_media.parent)

    run_options = ["--out", str(out_dir), "--orchestrator", "none", "--auto-approve"] if command == "run" else []
    status, out, err = studio_nova(capsys, command, str(timeline), *run_options, "--json")

    result = _json(out, err)
    assert set(result) == {"error"}, f"{case.id}: expected {{'error': ...}}, got {json.dumps(result)[:1500]}"
    error = result["error"]
    assert error.get("type") and error.get("message"), error
    _expect(error["type"] != "InternalError", f"{case.id}: a crash, not a reason: {error['message']}")
    assert named in error["message"], f"{case.id}: the error does not name {named!r}: {error['message']}"
    assert _says(error["message"], case.says, named), (
        f"{case.id}: the error does not say what is wrong (expected one of {case.says}): {error['message']}"
    )
    assert "studio-nova: error:" in err, "the error should also be one line on stderr"
    assert status == 1, f"exit status {status}, expected 1 (nothing could run)"
    assert not out_dir.exists(), f"{case.id}: nothing ran, yet {out_dir} was created: {sorted(out_dir.rglob('*'))}"
    assert media.snapshot(src, good_media.parent) == before


def test_out_that_is_a_file_is_refused_and_left_alone(good_media, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    timeline = _cut_of(good_media, src)
    out_file = tmp_path / "renders.mov"
    out_file.write_bytes(b"someone's file")
    before = media.snapshot(src, good_media.parent) | media.snapshot(tmp_path)

    status, out, err = studio_nova(capsys, "run", str(timeline), "--out", str(out_file),
                                   "--orchestrator", "none", "--auto-approve", "--json")

    assert status in (1, 2), f"exit status {status} for an --out that is a file"
    said = (out + err)
    assert str(out_file) in said, f"the error should name {out_file}: stdout {out!r} stderr {err[-1000:]!r}"
    assert _says(said, ("not a folder", "not a directory", "is a file", "exists", "directory", "folder"), out_file)
    if status == 1:
        assert set(_json(out, err)) == {"error"}
    assert media.snapshot(src, good_media.parent) | media.snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renders.mov", "src"], "nothing may be written beside it"


def test_an_ffmpeg_setting_that_is_not_a_program_is_named_and_nothing_renders(good_media, tmp_path, capsys,
                                                                              monkeypatch):
    """Every shot needs ffmpeg: the run exits 1 and says which setting to fix (as the JSON error, or
    as every shot's error), instead of a traceback."""
    src = tmp_path / "src"
    src.mkdir()
    timeline = _cut_of(good_media, src)
    monkeypatch.setenv("STUDIO_NOVA_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    # The CLI makes its ffmpeg process-wide; put the bundled one back for the tests that follow.
    monkeypatch.setattr(ffmpeg_bin, "_configured", ffmpeg_bin._configured)

    status, out, err = studio_nova(capsys, "run", str(timeline), "--out", str(tmp_path / "out"),
                                   "--orchestrator", "none", "--auto-approve", "--json")

    result = _json(out, err)
    errors = [result["error"]["message"]] if "error" in result else [s.get("error") or "" for s in result["shots"]]
    _expect(errors and all("STUDIO_NOVA_FFMPEG" in e for e in errors), f"the setting is not named: {result}")
    _expect(status == 1, f"exit status {status}: nothing could run")
