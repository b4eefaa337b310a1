"""Ingest: reading cuts, addressing clips, edit requests and source-frame numbers.

Every cut is built in code and every media file is made with ffmpeg here, so each expected
frame number is known exactly.
"""

from __future__ import annotations

import hashlib
import subprocess
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import opentimelineio as otio
import pytest
from opentimelineio.opentime import RationalTime, TimeRange

from studio_nova.config import Settings
from studio_nova.cut.ingest import (
    EditRequest,
    _edit_request,
    edit_request_of,
    ingest,
    iter_video_clips,
    read_timeline,
)
from studio_nova.errors import (
    EditRequestError,
    MediaError,
    MediaRangeError,
    TimelineError,
)

MEDIA_FRAMES = 48
SETTINGS = Settings(default_editor="recolor", default_params={"hue": 0.25}, default_seed=7)

# Rate as ffmpeg gets it, rate as OTIO stores it, exact frames of 01:00:00:00 (non-drop).
RATES = [
    ("24000/1001", 23.976, 86400),
    ("24000/1001", 23.98, 86400),
    ("24", 24.0, 86400),
    ("25", 25.0, 90000),
    ("30000/1001", 29.97, 108000),
    ("30", 30.0, 108000),
    ("50", 50.0, 180000),
    ("60000/1001", 59.94, 216000),
]


# ---------------------------------------------------------------------------------- helpers


