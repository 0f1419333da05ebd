"""Accounts, login sessions, API tokens and invites: the use cases, one transaction each."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import invites, passwords
from stagecast.auth.credentials import new_credential, parse_credential, secret_matches
from stagecast.auth.invites import INVITE_PREFIX
from stagecast.auth.models import ROLES, account, api_token, login_session
from stagecast.db import Database, Kind
from stagecast.db.schema import Record, utcnow
from stagecast.errors import Conflict, Forbidden, NotFound, Unprocessable

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{2,31}$")
TOKEN_PREFIX = "sct"


@dataclass(frozen=True)
class Account:
    """A signed-in person, as the rest of the code sees them."""

    id: int
    username: str
    role: str
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        """Tell whether this account administers the whole instance."""
        return self.role == "admin"

    @property
    def can_broadcast(self) -> bool:
        """Tell whether this account may own channels."""
        return self.role in ("admin", "broadcaster")


def _account(row: Record) -> Account:
    return Account(row.id, row.username, row.role, row.created_at)


_ACCOUNT_COLUMNS = (account.c.id, account.c.username, account.c.role, account.c.created_at)


def validate_username(username: str) -> str:
    """Return ``username`` if valid: 3-32 of a-z, 0-9, _ and -, starting with a letter or digit."""
    if not USERNAME_RE.fullmatch(username):
        raise Unprocessable(
            "username must be 3-32 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit"
        )
    return username


def validate_password(password: str) -> str:
    """Return ``password`` if its length is within the allowed range."""
    if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
        raise Unprocessable(
            f"password must be {passwords.MIN_LENGTH}-{passwords.MAX_LENGTH} characters"
        )
    return password


def validate_role(role: str) -> str:
    """Return ``role`` if it is one of admin, broadcaster, viewer."""
    if role not in ROLES:
        raise Unprocessable(f"role must be one of {', '.join(ROLES)}")
    return role


async def create_account(db: Database, username: str, password: str, role: str) -> Account:
    """Create an account. Raises Conflict if the username is taken, Unprocessable if invalid."""
    validate_username(username)
    validate_password(password)
    validate_role(role)
    password_hash = await passwords.hash_password(password)

    async def unit(conn: AsyncConnection) -> Account:
        return await _insert_account(conn, username, password_hash, role)

    return await db.run(unit, kind=Kind.WRITE, name="create_account")


async def _insert_account(
    conn: AsyncConnection, username: str, password_hash: str, role: str
) -> Account:
    try:
        row = (
            await conn.execute(
                insert(account)
                .values(
                    username=username, password_hash=password_hash, role=role, created_at=utcnow()
                )
                .returning(*_ACCOUNT_COLUMNS)
            )
        ).one()
    except IntegrityError as exc:
        raise Conflict(f"username {username!r} is taken") from exc
    return _account(row)


async def get_account(db: Database, username: str) -> Account:
    """Return the account named ``username``. Raises NotFound."""

    async def unit(conn: AsyncConnection) -> Account:
        row = (
            await conn.execute(select(*_ACCOUNT_COLUMNS).where(account.c.username == username))
        ).one_or_none()
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _account(row)

    return await db.run(unit, kind=Kind.READ, name="get_account")


async def list_accounts(db: Database, *, after_id: int = 0, limit: int = 100) -> list[Account]:
    """Return up to ``limit`` accounts with ids above ``after_id``, in id order."""

    async def unit(conn: AsyncConnection) -> list[Account]:
        rows = await conn.execute(
            select(*_ACCOUNT_COLUMNS)
            .where(account.c.id > after_id)
            .order_by(account.c.id)
            .limit(limit)
        )
        return [_account(r) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="list_accounts")


async def set_role(db: Database, username: str, role: str) -> Account:
    """Change the role of ``username``. Raises NotFound, Unprocessable."""
    validate_role(role)

    async def unit(conn: AsyncConnection) -> Account:
        row = (
            await conn.execute(
                update(account)
                .where(account.c.username == username)
                .values(role=role)
                .returning(*_ACCOUNT_COLUMNS)
            )
        ).one_or_none()
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _account(row)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="set_role")


async def count_admins(db: Database) -> int:
    """Return how many admin accounts exist."""

    async def unit(conn: AsyncConnection) -> int:
        return int(
            (
                await conn.execute(
                    select(func.count()).select_from(account).where(account.c.role == "admin")
                )
            ).scalar_one()
        )

    return await db.run(unit, kind=Kind.READ, name="count_admins")


async def authenticate(db: Database, username: str, password: str) -> Account | None:
    """Return the account if ``password`` is right, else None (same cost either way)."""

    async def unit(conn: AsyncConnection) -> Record | None:
        return (
            await conn.execute(
                select(*_ACCOUNT_COLUMNS, account.c.password_hash).where(
                    account.c.username == username, account.c.disabled_at.is_(None)
                )
            )
        ).one_or_none()

    row = await db.run(unit, kind=Kind.READ, name="authenticate")
    ok = await passwords.verify_password(password, row.password_hash if row else None)
    return _account(row) if ok and row is not None else None


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(db: Database, account_id: int, days: float) -> tuple[str, str]:
    """Start a login session; return ``(cookie_token, csrf_token)``."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = utcnow()

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(login_session).values(
                id=_session_id(token),
                account_id=account_id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + timedelta(days=days),
            )
        )

    # The id is random and new: replaying the insert either succeeds or hits the primary key.
    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="open_session")
    return token, csrf


