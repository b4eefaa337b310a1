"""What every command shares: `--json` on stdout, rich tables for people, errors on stderr.

`--json` writes exactly one JSON document with `json.dump` (never through rich, so no markup,
colour or wrapping can reach it); human output goes through a rich console; progress and logs go
to stderr.

Errors: a `StudioNovaError` that stops a command is reported by `report_error` (with `--json`
`{"error": {...}}` on stdout, one line on stderr, exit status 1); a file-system error nobody
caught by `report_os_error`, and any other exception by `report_internal` (the traceback at
DEBUG, shown with -v). SIGTERM / SIGINT: `main` installs `on_signal`; a command that can stop
gracefully holds a `StopRequest` (`graceful_stop`), any other is interrupted at once
(`SignalReceived`); either way the exit status is 128 + the signal's number.
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Annotated, Any, Iterable, Iterator, Sequence

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.table import Column, Table
from rich.text import Text

from studio_nova.config import Settings, load_settings
from studio_nova.errors import FileAccessError, Interrupted, StudioNovaError
from studio_nova.media.ffmpeg_bin import configure_ffmpeg

log = logging.getLogger("studio_nova.app.cli")

PIPE_WIDTH = 1000  # a table piped to a file or another program is never wrapped
STATUS_STYLES = {
    "conformed": "green", "rendered": "green", "approved": "green", "ready": "green",
    "in_review": "yellow", "rendering": "cyan", "failed": "bold red", "not ready": "red", "skipped": "red",
}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """A graceful stop asked for by a signal: the library checks `is_set()` between chunks (it is
    a `studio_nova.render.shot.StopFlag`); `signum` is the signal that asked."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def request(self, signum: int) -> None:
        self.signum = signum
        self._event.set()


class SignalReceived(KeyboardInterrupt):
    """Raised in the main thread by `on_signal` when the command cannot stop gracefully (or a
    second signal came): like Ctrl-C's KeyboardInterrupt, so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal_name(signum))


@dataclass
class Session:
    """One `main()` call: whether the command asked for JSON (its error is then JSON too), and
    how it is to stop on a signal."""

    json: bool = False
    verbose: bool = False  # -v: tracebacks of internal errors on stderr
    stop: StopRequest | None = None  # while the command can stop gracefully
    signum: int | None = None  # the first signal received
    pending: int | None = None  # a signal that interrupted the command and nobody reported yet

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """SIGTERM / SIGINT: the first asks a graceful stop when the command holds one (the
        render ends at the next chunk boundary); otherwise, or at the second, stop at once."""
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self.stop is not None:
            self.stop.request(signum)
            log.warning("%s received: stopping after the current chunk (finished chunks are kept; "
                        "send it again to stop at once)", signal_name(signum))
            return
        log.warning("%s received: stopping now", signal_name(signum))
        self.pending = signum  # typer turns the interrupt into exit status 130: `main` reports it
        raise SignalReceived(signum)


def received_signal() -> int | None:
    """The signal this command received, if any (None outside `main`)."""
    session = current_session()
    return session.signum if session is not None else None


def interruption_reported() -> None:
    """A command that caught `SignalReceived` and reported it itself says so (`main` then does not)."""
    session = current_session()
    if session is not None:
        session.pending = None


_ACTIVE: list[Session] = []  # the sessions of the `main()` calls under way (the innermost last)


def current_session() -> Session | None:
    """The session of the `main()` call running this command (None outside `main`)."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def graceful_stop(enabled: bool = True) -> Iterator[StopRequest]:
    """While inside, a signal asks this StopRequest to stop (instead of interrupting at once);
    not `enabled`, the StopRequest is only where to note the signal (the command is interrupted)."""
    stop = StopRequest()
    session = current_session()
    if session is None or not enabled:
        yield stop
        return
    session.stop = stop
    try:
        yield stop
    finally:
        session.stop = None


@contextmanager
def signals_handled(session: Session) -> Iterator[None]:
    """`session.on_signal` for SIGTERM and SIGINT while inside (main thread only), then the
    handlers as they were; `current_session()` is `session` meanwhile."""
    _ACTIVE.append(session)
    try:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, session.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        _ACTIVE.remove(session)


