"""VODs, VOD jobs and library counters.

Revision ID: 0004_vod
Revises: 0002_live
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_vod"
down_revision = "0002_live"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
LIVE = sa.text("deleted_at IS NULL")
LISTED = sa.text("deleted_at IS NULL AND visibility IN ('inherit', 'public')")
PUBLIC = sa.text("deleted_at IS NULL AND visibility = 'public'")
ACTIVE_JOB = sa.text("state IN ('pending', 'running')")

_VOD_INDEXES: tuple[tuple[str, list[str], sa.TextClause], ...] = (
    ("ix_vod_owner_created", ["owner_id", "created_at", "id"], LIVE),
    ("ix_vod_owner_status_created", ["owner_id", "status", "created_at", "id"], LIVE),
    ("ix_vod_channel_created", ["channel_id", "created_at", "id"], LIVE),
    ("ix_vod_channel_status_created", ["channel_id", "status", "created_at", "id"], LIVE),
    ("ix_vod_created", ["created_at", "id"], LIVE),
    ("ix_vod_status_created", ["status", "created_at", "id"], LIVE),
    ("ix_vod_listed_channel_created", ["channel_id", "status", "created_at", "id"], LISTED),
    ("ix_vod_public_channel_created", ["channel_id", "status", "created_at", "id"], PUBLIC),
)


def upgrade() -> None:
    op.create_table(
        "vod",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("title", sa.String(140), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.String(500), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("byte_size", sa.BigInteger(), nullable=True),
        sa.Column("thumbnail_path", sa.String(512), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("purged_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vod"),
        sa.UniqueConstraint("session_id", name="uq_vod_session_id"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["live_session.id"],
            name="fk_vod_session_id_live_session",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channel.id"], name="fk_vod_channel_id_channel", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["account.id"], name="fk_vod_owner_id_account", ondelete="CASCADE"
        ),
        sa.CheckConstraint("status IN ('processing', 'ready', 'failed')", name="ck_vod_status"),
        sa.CheckConstraint(
            "visibility IN ('inherit', 'public', 'unlisted', 'private')", name="ck_vod_visibility"
        ),
    )
    for name, columns, where in _VOD_INDEXES:
        op.create_index(name, "vod", columns, sqlite_where=where, postgresql_where=where)
    op.create_table(
        "vod_job",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("vod_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vod_job"),
        sa.UniqueConstraint("vod_id", "kind", name="uq_vod_job_vod_id_kind"),
        sa.ForeignKeyConstraint(
            ["vod_id"], ["vod.id"], name="fk_vod_job_vod_id_vod", ondelete="CASCADE"
        ),
        sa.CheckConstraint("kind IN ('build', 'purge')", name="ck_vod_job_kind"),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'done', 'failed', 'cancelled')",
            name="ck_vod_job_state",
        ),
    )
    op.create_index(
        "ix_vod_job_due",
        "vod_job",
        ["due_at"],
        sqlite_where=ACTIVE_JOB,
        postgresql_where=ACTIVE_JOB,
    )
    op.create_table(
        "vod_counter",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_id", "status", name="pk_vod_counter"),
        sa.CheckConstraint("count >= 0", name="ck_vod_counter_non_negative"),
    )


def downgrade() -> None:
    for table in ("vod_counter", "vod_job", "vod"):
        op.drop_table(table)
