"""Live metrics: the 1 Hz tick over 1,000 streams vs an SQL aggregate over segment rows.

In one run:

- **tick**: ``Publisher.tick`` over 1,000 simulated live sessions whose rolling windows were
  fed like real ingest for 40 s: half are RTMP (30 fps video with a 2 s GOP and 48 kHz AAC,
  ~77 messages/s, plus 2 s segments), half HTTP push (2 s segments only), every stream with
  10 viewers in the in-memory presence store, the in-process bus. Between ticks one more
  second of media is fed (not timed: that is ingest's O(1) per message, measured apart).
  Printed: wall p50/p99/max and thread CPU p50 per tick (the CPU figure is the one that
  holds on a shared machine), the bit rate alone read from the windows (what the SQL below
  computes), and ns per media message and per segment for the observers. Nobody subscribes
  to those snapshots; the tick is timed again with a studio feed subscribed per channel (each
  snapshot then copied through JSON), and on the Redis bus (several processes: snapshots
  serialised and pipelined) against one ``PUBLISH`` per stream, when Redis is reachable.
- **baseline**: the approach the tick replaces, bit rate by an SQL aggregate over the last 30 s
  of segment rows per stream, ``SELECT session_id, SUM(byte_size), SUM(duration) FROM segment
  WHERE session_id IN (...) AND created_at >= :cutoff GROUP BY session_id`` through
  ``Database.run``, on the schema as shipped and again with an index on
  ``(session_id, created_at)`` added so the baseline is at its best, plus the same query run
  once per stream; on SQLite always, and on PostgreSQL when ``STAGECAST_BENCH_DATABASE_URL``
  or ``STAGECAST_TEST_DATABASE_URL`` names a server (a ``stagecast_bench_metrics`` database
  is created for the run and dropped after). Rows: 10 minutes of 2 s segments per stream
  (2 minutes with ``--quick``).

Target: <= 5 ms per tick for 1,000 streams in one process, no database query.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.bus import Bus, MemoryBus, RedisBus
from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database
from stagecast.db.migrate import upgrade
from stagecast.live.hooks import MediaEvent, SegmentEvent
from stagecast.studio.presence import MemoryPresence, Viewers
from stagecast.studio.publisher import Publisher
from stagecast.studio.snapshots import SNAPSHOT_TOPIC, Snapshot
from stagecast.studio.telemetry import IngestMetrics

STREAMS = 1_000
VIEWERS = 10
SEGMENT = 2.0
SEGMENT_BYTES = 625_000  # 2.5 Mb/s
# The same server the other benchmarks use (this machine's PostgreSQL unless told otherwise).
PG_SERVER = os.environ.get("STAGECAST_BENCH_DATABASE_URL") or os.environ.get(
    "STAGECAST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PG_NAME = "stagecast_bench_metrics"
T = TypeVar("T")
REDIS = os.environ.get("STAGECAST_BENCH_REDIS_URL") or os.environ.get(
    "STAGECAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)


@dataclass
class Session:
    """A live session as the manager holds it (what the publisher reads)."""

    id: int
    channel_id: int
    slug: str
    state: str = "live"
    reconnects: int = 0
    segments_dropped: int = 0
    last_media: float = 0.0
    started_at: datetime | None = field(default_factory=lambda: datetime.now(UTC))
    unarchived: int = 0


class Clock:
    """Simulated monotonic time."""

    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def _segment(session: Session, sequence: int) -> SegmentEvent:
    return SegmentEvent(
        session_id=session.id,
        channel_id=session.channel_id,
        rendition="source",
        sequence=sequence,
        start_time=sequence * SEGMENT,
        duration=SEGMENT,
        byte_size=SEGMENT_BYTES,
        video_frames=60,
        keyframe=True,
        discontinuity=False,
        work_seconds=0.002,
    )


class Simulation:
    """1,000 streams fed one second at a time."""

    def __init__(self, streams: int) -> None:
        self.clock = Clock()
        self.ingest = IngestMetrics(30.0, clock=self.clock)
        self.sessions = [Session(i, i, f"ch{i}") for i in range(1, streams + 1)]
        self.second = 0
        self.media_events = 0
        self.segment_events = 0
        self.media_seconds = 0.0
        self.segment_seconds = 0.0

    def feed_second(self) -> None:
        """Feed one second of ingest to every stream (timed per observer call)."""
        start_ms = self.second * 1000
        media: list[MediaEvent] = []
        for session in self.sessions[: len(self.sessions) // 2]:
            for frame in range(30):
                ts = start_ms + frame * 33
                media.append(
                    MediaEvent(session.id, session.channel_id, "video", ts, 10_000, ts % 2000 == 0)
                )
            media.extend(
                MediaEvent(session.id, session.channel_id, "audio", start_ms + a * 21, 370, False)
                for a in range(47)
            )
        segments = [_segment(s, self.second // 2) for s in self.sessions] if self.second % 2 else []
        self.clock.now += 1.0
        started = time.perf_counter()
        for event in media:
            self.ingest.on_media(event)
        self.media_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for segment in segments:
            self.ingest.on_segment(segment)
        self.segment_seconds += time.perf_counter() - started
        for session in self.sessions:
            session.last_media = self.clock.now
        self.media_events += len(media)
        self.segment_events += len(segments)
        self.second += 1


def _publisher(sim: Simulation, bus: Bus) -> Publisher:
    """Return the publisher of ``sim``'s sessions, every stream with ``VIEWERS`` viewers."""
    viewers = Viewers(MemoryPresence(5.0), heartbeat=5.0)
    for session in sim.sessions:
        for v in range(VIEWERS):
            viewers.seen(session.id, f"viewer-{session.id}-{v}")
    return Publisher(sessions=lambda: sim.sessions, ingest=sim.ingest, viewers=viewers, bus=bus)


