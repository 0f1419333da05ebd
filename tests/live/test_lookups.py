"""The slug lookups: kept current over the bus, and no query for a slug no channel can have."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import event

from stagecast.auth.service import get_account
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.live.states import SessionState, StateChanged, announce_state
from tests.conftest import RunningServer, serve
from tests.live.streaming import make_channel


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A running Stagecast."""
    async with serve(settings) as running:
        yield running


async def test_a_state_change_anywhere_drops_the_cached_slug(server: RunningServer) -> None:
    """A session change announced on the bus (by any process) drops the slug at once, so the
    next request sees the new session without waiting for the cache to expire."""
    await make_channel(server, "followed")
    lookups = server.runtime.live.lookups
    lookups.cache.ttl = 3600.0  # only the bus can explain a refresh now
    found = await lookups.channel("followed")
    assert found is not None
    assert lookups.cache.peek("followed") is not None
    changed = StateChanged(SessionState.LIVE, 99, "followed")
    await announce_state(server.core.bus, changed, found.channel_id)
    async with asyncio.timeout(5):
        while lookups.cache.peek("followed") is not None:
            await asyncio.sleep(0.01)


async def test_impossible_slugs_cost_no_query(server: RunningServer) -> None:
    """A slug with a NUL, upper case or 300 characters is unknown without asking the database,
    and the media path answers 404 for it (not a 500 on PostgreSQL)."""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = server.core.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for slug in ("bad\x00slug", "UPPER", "x" * 300, "-dash"):
            assert await server.runtime.live.lookups.channel(slug) is None
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert not [s for s in statements if "channel" in s]
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/hls/bad%00slug/master.m3u8")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_an_edit_of_the_channel_reaches_the_cache_at_once(server: RunningServer) -> None:
    """Making a channel private drops it from every process's lookups over the bus: the next
    request sees the new visibility, not the cached one (the expiry is set out of reach)."""
    await make_channel(server, "edited", owner="edit-owner")
    lookups = server.runtime.live.lookups
    lookups.cache.ttl = 3600.0
    before = await lookups.channel("edited")
    assert before is not None
    assert before.visibility == "public"
    owner = await get_account(server.core.db, "edit-owner")
    changed = await channels.update_channel(
        server.core.db, owner, "edited", {"visibility": "private"}
    )
    await channels.announce_change(server.core.bus, changed)
    async with asyncio.timeout(5):
        while lookups.cache.peek("edited") is not None:
            await asyncio.sleep(0.01)
    after = await lookups.channel("edited")
    assert after is not None
    assert after.visibility == "private"
