"""Frame-exact decoding of source frames into RGB numpy arrays, streamed from an ffmpeg pipe.

Frame `i` is the `i`-th frame ffmpeg decodes (DESIGN section 4). A read seeks with ffmpeg's
input-side `-ss` (fast: the demuxer jumps to a keyframe and only a GOP is decoded) to the
midpoint between the wanted frame's presentation time and the previous one, both measured
by `probe`, and ffmpeg drops what it decodes before that point.

Every frame's timestamp is then checked against the probe (ffmpeg's `showinfo` filter logs
it before the frame reaches the pipe). Some demuxers (MPEG-TS, for one) land on a keyframe
*after* the target, which would silently shift every frame: when the first frame is wrong
the read starts again further back with a timestamp trim, and in the last resort decodes
from the file start. A damaged stream that drops frames mid-range fails with DecodeError.
A wrong frame is never returned.

`read_alpha` streams a file's own alpha channel through the same seeking and checks (one
command builder, two output kinds), so the alpha of frame `i` is always frame `i`'s.

YUV → RGB goes through zimg (ffmpeg's `zscale`), not swscale: swscale maps 10-bit white to
65283 instead of 65535 (a bias of half an 8-bit level) and is 2-3× slower at full chroma
quality. zimg needs whole chroma samples, so a subsampled picture of odd size (161×121 4:2:0)
is padded to the next whole sample first and cropped back after: the added pixels take part in
nothing, so every real pixel converts as it would in an even-size file. A file our H.264
writer padded to even (`MediaInfo.coded_size`) is cropped back to its picture the same way.

A constant-rate view of variable-frame-rate media (`MediaInfo.resampled`, see `media.vfr`)
decodes the source frames it needs in one pass and repeats or skips them by timestamp.

When ffmpeg stops early or delivers the wrong frame, the DecodeError says which frame and what
is wrong with the file (truncated, damaged) in words; ffmpeg's own output goes to the log
(`media.ffmpeg_errors`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, cast

import ffmpeg
import numpy as np

from studio_nova.errors import DecodeError, MediaError, MediaRangeError
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.ffmpeg_errors import decoding_problem, log_ffmpeg
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import MATRIX_TAGS, frame_times, is_yuv, probe
from studio_nova.media.vfr import source_frame_map

# How far before the target a retry seeks, in seconds, after a seek that landed too late.
_SEEK_BACKOFF_S = (2.0, 10.0, 60.0)

_ALPHA_SCALE = np.float32(1.0 / 65535.0)

_SHOWINFO_TB_RE = re.compile(rb"showinfo.*config in time_base: (\d+)/(\d+)")
_SHOWINFO_FRAME_RE = re.compile(rb"showinfo.*\bn:\s*(\d+)\s+pts:\s*(-?\d+)")


def read_frames(info: MediaInfo, first: int, last: int) -> Iterator[np.ndarray]:
    """Source frames `first`..`last` inclusive, one H×W×3 RGB array at a time.

    uint8 (rgb24) for sources of 8 bits or fewer, uint16 (rgb48le, full 16-bit scale) above;
    YUV is converted with `info.color_matrix` and the range the stream declares. The range
    is checked now; ffmpeg starts on the first `next()` and is always reaped, also when the
    caller stops early or an exception unwinds through the loop.
    """
    _check_range(info, first, last)
    if info.resampled:
        return _resampled(info, int(first), int(last))
    return _stream(info, int(first), int(last))


def read_frame(info: MediaInfo, index: int) -> np.ndarray:
    """One source frame (see `read_frames`)."""
    (frame,) = list(read_frames(info, index, index))
    return frame


def read_alpha(info: MediaInfo, first: int, last: int) -> Iterator[np.ndarray]:
    """The alpha channel of source frames `first`..`last` inclusive, one H×W float32 at a time.

    Values in [0, 1] (1 = opaque), as the file stores them: ProRes 4444 (yuva444p10/12),
    PNG / QuickTime Animation (rgba, rgba64) and FFV1 (gbrap...) all keep straight alpha
    unless the file was written premultiplied, which a file does not record. Frames are
    the same ones `read_frames` returns for the same numbers (same seeking and timestamp
    checks). A file without an alpha channel is a MediaError naming it.
    """
    _check_range(info, first, last)
    if not info.has_alpha:
        raise MediaError(
            f"has no alpha channel (pixel format {info.pix_fmt}); an alpha matte needs e.g. "
            f"ProRes 4444 with alpha, PNG or QuickTime Animation in RGBA",
            path=info.path,
        )
    if info.resampled:
        return _resampled(info, int(first), int(last), kind="alpha")
    return _stream(info, int(first), int(last), kind="alpha")


def _resampled(view: MediaInfo, first: int, last: int, kind: str = "rgb") -> Iterator[np.ndarray]:
    """Frames `first..last` of a constant-rate view: the source frames shown at those times,
    decoded once each (a repeated frame is handed out as a copy, so callers may write to it)."""
    source = probe(view.path)
    mapping = source_frame_map(view, source)
    if len(mapping) != view.frame_count or not source.vfr:
        raise MediaError(
            "changed since it was conformed to a constant rate; probe and conform it again",
            path=view.path,
        )
    wanted = [int(j) for j in mapping[first : last + 1]]
    frames = _stream(source, wanted[0], wanted[-1], kind)
    try:
        have, current = wanted[0] - 1, None
        for number, index in enumerate(wanted):
            while have < index:
                current = next(frames)
                have += 1
            again = number + 1 < len(wanted) and wanted[number + 1] == index
            yield current.copy() if again else current
    finally:
        frames.close()


def _check_range(info: MediaInfo, first: int, last: int) -> None:
    for name, value in (("first", first), ("last", last)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MediaRangeError(f"{name} frame must be an int, got {value!r}", path=info.path)
    count = info.frame_count
    details = {"first": int(first), "last": int(last), "frame_count": count}
    if first > last:
        raise MediaRangeError(
            f"frames {first}..{last} are reversed (first must not exceed last)",
            path=info.path,
            frame=int(first),
            **details,
        )
    if first < 0 or last >= count:
        raise MediaRangeError(
            f"frames {first}..{last} requested but the file has {count} frames "
            f"(source frames 0..{count - 1})",
            path=info.path,
            frame=int(first if first < 0 else last),
            **details,
        )


@dataclass(frozen=True)
class _Plan:
    """One way to reach `first`: an input seek and/or a timestamp trim."""

    seek: float | None  # input-side -ss, seconds from the file start
    trim: float | None  # drop frames presented before this raw time (seconds, -copyts)


@dataclass(frozen=True)
class _Expected:
    """Raw timestamps (seconds, as with -copyts) the decoded frames must carry, in order."""

    times: np.ndarray
    tolerance: float


def _timing(info: MediaInfo, first: int, last: int) -> tuple[list[_Plan], _Expected | None]:
    timing = frame_times(info)
    if timing is None:
        # No timestamps to measure (e.g. a raw elementary stream): assume a constant rate.
        seek = None if first == 0 else (first - 0.5) / float(info.rate)
        return [_Plan(seek=seek, trim=None)], None
    times = timing.times
    if len(times) != info.frame_count:
        raise MediaError(
            f"the file changed since it was probed ({info.frame_count} frames then, "
            f"{len(times)} now); probe it again",
            path=info.path,
        )
    around = times[max(first - 1, 0) : last + 2]
    gap = float(np.min(np.diff(around))) if len(around) > 1 else 1.0 / float(info.rate)
    expected = _Expected(times=times[first : last + 1] + timing.start, tolerance=gap / 4.0)
    if first == 0:
        return [_Plan(seek=None, trim=None)], expected
    middle = float(times[first - 1] + times[first]) / 2.0
    plans = [_Plan(seek=middle, trim=None)]
    plans += [
        _Plan(seek=middle - back, trim=timing.start + middle)
        for back in _SEEK_BACKOFF_S
        if middle - back > 0
    ]
    plans.append(_Plan(seek=None, trim=timing.start + middle))
    return plans, expected


def _command(info: MediaInfo, plan: _Plan, count: int, checked: bool, kind: str = "rgb") -> list[str]:
    """The ffmpeg command of one read: `kind` "rgb" (rgb24 / rgb48le) or "alpha" (gray16le)."""
    input_args = {} if plan.seek is None else {"ss": f"{plan.seek:.6f}"}
    video = ffmpeg.input(f"file:{info.path}", **input_args)["V:0"]
    if plan.trim is not None:
        video = video.filter("trim", start=f"{plan.trim:.6f}")
    if checked:
        video = video.filter("showinfo", checksum=0)
    stored_w, stored_h = info.coded_size or (info.width, info.height)
    crop = (stored_w, stored_h) != (info.width, info.height)
    if kind == "alpha":
        # The alpha plane as it is stored (always full range, never matrixed), widened to 16
        # bits by bit replication, so 10- and 12-bit white is 65535.
        if not info.pix_fmt.startswith("yuva"):
            # alphaextract takes planar RGBA (and yuva) but not every packed / big-endian
            # layout (rgba64be from PNG): reorder first, values untouched.
            video = video.filter("format", "gbrap16le" if info.bit_depth > 8 else "gbrap")
        video = video.filter("alphaextract").filter("format", "gray16le")
        pix_fmt = "gray16le"
    else:
        deep = info.bit_depth > 8
        if info.has_alpha and info.pix_fmt.startswith("yuva"):
            # Drop the alpha plane first: zscale would premultiply the colour by it, and the
            # colour of a straight-alpha file (ProRes 4444) is the subject's own, alpha aside.
            video = video.filter("format", "yuv" + info.pix_fmt[len("yuva"):])
        if is_yuv(info.pix_fmt):
            step_x, step_y = _chroma_step(info.pix_fmt)
            if stored_w % step_x or stored_h % step_y:
                video = _pad_luma(video, info, stored_w, stored_h, step_x, step_y)
                crop = True
            video = video.filter(
                "zscale",
                matrixin=_matrix_tag(info),
                rangein="input",  # limited unless the stream says full (yuvj, tagged pc)
                range="full",
                filter="bicubic",  # chroma upsampling
                dither="none",  # plain rounding: the same frame always decodes the same
            ).filter("format", "gbrp16le" if deep else "gbrp")
        pix_fmt = "rgb48le" if deep else "rgb24"
    if crop:
        video = video.filter("crop", info.width, info.height, 0, 0, exact=1)
    out = video.output(
        "pipe:",
        format="rawvideo",
        pix_fmt=pix_fmt,
        fps_mode="passthrough",  # never duplicate or drop a frame to fit a constant rate
        **{"frames:v": count},
    )
    level = "info" if checked else "error"  # showinfo logs at info
    out = out.global_args("-hide_banner", "-nostdin", "-nostats", "-copyts", "-loglevel", level)
    return out.compile(cmd=ffmpeg_exe())


def _pad_luma(
    video: ffmpeg.nodes.FilterableStream, info: MediaInfo, width: int, height: int, step_x: int, step_y: int
) -> ffmpeg.nodes.FilterableStream:
    """A subsampled picture of a size zimg cannot take (161×121 4:2:0) made whole: the luma
    plane padded to the chroma planes' cover (162×122), the chroma planes as they are. The
    `pad` filter cannot do it (it rounds the input size *down* to whole chroma samples, losing
    the last column); the added luma pixels touch no real pixel and are cropped off after."""
    planar = info.pix_fmt
    if not re.fullmatch(r"yuvj?\d{3}p(\d+(le|be))?", planar):  # semi-planar or packed
        depth = "" if info.bit_depth <= 8 else f"{16 if info.bit_depth > 12 else info.bit_depth}le"
        sub = {(2, 2): "420", (2, 1): "422", (4, 1): "411", (4, 4): "410", (1, 2): "440"}[(step_x, step_y)]
        planar = f"yuv{sub}p{depth}"
        video = video.filter("format", planar)
    planes = video.filter_multi_output("extractplanes", "y+u+v")
    luma = planes.stream(0).filter("pad", -(-width // step_x) * step_x, -(-height // step_y) * step_y)
    return ffmpeg.filter(
        [luma, planes.stream(1), planes.stream(2)], "mergeplanes",
        map0s=0, map0p=0, map1s=1, map1p=0, map2s=2, map2p=0, format=planar,
    )  # fmt: skip


def _chroma_step(pix_fmt: str) -> tuple[int, int]:
    """Luma pixels per chroma sample across and down (2, 2 for 4:2:0), from the format's name."""
    name = pix_fmt.lower()
    if "410" in name and not name.startswith("p410"):
        return 4, 4
    if "411" in name:
        return 4, 1
    if "440" in name:
        return 1, 2
    if "420" in name or name.startswith(("nv12", "nv21", "p010", "p012", "p016")):
        return 2, 2
    if "422" in name or name.startswith(("nv16", "nv20", "p210", "p212", "p216", "y210", "y212", "y216")):
        return 2, 1
    return 1, 1


