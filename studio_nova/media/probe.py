"""Read a media file's video facts with ffmpeg alone (there is no ffprobe here).

One ffmpeg run does both jobs: `-i FILE` prints the stream description on stderr, and a
stream copy of the first video stream to the `framecrc` muxer lists every packet on stdout,
which gives the exact frame count and every frame's presentation time without decoding a
single frame. Packets that an edit list marks as discarded are not counted, because the
decoder drops them too (the frame count must be what ffmpeg decodes: DESIGN section 4).

The same listing measures the frame timing (every frame, no sampling: it costs nothing more):
the slowest, fastest and mean rate the frames are shown at, and whether the file is variable
frame rate in the sense that matters here, i.e. some frame is shown half a frame or more away
from where the constant rate puts it (`MediaInfo.vfr`; the policy is in `media.vfr`).

A file ffmpeg cannot read is described in a sentence (`media.ffmpeg_errors`): not a video (and
what it is instead), truncated (and at which frame its data ends), damaged; ffmpeg's own output
goes to the log, not into the message.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from studio_nova.errors import MediaError
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.ffmpeg_errors import (
    VIDEO_SUFFIXES,
    cut_short_problem,
    decoding_problem,
    image_problem,
    log_ffmpeg,
    movie_cut_short,
    truncated_problem,
    unreadable_problem,
    without_addresses,
)
from studio_nova.media.frame_timing import timing_facts
from studio_nova.media.info import MediaInfo
from studio_nova.media.timecode import snap_rate, timecode_to_frames

# ffmpeg colourspace tags → the matrix names the rest of the library uses. Anything else
# (unknown, gbr, ycgco, ...) falls back to the size convention: bt709 from 720 lines up.
_MATRIX_BY_TAG = {
    "bt709": "bt709",
    "smpte170m": "bt601",
    "bt470bg": "bt601",
    "bt2020nc": "bt2020",
    "bt2020c": "bt2020",
    "smpte240m": "smpte240m",
    "fcc": "fcc",
}
_COLORSPACE_WORDS = set(_MATRIX_BY_TAG) | {"unknown", "gbr", "ycgco", "reserved", "ictcp"}

# Our matrix names → the colourspace tag ffmpeg writes and its zscale filter reads.
MATRIX_TAGS = {
    "bt709": "bt709",
    "bt601": "smpte170m",
    "bt2020": "bt2020nc",
    "smpte240m": "smpte240m",
    "fcc": "fcc",
}

# Pixel formats stored as RGB / grey (no YUV matrix involved), by name prefix.
_NON_YUV_PREFIXES = (
    "rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr",
    "pal8", "gray", "ya8", "ya16", "monow", "monob", "xyz",
)  # fmt: skip


def is_yuv(pix_fmt: str) -> bool:
    """Whether frames of `pix_fmt` need a YUV→RGB matrix (False for RGB, grey, palette)."""
    return not pix_fmt.startswith(_NON_YUV_PREFIXES)


_STREAM_RE = re.compile(r"^\s*Stream #0:(\d+)\S*?: Video: (.*)$")
_ANY_STREAM_RE = re.compile(r"^\s*Stream #0:\d+\S*?: (\w+):")
_START_RE = re.compile(r"Duration: .*?, start: (-?[\d.]+)")
_TIMECODE_RE = re.compile(r"^\s*timecode\s*:\s*(\S+)\s*$", re.IGNORECASE)
_COMMENT_RE = re.compile(r"^\s*comment\s*:\s*(.*?)\s*$", re.IGNORECASE)
_SIZE_RE = re.compile(r"^(\d+)x(\d+)\b")
_RATE_RE = re.compile(r"^([\d.]+)(k?) (fps|tbr)$")
_FORMAT_RE = re.compile(r"^Input #0, (.+?), from ")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
# Written by our H.264 writer when it pads an odd picture to even (see `media.encode`).
PICTURE_SIZE_TAG = "studio_nova_picture_size"
_PICTURE_SIZE_RE = re.compile(rf"^\s*{PICTURE_SIZE_TAG}\s*:\s*(\d+)x(\d+)\s*$", re.IGNORECASE)
_AV_PKT_FLAG_CORRUPT = 0x2
_AV_PKT_FLAG_DISCARD = 0x4


@dataclass(frozen=True)
class FrameTimes:
    """When each source frame is presented, for frame-exact seeking.

    `times[i]` is source frame `i`'s presentation time in seconds from the file's start time
    (the origin of ffmpeg's input-side `-ss`); `start` is that start time itself, so
    `start + times[i]` is the frame's raw timestamp (what ffmpeg reports with `-copyts`).
    `end` is when the last frame stops being shown (its time plus its duration), same origin.
    """

    times: np.ndarray
    start: float
    end: float | None = None


@dataclass(frozen=True)
class _Probed:
    info: MediaInfo
    frame_times: FrameTimes | None  # None when the file carries no timestamps


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Facts about the first video stream of `path` (cached per path, size and mtime)."""
    return _probe(path).info


def frame_times(info: MediaInfo) -> FrameTimes | None:
    """Presentation times of the source frames of `info`'s file (None: no timestamps).

    Kept out of `MediaInfo` because it is one number per frame; it comes from the same cache
    as `probe`, so asking for it costs nothing after a probe of the unchanged file.
    """
    return _probe(info.path).frame_times


def _probe(path: str | os.PathLike[str]) -> _Probed:
    file = Path(path).absolute()
    stat = _stat_media(file)
    return _probe_cached(str(file), stat.st_size, stat.st_mtime_ns)


def _stat_media(file: Path) -> os.stat_result:
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise MediaError("media file does not exist", path=file) from None
    except OSError as exc:
        raise MediaError(
            f"media file cannot be accessed: {exc.strerror or exc}", path=file
        ) from exc
    if file.is_dir():
        raise MediaError("is a directory, not a media file", path=file)
    if stat.st_size == 0:
        raise MediaError(
            "media file is empty (0 bytes): an interrupted copy or export? copy it again, or relink "
            "the clip to the real file",
            path=file,
        )
    try:
        with file.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise MediaError(f"media file cannot be read: {exc.strerror or exc}", path=file) from exc
    return stat


@lru_cache(maxsize=512)
def _probe_cached(path: str, size: int, mtime_ns: int) -> _Probed:
    # size and mtime_ns are part of the cache key only: a file rewritten in place is re-read.
    del size, mtime_ns
    file = Path(path)
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-copyts",
        "-i", f"file:{file}",
        "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-",
    ]  # fmt: skip
    try:
        run = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        raise MediaError(f"ffmpeg could not be started to probe it: {exc}", path=file) from exc
    stderr = run.stderr.decode("utf-8", "replace")
    try:
        return _probed(file, run.returncode, run.stdout, stderr)
    except MediaError:
        log_ffmpeg("probing", file, stderr, failed=True)
        raise


