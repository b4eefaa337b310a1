"""The media layer against real ffmpeg, on footage made here with a known ground truth.

Most clips carry their frame index as an 8-bit block code (8 vertical bars, black or white,
bar b = bit b of the index), which survives any lossy codec; decoding a range and reading
the codes back says exactly which source frames came out.
"""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from studio_nova.config import load_settings
from studio_nova.errors import (
    ConfigError,
    DecodeError,
    EncodeError,
    MediaError,
    MediaRangeError,
)
from studio_nova.media.decode import read_frame, read_frames
from studio_nova.media.encode import VideoWriter, concat, make_proxy
from studio_nova.media.ffmpeg_bin import configure_ffmpeg, ffmpeg_exe
from studio_nova.media.frames import to_float
from studio_nova.media.probe import probe
from studio_nova.media.timecode import frames_to_timecode, snap_rate, timecode_to_frames

NTSC = Fraction(30000, 1001)
RATES = [Fraction(25), Fraction(24000, 1001), NTSC, Fraction(60000, 1001)]

# lavfi: bar b (of 8 across the width) is white when bit b of the frame number N is set.
BITS_GEQ = "geq=lum='255*mod(floor(N/pow(2\\,floor(8*X/W)))\\,2)'"


# --- helpers ------------------------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        check=True,
    )


def lavfi_index_clip(path: Path, rate: Fraction, frames: int, *codec_args: str) -> Path:
    """A 128×72 clip whose frame n shows n as a block code, encoded with `codec_args`."""
    rate_text = f"{rate.numerator}/{rate.denominator}"
    source = f"color=black:size=128x72:rate={rate_text},format=gray,{BITS_GEQ}"
    ffmpeg("-f", "lavfi", "-i", source, "-frames:v", str(frames), *codec_args, str(path))
    return path


def index_frame(index: int, width: int = 128, height: int = 72, dtype=np.uint8) -> np.ndarray:
    """numpy twin of the lavfi pattern, for clips written through VideoWriter."""
    full = np.iinfo(dtype).max
    bars = ((index >> np.arange(8)) & 1).astype(dtype) * full
    columns = np.repeat(bars, int(np.ceil(width / 8)))[:width]
    return np.broadcast_to(columns[None, :, None], (height, width, 3)).copy()


