"""Tables of live sessions, their renditions, init segments and media segments.

A session is one broadcast of a channel, from first publish to end, reconnects included. Every
segment a session produced keeps its row (and its file) for the recording, whatever the live
playlist window shows.
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
    UniqueConstraint,
    text,
)

from stagecast.db.schema import IdType, UTCDateTime, metadata

live_session = Table(
    "live_session",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("title", String(140), nullable=False),
    Column("profile", String(16), nullable=False),
    Column("key_version", Integer, nullable=False),
    # The process that holds the publisher (hostname:pid), for reconciliation after a crash.
    Column("owner_node", String(128), nullable=False),
    Column("reconnects", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("last_media_at", UTCDateTime, nullable=True),
    Column("disconnected_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("end_reason", String(64), nullable=True),
    CheckConstraint("state IN ('idle', 'live', 'reconnecting', 'ended')", name="state"),
    # At most one session that is not ended per channel, across every process.
    Index(
        "uq_live_session_active_channel",
        "channel_id",
        unique=True,
        sqlite_where=text("state <> 'ended'"),
        postgresql_where=text("state <> 'ended'"),
    ),
    Index("ix_live_session_channel_id_id", "channel_id", "id"),
    Index(
        "ix_live_session_state",
        "state",
        sqlite_where=text("state <> 'ended'"),
        postgresql_where=text("state <> 'ended'"),
    ),
)

live_rendition = Table(
    "live_rendition",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(32), nullable=False),
    Column("codecs", String(128), nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("frame_rate", Float, nullable=True),
    Column("bandwidth", Integer, nullable=False),
    Column("average_bandwidth", Integer, nullable=False),
    UniqueConstraint("session_id", "name", name="uq_live_rendition_session_id_name"),
)

live_init = Table(
    "live_init",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="CASCADE"), nullable=False),
    Column("rendition", String(32), nullable=False),
    # One per packager run: a reconnect starts a new epoch with its own init segment.
    Column("epoch", Integer, nullable=False),
    Column("path", String(512), nullable=False),
    Column("codecs", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "session_id", "rendition", "epoch", name="uq_live_init_session_id_rendition_epoch"
    ),
)

segment = Table(
    "segment",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="CASCADE"), nullable=False),
    Column("rendition", String(32), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("discontinuity", Boolean, nullable=False),
    Column("duration", Float, nullable=False),
    Column("byte_size", Integer, nullable=False),
    Column("program_date_time", UTCDateTime, nullable=False),
    Column("path", String(512), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "session_id", "rendition", "sequence", name="uq_segment_session_id_rendition_sequence"
    ),
)
