"""The public front door's reads: public channels live first, and live thumbnails.

The directory lists public channels in two keyset runs: those on air (newest broadcast first,
by session id), then the others (by channel id). A cursor names the run and the last key, so a
page at any depth is one index range read per run (``ix_live_session_state`` for the few active
sessions, ``ix_channel_public`` for the rest); a channel that goes live or ends between two
pages may be listed twice or skipped, as with any keyset list over changing data.

A live thumbnail is grabbed on demand from the newest recorded segment of the session (the
lowest rendition) with ``vod.thumbnails.grab_frame`` and cached per session for a few seconds.
It runs in an ffmpeg subprocess, at most ``GRABS_AT_ONCE`` per process; nothing on the live
edge waits for it (the segment rows and files it reads are written behind the edge anyway).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast import cursors
from stagecast.auth.models import account
from stagecast.cache import TtlCache
from stagecast.channels.models import channel
from stagecast.db import Database, Kind
from stagecast.db.schema import Record
from stagecast.errors import NotFound, ServiceUnavailable, Unprocessable
from stagecast.live.models import live_init, live_rendition, live_session, segment
from stagecast.live.storage import SegmentStorage, StorageError
from stagecast.vod.thumbnails import ThumbnailError, grab_frame

MAX_LIMIT = 100
_PURPOSE = "channel-directory"
_SCOPE = "public"
_ON_AIR = ("live", "reconnecting")
THUMBNAIL_TTL = 5.0  # seconds a session's live thumbnail is served before a new grab
GRABS_AT_ONCE = 2
GRAB_TIMEOUT = 10.0  # seconds


@dataclass(frozen=True)
class Listed:
    """A public channel as the directory shows it; ``session_id`` is set while on air."""

    id: int
    slug: str
    owner: str
    title: str
    description: str
    next_info: str
    session_id: int | None
    state: str | None
    started_at: datetime | None


@dataclass(frozen=True)
class DirectoryPage:
    """One page of the directory: live channels first."""

    items: list[Listed]
    next_cursor: str | None
    has_more: bool


_COLUMNS = (
    channel.c.id,
    channel.c.slug,
    account.c.username.label("owner"),
    channel.c.title,
    channel.c.description,
    channel.c.next_info,
)
_PUBLIC = channel.c.visibility == literal_column("'public'")
# ``state <> 'ended'`` spelled as in the partial indexes' predicate, so both databases read
# only the open sessions (``ix_live_session_state``), never the table of every past broadcast.
_ON_AIR_SQL = and_(
    live_session.c.state != literal_column("'ended'"),
    live_session.c.state.in_([literal_column(f"'{s}'") for s in _ON_AIR]),
)


def _on_air_query(after_session: int | None, limit: int) -> Any:
    query = (
        select(
            *_COLUMNS,
            live_session.c.id.label("sid"),
            live_session.c.state,
            live_session.c.started_at,
        )
        .select_from(
            live_session.join(channel, channel.c.id == live_session.c.channel_id).join(
                account, account.c.id == channel.c.owner_id
            )
        )
        .where(_ON_AIR_SQL, _PUBLIC)
    )
    if after_session is not None:
        query = query.where(live_session.c.id < after_session)
    return query.order_by(live_session.c.id.desc()).limit(limit)


def _off_air_query(after_channel: int, limit: int) -> Any:
    on_air = exists().where(live_session.c.channel_id == channel.c.id, _ON_AIR_SQL)
    return (
        select(*_COLUMNS)
        .join(account, account.c.id == channel.c.owner_id)
        .where(_PUBLIC, channel.c.id > after_channel, ~on_air)
        .order_by(channel.c.id)
        .limit(limit)
    )


def _listed(row: Record, *, live: bool) -> Listed:
    return Listed(
        row.id,
        row.slug,
        row.owner,
        row.title,
        row.description,
        row.next_info,
        row.sid if live else None,
        row.state if live else None,
        row.started_at if live else None,
    )


def _position(secret: str, token: str | None) -> tuple[str, int | None]:
    """Return the run (``live`` or ``off``) and the key a page continues after."""
    if token is None:
        return "live", None
    run, key = cursors.decode(secret, _PURPOSE, _SCOPE, token, 2)
    if run not in ("live", "off"):
        raise cursors.BadCursor("malformed cursor")
    return str(run), cursors.int_key(key)


async def public_channels(
    db: Database, secret: str, *, limit: int, token: str | None, live_only: bool = False
) -> DirectoryPage:
    """Return a page of public channels, those on air first (``live_only``: only those).

    Raises Unprocessable for a bad limit, BadCursor (400) for a cursor we did not make.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise Unprocessable(f"limit must be 1-{MAX_LIMIT}")
    run, after = _position(secret, token)

    async def unit(conn: AsyncConnection) -> list[Listed]:
        found: list[Listed] = []
        if run == "live":
            rows = await conn.execute(_on_air_query(after, limit + 1))
            found = [_listed(r, live=True) for r in rows]
        if len(found) <= limit and not live_only:
            start = after if run == "off" and after is not None else 0
            rows = await conn.execute(_off_air_query(start, limit + 1 - len(found)))
            found += [_listed(r, live=False) for r in rows]
        return found

    found = await db.run(unit, kind=Kind.READ, name="channel_directory")
    items, has_more = found[:limit], len(found) > limit
    next_cursor = None
    if has_more:
        last = items[-1]
        key = ("live", last.session_id) if last.session_id is not None else ("off", last.id)
        next_cursor = cursors.encode(secret, _PURPOSE, _SCOPE, key)
    return DirectoryPage(items, next_cursor, has_more)