def read_index(frame: np.ndarray) -> int:
    """Block code of a decoded frame (centre of each bar, on the middle row)."""
    height, width = frame.shape[:2]
    half = np.iinfo(frame.dtype).max / 2
    centres = (np.arange(8) * width // 8 + width // 16).astype(int)
    bits = frame[height // 2, centres, 1] > half
    return int(np.sum(bits.astype(int) << np.arange(8)))


def decoded_indices(info, first: int, last: int) -> list[int]:
    return [read_index(frame) for frame in read_frames(info, first, last)]


def packet_pts(path: Path) -> list[int]:
    listing = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy",
         "-f", "framecrc", "-"],
        capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return [int(line.split(",")[2]) for line in listing.splitlines() if not line.startswith("#")]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((to_float(a).astype(np.float64) - to_float(b)) ** 2))
    return 10 * np.log10(1.0 / mse)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def ffmpeg_children() -> list[int]:
    """ffmpeg processes whose parent is this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        state = stat[stat.rindex(")") + 2 :].split()[0]
        if parent == os.getpid() and "ffmpeg" in name and state != "Z":
            found.append(int(entry.name))
    return found


def natural_image(index: int, width: int, height: int) -> np.ndarray:
    """A camera-like 8-bit picture that moves with index: smooth colour, a soft-edged disc,
    and film grain shared by the channels (camera noise lives mostly in luma)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 0.5 + 0.4 * np.sin(x / 37.0 + index * 0.3)
    green = 0.2 + 0.6 * (y / height)
    blue = 0.5 + 0.3 * np.cos((x + y) / 23.0 - index * 0.2)
    image = np.stack([red, green, blue], axis=-1)
    radius = np.hypot(x - width / 2 - 3 * index, y - height / 2)
    disc = np.clip((height / 4 - radius) / 2.0, 0, 1)[..., None]  # 2-pixel soft edge
    image = image * (1 - disc) + np.array([0.9, 0.85, 0.2]) * disc
    grain = np.random.default_rng(index).normal(0, 0.012, (height, width, 1))
    return np.clip(np.rint((image + grain) * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    """Index-coded H.264 (with B-frames, short GOPs) and ProRes clips at four rates."""
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for rate in RATES:
        tag = f"{rate.numerator}_{rate.denominator}"
        made["h264", rate] = lavfi_index_clip(
            folder / f"h264_{tag}.mp4", rate, 100,
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "12",
            "-x264-params", "b-adapt=0", "-pix_fmt", "yuv420p",
        )  # fmt: skip
        made["prores", rate] = lavfi_index_clip(
            folder / f"prores_{tag}.mov", rate, 60,
            "-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le",
        )  # fmt: skip
    return made


# --- timecode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tc", "rate", "frames"),
    [
        ("01:00:00:00", Fraction(25), 90000),
        ("01:00:00:00", Fraction(24000, 1001), 86400),
        ("00:00:01:05", Fraction(24), 29),
        ("01:00:00;00", NTSC, 107892),
        ("00:10:00;00", NTSC, 17982),
        ("00:01:00;02", NTSC, 1800),
        ("01:00:00;00", Fraction(60000, 1001), 215784),
        ("01:00:00:00", NTSC, 108000),  # non-drop label at 29.97 counts at nominal 30
    ],
)
def test_timecode_to_frames_matches_known_values(tc, rate, frames):
    assert timecode_to_frames(tc, rate) == frames
    drop = ";" in tc
    assert frames_to_timecode(frames, rate, drop_frame=drop) == tc


@pytest.mark.parametrize("rate", [NTSC, Fraction(60000, 1001)])
def test_drop_frame_labels_follow_the_smpte_skipping_rule(rate):
    fps, drop = (30, 2) if rate == NTSC else (60, 4)
    # Independent truth: walk the label clock for 21 minutes, skipping the dropped labels.
    labels = []
    for minute in range(21):
        for second in range(60):
            for frame in range(fps):
                if second == 0 and frame < drop and minute % 10:
                    continue
                labels.append(f"00:{minute:02d}:{second:02d};{frame:02d}")
    for count, label in enumerate(labels):
        assert frames_to_timecode(count, rate) == label
        assert timecode_to_frames(label, rate) == count


@pytest.mark.parametrize(
    ("tc", "rate"),
    [
        ("00:01:00;00", NTSC),  # a label drop-frame skips
        ("00:00:00;00", Fraction(25)),  # drop-frame does not exist at 25
        ("00:00:00:25", Fraction(25)),
        ("1:2:3", NTSC),
    ],
)
def test_invalid_timecodes_are_rejected(tc, rate):
    with pytest.raises(ValueError, match="timecode"):
        timecode_to_frames(tc, rate)


@pytest.mark.parametrize(
    ("fps", "exact"),
    [
        (23.976, Fraction(24000, 1001)),
        (23.98, Fraction(24000, 1001)),
        (29.97, NTSC),
        (59.94, Fraction(60000, 1001)),
        (47.95, Fraction(48000, 1001)),
        (119.88, Fraction(120000, 1001)),
        (25.0, Fraction(25)),
        (24, Fraction(24)),
        (12.5, Fraction(25, 2)),
    ],
)
def test_snap_rate_recovers_exact_rates(fps, exact):
    assert snap_rate(fps) == exact


# --- probe --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_probe_reports_exact_count_rate_size_and_depth(clips, rate):
    h264 = probe(clips["h264", rate])
    assert (h264.frame_count, h264.rate, h264.width, h264.height) == (100, rate, 128, 72)
    assert (h264.codec, h264.pix_fmt, h264.bit_depth) == ("h264", "yuv420p", 8)
    assert h264.color_matrix == "bt601"  # untagged and under 720 lines
    prores = probe(clips["prores", rate])
    assert (prores.frame_count, prores.rate, prores.codec) == (60, rate, "prores")
    assert (prores.pix_fmt, prores.bit_depth, prores.has_alpha) == ("yuv422p10le", 10, False)
    assert prores.timecode is None and prores.start_frame == 0


def test_h264_fixture_really_has_b_frames(clips):
    pts = packet_pts(clips["h264", Fraction(25)])
    assert pts != sorted(pts)  # decode order differs from display order


@pytest.mark.parametrize(
    ("rate", "tc", "start"),
    [(Fraction(25), "01:00:00:00", 90000), (NTSC, "01:00:00;00", 107892)],
)
def test_probe_reads_the_start_timecode(tmp_path, rate, tc, start):
    clip = lavfi_index_clip(
        tmp_path / "tc.mov", rate, 5, "-c:v", "prores_ks", "-timecode", tc,
        "-colorspace", "bt709",
    )  # fmt: skip
    info = probe(clip)
    assert (info.timecode, info.start_frame) == (tc, start)
    assert info.color_matrix == "bt709"  # tagged, although only 72 lines high


def test_probe_reports_alpha_and_high_bit_depth(tmp_path):
    clip = tmp_path / "alpha.mov"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=64x32:rate=24,format=yuva444p10le", "-frames:v", "3",
        "-c:v", "prores_ks", "-profile:v", "4", "-alpha_bits", "16", str(clip),
    )  # fmt: skip
    info = probe(clip)
    assert info.has_alpha and info.bit_depth >= 10 and info.pix_fmt.startswith("yuva444p")


