"""Which keyframe editors are installed and ready to run (`studio-nova editors list --json`).

An editor is ready when its plugin imports and, if it needs something outside the package (model
weights, a service), its `readiness()` says it is there. `readiness()` is optional in the editor
contract (docs/editors.md): a classmethod or staticmethod returning `(ready, reason)`, taking the
run's settings as its one argument (`readiness(settings)`: where the weights folders are) or no
argument at all; it must be cheap (look at files, never load a model or reach the network).
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any

from studio_nova.config import Settings, load_settings
from studio_nova.plugin_api.registry import EDITORS


def editor_statuses(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every registered editor, sorted by name, as JSON-able dicts, judged against `settings`
    (built from the environment with `load_settings()` when none are given).

    Keys: ``name``, ``target`` (the entry point), ``loadable``, ``ready``, ``reason`` (None
    when ready), ``description`` (the first line of the class docstring, or "").
    """
    return plugin_statuses(EDITORS, settings)


def plugin_statuses(group: str, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every plugin registered in `group` (editors, mattes, backgrounds, …), as `editor_statuses`
    describes; the same optional `readiness()` contract holds for every group."""
    settings = settings if settings is not None else load_settings()
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
        status["ready"], status["reason"] = _readiness(cls, settings)
        out.append(status)
    return out


def _readiness(cls: Any, settings: Settings) -> tuple[bool, str | None]:
    check = getattr(cls, "readiness", None)
    if check is None:
        return True, None
    try:
        answer = check(settings) if _takes_an_argument(check) else check()
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


def _takes_an_argument(check: Any) -> bool:
    """Whether `readiness` takes the settings (one positional parameter) or nothing."""
    try:
        parameters = inspect.signature(check).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in kinds for p in parameters)


def format_statuses(statuses: list[dict[str, Any]]) -> str:
    """The human table for `studio-nova editors list` without --json."""
    width = max((len(s["name"]) for s in statuses), default=4)
    lines = []
    for s in statuses:
        state = "ready" if s["ready"] else f"not ready: {s['reason']}"
        lines.append(f"{s['name']:<{width}}  {state}")
    return "\n".join(lines) if lines else "no editors installed"
