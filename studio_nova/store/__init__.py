"""The pipeline's store: SQLite by default, PostgreSQL for a studio or farm (see DESIGN.md §5)."""

from studio_nova.store.engine import safe_url
from studio_nova.store.inputs import KeyframeFile
from studio_nova.store.records import (
    ChunkRecord,
    EditRequestRecord,
    KeyframeRecord,
    RenderRecord,
    ReviewRecord,
    ShotRecord,
    TimelineRecord,
)
from studio_nova.store.store import Store
from studio_nova.store.tables import (
    ALLOWED_TRANSITIONS,
    ChunkStatus,
    RenderStatus,
    ReviewDecision,
    ShotStatus,
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
