"""Which ffmpeg binary the media layer runs.

The binary that imageio-ffmpeg ships is the default so that a fresh install works with no
system ffmpeg; a studio can point `STUDIO_NOVA_FFMPEG` at its own build (e.g. one with
hardware encoders). There is no ffprobe anywhere: everything is read from ffmpeg itself.

The media functions take no settings (probe, decode and encode are called from everywhere), so
the binary is process-wide configuration, set once at the edge from the run's settings:
`configure_ffmpeg(settings.ffmpeg)` (`Workspace.open` and the CLI do it). Nothing here reads the
environment; a process that never configures it uses the bundled binary.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache

import imageio_ffmpeg

from studio_nova.errors import ConfigError

_SETTING = "STUDIO_NOVA_FFMPEG"
_configured: str | None = None  # the `ffmpeg` setting (a path, or None: the bundled binary)


def configure_ffmpeg(path: str | None) -> None:
    """Use `path` (the `ffmpeg` setting; None: imageio-ffmpeg's binary) from now on, process-wide.

    Called at the edge with the run's settings (`Workspace.open`, the application); the path is
    checked when ffmpeg is first needed, not here.
    """
    global _configured
    _configured = path or None


def ffmpeg_exe() -> str:
    """Path of a working ffmpeg: the configured one if set, else imageio-ffmpeg's.

    Checked once per path and process (running `-version`), so that a wrong setting fails
    with a message naming the setting instead of an obscure error deep inside a render.
    """
    if _configured:
        return _checked(_configured, f"the setting {_SETTING}")
    try:
        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise ConfigError(
            f"imageio-ffmpeg has no usable ffmpeg binary ({exc}); "
            f"reinstall imageio-ffmpeg or set {_SETTING} to an ffmpeg executable"
        ) from exc
    return _checked(bundled, "imageio-ffmpeg's bundled binary")


@lru_cache(maxsize=8)
def _checked(candidate: str, origin: str) -> str:
    resolved = shutil.which(candidate) or candidate
    try:
        run = subprocess.run(
            [resolved, "-hide_banner", "-version"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            f"ffmpeg from {origin} ({candidate!r}) cannot be run: {exc}; "
            f"set {_SETTING} to a working ffmpeg executable",
            path=resolved,
        ) from exc
    if run.returncode != 0 or not run.stdout.startswith(b"ffmpeg version"):
        raise ConfigError(
            f"{candidate!r} from {origin} does not behave like ffmpeg "
            f"(exit status {run.returncode}); set {_SETTING} to a working ffmpeg executable",
            path=resolved,
        )
    return resolved
