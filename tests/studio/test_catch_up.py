"""What a studio feed opened late says: the last five minutes while live, the VOD after the end.

A dashboard reloaded mid-broadcast must not start its charts empty, and one opened after the
end must not say the recording "appears once it is processed" when it is ready already.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.states import SessionState
from stagecast.studio import history
from stagecast.studio.history import Sample
from stagecast.studio.snapshots import ViewerFigures
from stagecast.vod.models import vod
from tests.conftest import RunningServer
from tests.studio.conftest import Message, fake_session, owned_channel, sse
from tests.studio.test_feeds import snapshot_of


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running server."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def events_url(slug: str) -> str:
    """Return the studio feed of ``slug``."""
    return f"/api/v1/studio/channels/{slug}/events"


async def _vod(db: Database, session_id: int, channel_id: int, owner_id: int, status: str) -> int:
    """Insert the session's VOD row in ``status``; return its id."""

    async def unit(conn: AsyncConnection) -> int:
        now = utcnow()
        row = {
            "session_id": session_id, "channel_id": channel_id, "owner_id": owner_id,
            "title": "Show", "description": "", "visibility": "inherit", "status": status,
            "started_at": now, "ended_at": now, "duration": 42.0, "created_at": now,
            "updated_at": now,
        }  # fmt: skip
        result = await conn.execute(insert(vod).values(**row).returning(vod.c.id))
        return int(result.scalar_one())

    return await db.run(unit, kind=Kind.WRITE)


async def test_a_feed_opened_while_live_starts_with_the_last_five_minutes(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Right after ``state``: the session's samples of the last five minutes, oldest first."""
    db = server.core.db
    owner, channel = await owned_channel(db)
    session_id = await fake_session(db, channel.id)
    now = utcnow().replace(microsecond=0)
    ages = [600, 290, 200, 10]  # seconds ago: the first is older than the charts show
    samples = [
        Sample(session_id, now - timedelta(seconds=a), a // 10, 2500.0 + a, "good") for a in ages
    ]
    await history.record(db, samples)
    async with sse(http, events_url(channel.slug), owner.headers) as feed:
        state = await feed.until(lambda m: m.event == "state")
        assert state.data == {"state": "live", "session_id": session_id}
        following = await feed.next()
    assert following.event == "history"
    assert following.data["session_id"] == session_id
    items = following.data["items"]
    assert [i["viewers"] for i in items] == [29, 20, 1]
    assert [i["bitrate_kbps"] for i in items] == [2790.0, 2700.0, 2510.0]
    assert items[0]["sampled_at"] < items[-1]["sampled_at"]


async def test_a_feed_opened_after_the_end_names_the_ready_vod(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """After the end: nobody watching, and a ``vod`` event once the recording is ready."""
    db = server.core.db
    owner, channel = await owned_channel(db)
    session_id = await fake_session(db, channel.id, state="ended")
    vod_id = await _vod(db, session_id, channel.id, owner.account.id, "processing")
    # What the publisher keeps of a session that ended here (the channel reads as offline).
    final = replace(
        snapshot_of(channel.id, session_id, ViewerFigures(0, 3, 5)), state=SessionState.ENDED
    )
    server.runtime.studio.publisher.ended.put(channel.id, final)

    async def opened() -> list[Message]:
        async with sse(http, events_url(channel.slug), owner.headers) as feed:
            await feed.until(lambda m: m.event == "viewers")
            await feed.next()  # the vod event, or the first heartbeat
            return feed.seen

    seen = await opened()
    assert next(m for m in seen if m.event == "viewers").data["current"] == 0
    assert all(m.event != "vod" for m in seen)  # processing: nothing to announce yet

    async def ready(conn: AsyncConnection) -> None:
        await conn.execute(vod.update().where(vod.c.id == vod_id).values(status="ready"))

    await db.run(ready, kind=Kind.WRITE)
    announced = next(m for m in await opened() if m.event == "vod")
    assert announced.data == {
        "type": "vod.ready", "vod_id": vod_id, "session_id": session_id,
        "channel_id": channel.id, "duration": 42.0,
    }  # fmt: skip
