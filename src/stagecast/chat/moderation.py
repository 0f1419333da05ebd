"""Moderation use cases: bans, timeouts, chat settings (slow mode), word filters, and the log.

Every action is authorised by the one policy function (``channels.policy.require``), runs as
one transaction that also writes the moderation log, and is then announced on the bus so every
process drops its cached copy and applies it to its sockets (a ban closes the banned account's
sockets everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from stagecast import cursors
from stagecast.auth.models import account
from stagecast.auth.service import Account
from stagecast.channels.models import channel_moderator
from stagecast.channels.policy import Access, Action, allowed, require
from stagecast.chat import frames, messages
from stagecast.chat.filters import MAX_FILTERS, FilterRule, FilterSet, InvalidFilter, validate
from stagecast.chat.models import (
    chat_channel,
    chat_filter,
    chat_moderation_log,
    chat_restriction,
)
from stagecast.chat.rules import Announcement, ChannelRules, load_filters
from stagecast.chat.runtime import Chat
from stagecast.db import Kind
from stagecast.db.schema import utcnow
from stagecast.db.upsert import insert_or_update
from stagecast.errors import Conflict, Forbidden, NotFound

MAX_TIMEOUT = 14 * 24 * 3600  # seconds
MAX_SLOW_MODE = 3600  # seconds
PURGE_WINDOW = 24 * 3600  # seconds: how far back "remove their recent messages" reaches
PURGE_LIMIT = 1000  # at most this many of them (the newest), in one transaction
LOG = "chat.log"
RESTRICTIONS = "chat.restrictions"


@dataclass(frozen=True)
class RestrictionEntry:
    """A ban or a running timeout, as the studio lists it."""

    username: str
    expires_at: datetime | None
    reason: str
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class LogEntry:
    """One line of the moderation log."""

    id: int
    action: str
    actor: str | None
    target: str | None
    message_id: int | None
    detail: str
    created_at: datetime


async def record(
    conn: AsyncConnection,
    channel_id: int,
    actor_id: int,
    action: str,
    *,
    target_id: int | None = None,
    message_id: int | None = None,
    detail: str = "",
) -> None:
    """Append to the moderation log inside the caller's transaction."""
    await conn.execute(
        insert(chat_moderation_log).values(
            channel_id=channel_id,
            actor_id=actor_id,
            action=action,
            target_id=target_id,
            message_id=message_id,
            detail=detail[:400],
            created_at=utcnow(),
        )
    )


