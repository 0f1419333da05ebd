"""HTTP push: bytes that are not playable media are refused before any session exists."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.db import Kind
from stagecast.live.models import live_session
from tests.conftest import RunningServer


async def _sessions(running: RunningServer) -> int:
    """Return how many live sessions (the broadcast history) the database holds."""

    async def unit(conn: AsyncConnection) -> int:
        return int(
            (await conn.execute(select(func.count()).select_from(live_session))).scalar_one()
        )

    return await running.core.db.run(unit, kind=Kind.READ, name="count_sessions")


async def test_media_that_does_not_parse_opens_no_session(
    live_server: RunningServer, cmaf: tuple[bytes, list[bytes]]
) -> None:
    """An init whose ftyp is followed by junk, and a moof segment with no init before it, get
    415 with a message, and leave no session and no broadcast in the history."""
    db = live_server.core.db
    owner = await accounts.create_account(db, "pushy", "password123", "broadcaster")
    created, key = await channels.create_channel(db, owner, "pushy")
    auth = {"Authorization": f"Bearer {key}"}
    init, segments = cmaf
    ftyp = init[: int.from_bytes(init[:4], "big")]
    junk_init = ftyp + b"\x00\x00\x00\x10moov" + b"\xff" * 8  # a sane ftyp, then no movie
    base = f"{live_server.url}/ingest/pushy/source"
    async with httpx.AsyncClient(timeout=10) as client:
        for name, body in (("init.mp4", junk_init), ("seg-1.m4s", segments[0])):
            response = await client.put(f"{base}/{name}", content=body, headers=auth)
            assert response.status_code == 415, (name, response.text)
            assert response.json()["error"]["message"]
        assert live_server.runtime.live.manager.local(created.id) is None
        assert await _sessions(live_server) == 0
        history = await client.get(f"{live_server.url}/api/v1/channels/pushy/live")
        assert (history.json()["live"], history.json()["started_at"]) == (False, None)


async def test_a_pusher_resuming_its_session_may_send_segments_first(
    live_server: RunningServer, cmaf: tuple[bytes, list[bytes]]
) -> None:
    """A pusher that went quiet and comes back within the grace window with a segment (no new
    init) continues its held session: the check does not refuse what the session can play."""
    db = live_server.core.db
    owner = await accounts.create_account(db, "resumer", "password123", "broadcaster")
    created, key = await channels.create_channel(db, owner, "resumer")
    auth = {"Authorization": f"Bearer {key}"}
    init, segments = cmaf
    base = f"{live_server.url}/ingest/resumer/source"
    push = live_server.runtime.ingest.http_push
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.put(f"{base}/init.mp4", content=init, headers=auth)).status_code == 204
        first = await client.put(f"{base}/seg-0.m4s", content=segments[0], headers=auth)
        assert first.status_code == 204
        session = live_server.runtime.live.manager.local(created.id)
        assert session is not None
        await push.close()  # the pusher's watchdog lets it go, as after a quiet spell
        await live_server.runtime.live.manager.release(session, "HTTP pusher went quiet")
        again = await client.put(f"{base}/seg-1.m4s", content=segments[1], headers=auth)
        assert again.status_code == 204, again.text
    assert live_server.runtime.live.manager.local(created.id) is session
    assert session.playlist_text("source").count("#EXTINF") == 2  # type: ignore[union-attr]
    assert await _sessions(live_server) == 1
