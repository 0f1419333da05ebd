"""Session lifecycle in the database: open, claim on reconnect, record media, disconnect, end.

Every transition is a conditional update (``WHERE state IN (...)``), so a late segment cannot
revive an ended session and two processes cannot both move one session. Ending a session runs
the registered end hooks inside the same transaction (that is how a VOD job becomes durable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.channels.models import channel
from stagecast.db import Database, Kind
from stagecast.db.schema import Record, UTCDateTime, utcnow
from stagecast.errors import Conflict
from stagecast.live.hooks import EndedSession, SessionHooks
from stagecast.live.models import live_init, live_rendition, live_session, segment
from stagecast.live.states import ACTIVE, PUBLISHING, SessionState


class AlreadyLive(Conflict):
    """The channel already has a publisher."""

    code = "already_live"


@dataclass(frozen=True)
class SessionRow:
    """A live session as the manager needs it."""

    id: int
    channel_id: int
    state: SessionState
    title: str
    profile: str
    reconnects: int
    started_at: datetime | None
    resumed: bool = False


@dataclass(frozen=True)
class SegmentRecord:
    """One archived segment, as stored."""

    session_id: int
    rendition: str
    sequence: int
    epoch: int
    discontinuity: bool
    duration: float
    byte_size: int
    program_date_time: datetime
    path: str


@dataclass(frozen=True)
class InitRecord:
    """The init segment of one rendition and epoch, as stored."""

    session_id: int
    rendition: str
    epoch: int
    path: str
    codecs: str


def _session(row: Record, *, resumed: bool = False) -> SessionRow:
    return SessionRow(
        row.id,
        row.channel_id,
        SessionState(row.state),
        row.title,
        row.profile,
        row.reconnects,
        row.started_at,
        resumed,
    )


async def open_session(
    db: Database,
    *,
    channel_id: int,
    title: str,
    profile: str,
    key_version: int,
    node: str,
) -> SessionRow:
    """Start a session for a new publisher, or take back one that is waiting for it.

    A ``reconnecting`` session is claimed (same session, reconnect counted); so is an active
    session this node owned (its process restarted, or its publisher left a moment ago and the
    move to ``reconnecting`` is still on its way; the manager refuses a second publisher of a
    session it holds before asking). Anything else active
    means another publisher is live: AlreadyLive.
    """

    async def unit(conn: AsyncConnection) -> SessionRow:
        current = (
            await conn.execute(
                select(live_session).where(
                    live_session.c.channel_id == channel_id,
                    live_session.c.state != SessionState.ENDED,
                )
            )
        ).one_or_none()
        if current is not None:
            return await _claim(conn, current, node=node, key_version=key_version)
        now = utcnow()
        try:
            created = (
                await conn.execute(
                    insert(live_session)
                    .values(
                        channel_id=channel_id,
                        state=SessionState.IDLE,
                        title=title,
                        profile=profile,
                        key_version=key_version,
                        owner_node=node,
                        reconnects=0,
                        created_at=now,
                        last_media_at=now,
                    )
                    .returning(*live_session.c)
                )
            ).one()
        except IntegrityError as exc:
            raise AlreadyLive("the channel is already live") from exc
        return _session(created)

    return await db.run(unit, kind=Kind.WRITE, name="open_session")


async def _claim(
    conn: AsyncConnection, current: Record, *, node: str, key_version: int
) -> SessionRow:
    claimable = current.state == SessionState.RECONNECTING or current.owner_node == node
    if not claimable:
        raise AlreadyLive("the channel is already live")
    result = await conn.execute(
        update(live_session)
        .where(live_session.c.id == current.id, live_session.c.state == current.state)
        .values(
            state=SessionState.LIVE if current.started_at is not None else SessionState.IDLE,
            owner_node=node,
            key_version=key_version,
            reconnects=live_session.c.reconnects + 1,
            disconnected_at=None,
            last_media_at=utcnow(),
        )
        .returning(*live_session.c)
    )
    row = result.one_or_none()
    if row is None:
        raise AlreadyLive("the channel is already live")
    return _session(row, resumed=True)


async def record_init(db: Database, record: InitRecord, *, deadline: float | None = None) -> None:
    """Store the init segment row of one rendition and epoch (replays are no-ops)."""

    async def unit(conn: AsyncConnection) -> None:
        exists = (
            await conn.execute(
                select(live_init.c.id).where(
                    live_init.c.session_id == record.session_id,
                    live_init.c.rendition == record.rendition,
                    live_init.c.epoch == record.epoch,
                )
            )
        ).first()
        if exists is None:
            await conn.execute(
                insert(live_init).values(
                    session_id=record.session_id,
                    rendition=record.rendition,
                    epoch=record.epoch,
                    path=record.path,
                    codecs=record.codecs,
                    created_at=utcnow(),
                )
            )

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="record_init", deadline=deadline)


async def record_segment(
    db: Database, record: SegmentRecord, *, touch: bool = True, deadline: float | None = None
) -> bool:
    """Archive one segment; False if the session has ended (the segment is then not stored).

    One conditional insert does both the state check and the write, so a late segment cannot
    revive or extend an ended session; replaying the same segment is a no-op. With ``touch``
    the session is also marked live (the first segment moves ``idle`` to ``live``) and its
    ``last_media_at`` refreshed — callers do that on the first segment and every few seconds.
    """
    active = select(live_session.c.id).where(
        live_session.c.id == record.session_id, live_session.c.state.in_(PUBLISHING)
    )
    duplicate = select(segment.c.id).where(
        segment.c.session_id == record.session_id,
        segment.c.rendition == record.rendition,
        segment.c.sequence == record.sequence,
    )
    values = select(
        literal(record.session_id),
        literal(record.rendition),
        literal(record.sequence),
        literal(record.epoch),
        literal(record.discontinuity),
        literal(record.duration),
        literal(record.byte_size),
        literal(record.program_date_time, UTCDateTime),
        literal(record.path),
        literal(utcnow(), UTCDateTime),
    ).where(exists(active), ~exists(duplicate))
    columns = [
        "session_id",
        "rendition",
        "sequence",
        "epoch",
        "discontinuity",
        "duration",
        "byte_size",
        "program_date_time",
        "path",
        "created_at",
    ]

    async def unit(conn: AsyncConnection) -> bool:
        if touch:
            touched = await conn.execute(
                update(live_session)
                .where(
                    live_session.c.id == record.session_id,
                    live_session.c.state.in_(PUBLISHING),
                )
                .values(
                    state=SessionState.LIVE,
                    last_media_at=utcnow(),
                    started_at=func.coalesce(live_session.c.started_at, record.program_date_time),
                )
            )
            if touched.rowcount != 1:
                return False
        inserted = await conn.execute(insert(segment).from_select(columns, values))
        if inserted.rowcount == 1:
            return True
        # Nothing inserted: either a replay (fine) or the session has ended.
        return (await conn.execute(active)).first() is not None

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="record_segment", deadline=deadline)


async def save_rendition(
    db: Database,
    *,
    session_id: int,
    name: str,
    codecs: str,
    width: int | None,
    height: int | None,
    frame_rate: float | None,
    bandwidth: int,
    average_bandwidth: int,
) -> None:
    """Create or refresh what the master playlist says about one rendition."""
    values: dict[str, Any] = {
        "codecs": codecs,
        "width": width,
        "height": height,
        "frame_rate": frame_rate,
        "bandwidth": bandwidth,
        "average_bandwidth": average_bandwidth,
    }

    async def unit(conn: AsyncConnection) -> None:
        where = and_(live_rendition.c.session_id == session_id, live_rendition.c.name == name)
        changed = await conn.execute(update(live_rendition).where(where).values(**values))
        if changed.rowcount == 0:
            await conn.execute(
                insert(live_rendition).values(session_id=session_id, name=name, **values)
            )

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="save_rendition")


async def disconnect(db: Database, session_id: int, node: str) -> bool:
    """Move a session whose publisher left to ``reconnecting``; False if it was not ours/active."""

    async def unit(conn: AsyncConnection) -> bool:
        result = await conn.execute(
            update(live_session)
            .where(
                live_session.c.id == session_id,
                live_session.c.state.in_(PUBLISHING),
                live_session.c.owner_node == node,
            )
            .values(state=SessionState.RECONNECTING, disconnected_at=utcnow())
        )
        return bool(result.rowcount == 1)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="disconnect_session")


async def end_session(
    db: Database,
    session_id: int,
    reason: str,
    hooks: SessionHooks,
    *,
    states: frozenset[SessionState] = ACTIVE,
) -> EndedSession | None:
    """End the session if it is in one of ``states``; run the end hooks in the same transaction.

    Returns the ended session, or None if it was already ended or had moved on (for example a
    publisher reconnected just before the grace window closed).
    """

    async def unit(conn: AsyncConnection) -> EndedSession | None:
        now = utcnow()
        row = (
            await conn.execute(
                update(live_session)
                .where(live_session.c.id == session_id, live_session.c.state.in_(states))
                .values(state=SessionState.ENDED, ended_at=now, end_reason=reason[:64])
                .returning(
                    live_session.c.channel_id, live_session.c.title, live_session.c.started_at
                )
            )
        ).one_or_none()
        if row is None:
            return None
        ended = EndedSession(session_id, row.channel_id, row.title, row.started_at, now, reason)
        for hook in hooks.on_ended:
            await hook(conn, ended)
        return ended

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="end_session")


async def owners(db: Database, *, channel_id: int | None = None) -> list[tuple[int, str]]:
    """Return ``(session_id, owner_node)`` of publishing sessions (of one channel, or all)."""

    async def unit(conn: AsyncConnection) -> list[tuple[int, str]]:
        query = select(live_session.c.id, live_session.c.owner_node).where(
            live_session.c.state.in_(PUBLISHING)
        )
        if channel_id is not None:
            query = query.where(live_session.c.channel_id == channel_id)
        rows = await conn.execute(query.limit(1000))
        return [(int(r.id), str(r.owner_node)) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="session_owners")


async def orphaned_sessions(db: Database, node: str) -> list[int]:
    """Return active sessions this node owned before it restarted (to put into reconnecting)."""

    async def unit(conn: AsyncConnection) -> list[int]:
        rows = await conn.execute(
            select(live_session.c.id).where(
                live_session.c.state.in_(PUBLISHING), live_session.c.owner_node == node
            )
        )
        return [int(r.id) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="orphaned_sessions")


async def expired_sessions(
    db: Database, *, grace: float, stale_after: float
) -> list[tuple[int, SessionState]]:
    """Return ``(session_id, state)`` of sessions past their grace window or silent too long."""
    now = utcnow()

    async def unit(conn: AsyncConnection) -> list[tuple[int, SessionState]]:
        rows = await conn.execute(
            select(live_session.c.id, live_session.c.state)
            .where(
                (
                    (live_session.c.state == SessionState.RECONNECTING)
                    & (live_session.c.disconnected_at < now - timedelta(seconds=grace))
                )
                | (
                    live_session.c.state.in_(PUBLISHING)
                    & (live_session.c.last_media_at < now - timedelta(seconds=stale_after))
                )
            )
            .limit(500)
        )
        return [(int(r.id), SessionState(r.state)) for r in rows]

    return await db.run(unit, kind=Kind.READ, name="expired_sessions")


async def resume_point(db: Database, session_id: int) -> tuple[int, dict[str, int]]:
    """Return the last epoch and, per rendition, the next free sequence of a session."""

    async def unit(conn: AsyncConnection) -> tuple[int, dict[str, int]]:
        epoch = (
            await conn.execute(
                select(func.max(live_init.c.epoch)).where(live_init.c.session_id == session_id)
            )
        ).scalar_one_or_none()
        rows = await conn.execute(
            select(segment.c.rendition, func.max(segment.c.sequence))
            .where(segment.c.session_id == session_id)
            .group_by(segment.c.rendition)
        )
        return int(epoch or 0), {str(r[0]): int(r[1]) + 1 for r in rows}

    return await db.run(unit, kind=Kind.READ, name="resume_point")


async def recent_segments(
    db: Database, session_id: int, rendition: str, limit: int
) -> list[tuple[SegmentRecord, str]]:
    """Return the newest ``limit`` segments of a rendition (oldest first) with their init path."""

    async def unit(conn: AsyncConnection) -> list[tuple[SegmentRecord, str]]:
        rows = (
            await conn.execute(
                select(segment, live_init.c.path.label("init_path"))
                .join(
                    live_init,
                    and_(
                        live_init.c.session_id == segment.c.session_id,
                        live_init.c.rendition == segment.c.rendition,
                        live_init.c.epoch == segment.c.epoch,
                    ),
                )
                .where(segment.c.session_id == session_id, segment.c.rendition == rendition)
                .order_by(segment.c.sequence.desc())
                .limit(limit)
            )
        ).all()
        return [
            (
                SegmentRecord(
                    r.session_id,
                    r.rendition,
                    r.sequence,
                    r.epoch,
                    r.discontinuity,
                    r.duration,
                    r.byte_size,
                    r.program_date_time,
                    r.path,
                ),
                str(r.init_path),
            )
            for r in reversed(rows)
        ]

    return await db.run(unit, kind=Kind.READ, name="recent_segments")


@dataclass(frozen=True)
class ChannelLive:
    """What a viewer needs to find a channel's current broadcast."""

    channel_id: int
    slug: str
    title: str
    owner_id: int
    visibility: str
    session_id: int | None
    state: SessionState | None
    started_at: datetime | None
    latency: str  # "low" or "standard": the channel setting, for its next session


async def channel_live(db: Database, slug: str) -> ChannelLive | None:
    """Return the channel ``slug`` and its active session (if any), or None if no such channel."""

    async def unit(conn: AsyncConnection) -> ChannelLive | None:
        row = (
            await conn.execute(
                select(
                    channel.c.id,
                    channel.c.slug,
                    channel.c.title,
                    channel.c.owner_id,
                    channel.c.visibility,
                    live_session.c.id.label("session_id"),
                    live_session.c.state,
                    live_session.c.started_at,
                    channel.c.latency,
                )
                .select_from(
                    channel.outerjoin(
                        live_session,
                        and_(
                            live_session.c.channel_id == channel.c.id,
                            live_session.c.state != SessionState.ENDED,
                        ),
                    )
                )
                .where(channel.c.slug == slug)
            )
        ).first()
        if row is None:
            return None
        return ChannelLive(
            row.id,
            row.slug,
            row.title,
            row.owner_id,
            row.visibility,
            row.session_id,
            SessionState(row.state) if row.state is not None else None,
            row.started_at,
            row.latency,
        )

    return await db.run(unit, kind=Kind.READ, name="channel_live")
