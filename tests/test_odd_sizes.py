"""Any frame size renders: real encodes at odd, tiny and extreme sizes, decoded back at exactly
their size, with every pixel (the last column and row included) as close to the source as the
codec allows; and sizes nothing can encode are refused by `encode_size_problem` in a sentence.

ProRes 422 cannot hold an odd width, so `prores_hq` writes an odd width as ProRes 4444; H.264
4:2:0 needs even sizes, so `h264` and the review proxy pad by one repeated edge pixel and record
the picture size, which `probe` reports and decoding crops back to.
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from studio_nova.errors import EncodeError
from studio_nova.media.decode import _command, _Plan, read_frames
from studio_nova.media.encode import MAX_SIDE, VideoWriter, concat, encode_size_problem, make_proxy
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.probe import probe

RATE = Fraction(25)


def picture(index: int, width: int, height: int, dtype=np.uint8) -> np.ndarray:
    """Smooth colour that moves with `index` (what a codec keeps well), full scale of `dtype`."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 0.5 + 0.35 * np.sin(x / 9.0 + index * 0.4)
    green = 0.25 + 0.5 * (y + 1) / (height + 1)
    blue = 0.5 + 0.3 * np.cos((x + y) / 13.0 - index * 0.3)
    image = np.clip(np.stack([red, green, blue], axis=-1), 0, 1)
    return np.rint(image * np.iinfo(dtype).max).astype(dtype)


def write(path: Path, width: int, height: int, codec: str, count: int = 3, dtype=np.uint8) -> list[np.ndarray]:
    """`count` frames of `width`×`height`, cut from the pictures of the even size around it (so
    an odd and an even encode show the same pixels), written with `codec`."""
    even_w, even_h = width + width % 2, height + height % 2
    frames = [picture(i, even_w, even_h, dtype)[:height, :width].copy() for i in range(count)]
    with VideoWriter(path, width=width, height=height, rate=RATE, codec=codec, input_dtype=dtype) as writer:
        for frame in frames:
            writer.write(frame)
    return frames


def errors(decoded: np.ndarray, source: np.ndarray) -> tuple[float, float, float]:
    """(mean, last column max, last row max) absolute error in 8-bit levels."""
    scale = 257.0 if decoded.dtype == np.uint16 else 1.0
    ref = source.astype(np.float64) / (257.0 if source.dtype == np.uint16 else 1.0)
    diff = np.abs(decoded.astype(np.float64) / scale - ref)
    return float(diff.mean()), float(diff[:, -1].max()), float(diff[-1].max())


def even_reference(tmp_path: Path, width: int, height: int, codec: str) -> tuple[float, float]:
    """(mean, worst) error of the same pixels in an even-size encode: what the codec costs."""
    even_w, even_h = width + width % 2, height + height % 2
    path = tmp_path / f"even_{codec}.{'mp4' if codec == 'h264' else 'mov'}"
    frames = write(path, even_w, even_h, codec, count=1)
    decoded = next(read_frames(probe(path), 0, 0))
    scale = 257.0 if decoded.dtype == np.uint16 else 1.0
    diff = np.abs(decoded.astype(np.float64) / scale - frames[0])[:height, :width]
    return float(diff.mean()), float(diff.max())


def assert_as_good_as_even(tmp_path: Path, got: np.ndarray, source: np.ndarray, codec: str) -> None:
    """Every pixel of the odd-size decode, the last column and row included, is as close to the
    source as the same pixel of an even-size encode (up to the codec's own noise)."""
    height, width = source.shape[:2]
    mean, last_column, last_row = errors(got, source)
    even_mean, even_worst = even_reference(tmp_path, width, height, codec)
    assert mean <= even_mean * 1.25 + 0.1, (mean, even_mean)
    assert max(last_column, last_row) <= even_worst + 3.0, (last_column, last_row, even_worst)


SIZES = [(161, 121), (1, 1), (3, 2), (4097, 16), (16, 4097), (2, 1), (1, 2)]


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_a_prores_master_and_its_proxy_decode_at_exactly_the_source_size(tmp_path, width, height):
    master = tmp_path / "master.mov"
    frames = write(master, width, height, "prores_hq")
    info = probe(master)
    assert (info.width, info.height, info.coded_size, info.frame_count) == (width, height, None, 3)
    assert info.codec == "prores"
    # 4:2:2 holds odd heights but not odd widths: those are written as ProRes 4444.
    assert info.pix_fmt.startswith("yuv444p" if width % 2 else "yuv422p")
    decoded = list(read_frames(info, 0, 2))
    assert [frame.shape for frame in decoded] == [(height, width, 3)] * 3
    if width * height >= 64:
        assert_as_good_as_even(tmp_path, decoded[0], frames[0], "prores_hq")
    else:
        assert errors(decoded[0], frames[0])[0] < 2.0

    proxy = make_proxy(master, tmp_path / "proxy.mp4")
    review = probe(proxy)
    assert (review.width, review.height, review.frame_count) == (width, height, 3)
    padded = (width + width % 2, height + height % 2)
    assert review.coded_size == (None if padded == (width, height) else padded)
    decoded = list(read_frames(review, 0, 2))
    assert [frame.shape for frame in decoded] == [(height, width, 3)] * 3
    if width * height >= 64:  # 4:2:0 of a picture a few pixels across is all edge: shape only
        assert errors(decoded[0], frames[0])[0] < 3.5


