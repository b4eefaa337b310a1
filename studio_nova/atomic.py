"""Writing files so that nobody ever sees half of one: the one way the project writes outputs.

Everything goes to a hidden sibling first (same folder, so the final rename is atomic on every
POSIX file system) and gets its real name only when complete. A crash leaves a `.name.*.partial`
file beside the output, never a truncated output under its real name. `overwrite=False` publishes
with a hard link, which fails when the name exists: no check-then-rename race between workers, and
a render is never overwritten.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PARTIAL = ".partial"


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A hidden, unique name beside `path` that keeps its extension (so ffmpeg and OTIO adapters
    still pick the format from it)."""
    final = Path(path)
    return final.with_name(f".{final.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL}{final.suffix}")


def publish(temp: str | os.PathLike[str], path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
    """Give a finished temp file (or folder) its real name; FileExistsError when `overwrite` is
    False and the name is taken (the temp is left for the caller to clean up)."""
    temp, final = Path(temp), Path(path)
    if overwrite:
        if temp.is_dir() and final.is_dir():
            shutil.rmtree(final)
        os.replace(temp, final)
        return
    if temp.is_dir():
        if final.exists():
            raise FileExistsError(str(final))
        os.rename(temp, final)
        return
    try:
        os.link(temp, final)  # fails if final exists, atomically
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A file system without hard links: a checked rename (a narrow race, the best it allows).
        if final.exists():
            raise FileExistsError(str(final)) from None
        os.rename(temp, final)
        return
    temp.unlink()


def _discard(temp: Path) -> None:
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True, folder: bool = False) -> Iterator[Path]:
    """Yield a temp path to write `path` through; on success it is published under the real name,
    on any failure it is removed. With `folder=True` the temp is an empty directory (a checkpoint,
    an image sequence) published as a whole."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(final)
    if folder:
        temp.mkdir()
    try:
        yield temp
        publish(temp, final, overwrite=overwrite)
    except BaseException:
        _discard(temp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically; `fsync` also flushes it to disk before the rename (for
    files a reviewer's decision or a render depends on after a power cut)."""
    with atomic_path(path, overwrite=overwrite) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: str | os.PathLike[str], payload: Any, *, overwrite: bool = True, **dumps: Any) -> Path:
    dumps.setdefault("indent", 2)
    return write_text(path, json.dumps(payload, **dumps), overwrite=overwrite)


def remove_partials(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files a killed writer of `path` left beside it; returns what went.

    Only for a caller that owns `path` right now (a render holding its shot's claim): a temp of a
    writer still at work elsewhere would go too.
    """
    final = Path(path)
    if not final.parent.is_dir():
        return []
    gone = []
    for temp in final.parent.glob(f".{final.stem}.*{PARTIAL}{final.suffix}"):
        _discard(temp)
        gone.append(temp)
    return gone
