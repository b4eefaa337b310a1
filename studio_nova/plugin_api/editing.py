"""The keyframe-editor contract.

An editor turns the original keyframes of one shot into edited keyframes plus, per keyframe, a
mask of where the edit changed the image. Editors are entry-point plugins in the group
`studio_nova.editors`; the class named by the entry point is instantiated without arguments, or
with ``from_settings(settings)`` when it defines that classmethod (see `registry.load_plugin`),
once per shot edit. The run's settings also travel in the context (`EditContext.settings`): an
editor reads what it is configured with (weights folders, device) there, never from the
environment.

Batches: so that memory does not grow with a shot's length, the pipeline calls `edit()` of one
instance several times for one shot, in source-frame order, each call with the next batch of
consecutive keyframes (those within one chunk's length, `Settings.chunk_length` frames, of the
batch's first), and writes each batch before it decodes the next. Every call gets the same
request (instruction, params, seed, region, source, settings); the calls after the first get the
first call's first edited keyframe as `reference` (when the request gives none), so an editor
that edits later keyframes against the first edited one (below) does the same across batches
without being told. What an editor returns for a keyframe must not depend on how the shot is
batched: anything shared by the whole shot (a look, a seed, a generated plate cached in
`ShotSource.work_dir`, a tracker that runs through the shot in order) is made the same from any
batch, or carried over by the instance from the call before. The version's `info` is the first
call's, with the keys later calls add to its dict entries (per-keyframe figures). A new shot edit
(a rejection's new instruction or seed) gets a new instance.

An editor may also say whether it would accept a request without running (optional, see
`check_request`): a classmethod or staticmethod ``check_params(params, *, instruction, settings,
keyframes, **_)`` that raises what `edit()` would raise for those params and that instruction on
a shot with those keyframes (their source frames; EditRequestError for a bad param, ConfigError
for missing weights, KeyframeError for missing paintings) and looks only at the request, the
settings and files: it never loads a model or decodes media. `plan` and a run's ingest call it
for every shot before anything is made.

Images are float32 RGB in [0, 1], H×W×3, at the source size; masks float32 H×W in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from studio_nova.config import Settings, load_settings


@dataclass(frozen=True)
class Keyframe:
    """An original keyframe: source frame number (DESIGN section 4) and its pixels."""

    source_frame: int
    image: np.ndarray


@dataclass(frozen=True)
class ShotSource:
    """Where a shot's frames come from, for editors that need more than its keyframes (a
    background replacement reads the source's alpha channel and the new background for the same
    moments). Source media is read-only."""

    media: Path
    first_frame: int
    last_frame: int
    work_dir: Path | None = None  # a folder the editor may keep intermediates in (reused on rerun)
    rate: Fraction | None = None  # the rate the shot's source frames are numbered at (VFR media is conformed to it)


@dataclass(frozen=True)
class EditContext:
    """Everything an editor receives for one call: one batch of a shot's keyframes (see the
    module's "Batches")."""

    shot: str
    keyframes: Sequence[Keyframe]  # consecutive keyframes, in source-frame order: one batch
    instruction: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    region: np.ndarray | None = None  # H×W in [0, 1]: confine the edit here when given
    # An edited image whose look every keyframe should share; in the batches after a shot's
    # first, the first edited keyframe (when the request gives none).
    reference: np.ndarray | None = None
    source: ShotSource | None = None  # the shot's media and range (set by the pipeline)
    # The run's settings (the workspace's, set by the pipeline); built from the environment only
    # when a caller (a test, the conformance suite) makes a context without them.
    settings: Settings = field(default_factory=load_settings, repr=False)


@dataclass(frozen=True)
class EditedKeyframe:
    source_frame: int
    image: np.ndarray  # float32 H×W×3 in [0, 1]
    mask: np.ndarray  # float32 H×W in [0, 1]; 0 where the edit left the pixel unchanged


@dataclass(frozen=True)
class EditResult:
    keyframes: list[EditedKeyframe]
    info: dict[str, Any] = field(default_factory=dict)  # model, seed, settings: for store and review


@runtime_checkable
class KeyframeEditor(Protocol):
    name: str

    def edit(self, context: EditContext) -> EditResult: ...


def check_request(
    editor: Any,
    params: Mapping[str, Any],
    *,
    instruction: str,
    settings: Settings,
    keyframes: Sequence[int] = (),
) -> bool:
    """Run the editor class's optional ``check_params(params, *, instruction, settings,
    keyframes)``: it raises (a StudioNovaError) when `edit()` would refuse the request for a shot
    whose keyframes are at source frames `keyframes`. False when the editor declares no such
    check, so nothing could be checked without running it."""
    check = getattr(editor, "check_params", None)
    if not callable(check):
        return False
    check(dict(params or {}), instruction=instruction, settings=settings, keyframes=list(keyframes))
    return True
