"""Which live session is on air for a channel, cached for a moment per channel.

Every message records the session it was sent during and its media time, so a VOD can replay
its chat in sync. Looking the session up for every message would add a query per post at high
rates; a session starts or ends rarely, so one read per channel every ``ttl`` seconds is enough.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.chat.messages import OnAirMark
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.models import live_session
from stagecast.live.states import ON_AIR


class OnAir:
    """Per-channel cache of the live session (id and start time), ``ttl`` seconds old at most."""

    def __init__(self, db: Database, *, ttl: float = 2.0, max_channels: int = 10_000) -> None:
        self._db = db
        self._ttl = ttl
        self._max = max_channels
        self._cache: dict[int, tuple[float, tuple[int, datetime] | None]] = {}
        self._loading: dict[int, asyncio.Task[tuple[int, datetime] | None]] = {}

    async def mark(self, channel_id: int) -> OnAirMark | None:
        """Return the session on air and the media time now, or None when nothing is live."""
        entry = self._cache.get(channel_id)
        if entry is not None and entry[0] > time.monotonic():
            session = entry[1]
        else:
            session = await self._load(channel_id)
        if session is None:
            return None
        session_id, started_at = session
        return OnAirMark(session_id, round(max((utcnow() - started_at).total_seconds(), 0.0), 3))

    async def _load(self, channel_id: int) -> tuple[int, datetime] | None:
        # Concurrent posts to one channel share one read.
        task = self._loading.get(channel_id)
        if task is None:
            task = asyncio.ensure_future(self._read(channel_id))
            self._loading[channel_id] = task
            task.add_done_callback(lambda _: self._loading.pop(channel_id, None))
        session = await asyncio.shield(task)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[channel_id] = (time.monotonic() + self._ttl, session)
        return session

    async def _read(self, channel_id: int) -> tuple[int, datetime] | None:
        async def unit(conn: AsyncConnection) -> tuple[int, datetime] | None:
            row = (
                await conn.execute(
                    select(live_session.c.id, live_session.c.started_at, live_session.c.created_at)
                    .where(
                        live_session.c.channel_id == channel_id,
                        live_session.c.state.in_(ON_AIR),
                    )
                    .order_by(live_session.c.id.desc())
                    .limit(1)
                )
            ).one_or_none()
            if row is None:
                return None
            return int(row.id), row.started_at or row.created_at

        return await self._db.run(unit, kind=Kind.READ, name="chat_on_air")
