"""NOVA model classes (torch, diffusers). Imported lazily so `studio_nova` works without them."""

from __future__ import annotations

from typing import Any

__all__ = ["NovaTransformer3DModel", "NovaCrossAttention", "NovaDenseCache", "init_tiny"]


def __getattr__(name: str) -> Any:
    if name in ("NovaTransformer3DModel", "NovaCrossAttention", "NovaDenseCache"):
        from studio_nova.models import nova_transformer

        return getattr(nova_transformer, name)
    if name == "init_tiny":
        from studio_nova.models.tiny import init_tiny

        return init_tiny
    raise AttributeError(f"module 'studio_nova.models' has no attribute {name!r}")
