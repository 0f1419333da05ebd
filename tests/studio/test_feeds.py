"""The SSE feeds on a real server: who may open them, limits, events, and sleeping when idle."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stagecast.channels import tokens
from stagecast.channels.policy import Grant
from stagecast.channels.service import set_moderator
from stagecast.live.states import STATE_TOPIC, SessionState, StateChanged
from stagecast.studio.health import GOOD
from stagecast.studio.snapshots import (
    SNAPSHOT_TOPIC,
    IngestFigures,
    RenditionFigures,
    Snapshot,
    ViewerFigures,
)
from stagecast.vod.events import VOD_TOPIC, VodReady
from tests.conftest import RunningServer
from tests.studio.conftest import (
    fake_session,
    owned_channel,
    person,
    serve,
    sse,
    studio_settings,
)
from tests.studio.test_publisher import wire


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running server."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def snapshot_of(channel_id: int, session_id: int, viewers: ViewerFigures) -> Snapshot:
    """Return a live stream's snapshot as the publisher makes them."""
    return Snapshot(
        channel_id,
        session_id,
        "show",
        SessionState.LIVE,
        datetime.now(UTC),
        61.0,
        GOOD,
        viewers,
        IngestFigures(2510.3, 30.0, 2.0, 2.0, 0.02, 0, 0, 0, 0, 0),
        (RenditionFigures("source", 2498.7, 30.0, 2.0, 0.0, 15, 0),),
    )


def events_url(slug: str) -> str:
    """Return the studio feed of ``slug``."""
    return f"/api/v1/studio/channels/{slug}/events"


