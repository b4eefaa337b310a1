"""One error hierarchy for the whole library.

Every error carries the shot, frame and path it is about (when known) so that a batch can report
per-shot failures a person can act on, and so that callers can branch on the class rather than on
message text.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any


class StudioNovaError(Exception):
    """Base class of every error studio-nova raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        shot: str | None = None,
        frame: int | None = None,
        path: str | PathLike[str] | None = None,
        **details: Any,
    ) -> None:
        self.message = message
        self.shot = shot
        self.frame = frame
        self.path = Path(path) if path is not None else None
        self.details = details
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.shot is not None:
            where.append(f"shot {self.shot!r}")
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.path is not None:
            where.append(f"file {str(self.path)!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description for `--json` output and the store."""
        out: dict[str, Any] = {"type": type(self).__name__, "message": str(self)}
        if self.shot is not None:
            out["shot"] = self.shot
        if self.frame is not None:
            out["frame"] = self.frame
        if self.path is not None:
            out["path"] = str(self.path)
        out.update({k: v for k, v in self.details.items() if _jsonable(v)})
        return out


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


class ConfigError(StudioNovaError):
    """A setting is missing or has a value that cannot work."""


class TimelineError(StudioNovaError):
    """The cut cannot be read, or holds nothing to edit."""


class EditRequestError(StudioNovaError):
    """A clip's edit request (metadata or `NOVA:` marker) is malformed."""


class MediaError(StudioNovaError):
    """A media file is missing, unreadable, or not what the cut says it is."""


class MediaRangeError(MediaError):
    """A clip asks for frames its media file does not have."""


class DecodeError(MediaError):
    """ffmpeg failed while decoding, or returned fewer frames than asked for."""


class TransientError(StudioNovaError):
    """A failure that says nothing about the shot and may not happen again: a GPU out of memory
    because of what else ran, an encoder killed by the system, a store connection dropped. The
    render retries the chunk (its attempts are counted in the store, across workers) and goes on
    from the ledger; a deterministic error (bad input, bad params) fails the shot at once."""


class EncodeError(MediaError):
    """ffmpeg failed while writing a render."""


class PluginError(StudioNovaError):
    """A plugin is unknown, failed to load, or broke its contract."""


class KeyframeError(StudioNovaError):
    """Keyframes are missing or unusable (e.g. an artist has not painted them all yet)."""


class PropagationError(StudioNovaError):
    """A propagator could not carry the keyframe edits through a chunk."""


class StoreError(StudioNovaError):
    """The store cannot be opened, migrated or updated."""


class EncoderKilled(EncodeError, TransientError):
    """ffmpeg was killed by a signal (the system's out-of-memory killer, an operator) while it
    wrote: nothing is wrong with the frames, so the chunk is retried."""


class StoreUnavailable(StoreError, TransientError):
    """The store could not be reached or was busy (a dropped connection, a restarting server, a
    locked SQLite file): nothing about the shot is wrong, the step is retried."""


class LeaseLost(StoreError):
    """Another worker holds the shot this worker was rendering: its lease ran out (the worker was
    thought lost) and was taken over. Not a failure of the shot: the worker stops, the other one
    finishes the render from the ledger."""


class StateTransitionError(StoreError):
    """A shot was asked to move to a state its lifecycle does not allow from where it is."""


class ReviewError(StudioNovaError):
    """A review decision cannot be applied (unknown shot, shot not waiting for review, ...)."""


class ConformError(StudioNovaError):
    """The conformed cut cannot be built or written."""


class TrainingError(StudioNovaError):
    """Training of the NOVA adapter cannot start or go on (bad settings, output folder, model)."""


class TrainingDataError(TrainingError):
    """The training data (a folder or a cut of clips) holds no clip that can be used."""


class CheckpointError(TrainingError):
    """A training checkpoint is missing, incomplete, or does not fit this run (e.g. --resume)."""


class OutputError(StudioNovaError):
    """A folder or file a run writes cannot be made or written: a file in the way, no permission,
    a read-only mount, a full disk."""


class FileAccessError(StudioNovaError):
    """A file or folder could not be read or written, and no check before said why."""


class Interrupted(StudioNovaError):
    """A command stopped by SIGTERM / SIGINT before it could finish (reported with 128 + signal)."""
