"""Writing renders: masters, review proxies and stream-copy concatenation.

Every output is written under a temporary name in its target folder (keeping the extension,
so ffmpeg picks the right muxer) and appears under its real name only once it is complete
and its frame count has been probed back; renders are versioned and never overwritten
(DESIGN section 4), so an existing target is an error, not something to replace.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO

import ffmpeg
import numpy as np

from studio_nova.atomic import publish, temp_sibling
from studio_nova.errors import EncodeError, MediaError
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import MATRIX_TAGS, is_yuv, probe
from studio_nova.media.timecode import timecode_to_frames

# Matrix name → (primaries, transfer) tags written next to the matrix. The pipeline only
# knows the matrix; primaries and transfer are tagged to match it because an untagged file
# makes NLEs guess.
_COLOUR_TAGS = {
    "bt709": ("bt709", "bt709"),
    "bt601": ("smpte170m", "smpte170m"),
    "bt2020": ("bt2020", "bt2020-10"),
    "smpte240m": ("smpte240m", "smpte240m"),
    "fcc": (None, None),
}


@dataclass(frozen=True)
class _Codec:
    encoder: str
    yuv_pix_fmt: str | None  # None: stored as RGB (planar gbr), no matrix involved
    even_size: bool = False  # padded to even width and height (4:2:0)
    even_width: bool = False  # 4:2:2 cannot hold an odd width: refused, not resampled
    alpha_pix_fmt: str | None = None  # what it stores with alpha=True; None: no alpha support

    def with_alpha(self) -> _Codec:
        """The same codec storing RGBA: its alpha format takes the place of the RGB one."""
        stored = self.alpha_pix_fmt
        return _Codec(self.encoder, stored if stored and is_yuv(stored) else None, self.even_size,
                      self.even_width, stored)


CODECS: dict[str, _Codec] = {
    "prores_hq": _Codec("prores_ks", "yuv422p10le", even_width=True),
    "prores_4444": _Codec("prores_ks", "yuv444p10le", alpha_pix_fmt="yuva444p10le"),
    "h264": _Codec("libx264", "yuv420p", even_size=True),
    "ffv1": _Codec("ffv1", None, alpha_pix_fmt="gbrap"),
}


class VideoWriter:
    """Encode RGB frames (H×W×3 uint8 rgb24 or uint16 rgb48le) into a new video file.

    Use as a context manager: a clean exit closes and publishes the file; an exception
    inside the `with` removes the temporary file and leaves nothing at `path`.

    `prores_hq` is prores_ks 422 HQ at a fixed quantiser (`-qscale:v`, several times faster
    than the default rate control at the same quality); `prores_4444` is its 4:4:4 sibling;
    `h264` is a libx264 yuv420p review file (odd sizes padded to even); `ffv1` stores the
    RGB frames losslessly (planar RGB, 8 or 16 bit) for tests and intermediates.

    With `alpha=True` frames are H×W×4 RGBA (rgba / rgba64le) with *straight* alpha, and the
    file keeps the alpha channel: `prores_4444` stores yuva444p10le (ProRes 4444 with a 16-bit
    coded alpha plane, as cameras and compositing apps write it), `ffv1` planar RGBA losslessly.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        rate: Fraction,
        codec: str,
        input_dtype: np.dtype | type | str,
        color_matrix: str = "bt709",
        timecode: str | None = None,
        prores_qscale: int = 4,
        crf: int = 20,
        alpha: bool = False,
    ) -> None:
        self.path = Path(path).absolute()
        _check_target(self.path)
        if codec not in CODECS:
            raise EncodeError(
                f"codec={codec!r} is not one of {', '.join(sorted(CODECS))}", path=self.path
            )
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EncodeError(f"{name} must be a positive int, got {value!r}", path=self.path)
        if not isinstance(alpha, bool):
            raise EncodeError(f"alpha must be True or False, got {alpha!r}", path=self.path)
        if alpha and CODECS[codec].alpha_pix_fmt is None:
            with_alpha = ", ".join(sorted(k for k, v in CODECS.items() if v.alpha_pix_fmt))
            raise EncodeError(
                f"codec={codec!r} cannot store an alpha channel (use one of {with_alpha})",
                path=self.path,
            )
        if CODECS[codec].even_width and width % 2:
            raise EncodeError(
                f"codec={codec!r} stores 4:2:2 chroma and needs an even width, got {width} "
                f"(use prores_4444 for odd widths)",
                path=self.path,
            )
        try:
            self.rate = Fraction(rate)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise EncodeError(f"rate={rate!r} is not a rational", path=self.path) from exc
        if self.rate <= 0:
            raise EncodeError(f"rate must be positive, got {rate!r}", path=self.path)
        try:
            self.dtype = np.dtype(input_dtype)
        except TypeError as exc:
            raise EncodeError(
                f"input_dtype={input_dtype!r} is not a dtype", path=self.path
            ) from exc
        if self.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise EncodeError(
                f"input_dtype must be uint8 (rgb24) or uint16 (rgb48le), got {self.dtype}",
                path=self.path,
            )
        if color_matrix not in MATRIX_TAGS:
            raise EncodeError(
                f"color_matrix={color_matrix!r} is not one of {', '.join(MATRIX_TAGS)}",
                path=self.path,
            )
        if timecode is not None:
            _check_timecode(timecode, self.rate, self.path)
        if not isinstance(prores_qscale, int) or not 1 <= prores_qscale <= 31:
            raise EncodeError(f"prores_qscale must be 1..31, got {prores_qscale!r}", path=self.path)
        if not isinstance(crf, int) or not 0 <= crf <= 51:
            raise EncodeError(f"crf must be 0..51, got {crf!r}", path=self.path)
        self.width, self.height = width, height
        self.codec = codec
        self.color_matrix = color_matrix
        self.timecode = timecode
        self.prores_qscale = prores_qscale
        self.crf = crf
        self.alpha = alpha
        self.frames_written = 0
        self._temp = temp_sibling(self.path)
        self._job: _Job | None = None
        self._done = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one frame; its shape and dtype must match the writer's."""
        if self._done:
            raise EncodeError("write() after close() or abort()", path=self.path)
        expected = (self.height, self.width, 4 if self.alpha else 3)
        is_array = isinstance(frame, np.ndarray)
        if not is_array or frame.shape != expected or frame.dtype != self.dtype:
            got = (
                f"{frame.shape} {frame.dtype}"
                if isinstance(frame, np.ndarray)
                else type(frame).__name__
            )
            raise EncodeError(
                f"frame must be a {expected} {self.dtype} {'RGBA' if self.alpha else 'RGB'} "
                f"array, got {got}",
                path=self.path,
                frame=self.frames_written,
            )
        if self._job is None:
            self._job = _Job(self._command(), self.path, stdin=True)
        self._job.feed(np.ascontiguousarray(frame), self.frames_written)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file, check its frame count, and publish it at `path`."""
        if self._done:
            return self.path
        self._done = True
        job, self._job = self._job, None
        if job is None or self.frames_written == 0:
            if job is not None:
                job.abort()
            _remove(self._temp)
            raise EncodeError("no frames were written; nothing to publish", path=self.path)
        try:
            job.finish(f"encoding {self.frames_written} frames")
            _publish(self._temp, self.path, self.frames_written)
        finally:
            _remove(self._temp)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file; nothing is left at `path`."""
        self._done = True
        if self._job is not None:
            self._job.abort()
            self._job = None
        _remove(self._temp)

    def _command(self) -> list[str]:
        spec = CODECS[self.codec]
        deep = self.dtype != np.uint8
        if self.alpha:
            spec = spec.with_alpha()
            pix_fmt = "rgba64le" if deep else "rgba"
        else:
            pix_fmt = "rgb48le" if deep else "rgb24"
        source = ffmpeg.input(
            "pipe:",
            format="rawvideo",
            pix_fmt=pix_fmt,
            s=f"{self.width}x{self.height}",
            framerate=_rate_text(self.rate),
        )
        video = _to_storage(source, spec, self.color_matrix, self.dtype, alpha=self.alpha)
        options = _codec_options(
            self.codec, self.prores_qscale, self.crf, self.dtype, alpha=self.alpha
        )
        if self.timecode is not None:
            options["timecode"] = self.timecode
        return _compile(video.output(f"file:{self._temp}", **options))