def test_probe_counts_what_the_decoder_gives_for_an_edit_list(tmp_path):
    source = lavfi_index_clip(
        tmp_path / "src.mp4", Fraction(25), 50,
        "-c:v", "libx264", "-bf", "3", "-g", "12", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    trimmed = tmp_path / "trimmed.mp4"
    ffmpeg("-ss", "0.6", "-i", str(source), "-c", "copy", str(trimmed))  # starts mid-GOP
    info = probe(trimmed)
    assert len(packet_pts(trimmed)) > info.frame_count == 35
    assert decoded_indices(info, 0, 34) == list(range(15, 50))
    assert decoded_indices(info, 20, 22) == [35, 36, 37]


def test_probe_is_cached_until_the_file_changes(tmp_path):
    clip = lavfi_index_clip(tmp_path / "c.mkv", Fraction(25), 4, "-c:v", "ffv1")
    first = probe(clip)
    assert probe(clip) is first
    lavfi_index_clip(clip, Fraction(25), 7, "-c:v", "ffv1")  # rewritten in place
    assert probe(clip).frame_count == 7


def test_probe_explains_bad_inputs(tmp_path):
    with pytest.raises(MediaError, match="does not exist") as missing:
        probe(tmp_path / "nope.mov")
    assert missing.value.path == tmp_path / "nope.mov"
    with pytest.raises(MediaError, match="directory"):
        probe(tmp_path)
    junk = tmp_path / "junk.mov"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MediaError, match="cannot read it") as unreadable:
        probe(junk)
    assert "junk.mov" in str(unreadable.value)
    sound = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.2", str(sound))
    with pytest.raises(MediaError, match=r"no video stream \(found: audio\)"):
        probe(sound)
    empty = tmp_path / "empty.mov"
    empty.touch()
    with pytest.raises(MediaError, match="empty"):
        probe(empty)


