"""Variable-frame-rate media: refuse it, or conform it to a constant rate by its timestamps.

The pipeline numbers a clip's frames at a constant rate (DESIGN section 4): source frame `i` is
shown at `i / rate`. Phones, screen recorders and some cameras write files whose frames are not
evenly spaced; numbering those frames as if they were puts every frame after the first uneven
stretch at the wrong time (a 30-frame slot of a 24 fps cut would get 21 frames of a file that
averages 16.55 fps). `probe` measures every frame's timestamp and sets `MediaInfo.vfr` (see
`probe._timing_facts` for the exact rule), and the `vfr` setting (`STUDIO_NOVA_VFR`) says what
to do with such a file:

- `refuse` (default): `check_vfr` raises a MediaError naming the file and its measured rates;
- `resample`: `conform_vfr(info, rate)` returns a constant-rate *view* of the file. Its frame
  `i` is the source frame on screen at time `i / rate` (each source frame's time rounded to the
  nearest frame of `rate`, halves up, as ffmpeg's `fps` filter does: a frame is repeated where
  the file holds it longer, skipped where the file is faster). `read_frames` / `read_alpha` on
  the view decode exactly that, so frames `a..b` of the view are `b - a + 1` frames at `rate`,
  and frame numbers mean the same thing at every step (ingest, plan, keyframes, render).

Media whose frames do follow a constant rate is never touched: `apply_vfr_policy` and
`conform_vfr` return its `MediaInfo` as it is, and decoding is what it always was.

Callers: wherever a clip's media is probed for the pipeline, use
`apply_vfr_policy(probe(path), settings.vfr, rate)` with `rate` the rate the clip is numbered at
(the cut's rate at ingest; the shot's stored rate afterwards), so every step sees the same view.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np

from studio_nova.errors import ConfigError, MediaError
from studio_nova.media.frame_timing import cfr_slots
from studio_nova.media.info import MediaInfo
from studio_nova.media.probe import frame_times
from studio_nova.media.timecode import frames_to_timecode, snap_rate, timecode_to_frames

POLICIES = ("refuse", "resample")
SETTING = "STUDIO_NOVA_VFR"


def check_vfr(info: MediaInfo, policy: str) -> None:
    """Raise a MediaError when `info` is variable frame rate and `policy` is "refuse".

    The message names the file (the error's path) and the rates measured from its timestamps,
    and says what to do: set STUDIO_NOVA_VFR=resample, or transcode the file to a constant rate.
    Returns for constant-rate media, for a resampled view, and under "resample".
    """
    _check_policy(policy)
    if not info.vfr or info.resampled or policy == "resample":
        return
    raise MediaError(
        f"has a variable frame rate: {describe_timing(info)}; frames are numbered at a constant "
        f"rate here, so its frames would land at the wrong times. Set {SETTING}=resample to "
        f"conform it to the cut's rate by its timestamps, or transcode it to a constant frame "
        f"rate first (e.g. ffmpeg -i IN -fps_mode cfr -r RATE -c:v prores_ks OUT.mov)",
        path=info.path,
        min_rate=info.min_rate,
        max_rate=info.max_rate,
        mean_rate=info.mean_rate,
    )


def apply_vfr_policy(info: MediaInfo, policy: str, rate: Fraction | float | int | str) -> MediaInfo:
    """`info` as the pipeline must use it: refused (`check_vfr`), or under "resample" a
    constant-`rate` view of variable-rate media (`conform_vfr`); constant-rate media unchanged."""
    check_vfr(info, policy)
    if policy == "resample":
        return conform_vfr(info, rate)
    return info


def conform_vfr(info: MediaInfo, rate: Fraction | float | int | str) -> MediaInfo:
    """A constant-`rate` view of variable-rate media (module docstring); `info` itself when the
    file is not variable rate, or is already a view at `rate`.

    The view's `frame_count` runs to the end of the last source frame (its time plus its
    duration, rounded to the nearest frame of `rate`); `start_frame` is the file's start
    timecode at `rate` (converted through seconds when the label does not exist at `rate`).
    """
    target = _rate(rate, info)
    if not info.vfr:
        return info
    if info.resampled:
        if info.rate == target:
            return info
        raise MediaError(
            f"is already conformed to {_fps(info.rate)} fps; conform the probed file, not the view, "
            f"to {_fps(target)} fps",
            path=info.path,
        )
    slots = _slots(info, target)
    count = int(slots[-1]) + 1
    timing = frame_times(info)
    if timing is not None and timing.end is not None:
        end = cfr_slots(np.array([timing.times[0], timing.end]), target)[1]
        count = max(count, int(end))
    timecode, start_frame = _start(info, target)
    return replace(
        info,
        rate=target,
        frame_count=count,
        resampled=True,
        timecode=timecode,
        start_frame=start_frame,
    )


def source_frame_map(view: MediaInfo, source: MediaInfo) -> np.ndarray:
    """For each frame of a resampled `view`, the number of the `source` frame it shows."""
    slots = _slots(source, view.rate)
    frames = np.arange(view.frame_count)
    mapping = np.searchsorted(slots, frames, side="right") - 1
    return np.maximum(mapping, 0)


def describe_timing(info: MediaInfo) -> str:
    """`its frames run at 25 to 50 fps (33.3 on average)`, from the measured rates."""
    low, high, mean = info.min_rate, info.max_rate, info.mean_rate
    if low is None or high is None:
        return "its frame times do not follow a constant rate"
    if _fps(low) == _fps(high):
        text = f"its frames mostly run at {_fps(low)} fps"
        timing = frame_times(info)
        gaps = np.diff(timing.times) * 1000.0 if timing is not None and len(timing.times) > 1 else None
        if gaps is not None and _ms(float(np.min(gaps))) != _ms(float(np.max(gaps))):
            text += (
                f" but single frames are {_ms(float(np.min(gaps)))} to {_ms(float(np.max(gaps)))} ms "
                f"apart (frames dropped or repeated)"
            )
        else:
            text += f", not at the {_fps(info.rate)} fps it declares"
    else:
        text = f"its frames run at {_fps(low)} to {_fps(high)} fps"
    if mean is not None:
        text += f" ({_fps(mean)} fps on average)"
    return text


def _slots(info: MediaInfo, rate: Fraction) -> np.ndarray:
    timing = frame_times(info)
    if timing is None or len(timing.times) != info.frame_count:
        raise MediaError(
            "its frame times cannot be read (or it changed since it was probed), so it cannot be "
            "conformed to a constant rate; transcode it to a constant frame rate",
            path=info.path,
        )
    return cfr_slots(timing.times, rate)


def _start(info: MediaInfo, rate: Fraction) -> tuple[str | None, int]:
    if info.timecode is None:
        return None, 0
    try:
        return info.timecode, timecode_to_frames(info.timecode, rate)
    except ValueError:
        seconds = Fraction(info.start_frame) / info.rate
        start = int(seconds * rate + Fraction(1, 2))
        return frames_to_timecode(start, rate), start


def _rate(rate: Fraction | float | int | str, info: MediaInfo) -> Fraction:
    try:
        value = snap_rate(rate) if isinstance(rate, float) else Fraction(rate)
    except (TypeError, ValueError, ZeroDivisionError):
        value = Fraction(0)
    if value <= 0:
        raise MediaError(f"cannot be conformed to a frame rate of {rate!r}", path=info.path)
    return value


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"{SETTING} must be one of {', '.join(POLICIES)}, got {policy!r}")


def _fps(value: float | Fraction) -> str:
    """25 → '25', 29.97002997 → '29.97', 33.333 → '33.33'."""
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def _ms(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")