def concat(
    segments: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    timecode: str | None = None,
    comment: str | None = None,
) -> Path:
    """Join segments of one format into `out` by stream copy (no re-encode, no quality loss).

    Made for ProRes chunk renders → one master; the segments must share codec, size, rate
    and pixel format, and the result must hold exactly the sum of their frames. `comment` goes
    into the file's metadata (the render's identity, so the file says what made it).
    """
    target = Path(out).absolute()
    _check_target(target)
    if not segments:
        raise EncodeError("no segments to concatenate", path=target)
    infos = [_probe_for_encode(Path(segment), target) for segment in segments]
    reference = infos[0]
    for info in infos[1:]:
        mismatch = [
            f"{field} {getattr(info, field)} vs {getattr(reference, field)}"
            for field in ("codec", "width", "height", "rate", "pix_fmt")
            if getattr(info, field) != getattr(reference, field)
        ]
        if mismatch:
            raise EncodeError(
                f"segment {str(info.path)!r} does not match {str(reference.path)!r} "
                f"({'; '.join(mismatch)}); only identical formats can be stream-copied",
                path=target,
            )
    if timecode is not None:
        _check_timecode(timecode, reference.rate, target)
    total = sum(info.frame_count for info in infos)
    temp = temp_sibling(target)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as listing:
        for info in infos:
            escaped = str(info.path).replace("'", "'\\''")
            listing.write(f"file '{escaped}'\n")
        listing.flush()
        options: dict[str, object] = {"map": "0:v:0", "c": "copy"}
        if timecode is not None:
            options["timecode"] = timecode
        if comment is not None:
            options["metadata"] = f"comment={comment}"
        stream = ffmpeg.input(f"file:{listing.name}", format="concat", safe=0)
        command = _compile(stream.output(f"file:{temp}", **options))
        try:
            _Job(command, target, stdin=False).finish(f"concatenating {len(infos)} segments")
            _publish(temp, target, total)
        finally:
            _remove(temp)
    return target


