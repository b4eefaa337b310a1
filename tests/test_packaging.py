"""What a non-editable install ships: every package folder, and every entry point importable.

The tests run on an editable install, where a package missing from pyproject.toml's list still
imports from the working tree; a farm worker installed from a wheel would fail on it instead.
"""

from __future__ import annotations

import importlib
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_folders() -> dict[str, Path]:
    """Installed package name -> folder, for every folder with an __init__.py."""
    mapping = PROJECT["tool"]["setuptools"]["package-dir"]
    roots = {name: ROOT / folder for name, folder in mapping.items() if name}
    roots["studio_nova"] = ROOT / "studio_nova"
    found = {}
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found[".".join((name, *parts))] = init.parent
    return found


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(PROJECT["tool"]["setuptools"]["packages"])
    missing = sorted(set(_package_folders()) - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(listed - set(_package_folders()))
    assert not stale, f"listed in pyproject.toml but no such package folder: {stale}"


def test_every_entry_point_and_the_console_script_resolve():
    targets = [PROJECT["project"]["scripts"]["studio-nova"]]
    for group, points in PROJECT["project"]["entry-points"].items():
        registered = {ep.name for ep in entry_points(group=group)}
        assert set(points) <= registered, f"reinstall: {group} lacks {set(points) - registered}"
        targets += points.values()
    for target in targets:
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), target
