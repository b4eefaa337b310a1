"""The ffmpeg process behind every write, and the checks around it (split from `encode`).

`Job` runs one encoding ffmpeg with its stderr in a temporary file (never a pipe that could fill
up and block it). When ffmpeg fails, the EncodeError says what went wrong in words: the disk is
full at a folder, permission is denied there, ... (`media.ffmpeg_errors.writing_problem`), and
ffmpeg's own output goes to the log, not into the message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import IO

import ffmpeg
import numpy as np

from studio_nova.atomic import publish
from studio_nova.errors import EncodeError, EncoderKilled, MediaError
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.ffmpeg_errors import log_ffmpeg, writing_problem
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.media.timecode import timecode_to_frames

_LOG_TAIL = 65536  # bytes of ffmpeg's stderr read back after a failure (its end explains it)


def compile_command(node: ffmpeg.nodes.OutputStream) -> list[str]:
    args = node.global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")
    return args.compile(cmd=ffmpeg_exe())


class Job:
    """One encoding ffmpeg process, stderr in a temp file (no pipe to fill up and block)."""

    def __init__(self, command: list[str], target: Path, *, stdin: bool) -> None:
        self._target = target
        self._stderr = ""
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
            try:
                self._process.wait(timeout=5)  # it exited (that closed the pipe): let it finish
            except subprocess.TimeoutExpired:
                pass
            killed = self._process.poll() is not None and self._process.returncode < 0
            status = self._process.returncode
            self.abort()
            if killed:
                raise _killed(status, "while it took frames", self._target) from exc
            raise EncodeError(
                f"ffmpeg stopped accepting frames: {self._why()}", path=self._target, frame=number
            ) from exc

    def finish(self, what: str) -> None:
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg already exited; its status below says why
        status = self._process.wait()
        self._stderr = self._read_log()
        self._log.close()
        log_ffmpeg(what, self._target, self._stderr, failed=status != 0)
        if status < 0:
            raise _killed(status, what, self._target)
        if status != 0:
            raise EncodeError(f"ffmpeg failed {what}: {self._why()}", path=self._target)

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
            self._stderr = self._read_log()
            self._log.close()
            log_ffmpeg("stopped writing", self._target, self._stderr, failed=True)

    def _why(self) -> str:
        return writing_problem(self._target, self._stderr) or (
            "ffmpeg gave no cause a person can act on (its output is logged by "
            "studio_nova.media.ffmpeg at INFO level)"
        )

    def _read_log(self) -> str:
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, size - _LOG_TAIL))
        return self._log.read().decode("utf-8", "replace")


def _killed(status: int, what: str, target: Path) -> EncoderKilled:
    """ffmpeg ended by a signal (`status` is minus its number): the system or an operator killed
    it, the frames are not at fault, so the render retries the chunk."""
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return EncoderKilled(
        f"ffmpeg was killed ({name}) {what}, most likely by the system's out-of-memory killer or an "
        "operator; the chunk is retried", path=target,
    )


def check_target(path: Path) -> None:
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


def check_timecode(timecode: str, rate: Fraction, path: Path) -> None:
    try:
        timecode_to_frames(timecode, rate)
    except ValueError as exc:
        raise EncodeError(f"timecode cannot be written: {exc}", path=path) from exc


def probe_for_encode(source: Path, target: Path) -> MediaInfo:
    try:
        return probe(source)
    except MediaError as exc:
        raise EncodeError(f"cannot use input {str(source)!r}: {exc.message}", path=target) from exc


def publish_checked(temp: Path, target: Path, frames: int) -> None:
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


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # never created, or already published


def rate_text(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"
