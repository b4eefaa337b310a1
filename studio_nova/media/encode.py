"""Writing renders: masters, review proxies and stream-copy concatenation.

Every output is written under a temporary name in its target folder (keeping the extension,
so ffmpeg picks the right muxer) and appears under its real name only once it is complete
and its frame count has been probed back; renders are versioned and never overwritten
(DESIGN section 4), so an existing target is an error, not something to replace.

Any picture size from 1×1 to 16384×16384 renders (`encode_size_problem` says why another
cannot), and decodes back at exactly its size:

- ProRes 422 cannot store an odd width (prores_ks writes the last chroma column of an odd-width
  4:2:2 frame wrong; measured with the bundled ffmpeg), so `prores_hq` with an odd width is
  written as ProRes 4444 (yuv444p10le, no alpha): the same family and quality, exact size, and
  read as such by every NLE. Odd heights are fine in 4:2:2.
- H.264 4:2:0 (`h264`, the review proxy) needs even sizes: an odd picture is padded by one
  column / row repeating its edge, and the picture size is recorded in the container's
  `studio_nova_picture_size` tag, from which `probe` reports the picture size and decoding crops
  back to it. (Other players show the extra edge pixel.)

When ffmpeg fails, the EncodeError says what is wrong in words (disk full at a folder,
permission denied, ...); ffmpeg's own output goes to the log (`media.ffmpeg_errors`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import ffmpeg
import numpy as np

from studio_nova.atomic import temp_sibling
from studio_nova.errors import EncodeError
from studio_nova.media.encode_job import (
    Job,
    check_target,
    check_timecode,
    compile_command,
    probe_for_encode,
    publish_checked,
    rate_text,
    remove,
)
from studio_nova.media.probe import MATRIX_TAGS, PICTURE_SIZE_TAG, is_yuv

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
    even_size: bool = False  # padded to even width and height (4:2:0), picture size recorded
    odd_width: str | None = None  # the codec written instead for an odd width (4:2:2 cannot)
    alpha_pix_fmt: str | None = None  # what it stores with alpha=True; None: no alpha support

    def with_alpha(self) -> _Codec:
        """The same codec storing RGBA: its alpha format takes the place of the RGB one."""
        stored = self.alpha_pix_fmt
        return _Codec(self.encoder, stored if stored and is_yuv(stored) else None, self.even_size,
                      self.odd_width, stored)


CODECS: dict[str, _Codec] = {
    "prores_hq": _Codec("prores_ks", "yuv422p10le", odd_width="prores_4444"),
    "prores_4444": _Codec("prores_ks", "yuv444p10le", alpha_pix_fmt="yuva444p10le"),
    "h264": _Codec("libx264", "yuv420p", even_size=True),
    "ffv1": _Codec("ffv1", None, alpha_pix_fmt="gbrap"),
}


# The largest side a render can have: libx264 (the review proxy, and `h264`) refuses a side over
# 16384 ("invalid width x height"); prores_ks takes up to 65535. Measured with the bundled ffmpeg
# (9.0); 1×1 works everywhere (odd sizes as described above).
MAX_SIDE = 16384
_MAX_SIDE_BY_ENCODER = {"libx264": MAX_SIDE, "prores_ks": 65535}


def encode_size_problem(width: int, height: int) -> str | None:
    """Why a `width`×`height` picture cannot be rendered (ProRes master and H.264 proxy), as a
    sentence naming the size; None when it can."""
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return f"a frame size of {width!r}×{height!r} is not two whole numbers of pixels"
    if width < 1 or height < 1:
        return f"a {width}×{height} picture has no pixels: width and height must be at least 1"
    if width > MAX_SIDE or height > MAX_SIDE:
        return (
            f"a {width}×{height} picture is larger than the H.264 review proxy can hold (at most "
            f"{MAX_SIDE} pixels a side): scale or crop the media to at most {MAX_SIDE}×{MAX_SIDE} first"
        )
    return None


class VideoWriter:
    """Encode RGB frames (H×W×3 uint8 rgb24 or uint16 rgb48le) into a new video file.

    Use as a context manager: a clean exit closes and publishes the file; an exception
    inside the `with` removes the temporary file and leaves nothing at `path`.

    `prores_hq` is prores_ks 422 HQ at a fixed quantiser (`-qscale:v`, several times faster
    than the default rate control at the same quality; an odd width is written as 4444, see
    the module docstring); `prores_4444` is its 4:4:4 sibling; `h264` is a libx264 yuv420p
    review file (odd sizes padded to even, the picture size recorded); `ffv1` stores the RGB
    frames losslessly (planar RGB, 8 or 16 bit) for tests and intermediates.

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
        check_target(self.path)
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
        largest = _MAX_SIDE_BY_ENCODER.get(CODECS[codec].encoder)
        if largest is not None and max(width, height) > largest:
            raise EncodeError(
                f"a {width}×{height} picture is larger than {CODECS[codec].encoder} can encode "
                f"(at most {largest} pixels a side)",
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
            check_timecode(timecode, self.rate, self.path)
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
        self._job: Job | None = None
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
            self._job = Job(self._command(), self.path, stdin=True)
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
            remove(self._temp)
            raise EncodeError("no frames were written; nothing to publish", path=self.path)
        try:
            job.finish(f"encoding {self.frames_written} frames")
            publish_checked(self._temp, self.path, self.frames_written)
        finally:
            remove(self._temp)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file; nothing is left at `path`."""
        self._done = True
        if self._job is not None:
            self._job.abort()
            self._job = None
        remove(self._temp)

    def _command(self) -> list[str]:
        stored = _stored_codec(self.codec, self.width)
        spec = CODECS[stored]
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
            framerate=rate_text(self.rate),
        )
        if spec.even_size and (self.width % 2 or self.height % 2):
            # Repeat the edge into the padding (its chroma then matches the last real pixels);
            # pad / fillborders work on planar RGB, a lossless reordering of the input.
            source = _pad_even(source.filter("format", "gbrp16le" if deep else "gbrp"), self.width, self.height)
        video = _to_storage(source, spec, self.color_matrix, self.dtype, alpha=self.alpha)
        options = _codec_options(stored, self.prores_qscale, self.crf, self.dtype, alpha=self.alpha)
        if self.timecode is not None:
            options["timecode"] = self.timecode
        if spec.even_size:
            options.update(_picture_size_options(self.path, self.width, self.height))
        return compile_command(video.output(f"file:{self._temp}", **options))


def _stored_codec(codec: str, width: int) -> str:
    """The codec a file of `codec` at `width` is written with (prores_hq: 4444 for odd widths)."""
    fallback = CODECS[codec].odd_width
    return fallback if fallback is not None and width % 2 else codec


def _picture_size_options(target: Path, width: int, height: int) -> dict[str, object]:
    """Record the picture size of an odd picture padded to even (read back by `probe`)."""
    if not (width % 2 or height % 2):
        return {}
    options: dict[str, object] = {"metadata:g": f"{PICTURE_SIZE_TAG}={width}x{height}"}
    if target.suffix.lower() in (".mov", ".mp4", ".m4v", ".3gp"):
        options["movflags"] = "+use_metadata_tags"  # keys of our own, kept by mov/mp4
    return options


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
    check_target(target)
    if not segments:
        raise EncodeError("no segments to concatenate", path=target)
    infos = [probe_for_encode(Path(segment), target) for segment in segments]
    reference = infos[0]
    for info in infos[1:]:
        mismatch = [
            f"{field} {getattr(info, field)} vs {getattr(reference, field)}"
            for field in ("codec", "width", "height", "rate", "pix_fmt", "coded_size")
            if getattr(info, field) != getattr(reference, field)
        ]
        if mismatch:
            raise EncodeError(
                f"segment {str(info.path)!r} does not match {str(reference.path)!r} "
                f"({'; '.join(mismatch)}); only identical formats can be stream-copied",
                path=target,
            )
    if timecode is not None:
        check_timecode(timecode, reference.rate, target)
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
        if reference.coded_size is not None:
            options.update(_picture_size_options(target, reference.width, reference.height))
        stream = ffmpeg.input(f"file:{listing.name}", format="concat", safe=0)
        command = compile_command(stream.output(f"file:{temp}", **options))
        try:
            Job(command, target, stdin=False).finish(f"concatenating {len(infos)} segments")
            publish_checked(temp, target, total)
        finally:
            remove(temp)
    return target


def make_proxy(
    master: str | os.PathLike[str], proxy: str | os.PathLike[str], crf: int = 20, comment: str | None = None
) -> Path:
    """H.264 review proxy of `master`: same frames, rate and timecode, yuv420p, faststart;
    `comment` in its metadata (see `concat`). An odd-size master is padded to even, its
    picture size recorded (see the module docstring)."""
    target = Path(proxy).absolute()
    check_target(target)
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise EncodeError(f"crf must be 0..51, got {crf!r}", path=target)
    info = probe_for_encode(Path(master), target)
    size = encode_size_problem(info.width, info.height)
    if size is not None:
        raise EncodeError(f"cannot make a proxy of {str(info.path)!r}: {size}", path=target)
    video = ffmpeg.input(f"file:{info.path}")["V:0"]
    if info.coded_size is not None:
        video = video.filter("crop", info.width, info.height, 0, 0, exact=1)
    video = _pad_even(video, info.width, info.height)
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
    picture = _picture_size_options(target, info.width, info.height)
    if picture:
        picture["movflags"] = f"{options.pop('movflags', '')}+use_metadata_tags"
        options.update(picture)
    temp = temp_sibling(target)
    command = compile_command(video.output(f"file:{temp}", **options))
    try:
        Job(command, target, stdin=False).finish(f"making a proxy of {str(info.path)!r}")
        publish_checked(temp, target, info.frame_count)
    finally:
        remove(temp)
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
        source = _pad_even(source)  # (an odd size is already padded by the writer)
    # With alpha, zimg keeps the alpha plane exact (full range) and the colour straight; only
    # where alpha is exactly 0 it stores black, which no compositing can see. (Going round
    # zscale with alphamerge costs 4 levels of alpha: it merges at 8 bits.)
    video = source.filter("zscale", matrix=MATRIX_TAGS[matrix], **_ZSCALE_TO_YUV)
    return _finish_yuv(video, spec, matrix)


def _pad_even(
    video: ffmpeg.nodes.FilterableStream, width: int | None = None, height: int | None = None
) -> ffmpeg.nodes.FilterableStream:
    """4:2:0 needs even sizes: add a row / column rather than resample the picture. Knowing
    the size, an odd one is padded with a repeat of its edge (`fillborders` smear), so the
    shared chroma of the last real column / row is that of real pixels, not of black."""
    video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
    if width is not None and height is not None and (width % 2 or height % 2):
        video = video.filter("fillborders", right=width % 2, bottom=height % 2, mode="smear")
    return video


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
