"""Per-session history for the studio's charts: viewers and bit rate every 10 s while live.

The publisher samples the sessions this process holds and writes one batch per interval;
rows belong to their session (deleted with it). Writes are idempotent: a sample is keyed by
``(session_id, sampled_at)`` and a retried batch inserts nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.db.upsert import insert_or_ignore
from stagecast.live.models import live_session
from stagecast.studio.models import session_sample
from stagecast.vod.events import VodReady
from stagecast.vod.models import vod

MAX_PAGE = 5000


@dataclass(frozen=True)
class Sample:
    """One point of a session's history."""

    session_id: int
    sampled_at: datetime
    viewers: int
    bitrate_kbps: float | None
    verdict: str


async def record(db: Database, samples: Sequence[Sample]) -> None:
    """Store ``samples`` (one transaction; duplicates of a retried batch are skipped)."""
    if not samples:
        return
    rows = [
        {
            "session_id": s.session_id,
            "sampled_at": s.sampled_at,
            "viewers": s.viewers,
            "bitrate_kbps": s.bitrate_kbps,
            "verdict": s.verdict,
        }
        for s in samples
    ]

    async def unit(conn: AsyncConnection) -> None:
        # Sessions that ended (and may be gone) between the sample and the write are skipped.
        wanted = {r["session_id"] for r in rows}
        present = set(
            (
                await conn.execute(select(live_session.c.id).where(live_session.c.id.in_(wanted)))
            ).scalars()
        )
        kept = [r for r in rows if r["session_id"] in present]
        if kept:
            await conn.execute(
                insert_or_ignore(
                    conn, session_sample, kept, on="uq_session_sample_session_id_sampled_at"
                )
            )

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="record_samples")


async def session_channel(db: Database, session_id: int) -> int | None:
    """Return the channel of ``session_id`` (None if there is no such session)."""

    async def unit(conn: AsyncConnection) -> int | None:
        value = (
            await conn.execute(
                select(live_session.c.channel_id).where(live_session.c.id == session_id)
            )
        ).scalar_one_or_none()
        return int(value) if value is not None else None

    return await db.run(unit, kind=Kind.READ, name="session_channel")


async def samples(
    db: Database, session_id: int, *, after: datetime | None = None, limit: int = MAX_PAGE
) -> list[Sample]:
    """Return up to ``limit`` samples of ``session_id`` taken after ``after``, oldest first.

    Served by the unique index on ``(session_id, sampled_at)``.
    """

    async def unit(conn: AsyncConnection) -> list[Sample]:
        query = select(session_sample).where(session_sample.c.session_id == session_id)
        if after is not None:
            query = query.where(session_sample.c.sampled_at > after)
        rows = await conn.execute(query.order_by(session_sample.c.sampled_at).limit(limit))
        return [
            Sample(r.session_id, r.sampled_at, r.viewers, r.bitrate_kbps, r.verdict) for r in rows
        ]

    return await db.run(unit, kind=Kind.READ, name="session_samples")


async def recent(db: Database, session_id: int, seconds: float = 300.0) -> list[Sample]:
    """Return the samples of ``session_id`` of the last ``seconds`` seconds, oldest first.

    What a studio feed sends as it opens, so that a reloaded dashboard's charts start with
    the minutes before the reload (one indexed read per feed, none per tick).
    """
    return await samples(db, session_id, after=utcnow() - timedelta(seconds=seconds))


async def ready_vod(db: Database, session_id: int) -> VodReady | None:
    """Return the announcement of the session's VOD if it is ready (None while it is not).

    What a studio feed opened after the end says about the recording (the ``vod`` event it
    would have heard while it was processed). Served by the unique index on ``session_id``.
    """

    async def unit(conn: AsyncConnection) -> VodReady | None:
        row = (
            await conn.execute(
                select(vod.c.id, vod.c.channel_id, vod.c.duration).where(
                    vod.c.session_id == session_id,
                    vod.c.status == "ready",
                    vod.c.deleted_at.is_(None),
                )
            )
        ).one_or_none()
        if row is None:
            return None
        return VodReady(int(row.id), session_id, int(row.channel_id), float(row.duration or 0.0))

    return await db.run(unit, kind=Kind.READ, name="session_ready_vod")


@dataclass(frozen=True)
class SessionSummary:
    """A past or current broadcast of a channel, for the studio's history list."""

    id: int
    state: str
    title: str
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


async def channel_sessions(
    db: Database, channel_id: int, *, before_id: int | None = None, limit: int = 20
) -> tuple[list[SessionSummary], bool]:
    """Return the channel's sessions newest first, before ``before_id``, and whether more exist.

    Keyset over the ``(channel_id, id)`` index; ``limit + 1`` rows are read to set has_more.
    """

    async def unit(conn: AsyncConnection) -> tuple[list[SessionSummary], bool]:
        query = select(
            live_session.c.id,
            live_session.c.state,
            live_session.c.title,
            live_session.c.started_at,
            live_session.c.ended_at,
            live_session.c.end_reason,
        ).where(live_session.c.channel_id == channel_id)
        if before_id is not None:
            query = query.where(live_session.c.id < before_id)
        rows = (await conn.execute(query.order_by(live_session.c.id.desc()).limit(limit + 1))).all()
        found = [SessionSummary(*row) for row in rows[:limit]]
        return found, len(rows) > limit

    return await db.run(unit, kind=Kind.READ, name="channel_sessions")
