"""This process's cache of each channel's chat rules and of who stands where in it.

Rules are the slow mode, anonymous reading and word filters. A channel's roster is every
account with a standing in it: its moderators (and their grants), its bans and its running
timeouts, read in one query per channel, so a thousand sockets joining at once cost one read
whoever they are. A channel with more than ``ROSTER_LIMIT`` of them is asked per account.

The database holds the truth; every change is announced on the bus (``TOPIC`` for rules, bans
and timeouts, ``channels.service.MODERATORS_TOPIC`` for moderators) and every process updates
or drops the entries it names at once (a ``Gap`` drops everything). Entries also expire after
``ttl`` seconds, a backstop should an announcement be lost; for ``stale`` seconds more an old
entry is served while the database does not answer within ``patience`` (``cache.TtlCache``).
A load that overlaps a change is not stored, so a stale read cannot outlive the change that
made it stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.bus.topics import Topic
from stagecast.cache import TtlCache
from stagecast.channels.models import channel_moderator
from stagecast.channels.policy import Grant
from stagecast.chat.errors import Banned, TimedOut
from stagecast.chat.filters import FilterRule, FilterSet
from stagecast.chat.models import chat_channel, chat_filter, chat_restriction
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.errors import StagecastError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Announcement:
    """A moderation change, for every process's cache and sockets (published after commit).

    ``account_id`` None: the channel's rules changed (``slow_mode`` is set when slow mode did,
    in seconds); otherwise that account was banned (``banned``), timed out until ``until``, or
    released (neither).
    """

    channel_id: int
    account_id: int | None = None
    banned: bool = False
    until: datetime | None = None
    slow_mode: int | None = None


# ``chat.moderation``: one topic for every channel.
TOPIC: Topic[Announcement] = Topic("chat.moderation", Announcement)


@dataclass(frozen=True)
class ChannelRules:
    """A channel's chat settings and compiled filters."""

    slow_mode_seconds: int = 0
    anonymous_read: bool = True
    filters: FilterSet = field(default_factory=lambda: FilterSet([]))


@dataclass(frozen=True)
class Restriction:
    """A ban (``expires_at`` None) or a timeout until ``expires_at``."""

    expires_at: datetime | None
    reason: str = ""

    @property
    def banned(self) -> bool:
        """Tell whether this is a ban rather than a timeout."""
        return self.expires_at is None

    def error(self) -> StagecastError | None:
        """Return the error a post meets now (Banned, TimedOut), or None once it has expired."""
        if self.expires_at is None:
            return Banned("you are banned from this chat")
        remaining = (self.expires_at - utcnow()).total_seconds()
        if remaining <= 0:
            return None
        return TimedOut("you are timed out in this chat", retry_after=remaining)


ROSTER_LIMIT = 10_000  # moderators or restrictions of a channel held in one roster


@dataclass(frozen=True)
class Member:
    """One account's standing in a channel: its moderator grant, its ban or timeout."""

    grant: Grant | None = None
    restriction: Restriction | None = None


@dataclass(frozen=True)
class Roster:
    """Every account with a standing in one channel; ``complete`` False: too many to hold
    (``ROSTER_LIMIT``), ask per account."""

    moderators: Mapping[int, Grant] = field(default_factory=dict)
    restrictions: Mapping[int, Restriction] = field(default_factory=dict)
    complete: bool = True

    def member(self, account_id: int) -> Member:
        """Return the standing of ``account_id`` (only meaningful when ``complete``)."""
        return Member(self.moderators.get(account_id), self.restrictions.get(account_id))

    def restricted(self, account_id: int, restriction: Restriction | None) -> Roster:
        """Return this roster with ``account_id``'s ban or timeout replaced (None: lifted)."""
        changed = {k: v for k, v in self.restrictions.items() if k != account_id}
        if restriction is not None:
            changed[account_id] = restriction
        return Roster(self.moderators, changed, self.complete)