async def _target(conn: AsyncConnection, access: Access, username: str) -> int:
    """Return the id of ``username``; Conflict if they moderate this channel (or own it)."""
    row = (
        await conn.execute(
            select(account.c.id, account.c.role).where(account.c.username == username)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no user {username!r}")
    moderator = (
        await conn.execute(
            select(channel_moderator.c.account_id).where(
                channel_moderator.c.channel_id == access.channel_id,
                channel_moderator.c.account_id == row.id,
            )
        )
    ).first()
    if row.id == access.owner_id or row.role == "admin" or moderator is not None:
        raise Conflict("the owner, moderators and admins cannot be banned or timed out")
    return int(row.id)


@dataclass(frozen=True)
class Restricted:
    """The outcome of a ban or timeout: when it ends (None: never), and the ids of the messages
    removed with it, oldest first."""

    until: datetime | None
    removed: tuple[int, ...] = ()


async def restrict(
    chat: Chat,
    access: Access,
    actor: Account,
    username: str,
    *,
    seconds: int | None,
    reason: str = "",
    purge: bool = False,
) -> Restricted:
    """Ban ``username`` (``seconds`` None) or time them out; with ``purge``, also delete their
    recent messages (the newest ``PURGE_LIMIT`` of the last ``PURGE_WINDOW`` seconds) in the
    same transaction, and announce their removal to every socket like single deletions.

    A timeout of someone banned is a Conflict (unban first); a ban replaces a timeout. Raises
    NotFound (no such user, or not a moderator here) and Forbidden (``purge`` without the
    delete permission).
    """
    require(access, Action.BAN if seconds is None else Action.TIMEOUT)
    if purge and not allowed(access, Action.DELETE_MESSAGE):
        raise Forbidden("removing their messages needs the delete permission")
    now = utcnow()
    until = now + timedelta(seconds=seconds) if seconds is not None else None
    channel_id = access.channel_id

    async def unit(conn: AsyncConnection) -> tuple[int, list[int]]:
        target = await _target(conn, access, username)
        where = and_(
            chat_restriction.c.channel_id == channel_id, chat_restriction.c.account_id == target
        )
        current = (await conn.execute(select(chat_restriction.c.expires_at).where(where))).first()
        if seconds is not None and current is not None and current[0] is None:
            raise Conflict(f"{username} is banned; unban them first")
        await conn.execute(delete(chat_restriction).where(where))
        await conn.execute(
            insert(chat_restriction).values(
                channel_id=channel_id,
                account_id=target,
                expires_at=until,
                reason=reason,
                created_by=actor.id,
                created_at=now,
            )
        )
        action, detail = ("ban", reason) if seconds is None else ("timeout", f"{seconds}s {reason}")
        await record(conn, channel_id, actor.id, action, target_id=target, detail=detail.strip())
        removed: list[int] = []
        if purge:
            since = now - timedelta(seconds=PURGE_WINDOW)
            removed = await messages.soft_delete_recent(
                conn, channel_id, target, since=since, at=now, actor_id=actor.id, limit=PURGE_LIMIT
            )
            detail = f"{len(removed)} recent messages"
            await record(conn, channel_id, actor.id, "purge", target_id=target, detail=detail)
        return target, removed

    target, removed = await chat.db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="chat_restrict")
    await chat.announce(Announcement(channel_id, target, banned=seconds is None, until=until))
    if removed:
        await chat.publish(channel_id, frames.Purged(tuple(removed)))
    return Restricted(until, tuple(removed))


async def release(chat: Chat, access: Access, actor: Account, username: str, *, ban: bool) -> None:
    """Lift the ban (``ban``) or the timeout of ``username``. Raises NotFound if there is none."""
    require(access, Action.BAN if ban else Action.TIMEOUT)
    channel_id = access.channel_id

    async def unit(conn: AsyncConnection) -> int:
        target = (
            await conn.execute(select(account.c.id).where(account.c.username == username))
        ).scalar_one_or_none()
        if target is None:
            raise NotFound(f"no user {username!r}")
        kind = (
            chat_restriction.c.expires_at.is_(None)
            if ban
            else chat_restriction.c.expires_at.is_not(None)
        )
        removed = await conn.execute(
            delete(chat_restriction).where(
                chat_restriction.c.channel_id == channel_id,
                chat_restriction.c.account_id == target,
                kind,
            )
        )
        if removed.rowcount != 1:
            raise NotFound(f"{username} is not {'banned' if ban else 'timed out'}")
        await record(conn, channel_id, actor.id, "unban" if ban else "untimeout", target_id=target)
        return int(target)

    target = await chat.db.run(unit, kind=Kind.WRITE, name="chat_release")
    await chat.announce(Announcement(channel_id, target))


async def restrictions(
    chat: Chat, access: Access, *, before: str | None, limit: int
) -> tuple[list[RestrictionEntry], str | None]:
    """Return bans and running timeouts, newest first, and the next page's cursor."""
    require(access, Action.STUDIO)
    channel_id = access.channel_id
    key = None
    if before is not None:
        raw = cursors.decode(chat.core.secret_key, RESTRICTIONS, channel_id, before, 2)
        key = (cursors.parse_time_key(raw[0]), cursors.int_key(raw[1]))
    target, creator = aliased(account), aliased(account)
    r = chat_restriction.c

    async def unit(conn: AsyncConnection) -> list[Any]:
        query = (
            select(target.c.username, r.expires_at, r.reason, creator.c.username, r.created_at)
            .add_columns(r.account_id)
            .join(target, target.c.id == r.account_id)
            .outerjoin(creator, creator.c.id == r.created_by)
            .where(r.channel_id == channel_id, or_(r.expires_at.is_(None), r.expires_at > utcnow()))
        )
        if key is not None:
            query = query.where(
                or_(r.created_at < key[0], and_(r.created_at == key[0], r.account_id < key[1]))
            )
        order = (r.created_at.desc(), r.account_id.desc())
        return list(await conn.execute(query.order_by(*order).limit(limit + 1)))

    rows = await chat.db.run(unit, kind=Kind.READ, name="chat_restrictions")
    entries = [RestrictionEntry(*row[:5]) for row in rows[:limit]]
    cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        cursor = cursors.encode(
            chat.core.secret_key,
            RESTRICTIONS,
            channel_id,
            (cursors.time_key(last[4]), int(last[5])),
        )
    return entries, cursor


async def update_settings(
    chat: Chat,
    access: Access,
    actor: Account,
    *,
    slow_mode_seconds: int | None = None,
    anonymous_read: bool | None = None,
) -> ChannelRules:
    """Change slow mode (moderators with filter rights) or anonymous reading (owner, admin).

    A field sent with its current value needs no permission, so one settings form can serve
    owners and moderators alike.
    """
    require(access, Action.STUDIO)
    current = await chat.rules.channel(access.channel_id)
    if slow_mode_seconds == current.slow_mode_seconds:
        slow_mode_seconds = None
    if anonymous_read == current.anonymous_read:
        anonymous_read = None
    if slow_mode_seconds is not None:
        require(access, Action.MANAGE_FILTERS)
    if anonymous_read is not None:
        require(access, Action.MANAGE)
    if slow_mode_seconds is None and anonymous_read is None:
        return current
    channel_id = access.channel_id
    changes: dict[str, Any] = {"updated_at": utcnow()}
    if slow_mode_seconds is not None:
        changes["slow_mode_seconds"] = slow_mode_seconds
    if anonymous_read is not None:
        changes["anonymous_read"] = anonymous_read

    async def unit(conn: AsyncConnection) -> None:
        defaults = {"channel_id": channel_id, "last_seq": 0, "slow_mode_seconds": 0}
        row = {**defaults, "anonymous_read": True, **changes}
        await conn.execute(
            insert_or_update(conn, chat_channel, row, on="pk_chat_channel", set_=changes)
        )
        detail = ", ".join(f"{k}={v}" for k, v in changes.items() if k != "updated_at")
        await record(conn, channel_id, actor.id, "settings", detail=detail)

    await chat.db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="chat_settings")
    await chat.announce(Announcement(channel_id, slow_mode=slow_mode_seconds))
    return await chat.rules.channel(channel_id)


