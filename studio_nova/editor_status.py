"""Which keyframe editors are installed and ready to run (`studio-nova editors list --json`).

An editor is ready when its plugin imports and, if it needs something outside the package (model
weights, a service), its `readiness()` says it is there. `readiness()` is optional in the editor
contract (docs/editors.md): a classmethod or staticmethod taking no arguments and returning
`(ready, reason)`; it must be cheap (look at files, never load a model or reach the network).
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any

from studio_nova.plugins import EDITORS


def editor_statuses() -> list[dict[str, Any]]:
    """Every registered editor, sorted by name, as JSON-able dicts.

    Keys: ``name``, ``target`` (the entry point), ``loadable``, ``ready``, ``reason`` (None
    when ready), ``description`` (the first line of the class docstring, or "").
    """
    return plugin_statuses(EDITORS)


def plugin_statuses(group: str) -> list[dict[str, Any]]:
    """Every plugin registered in `group` (editors, mattes, backgrounds, …), as `editor_statuses`
    describes; the same optional `readiness()` contract holds for every group."""
    out = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        status: dict[str, Any] = {"name": ep.name, "target": ep.value, "description": ""}
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin is reported, not fatal
            status.update(loadable=False, ready=False, reason=f"failed to import: {type(exc).__name__}: {exc}")
            out.append(status)
            continue
        status["loadable"] = True
        status["description"] = (inspect.getdoc(cls) or "").split("\n", 1)[0]
        status["ready"], status["reason"] = _readiness(cls)
        out.append(status)
    return out


def _readiness(cls: Any) -> tuple[bool, str | None]:
    check = getattr(cls, "readiness", None)
    if check is None:
        return True, None
    try:
        answer = check()
    except Exception as exc:  # the check itself failing is a reason, not a crash of `editors list`
        return False, f"readiness check failed: {type(exc).__name__}: {exc}"
    if (
        not isinstance(answer, tuple)
        or len(answer) != 2
        or not isinstance(answer[0], bool)
        or not (answer[1] is None or isinstance(answer[1], str))
    ):
        return False, f"readiness() returned {answer!r}; the contract is (ready: bool, reason: str | None)"
    ready, reason = answer
    return ready, (None if ready else reason or "not ready (no reason given)")


def format_statuses(statuses: list[dict[str, Any]]) -> str:
    """The human table for `studio-nova editors list` without --json."""
    width = max((len(s["name"]) for s in statuses), default=4)
    lines = []
    for s in statuses:
        state = "ready" if s["ready"] else f"not ready: {s['reason']}"
        lines.append(f"{s['name']:<{width}}  {state}")
    return "\n".join(lines) if lines else "no editors installed"
