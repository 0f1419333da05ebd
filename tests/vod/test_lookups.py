"""VOD playback from memory: no database read per request, kept current over the bus, 304s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any
from urllib.parse import urljoin

import asyncpg
import httpx
import m3u8
import pytest
from fastapi import FastAPI
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.app import create_app
from stagecast.bus import Gap
from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database
from stagecast.runtime import Runtime
from stagecast.vod.events import VOD_CHANGED_TOPIC, VodChanged
from stagecast.vod.lookups import FACTS_TTL, Lookups
from stagecast.vod.models import vod
from tests.conftest import (
    PG_URL,
    REDIS_URL,
    _asyncpg_dsn,
    needs_redis,
    truncate_all,
    unique,
)
from tests.vod.conftest import Watched, record_vod
from tests.vod.media import Media

_WATCHING: ContextVar[list[str] | None] = ContextVar("watching", default=None)
_NEVER = 3600.0  # a facts TTL no test outlives: only the bus can make them change


class Statements:
    """Every SQL statement the requests made inside ``during()`` sent (this task and the
    tasks it started; the app's background loops are not counted)."""

    def __init__(self, db: Database) -> None:
        self._engine = db.engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        seen = _WATCHING.get()
        if seen is not None:
            seen.append(str(args[2]))

    @contextlib.contextmanager
    def during(self) -> Iterator[list[str]]:
        """Collect the statements sent by what runs in this block."""
        seen: list[str] = []
        token = _WATCHING.set(seen)
        try:
            yield seen
        finally:
            _WATCHING.reset(token)

    def close(self) -> None:
        """Stop listening."""
        event.remove(self._engine, "before_cursor_execute", self._seen)


@pytest.fixture
def statements(app: FastAPI) -> Iterator[Statements]:
    """The SQL the app sends on behalf of the test's requests."""
    watching = Statements(app.state.runtime.core.db)
    yield watching
    watching.close()


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def _play(client: httpx.AsyncClient, vod_id: int, **params: str) -> list[str]:
    """Fetch what a player fetches (master, every playlist, init and segment, thumbnail);
    return the URLs, each checked to answer 200."""
    master_url = f"/hls/vods/{vod_id}/master.m3u8"
    urls = [master_url, f"/hls/vods/{vod_id}/thumbnail.jpg"]
    master = await client.get(master_url, params=params)
    assert master.status_code == 200, master.text
    for variant in m3u8.loads(master.text).playlists:
        url = urljoin(master_url, variant.uri)
        urls.append(url)
        playlist = await client.get(url)
        assert playlist.status_code == 200
        for seg in m3u8.loads(playlist.text).segments:
            urls += [urljoin(url, seg.init_section.uri), urljoin(url, seg.uri)]
    for url in urls:
        got = await client.get(url, params=params if url.endswith(".jpg") else None)
        assert got.status_code == 200, (url, got.text)
        assert (await client.head(url)).status_code == 200
    return urls


async def test_a_ready_vod_plays_without_reading_the_database(
    watched: Watched, statements: Statements, app: FastAPI
) -> None:
    """Once a VOD has been looked up, every playlist, segment, the thumbnail and the watch page
    answer with no SQL at all, and the playlists are not read from storage again."""
    client, lookups = watched.client, _runtime(app).vod.lookups
    with statements.during() as first:
        await _play(client, watched.vod_id)
    assert any("FROM vod" in sql for sql in first)  # the one lookup: the counting works
    misses = lookups.playlists.misses
    with statements.during() as again:
        played = await _play(client, watched.vod_id)
        assert (await client.get(f"/v/{watched.vod_id}")).status_code == 200
    assert len(played) > 20
    assert again == []
    assert lookups.playlists.misses == misses


@pytest.mark.parametrize("vod_id", ["0", "-1", "abc", "01", "1e3", "9" * 19, "1%00", "%201", "１"])
async def test_bad_ids_are_404_without_a_query(
    watched: Watched, statements: Statements, vod_id: str
) -> None:
    """Ids that cannot exist answer 404 before any lookup."""
    with statements.during() as seen:
        for tail in ("master.m3u8", "high/vod.m3u8", "high/seg-00000000.m4s", "thumbnail.jpg"):
            got = await watched.client.get(f"/hls/vods/{vod_id}/{tail}")
            assert got.status_code == 404
            assert got.json()["error"]["code"] == "not_found"
    assert seen == []


async def test_an_unknown_id_is_404_and_looked_up_once(
    watched: Watched, statements: Statements
) -> None:
    """An id with no VOD answers 404; asking again (any file of it) reads nothing."""
    with statements.during() as first:
        assert (await watched.client.get("/hls/vods/987654/master.m3u8")).status_code == 404
    assert len(first) >= 1
    with statements.during() as again:
        for tail in ("master.m3u8", "high/vod.m3u8", "high/seg-00000000.m4s", "thumbnail.jpg"):
            assert (await watched.client.get(f"/hls/vods/987654/{tail}")).status_code == 404
        assert (await watched.client.get("/v/987654")).status_code == 404
    assert again == []


async def test_a_matching_if_none_match_answers_304(watched: Watched) -> None:
    """Playlists carry a strong ETag; If-None-Match with it (or W/ it, or *) answers 304 with
    the same validators and no body; another ETag answers 200."""
    client = watched.client
    master = await client.get(watched.master)
    variant = urljoin(watched.master, m3u8.loads(master.text).playlists[0].uri)
    for url in (watched.master, variant):
        full = await client.get(url)
        etag = full.headers["etag"]
        assert etag.startswith('"')
        assert etag.endswith('"')
        for condition in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            cached = await client.get(url, headers={"If-None-Match": condition})
            assert cached.status_code == 304
            assert cached.content == b""
            assert cached.headers["etag"] == etag
            assert cached.headers["cache-control"] == "public, max-age=10"
        other = await client.get(url, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200
        assert other.content == full.content
        head = await client.head(url, headers={"If-None-Match": etag})
        assert head.status_code == 304


async def test_a_token_carried_into_a_playlist_has_an_etag_of_its_own(watched: Watched) -> None:
    """A private VOD's playlist served with a token has an ETag naming the token: its own
    ETag answers 304, another token's (or the bare playlist's) answers 200."""
    client, url = watched.client, f"/api/v1/studio/vods/{watched.vod_id}"
    assert (
        await client.patch(url, json={"visibility": "private"}, headers=watched.owner)
    ).is_success
    issued = []
    for hours in (1, 2):  # tokens are signed expiries: two of them, two lifetimes
        made = await client.post(
            f"{url}/playback-tokens", json={"hours": hours}, headers=watched.owner
        )
        issued.append(made.json()["token"])
    first = await client.get(watched.master, params={"token": issued[0]})
    second = await client.get(watched.master, params={"token": issued[1]})
    staff = await client.get(watched.master, headers=watched.owner)
    etags = {first.headers["etag"], second.headers["etag"], staff.headers["etag"]}
    assert len(etags) == 3
    assert issued[0] in first.text
    assert issued[1] in second.text
    assert "token=" not in staff.text
    again = await client.get(
        watched.master,
        params={"token": issued[0]},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.headers["cache-control"] == "private, max-age=10"
    crossed = await client.get(
        watched.master,
        params={"token": issued[1]},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert crossed.status_code == 200


async def _set_visibility(db: Database, vod_id: int, visibility: str) -> None:
    """Change a VOD behind the API's back: no announcement."""

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(update(vod).where(vod.c.id == vod_id).values(visibility=visibility))

    await db.run(unit, kind=Kind.WRITE)


async def _until(check: Any, seconds: float = 5.0) -> None:
    """Wait (polling) until ``await check()`` is true; fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.01)


async def test_an_announced_change_reaches_playback_over_the_bus(
    watched: Watched, app: FastAPI
) -> None:
    """Cached facts are used as they are until ``vods.changed`` names the VOD: then the next
    request sees the change (the TTL is out of reach)."""
    lookups = _runtime(app).vod.lookups
    lookups.facts.clear()
    lookups.facts.ttl = _NEVER
    client = watched.client
    assert (await client.get(watched.master)).status_code == 200
    await _set_visibility(watched.core.db, watched.vod_id, "private")
    assert (await client.get(watched.master)).status_code == 200  # cached: no announcement yet
    await VOD_CHANGED_TOPIC.publish(watched.core.bus, VodChanged(watched.vod_id, "updated"))

    async def hidden() -> bool:
        return (await client.get(watched.master)).status_code == 404

    await _until(hidden)


async def test_a_bus_gap_drops_every_cached_vod(
    watched: Watched, app: FastAPI, statements: Statements
) -> None:
    """After a gap (messages may be lost) every VOD is looked up again on its next request;
    a malformed message changes nothing."""
    lookups = _runtime(app).vod.lookups
    assert (await watched.client.get(watched.master)).status_code == 200
    lookups.apply({"vod_id": "x", "change": "gone"})
    with statements.during() as kept:
        assert (await watched.client.get(watched.master)).status_code == 200
    assert kept == []
    lookups.apply(Gap("test"))
    with statements.during() as reread:
        assert (await watched.client.get(watched.master)).status_code == 200
    assert any("FROM vod" in sql for sql in reread)


@contextlib.asynccontextmanager
async def _running(settings: Settings, *, empty: bool = True) -> AsyncIterator[FastAPI]:
    """Run one more app (a process of its own: runtime, caches, bus connection)."""
    application = create_app(settings)
    if empty and not settings.is_sqlite:
        database = open_database(settings)
        await truncate_all(database)
        await database.dispose()
    async with application.router.lifespan_context(application):
        yield application


@contextlib.asynccontextmanager
async def _client(application: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_a_vod_looked_up_while_processing_plays_as_soon_as_it_is_ready(
    settings: Settings, media: Media
) -> None:
    """A VOD asked for while it is still processing (404, cached) plays the moment its build
    commits: the worker's announcement drops the cached facts."""
    paused = settings.model_copy(update={"vod_poll_seconds": _NEVER})  # the test runs the job
    async with _running(paused) as application, _client(application) as client:
        runtime = _runtime(application)
        runtime.vod.lookups.facts.ttl = _NEVER
        watched = await record_vod(application, client, media, ready=False)
        assert (await client.get(watched.master)).status_code == 404
        assert (await client.get(watched.master)).status_code == 404
        assert await runtime.vod.worker.run_once()

        async def playing() -> bool:
            return (await client.get(watched.master)).status_code == 200

        await _until(playing)
        await _play(client, watched.vod_id)


@needs_redis
async def test_a_delete_in_one_process_stops_playback_in_another_at_once(
    settings: Settings, media: Media
) -> None:
    """Two processes on one database and one Redis: a VOD playing from the second's memory
    is 404 there right after the first deletes it (the second's TTL is out of reach)."""
    shared = settings.model_copy(update={"redis_url": REDIS_URL, "redis_prefix": unique("t")})
    async with (
        _running(shared.model_copy(update={"node_name": "one"})) as one,
        _client(one) as writer,
    ):
        watched = await record_vod(one, writer, media)
        other = shared.model_copy(update={"node_name": "two"})
        async with _running(other, empty=False) as two, _client(two) as reader:
            _runtime(two).vod.lookups.facts.ttl = _NEVER
            urls = await _play(reader, watched.vod_id)
            deleted = await writer.delete(
                f"/api/v1/studio/vods/{watched.vod_id}", headers=watched.owner
            )
            assert deleted.status_code == 204
            started = time.monotonic()

            async def gone() -> bool:
                return (await reader.get(watched.master)).status_code == 404

            await _until(gone, seconds=2.0)
            assert time.monotonic() - started < FACTS_TTL
            for url in urls:
                assert (await reader.get(url)).status_code == 404
            assert (await reader.get(f"/v/{watched.vod_id}")).status_code == 404


@pytest.mark.skipif(not PG_URL, reason="set STAGECAST_TEST_DATABASE_URL")
async def test_playback_goes_on_while_the_vod_tables_are_locked(
    watched: Watched, app: FastAPI, backend: str
) -> None:
    """With the vod and channel tables locked, a VOD already looked up keeps playing, and a
    lookup past its TTL answers the facts it had within the cache's patience."""
    if backend != "postgres":
        pytest.skip("table locks that block readers: PostgreSQL")
    runtime = _runtime(app)
    await _play(watched.client, watched.vod_id)
    now = [time.monotonic()]
    expiring = Lookups(
        runtime.core.db, runtime.core.bus, runtime.live.storage, clock=lambda: now[0]
    )
    before = await expiring.vod(watched.vod_id)
    assert before is not None
    assert runtime.core.settings.database_url is not None
    locker = await asyncpg.connect(_asyncpg_dsn(runtime.core.settings.database_url), timeout=10)
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE vod, channel IN ACCESS EXCLUSIVE MODE")
        async with asyncio.timeout(10):
            await _play(watched.client, watched.vod_id)
        now[0] += FACTS_TTL + 1
        started = time.monotonic()
        assert await expiring.vod(watched.vod_id) == before
        assert time.monotonic() - started < 1.0
        assert expiring.facts.stale_served == 1
        await transaction.rollback()
    finally:
        await locker.close()

    async def reloaded() -> bool:  # the reload the lock held up (or a new one) has stored
        await expiring.vod(watched.vod_id)
        return expiring.facts.peek(watched.vod_id) is not None

    await _until(reloaded, seconds=10.0)
