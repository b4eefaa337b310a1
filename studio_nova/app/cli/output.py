"""What every command shares: `--json` on stdout, rich tables for people, errors on stderr.

`--json` writes exactly one JSON document with `json.dump` (never through rich, so no markup,
colour or wrapping can reach it); human output goes through a rich console; progress and logs go
to stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Sequence

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.table import Column, Table
from rich.text import Text

from studio_nova.config import Settings, load_settings
from studio_nova.errors import StudioNovaError
from studio_nova.media.ffmpeg_bin import configure_ffmpeg

PIPE_WIDTH = 1000  # a table piped to a file or another program is never wrapped
STATUS_STYLES = {
    "conformed": "green", "rendered": "green", "approved": "green", "ready": "green",
    "in_review": "yellow", "rendering": "cyan", "failed": "bold red", "not ready": "red", "skipped": "red",
}


@dataclass
class Session:
    """One `main()` call: whether the command asked for JSON (its error is then JSON too)."""

    json: bool = False


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


def report_error(exc: StudioNovaError, session: Session) -> int:
    """Nothing could run: the error as JSON on stdout (with --json) and a line on stderr."""
    if session.json:
        write_json({"error": exc.to_dict()})
    print(f"studio-nova: error: {exc}", file=sys.stderr)
    return 1


def run_settings() -> Settings:
    """The command's settings, built once from the environment at the edge, with the process-wide
    ffmpeg they name configured before any media is touched."""
    settings = load_settings()
    configure_ffmpeg(settings.ffmpeg)
    return settings