async def _timed(work: Awaitable[T], wall: list[float], cpu: list[float]) -> T:
    """Await ``work``; append the wall and thread CPU seconds it took."""
    started, started_cpu = time.perf_counter(), time.thread_time()
    result = await work
    wall.append(time.perf_counter() - started)
    cpu.append(time.thread_time() - started_cpu)
    return result


async def _tick_times(sim: Simulation, ticks: int) -> tuple[list[float], list[float], Snapshot]:
    publisher = _publisher(sim, MemoryBus())
    [snapshot, *_] = await publisher.tick()  # flushes the sightings once
    times: list[float] = []
    cpu: list[float] = []
    for _ in range(ticks):
        sim.feed_second()
        snapshot = (await _timed(publisher.tick(), times, cpu))[0]
    return times, cpu, snapshot


def _bitrate_from_windows(sim: Simulation) -> float:
    """Return the seconds to read every stream's bit rate from its window (median of 20)."""
    streams = sim.ingest.streams
    times = []
    for _ in range(20):
        started = time.perf_counter()
        rates = [streams[s.id].renditions["source"].bitrate_bps for s in sim.sessions]
        times.append(time.perf_counter() - started)
    assert len(rates) == len(sim.sessions)
    return statistics.median(times)


async def _watched_ticks(sim: Simulation, ticks: int) -> None:
    """Time the tick when every stream is watched: one studio feed subscribed per channel, so
    each snapshot is copied through JSON as the bus delivers it."""
    bus = MemoryBus()
    feeds = [
        await SNAPSHOT_TOPIC.subscribe(bus, s.channel_id, maxsize=ticks + 2) for s in sim.sessions
    ]
    publisher = _publisher(sim, bus)
    wall: list[float] = []
    cpu: list[float] = []
    await publisher.tick()
    for _ in range(ticks):
        sim.feed_second()
        await _timed(publisher.tick(), wall, cpu)
    for feed in feeds:
        feed.close()
    print(
        f"  tick with every stream watched (a studio feed per channel, memory bus), {ticks} "
        f"ticks: p50 {_ms(wall, 0.5):.2f} ms wall, CPU p50 {_ms(cpu, 0.5):.2f} ms",
        flush=True,
    )


async def _publish_each(bus: Bus, snapshots: list[Snapshot]) -> None:
    for snapshot in snapshots:
        await SNAPSHOT_TOPIC.publish(bus, snapshot, snapshot.channel_id)


async def _redis_ticks(sim: Simulation, ticks: int) -> None:
    """Time the tick on the Redis bus (several processes) against one PUBLISH per stream."""
    client = Redis.from_url(REDIS)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        print(f"  Redis bus: skipped ({exc})", flush=True)
        await client.aclose()
        return
    bus = RedisBus(client, prefix=f"bench-metrics-{os.getpid()}")
    bus.start()
    publisher = _publisher(sim, bus)
    piped: list[float] = []
    piped_cpu: list[float] = []
    single: list[float] = []
    single_cpu: list[float] = []
    try:
        await publisher.tick()
        for _ in range(ticks):
            sim.feed_second()
            snapshots = await _timed(publisher.tick(), piped, piped_cpu)
            # The baseline: the same snapshots, one PUBLISH (one round trip) each.
            await _timed(_publish_each(bus, snapshots), single, single_cpu)
    finally:
        await bus.close()
        await client.aclose()
    print(
        f"  tick on the Redis bus, {STREAMS:,} streams, {ticks} ticks: p50 {_ms(piped, 0.5):.1f} "
        f"ms wall, CPU p50 {_ms(piped_cpu, 0.5):.1f} ms (snapshots pipelined, one round trip)",
        flush=True,
    )
    print(
        f"  baseline, one PUBLISH per stream (publishing alone): p50 {_ms(single, 0.5):.1f} ms "
        f"wall, CPU p50 {_ms(single_cpu, 0.5):.1f} ms; whole tick is "
        f"{_ms(single, 0.5) / _ms(piped, 0.5):.1f}x faster in wall time",
        flush=True,
    )