def make_media(
    path: Path, rate: str = "24", frames: int = MEDIA_FRAMES, timecode: str | None = "01:00:00:00"
) -> Path:
    """A tiny real movie: testsrc2 at `rate`, `frames` frames, optional start timecode."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=64x36:rate={rate}",
        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    ]
    if timecode:
        cmd += ["-timecode", timecode]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True)
    return path


def rt(value: float, rate: float = 24.0) -> RationalTime:
    return RationalTime(value, rate)


def clip(
    name: str,
    url: str | None,
    start: float,
    duration: float,
    rate: float = 24.0,
    *,
    available: tuple[float, float] | None = (86400, MEDIA_FRAMES),
    edit: dict | None = None,
    marker: str | None = None,
) -> otio.schema.Clip:
    if url is None:
        ref: otio.core.MediaReference = otio.schema.MissingReference()
    else:
        avail = TimeRange(rt(available[0], rate), rt(available[1], rate)) if available else None
        ref = otio.schema.ExternalReference(target_url=url, available_range=avail)
    item = otio.schema.Clip(
        name=name, media_reference=ref, source_range=TimeRange(rt(start, rate), rt(duration, rate))
    )
    if edit is not None:
        item.metadata["studio_nova"] = {"edit": edit}
    if marker is not None:
        at = TimeRange(rt(start, rate), rt(0, rate))
        item.markers.append(otio.schema.Marker(name=marker, marked_range=at))
    return item


def gap(duration: float, rate: float = 24.0) -> otio.schema.Gap:
    return otio.schema.Gap(source_range=TimeRange(rt(0, rate), rt(duration, rate)))


def dissolve(half: float, rate: float = 24.0) -> otio.schema.Transition:
    return otio.schema.Transition(in_offset=rt(half, rate), out_offset=rt(half, rate))


def track(kind: str, *items: otio.core.Composable, name: str = "") -> otio.schema.Track:
    out = otio.schema.Track(name=name, kind=kind)
    for item in items:
        out.append(item)
    return out


def save(timeline: otio.schema.Timeline, path: Path) -> Path:
    otio.adapters.write_to_file(timeline, str(path))
    return path


def shot_table(cut) -> list[tuple]:
    return [(s.key, s.name, s.media, s.first_frame, s.last_frame, s.record_in) for s in cut.shots]


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    (folder / "sub").mkdir()
    return {
        "abs": make_media(folder / "plate.mov"),
        "space": make_media(folder / "plate with space.mov"),
        "rel": make_media(folder / "sub" / "relative.mov"),
        "no_tc": make_media(folder / "no_tc.mov", timecode=None),
    }


def nested_cut(media: dict[str, Path]) -> otio.schema.Timeline:
    """Two video tracks, an audio track between them, a nested stack, gaps and a transition.

    V1: A(10) gap(5) B(12) ⨯ C(8) [stack: V1 N1(6) | A1 audio | V2 gap(2) N2(4)]
    A1: audio clip that asks for an edit (must be ignored)
    V2: gap(20) D(9)
    """
    edit = {
        "instruction": "make the sky pink", "editor": "artist", "params": {"strength": 0.5}, "seed": 3
    }
    space_url = media["space"].as_uri()  # file:///…/plate%20with%20space.mov
    stack = otio.schema.Stack(name="nest")
    stack.append(track("Video", clip("N1", str(media["abs"]), 86420, 6, marker="NOVA: warm it up")))
    stack.append(track("Audio", clip("NA", str(media["abs"]), 86400, 6, marker="NOVA: ignored")))
    n2 = clip("N2", "sub/relative.mov", 86430, 4, edit={"instruction": "blur"})
    stack.append(track("Video", gap(2), n2))
    timeline = otio.schema.Timeline(name="reel 1")
    timeline.tracks.append(
        track(
            "Video",
            clip("A", str(media["abs"]), 86402, 10, edit=edit),
            gap(5),
            clip("B", space_url, 86410, 12, marker="NOVA: add snow"),
            dissolve(2),
            clip("C", str(media["abs"]), 86400, 8),  # no request: not a shot
            stack,
        )
    )
    timeline.tracks.append(track("Audio", clip("music", str(media["abs"]), 86400, 30, edit=edit)))
    d = clip("D", space_url, 86439, 9, marker="NOVA: sharpen")
    timeline.tracks.append(track("Video", gap(20), d))
    return timeline


# ------------------------------------------------------------------------------ reading cuts


def test_clip_keys_address_video_clips_through_nested_stacks_and_skip_audio():
    timeline = otio.schema.Timeline()
    stack = otio.schema.Stack()
    stack.append(track("Video", clip("N1", "/x.mov", 0, 1)))
    stack.append(track("Audio", clip("NA", "/x.mov", 0, 1)))
    stack.append(track("Video", gap(1), clip("N2", "/x.mov", 0, 1)))
    timeline.tracks.append(
        track(
            "Video",
            clip("A", "/x.mov", 0, 1),
            gap(1),
            clip("B", "/x.mov", 0, 2),
            dissolve(1),
            clip("C", "/x.mov", 0, 2),
            stack,
        )
    )
    timeline.tracks.append(track("Audio", clip("M", "/x.mov", 0, 1)))
    muted = clip("E", "/x.mov", 0, 1)
    muted.enabled = False  # switched off in the NLE: not part of the picture, not a shot
    timeline.tracks.append(track("Video", gap(1), muted, clip("D", "/x.mov", 0, 1)))

    keys = [(key, item.name) for key, item in iter_video_clips(timeline)]

    assert keys == [
        ("V1/0", "A"), ("V1/2", "B"), ("V1/4", "C"),
        ("V1/5/V1/0", "N1"), ("V1/5/V2/1", "N2"),
        ("V2/2", "D"),
    ]


def test_when_a_cut_has_tracks_stacks_gaps_and_transitions_then_every_marked_video_clip_is_a_shot(
    tmp_path, media
):
    path = save(nested_cut(media), tmp_path / "cut.otio")
    # The cut lives in another folder than the media: the relative path must resolve against
    # the cut's folder, so put a copy of the relative layout next to it.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "relative.mov").write_bytes(media["rel"].read_bytes())

    cut = ingest(path, SETTINGS)

    assert cut.name == "reel 1"
    assert cut.rate == 24
    assert cut.problems == []
    # record_in: A at 0, gap 5 → B at 15, B 12 (the dissolve takes no time) → C at 27,
    # stack at 35: N1 at 35, N2 after a 2-frame gap at 37; V2: D after 20 frames of gap.
    assert shot_table(cut) == [
        ("V1/0", "A", media["abs"], 2, 11, 0),
        ("V1/2", "B", media["space"], 10, 21, 15),
        ("V1/5/V1/0", "N1", media["abs"], 20, 25, 35),
        ("V1/5/V2/1", "N2", tmp_path / "sub" / "relative.mov", 30, 33, 37),
        ("V2/1", "D", media["space"], 39, 47, 20),
    ]
    by_name = {s.name: s for s in cut.shots}
    assert by_name["A"].edit == EditRequest("make the sky pink", "artist", {"strength": 0.5}, 3)
    assert by_name["B"].edit == EditRequest("add snow", "recolor", {"hue": 0.25}, 7)
    assert by_name["N2"].edit == EditRequest("blur", "recolor", {"hue": 0.25}, 7)
    assert by_name["D"].frame_count == 9
    assert all(s.media.is_absolute() and s.info.frame_count == MEDIA_FRAMES for s in cut.shots)
    assert all(s.timeline_rate == 24 for s in cut.shots)


@pytest.mark.parametrize(("ff_rate", "otio_rate", "tc_frames"), RATES, ids=[str(r[1]) for r in RATES])
def test_when_media_starts_at_one_hour_then_first_frame_is_exact_at_every_rate(
    tmp_path, ff_rate, otio_rate, tc_frames
):
    movie = make_media(tmp_path / "m.mov", rate=ff_rate, frames=24)
    timeline = otio.schema.Timeline(name="rates")
    timeline.tracks.append(
        track(
            "Video",
            # available_range given: first = 7 − 0
            clip(
                "with_range", str(movie), tc_frames + 7, 10, otio_rate,
                available=(tc_frames, 24), marker="NOVA: x",
            ),
            gap(3, otio_rate),
            # no available_range: the file's embedded timecode (01:00:00:00) stands in
            clip(
                "by_timecode", str(movie), tc_frames + 13, 11, otio_rate,
                available=None, marker="NOVA: y",
            ),
        )
    )
    cut = ingest(save(timeline, tmp_path / "rates.otio"), SETTINGS)

    assert cut.problems == []
    assert cut.rate == Fraction(ff_rate)
    assert [(s.first_frame, s.last_frame, s.record_in) for s in cut.shots] == [(7, 16, 0), (13, 23, 13)]
    assert cut.shots[0].info.rate == Fraction(ff_rate)


def test_when_clip_rate_differs_from_media_rate_then_frames_are_rescaled(tmp_path):
    """A 48-frame 50 fps file cut on a 25 fps timeline: 1 s in is frame 50 of the media."""
    movie = make_media(tmp_path / "m50.mov", rate="50", frames=120)
    timeline = otio.schema.Timeline()
    timeline.tracks.append(
        track(
            "Video",
            clip("s", str(movie), 90000 + 25, 10, 25.0, available=(90000, 60), marker="NOVA: go"),
        )
    )
    (shot,) = ingest(save(timeline, tmp_path / "c.otio"), SETTINGS).shots
    assert (shot.first_frame, shot.last_frame) == (50, 69)


# ----------------------------------------------------------------- other formats, same shots


def _flat_cut(media: dict[str, Path]) -> otio.schema.Timeline:
    timeline = otio.schema.Timeline(name="flat")
    timeline.tracks.append(
        track(
            "Video",
            clip("sh010", str(media["abs"]), 86404, 10, marker="NOVA: paint it red"),
            gap(6),
            clip("sh020", str(media["abs"]), 86420, 12),
            clip("sh030", str(media["abs"]), 86430, 15, marker="NOVA: add fog"),
        )
    )
    return timeline


EXPECTED_FLAT = [("sh010", 4, 13, 0, "paint it red"), ("sh030", 30, 44, 28, "add fog")]


@pytest.mark.parametrize(
    ("adapter", "suffix"), [("cmx_3600", ".edl"), ("fcp_xml", ".xml"), ("fcpx_xml", ".fcpxml")]
)
def test_when_the_cut_comes_as_edl_or_xml_then_the_shots_are_the_same(tmp_path, media, adapter, suffix):
    path = tmp_path / f"flat{suffix}"
    otio.adapters.write_to_file(_flat_cut(media), str(path), adapter_name=adapter)

    cut = ingest(path, SETTINGS)

    assert cut.problems == []
    # EDLs store marker names in upper case: compare instructions case-blind.
    got = [
        (s.name, s.first_frame, s.last_frame, s.record_in, s.edit.instruction.lower())
        for s in cut.shots
    ]
    assert got == EXPECTED_FLAT
    assert all(s.media == media["abs"] for s in cut.shots)


def test_when_an_edl_is_read_at_its_own_rate_then_frames_follow_that_rate(tmp_path, media):
    movie = make_media(tmp_path / "p25.mov", rate="25", frames=50)
    timeline = otio.schema.Timeline()
    timeline.tracks.append(track("Video", clip("s", str(movie), 90000 + 20, 10, 25.0, marker="NOVA: x")))
    path = tmp_path / "c25.edl"
    otio.adapters.write_to_file(timeline, str(path), adapter_name="cmx_3600")

    (right,) = ingest(path, SETTINGS, edl_rate=25).shots
    assert (right.first_frame, right.last_frame, right.timeline_rate) == (20, 29, 25)
    # At the default 24 fps, source 01:00:00:20–01:00:01:05 is 9 frames against a 10-frame record.
    with pytest.raises(TimelineError, match="read at 24 fps") as caught:
        ingest(path, SETTINGS)
    assert caught.value.path == path


def test_when_the_cut_comes_as_aaf_then_the_clips_and_frames_are_the_same(tmp_path, media):
    """The AAF writer drops markers, so compare the clips themselves, not edit requests."""
    path = tmp_path / "flat.aaf"
    otio.adapters.write_to_file(_flat_cut(media), str(path), adapter_name="AAF", use_empty_mob_ids=True)

    timeline = read_timeline(path)
    got = [
        (key.split("/")[0], c.name, c.source_range.start_time.value, c.source_range.duration.value)
        for key, c in iter_video_clips(timeline)
    ]
    assert got == [("V1", "sh010", 86404, 10), ("V1", "sh020", 86420, 12), ("V1", "sh030", 86430, 15)]
    with pytest.raises(TimelineError, match="no clip carries an edit request"):
        ingest(path, SETTINGS)


# ------------------------------------------------------------------------------- edit requests


def test_marker_takes_the_configured_defaults_and_metadata_overrides_them():
    marked = clip("m", "/x.mov", 0, 1, marker="NOVA:   turn it to night  ")
    expected = EditRequest("turn it to night", "recolor", {"hue": 0.25}, 7)
    assert edit_request_of(marked, SETTINGS) == expected
    lower = clip("l", "/x.mov", 0, 1, marker="nova: lower case")
    assert edit_request_of(lower, SETTINGS).instruction == "lower case"

    both = clip("b", "/x.mov", 0, 1, edit={"instruction": "meta", "seed": 11}, marker="NOVA: marker")
    assert edit_request_of(both, SETTINGS) == EditRequest("meta", "recolor", {"hue": 0.25}, 11)

    plain = clip("p", "/x.mov", 0, 1, marker="just a note")
    assert edit_request_of(plain, SETTINGS) is None


def test_fingerprint_is_the_hash_of_sorted_json_and_ignores_key_order():
    one = EditRequest("sky", "recolor", {"b": 1, "a": [1, 2]}, 5)
    two = EditRequest("sky", "recolor", {"a": [1, 2], "b": 1}, 5)
    expected = hashlib.sha256(
        b'{"editor":"recolor","instruction":"sky","params":{"a":[1,2],"b":1},"seed":5}'
    ).hexdigest()
    assert one.fingerprint() == two.fingerprint() == expected
    assert EditRequest("sky", "recolor", {"b": 1, "a": [1, 2]}, 6).fingerprint() != expected


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"instruction": ""}, "instruction"),
        ({"editor": "recolor"}, "instruction"),
        ({"instruction": "x", "seed": "one"}, "seed"),
        ({"instruction": "x", "seed": True}, "seed"),
        ({"instruction": "x", "params": [1]}, "params"),
        ({"instruction": "x", "editor": 3}, "editor"),
        ({"instruction": "x", "sed": 1}, "unknown keys"),
        ("make it red", "must be a dict"),
        ({"kind": "relight", "instruction": "x"}, "kind must be"),
        ({"kind": "background"}, "needs background"),
        ({"kind": "background", "background": {"source": "plate"}, "params": {}}, "not params"),
        ({"kind": "background", "background": {"source": ""}}, "must name a plugin"),
        ({"kind": "background", "background": {"source": "still"}, "matte": "green"}, "matte must be a dict"),
        ({"instruction": "x", "background": {"source": "still"}}, "kind"),
    ],
)
def test_when_edit_metadata_is_malformed_then_edit_request_error_names_the_clip(edit, reason):
    bad = clip("sh040", "/x.mov", 0, 1)
    bad.metadata["studio_nova"] = {"edit": edit}
    with pytest.raises(EditRequestError, match=reason) as caught:
        edit_request_of(bad, SETTINGS)
    assert caught.value.shot == "sh040"
    assert "sh040" in str(caught.value)


def test_a_background_replacement_becomes_the_background_editors_params(tmp_path):
    marked = clip("sh050", "/x.mov", 0, 1, edit={
        "kind": "background",
        "background": {"source": "plate", "params": {"video": "plates/sea.mov", "loop": "hold"}},
        "matte": {"source": "file", "params": {"path": "/abs/matte.mov"}},
    })
    request = _edit_request(marked, SETTINGS, None, tmp_path)
    assert (request.kind, request.editor, request.instruction) == ("background", "background", "replace the background")
    assert request.params["background"] == {
        "source": "plate", "params": {"video": str(tmp_path / "plates" / "sea.mov"), "loop": "hold"}}
    assert request.params["matte"] == {"source": "file", "params": {"path": "/abs/matte.mov"}}
    assert request.params["composite"]["light_wrap"] == 0.15
    plain = EditRequest("sky", "recolor", {}, 0)
    assert EditRequest("sky", "recolor", {}, 0, kind="background").fingerprint() != plain.fingerprint()


def test_when_several_nova_markers_disagree_then_the_request_is_refused():
    item = clip("sh050", "/x.mov", 0, 1, marker="NOVA: red")
    item.markers.append(otio.schema.Marker(name="NOVA: blue"))
    with pytest.raises(EditRequestError, match="several"):
        edit_request_of(item, SETTINGS)


# ------------------------------------------------------------------------------- bad inputs


def test_when_some_clips_are_broken_then_they_are_problems_and_the_others_survive(tmp_path, media):
    seq = otio.schema.ImageSequenceReference(
        target_url_base="/seq/", name_prefix="f.", name_suffix=".exr"
    )
    seq_clip = clip("seq", "/x.mov", 86400, 5, marker="NOVA: x")
    seq_clip.media_reference = seq
    retimed = clip("retimed", str(media["abs"]), 86400, 5, marker="NOVA: x")
    retimed.effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    timeline = otio.schema.Timeline()
    timeline.tracks.append(
        track(
            "Video",
            clip("good", str(media["abs"]), 86410, 5, marker="NOVA: fine"),
            clip("gone", str(tmp_path / "missing.mov"), 86400, 5, marker="NOVA: x"),
            clip("offline", None, 86400, 5, marker="NOVA: x"),
            clip("too_long", str(media["abs"]), 86440, 20, marker="NOVA: x"),
            clip("before_start", str(media["abs"]), 86398, 5, marker="NOVA: x"),
            clip("bad_meta", str(media["abs"]), 86400, 5, edit={"instruction": "x", "seed": 1.5}),
            seq_clip,
            retimed,
            clip("good_too", str(media["no_tc"]), 3, 4, available=None, marker="NOVA: also fine"),
        )
    )

    cut = ingest(save(timeline, tmp_path / "broken.otio"), SETTINGS)

    got = [(s.name, s.first_frame, s.last_frame) for s in cut.shots]
    assert got == [("good", 10, 14), ("good_too", 3, 6)]
    problems = {p.name: p for p in cut.problems}
    assert [(p.key, p.name, type(p.error)) for p in cut.problems] == [
        ("V1/1", "gone", MediaError),
        ("V1/2", "offline", MediaError),
        ("V1/3", "too_long", MediaRangeError),
        ("V1/4", "before_start", MediaRangeError),
        ("V1/5", "bad_meta", EditRequestError),
        ("V1/6", "seq", MediaError),
        ("V1/7", "retimed", TimelineError),
    ]
    assert all(p.error.shot == p.name and p.name in str(p.error) for p in cut.problems)
    assert problems["gone"].error.path == tmp_path / "missing.mov"
    too_long = problems["too_long"].error
    assert too_long.path == media["abs"]
    assert too_long.details["requested"] == [40, 59]
    assert too_long.details["available"] == [0, MEDIA_FRAMES - 1]
    assert "40–59" in str(too_long) and "plate.mov" in str(too_long)
    assert problems["before_start"].error.details["requested"] == [-2, 2]
    assert "image sequence" in str(problems["seq"].error)


def test_when_no_clip_asks_for_an_edit_then_ingest_raises_timeline_error(tmp_path, media):
    timeline = otio.schema.Timeline()
    timeline.tracks.append(track("Video", clip("plain", str(media["abs"]), 86400, 5)))
    audio = clip("aud", str(media["abs"]), 86400, 5, marker="NOVA: audio")
    timeline.tracks.append(track("Audio", audio))
    path = save(timeline, tmp_path / "plain.otio")
    with pytest.raises(TimelineError, match="no clip carries an edit request") as caught:
        ingest(path, SETTINGS)
    assert caught.value.path == path
    with pytest.raises(TimelineError, match="no clip carries"):
        ingest(save(otio.schema.Timeline(), tmp_path / "empty.otio"), SETTINGS)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cut.otio", "{ not json", "cannot read as otio_json"),
        ("cut.xml", "<xmeml><sequence>", "cannot read as fcp_xml"),
        ("cut.txt", "hello", "unknown timeline format '.txt'"),
        ("missing.otio", None, "not found"),
    ],
)
def test_when_the_timeline_file_is_bad_then_timeline_error_names_the_file(
    tmp_path, name, content, reason
):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(TimelineError, match=reason) as caught:
        ingest(path, SETTINGS)
    assert caught.value.path == path
    assert name in str(caught.value)


def test_when_an_otio_file_holds_a_track_not_a_timeline_then_it_is_refused(tmp_path):
    path = tmp_path / "track.otio"
    otio.adapters.write_to_file(track("Video", gap(1)), str(path))
    with pytest.raises(TimelineError, match="not a timeline"):
        read_timeline(path)


# ------------------------------------------------------------------ names, media roots, paths


def test_when_a_clip_has_no_name_then_its_shot_and_its_problems_go_by_its_place_in_the_cut(tmp_path, media):
    timeline = otio.schema.Timeline(name="   ")
    timeline.tracks.append(track(
        "Video",
        clip("", str(media["abs"]), 86400, 5, marker="NOVA: x"),
        clip(" \t", str(tmp_path / "gone.mov"), 86400, 5, marker="NOVA: x"),
        clip("sh\x07030", str(media["abs"]), 86405, 5, marker="NOVA: x"),
    ))
    path = save(timeline, tmp_path / "unnamed.otio")
    cut = ingest(path, SETTINGS)
    assert cut.name == "unnamed", "a blank timeline name falls back to the file's"
    assert [(s.key, s.name) for s in cut.shots] == [("V1/0", "V1_0"), ("V1/2", "sh030")]
    [gone] = cut.problems
    assert (gone.key, gone.name, gone.error.shot) == ("V1/1", "V1_1", "V1_1")
    assert "clip 'V1_1' (V1/1)" in str(gone.error) and "gone.mov" in str(gone.error)


def test_media_outside_the_roots_is_refused_before_it_is_probed(tmp_path, media, monkeypatch):
    import studio_nova.cut.ingest as cut_ingest

    probed: list[Path] = []
    real_probe = cut_ingest.probe
    monkeypatch.setattr(cut_ingest, "probe", lambda p: probed.append(Path(p)) or real_probe(p))
    inside = media["abs"].parent
    (tmp_path / "link.mov").symlink_to(media["abs"])
    timeline = otio.schema.Timeline()
    timeline.tracks.append(track(
        "Video",
        clip("ok", str(media["abs"]), 86400, 5, marker="NOVA: x"),
        clip("dotdot", f"file://{inside}/sub/../../outside.mov", 86400, 5, marker="NOVA: x"),
        clip("linked_in", str(tmp_path / "link.mov"), 86400, 5, marker="NOVA: x"),
        clip("plate", str(media["abs"]), 86400, 5, edit={
            "kind": "background", "background": {"source": "plate", "params": {"video": str(tmp_path / "p.mov")}}}),
    ))
    settings = Settings(media_roots=[inside])
    cut = ingest(save(timeline, tmp_path / "roots.otio"), settings)

    assert [s.name for s in cut.shots] == ["ok", "linked_in"], "a link from outside into a root is fine"
    problems = {p.name: p.error for p in cut.problems}
    assert set(problems) == {"dotdot", "plate"}
    assert isinstance(problems["dotdot"], MediaError) and problems["dotdot"].path == inside.parent / "outside.mov"
    assert "outside the media roots" in str(problems["dotdot"]) and "/sub/../../outside.mov" in str(problems["dotdot"])
    assert isinstance(problems["plate"], EditRequestError) and "background.params.video" in str(problems["plate"])
    assert all(p.resolve().is_relative_to(inside) for p in probed), probed


@pytest.mark.parametrize(("path", "refused"), [
    ("/etc/passwd", "system folder"),
    ("/proc/self/environ", "system folder"),
    ("/dev/zero", "system folder"),
    ("/dev/shm/footage.mov", None),
])
def test_system_files_are_refused_even_without_media_roots(path, refused):
    from studio_nova.cut.paths import path_refusal

    why = path_refusal(path, file=True)
    assert (why is None) if refused is None else (refused in why and path in why)
