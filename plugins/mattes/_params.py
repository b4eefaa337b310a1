"""Parameter checks the matte sources share: each failure names the source and the param."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from studio_nova.errors import EditRequestError


def check_names(source: str, params: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise EditRequestError(
            f"matte source {source!r} does not know the params {unknown}; it takes {list(known)}"
        )


def number(
    source: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """A finite number in range, or an EditRequestError naming the param and its value."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        what = "an integer" if integer else "a finite number"
        raise EditRequestError(f"matte source {source!r}: {name} must be {what}, got {value!r}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        span = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
        raise EditRequestError(f"matte source {source!r}: {name} must be in {span}, got {value!r}")
    return value


def flag(source: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EditRequestError(f"matte source {source!r}: {name} must be true or false, got {value!r}")
    return value


def resolve_path(value: Any, base_dir: Path | None, source: str, name: str = "path") -> Path:
    """A param path, relative to the timeline's folder when it is not absolute."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise EditRequestError(f"matte source {source!r}: {name} must be a path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def as_float(frames: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float frames → float32 in [0, 1] (a view when already float32)."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) * np.float32(1.0 / 255.0)
    if frames.dtype == np.uint16:
        return frames.astype(np.float32) * np.float32(1.0 / 65535.0)
    return np.asarray(frames, np.float32)