# -- the SQL baseline --------------------------------------------------------------------------

_SEED_PG = """
INSERT INTO segment (session_id, rendition, sequence, epoch, discontinuity, duration, byte_size,
                     program_date_time, path, created_at)
SELECT s, 'source', k, 0, false, 2.0, 625000, now() - k * interval '2 seconds', 'p',
       now() - k * interval '2 seconds'
FROM generate_series(1, :streams) s, generate_series(0, :per_stream - 1) k
"""

_SEED_SQLITE = """
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :streams),
               k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n < :per_stream - 1)
INSERT INTO segment (session_id, rendition, sequence, epoch, discontinuity, duration, byte_size,
                     program_date_time, path, created_at)
SELECT s.n, 'source', k.n, 0, 0, 2.0, 625000,
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (k.n * 2) || ' seconds'), 'p',
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (k.n * 2) || ' seconds')
FROM s, k
"""

_AGGREGATE = """
SELECT session_id, SUM(byte_size) AS bytes, SUM(duration) AS seconds FROM segment
WHERE session_id IN ({ids}) AND created_at >= :cutoff GROUP BY session_id
"""


async def _seed(db: Database, streams: int, per_stream: int) -> None:
    now = datetime.now(UTC)
    sqlite = db.is_sqlite

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            text(
                "INSERT INTO account (id, username, password_hash, role, created_at) "
                "VALUES (1, 'bench', 'x', 'broadcaster', :now)"
            ),
            {"now": now.replace(tzinfo=None) if sqlite else now},
        )
        stamp = now.replace(tzinfo=None) if sqlite else now
        rows = [
            {"i": i, "slug": f"ch{i}", "key": f"k{i}", "now": stamp} for i in range(1, streams + 1)
        ]
        await conn.execute(
            text(
                "INSERT INTO channel (id, slug, owner_id, title, description, visibility, "
                "profile, dvr_window_seconds, key_lookup, key_hash, key_version, key_rotated_at, "
                "created_at, updated_at) VALUES (:i, :slug, 1, 'c', '', 'public', 'passthrough', "
                "0, :key, 'h', 1, :now, :now, :now)"
            ),
            rows,
        )
        await conn.execute(
            text(
                "INSERT INTO live_session (id, channel_id, state, title, profile, key_version, "
                "owner_node, reconnects, created_at, started_at) VALUES (:i, :i, 'live', 's', "
                "'passthrough', 1, 'bench', 0, :now, :now)"
            ),
            [{"i": r["i"], "now": stamp} for r in rows],
        )
        seed = _SEED_SQLITE if sqlite else _SEED_PG
        await conn.execute(text(seed), {"streams": streams, "per_stream": per_stream})
        if not sqlite:
            await conn.execute(text("ANALYZE segment"))

    await db.run(unit, kind=Kind.WRITE, deadline=600, attempt_timeout=590, name="seed")


async def _add_index(db: Database) -> None:
    """Give the baseline its best case: an index that matches its filter exactly."""

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            text("CREATE INDEX bench_segment_recent ON segment (session_id, created_at)")
        )
        await conn.execute(text("ANALYZE segment" if not db.is_sqlite else "ANALYZE"))

    await db.run(unit, kind=Kind.WRITE, deadline=600, attempt_timeout=590, name="index")


async def _aggregate_times(db: Database, streams: int, runs: int) -> tuple[list[float], float]:
    ids = ", ".join(str(i) for i in range(1, streams + 1))
    query = text(_AGGREGATE.format(ids=ids))
    rates: dict[int, float] = {}

    async def unit(conn: AsyncConnection) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=30)
        bound = cutoff.replace(tzinfo=None) if db.is_sqlite else cutoff
        for row in await conn.execute(query, {"cutoff": bound}):
            rates[row.session_id] = row.bytes * 8 / row.seconds

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await db.run(unit, kind=Kind.READ, deadline=60, attempt_timeout=55, name="aggregate")
        times.append(time.perf_counter() - started)
    assert len(rates) == streams, f"the aggregate found {len(rates)} streams"
    return times, statistics.fmean(rates.values())