def make_proxy(
    master: str | os.PathLike[str], proxy: str | os.PathLike[str], crf: int = 20, comment: str | None = None
) -> Path:
    """H.264 review proxy of `master`: same frames, rate and timecode, yuv420p, faststart;
    `comment` in its metadata (see `concat`)."""
    target = Path(proxy).absolute()
    _check_target(target)
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise EncodeError(f"crf must be 0..51, got {crf!r}", path=target)
    info = _probe_for_encode(Path(master), target)
    video = _pad_even(ffmpeg.input(f"file:{info.path}")["V:0"])
    if is_yuv(info.pix_fmt):
        # Same matrix in and out: a change of subsampling and depth, no colour shift.
        tag = MATRIX_TAGS[info.color_matrix]
        video = video.filter("zscale", matrixin=tag, matrix=tag, rangein="input", **_ZSCALE_TO_YUV)
    else:
        video = video.filter("zscale", matrix=MATRIX_TAGS[info.color_matrix], **_ZSCALE_TO_YUV)
    video = _finish_yuv(video, CODECS["h264"], info.color_matrix)
    options = _codec_options("h264", 4, crf, np.dtype(np.uint8))
    if info.timecode is not None:
        options["timecode"] = info.timecode
    if comment is not None:
        options["metadata"] = f"comment={comment}"
    temp = temp_sibling(target)
    command = _compile(video.output(f"file:{temp}", **options))
    try:
        _Job(command, target, stdin=False).finish(f"making a proxy of {str(info.path)!r}")
        _publish(temp, target, info.frame_count)
    finally:
        _remove(temp)
    return target


def _to_storage(
    source: ffmpeg.nodes.FilterableStream,
    spec: _Codec,
    matrix: str,
    dtype: np.dtype,
    alpha: bool = False,
) -> ffmpeg.nodes.FilterableStream:
    """Filter chain RGB → what the codec stores, with colour tags.

    zimg (`zscale`) does the matrix and the chroma subsampling, mirroring the decoder, so a
    decode → encode round trip does not drift (swscale would scale 16-bit white differently
    and site chroma differently from what it reads back).
    """
    if spec.yuv_pix_fmt is None:
        planar = ("gbrap" if alpha else "gbrp") + ("" if dtype == np.uint8 else "16le")
        return source.filter("format", planar).filter("setparams", range="pc", colorspace="gbr")
    if spec.even_size:
        source = _pad_even(source)
    # With alpha, zimg keeps the alpha plane exact (full range) and the colour straight; only
    # where alpha is exactly 0 it stores black, which no compositing can see. (Going round
    # zscale with alphamerge costs 4 levels of alpha: it merges at 8 bits.)
    video = source.filter("zscale", matrix=MATRIX_TAGS[matrix], **_ZSCALE_TO_YUV)
    return _finish_yuv(video, spec, matrix)


def _pad_even(video: ffmpeg.nodes.FilterableStream) -> ffmpeg.nodes.FilterableStream:
    """4:2:0 needs even sizes: add a black row / column rather than resample the picture."""
    return video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")


# Limited range, bicubic chroma filter, left-sited chroma (the ProRes / H.264 convention,
# and what the decoder assumes, since ProRes cannot store a chroma location), rounding.
_ZSCALE_TO_YUV = {"range": "limited", "filter": "bicubic", "dither": "none"}


def _finish_yuv(
    video: ffmpeg.nodes.FilterableStream, spec: _Codec, matrix: str
) -> ffmpeg.nodes.FilterableStream:
    video = video.filter("format", spec.yuv_pix_fmt)
    primaries, transfer = _COLOUR_TAGS[matrix]
    tags = {"colorspace": MATRIX_TAGS[matrix], "range": "tv"}
    if primaries is not None:
        tags["color_primaries"] = primaries
    if transfer is not None:
        tags["color_trc"] = transfer
    return video.filter("setparams", **tags)