@pytest.mark.parametrize(("width", "height"), [(161, 121), (1, 1), (4097, 16), (3, 2)])
def test_the_h264_writer_records_an_odd_picture_and_decoding_crops_back_to_it(tmp_path, width, height):
    path = tmp_path / "review.mp4"
    frames = write(path, width, height, "h264")
    info = probe(path)
    assert (info.width, info.height) == (width, height)
    assert info.coded_size == (width + width % 2, height + height % 2)
    decoded = list(read_frames(info, 0, 2))
    assert [frame.shape for frame in decoded] == [(height, width, 3)] * 3
    if width * height >= 64:
        assert_as_good_as_even(tmp_path, decoded[0], frames[0], "h264")


def test_ten_bit_odd_sizes_keep_their_depth(tmp_path):
    path = tmp_path / "deep.mov"
    frames = write(path, 161, 121, "prores_hq", dtype=np.uint16)
    info = probe(path)
    got = next(read_frames(info, 0, 0))
    assert got.dtype == np.uint16 and got.shape == (121, 161, 3)
    assert_as_good_as_even(tmp_path, got, frames[0], "prores_hq")


def test_odd_size_chunks_concatenate_into_one_master(tmp_path):
    segments = []
    for number in range(2):
        segment = tmp_path / f"chunk{number}.mov"
        write(segment, 161, 121, "prores_hq", count=2)
        segments.append(segment)
    master = concat(segments, tmp_path / "master.mov", timecode="01:00:00:00")
    info = probe(master)
    assert (info.width, info.height, info.frame_count, info.timecode) == (161, 121, 4, "01:00:00:00")


def test_a_third_party_odd_size_4_2_0_file_decodes_every_pixel(tmp_path):
    """zimg takes whole chroma samples only: 161×121 4:2:0 is made whole and cropped back, and
    each pixel comes out exactly as in the same picture stored at 162×122."""
    even, odd = tmp_path / "even.mkv", tmp_path / "odd.mkv"
    run = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    subprocess.run([*run, "-f", "lavfi", "-i", "testsrc2=size=162x122", "-frames:v", "2",
                    "-pix_fmt", "yuv420p", "-c:v", "ffv1", str(even)], check=True)  # fmt: skip
    subprocess.run([*run, "-i", str(even), "-vf", "crop=161:121:0:0:exact=1", "-c:v", "ffv1", str(odd)],
                   check=True)  # fmt: skip
    whole, cropped = probe(even), probe(odd)
    assert (cropped.width, cropped.height, cropped.pix_fmt) == (161, 121, "yuv420p")
    for a, b in zip(read_frames(whole, 0, 1), read_frames(cropped, 0, 1)):
        assert np.array_equal(a[:121, :161], b)


# --- sizes nothing can encode ----------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 1), (161, 121), (4097, 16), (MAX_SIDE, 2), (2, MAX_SIDE)])
def test_encode_size_problem_accepts_every_size_that_renders(width, height):
    assert encode_size_problem(width, height) is None


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [(0, 10, "no pixels"), (10, -1, "no pixels"), (MAX_SIDE + 1, 16, "at most 16384"), (16, 20000, "at most 16384")],
)
def test_encode_size_problem_names_the_size_and_why(width, height, words):
    problem = encode_size_problem(width, height)
    assert problem is not None and f"{width}×{height}" in problem and words in problem


def test_the_writer_refuses_a_size_its_encoder_cannot_take_before_starting_ffmpeg(tmp_path):
    with pytest.raises(EncodeError, match=rf"{MAX_SIDE + 2}×2 .* libx264 .*at most 16384"):
        VideoWriter(tmp_path / "wide.mp4", width=MAX_SIDE + 2, height=2, rate=RATE, codec="h264",
                    input_dtype=np.uint8)  # fmt: skip
    with pytest.raises(EncodeError, match="prores_ks .*at most 65535"):
        VideoWriter(tmp_path / "wide.mov", width=65536, height=2, rate=RATE, codec="prores_hq",
                    input_dtype=np.uint8)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_x264_really_refuses_more_than_16384_pixels_a_side(tmp_path):
    """The limit `encode_size_problem` enforces, measured on the bundled ffmpeg."""
    def x264(width: int, height: int) -> int:
        return subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", f"color=size={width}x{height}", "-frames:v", "1", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", str(tmp_path / "x.mp4")],
            capture_output=True, check=False,
        ).returncode  # fmt: skip

    assert x264(MAX_SIDE, 16) == 0 and x264(16, MAX_SIDE) == 0
    assert x264(MAX_SIDE + 2, 16) != 0 and x264(16, MAX_SIDE + 2) != 0


# --- even sizes: nothing changed ---------------------------------------------------------------


def test_even_sizes_take_the_path_they_always_took(tmp_path):
    """No padding, cropping, 4444 fallback or size tag for an even size: the commands are the
    ones from before odd sizes were supported, so the files are bit-for-bit the same."""
    for codec in ("prores_hq", "h264"):
        writer = VideoWriter(tmp_path / f"even.{'mov' if codec == 'prores_hq' else 'mp4'}", width=128, height=72,
                             rate=RATE, codec=codec, input_dtype=np.uint8)  # fmt: skip
        command = " ".join(writer._command())
        assert "fillborders" not in command and "crop" not in command
        assert "studio_nova_picture_size" not in command and "use_metadata_tags" not in command
        assert ("-profile:v 3" in command) == (codec == "prores_hq")
        writer.abort()
    master = tmp_path / "even_master.mov"
    write(master, 128, 72, "prores_hq")
    info = probe(master)
    assert (info.pix_fmt, info.coded_size) == ("yuv422p10le", None)
    decode = " ".join(_command(info, _Plan(seek=None, trim=None), 3, checked=True))
    assert "extractplanes" not in decode and "crop" not in decode and "pad" not in decode
