"""The 1 Hz publisher: each tick, a snapshot of every live stream this process holds.

One task per process. A tick reads the sessions the live manager holds, their ingest windows
and their viewer counts (one batched presence call), judges health, and publishes each
snapshot on the bus topic ``studio.<channel_id>``; it runs no database query. Every
``history_every`` seconds it also hands a sample of each live stream to the history writer,
which runs beside the ticks (a slow database delays history, never the snapshots).

Snapshots (``stagecast.studio.snapshots.Snapshot``) travel on ``SNAPSHOT_TOPIC``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from stagecast.backoff import Backoff
from stagecast.bus import Bus, BusUnavailable
from stagecast.cache import TtlCache
from stagecast.db.schema import utcnow
from stagecast.live.states import ON_AIR
from stagecast.studio.health import Thresholds
from stagecast.studio.history import Sample
from stagecast.studio.presence import Viewers
from stagecast.studio.snapshots import SNAPSHOT_TOPIC, Held, Snapshot, Snapshots, message
from stagecast.studio.telemetry import IngestMetrics

log = logging.getLogger(__name__)

# A dead bus is left alone 1 s, then a jittered [1, 2^n] s up to 30 s. The 1 s floor is the
# tick: a failed publish costs a tick its timeout, and no tick should pay it twice in a row.
_BACKOFF_FIRST, _BACKOFF_CAP = 1.0, 30.0
_ENDED_KEEP = 600.0  # seconds a final snapshot stays available to feeds that connect late
_ENDED_ENTRIES = 10_000


def topic(channel_id: int) -> str:
    """Return the bus topic of a channel's studio snapshots."""
    return SNAPSHOT_TOPIC.name(channel_id)


class Publisher:
    """Build and publish snapshots once per ``every`` seconds."""

    def __init__(
        self,
        *,
        sessions: Callable[[], Sequence[Held]],
        ingest: IngestMetrics,
        viewers: Viewers,
        bus: Bus,
        thresholds: Thresholds | None = None,
        every: float = 1.0,
        history_every: float = 10.0,
        on_sample: Callable[[list[Sample]], Awaitable[None]] | None = None,
        on_live: Callable[[Held], None] | None = None,
        on_gone: Callable[[list[int]], Awaitable[None]] | None = None,
        ended: TtlCache[int, Snapshot] | None = None,
    ) -> None:
        self.sessions = sessions
        self.ingest = ingest
        self.viewers = viewers
        self.bus = bus
        self.snapshots = Snapshots(ingest, thresholds)
        self.every = every
        self.history_every = history_every
        self.on_sample = on_sample
        self.on_live = on_live
        self.on_gone = on_gone
        # Final snapshots of sessions that ended here, by channel (bounded in entries and age).
        self.ended: TtlCache[int, Snapshot] = (
            ended if ended is not None else TtlCache(max_entries=_ENDED_ENTRIES, ttl=_ENDED_KEEP)
        )
        self._next_sample = 0.0
        self._topics: dict[int, str] = {}  # topic names by channel id, made once per channel
        self._writer: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._bus_backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP, floor=_BACKOFF_FIRST)
        self.ticks = 0
        self.tick_seconds = 0.0  # the last tick's duration
        self.publish_failures = 0
        self.samples_skipped = 0

    @property
    def latest(self) -> dict[int, Snapshot]:
        """Return the current snapshot of each stream held here, by channel id."""
        return self.snapshots.latest

    @property
    def segments_dropped(self) -> int:
        """Return the segments the sessions of this process dropped since it started."""
        return self.snapshots.segments_dropped

    # -- one tick ---------------------------------------------------------------------------

    async def tick(self) -> list[Snapshot]:
        """Snapshot and publish every held stream; return the snapshots."""
        started = time.perf_counter()
        held = list(self.sessions())
        counts = await self.viewers.counts([s.id for s in held])
        now = self.ingest.clock()
        snapshots = self.snapshots.build(held, counts, now, utcnow())
        await self._retire(held)
        await self._publish(snapshots)
        self._announce(held)
        self._sample(held, snapshots, now)
        self.ticks += 1
        self.tick_seconds = time.perf_counter() - started
        return snapshots

    # -- after the snapshots ----------------------------------------------------------------

    def _topic(self, channel_id: int) -> str:
        name = self._topics.get(channel_id)
        if name is None:
            name = self._topics[channel_id] = SNAPSHOT_TOPIC.name(channel_id)
        return name

    async def _publish(self, snapshots: list[Snapshot]) -> None:
        if not snapshots or not self._bus_backoff.ready():
            return
        name = self._topic
        try:
            # All at once: on Redis one pipelined round trip, not one per stream.
            await self.bus.publish_many([(name(s.channel_id), message(s)) for s in snapshots])
        except BusUnavailable:
            # Back off: no tick may wait on a dead bus.
            self.publish_failures += 1
            self._bus_backoff.fail()
            return
        self._bus_backoff.reset()

    async def _retire(self, held: Sequence[Held]) -> None:
        """Keep the final snapshot of sessions no longer held, then forget their state."""
        gone, finals = self.snapshots.retire(held, utcnow())
        for final in finals:
            self.ended.put(final.channel_id, final)
            self._topics.pop(final.channel_id, None)
            with contextlib.suppress(BusUnavailable):
                await SNAPSHOT_TOPIC.publish(self.bus, final, final.channel_id)
        if gone and self.on_gone is not None:
            await self.on_gone(gone)

    def _announce(self, held: Sequence[Held]) -> None:
        if self.on_live is not None:
            for session in self.snapshots.newly_live(held):
                self.on_live(session)

    def _sample(self, held: Sequence[Held], snapshots: list[Snapshot], now: float) -> None:
        if self.on_sample is None or now < self._next_sample:
            return
        self._next_sample = now + self.history_every
        wall = utcnow().replace(microsecond=0)
        rows = [
            Sample(s.session_id, wall, s.viewers.current, s.ingest.bitrate_kbps, s.health.verdict)
            for s in snapshots
            if s.state in ON_AIR
        ]
        if not rows:
            return
        if self._writer is not None and not self._writer.done():
            self.samples_skipped += 1  # the last batch is still being written
            return
        self._writer = asyncio.create_task(self._write(rows), name="metrics-history")

    async def _write(self, rows: list[Sample]) -> None:
        assert self.on_sample is not None
        try:
            await self.on_sample(rows)
        except Exception as exc:  # history is best effort; the next sample comes in 10 s
            self.samples_skipped += 1
            log.warning("history samples not stored: %s", getattr(exc, "code", type(exc).__name__))

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metrics-publisher")

    async def stop(self) -> None:
        """Stop ticking and wait for the history writer (bounded by the database deadline)."""
        for task in (self._task, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._writer = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self.tick()
            except Exception:  # a tick must never stop the publisher
                log.exception("metrics tick failed")
            due += self.every
            now = loop.time()
            if due < now:  # overran: skip the missed ticks rather than burst
                due = now + self.every
            await asyncio.sleep(due - now)