async def _per_stream_time(db: Database, streams: int) -> float:
    """One query per stream, as a tick written naively would do; return the total seconds."""
    query = text(
        "SELECT SUM(byte_size), SUM(duration) FROM segment "
        "WHERE session_id = :s AND created_at >= :cutoff"
    )

    async def unit(conn: AsyncConnection) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=30)
        bound = cutoff.replace(tzinfo=None) if db.is_sqlite else cutoff
        for session_id in range(1, streams + 1):
            await conn.execute(query, {"s": session_id, "cutoff": bound})

    started = time.perf_counter()
    await db.run(unit, kind=Kind.READ, deadline=120, attempt_timeout=115, name="per_stream")
    return time.perf_counter() - started


def _settings(data_dir: Path, url: str | None) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, database_url=url, secret_key="bench")


async def _pg_database(data_dir: Path) -> tuple[Database, str] | None:
    if not PG_SERVER:
        return None
    admin = PG_SERVER.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{PG_NAME}"')
    finally:
        await conn.close()
    url = admin.rsplit("/", 1)[0] + f"/{PG_NAME}"
    return open_database(_settings(data_dir, url)), admin


async def _drop_pg(admin: str) -> None:
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
    finally:
        await conn.close()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _baseline(
    name: str, db: Database, streams: int, per_stream: int, runs: int
) -> tuple[str, float]:
    await upgrade(db)
    started = time.perf_counter()
    await _seed(db, streams, per_stream)
    seeded = time.perf_counter() - started
    print(
        f"  {name}: {streams * per_stream:,} segment rows ({per_stream} per stream, seeded in "
        f"{seeded:.1f} s)",
        flush=True,
    )
    shipped, _ = await _aggregate_times(db, streams, runs)
    await _add_index(db)
    times, mean_bps = await _aggregate_times(db, streams, runs)
    naive = await _per_stream_time(db, streams)
    print(
        f"    GROUP BY aggregate, schema as shipped: p50 {_ms(shipped, 0.5):.1f} ms; "
        f"with an index on (session_id, created_at): p50 {_ms(times, 0.5):.1f} ms, "
        f"p99 {_ms(times, 0.99):.1f} ms; one query per stream: {naive * 1000:.0f} ms "
        f"(mean bit rate {mean_bps / 1e6:.2f} Mb/s)",
        flush=True,
    )
    return name, min(statistics.median(shipped), statistics.median(times))


async def _run(quick: bool) -> None:
    ticks = 60 if quick else 300
    per_stream = 60 if quick else 300
    print(f"  simulating {STREAMS:,} streams (40 s of ingest each) ...", flush=True)
    sim = Simulation(STREAMS)
    for _ in range(40):
        sim.feed_second()
    times, cpu, snapshot = await _tick_times(sim, ticks)
    tick_p50 = statistics.median(cpu)
    bitrate_only = _bitrate_from_windows(sim)
    print(
        f"  tick, {STREAMS:,} streams, {ticks} ticks: p50 {_ms(times, 0.5):.2f} ms, "
        f"p99 {_ms(times, 0.99):.2f} ms, max {max(times) * 1000:.2f} ms wall; "
        f"CPU p50 {tick_p50 * 1000:.2f} ms (target <= 5 ms); database queries: 0",
        flush=True,
    )
    print(
        f"  bit rate alone from the windows, {STREAMS:,} streams: {bitrate_only * 1000:.2f} ms",
        flush=True,
    )
    print(
        f"  ingest observers: {sim.media_seconds / sim.media_events * 1e9:.0f} ns per RTMP "
        f"message, {sim.segment_seconds / sim.segment_events * 1e9:.0f} ns per segment; "
        f"a snapshot says {snapshot.ingest.bitrate_kbps} kb/s, {snapshot.health.verdict}",
        flush=True,
    )
    await _watched_ticks(sim, 10 if quick else 60)
    await _redis_ticks(sim, 10 if quick else 60)
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        sqlite = open_database(_settings(Path(tmp), None))
        try:
            results.append(await _baseline("SQLite", sqlite, STREAMS, per_stream, 10))
        finally:
            await sqlite.dispose()
        pg = await _pg_database(Path(tmp))
        if pg is None:
            print("  PostgreSQL: skipped (set STAGECAST_BENCH_DATABASE_URL)", flush=True)
        else:
            database, admin = pg
            try:
                results.append(await _baseline("PostgreSQL", database, STREAMS, per_stream, 10))
            finally:
                await database.dispose()
                await _drop_pg(admin)
    for name, seconds in results:
        print(
            f"  ratio, {name}: faster aggregate / whole tick (CPU) = "
            f"{seconds / tick_p50:.1f}x; / bit rate from the windows = "
            f"{seconds / bitrate_only:.0f}x",
            flush=True,
        )


def run(quick: bool) -> None:
    """Run the benchmark and print the figures (``--quick``: fewer ticks and rows)."""
    asyncio.run(_run(quick))
