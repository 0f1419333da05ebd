"""Tables of outbound webhooks: per-channel URLs, their durable deliveries and every attempt."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
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

WEBHOOK_EVENTS = ("stream.started", "stream.ended", "vod.ready")
DELIVERY_STATES = ("pending", "delivering", "delivered", "failed")

webhook = Table(
    "webhook",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("url", String(2048), nullable=False),
    # The HMAC key: kept in clear because every delivery is signed with it.
    Column("secret", String(64), nullable=False),
    Column("events", String(128), nullable=False),  # comma-separated WEBHOOK_EVENTS
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_webhook_channel_id_id", "channel_id", "id"),
)

webhook_delivery = Table(
    "webhook_delivery",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("webhook_id", IdType, ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    # What happened, once per webhook: a second announcement of the same event is a no-op.
    Column("event_key", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # When the next attempt is due; while ``delivering``, when the claim lapses.
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint("state IN ('pending', 'delivering', 'delivered', 'failed')", name="state"),
    UniqueConstraint("webhook_id", "event_key", name="uq_webhook_delivery_webhook_id_event_key"),
    Index("ix_webhook_delivery_webhook_id_id", "webhook_id", "id"),
    Index(
        "ix_webhook_delivery_due",
        "next_attempt_at",
        sqlite_where=text("state IN ('pending', 'delivering')"),
        postgresql_where=text("state IN ('pending', 'delivering')"),
    ),
)

webhook_attempt = Table(
    "webhook_attempt",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        IdType,
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status", Integer, nullable=True),  # the HTTP status, None if none came back
    Column("error", String(300), nullable=True),
    Column("duration_ms", Integer, nullable=False),
    UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempt_delivery_id_attempt"),
)
