"""HTTP push during a database stall: a live pusher's segments are taken, and none is lost."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.db import Kind
from stagecast.live.models import segment
from tests.live.test_db_faults import stalled

_TABLES = ("channel", "live_session", "live_init", "live_rendition", "segment")


async def test_a_live_pusher_keeps_pushing_through_a_database_stall(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    cmaf: tuple[bytes, list[bytes]],
) -> None:
    """Once live, a pusher's requests need no database: segments pushed while it is locked
    are answered 204 and listed at once, and their rows are all written once it is free."""
    core = app.state.runtime.core
    owner = await accounts.create_account(core.db, "pusher", "password123", "broadcaster")
    created, key = await channels.create_channel(core.db, owner, "through")
    auth = {"Authorization": f"Bearer {key}"}
    init, segments = cmaf
    base = "/ingest/through/source"
    assert (await client.put(f"{base}/init.mp4", content=init, headers=auth)).status_code == 204
    first = await client.put(f"{base}/seg-0.m4s", content=segments[0], headers=auth)
    assert first.status_code == 204
    session = app.state.runtime.live.manager.local(created.id)
    assert session is not None
    assert await session.flush(10)  # nothing of ours holds a lock the stall must wait for
    async with stalled(settings, *_TABLES):
        async with asyncio.timeout(3):  # well inside the database layer's 5 s deadline
            for number, data in enumerate(segments[1:], start=1):
                put = await client.put(f"{base}/seg-{number}.m4s", content=data, headers=auth)
                assert put.status_code == 204, put.text
        assert session.playlist_text("source").count("#EXTINF") == 5  # type: ignore[union-attr]
        scrape = (await client.get("/metrics")).text
        assert "stagecast_live_archive_rows_waiting 4.0" in scrape  # the stalled segments' rows
        assert "stagecast_live_archive_rows_dropped_total 0.0" in scrape
    assert await session.flush(30)
    assert "stagecast_live_archive_rows_waiting 0.0" in (await client.get("/metrics")).text

    async def rows(conn: AsyncConnection) -> int:
        query = select(func.count()).select_from(segment).where(segment.c.session_id == session.id)
        return int((await conn.execute(query)).scalar_one())

    assert await core.db.run(rows, kind=Kind.READ, name="rows") == 5


async def test_a_rotated_key_is_checked_afresh_and_refused(
    client: httpx.AsyncClient,
    app: FastAPI,
    cmaf: tuple[bytes, list[bytes]],
) -> None:
    """After a rotation the pusher's old key is no longer recognised from memory: 401."""
    core = app.state.runtime.core
    owner = await accounts.create_account(core.db, "rotator", "password123", "broadcaster")
    await channels.create_channel(core.db, owner, "turned")
    _, key = await channels.rotate_key(core.db, "turned")  # a key of version 2
    auth = {"Authorization": f"Bearer {key}"}
    init, segments = cmaf
    base = "/ingest/turned/source"
    assert (await client.put(f"{base}/init.mp4", content=init, headers=auth)).status_code == 204
    rotated, _ = await channels.rotate_key(core.db, "turned")
    assert await channels.announce_rotation(core.bus, rotated)
    async with asyncio.timeout(10):
        while (put := await client.put(f"{base}/seg-0.m4s", content=segments[0], headers=auth))\
                .status_code == 204:  # fmt: skip
            await asyncio.sleep(0.05)  # the kick travels over the bus to the manager
    assert put.status_code == 401


async def test_bytes_that_are_not_media_never_open_a_session(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The right key with garbage bytes is refused (415) before any session opens."""
    core = app.state.runtime.core
    owner = await accounts.create_account(core.db, "garbler", "password123", "broadcaster")
    created, key = await channels.create_channel(core.db, owner, "garbage")
    auth = {"Authorization": f"Bearer {key}"}
    for name, body in (("init.mp4", b"not an mp4 at all"), ("seg-1.m4s", b"\x00" * 64)):
        put = await client.put(f"/ingest/garbage/source/{name}", content=body, headers=auth)
        assert put.status_code == 415
        assert put.json()["error"]["message"]
    assert app.state.runtime.live.manager.local(created.id) is None
