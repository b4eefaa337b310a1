"""The live display of an in-process run, on stderr: shots done of the cut, the current shot's
chunks and frames, frames rendered per second and the time left.

It is a `studio_nova.workflow.run.RunObserver`: the library reports plain events (`RenderProgress`)
and never draws; only `studio_nova.app` imports rich. Drawn only while stderr is a terminal, so
scripts, pipes and tests see exactly what they saw before.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.text import Text

from studio_nova.render.shot import RenderProgress

FIELDS: dict[str, Any] = {"counts": "", "rate": "", "finish_at": None}


class TimeLeft(ProgressColumn):
    """Counts down to the finish that the render's speed so far predicts."""

    def render(self, task: Task) -> Text:
        finish = task.fields.get("finish_at")
        if finish is None or task.finished:
            return Text("")
        left = max(0, round(finish - time.monotonic()))
        return Text(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left", style="progress.remaining")


class RunDisplay:
    """Two rows while a cut runs: `shots` (done of the cut) and the current shot (its chunks and
    frames, frames/s, time left); each finished shot leaves one line above them."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}", style="progress.data.speed"), TimeLeft(),
            console=console, transient=True, redirect_stdout=False,
        )
        self._shots: TaskID | None = None
        self._shot: TaskID | None = None
        self._done = self._total = 0
        self._start: tuple[float, int] | None = None  # (time, frames done) when this shot's render began
        self._rate: float | None = None
        self._rendered = 0

    def __enter__(self) -> RunDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def shot_started(self, shot: str, index: int, shots: int) -> None:
        if self._shots is None:
            self._shots = self.progress.add_task("shots", total=shots, **FIELDS)
        self._done, self._total = index, shots
        self.progress.update(self._shots, completed=index, counts=f"{index}/{shots} shots")
        self._new_shot(shot)

    def _new_shot(self, shot: str) -> None:
        self._shot = self.progress.add_task(shot, total=None, **dict(FIELDS, counts="keyframes"))
        self._start, self._rate, self._rendered = None, None, 0
        self.progress.refresh()

    def render_progress(self, event: RenderProgress) -> None:
        now = time.monotonic()
        if self._shot is None:  # used with `workflow.render` alone, without `run_cut`'s shot events
            self._new_shot(event.shot)
        if self._start is None:
            self._start = (now, event.frames_done)
        started, before = self._start
        self._rendered = event.frames_done - before
        self._rate = self._rendered / (now - started) if self._rendered > 0 and now > started else None
        left = event.frames_total - event.frames_done
        self.progress.update(
            self._shot,
            total=event.frames_total,
            completed=event.frames_done,
            counts=f"chunks {event.chunk_index}/{event.chunks}  frames {event.frames_done}/{event.frames_total}",
            rate=f"{self._rate:.1f} frames/s" if self._rate else "",
            finish_at=now + left / self._rate if self._rate else None,
        )
        self.progress.refresh()

    def shot_finished(self, shot: str, status: str) -> None:
        line = Text(f"{shot}: ").append(status, style="bold red" if status == "failed" else "")
        if self._rate:
            line.append(f" ({self._rendered} frames at {self._rate:.1f} frames/s)")
        self.progress.console.print(line)
        if self._shot is not None:
            self.progress.remove_task(self._shot)
            self._shot = None
        if self._shots is not None:
            self._done += 1
            self.progress.update(self._shots, completed=self._done, counts=f"{self._done}/{self._total} shots")
        self.progress.refresh()


def stderr_console() -> Console:
    return Console(stderr=True)


@contextmanager
def run_display(*, enabled: bool = True, console: Console | None = None) -> Iterator[RunDisplay | None]:
    """A `RunDisplay` on stderr while it is a terminal (and `enabled`); None otherwise."""
    console = console or stderr_console()
    if not enabled or not console.is_terminal:
        yield None
        return
    with RunDisplay(console) as display:
        yield display
