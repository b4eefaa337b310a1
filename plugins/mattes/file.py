"""`file`: a matte delivered as media: a matte video, or a folder / numbered sequence of images.

One matte frame per source frame: source frame ``f`` takes matte frame ``f - offset`` (``offset``
0 by default: matte frame i is source frame i; a sequence numbered from 1001 for a shot whose
media starts at source frame 0 takes ``offset: -1001``). Where the matte frames are:

- a video file (any container ffmpeg reads): matte frame i is its i-th decoded frame, read
  frame-exact like a source (`read_frames` / `read_alpha`);
- a printf pattern (``mattes/shot010.%04d.png``): matte frame i is the file the pattern names
  for i;
- a folder: its image files (.png, .tif, .tiff, .exr, .jpg, .jpeg, .dpx), in name order with
  numbers compared as numbers, are matte frames 0, 1, 2, ...

``channel`` picks what is the matte: ``luma`` (Rec. 709 weights; a grey matte's value),
``alpha`` (the file's alpha channel), or ``r`` / ``g`` / ``b``; ``invert`` flips it (for a
"holdout" matte that is white on the background). 8- and 16-bit integer images are scaled to
[0, 1]; float images (EXR) are taken as they are and clipped. Every matte frame must have the
source's size: a matte is never resampled silently.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from studio_nova.errors import EditRequestError, MediaError
from studio_nova.media.decode import read_alpha, read_frames
from studio_nova.media.ffmpeg_bin import ffmpeg_exe
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import probe
from studio_nova.plugin_api.mattes import Matte, MatteContext

from ._params import as_float, check_names, flag, number, resolve_path

NAME = "file"
_PARAMS = ("path", "channel", "offset", "invert")
CHANNELS = ("luma", "alpha", "r", "g", "b")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".exr", ".jpg", ".jpeg", ".dpx")
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_PATTERN = re.compile(r"%0?\d*d")


class FileMatte:
    """A matte video or image sequence, one matte frame per source frame."""

    name: ClassVar[str] = NAME
    context_frames: ClassVar[int] = 0  # frame by frame: no neighbours needed

    def __init__(self, **params: Any) -> None:
        check_names(NAME, params, _PARAMS)
        if "path" not in params:
            raise EditRequestError(f"matte source {NAME!r} needs a path (a matte video, a folder or a %04d pattern)")
        self.path_param = params["path"]
        resolve_path(self.path_param, None, NAME)  # type check now; resolved per context
        self.channel = params.get("channel", "luma")
        if self.channel not in CHANNELS:
            raise EditRequestError(f"matte source {NAME!r}: channel must be one of {list(CHANNELS)}, got {self.channel!r}")
        self.offset = int(number(NAME, "offset", params.get("offset", 0), integer=True))
        self.invert = flag(NAME, "invert", params.get("invert", False))

    def mattes(self, context: MatteContext) -> Matte:
        path = resolve_path(self.path_param, context.base_dir, NAME)
        n, h, w = context.frames.shape[:3]
        first = context.first_frame - self.offset  # matte frame of the chunk's first frame
        sequence = _open(path, context)
        if first < 0 or first + n > sequence.count:
            raise MediaError(
                f"matte source {NAME!r}: source frames {context.first_frame}..{context.first_frame + n - 1} "
                f"need matte frames {first}..{first + n - 1} (offset {self.offset}), but the matte "
                f"has {sequence.count} frames (0..{sequence.count - 1})",
                shot=context.shot,
                path=path,
                frame=context.first_frame if first < 0 else sequence.count + self.offset,
            )
        alpha = np.empty((n, h, w), np.float32)
        for i, matte in enumerate(sequence.read(first, first + n - 1, self.channel)):
            if matte.shape != (h, w):
                raise MediaError(
                    f"matte source {NAME!r}: matte frame {first + i} is {matte.shape[1]}x{matte.shape[0]} "
                    f"but the source is {w}x{h}; mattes are never resampled",
                    shot=context.shot,
                    path=sequence.where(first + i),
                    frame=context.first_frame + i,
                )
            alpha[i] = matte
        np.clip(alpha, 0.0, 1.0, out=alpha)
        if self.invert:
            np.subtract(1.0, alpha, out=alpha)
        return Matte(
            alpha=alpha,
            info={"source": NAME, "path": str(path), "channel": self.channel, "offset": self.offset,
                  "invert": self.invert, "matte_frames": [first, first + n - 1]},
        )


# --- where matte frames come from ---------------------------------------------------------------


class _Video:
    def __init__(self, info: MediaInfo) -> None:
        self.info = info
        self.count = info.frame_count

    def where(self, index: int) -> Path:
        return self.info.path

    def read(self, first: int, last: int, channel: str):
        if channel == "alpha":
            if not self.info.has_alpha:
                raise MediaError(
                    f"matte source {NAME!r}: channel 'alpha' asked for, but the matte video has no "
                    f"alpha channel (pixel format {self.info.pix_fmt})",
                    path=self.info.path,
                )
            yield from read_alpha(self.info, first, last)
            return
        for frame in read_frames(self.info, first, last):
            yield _channel(as_float(frame), channel, self.info.path)


class _Images:
    def __init__(self, files: list[Path] | None = None, pattern: Path | None = None, count: int = 0) -> None:
        self.files = files
        self.pattern = pattern
        self.count = len(files) if files is not None else count

    def where(self, index: int) -> Path:
        if self.files is not None:
            return self.files[index]
        assert self.pattern is not None
        return self.pattern.parent / (self.pattern.name % index)

    def read(self, first: int, last: int, channel: str):
        for index in range(first, last + 1):
            path = self.where(index)
            if not path.is_file():
                raise MediaError(f"matte source {NAME!r}: matte frame {index} is missing", path=path, frame=index)
            yield _read_image(path, channel)


def _open(path: Path, context: MatteContext) -> _Video | _Images:
    if _PATTERN.search(path.name):
        folder = path.parent
        if not folder.is_dir():
            raise EditRequestError(f"matte source {NAME!r}: the folder of the pattern does not exist",
                                   shot=context.shot, path=folder)
        # Frames are 0..count-1 as far as the files run unbroken from 0.
        count = 0
        while (folder / (path.name % count)).is_file():
            count += 1
        if count == 0:
            # The sequence may start later (e.g. 1001): count the last unbroken run instead.
            numbers = sorted(_numbers_matching(path))
            if not numbers:
                raise EditRequestError(f"matte source {NAME!r}: no file matches the pattern",
                                       shot=context.shot, path=path)
            count = numbers[-1] + 1
        return _Images(pattern=path, count=count)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=_natural_key)
        if not files:
            raise EditRequestError(
                f"matte source {NAME!r}: the folder holds no matte images ({', '.join(IMAGE_SUFFIXES)})",
                shot=context.shot, path=path,
            )
        return _Images(files=files)
    if not path.exists():
        raise EditRequestError(f"matte source {NAME!r}: the matte file does not exist", shot=context.shot, path=path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _Images(files=[path])
    return _Video(probe(path))


def _numbers_matching(pattern: Path) -> list[int]:
    head, tail = _PATTERN.split(pattern.name, maxsplit=1)
    found = []
    for candidate in pattern.parent.iterdir():
        name = candidate.name
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            middle = name[len(head) : len(name) - len(tail)]
            if middle.isdigit() and candidate.name == pattern.name % int(middle):
                found.append(int(middle))
    return found


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _read_image(path: Path, channel: str) -> np.ndarray:
    """One matte image as (H, W) float32 of the asked channel."""
    if path.suffix.lower() == ".exr":
        rgba, has_alpha = _read_exr(path)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise MediaError(f"matte source {NAME!r}: the image cannot be read", path=path)
        image = as_float(raw) if raw.dtype in (np.uint8, np.uint16) else raw.astype(np.float32)
        if image.ndim == 2:
            rgba, has_alpha = np.repeat(image[..., None], 3, axis=-1), False
        elif image.shape[2] == 4:
            rgba, has_alpha = image[..., [2, 1, 0, 3]], True
        else:
            rgba, has_alpha = image[..., 2::-1], False
    if channel == "alpha":
        if not has_alpha:
            raise MediaError(f"matte source {NAME!r}: channel 'alpha' asked for, but the image has none", path=path)
        return np.ascontiguousarray(rgba[..., 3])
    return _channel(rgba[..., :3], channel, path)


def _read_exr(path: Path) -> tuple[np.ndarray, bool]:
    """EXR through ffmpeg (OpenCV's EXR codec is off by default): (H, W, 4) RGBA float32."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", f"file:{path}",
               "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gbrapf32le", "-"]
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", f"file:{path}"],
                            capture_output=True, check=False).stderr.decode("utf-8", "replace")
    size = re.search(r"Video: exr.*?, (\d+)x(\d+)", header)
    run = subprocess.run(command, capture_output=True, check=False)
    if run.returncode != 0 or size is None:
        raise MediaError(f"matte source {NAME!r}: ffmpeg cannot read the EXR: "
                         f"{run.stderr.decode('utf-8', 'replace').strip()[-300:]}", path=path)
    w, h = int(size.group(1)), int(size.group(2))
    planes = np.frombuffer(run.stdout, np.float32).reshape(4, h, w)  # G, B, R, A
    has_alpha = bool(re.search(r"Video: exr[^\n]*(gbrap|rgba|ya)", header))
    return np.stack([planes[2], planes[0], planes[1], planes[3]], axis=-1), has_alpha


def _channel(rgb: np.ndarray, channel: str, path: Path) -> np.ndarray:
    if channel == "luma":
        return rgb @ _LUMA
    if channel in ("r", "g", "b"):
        return np.ascontiguousarray(rgb[..., "rgb".index(channel)])
    raise MediaError(f"matte source {NAME!r}: channel {channel!r} is not in this file", path=path)
