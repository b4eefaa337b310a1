"""The background-source contract: the new background of a background replacement, frame by frame.

Background sources are entry-point plugins in the group ``studio_nova.backgrounds`` (``still``,
``plate``, ``generator`` first-party). The class named by the entry point is instantiated with
the request's ``background.params`` as keyword arguments (the run's settings come in the context:
``BackgroundContext.settings``); ``frames()`` returns the new background for shot-relative frame
offsets, already at the source frame size, so the compositor never resamples the subject. A plate's motion is kept as it is: offset ``i`` of the shot shows the
plate's frame for that moment (trimmed, held or looped as asked), never a frozen still unless the
request asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from studio_nova.config import Settings, load_settings


@dataclass(frozen=True)
class BackgroundContext:
    """What a background source needs to know about the shot it fills."""

    shot: str
    width: int  # source frame size: every returned frame has exactly this size
    height: int
    rate: Fraction  # the shot's frame rate
    frame_count: int  # frames in the shot
    seed: int = 0
    base_dir: Path | None = None  # where relative paths in params resolve (the timeline's folder)
    instruction: str = ""  # the edit's instruction (a generator's prompt when it names none)
    cache_dir: Path | None = None  # where a generator keeps what it made, so a rerun reuses it
    # The run's settings (the workspace's, set by the caller): read model folders / device here,
    # never from the environment. Built from the environment only when a caller gives none.
    settings: Settings = field(default_factory=load_settings, repr=False)


@runtime_checkable
class BackgroundSource(Protocol):
    name: str

    def frames(self, context: BackgroundContext, offsets: Sequence[int]) -> np.ndarray:
        """(len(offsets), H, W, 3) float32 in [0, 1] for shot-relative frame offsets (0 = first)."""
        ...


def check_background(frames: np.ndarray, context: BackgroundContext, offsets: Sequence[int], source: str) -> np.ndarray:
    """Validate a background source's answer so a broken plugin names itself and the shot."""
    from studio_nova.errors import PluginError

    expected = (len(offsets), context.height, context.width, 3)
    if not isinstance(frames, np.ndarray) or frames.shape != expected or frames.dtype != np.float32:
        got = f"{getattr(frames, 'dtype', type(frames).__name__)}{getattr(frames, 'shape', '')}"
        raise PluginError(f"background source {source!r} returned {got}, expected float32{expected}", shot=context.shot)
    if not np.isfinite(frames).all():
        raise PluginError(f"background source {source!r} returned non-finite pixels", shot=context.shot)
    return np.clip(frames, 0.0, 1.0, out=frames)
