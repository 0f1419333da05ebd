"""Connection slots: capped per address, and strangers never crowd out publishers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from stagecast.ingest.rtmp import RtmpLimits, RtmpServer
from stagecast.ingest.rtmp.admission import address_key
from stagecast.ingest.rtmp.replies import PUBLISH_START
from tests.conftest import make_settings, serve
from tests.ingest.rtmp.client import RawClient
from tests.ingest.rtmp.conftest import ServerFactory
from tests.ingest.rtmp.recording import RecordingHandler


async def open_idle(port: int, count: int, sources: list[str]) -> list[RawClient]:
    """Open ``count`` TCP connections that say nothing, round-robin over ``sources``."""
    clients = []
    for number in range(count):
        with contextlib.suppress(OSError):
            clients.append(await RawClient.open(port, sources[number % len(sources)]))
    return clients


async def until_open(server: RtmpServer, count: int, timeout: float = 10.0) -> None:
    """Wait until exactly ``count`` connections are open on the server."""
    async with asyncio.timeout(timeout):
        while server.connection_count != count:
            await asyncio.sleep(0.01)


async def close_all(clients: list[RawClient]) -> None:
    """Close every client."""
    await asyncio.gather(*(c.close() for c in clients))


async def publishes(port: int, source: str, key: str) -> bool:
    """Tell whether a client from ``source`` gets ``NetStream.Publish.Start`` for ``key``."""
    client = await RawClient.open(port, source)
    try:
        await client.connect()
        return (await client.publish(key))["code"] == PUBLISH_START
    finally:
        await client.close()


def test_addresses_group_ipv6_by_64_and_unwrap_ipv4_mapped() -> None:
    """An IPv6 /64 is one source (one subscriber's prefix); ::ffff:a.b.c.d is a.b.c.d."""
    assert address_key(("2001:db8:1:2::1", 1, 0, 0)) == address_key(("2001:db8:1:2:ff::9", 2, 0, 0))
    assert address_key(("2001:db8:1:2::1", 1, 0, 0)) != address_key(("2001:db8:1:3::1", 1, 0, 0))
    assert address_key(("::ffff:192.0.2.7", 5, 0, 0)) == address_key(("192.0.2.7", 6))
    assert address_key(("192.0.2.7", 6)) != address_key(("192.0.2.8", 6))


async def test_one_address_holds_at_most_its_cap(start_server: ServerFactory) -> None:
    """With a cap of 3 per address, 3 publishers from one address fill it: a 4th from there
    is closed at accept, while another address still gets in."""
    server = await start_server(RtmpLimits(max_connections_per_address=3))
    publishers = [await RawClient.open(server.port) for _ in range(3)]
    try:
        for number, client in enumerate(publishers):
            await client.connect()
            assert (await client.publish(f"cap-{number}"))["code"] == PUBLISH_START
        fourth = await RawClient.open(server.port)
        try:
            assert await fourth.closed_by_server(timeout=2)
        finally:
            await fourth.close()
        assert await publishes(server.port, "127.0.0.2", "elsewhere")
    finally:
        await close_all(publishers)


async def test_a_stranger_from_a_full_address_replaces_its_oldest_stranger(
    start_server: ServerFactory,
) -> None:
    """At the per-address cap, a new connection from that address closes the oldest of its
    connections that has not published, so a publisher behind a busy NAT still gets in."""
    server = await start_server(RtmpLimits(max_connections_per_address=3))
    idle = await open_idle(server.port, 3, ["127.0.0.1"])
    try:
        await until_open(server, 3)
        assert await publishes(server.port, "127.0.0.1", "behind-nat")
        assert await idle[0].closed_by_server(timeout=2)
    finally:
        await close_all(idle)


async def test_a_publisher_gets_in_past_500_idle_connections_from_one_address(
    start_server: ServerFactory,
) -> None:
    """500 idle sockets from one address hold only that address's share (16 by default);
    a publisher from another address goes live at once."""
    server = await start_server()
    idle = await open_idle(server.port, 500, ["127.0.0.1"])
    try:
        await until_open(server, RtmpLimits().max_connections_per_address)
        assert await publishes(server.port, "127.0.0.2", "real")
    finally:
        await close_all(idle)


async def test_a_publisher_gets_in_past_500_idle_connections_from_many_addresses(
    start_server: ServerFactory, handler: RecordingHandler
) -> None:
    """500 idle sockets from 250 addresses fill only the pre-publish budget; a publisher
    still goes live, and no live publisher is ever closed to make room."""
    limits = RtmpLimits(max_connections=100, max_pending_connections=20)
    server = await start_server(limits)
    live = [await RawClient.open(server.port, f"127.0.2.{n}") for n in range(1, 4)]
    idle: list[RawClient] = []
    try:
        for number, client in enumerate(live):
            await client.connect()
            assert (await client.publish(f"live-{number}"))["code"] == PUBLISH_START
        sources = [f"127.0.1.{n}" for n in range(1, 251)]
        idle = await open_idle(server.port, 500, sources)
        await until_open(server, len(live) + limits.max_pending_connections)
        assert await publishes(server.port, "127.0.0.2", "real")
        assert all(not r.closes for r in handler.recordings if r.key.startswith("live-"))
    finally:
        await close_all(idle + live)


async def test_the_settings_set_the_caps_of_the_running_server(tmp_path: Path) -> None:
    """STAGECAST_RTMP_MAX_CONNECTIONS_PER_ADDRESS and _MAX_PENDING_CONNECTIONS reach the
    app's RTMP server: 5 idle sockets from one address leave 2 open under a cap of 2."""
    settings = make_settings(
        tmp_path, rtmp_max_connections_per_address=2, rtmp_max_pending_connections=3
    )
    async with serve(settings) as running:
        server = running.runtime.ingest.rtmp
        assert (
            server.limits.max_connections_per_address,
            server.limits.max_pending_connections,
        ) == (2, 3)
        idle = await open_idle(server.port, 5, ["127.0.0.1"])
        try:
            await until_open(server, 2)
            assert server.pending_count == 2
        finally:
            await close_all(idle)
