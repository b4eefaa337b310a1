"""Background replacement: the edit kind ``background`` (DESIGN section 1, Sparkle's decoupled
guidance).

A request names where the new background comes from (a still, a plate video, a generator: the
``studio_nova.plugin_api.backgrounds`` plugins) and where the foreground matte comes from (the source's alpha,
a matte file, a chroma key, a segmentation model: the ``studio_nova.plugin_api.mattes`` plugins). Each frame is
then made from two signals that never mix until the end: the subject from the source frame (its
motion is the source's), the background from the background source's frame for the same moment
(its motion is the plate's), fused along the matte by `studio_nova.media.compositing`.

In an OTIO clip's metadata::

    {"studio_nova": {"edit": {
        "kind": "background",
        "instruction": "harbour at dusk behind the presenter",      # optional
        "background": {"source": "plate", "params": {"video": "plates/harbour.mov", "loop": "pingpong"}},
        "matte": {"source": "chroma", "params": {"screen": "green"}},  # optional, chroma by default
        "composite": {"light_wrap": 0.2}                               # optional CompositeOptions
    }}}

Relative paths in params (keys in `PATH_PARAMS`) resolve against the timeline file's folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from studio_nova.errors import EditRequestError
from studio_nova.media.compositing import CompositeOptions

DEFAULT_INSTRUCTION = "replace the background"
PATH_PARAMS = ("image", "video", "path", "model_dir", "t2i_dir", "i2v_dir")
_REQUEST_KEYS = {"kind", "instruction", "editor", "seed", "background", "matte", "composite"}
_EXAMPLE = '{"source": "plate", "params": {"video": "plates/harbour.mov"}}'


def _source_entry(value: Any, what: str, default: str | None, base_dir: Path | None) -> tuple[str, dict[str, Any]]:
    if value is None and default is not None:
        return default, {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict like {_EXAMPLE}, got {value!r}")
    unknown = sorted(set(value) - {"source", "params"})
    if unknown:
        raise ValueError(f"unknown keys {unknown} in {what}; it takes source and params, e.g. {_EXAMPLE}")
    source = value.get("source", default)
    if not isinstance(source, str) or not source:
        raise ValueError(f"{what}.source must name a plugin, e.g. {_EXAMPLE}, got {source!r}")
    params = value.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{what}.params must be a dict, got {params!r}")
    return source, {k: _resolve(v, base_dir) if k in PATH_PARAMS else v for k, v in params.items()}


def _resolve(value: Any, base_dir: Path | None) -> Any:
    if not isinstance(value, str) or base_dir is None or "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


@dataclass(frozen=True)
class BackgroundRequest:
    """A parsed, validated background replacement request."""

    background: str
    background_params: dict[str, Any]
    matte: str
    matte_params: dict[str, Any]
    options: CompositeOptions
    base_dir: str | None = None

    @classmethod
    def parse(cls, edit: Mapping[str, Any], base_dir: Path | None = None) -> "BackgroundRequest":
        """From the clip's ``studio_nova.edit`` dict; ValueError says what is wrong and how to say it."""
        unknown = sorted(set(edit) - _REQUEST_KEYS)
        if unknown:
            raise ValueError(f"unknown keys {unknown} in a background replacement; allowed: {sorted(_REQUEST_KEYS)}")
        if "background" not in edit:
            raise ValueError(f"a background replacement needs background, e.g. {_EXAMPLE}")
        background, bg_params = _source_entry(edit["background"], "background", None, base_dir)
        matte, matte_params = _source_entry(edit.get("matte"), "matte", "chroma", base_dir)
        options = _options(edit.get("composite") or {})
        return cls(background, bg_params, matte, matte_params, options, str(base_dir) if base_dir else None)

    def to_params(self) -> dict[str, Any]:
        """The `background` editor's params (what the store records for the shot)."""
        return {
            "background": {"source": self.background, "params": self.background_params},
            "matte": {"source": self.matte, "params": self.matte_params},
            "composite": {k: v for k, v in asdict(self.options).items()},
            "base_dir": self.base_dir,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "BackgroundRequest":
        try:
            base = params.get("base_dir")
            return cls.parse(
                {k: params[k] for k in ("background", "matte", "composite") if k in params},
                Path(base) if base else None,
            )
        except ValueError as exc:
            raise EditRequestError(f"background replacement: {exc}") from None


def _options(value: Any) -> CompositeOptions:
    if not isinstance(value, Mapping):
        raise ValueError(f"composite must be a dict of options, got {value!r}")
    known = {f.name for f in fields(CompositeOptions)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown composite options {unknown}; known: {sorted(known)}")
    try:
        return CompositeOptions(**dict(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"composite: {exc}") from None
