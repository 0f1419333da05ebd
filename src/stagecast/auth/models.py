"""Tables of accounts, login sessions, API tokens and invites."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table

from stagecast.db.schema import IdType, UTCDateTime, metadata

ROLES = ("admin", "broadcaster", "viewer")

account = Table(
    "account",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
)

login_session = Table(
    "login_session",
    metadata,
    # The SHA-256 of the cookie value; the cookie itself is never stored.
    Column("id", String(64), primary_key=True),
    Column("account_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_login_session_account_id", "account_id"),
)

api_token = Table(
    "api_token",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("account_id", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("lookup_id", String(32), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_api_token_account_id", "account_id"),
)

invite = Table(
    "invite",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("lookup_id", String(32), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_by", IdType, ForeignKey("account.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_by", IdType, ForeignKey("account.id", ondelete="SET NULL"), nullable=True),
    Column("used_at", UTCDateTime, nullable=True),
)
