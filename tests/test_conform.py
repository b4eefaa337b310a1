"""Conform: the cut comes back with rendered shots relinked and its timing untouched.

Cuts are built in code, media and "renders" are real files made with ffmpeg, and the
conformed files are read back through OTIO and its adapters.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import opentimelineio as otio
import pytest
from opentimelineio.opentime import RationalTime, TimeRange

from studio_nova.config import Settings
from studio_nova.cut.conform import RenderedShot, conform
from studio_nova.cut.ingest import ingest, iter_video_clips
from studio_nova.errors import ConformError

NTSC = 23.976  # how OTIO (and most NLE exports) store 24000/1001
TC = 86400  # 01:00:00:00 at 24 frames per timecode second
SETTINGS = Settings()


# ---------------------------------------------------------------------------------- helpers


def make_movie(
    path: Path, frames: int, rate: str = "24000/1001", timecode: str | None = "01:00:00:00"
) -> Path:
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=64x36:rate={rate}",
        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    ]
    if timecode:
        cmd += ["-timecode", timecode]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True)
    return path


def clip(
    name: str,
    media: Path,
    start: int,
    duration: int,
    rate: float = NTSC,
    *,
    marker: str | None = None,
    edit: dict | None = None,
) -> otio.schema.Clip:
    ref = otio.schema.ExternalReference(
        target_url=str(media), available_range=TimeRange(RationalTime(TC, rate), RationalTime(48, rate))
    )
    item = otio.schema.Clip(
        name=name,
        media_reference=ref,
        source_range=TimeRange(RationalTime(start, rate), RationalTime(duration, rate)),
    )
    if marker:
        at = TimeRange(RationalTime(start, rate), RationalTime(0, rate))
        item.markers.append(otio.schema.Marker(name=marker, marked_range=at))
    if edit:
        item.metadata["studio_nova"] = {"edit": edit}
    return item


def gap(duration: int, rate: float = NTSC) -> otio.schema.Gap:
    return otio.schema.Gap(source_range=TimeRange(RationalTime(0, rate), RationalTime(duration, rate)))


def track(kind: str, *items: otio.core.Composable) -> otio.schema.Track:
    out = otio.schema.Track(kind=kind)
    for item in items:
        out.append(item)
    return out


def layout(composition: otio.core.Composition) -> list:
    """Every item, recursively: type, kind, name and duration (trimmed), tracks included."""
    out = []
    for child in composition:
        duration = None if isinstance(child, otio.schema.Transition) else child.duration().to_frames()
        row = [type(child).__name__, getattr(child, "kind", None), child.name, duration]
        if isinstance(child, otio.core.Composition):
            row.append(layout(child))
        out.append(row)
    return out


def all_items(timeline: otio.schema.Timeline) -> list[otio.core.Composable]:
    return list(timeline.find_children(shallow_search=False))


def render_for(shot, folder: Path, version: int = 1, *, timecode: str | None = None) -> RenderedShot:
    """A real master with exactly the shot's frame count, as the renderer would write it."""
    rate = shot.info.rate
    master = make_movie(
        folder / f"{shot.name}_v{version:03d}.mov",
        shot.frame_count,
        rate=f"{rate.numerator}/{rate.denominator}",
        timecode=timecode,
    )
    proxy = folder / f"{shot.name}_v{version:03d}_proxy.mp4"
    proxy.write_bytes(b"proxy")
    return RenderedShot(
        key=shot.key,
        path=master,
        version=version,
        first_frame=shot.first_frame,
        last_frame=shot.last_frame,
        rate=shot.info.rate,
        qc={"bg_ssim": 0.97, "seams": [0.01, 0.02], "passed": True},
        proxy=proxy,
    )


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture()
def cut_dir(tmp_path) -> Path:
    folder = tmp_path / "cut"
    folder.mkdir()
    make_movie(folder / "plate.mov", 48)
    (tmp_path / "renders").mkdir()
    (tmp_path / "out").mkdir()
    return folder


def nested_cut(folder: Path) -> Path:
    plate = folder / "plate.mov"
    stack = otio.schema.Stack(name="nest")
    stack.append(track("Video", clip("N1", plate, TC + 20, 6, marker="NOVA: warm")))
    stack.append(track("Video", gap(2), clip("N2", plate, TC + 30, 4)))
    dissolve = otio.schema.Transition(in_offset=RationalTime(2, NTSC), out_offset=RationalTime(2, NTSC))
    timeline = otio.schema.Timeline(name="reel 2", global_start_time=RationalTime(TC, NTSC))
    timeline.metadata["studio"] = {"show": "demo"}
    timeline.tracks.append(
        track(
            "Video",
            clip("A", plate, TC + 2, 10, edit={"instruction": "pink sky", "seed": 4}),
            gap(4),
            clip("B", plate, TC + 10, 12, marker="NOVA: snow"),
            dissolve,
            clip("C", plate, TC + 5, 8),
            stack,
        )
    )
    timeline.tracks.append(track("Audio", clip("music", plate, TC, 30, marker="NOVA: ignored")))
    timeline.tracks.append(track("Video", gap(20), clip("D", plate, TC + 39, 9, marker="NOVA: sharpen")))
    path = folder / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


