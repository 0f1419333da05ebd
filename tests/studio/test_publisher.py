"""The 1 Hz publisher: snapshots from memory only, history sampling, announcements, bus trouble."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stagecast.bus import BusUnavailable, MemoryBus
from stagecast.bus.base import Payload, Subscription, decode, encode
from stagecast.live.hooks import MediaEvent
from stagecast.live.states import SessionState
from stagecast.studio.health import GOOD, Verdict
from stagecast.studio.history import Sample
from stagecast.studio.presence import MemoryPresence, Viewers
from stagecast.studio.publisher import Publisher, topic
from stagecast.studio.snapshots import SNAPSHOT_TOPIC, Held, Snapshot, ViewerFigures
from stagecast.studio.telemetry import IngestMetrics
from tests.studio.test_telemetry import segment_event


@dataclass
class FakeSession:
    """What the live manager holds, as far as the publisher reads it."""

    id: int
    channel_id: int
    slug: str = "show"
    state: str = "live"
    reconnects: int = 0
    segments_dropped: int = 0
    last_media: float = 0.0
    started_at: datetime | None = field(
        default_factory=lambda: datetime.now(UTC) - timedelta(seconds=60)
    )
    unarchived: int = 0
    unstored: int = 0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    sessions: list[FakeSession], bus: Any = None, **extra: Any
) -> tuple[Publisher, IngestMetrics, Clock]:
    """Return a publisher over ``sessions`` with a controllable clock."""
    clock = Clock()
    ingest = IngestMetrics(30.0, clock=clock)
    viewers = Viewers(MemoryPresence(5.0), heartbeat=5.0)
    publisher = Publisher(
        sessions=lambda: sessions, ingest=ingest, viewers=viewers, bus=bus or MemoryBus(), **extra
    )
    return publisher, ingest, clock


def wire(snapshot: Snapshot) -> Payload:
    """Return ``snapshot`` as a bus subscriber receives it (JSON)."""
    return decode(encode(SNAPSHOT_TOPIC.encode(snapshot)))


def feed(ingest: IngestMetrics, clock: Clock, session: FakeSession, seconds: int) -> None:
    """Two seconds per segment of 1 Mb/s, 30 fps video with a keyframe every 2 s."""
    for i in range(seconds // 2):
        for frame in range(60):
            clock.now += 1 / 30
            ingest.on_media(
                MediaEvent(
                    session.id, session.channel_id, "video", (i * 60 + frame) * 33, 4166, frame == 0
                )
            )
        ingest.on_segment(
            segment_event(session.id, session.channel_id, "source", 250_000, sequence=i)
        )
        session.last_media = clock.now


async def test_a_snapshot_is_built_from_the_windows_and_published() -> None:
    """A healthy stream's snapshot: bit rate, frame rate, GOP, viewers, good, on studio.<id>."""
    session = FakeSession(9, 3)
    bus = MemoryBus()
    publisher, ingest, clock = make([session], bus)
    publisher.viewers.seen(9, "viewer-one")
    feed(ingest, clock, session, 20)
    async with await bus.subscribe(topic(3)) as subscription:
        [built] = await publisher.tick()
        snapshot = wire(built)
        assert await subscription.get(1) == snapshot
    assert built.state is SessionState.LIVE
    assert built.health is GOOD
    assert built.viewers == ViewerFigures(1, 1, 1)
    assert snapshot["type"] == "snapshot"
    assert snapshot["state"] == "live"
    assert snapshot["health"] == {"verdict": "good", "reasons": []}
    assert snapshot["viewers"] == {"current": 1, "peak": 1, "unique": 1}
    ingest_part = snapshot["ingest"]
    assert ingest_part["bitrate_kbps"] == pytest.approx(1000, rel=0.05)
    assert ingest_part["frame_rate"] == pytest.approx(30, rel=0.05)
    assert ingest_part["keyframe_interval_max"] == pytest.approx(2.0, rel=0.05)
    [rendition] = snapshot["renditions"]
    assert rendition["name"] == "source"
    assert rendition["segments"] == 10
    assert rendition["bitrate_kbps"] == pytest.approx(1000.0)
    assert snapshot["uptime"] == pytest.approx(60, abs=2)
    assert publisher.latest[3] is built


async def test_silence_and_drops_show_up_in_the_verdict() -> None:
    """No media for a while and refused segments: the verdict says so, with reasons."""
    session = FakeSession(9, 3)
    publisher, ingest, clock = make([session])
    feed(ingest, clock, session, 10)
    await publisher.tick()
    session.segments_dropped = 3
    clock.now += 9
    [built] = await publisher.tick()
    assert built.health.verdict is Verdict.BAD
    snapshot = wire(built)
    assert snapshot["health"]["verdict"] == "bad"
    assert "no media for 9 s" in snapshot["health"]["reasons"]
    assert "3 segments dropped recently" in snapshot["health"]["reasons"]
    assert snapshot["ingest"]["segments_dropped_recent"] == 3
    assert publisher.segments_dropped == 3
    clock.now += 31
    [built] = await publisher.tick()
    snapshot = wire(built)
    assert snapshot["ingest"]["segments_dropped_recent"] == 0  # outside the window now


