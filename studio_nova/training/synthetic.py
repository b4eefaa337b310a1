"""Synthetic training clips (drawn scenes, written as real video files) for tests and smoke runs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from studio_nova.footage.synthetic import make_scene
from studio_nova.media.encode import VideoWriter

# (frames, width, height): different lengths, sizes and aspect ratios, as a studio's clips are.
DEFAULT_CLIPS: tuple[tuple[int, int, int], ...] = ((40, 64, 48), (33, 48, 48), (50, 80, 48))


def write_clips(
    folder: str | Path,
    clips: Sequence[tuple[int, int, int]] = DEFAULT_CLIPS,
    *,
    seed: int = 10,
    codec: str = "ffv1",
    rate: Fraction = Fraction(25),
) -> list[Path]:
    """Write one clip per (frames, width, height) into `folder` (`clipN.mkv` for ffv1, else
    `.mov`), each a different seeded synthetic scene; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".mkv" if codec == "ffv1" else ".mov"
    paths = []
    for i, (frames, width, height) in enumerate(clips):
        scene = make_scene(frames, width, height, seed=seed + i)
        path = folder / f"clip{i}{suffix}"
        with VideoWriter(path, width=width, height=height, rate=rate, codec=codec, input_dtype=np.uint8) as writer:
            for frame in scene.frames:
                writer.write(frame)
        paths.append(path)
    return paths