def _codec_options(
    codec: str, qscale: int, crf: int, dtype: np.dtype, alpha: bool = False
) -> dict[str, object]:
    spec = CODECS[codec].with_alpha() if alpha else CODECS[codec]
    options: dict[str, object] = {"vcodec": spec.encoder, "fps_mode": "passthrough"}
    if codec == "prores_hq":
        options.update({"profile:v": 3, "qscale:v": qscale, "vendor": "apl0"})
    elif codec == "prores_4444":
        bits = 16 if alpha else 0
        options.update({"profile:v": 4, "qscale:v": qscale, "vendor": "apl0", "alpha_bits": bits})
    elif codec == "h264":
        options.update({"crf": crf, "preset": "veryfast", "movflags": "+faststart"})
    elif codec == "ffv1":
        options.update({"level": 3, "slicecrc": 1, "g": 1})
    planar = ("gbrap" if alpha else "gbrp") + ("" if dtype == np.uint8 else "16le")
    options["pix_fmt"] = spec.yuv_pix_fmt or planar
    return options


def _compile(node: ffmpeg.nodes.OutputStream) -> list[str]:
    args = node.global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")
    return args.compile(cmd=ffmpeg_exe())


class _Job:
    """One encoding ffmpeg process, stderr in a temp file (no pipe to fill up and block)."""

    def __init__(self, command: list[str], target: Path, *, stdin: bool) -> None:
        self._target = target
        self._last_words = "(ffmpeg printed nothing)"
        self._log: IO[bytes] = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
        except OSError as exc:
            self._log.close()
            raise EncodeError(f"ffmpeg could not be started: {exc}", path=target) from exc

    def feed(self, frame: np.ndarray, number: int) -> None:
        stdin = self._process.stdin
        try:
            if stdin is None:
                raise BrokenPipeError("ffmpeg takes no input")
            stdin.write(memoryview(frame).cast("B"))
        except (BrokenPipeError, ValueError) as exc:
            self.abort()
            raise EncodeError(
                f"ffmpeg stopped accepting frames ({exc}): {self._last_words}",
                path=self._target,
                frame=number,
            ) from exc

    def finish(self, what: str) -> None:
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg already exited; its status below says why
        status = self._process.wait()
        tail = self._tail()
        self._log.close()
        if status != 0:
            raise EncodeError(
                f"ffmpeg failed {what} (exit status {status}): {tail}", path=self._target
            )

    def abort(self) -> None:
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass  # nothing more to tell a process that is being stopped
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if not self._log.closed:
            self._last_words = self._tail()
            self._log.close()

    def _tail(self, count: int = 6) -> str:
        if self._log.closed:
            return "(no log)"
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, size - 16384))
        lines = [line.strip() for line in self._log.read().decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line]
        return " | ".join(lines[-count:]) if lines else "(ffmpeg printed nothing)"


def _check_target(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise EncodeError(
            "already exists; renders are versioned and never overwritten (pick a new version)",
            path=path,
        )
    if not path.parent.is_dir():
        raise EncodeError(f"its folder {str(path.parent)!r} does not exist", path=path)
    if not path.suffix:
        raise EncodeError(
            "has no extension (e.g. .mov, .mp4, .mkv) to choose a container", path=path
        )


def _check_timecode(timecode: str, rate: Fraction, path: Path) -> None:
    try:
        timecode_to_frames(timecode, rate)
    except ValueError as exc:
        raise EncodeError(f"timecode cannot be written: {exc}", path=path) from exc


def _probe_for_encode(source: Path, target: Path) -> MediaInfo:
    try:
        return probe(source)
    except MediaError as exc:
        raise EncodeError(f"cannot use input {str(source)!r}: {exc.message}", path=target) from exc


def _publish(temp: Path, target: Path, frames: int) -> None:
    """Check the finished temp file, then give it its real name without overwriting."""
    try:
        written = probe(temp).frame_count
    except MediaError as exc:
        raise EncodeError(
            f"the finished file cannot be read back: {exc.message}", path=target
        ) from exc
    if written != frames:
        raise EncodeError(
            f"the finished file holds {written} frames, expected {frames}", path=target
        )
    try:
        publish(temp, target, overwrite=False)
    except FileExistsError:
        raise EncodeError(
            "appeared while it was being written; renders are never overwritten", path=target
        ) from None
    except OSError as exc:
        raise EncodeError(f"cannot be published: {exc}", path=target) from exc


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # never created, or already published


def _rate_text(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"
