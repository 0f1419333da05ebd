"""The bus: delivery, isolation of topics, bounded queues, and both implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from stagecast.bus import Bus, Gap, MemoryBus, RedisBus
from tests.conftest import BUSES, REDIS_URL, needs_redis, unique


@pytest.fixture(params=BUSES)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Each bus implementation this run covers."""
    if request.param == "memory":
        memory = MemoryBus()
        yield memory
        await memory.close()
        return
    assert REDIS_URL
    client = Redis.from_url(REDIS_URL)
    redis_bus = RedisBus(client, prefix=unique("test"))
    redis_bus.start()
    yield redis_bus
    await redis_bus.close()
    await client.aclose()


async def test_every_subscriber_gets_each_message_in_order(bus: Bus) -> None:
    """Two subscribers of a topic both receive every message, in publish order."""
    first = await bus.subscribe("chat.1")
    second = await bus.subscribe("chat.1")
    for i in range(20):
        await bus.publish("chat.1", {"n": i})
    for sub in (first, second):
        got = [await sub.get(timeout=2) for _ in range(20)]
        assert got == [{"n": i} for i in range(20)]
    first.close()
    second.close()


async def test_publish_many_delivers_each_in_order_to_its_topic(bus: Bus) -> None:
    """A batch (the metrics tick's snapshots) reaches each topic's subscribers in order."""
    one = await bus.subscribe("studio.1")
    two = await bus.subscribe("studio.2")
    batch = [(f"studio.{1 + i % 2}", {"n": i}) for i in range(40)]
    await bus.publish_many(batch)
    await bus.publish_many([])
    assert [await one.get(timeout=2) for _ in range(20)] == [{"n": i} for i in range(0, 40, 2)]
    assert [await two.get(timeout=2) for _ in range(20)] == [{"n": i} for i in range(1, 40, 2)]
    assert await one.get(timeout=0.2) is None
    one.close()
    two.close()


async def test_payloads_arrive_as_json_copies_on_every_bus(bus: Bus) -> None:
    """What a subscriber gets is what JSON carries (the same in one process and across
    processes): integer keys as strings, tuples as lists, text intact, and a copy that later
    changes to the published dict do not reach."""
    sub = await bus.subscribe("studio.3")
    payload = {"viewers": {1: 4}, "reasons": ("late", "silent"), "body": "héllo \u2603 <b>"}
    await bus.publish("studio.3", payload)
    payload["body"] = "changed"
    assert await sub.get(timeout=2) == {
        "viewers": {"1": 4},
        "reasons": ["late", "silent"],
        "body": "héllo \u2603 <b>",
    }
    sub.close()


async def test_topics_are_isolated(bus: Bus) -> None:
    """A subscriber of one topic never sees another topic's messages."""
    one = await bus.subscribe("chat.1")
    await bus.publish("chat.2", {"n": 2})
    await bus.publish("chat.1", {"n": 1})
    assert await one.get(timeout=2) == {"n": 1}
    assert await one.get(timeout=0.2) is None
    one.close()


async def test_closed_subscriptions_receive_nothing(bus: Bus) -> None:
    """After close, the subscription is gone and publishing still works."""
    sub = await bus.subscribe("x")
    sub.close()
    await bus.publish("x", {"n": 1})
    assert await sub.get(timeout=0.2) is None


async def test_a_slow_subscriber_gets_a_gap_not_unbounded_memory(bus: Bus) -> None:
    """A subscriber that does not read overflows its bounded queue and is told with a Gap."""
    slow = await bus.subscribe("busy", maxsize=5)
    fast = await bus.subscribe("busy")
    for i in range(50):
        await bus.publish("busy", {"n": i})
    got = [await fast.get(timeout=2) for _ in range(50)]
    assert got[-1] == {"n": 49}
    # Both queues are filled by one delivery pass, so the slow one has had all 50 offered too.
    assert isinstance(await slow.get(timeout=2), Gap)
    assert await slow.get(timeout=0) is None  # the backlog was dropped, not kept behind the Gap
    await bus.publish("busy", {"n": 50})
    assert await slow.get(timeout=2) == {"n": 50}  # and delivery resumes after the Gap
    slow.close()
    fast.close()


@needs_redis
async def test_redis_bus_crosses_processes_sharing_a_prefix() -> None:
    """Two RedisBus instances (two processes' worth) on one prefix see each other's messages."""
    assert REDIS_URL
    prefix = unique("test")
    clients = [Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)]
    buses = [RedisBus(c, prefix=prefix) for c in clients]
    for b in buses:
        b.start()
    sub = await buses[1].subscribe("studio.7")
    await buses[0].publish("studio.7", {"hello": "there"})
    assert await sub.get(timeout=2) == {"hello": "there"}
    for b in buses:
        await b.close()
    for c in clients:
        await c.aclose()


@needs_redis
async def test_redis_bus_recovers_after_a_dropped_connection() -> None:
    """Killing the pub/sub connection yields a Gap, then delivery resumes by itself."""
    assert REDIS_URL
    name = unique("bus")
    client = Redis.from_url(REDIS_URL, client_name=name)
    bus = RedisBus(client, prefix=unique("test"))
    bus.start()
    sub = await bus.subscribe("t")  # returns once Redis confirmed: the connection is up
    admin = Redis.from_url(REDIS_URL)
    # Kill only this bus's connection (named on connect), not other tests' subscribers.
    [ours] = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
    assert await admin.client_kill_filter(_id=ours["id"]) == 1
    got = await sub.get(timeout=3)
    assert isinstance(got, Gap)
    for _ in range(50):
        await admin.publish(bus._prefix + "t", '{"back": true}')
        item = await sub.get(timeout=0.2)
        if item == {"back": True}:
            break
    else:
        raise AssertionError("delivery did not resume")
    await admin.aclose()
    await bus.close()
    await client.aclose()


async def test_redis_down_means_bus_unavailable_not_a_hang() -> None:
    """Publishing to a Redis that is not there fails fast with BusUnavailable."""
    from stagecast.bus import BusUnavailable

    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    bus = RedisBus(client, prefix="x")
    with pytest.raises(BusUnavailable):
        await bus.publish("t", {"n": 1})
    with pytest.raises(BusUnavailable):
        await bus.publish_many([("t", {"n": 1}), ("u", {"n": 2})])
    await client.aclose()
