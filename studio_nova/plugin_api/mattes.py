"""The matte-source contract: where the foreground of a background replacement comes from.

A background replacement (edit kind ``background``) keeps the subject of the source frame by frame
and puts a new background behind it, fused along a matte. Matte sources are entry-point plugins in
the group ``studio_nova.mattes`` (``alpha``, ``file``, ``chroma``, ``segmentation`` first-party).
The class named by the entry point is instantiated with the request's ``matte.params`` as keyword
arguments (the run's settings come in the context: ``MatteContext.settings``); ``mattes()`` is
called for runs of consecutive source frames, in order, consecutive runs overlapping by the
source's ``context_frames`` (see `MatteSource`), so a source may keep state between calls (a
tracker) but must give the same answer on a rerun.

A matte may also return its estimate of what was *behind* the subject (for a green screen: the
screen, lit as it was). Compositing uses it to unmix the semi-transparent edge pixels, which is
what keeps the old background from bleeding into the subject's edges; without it the compositor
estimates the old background itself from the pixels the matte marks as background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from studio_nova.config import Settings, load_settings
from studio_nova.media.info import MediaInfo


@dataclass(frozen=True)
class MatteContext:
    """What a matte source receives for one run of consecutive source frames."""

    shot: str
    media: MediaInfo  # the shot's source file (read-only)
    first_frame: int  # source frame of frames[0] (DESIGN section 4)
    frames: np.ndarray  # (N, H, W, 3) uint8 | uint16 RGB, as `read_frames` decodes them
    base_dir: Path | None = None  # where relative paths in params resolve (the timeline's folder)
    # The run's settings (the workspace's, set by the caller): read weights folders / device here,
    # never from the environment. Built from the environment only when a caller gives none.
    settings: Settings = field(default_factory=load_settings, repr=False)


@dataclass
class Matte:
    """Per-frame foreground coverage, and optionally the old background behind it."""

    alpha: np.ndarray  # (N, H, W) float32 in [0, 1]; 1 = foreground
    background: np.ndarray | None = None  # (N, H, W, 3) float32 in [0, 1]: what was behind
    foreground: np.ndarray | None = None  # (N, H, W, 3) float32: the subject's own colour (unmixed, despilled)
    info: dict[str, Any] = field(default_factory=dict)  # what was used, for the store and QC


@runtime_checkable
class MatteSource(Protocol):
    """Optional class attributes: `context_frames` (int, default 2): how many neighbouring frames
    on either side the source looks at, so a caller that keys a chunk in batches hands it that
    much overlap; `sequential` (bool, default False): the source tracks through the shot in
    order from its start (it must then carry its state over the overlap of consecutive calls)."""

    name: str

    def mattes(self, context: MatteContext) -> Matte: ...


def check_matte(matte: Matte, context: MatteContext, source: str) -> Matte:
    """Validate a matte source's answer so a broken plugin names itself, the shot and the frame."""
    from studio_nova.errors import PluginError

    n, h, w = context.frames.shape[:3]
    where = dict(shot=context.shot, frame=context.first_frame)
    if not isinstance(matte, Matte):
        raise PluginError(f"matte source {source!r} returned {type(matte).__name__}, not Matte", **where)
    alpha = np.asarray(matte.alpha)
    if alpha.shape != (n, h, w) or alpha.dtype != np.float32:
        raise PluginError(
            f"matte source {source!r} returned alpha {alpha.dtype}{alpha.shape}, expected float32{(n, h, w)}",
            **where,
        )
    if not np.isfinite(alpha).all() or alpha.min() < 0 or alpha.max() > 1:
        raise PluginError(f"matte source {source!r} returned alpha outside [0, 1]", **where)
    for name in ("background", "foreground"):
        extra = getattr(matte, name)
        if extra is not None and (np.asarray(extra).shape != (n, h, w, 3) or extra.dtype != np.float32):
            raise PluginError(
                f"matte source {source!r} returned {name} {extra.dtype}{np.asarray(extra).shape}, "
                f"expected float32{(n, h, w, 3)}",
                **where,
            )
    return matte


def matte_params(request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(source name, params) of an edit request's ``matte`` entry."""
    return str(request.get("source", "chroma")), dict(request.get("params") or {})
