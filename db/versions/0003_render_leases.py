"""Render leases and the chunks' timeline, for a farm of workers.

- `shots.lease_expires_at`: until when the worker in `shots.worker` holds the shot's render
  lease without a heartbeat; once it has passed, another worker may take the shot over and resume
  its render at the first unfinished chunk.
- `chunks.started_at` / `chunks.finished_at`: when a chunk's latest attempt was claimed and when
  it was done, so the morning report (and a test) can tell which worker rendered what, when.

Revision ID: 0003
Revises: 0002
Created: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shots", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("chunks", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("chunks", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("started_at")
    with op.batch_alter_table("shots") as batch:
        batch.drop_column("lease_expires_at")
