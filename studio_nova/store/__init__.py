"""The pipeline's store: SQLite by default, PostgreSQL for a studio or farm (see DESIGN.md §5)."""

from studio_nova.store.models import (
    ALLOWED_TRANSITIONS,
    ChunkStatus,
    RenderStatus,
    ReviewDecision,
    ShotStatus,
)
from studio_nova.store.store import (
    ChunkRecord,
    EditRequestRecord,
    KeyframeFile,
    KeyframeRecord,
    RenderRecord,
    ReviewRecord,
    ShotRecord,
    Store,
    TimelineRecord,
    safe_url,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "ChunkRecord",
    "ChunkStatus",
    "EditRequestRecord",
    "KeyframeFile",
    "KeyframeRecord",
    "RenderRecord",
    "RenderStatus",
    "ReviewDecision",
    "ReviewRecord",
    "ShotRecord",
    "ShotStatus",
    "Store",
    "TimelineRecord",
    "safe_url",
]
