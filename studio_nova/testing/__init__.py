"""Test helpers for studio-nova and its plugins: the editor conformance suite, tiny models."""

from studio_nova.testing.editor_conformance import (
    ConformanceError,
    ConformanceReport,
    conformance_keyframes,
    conformance_region,
    run_editor_conformance,
)

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "conformance_keyframes",
    "conformance_region",
    "run_editor_conformance",
]