def flat_cut(folder: Path, name: str = "flat.otio") -> Path:
    """One video track at 24 fps: the shape every adapter can write."""
    plate = folder / "plate24.mov"
    if not plate.exists():
        make_movie(plate, 48, rate="24")
    timeline = otio.schema.Timeline(name="flat")
    timeline.tracks.append(
        track(
            "Video",
            clip("sh010", plate, TC + 4, 10, 24.0, marker="NOVA: paint it red"),
            gap(6, 24.0),
            clip("sh020", plate, TC + 20, 12, 24.0),
        )
    )
    path = folder / name
    otio.adapters.write_to_file(timeline, str(path))
    return path


# ---------------------------------------------------------------------------------- conform


def test_when_shots_are_rendered_then_the_conformed_cut_keeps_its_timing_and_relinks_them(cut_dir):
    cut_path = nested_cut(cut_dir)
    cut = ingest(cut_path, SETTINGS)
    assert [s.name for s in cut.shots] == ["A", "B", "N1", "D"]
    renders_dir = cut_dir.parent / "renders"
    renders = {
        s.key: render_for(s, renders_dir, version=2 if s.name == "B" else 1)
        for s in cut.shots
        if s.name != "D"
    }
    out = cut_dir.parent / "out" / "conformed.otio"

    written = conform(cut_path, renders, out)

    assert written == {"otio": out}
    assert sorted(p.name for p in out.parent.iterdir()) == ["conformed.otio"]  # no temp left
    before = otio.adapters.read_from_file(str(cut_path))
    after = otio.adapters.read_from_file(str(out))

    # Same tracks, same items, same durations, all the way down.
    assert layout(after.tracks) == layout(before.tracks)
    assert [t.duration() for t in after.tracks] == [t.duration() for t in before.tracks]
    assert after.duration() == before.duration()
    assert (after.name, after.global_start_time, after.metadata["studio"]["show"]) == (
        "reel 2", RationalTime(TC, NTSC), "demo"
    )

    # Edited clips point at their render, whose range is exactly the clip's source range.
    clips_before = dict(iter_video_clips(before))
    clips_after = dict(iter_video_clips(after))
    for key, render in renders.items():
        edited = clips_after[key]
        assert edited.source_range == clips_before[key].source_range
        assert edited.media_reference.target_url == render.path.as_uri()
        assert edited.media_reference.available_range == edited.source_range
        assert json.loads(edited.to_json_string())["metadata"]["studio_nova"]["render"] == {
            "version": render.version,
            "path": str(render.path),
            "proxy": str(render.proxy),
            "qc": {"bg_ssim": 0.97, "seams": [0.01, 0.02], "passed": True},
            "first_frame": render.first_frame,
            "last_frame": render.last_frame,
            "original_media": str(cut_dir / "plate.mov"),
        }
    assert clips_after["V1/0"].metadata["studio_nova"]["edit"]["instruction"] == "pink sky"

    # Everything else is byte-for-byte the same object.
    edited_names = {clips_before[k].name for k in renders}
    pairs = list(zip(all_items(before), all_items(after), strict=True))
    untouched = [(b, a) for b, a in pairs if b.name not in edited_names]
    assert len(untouched) == len(pairs) - 3
    assert {b.name for b, _ in untouched} >= {"C", "N2", "D", "music", "nest"}
    for b, a in untouched:
        if isinstance(b, otio.core.Composition):
            continue  # a track holding an edited clip differs through that clip only
        assert a.to_json_string() == b.to_json_string()

    # Re-ingesting the conformed cut finds each render's frames 0..n-1 at the same record time.
    again = {s.name: s for s in ingest(out, SETTINGS).shots}
    for shot in cut.shots:
        relinked = again[shot.name]
        if shot.key in renders:
            assert relinked.media == renders[shot.key].path
            assert (relinked.first_frame, relinked.last_frame) == (0, shot.frame_count - 1)
        else:
            assert (relinked.media, relinked.first_frame, relinked.last_frame) == (
                shot.media, shot.first_frame, shot.last_frame
            )
        assert relinked.record_in == shot.record_in


