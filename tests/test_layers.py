"""Imports run downhill: the layers of README "Architecture", checked on every module's source.

Each installed package module is given a layer; a module may import only from its own layer or
those below it. Imports inside functions count too (a lazy import is still a dependency), and so
do third-party frameworks that belong to one layer only (Prefect to the flows, typer / rich to the
application). A new sub-package must be placed in a layer here, or this test fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {  # installed name -> folder in the repository
    "studio_nova": ROOT / "studio_nova",
    "studio_nova_plugins": ROOT / "plugins",
    "studio_nova_flows": ROOT / "flows",
    "studio_nova_benchmarks": ROOT / "benchmarks",
    "studio_nova_migrations": ROOT / "db",
}
# Lowest first. A module belongs to the longest prefix listed.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("studio_nova", "studio_nova.errors", "studio_nova.config", "studio_nova.atomic")),
    ("domain", (
        "studio_nova.media", "studio_nova.cut", "studio_nova.store", "studio_nova_migrations",
        "studio_nova.models", "studio_nova.pipelines", "studio_nova.training", "studio_nova.footage",
    )),
    ("plugin contracts", ("studio_nova.plugin_api",)),
    ("domain steps", ("studio_nova.render", "studio_nova.workflow")),
    ("first-party plugins", ("studio_nova_plugins",)),
    ("application", ("studio_nova.app", "studio_nova.testing", "studio_nova_benchmarks")),
    ("flows", ("studio_nova_flows",)),
]
# Frameworks that only one layer may import (and everything above it).
FRAMEWORKS = {"prefect": "flows", "typer": "application", "rich": "application"}
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), name)
    return best[1] if best else None


def modules() -> list[tuple[str, Path]]:
    found = []
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join((package, *parts)), path))
    return found


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from studio_nova import workflow` imports the sub-package workflow
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            out.append((node.lineno, target))
    return out


def target_layer(name: str) -> str | None:
    top = name.split(".")[0]
    if top in FRAMEWORKS:
        return FRAMEWORKS[top]
    if top not in PACKAGES:
        return None  # standard library or another third-party package
    # `from studio_nova import x` names x; the longest known prefix decides
    return layer_of(name)


def violations() -> list[str]:
    problems = []
    for module, path in modules():
        own = layer_of(module)
        if own is None:
            problems.append(f"{path.relative_to(ROOT)}: {module} is in no layer; place it in tests/test_layers.py")
            continue
        for line, name in imported(module, path):
            layer = target_layer(name)
            if layer is not None and RANK[layer] > RANK[own]:
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} ({own}) imports {name} ({layer}), a layer above it"
                )
    return sorted(set(problems))


def test_every_import_runs_downhill_through_the_layers():
    problems = violations()
    assert not problems, "imports that run uphill:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "module, name, expect_problem",
    [
        ("studio_nova.cut.ingest", "studio_nova.workflow", True),
        ("studio_nova.workflow.render", "prefect", True),
        ("studio_nova.app.runner", "studio_nova_flows.run", True),
        ("studio_nova_plugins.editors.recolor", "studio_nova.app.cli", True),
        ("studio_nova.plugin_api.registry", "studio_nova.errors", False),
        ("studio_nova_flows.run", "studio_nova.workflow", False),
        ("studio_nova.app.cli", "typer", False),
    ],
)
def test_the_check_flags_an_import_that_runs_uphill(module, name, expect_problem):
    """The rule itself, on known cases: without this, a broken `layer_of` would pass everything."""
    layer = target_layer(name)
    uphill = layer is not None and RANK[layer] > RANK[layer_of(module)]
    assert uphill is expect_problem


def test_the_domain_names_no_orchestrator_and_no_first_party_plugin():
    """The design's promise in plain words: a studio on another orchestrator can use the library."""
    for module, path in modules():
        if layer_of(module) in ("application", "flows", "first-party plugins"):
            continue
        for line, name in imported(module, path):
            assert name.split(".")[0] not in ("prefect", "typer", "rich", "studio_nova_plugins", "studio_nova_flows"), (
                f"{path.relative_to(ROOT)}:{line} imports {name}"
            )