async def filters(chat: Chat, access: Access) -> list[FilterRule]:
    """Return the channel's word filters, oldest first."""
    require(access, Action.STUDIO)

    async def unit(conn: AsyncConnection) -> list[FilterRule]:
        return await load_filters(conn, access.channel_id)

    return await chat.db.run(unit, kind=Kind.READ, name="chat_filters")


async def add_filter(
    chat: Chat, access: Access, actor: Account, *, kind: str, pattern: str, action: str
) -> FilterRule:
    """Add a filter. Raises InvalidFilter (422) for a bad pattern, too many filters, or a set
    too complex to compile within its memory cap."""
    require(access, Action.MANAGE_FILTERS)
    cleaned = validate(kind, pattern, action)
    channel_id = access.channel_id

    async def unit(conn: AsyncConnection) -> FilterRule:
        existing = await load_filters(conn, channel_id)
        if len(existing) >= MAX_FILTERS:
            raise InvalidFilter(f"a channel may have at most {MAX_FILTERS} filters")
        new_id = (
            await conn.execute(
                insert(chat_filter)
                .values(
                    channel_id=channel_id,
                    kind=kind,
                    pattern=cleaned,
                    action=action,
                    created_by=actor.id,
                    created_at=utcnow(),
                )
                .returning(chat_filter.c.id)
            )
        ).scalar_one()
        rule = FilterRule(int(new_id), kind, cleaned, action)
        FilterSet([*existing, rule])  # raises InvalidFilter, rolling the insert back
        await record(conn, channel_id, actor.id, "filter_add", detail=f"{kind} {action} {cleaned}")
        return rule

    rule = await chat.db.run(unit, kind=Kind.WRITE, name="chat_add_filter")
    await chat.announce(Announcement(channel_id))
    return rule


async def remove_filter(chat: Chat, access: Access, actor: Account, filter_id: int) -> None:
    """Remove filter ``filter_id``. Raises NotFound."""
    require(access, Action.MANAGE_FILTERS)
    channel_id = access.channel_id

    async def unit(conn: AsyncConnection) -> None:
        removed = (
            await conn.execute(
                delete(chat_filter)
                .where(chat_filter.c.channel_id == channel_id, chat_filter.c.id == filter_id)
                .returning(chat_filter.c.kind, chat_filter.c.pattern)
            )
        ).one_or_none()
        if removed is None:
            raise NotFound("filter not found")
        await record(conn, channel_id, actor.id, "filter_remove", detail=" ".join(removed))

    await chat.db.run(unit, kind=Kind.WRITE, name="chat_remove_filter")
    await chat.announce(Announcement(channel_id))


async def log(
    chat: Chat, access: Access, *, before: str | None, limit: int
) -> tuple[list[LogEntry], str | None]:
    """Return the moderation log, newest first, and the next page's cursor."""
    require(access, Action.STUDIO)
    channel_id = access.channel_id
    before_id = None
    if before is not None:
        raw = cursors.decode(chat.core.secret_key, LOG, channel_id, before, 1)
        before_id = cursors.int_key(raw[0])
    actor, target = aliased(account), aliased(account)
    g = chat_moderation_log.c

    async def unit(conn: AsyncConnection) -> list[LogEntry]:
        query = (
            select(g.id, g.action, actor.c.username, target.c.username)
            .add_columns(g.message_id, g.detail, g.created_at)
            .outerjoin(actor, actor.c.id == g.actor_id)
            .outerjoin(target, target.c.id == g.target_id)
            .where(g.channel_id == channel_id)
        )
        if before_id is not None:
            query = query.where(g.id < before_id)
        rows = await conn.execute(query.order_by(g.id.desc()).limit(limit + 1))
        return [LogEntry(*row) for row in rows]

    found = await chat.db.run(unit, kind=Kind.READ, name="chat_log")
    cursor = None
    if len(found) > limit:
        cursor = cursors.encode(chat.core.secret_key, LOG, channel_id, (found[limit - 1].id,))
    return found[:limit], cursor