def _matrix_tag(info: MediaInfo) -> str:
    try:
        return MATRIX_TAGS[info.color_matrix]
    except KeyError:
        raise MediaError(
            f"color_matrix {info.color_matrix!r} is not one of {', '.join(MATRIX_TAGS)}",
            path=info.path,
        ) from None


def _stream(info: MediaInfo, first: int, last: int, kind: str = "rgb") -> Iterator[np.ndarray]:
    count = last - first + 1
    if kind == "alpha":
        dtype, shape = np.dtype(np.uint16), (info.height, info.width)
    else:
        dtype = np.dtype(np.uint8 if info.bit_depth <= 8 else np.uint16)
        shape = (info.height, info.width, 3)
    plans, expected = _timing(info, first, last)
    for attempt, plan in enumerate(plans):
        retry = attempt + 1 < len(plans)
        with _Ffmpeg(info, _command(info, plan, count, expected is not None, kind)) as process:
            for offset in range(count):
                frame = np.empty(shape, dtype)
                if not process.read_into(frame):
                    if offset == 0 and retry:
                        break  # a seek that lands past the end gives nothing: go back further
                    process.fail(
                        f"decoding stopped at frame {first + offset}, {offset} frames into "
                        f"{first}..{last}",
                        first + offset,
                    )
                if expected is not None:
                    landed = process.frame_time(offset)
                    wanted = float(expected.times[offset])
                    if landed is None or abs(landed - wanted) > expected.tolerance:
                        if offset == 0 and retry:
                            break  # the seek landed on the wrong frame: go back further
                        got = "no timestamp" if landed is None else f"{landed:.6f} s"
                        process.fail(
                            f"frame {first + offset} should be presented at {wanted:.6f} s "
                            f"but ffmpeg decoded a frame at {got}, so frames are missing",
                            first + offset,
                            damaged=True,
                        )
                yield frame if kind != "alpha" else frame.astype(np.float32) * _ALPHA_SCALE
            else:
                process.finish(f"frames {first}..{last}", first)
                return


