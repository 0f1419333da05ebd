"""Tables of channels and their moderators."""

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
    text,
)

from stagecast.db.schema import IdType, UTCDateTime, metadata

VISIBILITIES = ("public", "unlisted", "private")
PROFILES = ("passthrough", "abr")
# Delivery of the channel's next session: LL-HLS parts and blocking reloads, or whole segments.
LATENCIES = ("low", "standard")
NEXT_INFO_MAX = 200  # code points

channel = Table(
    "channel",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("slug", String(40), nullable=False, unique=True),
    Column("owner_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(140), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("visibility", String(16), nullable=False),
    Column("profile", String(16), nullable=False),
    Column("dvr_window_seconds", Integer, nullable=False),
    Column("latency", String(16), nullable=False, server_default="low"),
    # What the owner says about the next stream ("Fridays 20:00 UTC"), on the offline slate.
    Column("next_info", String(200), nullable=False, server_default=""),
    # Stream key: a lookup id (unique, indexed) and the SHA-256 of the secret part.
    Column("key_lookup", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("key_rotated_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("visibility IN ('public', 'unlisted', 'private')", name="visibility"),
    CheckConstraint("profile IN ('passthrough', 'abr')", name="profile"),
    CheckConstraint("latency IN ('low', 'standard')", name="latency"),
    Index("ix_channel_owner_id", "owner_id", "id"),
    # The public directory's keyset pages (``GET /api/v1/channels`` signed out).
    Index(
        "ix_channel_public",
        "id",
        sqlite_where=text("visibility = 'public'"),
        postgresql_where=text("visibility = 'public'"),
    ),
)

channel_moderator = Table(
    "channel_moderator",
    metadata,
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), primary_key=True),
    Column("account_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), primary_key=True),
    Column("can_delete", Boolean, nullable=False),
    Column("can_timeout", Boolean, nullable=False),
    Column("can_ban", Boolean, nullable=False),
    Column("can_manage_filters", Boolean, nullable=False),
    Column("granted_by", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_channel_moderator_account_id", "account_id"),
)
