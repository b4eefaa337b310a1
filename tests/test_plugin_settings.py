"""Settings are built once at the edge and passed down: the plugin contexts carry them, the
registry builds a plugin with `from_settings`, and nothing below the edge reads the environment."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_pipeline import H, W, _clip, _timeline, _write

from studio_nova import workflow
from studio_nova.config import Settings
from studio_nova.errors import ConfigError, PluginError
from studio_nova.plugin_api import registry
from studio_nova.plugin_api.editing import EditContext
from studio_nova.testing import conformance_keyframes
from studio_nova.workflow import editor_status
from studio_nova.workflow.editor_status import plugin_statuses
from studio_nova_plugins.editors.recolor import RecolorEditor


class _EntryPoint:
    def __init__(self, name: str, cls: type) -> None:
        self.name, self.cls, self.value = name, cls, f"tests:{cls.__name__}"

    def load(self) -> type:
        return self.cls


class _Plain:
    def __init__(self, **options: Any) -> None:
        self.options = options


class _Configured:
    def __init__(self, **options: Any) -> None:
        self.options = options

    @classmethod
    def settings_options(cls, settings: Settings) -> dict[str, Any]:
        return {"steps": settings.nova_steps}

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> "_Configured":
        return cls(**{**cls.settings_options(settings), **options})

    @classmethod
    def readiness(cls, settings: Settings) -> tuple[bool, str | None]:
        return (settings.nova_steps == 3, None if settings.nova_steps == 3 else "needs 3 steps")


class _NoArgReadiness:
    @classmethod
    def readiness(cls) -> tuple[bool, str | None]:
        return False, "not today"


@pytest.fixture
def fake_group(monkeypatch: pytest.MonkeyPatch) -> str:
    """An entry-point group of test plugins, seen by the registry and by `plugin_statuses`."""
    name = "studio_nova.tests"
    plugins = {"plain": _Plain, "configured": _Configured, "noarg": _NoArgReadiness}
    fakes = [_EntryPoint(key, cls) for key, cls in plugins.items()]
    real, real_status = registry._entry_points, editor_status.entry_points

    def status_entry_points(group: str) -> Any:
        return fakes if group == name else real_status(group=group)

    monkeypatch.setattr(registry, "_entry_points", lambda g: {e.name: e for e in fakes} if g == name else real(g))
    monkeypatch.setattr(editor_status, "entry_points", status_entry_points)
    return name


# --- the registry ------------------------------------------------------------------------------


def test_load_plugin_builds_with_from_settings_when_the_class_has_it(fake_group: str) -> None:
    made = registry.load_plugin(fake_group, "configured", Settings(nova_steps=7), extra=1)
    assert isinstance(made, _Configured) and made.options == {"steps": 7, "extra": 1}
    given = registry.load_plugin(fake_group, "configured", Settings(nova_steps=7), steps=2)
    assert given.options == {"steps": 2}, "options override what the settings give"
    assert registry.load_plugin(fake_group, "configured").options == {}, "no settings: cls(**options)"


def test_load_plugin_falls_back_to_the_constructor_without_from_settings(fake_group: str) -> None:
    made = registry.load_plugin(fake_group, "plain", Settings(), preset="fast")
    assert isinstance(made, _Plain) and made.options == {"preset": "fast"}
    with pytest.raises(PluginError, match="unknown test 'nope'"):
        registry.load_plugin(fake_group, "nope", Settings())


def test_settings_options_are_what_a_plugin_declares(fake_group: str) -> None:
    assert registry.settings_options(fake_group, "configured", Settings(nova_steps=4)) == {"steps": 4}
    assert registry.settings_options(fake_group, "plain", Settings()) == {}
    assert registry.settings_options(fake_group, "nope", Settings()) == {}


def test_readiness_is_judged_against_the_given_settings(fake_group: str) -> None:
    statuses = {s["name"]: s for s in plugin_statuses(fake_group, Settings(nova_steps=3))}
    assert statuses["configured"]["ready"] is True
    assert (statuses["noarg"]["ready"], statuses["noarg"]["reason"]) == (False, "not today")
    statuses = {s["name"]: s for s in plugin_statuses(fake_group, Settings(nova_steps=5))}
    assert (statuses["configured"]["ready"], statuses["configured"]["reason"]) == (False, "needs 3 steps")


# --- first-party plugins -----------------------------------------------------------------------


def test_the_render_identity_keeps_the_propagator_options_it_always_had() -> None:
    from studio_nova.workflow.render import _propagator_options

    settings = Settings(flow_preset="medium", nova_steps=3, nova_seed=9, device="cpu")
    assert _propagator_options(settings, "flow") == {"preset": "medium"}
    assert _propagator_options(settings, "nova") == {
        "base": None, "adapter": None, "steps": 3, "text_scale": 5.0, "keyframe_scale": 1.0,
        "device": "cpu", "offload": False, "window": None, "seed": 9,
    }  # fmt: skip
    assert _propagator_options(settings, "no-such-backend") == {}


def test_nova_takes_its_options_from_the_settings_not_the_environment(tmp_path: Path, monkeypatch) -> None:
    from studio_nova_plugins.propagators.nova import NovaPropagator

    base, adapter = tmp_path / "base", tmp_path / "nova_adapter.safetensors"
    (base / "transformer").mkdir(parents=True)
    (base / "vae").mkdir()
    adapter.write_bytes(b"")
    for name, value in {"NOVA_BASE": "/nowhere", "NOVA_STEPS": "40", "NOVA_SEED": "5", "DEVICE": "cuda"}.items():
        monkeypatch.setenv(f"STUDIO_NOVA_{name}", value)
    settings = Settings(nova_base=str(base), nova_adapter=str(adapter), nova_steps=2, nova_seed=3, device="cpu")
    nova = registry.load_propagator("nova", settings, prompt="a city")
    assert isinstance(nova, NovaPropagator)
    assert (nova.base, nova.adapter, nova.steps, nova.seed, nova.device) == (base, adapter, 2, 3, "cpu")
    assert nova.prompt == "a city"
    with pytest.raises(ConfigError, match="STUDIO_NOVA_NOVA_BASE"):
        NovaPropagator()  # made directly: the settings' defaults, never the environment's /nowhere


def test_a_context_made_without_settings_builds_them_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("STUDIO_NOVA_FLUX_KONTEXT_DIR", "/from/env")
    context = EditContext(shot="s", keyframes=[], instruction="x")
    assert context.settings.flux_kontext_dir == "/from/env"
    given = Settings(flux_kontext_dir="/given")
    assert EditContext(shot="s", keyframes=[], instruction="x", settings=given).settings is given


def test_a_model_editor_reads_its_weights_folder_from_its_settings_else_the_context(tmp_path: Path) -> None:
    from studio_nova_plugins.editors.flux_kontext import FluxKontextEditor

    from_context = Settings(flux_kontext_dir=str(tmp_path / "from-context"))
    context = EditContext("sh010", conformance_keyframes(1), "make it blue", settings=from_context)
    with pytest.raises(ConfigError, match="from-context"):
        FluxKontextEditor().edit(context)
    made_with = registry.load_editor("flux-kontext", Settings(flux_kontext_dir=str(tmp_path / "made-with")))
    with pytest.raises(ConfigError, match="made-with"):
        made_with.edit(context)


# --- through the pipeline ----------------------------------------------------------------------


def test_the_workspace_settings_reach_the_editor_and_the_propagator(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    media = _write(tmp_path / "A001.mov", rng.integers(0, 256, (12, H, W, 3), dtype=np.uint8))
    edit = {"instruction": "red to teal", "editor": "recolor", "params": {"hue_shift": 90}}
    cut = _timeline(tmp_path / "cut.otio", [_clip("sh010", media, 0, 12, edit=edit)])

    seen: dict[str, Any] = {}
    real_edit = RecolorEditor.edit

    def edit(self: RecolorEditor, context: EditContext) -> Any:
        seen["context"] = context.settings
        return real_edit(self, context)

    render_step = importlib.import_module("studio_nova.workflow.render")  # `workflow.render` is the step
    real_load = render_step.load_propagator

    def load(name: str, settings: Settings | None = None, **options: Any) -> Any:
        propagator = real_load(name, settings, **options)
        seen["propagator"] = (settings, propagator)
        return propagator

    monkeypatch.setattr(RecolorEditor, "edit", edit)
    monkeypatch.setattr(render_step, "load_propagator", load)
    monkeypatch.setenv("STUDIO_NOVA_FLOW_PRESET", "medium")  # the workspace's settings win
    ws = workflow.Workspace.open(tmp_path / "out", Settings(flow_preset="ultrafast"))
    try:
        report = workflow.run_cut(ws, cut, auto_approve=True).to_dict()
    finally:
        ws.close()
    assert report["shots"][0]["status"] == "conformed", report["shots"][0].get("error")
    assert seen["context"] is ws.settings
    settings, propagator = seen["propagator"]
    assert settings is ws.settings and propagator.preset == "ultrafast"
