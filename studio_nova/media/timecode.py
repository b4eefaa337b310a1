"""SMPTE timecode <-> frame counts, drop-frame included, and exact frame rates.

Cuts and media files carry start timecodes (often 01:00:00:00) while the pipeline numbers
frames from 0; these functions are the bridge. NTSC rates are exact rationals (30000/1001,
not 29.97) because a float rate drifts by a frame every ~17 minutes.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Drop-frame timecode exists for these rates only: labels :00 and :01 (×2 at 59.94) are
# skipped at the start of every minute except every tenth.
_DROP_FRAMES_PER_MINUTE = {Fraction(30000, 1001): 2, Fraction(60000, 1001): 4}

# The nominal integer rates whose 1000/1001 variants are in everyday use.
_NTSC_BASES = (15, 24, 30, 48, 60, 96, 120, 240)

_TC_RE = re.compile(r"^\s*(\d{1,3})[:;.](\d{2})[:;.](\d{2})([:;.,])(\d{2,3})\s*$")


def nominal_fps(rate: Fraction) -> int:
    """Frames per timecode second: 24 for 24000/1001, 30 for 30000/1001, 25 for 25."""
    rate = _as_rate(rate)
    return max(1, round(rate))


def is_drop_frame(tc: str) -> bool:
    """Whether a timecode string is written drop-frame (';' or '.' before the frames)."""
    match = _TC_RE.match(tc)
    return bool(match) and match.group(4) in ";.,"


def timecode_to_frames(tc: str, rate: Fraction) -> int:
    """Frame count of a timecode label at `rate` (01:00:00:00 at 25 fps is 90000).

    A drop-frame label (';' separator) is only valid at 30000/1001 and 60000/1001, and a
    label that drop-frame skips (e.g. 00:01:00;00) is rejected rather than guessed.
    """
    rate = _as_rate(rate)
    match = _TC_RE.match(tc) if isinstance(tc, str) else None
    if match is None:
        raise ValueError(f"timecode {tc!r} is not HH:MM:SS:FF (or HH:MM:SS;FF for drop-frame)")
    hours, minutes, seconds, sep, frames = match.groups()
    h, m, s, f = int(hours), int(minutes), int(seconds), int(frames)
    fps = nominal_fps(rate)
    if m > 59 or s > 59 or f >= fps:
        raise ValueError(f"timecode {tc!r} is out of range at {_rate_text(rate)} fps")
    total_minutes = 60 * h + m
    count = (total_minutes * 60 + s) * fps + f
    if sep in ";.,":
        drop = _DROP_FRAMES_PER_MINUTE.get(rate)
        if drop is None:
            raise ValueError(
                f"timecode {tc!r} is drop-frame, which only exists at 30000/1001 and "
                f"60000/1001 fps, not {_rate_text(rate)}"
            )
        if s == 0 and f < drop and m % 10 != 0:
            raise ValueError(f"timecode {tc!r} is a label that drop-frame timecode skips")
        count -= drop * (total_minutes - total_minutes // 10)
    return count


def frames_to_timecode(n: int, rate: Fraction, *, drop_frame: bool | None = None) -> str:
    """Timecode label of frame count `n` at `rate`; drop-frame by default at 29.97 / 59.94.

    Hours wrap at 24 as on a real timecode clock.
    """
    rate = _as_rate(rate)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"frame count must be a non-negative int, got {n!r}")
    drop = _DROP_FRAMES_PER_MINUTE.get(rate)
    if drop_frame is None:
        drop_frame = drop is not None
    elif drop_frame and drop is None:
        raise ValueError(f"drop-frame timecode does not exist at {_rate_text(rate)} fps")
    fps = nominal_fps(rate)
    label = n
    if drop_frame:
        per_minute = fps * 60 - drop
        per_ten_minutes = fps * 600 - 9 * drop
        tens, rest = divmod(n, per_ten_minutes)
        # The first minute of each ten keeps all its labels; each later one loses `drop`.
        skipped = 9 * drop * tens
        if rest >= fps * 60:
            skipped += drop * ((rest - fps * 60) // per_minute + 1)
        label = n + skipped
    frames = label % fps
    seconds = label // fps
    text = f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    width = 3 if fps > 100 else 2
    return f"{text}{';' if drop_frame else ':'}{frames:0{width}d}"


def snap_rate(fps: float) -> Fraction:
    """The exact rate behind a rounded one: 29.97 → 30000/1001, 25.0 → 25, 12.5 → 25/2.

    ffmpeg prints rates with two decimals; a pipeline that kept 29.97 would drift.
    """
    try:
        value = float(fps)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"frame rate must be a number, got {fps!r}") from exc
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"frame rate must be positive and finite, got {fps!r}")
    nearest = round(value)
    if nearest >= 1 and abs(value - nearest) < 0.005:
        return Fraction(nearest)
    for base in _NTSC_BASES:
        ntsc = Fraction(base * 1000, 1001)
        # Two-decimal printing (23.98 for 23.976...) is off by at most 0.005.
        if abs(value - float(ntsc)) < 0.0051:
            return ntsc
    return Fraction(value).limit_denominator(1001)


def _as_rate(rate: Fraction | int | float | str) -> Fraction:
    try:
        value = Fraction(rate)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"frame rate must be a positive rational, got {rate!r}") from exc
    if value <= 0:
        raise ValueError(f"frame rate must be positive, got {rate!r}")
    return value


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"
