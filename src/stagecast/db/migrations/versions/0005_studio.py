"""Studio: session history samples, webhooks, webhook deliveries and their attempts.

Revision ID: 0005_studio
Revises: 0002_live
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_studio"
down_revision = "0002_live"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
DUE = sa.text("state IN ('pending', 'delivering')")


def upgrade() -> None:
    op.create_table(
        "session_sample",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("sampled_at", TS, nullable=False),
        sa.Column("viewers", sa.Integer(), nullable=False),
        sa.Column("bitrate_kbps", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_session_sample"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["live_session.id"],
            name="fk_session_sample_session_id_live_session",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "session_id", "sampled_at", name="uq_session_sample_session_id_sampled_at"
        ),
    )
    op.create_table(
        "webhook",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("events", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook"),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channel.id"], name="fk_webhook_channel_id_channel", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_webhook_channel_id_id", "webhook", ["channel_id", "id"])
    op.create_table(
        "webhook_delivery",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", ID, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("event_key", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhook.id"],
            name="fk_webhook_delivery_webhook_id_webhook",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'delivering', 'delivered', 'failed')",
            name="ck_webhook_delivery_state",
        ),
        sa.UniqueConstraint(
            "webhook_id", "event_key", name="uq_webhook_delivery_webhook_id_event_key"
        ),
    )
    op.create_index("ix_webhook_delivery_webhook_id_id", "webhook_delivery", ["webhook_id", "id"])
    op.create_index(
        "ix_webhook_delivery_due",
        "webhook_delivery",
        ["next_attempt_at"],
        sqlite_where=DUE,
        postgresql_where=DUE,
    )
    op.create_table(
        "webhook_attempt",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", TS, nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(300), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_attempt"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_delivery.id"],
            name="fk_webhook_attempt_delivery_id_webhook_delivery",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "delivery_id", "attempt", name="uq_webhook_attempt_delivery_id_attempt"
        ),
    )


def downgrade() -> None:
    for table in ("webhook_attempt", "webhook_delivery", "webhook", "session_sample"):
        op.drop_table(table)