class _Ffmpeg:
    """One decoding ffmpeg process: stdout is the frame pipe, stderr goes to a temp file.

    stderr is a file rather than a pipe so that ffmpeg can never block on a full stderr pipe
    (a corrupt stream warns on every frame) while we wait on stdout. Leaving the `with`
    always reaps the process, killing it when it is still running.
    """

    def __init__(self, info: MediaInfo, command: list[str]) -> None:
        self._info = info
        self._command = command
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._offset = 0  # how far showinfo's log has been parsed
        self._time_base: Fraction | None = None
        self._times: dict[int, float] = {}  # parsed, not yet checked frame timestamps

    def __enter__(self) -> _Ffmpeg:
        self._log = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                self._command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log
            )
        except OSError as exc:
            self._log.close()
            raise DecodeError(f"ffmpeg could not be started: {exc}", path=self._info.path) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        if process is not None:
            if process.stdout is not None:
                process.stdout.close()
            if process.poll() is None:
                process.kill()
            process.wait()
        if self._log is not None:
            self._log.close()

    def read_into(self, frame: np.ndarray) -> bool:
        """Read exactly one frame; False on a short read (ffmpeg ended early)."""
        pipe = cast(IO[bytes], cast(subprocess.Popen[bytes], self._process).stdout)
        view = memoryview(frame).cast("B")
        filled = 0
        while filled < len(view):
            got = pipe.readinto(view[filled:])  # type: ignore[attr-defined]
            if not got:
                return False
            filled += got
        return True

    def frame_time(self, number: int) -> float | None:
        """Raw timestamp (s) of the `number`-th frame out, from showinfo's log lines.

        showinfo logs a frame before ffmpeg writes it to the pipe, so once the frame has been
        read its line is in the file. pread leaves the file offset, which ffmpeg shares with
        us, alone; only complete lines are parsed.
        """
        log = cast(IO[bytes], self._log)
        while number not in self._times:
            chunk = os.pread(log.fileno(), 1 << 16, self._offset)
            end = chunk.rfind(b"\n") + 1
            if end == 0:
                return None
            self._offset += end
            for line in chunk[:end].splitlines():
                if self._time_base is None:
                    base = _SHOWINFO_TB_RE.search(line)
                    if base is not None and int(base.group(2)):
                        self._time_base = Fraction(int(base.group(1)), int(base.group(2)))
                frame = _SHOWINFO_FRAME_RE.search(line)
                if frame is not None and self._time_base is not None:
                    pts = int(frame.group(2)) * self._time_base
                    self._times[int(frame.group(1))] = float(pts)
        return self._times.pop(number)

    def finish(self, what: str, frame: int) -> None:
        status = cast(subprocess.Popen[bytes], self._process).wait()
        if status != 0:
            self.fail(f"ffmpeg failed decoding {what}", frame)

    def fail(self, message: str, frame: int, *, damaged: bool = False) -> None:
        """Raise a DecodeError: `message`, then what ffmpeg's stderr says is wrong with the file
        (in words; the stderr itself goes to the log)."""
        process = cast(subprocess.Popen[bytes], self._process)
        if process.poll() is None:
            try:
                process.wait(timeout=0.5)  # it ends at once after EOF; else it is stuck
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        messages = self._messages()
        log_ffmpeg(f"decoding frame {frame} of", self._info.path, messages, failed=True)
        why = decoding_problem(messages)
        if damaged and why.startswith("ffmpeg stopped"):
            why = "the file is damaged there (frames are missing or invalid): copy or export it again"
        raise DecodeError(f"{message}: {why}", path=self._info.path, frame=frame)

    def _messages(self) -> str:
        """ffmpeg's warnings and errors (not its per-frame showinfo lines), from the log's end."""
        log = cast(IO[bytes], self._log)
        size = os.fstat(log.fileno()).st_size
        start = max(0, size - 65536)  # the end is what explains a failure
        text = os.pread(log.fileno(), size - start, start).decode("utf-8", "replace")
        return "\n".join(line.rstrip() for line in text.splitlines() if _is_message(line))


def _is_message(line: str) -> bool:
    """A warning or error line, not the stream listing or showinfo's per-frame log."""
    return bool(line.strip()) and not (
        line[0].isspace()
        or line.startswith(("Input #", "Output #", "Stream mapping", "Press [q]"))
        or "showinfo" in line
    )
