"""Tables of the studio: per-session history samples for the charts."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, String, Table, UniqueConstraint

from stagecast.db.schema import IdType, UTCDateTime, metadata

# One row per live session every ``metrics_history_seconds`` while it is live; deleted with it.
session_sample = Table(
    "session_sample",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="CASCADE"), nullable=False),
    Column("sampled_at", UTCDateTime, nullable=False),
    Column("viewers", Integer, nullable=False),
    Column("bitrate_kbps", Float, nullable=True),
    Column("verdict", String(16), nullable=False),
    UniqueConstraint("session_id", "sampled_at", name="uq_session_sample_session_id_sampled_at"),
)
