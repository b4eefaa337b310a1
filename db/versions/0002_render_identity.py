"""Render identity and store-wide names.

- `renders.identity` / `renders.inputs`: the hash of everything that decides a render's pixels and
  the inputs it was computed from, so a rerun reuses a render only when nothing that matters
  changed, and a changed input makes a new version.
- `shots.render_id`: the render the shot's clip is conformed to (possibly another shot's, when
  two cuts hold the same shot with the same identity).
- `shots.slug` / `timelines.slug`: folder and file names allocated once by the store, unique in
  it whatever the clip and cut names are, so two shots (or two cuts) never share an output path.

Existing rows get their slugs here, in id order, the way earlier versions named them where that
name is still free.

Revision ID: 0002
Revises: 0001
Created: 2026-12-03
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str, fallback: str) -> str:
    # The naming rule of the time this revision was written (studio_nova.cut.naming.safe_name).
    return (_UNSAFE.sub("_", text).strip("._")[:80]) or fallback


def _free(wanted: str, taken: set[str]) -> str:
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted}-{n}", n + 1
    taken.add(name)
    return name


def upgrade() -> None:
    op.add_column("timelines", sa.Column("slug", sa.Text(), nullable=True))
    op.add_column("shots", sa.Column("slug", sa.Text(), nullable=True))
    op.add_column("shots", sa.Column("render_id", sa.Integer(), nullable=True))
    op.add_column("renders", sa.Column("identity", sa.String(64), nullable=True))
    op.add_column("renders", sa.Column("inputs", sa.JSON(), nullable=True))

    connection = op.get_bind()
    taken: set[str] = set()
    for row in connection.execute(sa.text("SELECT id, name FROM timelines ORDER BY id")):
        slug = _free(_safe(row.name, "cut"), taken)
        connection.execute(sa.text("UPDATE timelines SET slug = :s WHERE id = :i"), {"s": slug, "i": row.id})
    shots = list(connection.execute(sa.text("SELECT id, timeline_id, key, name FROM shots ORDER BY id")))
    taken = set()
    for row in shots:
        base = _safe(row.name, "shot")
        same = [s for s in shots if s.timeline_id == row.timeline_id and _safe(s.name, "shot") == base]
        wanted = f"{base}_{_safe(row.key.replace('/', '-'), 'shot')}" if len(same) > 1 else base
        slug = _free(wanted, taken)
        connection.execute(sa.text("UPDATE shots SET slug = :s WHERE id = :i"), {"s": slug, "i": row.id})
    # The render a rendered shot links is its latest complete one (what conform used to pick).
    connection.execute(
        sa.text(
            "UPDATE shots SET render_id = (SELECT r.id FROM renders r WHERE r.shot_id = shots.id "
            "AND r.status = 'complete' ORDER BY r.version DESC LIMIT 1) "
            "WHERE status IN ('rendered', 'conformed')"
        )
    )

    op.create_index(op.f("uq_timelines_slug"), "timelines", ["slug"], unique=True)
    op.create_index(op.f("uq_shots_slug"), "shots", ["slug"], unique=True)
    op.create_index(op.f("ix_renders_identity"), "renders", ["identity"])


def downgrade() -> None:
    op.drop_index(op.f("ix_renders_identity"), table_name="renders")
    op.drop_index(op.f("uq_shots_slug"), table_name="shots")
    op.drop_index(op.f("uq_timelines_slug"), table_name="timelines")
    with op.batch_alter_table("renders") as batch:
        batch.drop_column("inputs")
        batch.drop_column("identity")
    with op.batch_alter_table("shots") as batch:
        batch.drop_column("render_id")
        batch.drop_column("slug")
    with op.batch_alter_table("timelines") as batch:
        batch.drop_column("slug")