def test_probe_refuses_a_file_it_may_not_read(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    locked = lavfi_index_clip(tmp_path / "locked.mkv", Fraction(25), 2, "-c:v", "ffv1")
    locked.chmod(0)
    with pytest.raises(MediaError, match="cannot be read"):
        probe(locked)


def test_a_broken_ffmpeg_setting_is_a_config_error(monkeypatch, tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("not a program")
    monkeypatch.setenv("STUDIO_NOVA_FFMPEG", str(fake))
    try:
        configure_ffmpeg(load_settings().ffmpeg)  # what the edge (Workspace.open) does
        with pytest.raises(ConfigError, match="STUDIO_NOVA_FFMPEG"):
            ffmpeg_exe()
    finally:
        monkeypatch.delenv("STUDIO_NOVA_FFMPEG")
        configure_ffmpeg(load_settings().ffmpeg)
    assert Path(ffmpeg_exe()).is_file()


def test_opening_a_workspace_configures_its_ffmpeg(monkeypatch, tmp_path):
    from studio_nova.config import Settings
    from studio_nova.workflow.workspace import Workspace

    fake = tmp_path / "ffmpeg"
    fake.write_text("not a program")
    monkeypatch.delenv("STUDIO_NOVA_FFMPEG", raising=False)
    ws = Workspace.open(tmp_path / "out", Settings(ffmpeg=str(fake)))
    try:
        with pytest.raises(ConfigError, match="STUDIO_NOVA_FFMPEG"):
            ffmpeg_exe()
    finally:
        ws.close()
        configure_ffmpeg(None)
    assert Path(ffmpeg_exe()).is_file()


# --- decode -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["h264", "prores"])
@pytest.mark.parametrize("rate", RATES)
def test_decode_is_frame_exact_at_start_middle_and_end(clips, kind, rate):
    info = probe(clips[kind, rate])
    last = info.frame_count - 1
    for first, end in [(0, 4), (5, 5), (23, 41), (last - 6, last), (last, last)]:
        assert decoded_indices(info, first, end) == list(range(first, end + 1)), (first, end)
    assert read_index(read_frame(info, 37)) == 37


def test_decode_recovers_when_the_demuxer_seeks_past_the_target(tmp_path):
    # MPEG-TS with audio starting first: ffmpeg's seek lands on the keyframe *after* the
    # target here, so a naive input -ss would return frames 10.. for a request of 5..
    clip = tmp_path / "offset.ts"
    source = f"color=black:size=128x72:rate=25,format=gray,{BITS_GEQ}"
    ffmpeg(
        "-f", "lavfi", "-i", source, "-f", "lavfi", "-i", "sine=r=48000", "-frames:v", "50",
        "-t", "2", "-c:v", "libx264", "-bf", "3", "-g", "10", "-pix_fmt", "yuv420p",
        "-c:a", "mp2", str(clip),
    )  # fmt: skip
    info = probe(clip)
    assert info.frame_count == 50
    assert decoded_indices(info, 5, 9) == [5, 6, 7, 8, 9]
    assert decoded_indices(info, 45, 49) == [45, 46, 47, 48, 49]


def test_decode_gives_uint8_rgb_for_8_bit_and_uint16_for_10_bit(clips, tmp_path):
    eight = read_frame(probe(clips["h264", Fraction(25)]), 3)
    assert eight.dtype == np.uint8 and eight.shape == (72, 128, 3) and eight.flags.writeable
    ramp = np.linspace(0, 65535, 512).astype(np.uint16)
    frame = np.broadcast_to(ramp[None, :, None], (16, 512, 3)).copy()
    clip = tmp_path / "ramp10.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
         "-pix_fmt", "rgb48le", "-s", "512x16", "-framerate", "25", "-i", "pipe:", "-vf",
         "scale=out_color_matrix=bt709:out_range=tv", "-c:v", "ffv1", "-pix_fmt", "yuv422p10le",
         str(clip)],
        input=frame.tobytes() * 2, check=True,
    )  # fmt: skip
    info = probe(clip)
    assert (info.bit_depth, info.pix_fmt, info.frame_count) == (10, "yuv422p10le", 2)
    decoded = read_frame(info, 1)
    assert decoded.dtype == np.uint16
    assert len(np.unique(decoded[8, :, 1])) > 256  # more levels than 8 bits can hold
    assert psnr(decoded, frame) > 50


