"""Channels: ``next_info`` (what the owner says about the next stream) and the public listing.

``next_info`` is free text (at most 200 code points, empty by default) shown on the channel's
offline slate. ``ix_channel_public`` on ``channel (id)``, partial on ``visibility = 'public'``,
serves the anonymous channel directory's keyset pages (``GET /api/v1/channels``). The column is
added in place with one ``ALTER TABLE ... ADD COLUMN`` (a batch rebuild of ``channel`` on SQLite
would cascade into every table that references a channel).

Revision ID: 0008_channel_next
Revises: 0006_latency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_channel_next"
down_revision = "0006_latency"
branch_labels = None
depends_on = None

PUBLIC = sa.text("visibility = 'public'")


def upgrade() -> None:
    op.add_column(
        "channel",
        sa.Column("next_info", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index(
        "ix_channel_public", "channel", ["id"], sqlite_where=PUBLIC, postgresql_where=PUBLIC
    )


def downgrade() -> None:
    op.drop_index("ix_channel_public", table_name="channel")
    op.drop_column("channel", "next_info")
