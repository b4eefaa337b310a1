"""What ffmpeg prints when it fails, turned into one sentence about the file.

An error message says what is wrong with *the file* and what to do about it, in words. ffmpeg's
own lines (which carry memory addresses like `[mov @ 0x55d…]`, option names and exit codes) go
to the log instead (`log_ffmpeg`: INFO when the run failed, DEBUG otherwise), under the logger
`studio_nova.media.ffmpeg`, for whoever has to dig deeper.

ffmpeg reports system errors with the C library's `strerror` text ("No space left on device"),
so those are recognised by that text; a file that ffmpeg cannot read at all is described by its
first bytes (`sniff`): a ZIP archive, a PNG, text, or a QuickTime/MP4 file whose index is missing.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("studio_nova.media.ffmpeg")

_LOG_LIMIT = 20000  # characters of ffmpeg's stderr kept in one log record (its end explains)
_ADDRESS_RE = re.compile(r"\s*@\s*0x[0-9a-fA-F]+|\s*\(\w+ / 0x[0-9a-fA-F]+\)|0x[0-9a-fA-F]{6,}")

# Containers that hold movies: an image inside a file named like this is a mistake, not a still.
VIDEO_SUFFIXES = frozenset(
    ".mov .mp4 .m4v .mkv .mxf .avi .webm .mts .m2ts .ts .mpg .mpeg .wmv .flv .3gp .dv .y4m .qt".split()
)

# Top-level box types a QuickTime / MP4 file starts with.
_MOVIE_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid", b"udta", b"junk"}


def log_ffmpeg(what: str, path: str | os.PathLike[str] | None, stderr: str | bytes, *, failed: bool) -> None:
    """Put ffmpeg's raw stderr of one run in the log (INFO if it failed, DEBUG otherwise)."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    if not text:
        return
    level = logging.INFO if failed else logging.DEBUG
    if log.isEnabledFor(level):
        if len(text) > _LOG_LIMIT:
            text = "…" + text[-_LOG_LIMIT:]
        log.log(level, "ffmpeg %s %s:\n%s", what, path if path is not None else "", text)


def without_addresses(text: str) -> str:
    """`text` with memory addresses and codec tags (`(avc1 / 0x31637661)`) taken out, for the
    rare piece of ffmpeg's output a message quotes (a stream description)."""
    return _ADDRESS_RE.sub("", text)


# --------------------------------------------------------------------------- system errors


def _os_error(stderr: str) -> int | None:
    """The errno ffmpeg reports (by its strerror text), most telling first; None if none."""
    for number in (
        errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
        errno.EIO, errno.ENOMEM, errno.ENOENT,
    ):  # fmt: skip
        if os.strerror(number) in stderr:
            return number
    return None


def writing_problem(target: Path, stderr: str) -> str | None:
    """Why ffmpeg could not write `target`, as a sentence; None when its stderr names no cause
    a person can act on (then the caller says ffmpeg failed and points at the log)."""
    folder = target.parent
    number = _os_error(stderr)
    if number == errno.ENOSPC:
        return (
            f"the disk is full at {folder} (no space left on device): free space there or "
            f"write the output to another disk, then run it again"
        )
    if number == errno.EDQUOT:
        return f"the disk quota at {folder} is used up: free space or raise the quota, then run it again"
    if number == errno.EROFS:
        return f"{folder} is on a read-only file system: choose an output folder on a writable disk"
    if number in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied writing in {folder}: the user running studio-nova may not write "
            f"there; fix the folder's permissions or choose another output folder"
        )
    if number == errno.EFBIG:
        return (
            f"the file grew past the largest file allowed at {folder} (a file-system or ulimit "
            f"limit): write it to another disk"
        )
    if number == errno.EIO:
        return (
            f"the disk at {folder} reported an input/output error while writing: check the disk "
            f"(or the network share) and run it again"
        )
    if number == errno.ENOMEM:
        return "ffmpeg ran out of memory: free memory or render on a machine with more, then run it again"
    if number == errno.ENOENT:
        return f"the folder {folder} went away while the file was written: make sure it exists and run it again"
    return None


def _reading_os_problem(stderr: str) -> str | None:
    number = _os_error(stderr)
    if number == errno.EACCES:
        return (
            "permission denied: the user running studio-nova may not read it; fix its permissions "
            "(e.g. chmod a+r) or copy it somewhere readable"
        )
    if number == errno.EIO:
        return "the disk reported an input/output error while reading it: check the disk, or copy the file again"
    if number == errno.ENOMEM:
        return "ffmpeg ran out of memory reading it: free memory or use a machine with more"
    if number == errno.ENOENT:
        return "it went away while it was being read (moved or deleted?): relink the clip to the file"
    return None


# --------------------------------------------------------------------------- reading