def test_when_formats_are_asked_then_xml_edl_and_fcpxml_are_written_next_to_the_otio(cut_dir):
    cut_path = flat_cut(cut_dir)
    (shot,) = ingest(cut_path, SETTINGS).shots
    # Give the master the clip's source timecode, as EDL/XML relinking expects.
    render = render_for(shot, cut_dir.parent / "renders", timecode="01:00:00:04")
    out = cut_dir.parent / "out" / "conformed.otio"

    formats = ("fcp_xml", "cmx_3600", "fcpx_xml", "AAF")
    written = conform(cut_path, {shot.key: render}, out, formats=formats)

    folder = out.parent
    assert written == {
        "otio": out,
        "fcp_xml": folder / "conformed.xml",
        "cmx_3600": folder / "conformed.edl",
        "fcpx_xml": folder / "conformed.fcpxml",
        "AAF": folder / "conformed.aaf",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written.values())
    original = otio.adapters.read_from_file(str(cut_path))
    want = [(c.name, c.source_range.duration.to_frames()) for c in original.find_clips()]
    for fmt, path in written.items():
        back = otio.adapters.read_from_file(str(path), **({"rate": 24} if fmt == "cmx_3600" else {}))
        clips = list(back.find_clips())
        assert [(c.name, round(c.source_range.duration.to_frames())) for c in clips] == want, fmt
        assert clips[0].media_reference.target_url.endswith("sh010_v001.mov"), fmt
        assert not clips[1].media_reference.target_url.endswith("_v001.mov"), fmt
    # The conformed EDL (no available ranges) relinks through the render's timecode.
    (relinked,) = ingest(written["cmx_3600"], SETTINGS).shots
    assert (relinked.media, relinked.first_frame, relinked.last_frame) == (render.path, 0, 9)


def test_when_an_adapter_cannot_represent_the_cut_then_conform_error_and_nothing_is_written(cut_dir):
    cut_path = nested_cut(cut_dir)
    shot = ingest(cut_path, SETTINGS).shots[0]
    out = cut_dir.parent / "out" / "conformed.otio"

    renders = {shot.key: render_for(shot, cut_dir.parent / "renders")}
    with pytest.raises(ConformError, match="cmx_3600 cannot represent this cut: .*single video") as caught:
        conform(cut_path, renders, out, formats=("cmx_3600",))

    assert caught.value.path == out.with_suffix(".edl")
    assert list(out.parent.iterdir()) == []


def _bad(render: RenderedShot, **changes) -> RenderedShot:
    fields = {**render.__dict__, **changes}
    return RenderedShot(**fields)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("short", r"clip 'sh010' is 10 frames at 24 fps but the render has 9"),
        ("moved", r"starts at source frame 4 but the render starts at 3"),
        ("missing", r"render file is missing"),
        ("unknown_key", r"no video clip at 'V7/0'"),
        ("bad_qc", r"not JSON data"),
    ],
)
def test_when_a_render_does_not_fit_its_clip_then_conform_error_names_it(cut_dir, case, reason):
    cut_path = flat_cut(cut_dir)
    (shot,) = ingest(cut_path, SETTINGS).shots
    good = render_for(shot, cut_dir.parent / "renders")
    renders = {
        "short": {shot.key: _bad(good, last_frame=good.last_frame - 1)},
        "moved": {shot.key: _bad(good, first_frame=3, last_frame=12)},
        "missing": {shot.key: _bad(good, path=good.path.with_name("nope.mov"))},
        "unknown_key": {"V7/0": _bad(good, key="V7/0")},
        "bad_qc": {shot.key: _bad(good, qc={"when": object()})},
    }[case]
    out = cut_dir.parent / "out" / "conformed.otio"

    with pytest.raises(ConformError, match=reason) as caught:
        conform(cut_path, renders, out)

    assert caught.value.path == cut_path
    assert list(out.parent.iterdir()) == []


def test_when_a_format_is_unknown_then_conform_error_lists_the_known_ones(cut_dir):
    cut_path = flat_cut(cut_dir)
    with pytest.raises(ConformError, match="unknown conform format.*'avid'.*fcp_xml"):
        conform(cut_path, {}, cut_dir.parent / "out" / "conformed.otio", formats=("avid",))


def test_render_rate_keeps_the_clip_rate_value_at_ntsc(cut_dir):
    """At 23.976 the render's range reuses the clip's own float rate: no sub-frame offset."""
    cut_path = nested_cut(cut_dir)
    shot = ingest(cut_path, SETTINGS).shots[0]
    assert shot.info.rate == Fraction(24000, 1001)
    out = cut_dir.parent / "out" / "conformed.otio"
    conform(cut_path, {shot.key: render_for(shot, cut_dir.parent / "renders")}, out)

    relinked = dict(iter_video_clips(otio.adapters.read_from_file(str(out))))[shot.key]
    available = relinked.media_reference.available_range
    assert (available.start_time.value, available.start_time.rate) == (TC + 2, NTSC)
    assert (available.duration.value, available.duration.rate) == (10, NTSC)


def test_when_the_output_is_the_editors_cut_then_conform_refuses_to_overwrite_it(cut_dir):
    cut_path = flat_cut(cut_dir)
    before = cut_path.read_bytes()
    with pytest.raises(ConformError, match="would overwrite the editor's cut"):
        conform(cut_path, {}, cut_path)
    assert cut_path.read_bytes() == before
