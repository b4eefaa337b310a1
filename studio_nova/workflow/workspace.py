"""An output folder and the store that records what was made in it: what every step works on.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from studio_nova.config import Settings, load_settings
from studio_nova.cut.naming import (
    safe_name,
    version_label,
)
from studio_nova.media.ffmpeg_bin import configure_ffmpeg
from studio_nova.store import (
    ShotRecord,
    Store,
    TimelineRecord,
)

log = logging.getLogger(__name__)


@dataclass
class Workspace:
    """An output folder and the store that records what was made in it."""

    out: Path
    settings: Settings
    store: Store
    #: Who holds this workspace's leases and chunk claims: the host and the process, so that two
    #: workers on one machine are told apart (a flow run adds its run id, `flows/`).
    worker: str = field(default_factory=lambda: ":".join([socket.gethostname(), str(os.getpid())]))

    @classmethod
    def open(cls, out: str | Path, settings: Settings | None = None) -> "Workspace":
        """The workspace in `out` with the run's `settings` (built from the environment with
        `load_settings()` when none are given): every step and plugin gets them from here, and
        the media layer runs the ffmpeg they name."""
        settings = settings or load_settings()
        configure_ffmpeg(settings.ffmpeg)
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.store_url(out), max_attempts=settings.render_attempts)
        return cls(out=out, settings=settings, store=store)

    def close(self) -> None:
        self.store.close()

    def slug(self, shot: ShotRecord) -> str:
        """The shot's folder name, allocated once by the store and unique in it."""
        return shot.slug or f"{safe_name(shot.name)}_{shot.id}"

    def keyframe_dir(self, shot: ShotRecord, version: int) -> Path:
        return self.out / "keyframes" / self.slug(shot) / version_label(version)

    def generated_dir(self, shot: ShotRecord) -> Path:
        """Where plugins keep what they generate for a shot (e.g. a generated background plate),
        so keyframes, every render chunk and a rerun use the same one."""
        return self.out / ".work" / self.slug(shot) / "generated"

    def render_paths(self, shot: ShotRecord, version: int) -> tuple[Path, Path, Path]:
        slug, label = self.slug(shot), version_label(version)
        folder = self.out / "renders" / slug
        return (
            folder / f"{slug}_{label}.mov",
            folder / f"{slug}_{label}_proxy.mp4",
            self.out / ".work" / slug / label,
        )

    def conformed_path(self, timeline: TimelineRecord) -> Path:
        """Where a cut's conformed OTIO goes: one file per timeline, so cuts share a folder."""
        return self.out / "conformed" / f"{timeline.slug or f'cut_{timeline.id}'}.otio"
