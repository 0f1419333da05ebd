"""The caches the studio relies on: bounded, aged, expired-first then LRU, one load per miss."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from stagecast.cache import TtlCache
from tests.studio.conftest import owned_channel, serve, studio_settings
from tests.studio.test_publisher import Clock, FakeSession, make


async def test_a_burst_of_feed_resyncs_reads_the_channel_once(tmp_path: Path) -> None:
    """Fifty feeds re-reading their state after a bus gap share one database query."""
    async with serve(studio_settings(tmp_path / "data")) as server:
        _, channel = await owned_channel(server.core.db)
        lookups = server.runtime.live.lookups
        # The statements that read this channel, as the driver receives them (other loops of
        # the app read other things meanwhile).
        reads: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            values = parameters.values() if isinstance(parameters, dict) else parameters or ()
            if channel.slug in values:
                reads.append(statement)

        engine = server.core.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            found = await asyncio.gather(
                *(lookups.channel(channel.slug, fresh=True) for _ in range(50))
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(reads) == 1, reads
        assert {f.channel_id for f in found if f is not None} == {channel.id}


def _ended_cache(clock: Clock, entries: int = 3, ttl: float = 60.0) -> TtlCache[int, Any]:
    return TtlCache(max_entries=entries, ttl=ttl, clock=clock)


async def _end(sessions: list[FakeSession], publisher: Any, *ids: int) -> None:
    sessions[:] = [s for s in sessions if s.id not in ids]
    await publisher.tick()


async def test_final_snapshots_are_bounded_in_number_and_age() -> None:
    """Ended streams' snapshots: at most N kept (least recently used out), none past the TTL."""
    sessions = [FakeSession(i, i) for i in range(1, 6)]
    clock = Clock()
    publisher, _, _ = make(sessions, ended=_ended_cache(clock))
    await publisher.tick()
    await _end(sessions, publisher, 1, 2, 3)
    assert publisher.ended.peek(1) is not None  # used: 1 is now the most recent
    await _end(sessions, publisher, 4)
    assert len(publisher.ended) == 3
    assert publisher.ended.peek(2) is None  # the least recently used went first
    assert {c for c in (1, 3, 4) if publisher.ended.peek(c) is not None} == {1, 3, 4}
    clock.now += 61
    assert all(publisher.ended.peek(c) is None for c in (1, 3, 4))


async def test_expired_final_snapshots_are_evicted_before_fresh_ones() -> None:
    """At the bound, an expired snapshot goes before the least recently used fresh one."""
    sessions = [FakeSession(i, i) for i in range(1, 5)]
    clock = Clock()
    cache = _ended_cache(clock, entries=3, ttl=10.0)
    publisher, _, _ = make(sessions, ended=cache)
    await publisher.tick()
    await _end(sessions, publisher, 1)
    clock.now += 8
    await _end(sessions, publisher, 2, 3)
    assert cache.peek(1) is not None  # fresh still, and now most recently used
    clock.now += 3  # 1 has expired (age 11 s); 2 and 3 are 3 s old
    await _end(sessions, publisher, 4)
    assert [c for c in (1, 2, 3, 4) if cache.peek(c) is not None] == [2, 3, 4]
