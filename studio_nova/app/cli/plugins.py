"""`editors list`, `mattes list`, `backgrounds list`: which plugins are installed and ready."""

from __future__ import annotations

from typing import Any, Callable

import typer

from studio_nova.app.cli.output import JsonFlag, emit, status, table


def _statuses(kind: str) -> list[dict[str, Any]]:
    from studio_nova.plugin_api.registry import BACKGROUNDS, EDITORS, MATTES
    from studio_nova.workflow.editor_status import plugin_statuses

    return plugin_statuses({"editors": EDITORS, "mattes": MATTES, "backgrounds": BACKGROUNDS}[kind])


def _lister(kind: str, what: str) -> Callable[..., int]:
    def list_plugins(as_json: JsonFlag = False) -> int:
        statuses = _statuses(kind)
        rows = [(s["name"], status("ready" if s["ready"] else "not ready"), s["description"] if s["ready"] else s["reason"])
                for s in statuses]
        emit(as_json, {kind: statuses}, table(["Name", "State", "Detail"], rows) if rows else f"no {kind} installed")
        return 0

    list_plugins.__doc__ = f"Installed {what} and whether each is ready (weights found)."
    return list_plugins


def _group(kind: str, what: str, summary: str) -> typer.Typer:
    group = typer.Typer(help=summary)
    group.command("list")(_lister(kind, what))
    return group


GROUPS = {
    "editors": _group("editors", "editors", "Keyframe editors."),
    "mattes": _group("mattes", "matte sources", "Matte sources of background replacement."),
    "backgrounds": _group("backgrounds", "background sources", "Background sources of background replacement."),
}
