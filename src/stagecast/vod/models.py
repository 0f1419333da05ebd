"""Tables of VODs, the durable jobs that build and purge them, and the library counters.

A ``vod`` row is made in the transaction that ends its session (one per session, enforced by a
unique constraint) and stays as a tombstone after a soft delete, so nothing recreates it. Each
library filter has a partial index on ``deleted_at IS NULL`` whose columns are the filter's
equality columns followed by the sort key ``(created_at, id)``, so a page is one index range
read in either direction. ``vod_counter`` holds exact totals per owner, per channel and overall,
split by status, updated in the same transaction as every insert, status change and delete.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from stagecast.db.schema import IdType, UTCDateTime, metadata

STATUSES = ("processing", "ready", "failed")
# ``inherit`` follows the channel's visibility at request time; the others override it.
VISIBILITIES = ("inherit", "public", "unlisted", "private")
JOB_KINDS = ("build", "purge")
JOB_STATES = ("pending", "running", "done", "failed", "cancelled")
ACTIVE_JOB_STATES = ("pending", "running")
COUNTER_SCOPES = ("all", "owner", "channel")

LIVE = text("deleted_at IS NULL")
LISTED = text("deleted_at IS NULL AND visibility IN ('inherit', 'public')")
PUBLIC = text("deleted_at IS NULL AND visibility = 'public'")
ACTIVE_JOB = text("state IN ('pending', 'running')")


def _partial(name: str, *columns: str, where: object = LIVE) -> Index:
    return Index(name, *columns, sqlite_where=where, postgresql_where=where)


vod = Table(
    "vod",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("session_id", IdType, ForeignKey("live_session.id", ondelete="CASCADE"), nullable=False),
    Column("channel_id", IdType, ForeignKey("channel.id", ondelete="CASCADE"), nullable=False),
    # The channel's owner when the VOD was made: the studio library is scoped by it.
    Column("owner_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(140), nullable=False),
    Column("description", Text, nullable=False),
    Column("visibility", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_reason", String(500), nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("duration", Float, nullable=True),  # seconds, the longest rendition
    Column("byte_size", BigInteger, nullable=True),  # every archived file of every rendition
    Column("thumbnail_path", String(512), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    Column("purged_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('processing', 'ready', 'failed')", name="status"),
    CheckConstraint(
        "visibility IN ('inherit', 'public', 'unlisted', 'private')", name="visibility"
    ),
    UniqueConstraint("session_id", name="uq_vod_session_id"),
    # The studio library: owner / channel / everything (admins), each with or without status.
    _partial("ix_vod_owner_created", "owner_id", "created_at", "id"),
    _partial("ix_vod_owner_status_created", "owner_id", "status", "created_at", "id"),
    _partial("ix_vod_channel_created", "channel_id", "created_at", "id"),
    _partial("ix_vod_channel_status_created", "channel_id", "status", "created_at", "id"),
    _partial("ix_vod_created", "created_at", "id"),
    _partial("ix_vod_status_created", "status", "created_at", "id"),
    # The public list of a channel: public channels list inherited and public VODs, others
    # only the explicitly public ones.
    _partial(
        "ix_vod_listed_channel_created", "channel_id", "status", "created_at", "id", where=LISTED
    ),
    _partial(
        "ix_vod_public_channel_created", "channel_id", "status", "created_at", "id", where=PUBLIC
    ),
)

vod_job = Table(
    "vod_job",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("vod_id", IdType, ForeignKey("vod.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # Pending: when it may run next. Running: when its lease runs out and another worker may
    # take it over (the worker that held it crashed or hung).
    Column("due_at", UTCDateTime, nullable=False),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint("kind IN ('build', 'purge')", name="kind"),
    CheckConstraint("state IN ('pending', 'running', 'done', 'failed', 'cancelled')", name="state"),
    UniqueConstraint("vod_id", "kind", name="uq_vod_job_vod_id_kind"),
    _partial("ix_vod_job_due", "due_at", where=ACTIVE_JOB),
)

vod_counter = Table(
    "vod_counter",
    metadata,
    Column("scope", String(8), nullable=False),
    Column("scope_id", IdType, nullable=False),  # owner or channel id; 0 for "all"
    Column("status", String(16), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("scope", "scope_id", "status", name="pk_vod_counter"),
    CheckConstraint("count >= 0", name="non_negative"),
)
