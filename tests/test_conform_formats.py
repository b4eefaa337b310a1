"""Every export format of `conform` reads back, through its own OTIO adapter, as the conformed cut.

Real media (written with `VideoWriter`, carrying a 01:00:00:00 timecode) at 23.976, 25 and 29.97
fps; a one-track cut (the shape every format can hold: an EDL has a single video track) with an
edited clip, a gap and an untouched clip; the conformed OTIO is the reference each format is
compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import opentimelineio as otio
import pytest
from opentimelineio.opentime import RationalTime, TimeRange
from test_pipeline import _timeline

from studio_nova.cut.conform import RenderedShot, conform
from studio_nova.cut.ingest import seconds
from studio_nova.cut.paths import path_of_url
from studio_nova.errors import ConformError
from studio_nova.media.encode import VideoWriter
from studio_nova.media.timecode import frames_to_timecode, nominal_fps, snap_rate

W, H = 64, 36
FORMATS = ("fcp_xml", "cmx_3600", "fcpx_xml", "AAF")
# (exact rate of the media, the float rate NLE exports put in the cut)
RATES = {
    "23.976": (Fraction(24000, 1001), 23.976),
    "25": (Fraction(25), 25.0),
    "29.97": (Fraction(30000, 1001), 29.97),
}


# ---------------------------------------------------------------------------------- helpers


def _write(path: Path, frames: int, rate: Fraction, timecode: str, size=(W, H)) -> Path:
    width, height = size
    with VideoWriter(
        path, width=width, height=height, rate=rate, codec="prores_hq", input_dtype=np.uint8,
        timecode=timecode,
    ) as writer:
        for i in range(frames):
            writer.write(np.full((height, width, 3), (i * 20) % 256, np.uint8))
    return path


def _clip(name: str, media: Path, start: int, duration: int, rate: float, media_frames: int,
          edit: dict | None = None) -> otio.schema.Clip:
    """A clip `start` frames into media that starts at 01:00:00:00 (timecode of its first frame)."""
    tc = 3600 * nominal_fps(snap_rate(rate))
    clip = otio.schema.Clip(
        name=name,
        media_reference=otio.schema.ExternalReference(
            target_url=str(media),
            available_range=TimeRange(RationalTime(tc, rate), RationalTime(media_frames, rate)),
        ),
        source_range=TimeRange(RationalTime(tc + start, rate), RationalTime(duration, rate)),
    )
    if edit is not None:
        clip.metadata["studio_nova"] = {"edit": edit}
    return clip


def _gap(duration: int, rate: float) -> otio.schema.Gap:
    span = TimeRange(RationalTime(0, rate), RationalTime(duration, rate))
    return otio.schema.Gap(source_range=span)


@dataclass(frozen=True)
class Conformed:
    rate: Fraction
    written: dict[str, Path]
    render: Path
    plate: Path


@pytest.fixture(scope="module", params=list(RATES), ids=list(RATES))
def conformed(request, tmp_path_factory) -> Conformed:
    """sh010 (edited: source 01:00:00:05, 6 frames), a 3-frame gap, sh020 (untouched, 8 frames)."""
    rate, cut_rate = RATES[request.param]
    root = tmp_path_factory.mktemp(f"conform_{request.param}")
    plate = _write(root / "A001.mov", 24, rate, "01:00:00:00")
    cut = _timeline(
        root / "cut.otio",
        [
            _clip("sh010", plate, 5, 6, cut_rate, 24, edit={"instruction": "pink sky"}),
            _gap(3, cut_rate),
            _clip("sh020", plate, 12, 8, cut_rate, 24),
        ],
    )
    # The render covers source frames 5..10 and carries the clip's source timecode.
    (root / "renders").mkdir()
    render = _write(root / "renders" / "sh010_v001.mov", 6, rate, "01:00:00:05")
    shot = RenderedShot(key="V1/0", path=render, version=1, first_frame=5, last_frame=10, rate=rate)
    written = conform(cut, {"V1/0": shot}, root / "out" / "conformed.otio", formats=FORMATS)
    return Conformed(rate, written, render, plate)


def _read(fmt: str, path: Path, rate: Fraction) -> otio.schema.Timeline:
    # An EDL carries no rate: it is read at the cut's. OTIO 0.18 refuses the rounded NTSC
    # floats (23.976) as timecode rates, so the exact rate is passed as a float.
    options = {"rate": float(rate)} if fmt == "cmx_3600" else {}
    return otio.adapters.read_from_file(str(path), adapter_name=fmt, **options)


def _time(t: RationalTime) -> tuple[float, Fraction]:
    """Frame count and exact rate: 86405 @ 23.976 and 86405 @ 23.976023976… are the same time."""
    return t.value, snap_rate(t.rate)


def _facts(timeline: otio.schema.Timeline, base: Path, *, times: bool = True,
           media_range: bool = True) -> list[dict]:
    """What the formats promise to keep, clip by clip."""
    rows = []
    for clip in timeline.find_clips():
        ref = clip.media_reference
        row = {"name": clip.name, "media": path_of_url(ref.target_url, base)}
        if times:
            used = clip.source_range
            row["source"] = (_time(used.start_time), _time(used.duration))
            row["timecode"] = frames_to_timecode(
                int(used.start_time.value), snap_rate(used.start_time.rate), drop_frame=False
            )
            row["record"] = _time(clip.trimmed_range_in_parent().start_time)
            if media_range:
                available = ref.available_range
                row["available"] = (_time(available.start_time), _time(available.duration))
        rows.append(row)
    return rows


def _seconds(value: str | None) -> Fraction:
    """An FCPXML time ('1001/4000s', '3600s', '0s') in exact seconds."""
    return Fraction(value.removesuffix("s")) if value else Fraction(0)


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("fmt", FORMATS)
def test_when_the_cut_is_conformed_to_a_format_then_it_reads_back_as_the_conformed_cut(
    conformed, fmt
):
    base = conformed.written["otio"].parent
    reference = otio.adapters.read_from_file(str(conformed.written["otio"]))
    want = _facts(reference, base)
    # The reference itself: the edited clip is relinked to its render, same timing.
    assert [(r["name"], r["media"], r["timecode"]) for r in want] == [
        ("sh010", conformed.render, "01:00:00:05"),
        ("sh020", conformed.plate, "01:00:00:12"),
    ]
    assert [(r["source"][1][0], r["record"][0]) for r in want] == [(6, 0), (8, 9)]
    assert want[0]["available"] == want[0]["source"]

    back = _read(fmt, conformed.written[fmt], conformed.rate)

    # An EDL has no media ranges (only source and record timecodes), so nothing to compare.
    media_range = fmt != "cmx_3600"
    # OTIO's fcpx reader turns frameDuration 1001/24000s into int(23.976) = 23 fps (30000/1001
    # into 29), so at NTSC rates its times cannot equal any cut's; the file itself holds them
    # exactly (checked in the fcpx test below), and names and media still read back here.
    times = not (fmt == "fcpx_xml" and conformed.rate.denominator != 1)
    assert _facts(back, base, times=times, media_range=media_range) == _facts(
        reference, base, times=times, media_range=media_range
    ), fmt
    if fmt == "cmx_3600":
        # The EDL keeps the render's URL only as a comment line, which the adapter reads back.
        text = conformed.written[fmt].read_text()
        assert f"* FROM CLIP: {conformed.render.as_uri()}" in text


def test_when_the_cut_is_conformed_to_fcpx_xml_then_formats_and_times_are_exact_frames(conformed):
    path = conformed.written["fcpx_xml"]
    base = path.parent
    document = ElementTree.parse(path).getroot()
    reference = otio.adapters.read_from_file(str(conformed.written["otio"]))

    # One format: the media's rate as an exact frame duration and its frame size. 64x36 is no
    # predefined Final Cut Pro format, so it has no name and the attributes describe it.
    (fmt,) = document.findall("./resources/format")
    assert _seconds(fmt.get("frameDuration")) == 1 / conformed.rate
    assert {k: fmt.get(k) for k in ("width", "height", "name")} == {
        "width": str(W), "height": str(H), "name": None
    }
    format_id = fmt.get("id")
    assets = {a.get("id"): a for a in document.iter("asset")}
    assert {a.get("format") for a in assets.values()} == {format_id}
    assert {s.get("format") for s in document.iter("sequence")} == {format_id}

    # Every clip's times are the conformed cut's, in exact seconds (so on frame boundaries).
    got = []
    for element in document.iter("clip"):
        asset = assets[element.find("video").get("ref")]
        got.append({
            "name": element.get("name"),
            "media": path_of_url(asset.get("src"), base),
            "start": _seconds(element.get("start")),
            "duration": _seconds(element.get("duration")),
            "record": _seconds(element.get("offset")),
            "available": (_seconds(asset.get("start")), _seconds(asset.get("duration"))),
        })
    want = [
        {
            "name": clip.name,
            "media": path_of_url(clip.media_reference.target_url, base),
            "start": seconds(clip.source_range.start_time),
            "duration": seconds(clip.source_range.duration),
            "record": seconds(clip.trimmed_range_in_parent().start_time),
            "available": (
                seconds(clip.media_reference.available_range.start_time),
                seconds(clip.media_reference.available_range.duration),
            ),
        }
        for clip in reference.find_clips()
    ]
    assert got == want
    # FCPXML's src is a URL; the untouched clip's plain path became one.
    assert all(a.get("src").startswith("file:///") for a in assets.values())


def test_when_the_render_is_hd_then_the_fcpx_format_is_the_predefined_one(tmp_path):
    rate = Fraction(24000, 1001)
    render = _write(tmp_path / "sh010_v001.mov", 2, rate, "01:00:00:00", size=(1920, 1080))
    cut = _timeline(
        tmp_path / "cut.otio",
        [
            _clip("sh010", render, 0, 2, 23.976, 2, edit={"instruction": "x"}),
            # Offline media: it cannot be probed, so its asset takes the project's format.
            _clip("sh020", tmp_path / "offline.mov", 0, 4, 23.976, 4),
        ],
    )
    shot = RenderedShot(key="V1/0", path=render, version=1, first_frame=0, last_frame=1, rate=rate)
    written = conform(cut, {"V1/0": shot}, tmp_path / "out" / "c.otio", formats=("fcpx_xml",))

    document = ElementTree.parse(written["fcpx_xml"]).getroot()
    (fmt,) = document.findall("./resources/format")
    assert fmt.attrib == {
        "id": fmt.get("id"),
        "name": "FFVideoFormat1080p2398",
        "frameDuration": "1001/24000s",
        "width": "1920",
        "height": "1080",
    }
    assert {a.get("format") for a in document.iter("asset")} == {fmt.get("id")}
    back = otio.adapters.read_from_file(str(written["fcpx_xml"]), adapter_name="fcpx_xml")
    assert [c.name for c in back.find_clips()] == ["sh010", "sh020"]


def test_when_an_ntsc_cut_has_connected_clips_then_fcpx_xml_is_refused_and_nothing_is_written(
    tmp_path,
):
    rate = Fraction(24000, 1001)
    plate = _write(tmp_path / "A001.mov", 8, rate, "01:00:00:00")
    cut = _timeline(tmp_path / "cut.otio", [_clip("sh010", plate, 0, 4, 23.976, 8)])
    timeline = otio.adapters.read_from_file(str(cut))
    upper = otio.schema.Track(name="V2", kind=otio.schema.TrackKind.Video)
    upper.append(_clip("title", plate, 2, 2, 23.976, 8))
    timeline.tracks.append(upper)
    otio.adapters.write_to_file(timeline, str(cut))
    out = tmp_path / "out" / "c.otio"

    with pytest.raises(ConformError, match=r"fcpx_xml cannot represent .*'V2'.*24, 25, 30, 50, 60"):
        conform(cut, {}, out, formats=("fcp_xml", "fcpx_xml"))

    assert list(out.parent.iterdir()) == []
