"""Channels and stream keys: create, list, edit, rotate keys, verify keys, moderators."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.credentials import new_credential, parse_credential, secret_matches
from stagecast.auth.models import account
from stagecast.auth.service import Account
from stagecast.bus import Bus
from stagecast.bus.topics import Topic
from stagecast.channels.models import (
    LATENCIES,
    NEXT_INFO_MAX,
    PROFILES,
    VISIBILITIES,
    channel,
    channel_moderator,
)
from stagecast.channels.policy import Access, Action, Grant, require
from stagecast.db import Database, Kind
from stagecast.db.schema import Record, utcnow
from stagecast.errors import Conflict, Forbidden, NotFound, StagecastError, Unprocessable

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38}[a-z0-9])$")
RESERVED_SLUGS = frozenset(
    {
        "api",
        "admin",
        "studio",
        "hls",
        "ingest",
        "static",
        "login",
        "logout",
        "vods",
        "metrics",
        "new",
    }
)


@dataclass(frozen=True)
class KeyRotated:
    """After a rotation commits: publishers holding a key older than ``key_version`` stop."""

    channel_id: int
    key_version: int


KEY_ROTATED_TOPIC: Topic[KeyRotated] = Topic("channel.key_rotated", KeyRotated)


@dataclass(frozen=True)
class ModeratorsChanged:
    """A moderator of ``channel_id`` was added, changed or removed (published after commit)."""

    channel_id: int


MODERATORS_TOPIC: Topic[ModeratorsChanged] = Topic("channel.moderators", ModeratorsChanged)


@dataclass(frozen=True)
class ChannelChanged:
    """Channel ``channel_id`` (``slug``) was edited: visibility, title, latency (after commit)."""

    channel_id: int
    slug: str


CHANNEL_CHANGED_TOPIC: Topic[ChannelChanged] = Topic("channel.changed", ChannelChanged)


@dataclass(frozen=True)
class Channel:
    """A channel as the studio and the API show it."""

    id: int
    slug: str
    owner_id: int
    owner: str
    title: str
    description: str
    visibility: str
    profile: str
    dvr_window_seconds: int
    latency: str
    key_version: int
    key_rotated_at: datetime
    created_at: datetime
    updated_at: datetime
    next_info: str = ""


@dataclass(frozen=True)
class KeyMatch:
    """The channel a valid stream key belongs to."""

    channel_id: int
    slug: str
    key_version: int
    profile: str
    dvr_window_seconds: int
    title: str
    latency: str


_CHANNEL_COLUMNS = (
    channel.c.id,
    channel.c.slug,
    channel.c.owner_id,
    account.c.username.label("owner"),
    channel.c.title,
    channel.c.description,
    channel.c.visibility,
    channel.c.profile,
    channel.c.dvr_window_seconds,
    channel.c.latency,
    channel.c.key_version,
    channel.c.key_rotated_at,
    channel.c.created_at,
    channel.c.updated_at,
    channel.c.next_info,
)


def _channel(row: Record) -> Channel:
    return Channel(*(row[i] for i in range(len(_CHANNEL_COLUMNS))))


def _select_channels() -> Any:
    return select(*_CHANNEL_COLUMNS).join(account, account.c.id == channel.c.owner_id)


def validate_slug(slug: str) -> str:
    """Return ``slug`` if valid: 3-40 of a-z, 0-9 and inner '-', not a reserved word."""
    if not SLUG_RE.fullmatch(slug) or "--" in slug:
        raise Unprocessable("slug must be 3-40 characters of a-z, 0-9 and '-' (not at either end)")
    if slug in RESERVED_SLUGS:
        raise Unprocessable(f"slug {slug!r} is reserved")
    return slug


def _validate_fields(fields: dict[str, Any]) -> None:
    if "title" in fields and not 1 <= len(fields["title"].strip()) <= 140:
        raise Unprocessable("title must be 1-140 characters")
    if "description" in fields and len(fields["description"]) > 2000:
        raise Unprocessable("description must be at most 2000 characters")
    if "visibility" in fields and fields["visibility"] not in VISIBILITIES:
        raise Unprocessable(f"visibility must be one of {', '.join(VISIBILITIES)}")
    if "profile" in fields and fields["profile"] not in PROFILES:
        raise Unprocessable(f"profile must be one of {', '.join(PROFILES)}")
    if "dvr_window_seconds" in fields and not 0 <= fields["dvr_window_seconds"] <= 6 * 3600:
        raise Unprocessable("dvr_window_seconds must be 0-21600")
    if "latency" in fields and fields["latency"] not in LATENCIES:
        raise Unprocessable(f"latency must be one of {', '.join(LATENCIES)}")
    if "next_info" in fields and len(fields["next_info"]) > NEXT_INFO_MAX:
        raise Unprocessable(f"next_info must be at most {NEXT_INFO_MAX} characters")


async def create_channel(
    db: Database,
    owner: Account,
    slug: str,
    *,
    title: str | None = None,
    description: str = "",
    visibility: str = "public",
    profile: str = "passthrough",
    dvr_window_seconds: int = 0,
    latency: str = "low",
    max_channels: int | None = None,
) -> tuple[Channel, str]:
    """Create a channel owned by ``owner``; return it and its stream key (shown once).

    Raises Forbidden if the owner may not broadcast or (not an admin) already owns
    ``max_channels`` channels, Conflict if the slug is taken.
    """
    validate_slug(slug)
    fields = {
        "title": (title or slug).strip(),
        "description": description,
        "visibility": visibility,
        "profile": profile,
        "dvr_window_seconds": dvr_window_seconds,
        "latency": latency,
    }
    _validate_fields(fields)
    if not owner.can_broadcast:
        raise Forbidden("only broadcasters and admins can own channels")
    key = new_credential()
    now = utcnow()

    async def unit(conn: AsyncConnection) -> Channel:
        if max_channels is not None and not owner.is_admin:
            await _within_channel_limit(conn, owner.id, max_channels)
        try:
            result = await conn.execute(
                insert(channel)
                .values(
                    slug=slug,
                    owner_id=owner.id,
                    key_lookup=key.lookup_id,
                    key_hash=key.secret_hash,
                    key_version=1,
                    key_rotated_at=now,
                    created_at=now,
                    updated_at=now,
                    **fields,
                )
                .returning(channel.c.id)
            )
        except IntegrityError as exc:
            raise Conflict(f"channel {slug!r} already exists") from exc
        return await _fetch(conn, channel.c.id == result.scalar_one())

    created = await db.run(unit, kind=Kind.WRITE, name="create_channel")
    return created, key.value


async def _within_channel_limit(conn: AsyncConnection, owner_id: int, limit: int) -> None:
    """Raise Forbidden if ``owner_id`` owns ``limit`` channels already.

    The owner's row is locked first (PostgreSQL), so two creations at once cannot both pass.
    """
    await conn.execute(select(account.c.id).where(account.c.id == owner_id).with_for_update())
    owned = await conn.scalar(
        select(func.count()).select_from(channel).where(channel.c.owner_id == owner_id)
    )
    if int(owned or 0) >= limit:
        raise Forbidden(f"you already own {limit} channels, the most one account may have")


async def _fetch(conn: AsyncConnection, where: Any) -> Channel:
    row = (await conn.execute(_select_channels().where(where))).one_or_none()
    if row is None:
        raise NotFound("channel not found")
    return _channel(row)


async def get_channel(db: Database, slug: str) -> Channel:
    """Return the channel ``slug`` with no access check. Raises NotFound."""

    async def unit(conn: AsyncConnection) -> Channel:
        return await _fetch(conn, channel.c.slug == slug)

    return await db.run(unit, kind=Kind.READ, name="get_channel")


async def list_channels(
    db: Database,
    viewer: Account,
    *,
    all_channels: bool = False,
    after_id: int = 0,
    limit: int = 100,
) -> list[Channel]:
    """Return the caller's channels (every channel for an admin who asks), in id order."""

    async def unit(conn: AsyncConnection) -> list[Channel]:
        query = _select_channels().where(channel.c.id > after_id)
        if not (all_channels and viewer.is_admin):
            query = query.where(channel.c.owner_id == viewer.id)
        rows = await conn.execute(query.order_by(channel.c.id).limit(limit))
        return [_channel(r) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="list_channels")


