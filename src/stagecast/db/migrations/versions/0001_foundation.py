"""Foundation: accounts, login sessions, API tokens, invites, channels, moderators.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_account"),
        sa.UniqueConstraint("username", name="uq_account_username"),
    )
    op.create_table(
        "login_session",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_session"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name="fk_login_session_account_id_account",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_login_session_account_id", "login_session", ["account_id"])
    op.create_table(
        "api_token",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("lookup_id", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.UniqueConstraint("lookup_id", name="uq_api_token_lookup_id"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name="fk_api_token_account_id_account",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_api_token_account_id", "api_token", ["account_id"])
    op.create_table(
        "invite",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("lookup_id", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_by", ID, nullable=True),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invite"),
        sa.UniqueConstraint("lookup_id", name="uq_invite_lookup_id"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["account.id"], name="fk_invite_created_by_account", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["used_by"], ["account.id"], name="fk_invite_used_by_account", ondelete="SET NULL"
        ),
    )
    op.create_table(
        "channel",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("title", sa.String(140), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("profile", sa.String(16), nullable=False),
        sa.Column("dvr_window_seconds", sa.Integer(), nullable=False),
        sa.Column("key_lookup", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("key_rotated_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_channel"),
        sa.UniqueConstraint("slug", name="uq_channel_slug"),
        sa.UniqueConstraint("key_lookup", name="uq_channel_key_lookup"),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["account.id"], name="fk_channel_owner_id_account", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "visibility IN ('public', 'unlisted', 'private')", name="ck_channel_visibility"
        ),
        sa.CheckConstraint("profile IN ('passthrough', 'abr')", name="ck_channel_profile"),
    )
    op.create_index("ix_channel_owner_id", "channel", ["owner_id", "id"])
    op.create_table(
        "channel_moderator",
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("can_delete", sa.Boolean(), nullable=False),
        sa.Column("can_timeout", sa.Boolean(), nullable=False),
        sa.Column("can_ban", sa.Boolean(), nullable=False),
        sa.Column("can_manage_filters", sa.Boolean(), nullable=False),
        sa.Column("granted_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "account_id", name="pk_channel_moderator"),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name="fk_channel_moderator_channel_id_channel",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name="fk_channel_moderator_account_id_account",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["granted_by"],
            ["account.id"],
            name="fk_channel_moderator_granted_by_account",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_channel_moderator_account_id", "channel_moderator", ["account_id"])


def downgrade() -> None:
    for table in (
        "channel_moderator",
        "channel",
        "invite",
        "api_token",
        "login_session",
        "account",
    ):
        op.drop_table(table)
