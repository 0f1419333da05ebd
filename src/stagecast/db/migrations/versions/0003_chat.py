"""Chat: per-channel counters and settings, messages, restrictions, filters, review queue, log.

Revision ID: 0003_chat
Revises: 0001
Depends on: 0002_live (messages reference the live session they were sent during)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_chat"
down_revision = "0001"
branch_labels = None
depends_on = "0002_live"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
NOT_DELETED = sa.text("deleted_at IS NULL")


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "chat_channel",
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("last_seq", ID, nullable=False),
        sa.Column("slow_mode_seconds", sa.Integer(), nullable=False),
        sa.Column("anonymous_read", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", name="pk_chat_channel"),
        _fk("chat_channel", "channel_id", "channel", "CASCADE"),
    )
    op.create_table(
        "chat_message",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("seq", ID, nullable=False),
        sa.Column("author_id", ID, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=True),
        sa.Column("session_id", ID, nullable=True),
        sa.Column("media_time", sa.Float(), nullable=True),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("deleted_by", ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_chat_message"),
        sa.UniqueConstraint(
            "channel_id", "author_id", "nonce", name="uq_chat_message_channel_id_author_id_nonce"
        ),
        _fk("chat_message", "channel_id", "channel", "CASCADE"),
        _fk("chat_message", "author_id", "account", "CASCADE"),
        _fk("chat_message", "session_id", "live_session", "SET NULL"),
        _fk("chat_message", "deleted_by", "account", "SET NULL"),
    )
    op.create_index(
        "ix_chat_message_visible",
        "chat_message",
        ["channel_id", "seq"],
        unique=True,
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
    )
    op.create_table(
        "chat_restriction",
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "account_id", name="pk_chat_restriction"),
        _fk("chat_restriction", "channel_id", "channel", "CASCADE"),
        _fk("chat_restriction", "account_id", "account", "CASCADE"),
        _fk("chat_restriction", "created_by", "account", "SET NULL"),
    )
    op.create_index(
        "ix_chat_restriction_channel_id_created_at",
        "chat_restriction",
        ["channel_id", "created_at", "account_id"],
    )
    op.create_table(
        "chat_filter",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pattern", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_filter"),
        sa.CheckConstraint("kind IN ('word', 'phrase', 'pattern')", name="ck_chat_filter_kind"),
        sa.CheckConstraint("action IN ('block', 'hold')", name="ck_chat_filter_action"),
        _fk("chat_filter", "channel_id", "channel", "CASCADE"),
        _fk("chat_filter", "created_by", "account", "SET NULL"),
    )
    op.create_index("ix_chat_filter_channel_id_id", "chat_filter", ["channel_id", "id"])
    op.create_table(
        "chat_held",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("author_id", ID, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=True),
        sa.Column("filter_id", ID, nullable=True),
        sa.Column("session_id", ID, nullable=True),
        sa.Column("media_time", sa.Float(), nullable=True),
        sa.Column("sent_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_held"),
        sa.UniqueConstraint(
            "channel_id", "author_id", "nonce", name="uq_chat_held_channel_id_author_id_nonce"
        ),
        _fk("chat_held", "channel_id", "channel", "CASCADE"),
        _fk("chat_held", "author_id", "account", "CASCADE"),
        _fk("chat_held", "filter_id", "chat_filter", "SET NULL"),
        _fk("chat_held", "session_id", "live_session", "SET NULL"),
    )
    op.create_index("ix_chat_held_channel_id_id", "chat_held", ["channel_id", "id"])
    op.create_table(
        "chat_moderation_log",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("actor_id", ID, nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_id", ID, nullable=True),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("detail", sa.String(400), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chat_moderation_log"),
        _fk("chat_moderation_log", "channel_id", "channel", "CASCADE"),
        _fk("chat_moderation_log", "actor_id", "account", "SET NULL"),
        _fk("chat_moderation_log", "target_id", "account", "SET NULL"),
    )
    op.create_index(
        "ix_chat_moderation_log_channel_id_id", "chat_moderation_log", ["channel_id", "id"]
    )


def downgrade() -> None:
    for table in (
        "chat_moderation_log",
        "chat_held",
        "chat_filter",
        "chat_restriction",
        "chat_message",
        "chat_channel",
    ):
        op.drop_table(table)