class Rules:
    """Cached reads of channel rules and rosters, updated or dropped on announcement."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: float = 30.0,
        stale: float = 30.0,
        max_channels: int = 2000,
        max_users: int = 50_000,
    ) -> None:
        self._db = db
        # Concurrent misses share one read (a thousand sockets joining at once: one query).
        self._channels: TtlCache[int, ChannelRules] = TtlCache(
            max_entries=max_channels, ttl=ttl, stale=stale
        )
        self._rosters: TtlCache[int, Roster] = TtlCache(
            max_entries=max_channels, ttl=ttl, stale=stale
        )
        # Accounts of channels whose roster is too large to hold.
        self._members: TtlCache[tuple[int, int], Member] = TtlCache(max_entries=max_users, ttl=ttl)
        self._rereads: set[asyncio.Future[Roster]] = set()

    async def channel(self, channel_id: int) -> ChannelRules:
        """Return the rules of ``channel_id`` (defaults if it never changed any)."""
        return await self._channels.get(channel_id, lambda: _read_rules(self._db, channel_id))

    async def member(self, channel_id: int, account_id: int) -> Member:
        """Return the moderator grant and the ban or timeout of ``account_id`` in the channel.

        A timeout is returned as stored, even once it has ended (``Restriction.error``).
        """
        roster = await self._rosters.get(channel_id, lambda: _read_roster(self._db, channel_id))
        if roster.complete:
            return roster.member(account_id)
        return await self._members.get(
            (channel_id, account_id), lambda: _read_member(self._db, channel_id, account_id)
        )

    async def restriction(self, channel_id: int, account_id: int) -> Restriction | None:
        """Return the ban or live timeout of ``account_id`` in the channel, if any."""
        value = (await self.member(channel_id, account_id)).restriction
        if value is not None and value.error() is None:
            return None
        return value

    def invalidate(self, channel_id: int) -> None:
        """Forget the channel's rules (slow mode, anonymous reading, filters)."""
        self._channels.invalidate(channel_id)

    def restricted(self, channel_id: int, account_id: int, restriction: Restriction | None) -> None:
        """Record that ``account_id`` is now under ``restriction`` in the channel (None: free).

        A cached roster is updated in place (the join after a ban needs no read); a load in
        flight is dropped, as it may have read before the change.
        """
        roster = self._rosters.peek(channel_id)
        self._rosters.invalidate(channel_id)
        self._members.invalidate((channel_id, account_id))
        if roster is None or not roster.complete:
            return
        self._rosters.put(channel_id, roster.restricted(account_id, restriction))
        # Two changes may commit in one order and be announced in the other: the patch is
        # served at once, and a read behind it replaces it with what the database holds.
        reread = asyncio.ensure_future(
            self._rosters.get(channel_id, lambda: _read_roster(self._db, channel_id), fresh=True)
        )
        self._rereads.add(reread)
        reread.add_done_callback(self._reread)

    def _reread(self, task: asyncio.Future[Roster]) -> None:
        self._rereads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("chat: roster reread failed; the patched roster stays until it expires")

    def moderators_changed(self, channel_id: int) -> None:
        """Forget who moderates the channel (a grant was given, changed or taken away)."""
        self._rosters.invalidate(channel_id)
        # Rare, and only channels too large for a roster keep per-account entries.
        self._members.clear()

    def clear(self) -> None:
        """Forget everything (an announcement may have been lost)."""
        self._channels.clear()
        self._rosters.clear()
        self._members.clear()

    def close(self) -> None:
        """Stop the roster reads still running behind announcements."""
        for task in tuple(self._rereads):
            task.cancel()


async def _read_rules(db: Database, channel_id: int) -> ChannelRules:
    async def unit(conn: AsyncConnection) -> tuple[tuple[int, bool] | None, list[FilterRule]]:
        row = (
            await conn.execute(
                select(chat_channel.c.slow_mode_seconds, chat_channel.c.anonymous_read).where(
                    chat_channel.c.channel_id == channel_id
                )
            )
        ).one_or_none()
        filters = await load_filters(conn, channel_id)
        return ((int(row[0]), bool(row[1])) if row is not None else None), filters

    settings, filters = await db.run(unit, kind=Kind.READ, name="chat_rules")
    slow, anonymous = settings if settings is not None else (0, True)
    return ChannelRules(slow, anonymous, FilterSet(filters))


async def load_filters(conn: AsyncConnection, channel_id: int) -> list[FilterRule]:
    """Return the channel's filters, oldest first."""
    rows = await conn.execute(
        select(chat_filter.c.id, chat_filter.c.kind, chat_filter.c.pattern, chat_filter.c.action)
        .where(chat_filter.c.channel_id == channel_id)
        .order_by(chat_filter.c.id)
    )
    return [FilterRule(int(r.id), r.kind, r.pattern, r.action) for r in rows]


async def _read_roster(db: Database, channel_id: int) -> Roster:
    """Read the channel's moderators, bans and running timeouts in one transaction."""

    async def unit(conn: AsyncConnection) -> Roster:
        grants = (
            await conn.execute(
                select(
                    channel_moderator.c.account_id,
                    channel_moderator.c.can_delete,
                    channel_moderator.c.can_timeout,
                    channel_moderator.c.can_ban,
                    channel_moderator.c.can_manage_filters,
                )
                .where(channel_moderator.c.channel_id == channel_id)
                .limit(ROSTER_LIMIT + 1)
            )
        ).all()
        restricted = (
            await conn.execute(
                select(chat_restriction.c.account_id, chat_restriction.c.expires_at)
                .where(
                    chat_restriction.c.channel_id == channel_id,
                    or_(
                        chat_restriction.c.expires_at.is_(None),
                        chat_restriction.c.expires_at > utcnow(),
                    ),
                )
                .limit(ROSTER_LIMIT + 1)
            )
        ).all()
        if len(grants) > ROSTER_LIMIT or len(restricted) > ROSTER_LIMIT:
            return Roster(complete=False)
        return Roster(
            {int(r[0]): Grant(bool(r[1]), bool(r[2]), bool(r[3]), bool(r[4])) for r in grants},
            {int(r[0]): Restriction(r[1]) for r in restricted},
        )

    return await db.run(unit, kind=Kind.READ, name="chat_roster")


async def _read_member(db: Database, channel_id: int, account_id: int) -> Member:
    """Read one account's grant and restriction in the channel (a channel without a roster)."""

    async def unit(conn: AsyncConnection) -> Member:
        grant = (
            await conn.execute(
                select(
                    channel_moderator.c.can_delete,
                    channel_moderator.c.can_timeout,
                    channel_moderator.c.can_ban,
                    channel_moderator.c.can_manage_filters,
                ).where(
                    channel_moderator.c.channel_id == channel_id,
                    channel_moderator.c.account_id == account_id,
                )
            )
        ).one_or_none()
        expires = (
            await conn.execute(
                select(chat_restriction.c.expires_at).where(
                    chat_restriction.c.channel_id == channel_id,
                    chat_restriction.c.account_id == account_id,
                )
            )
        ).one_or_none()
        return Member(
            Grant(*(bool(v) for v in grant)) if grant is not None else None,
            Restriction(expires[0]) if expires is not None else None,
        )

    return await db.run(unit, kind=Kind.READ, name="chat_member")
