"""Plugin discovery through entry points (`studio_nova.editors`, `studio_nova.propagators`,
`studio_nova.mattes`, `studio_nova.backgrounds`).

First-party plugins are registered in pyproject.toml exactly like third-party ones. A plugin that
fails to import is reported (by `available()`) and skipped; asking for it by name raises a
PluginError that carries the import failure so the person knows what to install or fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from studio_nova.errors import PluginError

EDITORS = "studio_nova.editors"
PROPAGATORS = "studio_nova.propagators"
MATTES = "studio_nova.mattes"
BACKGROUNDS = "studio_nova.backgrounds"


@dataclass(frozen=True)
class PluginStatus:
    group: str
    name: str
    target: str
    loadable: bool
    error: str | None = None


def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def available(group: str) -> list[PluginStatus]:
    """Every plugin registered in `group`, with whether it imports."""
    out = []
    for name, ep in sorted(_entry_points(group).items()):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin is reported, not fatal
            out.append(PluginStatus(group, name, ep.value, False, f"{type(exc).__name__}: {exc}"))
        else:
            out.append(PluginStatus(group, name, ep.value, True))
    return out


def load_plugin(group: str, name: str, **options: Any) -> Any:
    """Instantiate plugin `name` of `group` with `options`."""
    eps = _entry_points(group)
    kind = group.rsplit(".", 1)[-1].rstrip("s")
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise PluginError(f"unknown {kind} {name!r}; installed: {known}")
    try:
        cls = eps[name].load()
    except Exception as exc:
        raise PluginError(
            f"{kind} {name!r} ({eps[name].value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return cls(**options)
    except TypeError as exc:
        raise PluginError(f"{kind} {name!r} does not accept options {sorted(options)}: {exc}") from exc


def load_editor(name: str, **options: Any) -> Any:
    return load_plugin(EDITORS, name, **options)


def load_propagator(name: str, **options: Any) -> Any:
    return load_plugin(PROPAGATORS, name, **options)
