"""Variable-frame-rate media against real ffmpeg: detection at probe time, the refusal, and the
constant-rate view that `resample` decodes.

The VFR files are made here with the bundled ffmpeg: frame N of a lavfi source shows N as a block
code (as in test_media), and `setpts` gives frames 0–9 a 40 ms spacing (25 fps), frames 10–19
20 ms (50 fps) and frames 20–24 100 ms (10 fps), in a time base of 1 ms, kept as they are
(`-fps_mode passthrough`). The expected frame at each time of the constant-rate view is worked
out here from the file's own packet list, independently of the library.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_media import read_index

from studio_nova.config import Settings, load_settings
from studio_nova.errors import ConfigError, MediaError, MediaRangeError
from studio_nova.media.decode import read_alpha, read_frame, read_frames
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.probe import probe
from studio_nova.media.vfr import apply_vfr_policy, check_vfr, conform_vfr

BITS_GEQ = "geq=lum='255*mod(floor(N/pow(2\\,floor(8*X/W)))\\,2)'"
# Frame times in ms (the source runs at 1000 fps, so its time base is 1 ms and these are exact).
PTS_MS = "if(lt(N,10),N*40,if(lt(N,20),400+(N-10)*20,600+(N-20)*100))"
TIMES_MS = [*range(0, 400, 40), *range(400, 600, 20), *range(600, 1001, 100)]
FRAMES = len(TIMES_MS)  # 25


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def vfr_clip(path: Path, *codec_args: str, source: str | None = None) -> Path:
    source = source or f"color=black:size=128x72:rate=1000,format=gray,{BITS_GEQ}"
    ffmpeg("-f", "lavfi", "-i", source, "-frames:v", str(FRAMES), "-vf", f"setpts='{PTS_MS}'",
           "-fps_mode", "passthrough", *codec_args, str(path))  # fmt: skip
    return path


def packets(path: Path) -> tuple[list[Fraction], list[Fraction]]:
    """(presentation times, durations) in seconds, in presentation order, from ffmpeg's own
    packet list; a timestamp equal to the one before counts a tick later (as decoders show it)."""
    listing = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    base = Fraction(next(line for line in listing.splitlines() if line.startswith("#tb 0:")).split(":")[1].strip())
    rows = sorted(
        (int(fields[2]), int(fields[3]))
        for fields in (line.split(",") for line in listing.splitlines() if not line.startswith("#"))
    )
    times, durations, last = [], [], None
    for pts, duration in rows:
        pts = pts if last is None or pts > last else last + 1
        last = pts
        times.append(pts * base)
        durations.append(duration * base)
    return times, durations


def expected_view(path: Path, rate: Fraction) -> list[int]:
    """Source frame shown at each frame time of a constant-`rate` view: frame i shows the last
    source frame whose time, rounded to the nearest frame of `rate` (halves up), is i or less;
    the view ends where the last source frame's duration ends (rounded the same way)."""
    times, durations = packets(path)
    slot = [int((t - times[0]) * rate + Fraction(1, 2)) for t in times]
    count = max(slot[-1] + 1, int((times[-1] + durations[-1] - times[0]) * rate + Fraction(1, 2)))
    return [max(j for j, s in enumerate(slot) if s <= i) for i in range(count)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("vfr")
    return {
        "ffv1": vfr_clip(folder / "screen.mkv", "-c:v", "ffv1"),
        "h264": vfr_clip(folder / "phone.mp4", "-enc_time_base", "1/1000", "-video_track_timescale", "1000",
                         "-c:v", "libx264", "-bf", "2", "-pix_fmt", "yuv420p"),  # fmt: skip
        "prores": vfr_clip(folder / "camera.mov", "-enc_time_base", "1/1000", "-video_track_timescale", "90000",
                           "-c:v", "prores_ks", "-profile:v", "3"),  # fmt: skip
    }


# --- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ffv1", "h264", "prores"])
def test_probe_detects_vfr_and_measures_the_rates_it_runs_at(clips, kind):
    info = probe(clips[kind])
    assert info.vfr and not info.resampled
    assert info.frame_count == FRAMES
    assert info.min_rate == pytest.approx(10.0, rel=1e-6)  # the 100 ms stretch
    assert info.max_rate == pytest.approx(50.0, rel=1e-6)  # the 20 ms stretch
    assert 20.0 < info.mean_rate < 30.0  # 25 frames in about a second


@pytest.mark.parametrize(
    ("rate", "codec_args"),
    [
        (Fraction(24000, 1001), ("-c:v", "ffv1")),  # 1 ms time base: 41/42 ms rounding jitter
        (Fraction(25), ("-c:v", "libx264", "-bf", "3", "-pix_fmt", "yuv420p")),
        (Fraction(30000, 1001), ("-c:v", "prores_ks")),
    ],
)
def test_constant_rate_media_is_not_vfr_even_with_timestamp_rounding(tmp_path, rate, codec_args):
    suffix = ".mkv" if codec_args[1] == "ffv1" else ".mp4" if codec_args[1] == "libx264" else ".mov"
    path = tmp_path / f"cfr{suffix}"
    rate_text = f"{rate.numerator}/{rate.denominator}"
    ffmpeg("-f", "lavfi", "-i", f"color=black:size=64x32:rate={rate_text},format=gray,{BITS_GEQ}",
           "-frames:v", "120", *codec_args, str(path))  # fmt: skip
    info = probe(path)
    assert not info.vfr and info.rate == rate
    assert info.min_rate == pytest.approx(float(rate), rel=0.03)
    assert info.max_rate == pytest.approx(float(rate), rel=0.03)
    # Every policy leaves it exactly as it is: the same object, decoded as always.
    check_vfr(info, "refuse")
    assert apply_vfr_policy(info, "refuse", 24) is info
    assert apply_vfr_policy(info, "resample", 24) is info
    assert conform_vfr(info, Fraction(24)) is info


# --- refuse -------------------------------------------------------------------------------


def test_refusal_names_the_file_its_measured_rates_and_what_to_do(clips):
    info = probe(clips["h264"])
    with pytest.raises(MediaError) as caught:
        check_vfr(info, "refuse")
    error = caught.value
    message = str(error)
    assert error.path == clips["h264"] and str(clips["h264"]) in message
    assert "variable frame rate" in message
    assert "10 to 50 fps" in message  # measured from its timestamps
    assert "STUDIO_NOVA_VFR=resample" in message and "transcode" in message
    assert error.details["min_rate"] == pytest.approx(10.0) and error.details["max_rate"] == pytest.approx(50.0)
    assert "0x" not in message and "[" not in message  # nothing of ffmpeg's log
    assert apply_vfr_policy(info, "resample", 25).resampled
    check_vfr(info, "resample")  # allowed


def test_the_setting_takes_refuse_or_resample_from_the_environment(monkeypatch):
    assert Settings().vfr == "refuse"
    monkeypatch.setenv("STUDIO_NOVA_VFR", "Resample")
    assert load_settings().vfr == "resample"
    monkeypatch.setenv("STUDIO_NOVA_VFR", "guess")
    with pytest.raises(ConfigError, match="STUDIO_NOVA_VFR.*'refuse' or 'resample'"):
        load_settings()


def test_an_unknown_policy_is_a_config_error(clips):
    with pytest.raises(ConfigError, match="STUDIO_NOVA_VFR"):
        check_vfr(probe(clips["ffv1"]), "average")


# --- resample -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ffv1", "h264", "prores"])
@pytest.mark.parametrize("rate", [Fraction(25), Fraction(24000, 1001)])
def test_resample_gives_the_frame_shown_at_each_constant_rate_time(clips, kind, rate):
    source = probe(clips[kind])
    view = apply_vfr_policy(source, "resample", rate)
    expected = expected_view(clips[kind], rate)
    assert (view.rate, view.frame_count, view.resampled, view.vfr) == (rate, len(expected), True, True)
    assert (view.width, view.height, view.pix_fmt) == (source.width, source.height, source.pix_fmt)
    shown = [read_index(frame) for frame in read_frames(view, 0, view.frame_count - 1)]
    assert shown == expected
    # 10 fps stretch: each source frame held for 2–3 frames; 50 fps stretch: every other one.
    assert shown.count(22) >= 2 and not {11, 13, 15, 17}.issubset(shown)
    # A range anywhere gives b - a + 1 frames, the same as in the whole.
    for first, last in [(0, 0), (9, 13), (11, 11), (view.frame_count - 4, view.frame_count - 1)]:
        frames = list(read_frames(view, first, last))
        assert len(frames) == last - first + 1
        assert [read_index(frame) for frame in frames] == expected[first : last + 1]


def test_resampled_frames_are_the_source_frames_bit_for_bit_and_repeats_are_copies(clips):
    source = probe(clips["h264"])
    view = conform_vfr(source, Fraction(25))
    originals = list(read_frames(source, 0, source.frame_count - 1))
    expected = expected_view(clips["h264"], Fraction(25))
    frames = list(read_frames(view, 0, view.frame_count - 1))
    for number, frame in enumerate(frames):
        assert np.array_equal(frame, originals[expected[number]])
    repeated = next(i for i in range(1, len(expected)) if expected[i] == expected[i - 1])
    assert frames[repeated] is not frames[repeated - 1]
    assert np.array_equal(read_frame(view, repeated), originals[expected[repeated]])


def test_the_view_keeps_frame_ranges_honest(clips):
    view = conform_vfr(probe(clips["ffv1"]), Fraction(25))
    with pytest.raises(MediaRangeError, match=rf"has {view.frame_count} frames"):
        read_frames(view, 0, view.frame_count)
    assert conform_vfr(view, Fraction(25)) is view
    with pytest.raises(MediaError, match="already conformed"):
        conform_vfr(view, Fraction(30))
    with pytest.raises(MediaError, match="frame rate of 0"):
        conform_vfr(probe(clips["ffv1"]), 0)


def test_resample_reads_the_alpha_of_the_same_frames(tmp_path):
    source = "color=black:size=32x16:rate=1000,format=rgba,geq=r='0':g='0':b='0':a='N*10'"
    path = vfr_clip(tmp_path / "matte.mkv", "-c:v", "ffv1", "-pix_fmt", "rgba", source=source)
    view = conform_vfr(probe(path), Fraction(25))
    alphas = [float(a.mean()) for a in read_alpha(view, 0, view.frame_count - 1)]
    expected = expected_view(path, Fraction(25))
    assert alphas == pytest.approx([j * 10 / 255 for j in expected], abs=1e-6)


@pytest.mark.parametrize(("label", "start", "converted"), [("01:00:00:00", 90000, "01:00:00:00"),
                                                           ("01:00:00:040", 90001, "01:00:00:01")])
def test_the_view_converts_the_start_timecode_to_its_rate(tmp_path, label, start, converted):
    path = vfr_clip(tmp_path / "tc.mkv", "-c:v", "ffv1", "-metadata", f"timecode={label}")
    info = probe(path)
    assert info.vfr and info.timecode == label and info.rate == 1000  # the source's nominal rate
    view = conform_vfr(info, Fraction(25))
    # A label that exists at 25 fps is kept; one that does not (frame 40 of a second at 1000 fps,
    # i.e. 40 ms) is converted through seconds.
    assert (view.timecode, view.start_frame) == (converted, start)


def test_a_dropped_frame_makes_a_file_vfr_and_the_message_says_so(tmp_path):
    path = tmp_path / "dropped.mkv"
    ffmpeg("-f", "lavfi", "-i", f"color=black:size=64x32:rate=25,format=gray,{BITS_GEQ}", "-frames:v", "40",
           "-vf", "setpts='N+gte(N,10)'", "-fps_mode", "passthrough", "-c:v", "ffv1", str(path))  # fmt: skip
    info = probe(path)
    assert info.vfr and info.rate == 25
    assert info.min_rate == pytest.approx(25.0) and info.max_rate == pytest.approx(25.0)
    with pytest.raises(MediaError, match=r"mostly run at 25 fps but single frames are 40 to 80 ms apart"):
        check_vfr(info, "refuse")
    view = conform_vfr(info, Fraction(25))
    shown = [read_index(frame) for frame in read_frames(view, 0, view.frame_count - 1)]
    assert shown == [*range(10), 9, *range(10, 40)]  # the gap holds the frame before it