@dataclass(frozen=True)
class _Newest:
    init_path: str
    media_path: str


async def _newest_media(db: Database, session_id: int) -> _Newest | None:
    """Return the init and the newest recorded segment of the session's lowest rendition."""

    async def unit(conn: AsyncConnection) -> _Newest | None:
        rendition = (
            await conn.execute(
                select(live_rendition.c.name)
                .where(live_rendition.c.session_id == session_id)
                .order_by(live_rendition.c.bandwidth, live_rendition.c.name)
                .limit(1)
            )
        ).scalar_one_or_none()
        if rendition is None:
            return None
        newest = (
            await conn.execute(
                select(segment.c.path, segment.c.epoch)
                .where(segment.c.session_id == session_id, segment.c.rendition == rendition)
                .order_by(segment.c.sequence.desc())
                .limit(1)
            )
        ).one_or_none()
        if newest is None:
            return None
        init = (
            await conn.execute(
                select(live_init.c.path).where(
                    and_(
                        live_init.c.session_id == session_id,
                        live_init.c.rendition == rendition,
                        live_init.c.epoch == newest.epoch,
                    )
                )
            )
        ).scalar_one_or_none()
        return None if init is None else _Newest(init, newest.path)

    return await db.run(unit, kind=Kind.READ, name="live_thumbnail_media")


class LiveThumbnails:
    """JPEG frames of live sessions, grabbed on demand and cached ``THUMBNAIL_TTL`` seconds."""

    def __init__(self) -> None:
        self._cache: TtlCache[int, bytes] = TtlCache(
            max_entries=256, ttl=THUMBNAIL_TTL, stale=30.0, patience=0.0
        )
        self._grabs = asyncio.Semaphore(GRABS_AT_ONCE)

    async def of(
        self, db: Database, storage: SegmentStorage, ffmpeg: str, session_id: int
    ) -> bytes:
        """Return a recent frame of ``session_id`` as JPEG bytes.

        Raises NotFound when the session has no recorded segment yet, ServiceUnavailable when
        the media cannot be read or decoded now (a recent frame is served meanwhile if any).
        """
        return await self._cache.get(
            session_id, lambda: self._grab(db, storage, ffmpeg, session_id)
        )

    async def _grab(
        self, db: Database, storage: SegmentStorage, ffmpeg: str, session_id: int
    ) -> bytes:
        newest = await _newest_media(db, session_id)
        if newest is None:
            raise NotFound("no picture yet")
        async with self._grabs:
            try:
                init = await storage.read(newest.init_path)
                media = await storage.read(newest.media_path)
                return await grab_frame(ffmpeg, init, media, timeout=GRAB_TIMEOUT)
            except (FileNotFoundError, StorageError, ThumbnailError) as exc:
                raise ServiceUnavailable("no live picture now", retry_after=THUMBNAIL_TTL) from exc
