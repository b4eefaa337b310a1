"""Every check a shot must pass before anything is made for it, in one place.

`plan` and the ingest step of a run (`workflow.ingest.ingest_cut`, so the in-process runner and
the Prefect flows alike) call `checked_cut`, so a night's batch is validated by `plan` exactly as
the run will validate it. What `cut.ingest.ingest` already refuses a clip for comes first (its
request is malformed; its media is missing, outside `STUDIO_NOVA_MEDIA_ROOTS`, unreadable, of a
variable frame rate the `vfr` setting refuses, too short); `check_shot` adds what needs the
plugins and the encoder:

- the editor is installed and accepts the request (its optional `check_params`, see
  `plugin_api.editing.check_request`; for a background replacement that includes the matte and
  background sources and their params);
- the media's frame size can be encoded (`media.encode.encode_size_problem`) and its frame rate
  is allowed (`media.vfr.check_vfr`).

Every problem names the clip (name and key, `clip 'sh010' (V1/3)`), the file when there is one,
and what to do. Nothing here opens media beyond the probe ingest made, loads a model or writes.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from studio_nova.config import Settings
from studio_nova.cut.ingest import DEFAULT_EDL_RATE, Cut, Shot, ShotProblem, ingest
from studio_nova.cut.plan import plan_keyframes
from studio_nova.errors import MediaError, PluginError, StudioNovaError
from studio_nova.media.encode import encode_size_problem
from studio_nova.media.vfr import check_vfr
from studio_nova.plugin_api.editing import check_request
from studio_nova.plugin_api.registry import EDITORS, plugin_class

log = logging.getLogger(__name__)


def _label(shot: Shot) -> str:
    return f"clip {shot.name!r} ({shot.key})"


def _problem(shot: Shot, error: StudioNovaError, prefix: str = "") -> ShotProblem:
    """`error` reworded to name the clip and its key, and the shot's media when it names no file."""
    details = {k: v for k, v in error.details.items() if k != "key"}
    where = dict(shot=shot.name, frame=error.frame, path=error.path if error.path is not None else shot.media)
    message = f"{_label(shot)}: {prefix}{error.message}"
    try:
        reworded = type(error)(message, **where, key=shot.key, **details)
    except TypeError:  # a plugin's own error class with another signature
        reworded = StudioNovaError(message, **where, key=shot.key, type=type(error).__name__)
    return ShotProblem(key=shot.key, name=shot.name, error=reworded)


def check_editor(shot: Shot, settings: Settings) -> list[ShotProblem]:
    """The shot's editor is installed and would accept its params and instruction."""
    edit = shot.edit
    how = (
        "studio_nova.edit.editor in the clip's metadata, or STUDIO_NOVA_DEFAULT_EDITOR for NOVA: markers"
    )
    try:
        editor = plugin_class(EDITORS, edit.editor)
    except PluginError as err:
        return [_problem(shot, PluginError(f"{err.message}; name an installed editor in {how}", **err.details))]
    keyframes = plan_keyframes(shot.first_frame, shot.last_frame, interval=settings.keyframe_interval)
    try:
        check_request(editor, edit.params, instruction=edit.instruction, settings=settings, keyframes=keyframes)
    except StudioNovaError as err:
        return [_problem(shot, err, f"editor {edit.editor!r}: ")]
    except Exception as exc:  # a broken check is the plugin's bug: say so, and whose
        return [
            _problem(
                shot,
                PluginError(f"editor {edit.editor!r}'s check_params failed: {type(exc).__name__}: {exc}"),
            )
        ]
    return []


def check_media(shot: Shot, settings: Settings) -> list[ShotProblem]:
    """The shot's media can be rendered: its frame size can be encoded as master and proxy, and a
    variable frame rate is allowed by the `vfr` setting (ingest already numbered such a file's
    frames by it: refused there, or the shot's `info` is the constant-rate view)."""
    info = shot.info
    problems = []
    size = encode_size_problem(info.width, info.height)
    if size is not None:
        problems.append(_problem(shot, MediaError(f"its media cannot be rendered: {size}", path=shot.media)))
    try:
        check_vfr(info, settings.vfr)
    except StudioNovaError as err:
        problems.append(_problem(shot, err, "its media "))
    return problems


def check_shot(shot: Shot, settings: Settings) -> list[ShotProblem]:
    """Every problem that would stop the shot in a run, found without running it (empty: none)."""
    return check_editor(shot, settings) + check_media(shot, settings)


def checked_cut(
    timeline: str | os.PathLike[str], settings: Settings, *, edl_rate: float | Fraction = DEFAULT_EDL_RATE
) -> Cut:
    """The cut as `ingest` reads it, with every shot that fails `check_shot` moved to the
    problems (a shot may have several). Raises TimelineError only when the cut itself is
    unusable; when every clip has a problem the cut comes back with no shots."""
    cut = ingest(Path(timeline), settings, edl_rate=edl_rate)
    shots: list[Shot] = []
    problems = list(cut.problems)
    for shot in cut.shots:
        found = check_shot(shot, settings)
        if found:
            for problem in found:
                log.debug("%s", problem.error)
            problems.extend(found)
        else:
            shots.append(shot)
    problems.sort(key=lambda p: key_order(p.key))  # stable: a shot's problems keep their order
    return replace(cut, shots=shots, problems=problems)


def key_order(key: str) -> tuple[tuple[int, Any], ...]:
    """Sort key putting clip keys in cut order: `V1/10` after `V1/9`, `V2/0` after both."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", key) if part)
