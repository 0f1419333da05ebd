"""Database faults at go-live and in the middle of a stream: the live edge never waits on them.

The faults are real: another connection holds SQLite's write lock (``BEGIN EXCLUSIVE``) or
PostgreSQL table locks (``LOCK TABLE ... ACCESS EXCLUSIVE``) while media arrives.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.bus import MemoryBus
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.db import Database, Kind
from stagecast.live import service
from stagecast.live.hooks import SessionHooks
from stagecast.live.manager import LiveManager
from stagecast.live.models import live_init, segment
from stagecast.live.session import LiveDeps, LiveSession
from stagecast.live.storage import LocalStorage
from tests.conftest import PG_URL, _asyncpg_dsn, make_settings, serve, stalled
from tests.live.streaming import (
    first_variant,
    make_channel,
    publish,
    vod_playlist,
    wait_for,
    wait_for_ready_vod,
    wait_for_segments,
)


async def _count(db: Database, table: object, session_id: int) -> int:
    async def unit(conn: AsyncConnection) -> int:
        column = table.c.session_id  # type: ignore[attr-defined]
        query = select(func.count()).select_from(table).where(column == session_id)  # type: ignore[arg-type]
        return int((await conn.execute(query)).scalar_one())

    return await db.run(unit, kind=Kind.READ, name="count")


async def test_an_init_segment_during_a_stall_is_played_at_once_and_recorded_after(
    settings: Settings,
    db: Database,
    cmaf: tuple[bytes, list[bytes]],
) -> None:
    """Init and segments arriving while the database is locked are listed at once; their rows
    (the init's first) are all written once it is free, so the recording is whole."""
    owner = await accounts.create_account(db, "caster", "password123", "broadcaster")
    created, _ = await channels.create_channel(db, owner, "stall")
    row = await service.open_session(
        db, channel_id=created.id, title="t", profile="passthrough", key_version=1, node="n"
    )
    deps = LiveDeps(
        db, LocalStorage(settings.data_dir / "media"), SessionHooks(), MemoryBus(), 6, 2.0
    )
    session = LiveSession(deps, row, slug="stall", dvr_seconds=0, epoch=0, next_sequences={})
    init, segments = cmaf
    async with stalled(settings, "live_init", "live_rendition", "segment"):
        async with asyncio.timeout(2):  # far below the database layer's 5 s deadline
            await session.add_init("source", init)
            for data in segments:
                assert await session.add_segment("source", data)
        assert session.playlist_text("source").count("#EXTINF") == 5  # type: ignore[union-attr]
        assert 'CODECS="avc1.' in (session.master_text() or "")
        assert session.init_data("source", 0) == init
        assert session.unarchived == 6  # the init's row and five segment rows wait
    assert await session.flush(30)
    assert await _count(db, live_init, row.id) == 1
    assert await _count(db, segment, row.id) == 5
    await session.close_playlists()


async def _lock_session_row(settings: Settings, channel_id: int) -> asyncpg.Connection:
    """Hold channel ``channel_id``'s active session row locked (FOR UPDATE) in a transaction."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(_asyncpg_dsn(settings.database_url), timeout=10)
    await conn.execute("BEGIN")
    await conn.execute(
        "SELECT id FROM live_session WHERE channel_id = $1 AND state <> 'ended' FOR UPDATE",
        channel_id,
    )
    return conn


async def _until_waiting_on_a_lock(settings: Settings, task: asyncio.Task[object]) -> None:
    """Poll (from a connection of its own: activity is a snapshot per transaction) until a
    query on ``live_session`` waits for a lock; fail at once if ``task`` ends first."""
    assert settings.database_url is not None
    watcher = await asyncpg.connect(_asyncpg_dsn(settings.database_url), timeout=10)
    try:
        async with asyncio.timeout(10):
            while not await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%live_session%'"
            ):
                assert not task.done(), task
                await asyncio.sleep(0.02)
    finally:
        await watcher.close()


@pytest.mark.skipif(not PG_URL, reason="set STAGECAST_TEST_DATABASE_URL")
async def test_a_channel_stuck_in_the_database_does_not_hold_up_another(
    tmp_path: Path, pg_url: str
) -> None:
    """While one channel's publish waits on a locked row, another channel goes live at once."""
    settings = make_settings(tmp_path / "data", pg_url)
    async with serve(settings) as server:
        manager: LiveManager = server.runtime.live.manager
        db = server.core.db
        owner = await accounts.create_account(db, "two", "password123", "broadcaster")
        stuck, stuck_key = await channels.create_channel(db, owner, "stuck")
        free, free_key = await channels.create_channel(db, owner, "free")
        stuck_match = await channels.verify_stream_key(db, stuck_key)
        free_match = await channels.verify_stream_key(db, free_key)
        assert stuck_match is not None
        assert free_match is not None

        async def kick(reason: str) -> None:
            return None

        first = await manager.acquire(stuck_match, kick)
        await manager.release(first, "test")  # now reconnecting: the next publish claims the row
        blocker = await _lock_session_row(settings, stuck.id)
        try:
            waiting = asyncio.create_task(manager.acquire(stuck_match, kick))
            await _until_waiting_on_a_lock(settings, waiting)
            async with asyncio.timeout(10):
                other = await manager.acquire(free_match, kick)
            assert other.channel_id == free.id
            assert not waiting.done()  # the stuck channel is still waiting on its row
        finally:
            await blocker.execute("ROLLBACK")
            await blocker.close()
        resumed = await waiting
        assert resumed.id == first.id


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str) -> Settings:
    """PostgreSQL settings with a short grace window and a fast VOD worker."""
    return make_settings(
        tmp_path / "data",
        pg_url,
        reconnect_grace_seconds=2.0,
        live_window_segments=4,
        vod_poll_seconds=0.2,
    )