async def test_a_tick_needs_no_database() -> None:
    """The publisher has no database at all: ticks over many streams work from memory."""
    sessions = [FakeSession(i, i) for i in range(200)]
    publisher, ingest, clock = make(sessions)
    for session in sessions[:20]:
        feed(ingest, clock, session, 4)
    snapshots = await publisher.tick()
    assert len(snapshots) == 200
    assert not hasattr(publisher, "db")


async def test_history_is_sampled_every_interval_while_live() -> None:
    """Samples go to the writer every history interval, only for live/reconnecting streams."""
    written: list[list[Sample]] = []

    async def write(rows: list[Sample]) -> None:
        written.append(rows)

    live, idle = FakeSession(1, 1), FakeSession(2, 2, state="idle")
    publisher, _ingest, clock = make([live, idle], on_sample=write, history_every=10.0)
    for _ in range(25):
        await publisher.tick()
        clock.now += 1
        await asyncio.sleep(0)  # one pass of the loop, as between real ticks: the writer runs
    assert len(written) == 3  # t = 0, 10, 20
    assert all([s.session_id for s in rows] == [1] for rows in written)


async def test_a_slow_history_writer_never_delays_ticks() -> None:
    """While a batch is still being written, the next sample is skipped (counted), not queued."""
    release = asyncio.Event()

    async def stuck(rows: list[Sample]) -> None:
        await release.wait()

    publisher, _, clock = make([FakeSession(1, 1)], on_sample=stuck, history_every=1.0)
    await publisher.tick()
    clock.now += 1
    async with asyncio.timeout(1):
        await publisher.tick()
    assert publisher.samples_skipped == 1
    release.set()
    await publisher.stop()


async def test_going_live_is_announced_once_per_session() -> None:
    """stream.started: the first tick a session is live, once, however many ticks follow."""
    announced: list[int] = []
    session = FakeSession(4, 2, state="idle")
    publisher, _, _ = make([session], on_live=lambda s: announced.append(s.id))
    await publisher.tick()
    session.state = "live"
    for _ in range(3):
        await publisher.tick()
    assert announced == [4]


async def test_an_ended_session_leaves_a_final_snapshot() -> None:
    """When the manager lets a session go, its last snapshot (offline, nobody watching) stays
    for late feeds, with the broadcast's peak and unique viewers."""
    sessions: list[Held] = [FakeSession(4, 2)]
    gone: list[list[int]] = []

    async def forget(ids: list[int]) -> None:
        gone.append(ids)

    publisher, _ingest, _ = make(sessions, on_gone=forget)  # type: ignore[arg-type]
    publisher.viewers.seen(4, "viewer-0001")
    await publisher.tick()
    assert publisher.latest[2].viewers.current == 1
    sessions.clear()
    await publisher.tick()
    ended = publisher.ended.peek(2)
    assert ended is not None
    final = wire(ended)
    assert final["state"] == "ended"
    assert final["health"]["verdict"] == "offline"
    assert final["viewers"] == {"current": 0, "peak": 1, "unique": 1}
    assert gone == [[4]]
    assert 2 not in publisher.latest


class DeadBus:
    """A bus whose Redis is gone: every publish fails; counts the attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    async def publish(self, topic: str, payload: Payload) -> None:
        self.attempts += 1
        raise BusUnavailable("down")

    async def publish_many(self, messages: Sequence[tuple[str, Payload]]) -> None:
        self.attempts += 1
        raise BusUnavailable("down")

    async def subscribe(self, topic: str, *, maxsize: int = 1024) -> Subscription:
        raise NotImplementedError

    @property
    def healthy(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def test_a_dead_bus_is_not_hammered() -> None:
    """A failed publish of a tick's snapshots backs off; ticks go on meanwhile."""
    bus = DeadBus()
    publisher, _, _ = make([FakeSession(i, i) for i in range(50)], bus)
    for _ in range(10):
        snapshots = await publisher.tick()
        assert len(snapshots) == 50
    assert bus.attempts == 1
    assert publisher.publish_failures == 1


async def test_the_loop_ticks_at_its_rate_and_stops() -> None:
    """Started, the publisher ticks every ``every`` seconds; stopped, it is gone."""
    publisher, _, _ = make([FakeSession(1, 1)], every=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    publisher.start()
    async with asyncio.timeout(5):
        while publisher.ticks < 5:
            await asyncio.sleep(0.01)
    # Ticks at 0, 0.05, ... 0.2 s: not faster (the loop may wake a clock tick early).
    assert loop.time() - started >= 4 * 0.05 - time.get_clock_info("monotonic").resolution
    await publisher.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "metrics-publisher"]