def test_decode_range_errors_name_file_frames_and_count(clips):
    info = probe(clips["prores", Fraction(25)])
    with pytest.raises(MediaRangeError, match=r"frames 55\.\.60 .* has 60 frames") as error:
        read_frames(info, 55, 60)  # raised before iterating
    assert error.value.path == info.path and error.value.details["frame_count"] == 60
    with pytest.raises(MediaRangeError):
        read_frames(info, -1, 3)
    with pytest.raises(MediaRangeError, match="reversed"):
        read_frames(info, 9, 3)


def test_frames_lost_to_damage_are_a_decode_error_not_a_shifted_range(tmp_path, clips):
    clip = tmp_path / "damaged.mov"
    clip.write_bytes(clips["prores", Fraction(25)].read_bytes())
    info = probe(clip)
    # Zero the middle third of the frame data: the decoder skips those frames, so without a
    # check 0..30 would quietly come back as 0..19 followed by 40-something.
    with clip.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(size // 3)
        handle.write(b"\0" * (size // 3))
    seen = []
    with pytest.raises(DecodeError, match="ffmpeg decoded a frame at") as error:
        for frame in read_frames(info, 0, 30):
            seen.append(read_index(frame))
    assert error.value.path == clip and 10 < error.value.frame < 30
    # Frames before the damage came back in order (the frame the zeroing starts in may be
    # concealed garbage, but it is presented at the right time), and nothing after the gap.
    assert len(seen) == error.value.frame and seen[:10] == list(range(10))
    assert "invalid" in str(error.value).lower()  # ffmpeg's own words are passed on
    assert ffmpeg_children() == []


def test_closing_the_generator_early_reaps_ffmpeg(clips):
    info = probe(clips["h264", Fraction(25)])
    frames = read_frames(info, 0, 99)
    next(frames)
    assert len(ffmpeg_children()) == 1
    frames.close()
    assert ffmpeg_children() == []


def test_reading_600_hd_frames_keeps_memory_flat(tmp_path):
    clip = tmp_path / "hd.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-frames:v", "600",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip),
    )  # fmt: skip
    info = probe(clip)
    assert info.frame_count == 600 and info.color_matrix == "bt709"
    before = rss_kib()
    peak, count = before, 0
    for frame in read_frames(info, 0, 599):
        count += 1
        peak = max(peak, rss_kib())
    assert count == 600 and frame.shape == (720, 1280, 3)
    assert (peak - before) / 1024 < 100  # a 600-frame list would be ~1.6 GB


# --- encode -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [Fraction(25), NTSC])
def test_prores_master_round_trip_is_exact_in_timing_and_above_40_db(tmp_path, rate):
    width, height, count = 320, 180, 12
    source = [natural_image(i, width, height) for i in range(count)]
    master = tmp_path / "master.mov"
    tc = frames_to_timecode(timecode_to_frames("01:00:00:00", rate), rate)
    with VideoWriter(
        master, width=width, height=height, rate=rate, codec="prores_hq",
        input_dtype=np.uint8, timecode=tc,
    ) as writer:  # fmt: skip
        for frame in source:
            writer.write(frame)
    info = probe(master)
    assert (info.frame_count, info.rate, info.width, info.height) == (count, rate, width, height)
    assert (info.codec, info.pix_fmt, info.timecode) == ("prores", "yuv422p10le", tc)
    assert info.color_matrix == "bt709"  # from the tag: 180 lines alone would mean bt601
    assert read_frame(info, 0).dtype == np.uint16
    for index, decoded in enumerate(read_frames(info, 0, count - 1)):
        assert psnr(decoded, source[index]) >= 40, index
    assert os.listdir(tmp_path) == ["master.mov"]  # no temp file left behind


def test_ffv1_round_trip_is_lossless_in_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.uint16):
        top = np.iinfo(dtype).max
        frames = [rng.integers(0, top, (24, 40, 3), endpoint=True, dtype=dtype) for _ in range(3)]
        path = tmp_path / f"lossless_{np.dtype(dtype).name}.mkv"
        with VideoWriter(
            path, width=40, height=24, rate=Fraction(24), codec="ffv1", input_dtype=dtype
        ) as writer:
            for frame in frames:
                writer.write(frame)
        decoded = list(read_frames(probe(path), 0, 2))
        assert all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))