async def test_the_studio_feed_is_for_owner_moderators_and_admins(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Owner, moderator and admin read it; anyone else, signed in or not, gets 404."""
    db = server.core.db
    owner, channel = await owned_channel(db)
    moderator, admin, stranger = await person(db), await person(db, role="admin"), await person(db)
    await set_moderator(db, channel.id, moderator.account.username, Grant(), owner.account.id)
    for who in (owner, moderator, admin):
        async with sse(http, events_url(channel.slug), who.headers) as feed:
            assert (await feed.next()).event == "retry"
            state = await feed.next()
            assert state.event == "state"
            assert state.data == {"state": "offline", "session_id": None}
    for headers in (stranger.headers, {}):
        response = await http.get(events_url(channel.slug), headers=headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert (await http.get(events_url("no-such"), headers=owner.headers)).status_code == 404


async def test_bus_messages_become_state_snapshot_viewers_and_vod_events(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """What the live manager, the publisher and the VOD domain publish reaches the studio."""
    owner, channel = await owned_channel(server.core.db)
    bus = server.core.bus
    async with sse(http, events_url(channel.slug), owner.headers) as feed:
        await feed.until(lambda m: m.event == "state")
        live = StateChanged(SessionState.LIVE, 5, channel.slug)
        await STATE_TOPIC.publish(bus, live, channel.id)
        state = await feed.until(lambda m: m.event == "state")
        assert state.data == {"state": "live", "session_id": 5}
        sent = snapshot_of(channel.id, 5, ViewerFigures(2, 3, 4))
        snapshot = wire(sent)
        malformed = {k: v for k, v in snapshot.items() if k != "ingest"}
        await bus.publish(f"studio.{channel.id}", {**malformed, "session_id": 4})  # skipped
        await SNAPSHOT_TOPIC.publish(bus, sent, channel.id)
        assert (await feed.until(lambda m: m.event == "snapshot")).data == snapshot
        viewers = await feed.until(lambda m: m.event == "viewers")
        assert viewers.data == {"session_id": 5, "current": 2, "peak": 3, "unique": 4}
        await bus.publish(f"vod.{channel.id}", {"type": "vod.ready", "vod_id": 11})  # malformed
        await VOD_TOPIC.publish(bus, VodReady(12, 5, channel.id, 30.0), channel.id)
        vod = await feed.until(lambda m: m.event == "vod")
        assert vod.data == {
            "type": "vod.ready", "vod_id": 12, "session_id": 5, "channel_id": channel.id,
            "duration": 30.0,
        }  # fmt: skip


async def test_connection_limits_answer_429_and_free_up_on_disconnect(tmp_path: Path) -> None:
    """Past the per-channel or per-process limit a feed is refused; closing one frees its slot."""
    settings = studio_settings(
        tmp_path / "data", metrics_feed_channel_limit=2, metrics_feed_process_limit=3
    )
    async with serve(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        db = server.core.db
        owner, first = await owned_channel(db)
        _, second = await owned_channel(db)
        admin = await person(db, role="admin")
        slots = server.runtime.studio.studio_slots
        async with (
            sse(http, events_url(first.slug), owner.headers),
            sse(http, events_url(first.slug), owner.headers),
        ):
            refused = await http.get(events_url(first.slug), headers=owner.headers)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["retry-after"]) >= 1
            async with sse(http, events_url(second.slug), admin.headers):
                assert slots.count() == 3
                third = await http.get(events_url(second.slug), headers=admin.headers)
                assert third.status_code == 429  # the process limit
        async with asyncio.timeout(5):
            while slots.count():
                await asyncio.sleep(0.02)
        async with sse(http, events_url(first.slug), owner.headers) as feed:
            assert (await feed.next()).event == "retry"


async def _idle_for(
    server: RunningServer, http: httpx.AsyncClient, seconds: float
) -> tuple[int, int, float, list[str]]:
    """Hold an owner's feed open for ``seconds``; return wakeups, heartbeats, CPU, events seen."""
    owner, channel = await owned_channel(server.core.db)
    stats = server.runtime.studio.studio_stats
    async with sse(http, events_url(channel.slug), owner.headers) as feed:
        await feed.until(lambda m: m.event == "state")
        wakeups, cpu = stats.wakeups, time.process_time()
        seen = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen.append((await feed.next(timeout=5)).event)
        return stats.wakeups - wakeups, len(seen), time.process_time() - cpu, seen


async def test_an_idle_feed_sends_only_heartbeats_and_sleeps(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Nothing happening: one heartbeat comment a second (as set), one wakeup each, ~no CPU."""
    wakeups, received, cpu, seen = await _idle_for(server, http, 3.0)
    assert set(seen) == {"comment"}
    assert 2 <= received <= 5
    assert wakeups <= received + 1
    assert cpu < 0.6  # a busy loop would burn the whole 3 s


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_with_redis_down_the_feed_stays_up_and_does_not_spin(tmp_path: Path) -> None:
    """Redis unreachable from the start: the app serves, the feed heartbeats, nothing spins."""
    port = _closed_port()
    settings = studio_settings(
        tmp_path / "data", redis_url=f"redis://127.0.0.1:{port}/0", webhook_poll_seconds=2.0
    )
    async with serve(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        wakeups, received, cpu, seen = await _idle_for(server, http, 3.0)
        assert set(seen) <= {"comment", "state"}  # a state re-read after the bus gap is fine
        assert 2 <= received <= 8
        # Besides heartbeats, the feed wakes once per failed Redis reconnect (the bus backs off
        # from 0.1 s to 5 s): a handful in 3 s. A busy loop would wake thousands of times.
        assert wakeups <= received + 8
        assert cpu < 0.6
        metrics = server.runtime.studio
        assert metrics.publisher.ticks >= 3  # the publisher kept ticking all along


async def test_the_viewer_feed_follows_state_and_viewer_count(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """The public feed sends ``status`` when the state or the number of viewers changes."""
    _, channel = await owned_channel(server.core.db)
    bus = server.core.bus
    url = f"/api/v1/channels/{channel.slug}/events"
    async with sse(http, url) as feed:
        first = await feed.until(lambda m: m.event == "status")
        assert first.data == {"state": "offline", "live": False, "session_id": None, "viewers": 0}
        for current in (3, 3, 3):
            snapshot = snapshot_of(channel.id, 8, ViewerFigures(current, 4, 6))
            await SNAPSHOT_TOPIC.publish(bus, snapshot, channel.id)
        # Malformed (viewers without peak and unique, as an old test sent them): skipped.
        malformed = {
            **wire(snapshot_of(channel.id, 8, ViewerFigures(9, 9, 9))),
            "viewers": {"current": 9},
        }
        await bus.publish(f"studio.{channel.id}", malformed)
        await SNAPSHOT_TOPIC.publish(
            bus, snapshot_of(channel.id, 8, ViewerFigures(4, 4, 6)), channel.id
        )
        assert (await feed.until(lambda m: m.event == "status")).data["viewers"] == 3
        status = await feed.until(lambda m: m.event == "status")
        assert status.data == {"state": "live", "live": True, "session_id": 8, "viewers": 4}
        await bus.publish(
            f"live.{channel.id}", {"type": "state", "state": "ended", "session_id": 8}
        )
        ended = await feed.until(lambda m: m.event == "status")
        assert ended.data == {"state": "ended", "live": False, "session_id": 8, "viewers": 0}


async def test_private_channels_need_a_playback_token_for_the_viewer_feed(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Without a token a private channel does not exist; with one, its feed opens."""
    _, channel = await owned_channel(server.core.db, visibility="private")
    url = f"/api/v1/channels/{channel.slug}/events"
    assert (await http.get(url)).status_code == 404
    token = tokens.issue(server.core.secret_key, f"channel:{channel.id}")
    async with sse(http, f"{url}?token={token}") as feed:
        assert (await feed.until(lambda m: m.event == "status")).data["state"] == "offline"


async def test_heartbeats_count_a_viewer_and_are_rate_limited(tmp_path: Path) -> None:
    """A page's heartbeat counts its viewer; offline channels 404; floods get 429."""
    settings = studio_settings(tmp_path / "data", viewer_heartbeat_limit=3)
    async with serve(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        _, channel = await owned_channel(server.core.db)
        url = f"/api/v1/channels/{channel.slug}/heartbeat"
        assert (await http.post(url, json={"vs": "viewer-0001"})).status_code == 404
        session_id = await fake_session(server.core.db, channel.id)
        server.runtime.live.lookups.cache.invalidate(channel.slug)
        response = await http.post(url, json={"vs": "viewer-0001"})
        assert response.status_code == 200, response.text
        assert response.json() == {"session_id": session_id, "interval": 5.0}
        assert (await http.post(url, json={"vs": "bad id!"})).status_code == 422
        counts = await server.runtime.studio.viewers.counts([session_id])
        assert counts[session_id].current == 1
        assert (await http.post(url, json={"vs": "viewer-0001"})).status_code == 200
        flood = await http.post(url, json={"vs": "viewer-0001"})  # the 4th within a minute
        assert flood.status_code == 429
        assert "retry-after" in flood.headers
