"""Live sessions, renditions, init segments and segments.

Revision ID: 0002_live
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_live"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
NOT_ENDED = sa.text("state <> 'ended'")


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["live_session.id"],
        name=f"fk_{table}_session_id_live_session",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "live_session",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title", sa.String(140), nullable=False),
        sa.Column("profile", sa.String(16), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("owner_node", sa.String(128), nullable=False),
        sa.Column("reconnects", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("last_media_at", TS, nullable=True),
        sa.Column("disconnected_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_live_session"),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name="fk_live_session_channel_id_channel",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "state IN ('idle', 'live', 'reconnecting', 'ended')", name="ck_live_session_state"
        ),
    )
    op.create_index(
        "uq_live_session_active_channel",
        "live_session",
        ["channel_id"],
        unique=True,
        sqlite_where=NOT_ENDED,
        postgresql_where=NOT_ENDED,
    )
    op.create_index("ix_live_session_channel_id_id", "live_session", ["channel_id", "id"])
    op.create_index(
        "ix_live_session_state",
        "live_session",
        ["state"],
        sqlite_where=NOT_ENDED,
        postgresql_where=NOT_ENDED,
    )
    op.create_table(
        "live_rendition",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("codecs", sa.String(128), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("frame_rate", sa.Float(), nullable=True),
        sa.Column("bandwidth", sa.Integer(), nullable=False),
        sa.Column("average_bandwidth", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_live_rendition"),
        sa.UniqueConstraint("session_id", "name", name="uq_live_rendition_session_id_name"),
        _session_fk("live_rendition"),
    )
    op.create_table(
        "live_init",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("rendition", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("codecs", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_live_init"),
        sa.UniqueConstraint(
            "session_id", "rendition", "epoch", name="uq_live_init_session_id_rendition_epoch"
        ),
        _session_fk("live_init"),
    )
    op.create_table(
        "segment",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("rendition", sa.String(32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("discontinuity", sa.Boolean(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("byte_size", sa.Integer(), nullable=False),
        sa.Column("program_date_time", TS, nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segment"),
        sa.UniqueConstraint(
            "session_id", "rendition", "sequence", name="uq_segment_session_id_rendition_sequence"
        ),
        _session_fk("segment"),
    )


def downgrade() -> None:
    for table in ("segment", "live_init", "live_rendition", "live_session"):
        op.drop_table(table)
