"""Chunks and keyframes of a shot (DESIGN section 4), in source frames.

Chunks are `length` frames (4n+1), start every `length - overlap` frames from the shot's first
frame, and the last chunk is placed so that it ends exactly on the shot's last frame (it then
overlaps its neighbour by more than `overlap`); a shot shorter than a chunk is one chunk covering
the whole shot (the propagator pads it if its model needs a fixed length). Keyframes fall every
`interval` frames from the first frame and always include the last frame, so no frame is ever
extrapolated from one side only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShotPlan:
    first_frame: int
    last_frame: int
    chunks: list[tuple[int, int]]  # inclusive source-frame ranges
    keyframes: list[int]  # source frames

    @property
    def frame_count(self) -> int:
        return self.last_frame - self.first_frame + 1


def plan_chunks(first: int, last: int, *, length: int = 81, overlap: int = 16) -> list[tuple[int, int]]:
    if last < first:
        raise ValueError(f"empty shot: last frame {last} is before first frame {first}")
    if length < 1 or overlap < 0 or overlap >= length:
        raise ValueError(f"chunk length {length} must be positive and exceed its overlap {overlap}")
    if last - first + 1 <= length:
        return [(first, last)]
    stride = length - overlap
    chunks = []
    start = first
    while start + length - 1 < last:
        chunks.append((start, start + length - 1))
        start += stride
    chunks.append((last - length + 1, last))
    return chunks


def plan_keyframes(first: int, last: int, *, interval: int = 10) -> list[int]:
    if last < first:
        raise ValueError(f"empty shot: last frame {last} is before first frame {first}")
    if interval < 1:
        raise ValueError(f"keyframe interval must be at least 1, got {interval}")
    frames = list(range(first, last + 1, interval))
    if frames[-1] != last:
        frames.append(last)
    return frames


def plan_shot(first: int, last: int, *, length: int = 81, overlap: int = 16, interval: int = 10) -> ShotPlan:
    return ShotPlan(
        first_frame=first,
        last_frame=last,
        chunks=plan_chunks(first, last, length=length, overlap=overlap),
        keyframes=plan_keyframes(first, last, interval=interval),
    )
