"""The store: one class over SQLAlchemy that records everything a step produces.

Every call opens its own session and returns frozen records, never live ORM objects, so a record
can cross threads, Prefect tasks or a JSON dump without dragging a session along. Writes that read
before they write (claims, version numbers, lifecycle checks) are serialised: on SQLite by opening
the transaction with `BEGIN IMMEDIATE`, on PostgreSQL by row locks (`FOR UPDATE`, `SKIP LOCKED`
for the farm's claims). That is what makes a rerun, or a second worker, safe.

`Store` is put together here from its parts, one module per concern, all built on `StoreCore`
(`core.py`: transactions, row lookups, the lifecycle step):
- `shots.py`: timelines, shots, edit requests and status changes;
- `leases.py`: the render leases by which a farm's workers share out shots;
- `reviews.py`: keyframe versions and the reviews that decide on them;
- `renders.py`: render versions; `chunks.py`: their chunks and the farm's chunk claims.
What goes in is checked in `inputs.py`; what comes out is a record of `records.py`. Opening a
store means an engine (`engine.py`) and a schema at head (`migrations.py`).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from studio_nova.store.chunks import ChunksMixin
from studio_nova.store.engine import create_store_engine
from studio_nova.store.leases import LeasesMixin
from studio_nova.store.migrations import upgrade_to_head
from studio_nova.store.renders import RendersMixin
from studio_nova.store.reviews import ReviewsMixin
from studio_nova.store.shots import ShotsMixin

DEFAULT_STALE_AFTER = timedelta(hours=1)
DEFAULT_MAX_ATTEMPTS = 3


class Store(ShotsMixin, LeasesMixin, ReviewsMixin, RendersMixin, ChunksMixin):
    """The pipeline's memory. Open with `Store.open(url)`; safe to share between threads."""

    @classmethod
    def open(
        cls,
        url: str | URL,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        echo: bool = False,
    ) -> Store:
        """Connect, create or upgrade the schema, and return a ready store.

        `stale_after`: how long a claim holds before another worker may take it over: a running
        chunk's, and a shot lease's when the claim names no lease of its own. `max_attempts`: a chunk claimed this many times is not handed out again.
        """
        if stale_after < timedelta(0):
            raise ValueError(f"stale_after must not be negative, got {stale_after}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 (or None), got {max_attempts}")
        engine = create_store_engine(url, echo=echo)
        try:
            upgrade_to_head(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, stale_after=stale_after, max_attempts=max_attempts)

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The underlying engine, for admin tools and tests that need plain SQL."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"