def test_writer_leaves_nothing_when_the_block_raises(tmp_path):
    target = tmp_path / "render.mov"
    with pytest.raises(RuntimeError, match="render crashed"):
        with VideoWriter(
            target, width=128, height=72, rate=Fraction(25), codec="prores_hq", input_dtype=np.uint8
        ) as writer:  # fmt: skip
            writer.write(index_frame(0))
            writer.write(index_frame(1))
            raise RuntimeError("render crashed")
    assert list(tmp_path.iterdir()) == []
    assert ffmpeg_children() == []


def test_writer_rejects_a_bad_frame_with_its_number_and_cleans_up(tmp_path):
    target = tmp_path / "render.mp4"
    with pytest.raises(EncodeError, match=r"frame 2.*\(72, 128, 3\) uint8") as error:
        with VideoWriter(
            target, width=128, height=72, rate=Fraction(25), codec="h264", input_dtype=np.uint8
        ) as writer:  # fmt: skip
            writer.write(index_frame(0))
            writer.write(index_frame(1))
            writer.write(index_frame(2, dtype=np.uint16))
    assert error.value.frame == 2
    assert list(tmp_path.iterdir()) == []


def test_writer_never_overwrites(tmp_path):
    target = tmp_path / "v001.mov"
    target.write_bytes(b"an earlier render")
    with pytest.raises(EncodeError, match="never overwritten"):
        VideoWriter(
            target, width=8, height=8, rate=Fraction(25), codec="prores_hq", input_dtype=np.uint8
        )
    assert target.read_bytes() == b"an earlier render"


def test_h264_writer_pads_odd_sizes_and_keeps_every_frame(tmp_path):
    target = tmp_path / "odd.mp4"
    with VideoWriter(
        target, width=131, height=73, rate=Fraction(60000, 1001), codec="h264", input_dtype=np.uint8
    ) as writer:  # fmt: skip
        for index in range(30):
            writer.write(index_frame(index, 131, 73))
    info = probe(target)
    # Padded to even (4:2:0), not resampled; the picture size is recorded and read back.
    assert (info.width, info.height, info.coded_size) == (131, 73, (132, 74))
    assert (info.frame_count, info.rate) == (30, Fraction(60000, 1001))
    last = read_frame(info, 29)
    assert last.shape == (73, 131, 3) and read_index(last) == 29


def test_concat_joins_prores_segments_exactly(tmp_path):
    lengths, segments, start = [5, 7, 4], [], 0
    for number, length in enumerate(lengths):
        segment = tmp_path / f"chunk{number}.mov"
        with VideoWriter(
            segment, width=128, height=72, rate=NTSC, codec="prores_hq", input_dtype=np.uint8
        ) as writer:  # fmt: skip
            for index in range(start, start + length):
                writer.write(index_frame(index))
        segments.append(segment)
        start += length
    master = concat(segments, tmp_path / "master.mov", timecode="01:00:00;00")
    info = probe(master)
    assert (info.frame_count, info.rate, info.start_frame) == (16, NTSC, 107892)
    assert decoded_indices(info, 0, 15) == list(range(16))

    proxy = make_proxy(master, tmp_path / "proxy.mp4")
    review = probe(proxy)
    assert (review.codec, review.pix_fmt) == ("h264", "yuv420p")
    assert (review.frame_count, review.rate) == (16, NTSC)
    assert review.timecode == "01:00:00;00"
    data = proxy.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while loading
    assert decoded_indices(review, 0, 15) == list(range(16))


def test_concat_refuses_mismatched_segments(tmp_path, clips):
    a, b = clips["prores", Fraction(25)], clips["prores", NTSC]
    with pytest.raises(EncodeError, match="rate"):
        concat([a, b], tmp_path / "joined.mov")
    assert list(tmp_path.iterdir()) == []