def sniff(path: Path) -> str | None:
    """What the file's first bytes say it is, in words ("a ZIP archive"), or None; "a QuickTime /
    MP4 file" when it starts like one."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    signatures = (
        (b"PK\x03\x04", "a ZIP archive"), (b"PK\x05\x06", "a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"%PDF", "a PDF document"),
        (b"\x1f\x8b", "a gzip archive"), (b"Rar!\x1a\x07", "a RAR archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"II*\x00", "a TIFF image"),
        (b"MM\x00*", "a TIFF image"), (b"v/1\x01", "an OpenEXR image"),
        (b"SQLite format 3\x00", "an SQLite database"), (b"\x7fELF", "a program"),
        (b"<?xml", "an XML file"),
    )  # fmt: skip
    for magic, kind in signatures:
        if head.startswith(magic):
            return kind
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "a tar archive"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "a WAV audio file"
    if len(head) >= 8 and head[4:8] in _MOVIE_BOXES:
        return "a QuickTime / MP4 file"
    if head and b"\0" not in head and _looks_like_text(head):
        return "a text file"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return False
        text = head[: exc.start].decode("utf-8")
    return bool(text) and sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text) >= 0.95 * len(text)


def movie_cut_short(path: Path) -> tuple[int, int] | None:
    """(bytes there are, bytes its boxes claim) of a QuickTime / MP4 file whose top-level boxes
    run past its end, i.e. one cut short; None when they fit (or it is not such a file)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            offset = 0
            while offset + 8 <= size:
                handle.seek(offset)
                header = handle.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if offset == 0 and kind not in _MOVIE_BOXES:
                    return None
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:  # the last box, to the end of the file
                    return None
                if length < 8:
                    return None  # not a box structure after all (damaged): no claim to make
                if offset + length > size:
                    return size, offset + length
                offset += length
    except OSError:
        return None
    return None


def cut_short_problem(there: int, claimed: int) -> str:
    return (
        f"is truncated: it ends after {there} bytes, partway through its QuickTime / MP4 "
        f"structure, which needs {claimed}; it was cut short by an interrupted copy, download "
        f"or render: copy or export it again"
    )


def unreadable_problem(path: Path, stderr: str) -> str:
    """Why ffmpeg could not open `path` as media at all (it printed no stream list)."""
    system = _reading_os_problem(stderr)
    if system is not None:
        return system
    kind = sniff(path)
    short = movie_cut_short(path)
    if short is not None:
        return cut_short_problem(*short)
    if kind == "a QuickTime / MP4 file":
        return (
            "is truncated or was never finished: its index (the moov atom, which QuickTime and MP4 "
            "files keep at the end unless written for fast start) is missing, so none of its frames "
            "can be found; this is what an interrupted render, export or copy leaves: copy or "
            "export it again"
        )
    named = f" although it is named {path.suffix}" if path.suffix else ""
    if kind is not None:
        what_to_do = (
            "unpack it and link the clip to the movie inside"
            if "archive" in kind
            else "link the clip to the movie file itself"
        )
        return f"is not a video: it is {kind}{named}; {what_to_do}"
    if "End of file" in stderr:
        return (
            "is truncated: it ends before its own header does, so ffmpeg cannot read it (an "
            "interrupted copy?): copy it again"
        )
    return (
        "ffmpeg cannot read it as video: its contents match no format ffmpeg knows, so it is "
        "damaged or not a video at all; check that the clip links the right file, or copy or "
        "export it again"
    )


def image_problem(path: Path, codec: str) -> str:
    """A still image stored under a movie's name (a PNG renamed .mov)."""
    kind = {"png": "a PNG", "mjpeg": "a JPEG", "tiff": "a TIFF", "bmp": "a BMP", "gif": "a GIF",
            "webp": "a WebP", "exr": "an OpenEXR"}.get(codec, "an")  # fmt: skip
    return (
        f"is not a video: it is {kind} image (a single still frame) although it is named "
        f"{path.suffix}; export the clip as a movie, or give the still its own extension (.png, "
        f".jpg) if a still is what the clip should use"
    )


def truncated_problem(stopped_at: int, listed: int | None) -> str:
    """A file whose frames stop short of what its header promises (a fast-start MP4 or a
    Matroska file cut short: the header is complete, the frame data is not)."""
    of = f" of the {listed} its header promises" if listed is not None and listed > stopped_at else ""
    readable = f"only frames 0–{stopped_at - 1} can be decoded" if stopped_at > 0 else "no frame can be decoded"
    return (
        f"is truncated: decoding stops at frame {stopped_at}{of}, so {readable}; it was cut "
        f"short by an interrupted copy, download or render: copy or export it again"
    )


def decoding_problem(stderr: str) -> str:
    """Why decoding stopped or went wrong, from ffmpeg's stderr, as the end of a sentence."""
    lowered = stderr.lower()
    if "partial file" in lowered or "end of file" in lowered or "truncat" in lowered:
        return "the file is truncated there (its data ends): copy or export it again"
    if any(word in lowered for word in ("invalid", "corrupt", "error while decoding", "concealing", "missing picture", "error submitting packet")):
        return (
            "the file is damaged there (ffmpeg finds invalid or missing data in its frames): "
            "copy or export it again from the original"
        )
    system = _reading_os_problem(stderr)
    if system is not None:
        return system
    return (
        "ffmpeg stopped without naming a cause (its output is logged by studio_nova.media.ffmpeg "
        "at INFO level)"
    )
