"""What the background sources (`still`, `plate`, `generator`) share.

- **Param checks**: every source is built with the request's ``background.params`` as keyword
  arguments, so each check raises an `EditRequestError` that names the source, the param and the
  value it got.
- **Framing** (``fit``, ``anchor``, ``fill``): how a picture of any size fills the shot's frame.
  ``cover`` scales it to fill the frame and crops the excess at ``anchor``; ``contain`` scales it
  to fit inside and letterboxes with ``fill``; ``stretch`` scales each axis to the frame.
  Resampling is high quality and single-pass: area averaging along an axis that shrinks, bicubic
  along one that grows, then an integer crop or pad.
- **Timing** (``loop``, ``retime``): which frame of a plate of ``length`` usable frames a shot
  offset shows, computed per offset (never cumulatively), so chunked calls agree exactly.
- **Reading stills**: PNG, JPEG, TIFF (8/16-bit or float) and OpenEXR as float32 RGB.

Geometry is in continuous pixel coordinates (a w-pixel-wide picture spans x in [0, w]; pixel i
covers [i, i+1]); OpenCV's index coordinates are those minus 0.5.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from studio_nova.errors import EditRequestError

FITS = ("cover", "contain", "stretch")
LOOPS = ("loop", "pingpong", "hold", "error")
RETIMES = ("frame", "time")
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr")


# --- param checks ----------------------------------------------------------------------------


def bad_param(source: str, name: str, wants: str, value: Any) -> EditRequestError:
    return EditRequestError(f"{source} background param {name} must be {wants}, got {value!r}", param=name)


def reject_unknown(source: str, unknown: Mapping[str, Any], known: Sequence[str]) -> None:
    if unknown:
        raise EditRequestError(
            f"{source} background does not know the params {sorted(unknown)}; it takes {sorted(known)}",
            param=sorted(unknown)[0],
        )


def choice_param(source: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise bad_param(source, name, f"one of {list(choices)}", value)
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number_param(source: str, name: str, value: Any, low: float, high: float) -> float:
    if not is_number(value) or not low <= value <= high:
        raise bad_param(source, name, f"a number in [{low}, {high}]", value)
    return float(value)


def int_param(source: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    ok = is_number(value) and float(value).is_integer() and value >= low and (high is None or value <= high)
    if not ok:
        span = f"≥ {low}" if high is None else f"in [{low}, {high}]"
        raise bad_param(source, name, f"an integer {span}", value)
    return int(value)


def pair_param(source: str, name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(is_number(v) and low <= v <= high for v in value)
    ):
        raise bad_param(source, name, f"a pair [x, y] of numbers in [{low}, {high}]", value)
    return float(value[0]), float(value[1])


def colour_param(source: str, name: str, value: Any) -> tuple[float, float, float]:
    """A colour: one number (grey) or [r, g, b], each in [0, 1]."""
    if is_number(value) and 0.0 <= value <= 1.0:
        return (float(value),) * 3  # type: ignore[return-value]
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(is_number(v) and 0 <= v <= 1 for v in value):
        return float(value[0]), float(value[1]), float(value[2])
    raise bad_param(source, name, "a grey level or [r, g, b] in [0, 1]", value)


def path_param(source: str, name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise bad_param(source, name, "a file path", value)
    return str(value)


def resolve_file(source: str, name: str, value: str, base_dir: Path | None, shot: str | None = None) -> Path:
    """The file a path param names (relative to the timeline's folder); it must exist."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    if not path.is_file():
        where = "does not exist" if not path.exists() else "is not a file"
        raise EditRequestError(f"{source} background param {name}: {where}", shot=shot, path=path, param=name)
    return path


# --- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    """How a picture fills the frame: ``fit``, ``anchor`` (x, y in [0, 1]) and ``fill`` (RGB)."""

    fit: str = "cover"
    anchor: tuple[float, float] = (0.5, 0.5)
    fill: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def parse(cls, source: str, fit: Any, anchor: Any, fill: Any) -> "Framing":
        return cls(
            fit=choice_param(source, "fit", fit, FITS),
            anchor=pair_param(source, "anchor", anchor, 0.0, 1.0),
            fill=colour_param(source, "fill", fill),
        )

    def scales(self, width: int, height: int, out_w: int, out_h: int) -> tuple[float, float]:
        """Picture → frame scale per axis (x, y)."""
        sx, sy = out_w / width, out_h / height
        if self.fit == "cover":
            sx = sy = max(sx, sy)
        elif self.fit == "contain":
            sx = sy = min(sx, sy)
        return sx, sy

    def view(self, width: int, height: int, out_w: int, out_h: int) -> tuple[float, float, float, float]:
        """(centre x, centre y, scale x, scale y): the picture point at the frame's centre."""
        sx, sy = self.scales(width, height, out_w, out_h)
        ax, ay = self.anchor
        # The frame's top-left in picture coordinates: the anchor's share of the excess (negative
        # for `contain`, where the anchor places the picture inside the frame instead).
        left = ax * (width - out_w / sx)
        top = ay * (height - out_h / sy)
        return left + out_w / (2 * sx), top + out_h / (2 * sy), sx, sy


@dataclass(frozen=True)
class StaticPlan:
    """A framing at fixed size: resample to `size`, then put its top-left at `offset` in the frame."""

    size: tuple[int, int]  # (w, h) of the resampled picture
    offset: tuple[int, int]  # where its top-left lands in the frame (negative: cropped)
    out: tuple[int, int]  # (W, H) of the frame
    fill: tuple[float, float, float]


def static_plan(framing: Framing, width: int, height: int, out_w: int, out_h: int) -> StaticPlan:
    sx, sy = framing.scales(width, height, out_w, out_h)
    # Sizes are rounded to whole pixels (the picture's aspect changes by < 1 pixel over the frame),
    # so the picture is resampled exactly once and then cropped or padded without interpolation.
    new_w, new_h = max(1, round(width * sx)), max(1, round(height * sy))
    if framing.fit != "contain":
        new_w, new_h = max(new_w, out_w), max(new_h, out_h)  # cover / stretch never show fill
    else:
        new_w, new_h = min(new_w, out_w), min(new_h, out_h)
    ax, ay = framing.anchor
    offset = (round(ax * (out_w - new_w)), round(ay * (out_h - new_h)))
    return StaticPlan((new_w, new_h), offset, (out_w, out_h), framing.fill)


def resample(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float resize with area averaging along an axis that shrinks and bicubic along one that grows."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    if (width <= w) == (height <= h):
        method = cv2.INTER_AREA if width <= w else cv2.INTER_CUBIC
        return cv2.resize(image, (width, height), interpolation=method)
    # One axis shrinks, the other grows: one pass per axis, each with its own filter.
    image = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_CUBIC)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_CUBIC)


