"""Restream destinations: per channel, where its live stream is also pushed (RTMP/RTMPS).

Revision ID: 0009_restream
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_restream"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "restream_destination",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("url", sa.String(512), nullable=False),
        sa.Column("stream_key", sa.String(512), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_restream_destination"),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name="fk_restream_destination_channel_id_channel",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_restream_destination_channel_id_id", "restream_destination", ["channel_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_restream_destination_channel_id_id", table_name="restream_destination")
    op.drop_table("restream_destination")