def _probed(file: Path, status: int, stdout: bytes, stderr: str) -> _Probed:
    lines = stderr.splitlines()
    header = _input_section(lines)
    if not header:
        raise MediaError(unreadable_problem(file, stderr), path=file)
    video = _first_video_stream(header)
    if video is None:
        short = movie_cut_short(file)
        if short is not None:  # the index is cut off before its video track
            raise MediaError(cut_short_problem(*short), path=file)
        kinds = sorted({m.group(1).lower() for m in map(_ANY_STREAM_RE.match, header) if m})
        if not kinds:
            raise MediaError(
                "holds no streams at all: it is damaged or truncated (an interrupted write or "
                "copy leaves files like this); copy or export it again",
                path=file,
            )
        raise MediaError(
            f"has no video stream (found: {', '.join(kinds)}); link the clip to a file with "
            f"pictures in it",
            path=file,
        )
    if status != 0:
        raise MediaError(f"ffmpeg could not read its frames: {decoding_problem(stderr)}", path=file)
    packets = _read_packets(stdout)
    if packets.count == 0:
        short = movie_cut_short(file)
        raise MediaError(cut_short_problem(*short) if short else "its video stream holds no frames", path=file)
    container = _container(header)
    is_image = container.endswith("_pipe") or container in ("image2", "image2pipe")
    if is_image and file.suffix.lower() in VIDEO_SUFFIXES:
        codec = (_top_level_parts(video.description)[0].split() or ["unknown"])[0]
        raise MediaError(image_problem(file, codec), path=file)
    probed = _build(file, header, video, packets, is_image)
    if packets.corrupt_rank is not None or "partial file" in stderr:
        # A fast-start file cut short: the index (at the front) lists every frame, the data
        # stops partway, and the last packet ffmpeg reads is incomplete (flagged corrupt).
        stopped = packets.corrupt_rank if packets.corrupt_rank is not None else packets.count
        if packets.corrupt_rank is None or packets.corrupt_last or "partial file" in stderr:
            listed = _listed_frames(header, probed.info.rate)
            raise MediaError(truncated_problem(stopped, listed), path=file, frame=stopped)
    if container.startswith("matroska") and not probed.info.vfr and _streams(header) == 1:
        # Matroska cut short reads without an error, only with fewer frames than the duration
        # its header was finished with (a lone video stream: no other stream can be longer).
        # QuickTime / MP4 are caught above and by their boxes; their duration can hold empty
        # edits, so it is no measure there.
        listed = _listed_frames(header, probed.info.rate)
        if listed is not None and listed - packets.count >= max(2, listed // 100):
            raise MediaError(truncated_problem(packets.count, listed), path=file, frame=packets.count)
    log_ffmpeg("probing", file, stderr, failed=False)
    return probed


def _container(header: list[str]) -> str:
    match = _FORMAT_RE.match(header[0]) if header else None
    return match.group(1) if match else ""


def _streams(header: list[str]) -> int:
    return sum(1 for line in header if _ANY_STREAM_RE.match(line))


def _listed_frames(header: list[str], rate: Fraction) -> int | None:
    """Frames the container's duration promises (what its index lists), or None."""
    for line in header:
        match = _DURATION_RE.search(line)
        if match:
            hours, minutes, seconds = int(match.group(1)), int(match.group(2)), float(match.group(3))
            return round((hours * 3600 + minutes * 60 + seconds) * float(rate))
    return None


def _input_section(lines: list[str]) -> list[str]:
    """The lines ffmpeg prints about input #0 (stream list and metadata)."""
    section: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("Input #0"):
            inside = True
        elif inside and not line.startswith(" "):
            break
        if inside:
            section.append(line)
    return section


@dataclass(frozen=True)
class _VideoStream:
    index: int
    description: str
    metadata: list[str]


def _first_video_stream(header: list[str]) -> _VideoStream | None:
    for number, line in enumerate(header):
        match = _STREAM_RE.match(line)
        if match is None or "(attached pic)" in match.group(2):
            continue
        indent = len(line) - len(line.lstrip())
        metadata = []
        for following in header[number + 1 :]:
            if len(following) - len(following.lstrip()) <= indent:
                break
            metadata.append(following)
        return _VideoStream(int(match.group(1)), match.group(2), metadata)
    return None


@dataclass(frozen=True)
class _Packets:
    count: int
    pts: np.ndarray | None  # presentation timestamps of kept packets, ascending
    unique: bool  # no two packets share a timestamp (else `pts` holds duplicates)
    time_base: Fraction | None
    duration: int | None  # most common packet duration, in time_base units
    last_duration: int | None = None  # duration of the last packet in presentation order
    corrupt_rank: int | None = None  # presentation rank of the first packet flagged corrupt
    corrupt_last: bool = False  # ... and whether it is the last packet read (a cut-short file)


def _read_packets(stdout: bytes) -> _Packets:
    """Kept packets of the framecrc listing (`#tb 0: 1/25`, then `stream, dts, pts, ...`)."""
    time_base: Fraction | None = None
    pts: list[int] = []
    durations: list[int] = []
    count = 0
    have_pts = True
    corrupt: int | None = None  # decode-order number of the first corrupt packet
    for raw in stdout.splitlines():
        if raw.startswith(b"#"):
            if raw.startswith(b"#tb 0:"):
                time_base = Fraction(raw.split(b":", 1)[1].strip().decode())
            continue
        fields = [field.strip() for field in raw.split(b",")]
        if len(fields) < 6:
            continue
        flags = next((f for f in fields[6:] if f.startswith(b"F=")), None)
        bits = int(flags[2:], 16) if flags is not None else 0
        if bits & _AV_PKT_FLAG_DISCARD:
            continue
        if bits & _AV_PKT_FLAG_CORRUPT and corrupt is None:
            corrupt = count
        count += 1
        if have_pts and fields[2].lstrip(b"-").isdigit():
            pts.append(int(fields[2]))
        else:
            have_pts = False
        durations.append(int(fields[3]) if fields[3].isdigit() else 0)
    usable = have_pts and time_base is not None and len(pts) == count
    duration = last_duration = corrupt_rank = None
    known = [d for d in durations if d > 0]
    if known:
        values, counts = np.unique(np.asarray(known), return_counts=True)
        duration = int(values[np.argmax(counts)])
    sorted_pts = None
    if usable and count:
        raw_pts = np.asarray(pts, dtype=np.int64)
        order = np.argsort(raw_pts, kind="stable")
        sorted_pts = raw_pts[order]
        last_duration = durations[int(order[-1])] or None
        if corrupt is not None:
            corrupt_rank = int(np.sum(raw_pts < raw_pts[corrupt]))
    elif corrupt is not None:
        corrupt_rank = corrupt
    return _Packets(
        count=count,
        pts=sorted_pts,
        unique=usable and len(set(pts)) == count,
        time_base=time_base,
        duration=duration,
        last_duration=last_duration,
        corrupt_rank=corrupt_rank,
        corrupt_last=corrupt is not None and corrupt == count - 1,
    )


def _build(
    file: Path, header: list[str], video: _VideoStream, packets: _Packets, is_image: bool = False
) -> _Probed:
    parts = _top_level_parts(video.description)
    codec = parts[0].split()[0] if parts and parts[0] else "unknown"
    pix_fmt, colour = _pixel_format(parts[1] if len(parts) > 1 else "")
    width = height = 0
    fps_text = tbr_text = None
    for part in parts[2:]:
        size = _SIZE_RE.match(part)
        if size and not width:
            width, height = int(size.group(1)), int(size.group(2))
        rate = _RATE_RE.match(part)
        if rate:
            value = float(rate.group(1)) * (1000 if rate.group(2) else 1)
            if rate.group(3) == "fps":
                fps_text = value
            else:
                tbr_text = value
    if not width or not height or pix_fmt is None:
        raise MediaError(
            f"ffmpeg does not report the size or pixel format of its video stream "
            f"({without_addresses(video.description)!r})",
            path=file,
        )
    fps = fps_text or tbr_text
    if not fps:
        raise MediaError(
            f"its video stream has no frame rate ({without_addresses(video.description)!r})", path=file
        )
    rate = _exact_rate(fps, packets)
    bit_depth, has_alpha = _pixel_format_facts(pix_fmt)
    matrix = _MATRIX_BY_TAG.get(colour or "", "bt709" if height >= 720 else "bt601")
    timecode = _timecode(video.metadata) or _timecode(header)
    start_frame = 0
    if timecode is not None:
        try:
            start_frame = timecode_to_frames(timecode, rate)
        except ValueError as exc:
            raise MediaError(f"its start timecode cannot be used: {exc}", path=file) from exc
    coded_size = None
    picture = _picture_size(header)
    if picture is not None and picture != (width, height):
        if picture[0] <= width < picture[0] + 16 and picture[1] <= height < picture[1] + 16:
            coded_size = (width, height)
            width, height = picture
    times = None
    timing: dict[str, object] = {}
    if packets.pts is not None and packets.time_base is not None:
        start = _format_start(header)
        # Two frames with one timestamp (B-frames muxed at a coarse time base): the decoder
        # shows the second a tick later, and so does this.
        ticks = np.maximum.accumulate(packets.pts - np.arange(len(packets.pts))) + np.arange(len(packets.pts))
        seconds = ticks.astype(np.float64) * float(packets.time_base)
        last = packets.last_duration or packets.duration
        end = float(seconds[-1] + last * packets.time_base) - start if last else None
        measured = FrameTimes(times=seconds - start, start=start, end=end)
        timing = timing_facts(measured.times, measured.end, rate, float(packets.time_base))
        # Repaired times are used for seeking only where a constant rate cannot be assumed.
        if packets.unique or timing.get("vfr"):
            times = measured
    info = MediaInfo(
        path=file,
        width=width,
        height=height,
        rate=rate,
        frame_count=packets.count,
        pix_fmt=pix_fmt,
        bit_depth=bit_depth,
        codec=codec,
        color_matrix=matrix,
        timecode=timecode,
        start_frame=start_frame,
        has_alpha=has_alpha,
        comment=_comment(header),
        coded_size=coded_size,
        is_image=is_image,
        **timing,
    )
    return _Probed(info=info, frame_times=times)


def _top_level_parts(description: str) -> list[str]:
    """Split `h264 (High) (avc1 / 0x..), yuv420p(tv, bt709), 1920x1080 [SAR 1:1], ...`."""
    parts, depth, current = [], 0, []
    for char in description:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _pixel_format(part: str) -> tuple[str | None, str | None]:
    """`yuv422p10le(tv, bt709/unknown/unknown, progressive)` → ('yuv422p10le', 'bt709')."""
    match = re.match(r"^([0-9a-z_]+)(?:\((.*)\))?", part)
    if match is None or match.group(1) == "none":
        return None, None
    colour = None
    for token in (match.group(2) or "").split(","):
        token = token.strip()
        name = token.split("/")[0] if "/" in token else token
        if name in _COLORSPACE_WORDS:
            colour = name
            break
    return match.group(1), colour


def _exact_rate(fps: float, packets: _Packets) -> Fraction:
    """The exact rate: a known rate from the printed value, else the packets' duration."""
    snapped = snap_rate(fps)
    if snapped.denominator in (1, 1001):
        return snapped
    if packets.duration and packets.time_base:
        from_packets = 1 / (packets.duration * packets.time_base)
        if abs(float(from_packets) - fps) < 0.01:
            return from_packets
    return snapped


def _pixel_format_facts(pix_fmt: str) -> tuple[int, bool]:
    """(bits per component, has alpha) from ffmpeg's own pixel format table."""
    table = _pixel_format_table(ffmpeg_exe())
    if pix_fmt in table:
        return table[pix_fmt]
    digits = re.search(r"p(\d+)(le|be)?$", pix_fmt)
    return (int(digits.group(1)) if digits else 8), pix_fmt.startswith(("yuva", "rgba", "gbrap"))


@lru_cache(maxsize=4)
def _pixel_format_table(exe: str) -> dict[str, tuple[int, bool]]:
    run = subprocess.run([exe, "-hide_banner", "-pix_fmts"], capture_output=True, check=False)
    table: dict[str, tuple[int, bool]] = {}
    for line in run.stdout.decode("utf-8", "replace").splitlines():
        fields = line.split()
        # FLAGS NAME NB_COMPONENTS BITS_PER_PIXEL BIT_DEPTHS (e.g. `IO... yuv420p 3 12 8-8-8`)
        if len(fields) == 5 and fields[2].isdigit() and re.fullmatch(r"[\d-]+", fields[4]):
            depths = [int(d) for d in fields[4].split("-") if d]
            components = int(fields[2])
            table[fields[1]] = (max(depths), components in (2, 4))
    return table


def _timecode(lines: list[str]) -> str | None:
    for line in lines:
        match = _TIMECODE_RE.match(line)
        if match:
            return match.group(1)
    return None


def _comment(header: list[str]) -> str | None:
    """The container-level `comment` (the lines before the first stream)."""
    for line in header:
        if _STREAM_RE.match(line) or _ANY_STREAM_RE.match(line):
            break
        match = _COMMENT_RE.match(line)
        if match:
            return match.group(1)
    return None


def _picture_size(header: list[str]) -> tuple[int, int] | None:
    """The picture size our H.264 writer records when it pads an odd size to even."""
    for line in header:
        if _STREAM_RE.match(line) or _ANY_STREAM_RE.match(line):
            break
        match = _PICTURE_SIZE_RE.match(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def _format_start(header: list[str]) -> float:
    for line in header:
        match = _START_RE.search(line)
        if match:
            return float(match.group(1))
    return 0.0