async def session_account(db: Database, token: str) -> tuple[Account, str] | None:
    """Return ``(account, csrf_token)`` for a live session cookie, or None."""
    if not token or len(token) > 128:
        return None

    async def unit(conn: AsyncConnection) -> Record | None:
        return (
            await conn.execute(
                select(*_ACCOUNT_COLUMNS, login_session.c.csrf_token)
                .join(login_session, login_session.c.account_id == account.c.id)
                .where(
                    login_session.c.id == _session_id(token),
                    login_session.c.expires_at > utcnow(),
                    account.c.disabled_at.is_(None),
                )
            )
        ).one_or_none()

    row = await db.run(unit, kind=Kind.READ, name="session_account")
    return (_account(row), row.csrf_token) if row is not None else None


async def close_session(db: Database, token: str) -> None:
    """End the login session of ``token`` (no error if it is already gone)."""

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(login_session.delete().where(login_session.c.id == _session_id(token)))

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="close_session")


async def close_other_sessions(db: Database, account_id: int, keep: str | None) -> int:
    """End every login session of the account but the one of cookie token ``keep``; count them."""
    kept = _session_id(keep) if keep else None

    async def unit(conn: AsyncConnection) -> int:
        return await _end_sessions(conn, account_id, kept)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="close_other_sessions")


async def _end_sessions(conn: AsyncConnection, account_id: int, kept_id: str | None) -> int:
    ending = login_session.delete().where(login_session.c.account_id == account_id)
    if kept_id is not None:
        ending = ending.where(login_session.c.id != kept_id)
    return int((await conn.execute(ending)).rowcount)


async def create_api_token(db: Database, account_id: int, name: str) -> str:
    """Create an API token for the account and return it (shown once)."""
    if not 1 <= len(name) <= 64:
        raise Unprocessable("token name must be 1-64 characters")
    cred = new_credential(TOKEN_PREFIX)

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(api_token).values(
                account_id=account_id,
                name=name,
                lookup_id=cred.lookup_id,
                secret_hash=cred.secret_hash,
                created_at=utcnow(),
            )
        )

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="create_api_token")
    return cred.value


async def token_account(db: Database, value: str) -> Account | None:
    """Return the account an API token belongs to, or None if it is unknown or revoked."""
    parsed = parse_credential(value, TOKEN_PREFIX)
    if parsed is None:
        return None
    lookup_id, secret = parsed

    async def unit(conn: AsyncConnection) -> Record | None:
        return (
            await conn.execute(
                select(*_ACCOUNT_COLUMNS, api_token.c.secret_hash)
                .join(api_token, api_token.c.account_id == account.c.id)
                .where(
                    api_token.c.lookup_id == lookup_id,
                    api_token.c.revoked_at.is_(None),
                    account.c.disabled_at.is_(None),
                )
            )
        ).one_or_none()

    row = await db.run(unit, kind=Kind.READ, name="token_account")
    if row is None or not secret_matches(secret, row.secret_hash):
        return None
    return _account(row)


async def register(
    db: Database, username: str, password: str, *, mode: str, invite_code: str | None
) -> Account:
    """Create a viewer account (or the invite's role) under the registration ``mode``.

    Raises Forbidden when registration is closed, Unprocessable for a weak password or a bad,
    expired or used invite, Conflict for a taken username.
    """
    if mode == "closed":
        raise Forbidden("registration is closed on this server; ask its admin for an account")
    validate_username(username)
    passwords.check_strength(password, username)
    parsed = parse_credential(invite_code, INVITE_PREFIX) if invite_code else None
    if invite_code and parsed is None:
        raise Unprocessable("invite code is invalid, expired or revoked")
    if mode == "invite" and parsed is None:
        raise Unprocessable("an invite code is required to register")
    password_hash = await passwords.hash_password(password)

    async def unit(conn: AsyncConnection) -> Account:
        role = "viewer"
        if parsed is not None:
            role = await invites.claim_invite(conn, *parsed)
        created = await _insert_account(conn, username, password_hash, role)
        if parsed is not None:
            await invites.record_use(conn, parsed[0], created.id)
        return created

    return await db.run(unit, kind=Kind.WRITE, name="register")


async def change_password(
    db: Database, who: Account, new_password: str, *, keep_session: str | None
) -> int:
    """Set a new password and end every login session of ``who`` but ``keep_session``.

    ``keep_session`` is the cookie token of the session that asked (None ends them all). The
    caller has checked the current password (``authenticate``). Raises Unprocessable for a
    weak password. Returns how many sessions were ended.
    """
    passwords.check_strength(new_password, who.username)
    password_hash = await passwords.hash_password(new_password)
    keep = _session_id(keep_session) if keep_session else None

    async def unit(conn: AsyncConnection) -> int:
        await conn.execute(
            update(account).where(account.c.id == who.id).values(password_hash=password_hash)
        )
        return await _end_sessions(conn, who.id, keep)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="change_password")


async def reset_password(db: Database, username: str, new_password: str) -> int:
    """Set the password of ``username`` and end all its login sessions (the admin's reset).

    Raises NotFound for an unknown user, Unprocessable for a weak password. Returns how many
    sessions were ended.
    """
    return await change_password(
        db, await get_account(db, username), new_password, keep_session=None
    )


async def ensure_admin(
    db: Database, username: str | None, password: str | None
) -> tuple[str, str] | None:
    """Create the first admin if there is none; return its login if one was made.

    ``username``/``password`` come from the environment when set; otherwise ``admin`` and a
    random password, which the caller prints once.
    """
    if await count_admins(db) > 0:
        return None
    name = username or "admin"
    secret = password or secrets.token_urlsafe(12)
    try:
        await create_account(db, name, secret, "admin")
    except Conflict:
        await set_role(db, name, "admin")
        return None
    return name, secret