def apply_static(image: np.ndarray, plan: StaticPlan, out: np.ndarray | None = None) -> np.ndarray:
    """`image` (float32 H×W×3) framed by `plan`, written into `out` (or a new array)."""
    out_w, out_h = plan.out
    scaled = resample(image, *plan.size)
    if out is None:
        out = np.empty((out_h, out_w, 3), np.float32)
    ox, oy = plan.offset
    new_w, new_h = plan.size
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + new_w, out_w), min(oy + new_h, out_h)
    if (x0, y0, x1, y1) != (0, 0, out_w, out_h):
        out[...] = np.asarray(plan.fill, np.float32)
    out[y0:y1, x0:x1] = scaled[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    np.clip(out, 0.0, 1.0, out=out)  # bicubic overshoots a little at hard edges
    return out


# --- timing ----------------------------------------------------------------------------------


def check_offsets(offsets: Sequence[int]) -> np.ndarray:
    """Shot offsets as an int64 array; ValueError for anything else (a caller's bug)."""
    array = np.asarray(offsets)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"offsets must be a sequence of ints, got {offsets!r}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"offsets must be ≥ 0 (0 = the shot's first frame), got {int(array.min())}")
    return array


def shot_steps(offsets: np.ndarray, retime: str, plate_rate: Fraction, shot_rate: Fraction) -> np.ndarray:
    """Plate frames from the plate's start for each shot offset (before looping).

    ``frame``: one plate frame per shot frame. ``time``: the plate frame nearest to the same
    moment when the rates differ (exact rational arithmetic, halves rounded up).
    """
    if retime == "frame" or plate_rate == shot_rate:
        return offsets.copy()
    ratio = Fraction(plate_rate) / Fraction(shot_rate)
    return (2 * offsets * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)


def loop_steps(steps: np.ndarray, length: int, mode: str) -> np.ndarray:
    """Steps folded into [0, length): ``loop`` wraps, ``pingpong`` runs back and forth (the
    turning frames shown once), ``hold`` and ``error`` keep the last frame."""
    if mode == "loop":
        return steps % length
    if mode == "pingpong":
        if length == 1:
            return np.zeros_like(steps)
        period = 2 * length - 2
        phase = steps % period
        return np.where(phase < length, phase, period - phase)
    return np.minimum(steps, length - 1)


# --- stills ----------------------------------------------------------------------------------


def read_still(path: Path, source: str, shot: str | None = None) -> np.ndarray:
    """A still (PNG, JPEG, TIFF, OpenEXR; 8/16-bit or float) as float32 RGB in [0, 1].

    Grey is expanded to RGB and alpha dropped. Float files (EXR, float TIFF) are taken as they
    are, no colour transform, and clipped to [0, 1]. A JPEG is turned upright by its EXIF tag.
    """
    suffix = path.suffix.lower()
    if suffix not in STILL_SUFFIXES:
        raise EditRequestError(
            f"{source} background: {suffix or 'no extension'} is not a still format this reads "
            f"({', '.join(STILL_SUFFIXES)})",
            shot=shot,
            path=path,
        )
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise EditRequestError(
            f"{source} background: cannot read the image: {exc.strerror or exc}", shot=shot, path=path
        ) from exc
    if suffix == ".exr":
        samples = _decode_exr(data, path, source, shot)
    else:
        flags = cv2.IMREAD_COLOR if suffix in (".jpg", ".jpeg") else cv2.IMREAD_UNCHANGED
        samples = cv2.imdecode(data, flags)
    if samples is None:
        raise EditRequestError(f"{source} background: not a readable image (empty or corrupt)", shot=shot, path=path)
    return _to_float_rgb(samples, path, source, shot)


def _decode_exr(data: np.ndarray, path: Path, source: str, shot: str | None) -> np.ndarray | None:
    # OpenCV decodes EXR only when OPENCV_IO_ENABLE_OPENEXR is set at its first EXR use; where
    # that is too late (it caches the answer), the media layer's ffmpeg decodes it instead
    # (16-bit, within 1/2000 of the float values).
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        from studio_nova.errors import MediaError
        from studio_nova.media.decode import read_frame
        from studio_nova.media.probe import probe

        try:
            return cv2.cvtColor(read_frame(probe(path), 0), cv2.COLOR_RGB2BGR)
        except MediaError as exc:
            raise EditRequestError(
                f"{source} background: cannot decode the EXR: {exc.message}", shot=shot, path=path
            ) from exc


def _to_float_rgb(samples: np.ndarray, path: Path, source: str, shot: str | None) -> np.ndarray:
    if samples.ndim == 2:
        samples = samples[:, :, None]
    channels = samples.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        samples = np.repeat(samples[:, :, :1], 3, axis=2)
    elif channels in (3, 4):
        samples = cv2.cvtColor(np.ascontiguousarray(samples[:, :, :3]), cv2.COLOR_BGR2RGB)
    else:
        raise EditRequestError(
            f"{source} background: {channels}-channel images are not supported", shot=shot, path=path
        )
    if samples.dtype == np.uint8:
        image = samples.astype(np.float32) / np.float32(255.0)
    elif samples.dtype == np.uint16:
        image = samples.astype(np.float32) / np.float32(65535.0)
    elif samples.dtype in (np.float16, np.float32, np.float64):
        image = samples.astype(np.float32)
        if np.isnan(image).any():
            raise EditRequestError(f"{source} background: the image holds NaN pixels", shot=shot, path=path)
    else:
        raise EditRequestError(
            f"{source} background: {samples.dtype} samples are not supported; save 8/16-bit or float",
            shot=shot,
            path=path,
        )
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)
