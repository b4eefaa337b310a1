"""Frame timing measured from timestamps: how far a file is from a constant rate (`probe`),
and where each frame falls on a constant-rate grid (`probe`, `media.vfr`)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def timing_facts(seconds: np.ndarray, end: float | None, rate: Fraction, tick: float) -> dict[str, object]:
    """vfr, min_rate, max_rate and mean_rate of `MediaInfo`, measured from every frame's time.

    `seconds`: every frame's time, ascending; `end`: when the last one stops being shown (None:
    unknown); `tick`: the time base, in seconds.
    vfr: some frame is half a frame or more away from `i / rate` (after the first frame), i.e.
    numbering frames at the constant `rate` would put a frame at the wrong time; timestamp
    jitter below that (rounding to a coarse time base, a phone's wobble) is not variable rate.
    min_rate / max_rate: the slowest and fastest rate that runs of frames are shown at, i.e.
    over the frame intervals that recur (equal to within a tick of the time base); a lone odd
    interval (one dropped frame, a timestamp glitch) is left out of them, though not of `vfr`.
    """
    if len(seconds) < 2:
        return {}
    gaps = np.diff(seconds)
    if float(np.min(gaps)) <= 0:
        return {}
    vfr = bool(np.any(cfr_slots(seconds, rate) != np.arange(len(seconds))))
    typical = recurring_gaps(gaps, tick)
    span = (end if end is not None else float(seconds[-1] + np.median(gaps))) - float(seconds[0])
    return {
        "vfr": vfr,
        "min_rate": 1.0 / max(typical),
        "max_rate": 1.0 / min(typical),
        "mean_rate": len(seconds) / span if span > 0 else None,
    }


def cfr_slots(seconds: np.ndarray, rate: Fraction) -> np.ndarray:
    """The frame of a constant `rate` each time falls on, counted from the first: its time in
    frames rounded to the nearest, halves up (as ffmpeg's fps filter rounds)."""
    offsets = (np.asarray(seconds, np.float64) - float(seconds[0])) * float(rate)
    return np.floor(offsets + 0.5 + 1e-6).astype(np.int64)


def recurring_gaps(gaps: np.ndarray, tick: float) -> list[float]:
    """Median of each group of frame intervals that recur (groups: sorted intervals less than
    1.5 ticks apart, at least two of them); all the intervals when none recurs."""
    ordered = np.sort(gaps)
    splits = np.nonzero(np.diff(ordered) > 1.5 * tick + 1e-12)[0] + 1
    groups = [group for group in np.split(ordered, splits) if len(group) >= 2]
    if not groups:
        return [float(ordered[0]), float(ordered[-1])]
    return [float(np.median(group)) for group in groups]
