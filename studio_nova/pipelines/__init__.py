"""NOVA pipelines (torch, diffusers). Imported lazily so `studio_nova` works without them."""

from __future__ import annotations

from typing import Any

__all__ = ["NovaPipeline", "NovaPipelineOutput"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from studio_nova.pipelines import nova_pipeline

        return getattr(nova_pipeline, name)
    raise AttributeError(f"module 'studio_nova.pipelines' has no attribute {name!r}")