def _note_json(ctx: typer.Context, value: bool) -> bool:
    if isinstance(ctx.obj, Session):
        ctx.obj.json = value
    return value


JsonFlag = Annotated[
    bool, typer.Option("--json", help="machine-readable result on stdout", callback=_note_json)
]


def write_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


def emit(as_json: bool, payload: Any, *human: RenderableType | None) -> None:
    """`payload` as JSON with `--json`; else the `human` parts in order (strings printed as they
    are, tables and other renderables through rich; None left out)."""
    if as_json:
        write_json(payload)
        return
    console = stdout_console()
    for part in human:
        if isinstance(part, str):
            print(part)
        elif part is not None:
            console.print(part)


def table(columns: Sequence[str | Column], rows: Iterable[Sequence[Any]]) -> Table:
    """A table whose cells are plain text (never markup: names and paths may hold brackets)."""
    grid = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell)) for cell in row))
    return grid


def number(title: str) -> Column:
    return Column(title, justify="right")


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLES.get(value, ""))


def usage_error(message: str) -> int:
    """A usage problem found after parsing: reported like argparse's, exit status 2."""
    print(f"studio-nova: error: {message}", file=sys.stderr)
    return 2


def report_error(exc: StudioNovaError, session: Session, *, code: int = 1, **extra: Any) -> int:
    """Nothing could run: the error as JSON on stdout (with --json; `extra` beside `error`) and a
    line on stderr; the exit status `code` (1; 128 + signal for an interruption)."""
    if session.json:
        write_json({"error": exc.to_dict(), **extra})
    print(f"studio-nova: error: {exc}", file=sys.stderr)
    return code


def report_interrupted(signum: int, session: Session) -> int:
    """Stopped at once by a signal: exit status 128 + signal, `"interrupted": NAME` in the JSON."""
    name = signal_name(signum)
    exc = Interrupted(f"stopped by {name} before it finished; what finished is kept: run the same command "
                      "again to go on", signal=name)
    return report_error(exc, session, code=128 + signum, interrupted=name)


_OS_HINTS = {
    errno.ENOTDIR: "a part of the path is a file, not a folder; give a path through folders only",
    errno.EISDIR: "it is a folder; give a file",
    errno.EEXIST: "something is already there; move it aside or pick another path",
    errno.ENOENT: "it does not exist (or its folder does not); check the path",
    errno.EACCES: "permission denied; make it readable / writable, or pick another path",
    errno.EPERM: "not permitted; make it writable, or pick another path",
    errno.EROFS: "it is on a read-only file system; pick a path on a writable disk",
    errno.ENOSPC: "the disk is full; free space and run again",
}


def report_os_error(exc: OSError, session: Session) -> int:
    """A file-system error no check caught: which path, why, and what to do, exit status 1."""
    if session.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    else:
        log.debug("file-system error", exc_info=exc)
    why = _OS_HINTS.get(exc.errno, f"{exc.strerror or exc}; check the path and its permissions")
    path = exc.filename if isinstance(exc.filename, str) else None
    error = FileAccessError(f"cannot use this path: {why}" if path else f"a file cannot be used: {why}",
                            path=path, errno=exc.errno)
    return report_error(error, session)


def report_internal(exc: BaseException, session: Session) -> int:
    """A bug (or a broken plugin) stopped the command: one line, the traceback at DEBUG (shown
    with -v), `{"error": {"type": "InternalError", ...}}` with --json, exit status 1."""
    what = f"{type(exc).__name__}: {exc}"
    if session.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    else:
        log.debug("internal error", exc_info=exc)  # kept for any handler that records DEBUG
    if session.json:
        write_json({"error": {"type": "InternalError", "message": f"internal error: {what}",
                              "exception": type(exc).__name__}})
    hint = "" if session.verbose else " (run again with -v to see the traceback)"
    print(f"studio-nova: internal error: {what}{hint}", file=sys.stderr)
    return 1


def run_settings() -> Settings:
    """The command's settings, built once from the environment at the edge, with the process-wide
    ffmpeg they name configured before any media is touched."""
    settings = load_settings()
    configure_ffmpeg(settings.ffmpeg)
    return settings