async def access_to(
    db: Database, slug: str, viewer: Account | None, *, playback_token_ok: bool = False
) -> tuple[Channel, Access]:
    """Return the channel and the caller's ``Access`` to it in one read. Raises NotFound."""

    async def unit(conn: AsyncConnection) -> tuple[Channel, Grant | None]:
        found = await _fetch(conn, channel.c.slug == slug)
        grant = await _grant(conn, found.id, viewer.id) if viewer is not None else None
        return found, grant

    found, grant = await db.run(unit, kind=Kind.READ, name="channel_access")
    access = Access(
        channel_id=found.id,
        owner_id=found.owner_id,
        visibility=found.visibility,
        account=viewer,
        moderator=grant,
        playback_token_ok=playback_token_ok,
    )
    return found, access


async def _grant(conn: AsyncConnection, channel_id: int, account_id: int) -> Grant | None:
    row = (
        await conn.execute(
            select(channel_moderator).where(
                channel_moderator.c.channel_id == channel_id,
                channel_moderator.c.account_id == account_id,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return Grant(row.can_delete, row.can_timeout, row.can_ban, row.can_manage_filters)


async def managed_channel(db: Database, viewer: Account, slug: str) -> Channel:
    """Return ``slug`` if ``viewer`` owns it or is an admin; otherwise NotFound."""
    found, access = await access_to(db, slug, viewer)
    require(access, Action.MANAGE)
    return found


async def update_channel(
    db: Database, viewer: Account, slug: str, fields: dict[str, Any]
) -> Channel:
    """Apply ``fields`` (title, description, visibility, profile, dvr_window_seconds, latency,
    next_info).

    ``profile`` and ``latency`` of a channel on air apply from its next session.
    """
    allowed_fields = {
        "title",
        "description",
        "visibility",
        "profile",
        "dvr_window_seconds",
        "latency",
        "next_info",
    }
    unknown = set(fields) - allowed_fields
    if unknown:
        raise Unprocessable(f"unknown fields: {', '.join(sorted(unknown))}")
    _validate_fields(fields)
    for name in ("title", "next_info"):
        if name in fields:
            fields = {**fields, name: fields[name].strip()}
    target = await managed_channel(db, viewer, slug)

    async def unit(conn: AsyncConnection) -> Channel:
        await conn.execute(
            update(channel).where(channel.c.id == target.id).values(updated_at=utcnow(), **fields)
        )
        return await _fetch(conn, channel.c.id == target.id)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="update_channel")


async def rotate_key(db: Database, slug: str) -> tuple[Channel, str]:
    """Give ``slug`` a new stream key; the old one stops working at once. Return the new key.

    The caller authorizes first (``managed_channel``) and then calls ``announce_rotation``, so
    a live publisher holding the old key is cut off at once; every node also compares the key
    versions of its publishers with the database periodically, so the cut-off happens even if
    the announcement is lost.
    """
    key = new_credential()

    async def unit(conn: AsyncConnection) -> Channel:
        result = await conn.execute(
            update(channel)
            .where(channel.c.slug == slug)
            .values(
                key_lookup=key.lookup_id,
                key_hash=key.secret_hash,
                key_version=channel.c.key_version + 1,
                key_rotated_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        if result.rowcount != 1:
            raise NotFound("channel not found")
        return await _fetch(conn, channel.c.slug == slug)

    rotated = await db.run(unit, kind=Kind.WRITE, name="rotate_key")
    return rotated, key.value


class NotBroadcasting(Forbidden):
    """A valid stream key whose channel's owner may no longer broadcast (demoted)."""

    code = "not_broadcasting"


# Who may own and feed channels: the roles ``Account.can_broadcast`` accepts, for queries.
BROADCASTING_ROLES = ("admin", "broadcaster")


async def verify_stream_key(db: Database, key: str) -> KeyMatch | None:
    """Return the channel ``key`` opens, or None. One indexed lookup, one constant-time compare.

    Raises NotBroadcasting (403) if the key is right but the owner's role no longer lets
    them broadcast: a role change takes effect on the next publish or push.
    """
    parsed = parse_credential(key)
    if parsed is None:
        return None
    lookup_id, secret = parsed

    async def unit(conn: AsyncConnection) -> Record | None:
        return (
            await conn.execute(
                select(
                    channel.c.id,
                    channel.c.slug,
                    channel.c.key_version,
                    channel.c.profile,
                    channel.c.dvr_window_seconds,
                    channel.c.title,
                    channel.c.latency,
                    channel.c.key_hash,
                    account.c.role,
                )
                .join(account, account.c.id == channel.c.owner_id)
                .where(channel.c.key_lookup == lookup_id)
            )
        ).one_or_none()

    row = await db.run(unit, kind=Kind.READ, name="verify_stream_key")
    if row is None or not secret_matches(secret, row.key_hash):
        return None
    if row.role not in BROADCASTING_ROLES:
        raise NotBroadcasting("the channel's owner may not broadcast")
    return KeyMatch(
        row.id,
        row.slug,
        row.key_version,
        row.profile,
        row.dvr_window_seconds,
        row.title,
        row.latency,
    )


async def announce_rotation(bus: Bus, rotated: Channel) -> bool:
    """Tell every node that ``rotated`` has a new key; False if the bus could not take it.

    Never raises: the rotation has committed, and the client must get its new key. A lost
    announcement only delays the cut-off until each node's next key check (``key_versions``).
    """
    try:
        await KEY_ROTATED_TOPIC.publish(bus, KeyRotated(rotated.id, rotated.key_version))
    except StagecastError as exc:
        log.warning(
            "key of %s rotated, but not announced (%s): publishers are cut off at the next check",
            rotated.slug,
            exc.code,
        )
        return False
    return True


async def key_versions(db: Database, channel_ids: list[int]) -> dict[int, int]:
    """Return the current key version of each of ``channel_ids`` whose key still opens it.

    Missing from the result: the channel was deleted, or its owner may no longer broadcast.
    """

    async def unit(conn: AsyncConnection) -> dict[int, int]:
        rows = await conn.execute(
            select(channel.c.id, channel.c.key_version)
            .join(account, account.c.id == channel.c.owner_id)
            .where(channel.c.id.in_(channel_ids), account.c.role.in_(BROADCASTING_ROLES))
        )
        return {int(r.id): int(r.key_version) for r in rows}

    return await db.run(unit, kind=Kind.READ, name="key_versions")


@dataclass(frozen=True)
class Moderator:
    """A moderator of a channel and what they may do."""

    username: str
    grant: Grant
    created_at: datetime


async def list_moderators(db: Database, channel_id: int) -> list[Moderator]:
    """Return the channel's moderators, by username."""

    async def unit(conn: AsyncConnection) -> list[Moderator]:
        rows = await conn.execute(
            select(channel_moderator, account.c.username)
            .join(account, account.c.id == channel_moderator.c.account_id)
            .where(channel_moderator.c.channel_id == channel_id)
            .order_by(account.c.username)
            .limit(500)
        )
        return [
            Moderator(
                r.username,
                Grant(r.can_delete, r.can_timeout, r.can_ban, r.can_manage_filters),
                r.created_at,
            )
            for r in rows
        ]

    return await db.run(unit, kind=Kind.READ, name="list_moderators")


async def set_moderator(
    db: Database, channel_id: int, username: str, grant: Grant, granted_by: int
) -> Moderator:
    """Make ``username`` a moderator with ``grant`` (replacing an earlier grant)."""

    async def unit(conn: AsyncConnection) -> Moderator:
        target = (
            await conn.execute(select(account.c.id).where(account.c.username == username))
        ).scalar_one_or_none()
        if target is None:
            raise NotFound(f"no user {username!r}")
        await conn.execute(
            delete(channel_moderator).where(
                channel_moderator.c.channel_id == channel_id,
                channel_moderator.c.account_id == target,
            )
        )
        now = utcnow()
        await conn.execute(
            insert(channel_moderator).values(
                channel_id=channel_id,
                account_id=target,
                granted_by=granted_by,
                created_at=now,
                can_delete=grant.can_delete,
                can_timeout=grant.can_timeout,
                can_ban=grant.can_ban,
                can_manage_filters=grant.can_manage_filters,
            )
        )
        return Moderator(username, grant, now)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="set_moderator")


async def remove_moderator(db: Database, channel_id: int, username: str) -> None:
    """Take moderation rights away from ``username``. Raises NotFound if they had none."""

    async def unit(conn: AsyncConnection) -> int:
        target = select(account.c.id).where(account.c.username == username).scalar_subquery()
        result = await conn.execute(
            delete(channel_moderator).where(
                channel_moderator.c.channel_id == channel_id,
                channel_moderator.c.account_id == target,
            )
        )
        return int(result.rowcount)

    if await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="remove_moderator") == 0:
        raise NotFound(f"{username!r} is not a moderator of this channel")


async def announce_moderators(bus: Bus, channel_id: int) -> None:
    """Tell every process that the moderators of ``channel_id`` changed (after the commit).

    Never raises: the change has committed. A lost announcement only delays it in the caches
    of other processes until their entries expire (the chat's: 30 s).
    """
    try:
        await MODERATORS_TOPIC.publish(bus, ModeratorsChanged(channel_id))
    except StagecastError as exc:
        log.warning(
            "moderators of channel %d changed, but not announced (%s)", channel_id, exc.code
        )


async def announce_change(bus: Bus, changed: Channel) -> None:
    """Tell every process that ``changed`` was edited, so caches of it drop it at once.

    Never raises: the change has committed. A lost announcement only delays it until the
    caches' entries expire (the live lookups': 1 s; the VOD facts': 5 s).
    """
    try:
        await CHANNEL_CHANGED_TOPIC.publish(bus, ChannelChanged(changed.id, changed.slug))
    except StagecastError as exc:
        log.warning("channel %s changed, but not announced (%s)", changed.slug, exc.code)
