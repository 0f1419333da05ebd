"""Invites: single-use codes an admin hands out, which sign-up claims for their role.

A code is ``inv_<lookup>_<secret>``; only a SHA-256 of the secret is stored (``credentials``),
so a code is shown once, when it is made. Revoking deletes an unused invite: nothing can
claim it afterwards, and a used one stays as the record of who joined with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from stagecast.auth.credentials import new_credential, secret_matches
from stagecast.auth.models import ROLES, account, invite
from stagecast.db import Database, Kind
from stagecast.db.schema import Record, utcnow
from stagecast.errors import Conflict, NotFound, Unprocessable

INVITE_PREFIX = "inv"


@dataclass(frozen=True)
class Invite:
    """An invite as its list shows it (the code itself is never stored)."""

    id: int
    lookup_id: str
    role: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime
    used_by: str | None
    used_at: datetime | None

    def state(self, now: datetime) -> str:
        """Return ``used``, ``expired`` or ``open``."""
        if self.used_at is not None:
            return "used"
        return "expired" if self.expires_at <= now else "open"


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise Unprocessable(f"role must be one of {', '.join(ROLES)}")
    return role


async def create_invite(db: Database, creator_id: int, role: str, days: float = 7.0) -> str:
    """Create a single-use invite for ``role``; return its code (shown once)."""
    _check_role(role)
    cred = new_credential(INVITE_PREFIX)
    now = utcnow()

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            invite.insert().values(
                lookup_id=cred.lookup_id,
                secret_hash=cred.secret_hash,
                role=role,
                created_by=creator_id,
                created_at=now,
                expires_at=now + timedelta(days=days),
            )
        )

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="create_invite")
    return cred.value


def _invite(row: Record) -> Invite:
    return Invite(
        row.id,
        row.lookup_id,
        row.role,
        row.creator,
        row.created_at,
        row.expires_at,
        row.user,
        row.used_at,
    )


async def list_invites(db: Database, *, before_id: int | None, limit: int) -> list[Invite]:
    """Return up to ``limit`` invites, newest first, with ids below ``before_id`` (keyset)."""
    creator = aliased(account)
    user = aliased(account)

    async def unit(conn: AsyncConnection) -> list[Invite]:
        query = (
            select(
                invite,
                creator.c.username.label("creator"),
                user.c.username.label("user"),
            )
            .outerjoin(creator, creator.c.id == invite.c.created_by)
            .outerjoin(user, user.c.id == invite.c.used_by)
            .order_by(invite.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(invite.c.id < before_id)
        return [_invite(r) for r in await conn.execute(query)]

    return await db.run(unit, kind=Kind.READ, name="list_invites")


async def revoke_invite(db: Database, invite_id: int) -> None:
    """Delete the unused invite ``invite_id``. Raises NotFound, or Conflict if it was used."""

    async def unit(conn: AsyncConnection) -> None:
        row = (
            await conn.execute(select(invite.c.used_at).where(invite.c.id == invite_id))
        ).one_or_none()
        if row is None:
            raise NotFound(f"no invite {invite_id}")
        if row.used_at is not None:
            raise Conflict("this invite was already used; it cannot be revoked")
        await conn.execute(
            invite.delete().where(and_(invite.c.id == invite_id, invite.c.used_at.is_(None)))
        )

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="revoke_invite")


async def claim_invite(conn: AsyncConnection, lookup_id: str, secret: str) -> str:
    """Mark the invite used inside the caller's transaction; return its role.

    Raises Unprocessable for an unknown, wrong, expired, revoked or already used code.
    """
    now = utcnow()
    row = (await conn.execute(select(invite).where(invite.c.lookup_id == lookup_id))).one_or_none()
    if row is None or not secret_matches(secret, row.secret_hash) or row.expires_at <= now:
        raise Unprocessable("invite code is invalid, expired or revoked")
    claimed = await conn.execute(
        update(invite)
        .where(and_(invite.c.id == row.id, invite.c.used_at.is_(None)))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise Unprocessable("invite code was already used")
    return str(row.role)


async def record_use(conn: AsyncConnection, lookup_id: str, account_id: int) -> None:
    """Note which account claimed the invite ``lookup_id`` (same transaction as the claim)."""
    await conn.execute(
        update(invite).where(invite.c.lookup_id == lookup_id).values(used_by=account_id)
    )
