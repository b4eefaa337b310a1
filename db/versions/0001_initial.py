"""The first schema: timelines, shots, edit requests, keyframes, reviews, renders, chunks.

Written out in full (not imported from the models) so that this revision stays what it was when
later revisions change the models.

Revision ID: 0001
Revises:
Created: 2026-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHOT_STATUSES = (
    "ingested", "keyframes_ready", "in_review", "approved", "rejected",
    "rendering", "rendered", "conformed", "failed",
)
RENDER_STATUSES = ("rendering", "complete", "failed")
CHUNK_STATUSES = ("pending", "running", "done", "failed")
DECISIONS = ("approved", "rejected")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _time(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _shot_fk() -> sa.Column:
    return sa.Column("shot_id", sa.Integer(), nullable=False)


def _shot_fk_constraint(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["shot_id"], ["shots.id"], name=op.f(f"fk_{table}_shot_id_shots"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "timelines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timelines")),
        sa.UniqueConstraint("path", name=op.f("uq_timelines_path")),
    )
    op.create_table(
        "shots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("timeline_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("media", sa.Text(), nullable=False),
        sa.Column("first_frame", sa.Integer(), nullable=False),
        sa.Column("last_frame", sa.Integer(), nullable=False),
        sa.Column("rate_num", sa.Integer(), nullable=False),
        sa.Column("rate_den", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bit_depth", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("edit_version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        _time("claimed_at", nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shots")),
        sa.UniqueConstraint("timeline_id", "key", name=op.f("uq_shots_timeline_id_key")),
        sa.CheckConstraint(_in("status", SHOT_STATUSES), name=op.f("ck_shots_status")),
        sa.CheckConstraint(
            "first_frame >= 0 AND last_frame >= first_frame", name=op.f("ck_shots_frame_range")
        ),
        sa.CheckConstraint("rate_num > 0 AND rate_den > 0", name=op.f("ck_shots_rate")),
        sa.ForeignKeyConstraint(
            ["timeline_id"], ["timelines.id"],
            name=op.f("fk_shots_timeline_id_timelines"), ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_shots_status"), "shots", ["status"])
    op.create_table(
        "edit_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        _shot_fk(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("media", sa.Text(), nullable=False),
        sa.Column("first_frame", sa.Integer(), nullable=False),
        sa.Column("last_frame", sa.Integer(), nullable=False),
        sa.Column("edit", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edit_requests")),
        sa.UniqueConstraint("shot_id", "version", name=op.f("uq_edit_requests_shot_id_version")),
        _shot_fk_constraint("edit_requests"),
    )
    op.create_table(
        "keyframes",
        sa.Column("id", sa.Integer(), nullable=False),
        _shot_fk(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("edit_version", sa.Integer(), nullable=False),
        sa.Column("source_frame", sa.Integer(), nullable=False),
        sa.Column("original_path", sa.Text(), nullable=False),
        sa.Column("edited_path", sa.Text(), nullable=False),
        sa.Column("mask_path", sa.Text(), nullable=True),
        sa.Column("editor", sa.String(255), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyframes")),
        sa.UniqueConstraint(
            "shot_id", "version", "source_frame",
            name=op.f("uq_keyframes_shot_id_version_source_frame"),
        ),
        _shot_fk_constraint("keyframes"),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        _shot_fk(),
        sa.Column("keyframe_version", sa.Integer(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("new_instruction", sa.Text(), nullable=True),
        sa.Column("new_seed", sa.BigInteger(), nullable=True),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.CheckConstraint(_in("decision", DECISIONS), name=op.f("ck_reviews_decision")),
        _shot_fk_constraint("reviews"),
    )
    op.create_index(op.f("ix_reviews_shot_id"), "reviews", ["shot_id"])
    op.create_table(
        "renders",
        sa.Column("id", sa.Integer(), nullable=False),
        _shot_fk(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("edit_version", sa.Integer(), nullable=False),
        sa.Column("codec", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("proxy_path", sa.Text(), nullable=True),
        sa.Column("qc", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at"),
        _time("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renders")),
        sa.UniqueConstraint("shot_id", "version", name=op.f("uq_renders_shot_id_version")),
        sa.CheckConstraint(_in("status", RENDER_STATUSES), name=op.f("ck_renders_status")),
        _shot_fk_constraint("renders"),
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("render_id", sa.Integer(), nullable=False),
        _shot_fk(),
        sa.Column("render_version", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("first_frame", sa.Integer(), nullable=False),
        sa.Column("last_frame", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunks")),
        sa.UniqueConstraint("render_id", "index", name=op.f("uq_chunks_render_id_index")),
        sa.CheckConstraint(_in("status", CHUNK_STATUSES), name=op.f("ck_chunks_status")),
        sa.CheckConstraint(
            "first_frame >= 0 AND last_frame >= first_frame", name=op.f("ck_chunks_frame_range")
        ),
        sa.ForeignKeyConstraint(
            ["render_id"], ["renders.id"],
            name=op.f("fk_chunks_render_id_renders"), ondelete="CASCADE",
        ),
        _shot_fk_constraint("chunks"),
    )
    op.create_index(op.f("ix_chunks_shot_id"), "chunks", ["shot_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_chunks_shot_id"), table_name="chunks")
    op.drop_table("chunks")
    op.drop_table("renders")
    op.drop_index(op.f("ix_reviews_shot_id"), table_name="reviews")
    op.drop_table("reviews")
    op.drop_table("keyframes")
    op.drop_table("edit_requests")
    op.drop_index(op.f("ix_shots_status"), table_name="shots")
    op.drop_table("shots")
    op.drop_table("timelines")
