"""The table of a channel's restream destinations."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, String, Table

from stagecast.db.schema import IdType, UTCDateTime, metadata

restream_destination = Table(
    "restream_destination",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("url", String(512), nullable=False),
    # Kept in clear: every push sends it (it is never shown back in full).
    Column("stream_key", String(512), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_restream_destination_channel_id_id", "channel_id", "id"),
)
