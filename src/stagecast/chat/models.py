"""Tables of chat: per-channel counters and settings, messages, restrictions, filters, the
review queue and the moderation log.

A message's public id is ``seq``, a per-channel sequence taken from ``chat_channel.last_seq`` in
the posting transaction, so "everything after id N" is one range scan of the partial index.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from stagecast.db.schema import IdType, UTCDateTime, metadata

FILTER_KINDS = ("word", "phrase", "pattern")
FILTER_ACTIONS = ("block", "hold")
NOT_DELETED = text("deleted_at IS NULL")
ON_AIR_VISIBLE = text("deleted_at IS NULL AND session_id IS NOT NULL")

chat_channel = Table(
    "chat_channel",
    metadata,
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), primary_key=True),
    # The last sequence number handed out; the row lock orders concurrent posts.
    Column("last_seq", IdType, nullable=False),
    Column("slow_mode_seconds", Integer, nullable=False),
    Column("anonymous_read", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

chat_message = Table(
    "chat_message",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("seq", IdType, nullable=False),
    Column("author_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("body", Text, nullable=False),
    # Client-chosen id that makes a retried post safe (unique per channel and author).
    Column("nonce", String(64), nullable=True),
    # The live session on air when the message was sent, and seconds since it started, so a
    # VOD can replay its chat in sync.
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="SET NULL"), nullable=True),
    Column("media_time", Float, nullable=True),
    Column("sent_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    Column("deleted_by", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    UniqueConstraint("channel_id", "author_id", "nonce"),
    # History pages, resume and gap-fill all read visible messages of one channel by seq.
    Index(
        "ix_chat_message_visible",
        "channel_id",
        "seq",
        unique=True,
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
    ),
    # Chat replay reads one session's visible messages by (media_time, seq) from any offset;
    # messages sent while nothing was on air are not in it.
    Index(
        "ix_chat_message_replay",
        "session_id",
        "media_time",
        "seq",
        sqlite_where=ON_AIR_VISIBLE,
        postgresql_where=ON_AIR_VISIBLE,
    ),
)

chat_restriction = Table(
    "chat_restriction",
    metadata,
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), primary_key=True),
    Column("account_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), primary_key=True),
    # NULL: banned until unbanned; otherwise a timeout ending then.
    Column("expires_at", UTCDateTime, nullable=True),
    Column("reason", String(200), nullable=False),
    Column("created_by", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_chat_restriction_channel_id_created_at", "channel_id", "created_at", "account_id"),
)

chat_filter = Table(
    "chat_filter",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("pattern", String(200), nullable=False),
    Column("action", String(16), nullable=False),
    Column("created_by", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('word', 'phrase', 'pattern')", name="kind"),
    CheckConstraint("action IN ('block', 'hold')", name="action"),
    Index("ix_chat_filter_channel_id_id", "channel_id", "id"),
)

chat_held = Table(
    "chat_held",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("author_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("body", Text, nullable=False),
    Column("nonce", String(64), nullable=True),
    Column("filter_id", IdType, ForeignKey("chat_filter.id", ondelete="SET NULL"), nullable=True),
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="SET NULL"), nullable=True),
    Column("media_time", Float, nullable=True),
    Column("sent_at", UTCDateTime, nullable=False),
    UniqueConstraint("channel_id", "author_id", "nonce"),
    Index("ix_chat_held_channel_id_id", "channel_id", "id"),
)

chat_moderation_log = Table(
    "chat_moderation_log",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("actor_id", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    Column("action", String(32), nullable=False),
    Column("target_id", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    Column("message_id", IdType, nullable=True),
    Column("detail", String(400), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_chat_moderation_log_channel_id_id", "channel_id", "id"),
)
