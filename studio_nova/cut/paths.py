"""Where a cut's files are, and which of them it may open: media URLs resolved against the
timeline's folder, and every path a clip names checked against `STUDIO_NOVA_MEDIA_ROOTS` (and
never a system folder, a device or a pipe) before anything opens it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlparse
from urllib.request import url2pathname

import opentimelineio as otio

from studio_nova.cut.background_request import PATH_PARAMS
from studio_nova.cut.naming import clip_label, clip_name
from studio_nova.errors import MediaError

SYSTEM_FOLDERS = (Path("/etc"), Path("/proc"), Path("/sys"), Path("/dev"), Path("/boot"))
_NOT_SYSTEM = (Path("/dev/shm"),)  # a RAM disk some studios stage media on
MEDIA_ROOTS_VARIABLE = "STUDIO_NOVA_MEDIA_ROOTS"
#: Keys of edit-request params that hold paths even when relative (`artist`'s `dir` is taken from
#: the current folder; a background request's paths are already absolute, see background_request).
_PATH_KEYS = frozenset({"dir", *PATH_PARAMS})


def path_refusal(
    path: str | os.PathLike[str], roots: Sequence[Path] = (), *, file: bool = False, named: str | None = None
) -> str | None:
    """Why a cut may not name `path`, or None when it may; looks only (a `stat`), opens nothing.

    Symlinks and `..` are resolved first, so what is checked is what would be opened. Refused: a
    path outside every one of `roots` (the `media_roots` setting; none: anywhere), a path in a
    system folder (`SYSTEM_FOLDERS`), and anything that exists but is neither a regular file nor
    (unless `file`) a folder: a device or a pipe would hang or feed ffmpeg forever. `named` is
    how the cut spells the path (a URL), for the message.
    """
    given = Path(path)
    real = Path(os.path.realpath(given))
    named = str(given) if named is None else named
    shown = f"{str(real)!r}" + (f" (named {named!r})" if named != str(real) else "")
    if roots and not any(real.is_relative_to(root) for root in roots):
        listed = os.pathsep.join(str(r) for r in roots)
        return (
            f"{shown} is outside the media roots ({MEDIA_ROOTS_VARIABLE}={listed}): relink it to "
            f"a file inside a root, or add its folder to {MEDIA_ROOTS_VARIABLE}"
        )
    for folder in SYSTEM_FOLDERS:
        if real.is_relative_to(folder) and not any(real.is_relative_to(ok) for ok in _NOT_SYSTEM):
            return f"{shown} is in {folder}, a system folder, not footage: relink it to the real file"
    try:
        mode = real.stat().st_mode
    except OSError:
        return None  # missing or unreadable: reported by whatever needs it, with its own words
    if stat.S_ISREG(mode) or (not file and stat.S_ISDIR(mode)):
        return None
    if stat.S_ISDIR(mode):
        return f"{shown} is a folder, not a media file"
    return f"{shown} is a device, pipe or socket, not a {'media file' if file else 'file or folder'}"


def _param_paths(value: Any, where: str = "", key: str | None = None) -> Iterator[tuple[str, str]]:
    """(where, text) of every path an edit request's params name: absolute paths anywhere, and
    relative ones (taken from the current folder, as `artist` takes its `dir`) under path keys."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k != "base_dir":  # the timeline's own folder, set by ingest: not something to read
                yield from _param_paths(v, f"{where}.{k}" if where else str(k), str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _param_paths(v, f"{where}[{i}]", key)
    elif isinstance(value, str) and value.strip() and "://" not in value and len(value) < 4096:
        if os.path.isabs(value) or key in _PATH_KEYS:
            yield where, value


def resolve_media(clip: otio.schema.Clip, base: Path, *, key: str | None = None) -> Path:
    """The clip's media file as an absolute path; relative paths are relative to the cut's folder.

    Accepts absolute paths, ``file://`` URLs (percent-encoded) and relative paths. Image
    sequences are not supported yet.
    """
    ref = clip.media_reference
    extra = {"key": key} if key is not None else {}
    if isinstance(ref, otio.schema.MissingReference) or ref is None:
        raise MediaError(
            f"{clip_label(clip, key)} has no media (MissingReference): "
            "relink it in the NLE and export again",
            shot=clip_name(clip, key),
            **extra,
        )
    if isinstance(ref, otio.schema.ImageSequenceReference):
        raise MediaError(
            f"{clip_label(clip, key)} uses an image sequence ({ref.target_url_base}{ref.name_prefix}…); "
            "image sequences are not supported yet: transcode to a movie file",
            shot=clip_name(clip, key),
            **extra,
        )
    if not isinstance(ref, otio.schema.ExternalReference):
        raise MediaError(
            f"{clip_label(clip, key)} has a {type(ref).__name__}; only file references can be edited",
            shot=clip_name(clip, key),
            **extra,
        )
    return path_of_url(ref.target_url, base, clip_name=clip_name(clip, key), key=key)


def path_of_url(url: str, base: Path, *, clip_name: str = "", key: str | None = None) -> Path:
    """A target_url as an absolute local path (file URL, absolute path, or relative to `base`)."""
    extra = {"key": key} if key is not None else {}
    who = f"clip {clip_name!r}" + (f" ({key})" if key is not None else "")
    if not url:
        raise MediaError(f"{who} has an empty media path", shot=clip_name, **extra)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise MediaError(
                f"{who}: file URL {url!r} names host {parsed.netloc!r}; "
                "only local files (file:///path) can be read",
                shot=clip_name,
                **extra,
            )
        path = Path(url2pathname(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise MediaError(
            f"{who}: media URL {url!r} is not a local file", shot=clip_name, **extra
        )
    else:
        path = Path(url)
    if not path.is_absolute():
        path = base / path
    return Path(os.path.abspath(path))
