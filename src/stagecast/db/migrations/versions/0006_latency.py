"""Channels: the ``latency`` setting (``low``: LL-HLS, the default; ``standard``: whole segments).

Existing channels become ``low``. The column and its CHECK are added in place with one
``ALTER TABLE ... ADD COLUMN`` on both SQLite and PostgreSQL: a batch rebuild of ``channel``
on SQLite would drop the table, and with foreign keys on that cascades into every table that
references a channel.

Revision ID: 0006_latency
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_latency"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "channel",
        sa.Column(
            "latency",
            sa.String(16),
            sa.CheckConstraint("latency IN ('low', 'standard')", name="ck_channel_latency"),
            nullable=False,
            server_default="low",
        ),
    )


def downgrade() -> None:
    op.drop_column("channel", "latency")
