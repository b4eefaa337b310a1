"""Plugin discovery through entry points (`studio_nova.editors`, `studio_nova.propagators`,
`studio_nova.mattes`, `studio_nova.backgrounds`).

First-party plugins are registered in pyproject.toml exactly like third-party ones. A plugin that
fails to import is reported (by `available()`) and skipped; asking for it by name raises a
PluginError that carries the import failure so the person knows what to install or fix.

Settings reach a plugin class through an optional classmethod ``from_settings(cls, settings,
**options)``: `load_plugin(group, name, settings=..., **options)` calls it when the class has one
(else ``cls(**options)``), so a plugin never reads the environment itself. A plugin whose output
depends on settings may also say which options it draws from them with the classmethod
``settings_options(cls, settings) -> dict``; for propagators those options are part of a render's
identity (`settings_options` below).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from studio_nova.errors import PluginError

if TYPE_CHECKING:
    from studio_nova.config import Settings

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


def plugin_class(group: str, name: str) -> Any:
    """The class plugin `name` of `group` names (not instantiated)."""
    eps = _entry_points(group)
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise PluginError(f"unknown {_kind(group)} {name!r}; installed: {known}")
    try:
        return eps[name].load()
    except Exception as exc:
        raise PluginError(
            f"{_kind(group)} {name!r} ({eps[name].value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc


def load_plugin(group: str, name: str, settings: Settings | None = None, **options: Any) -> Any:
    """Instantiate plugin `name` of `group` with `options`: through its ``from_settings(settings,
    **options)`` when settings are given and the class has one, else as ``cls(**options)``."""
    cls = plugin_class(group, name)
    try:
        if settings is not None and callable(getattr(cls, "from_settings", None)):
            return cls.from_settings(settings, **options)
        return cls(**options)
    except TypeError as exc:
        raise PluginError(f"{_kind(group)} {name!r} does not accept options {sorted(options)}: {exc}") from exc


def settings_options(group: str, name: str, settings: Settings) -> dict[str, Any]:
    """The options plugin `name` of `group` draws from `settings` (its ``settings_options``), or
    {} when it declares none. A plugin that is not installed or does not import also gives {}:
    loading it (`load_plugin`) is where that is reported."""
    try:
        cls = plugin_class(group, name)
    except PluginError:
        return {}
    declared = getattr(cls, "settings_options", None)
    return dict(declared(settings)) if callable(declared) else {}


def _kind(group: str) -> str:
    return group.rsplit(".", 1)[-1].rstrip("s")


def load_editor(name: str, settings: Settings | None = None, **options: Any) -> Any:
    return load_plugin(EDITORS, name, settings, **options)


def load_propagator(name: str, settings: Settings | None = None, **options: Any) -> Any:
    return load_plugin(PROPAGATORS, name, settings, **options)