@pytest.mark.skipif(not PG_URL, reason="set STAGECAST_TEST_DATABASE_URL")
@pytest.mark.ffmpeg
async def test_tables_locked_at_go_live_neither_stop_the_stream_nor_empty_the_vod(
    pg_settings: Settings,
) -> None:
    """With the init and rendition tables locked as the encoder starts, the stream plays; once
    they are free, the VOD holds every segment the encoder sent."""
    async with serve(pg_settings) as server:
        key = await make_channel(server, "golive", owner="gl-owner")
        owner = await accounts.get_account(server.core.db, "gl-owner")
        token = await accounts.create_api_token(server.core.db, owner.id, "t")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            async with publish(server, key, 10) as encoder:
                async with stalled(pg_settings, "live_init", "live_rendition"):
                    live = await wait_for(
                        http, "/api/v1/channels/golive/live", lambda b: b["master_url"], 30
                    )
                    variant = f"/hls/golive/{await first_variant(http, live['master_url'])}"
                    await wait_for_segments(http, variant, 2)
                await encoder.wait()
            vod = await wait_for_ready_vod(http, token)
            playlist = await vod_playlist(http, vod)
        rows = await _count(server.core.db, segment, live["session_id"])
        assert rows >= 4  # ~10 s of 2 s segments
        assert len(playlist.segments) == rows
        assert await _count(server.core.db, live_init, live["session_id"]) == 1


@pytest.mark.skipif(not PG_URL, reason="set STAGECAST_TEST_DATABASE_URL")
@pytest.mark.ffmpeg
async def test_viewers_keep_getting_playlists_while_the_channel_tables_are_locked(
    pg_settings: Settings,
) -> None:
    """With the channel and session tables locked mid-stream, the master and media playlists
    still answer at once, and the media playlist keeps moving."""
    async with serve(pg_settings) as server:
        key = await make_channel(server, "steady-view")
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as http,
            publish(server, key, 16),
        ):
            live = await wait_for(
                http, "/api/v1/channels/steady-view/live", lambda b: b["master_url"], 30
            )
            variant = f"/hls/steady-view/{await first_variant(http, live['master_url'])}"
            before = await wait_for_segments(http, variant, 2)
            tables = ("channel", "live_session", "live_init", "live_rendition", "segment")
            async with stalled(pg_settings, *tables):
                async with asyncio.timeout(10):
                    while (text := await _quick(http, variant)).count("#EXTINF") <= before.count(
                        "#EXTINF"
                    ) and text == before:
                        assert (await _quick_response(http, live["master_url"])).status_code == 200
                        await asyncio.sleep(0.3)
            assert text != before  # a newer playlist was served while the tables were locked


async def _quick_response(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET ``url``, failing if it takes longer than a viewer would wait (1.5 s)."""
    async with asyncio.timeout(1.5):
        return await http.get(url)


async def _quick(http: httpx.AsyncClient, url: str) -> str:
    response = await _quick_response(http, url)
    assert response.status_code == 200, response.text
    return response.text
