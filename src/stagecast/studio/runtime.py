"""Start the studio side of a process: ingest telemetry, viewer presence, publisher, feeds.

``start_studio`` reads the sessions the live manager holds and observes their media through
the session hooks. ``on_live`` is told of each session the first tick it is live (the
webhooks' ``stream.started``), without this package knowing who listens.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends
from starlette.requests import HTTPConnection

from stagecast.core import Core
from stagecast.live.runtime import Live
from stagecast.live.states import ON_AIR, PUBLISHING
from stagecast.stats import StatsSource
from stagecast.studio import history
from stagecast.studio.feeds import FeedStats, Slots
from stagecast.studio.health import Thresholds
from stagecast.studio.presence import MemoryPresence, Presence, RedisPresence, Viewers
from stagecast.studio.publisher import Publisher
from stagecast.studio.snapshots import Held
from stagecast.studio.telemetry import IngestMetrics

OnLive = Callable[[Held], None]


@dataclass
class Studio:
    """The studio components of one process; handlers reach them with ``StudioDep``."""

    ingest: IngestMetrics
    viewers: Viewers
    publisher: Publisher
    studio_slots: Slots
    viewer_slots: Slots
    studio_stats: FeedStats
    viewer_stats: FeedStats

    def sources(self) -> list[StatsSource]:
        """Return the counters the studio exports on ``/metrics``."""
        return [_live_source(self.publisher, self.viewers), _feed_source(self)]


def _live_source(publisher: Publisher, viewers: Viewers) -> StatsSource:
    def read() -> dict[str, float]:
        latest = publisher.latest.values()
        return {
            "sessions": len(publisher.latest),
            "publishers": sum(1 for s in latest if s.state in PUBLISHING),
            "viewers": sum(s.viewers.current for s in latest if s.state in ON_AIR),
            "ticks": publisher.ticks,
            "tick_seconds": publisher.tick_seconds,
            "segments_dropped": publisher.segments_dropped,
            "bus_publish_failures": publisher.publish_failures,
            "history_samples_skipped": publisher.samples_skipped,
            "viewer_presence_failures": viewers.failures,
            "viewer_sightings_dropped": viewers.dropped,
        }

    return StatsSource(
        "live",
        read,
        frozenset({"sessions", "publishers", "viewers", "tick_seconds"}),
        {
            "sessions": "Live sessions held by this process",
            "publishers": "Encoders connected to this process",
            "viewers": "Viewers of the sessions held by this process",
            "tick_seconds": "Duration of the last metrics tick",
        },
    )


def _feed_source(studio: Studio) -> StatsSource:
    def read() -> dict[str, float]:
        owners, viewers = studio.studio_stats, studio.viewer_stats
        return {
            "studio_open": owners.open,
            "studio_refused": owners.refused,
            "studio_events": owners.events,
            "viewer_open": viewers.open,
            "viewer_refused": viewers.refused,
            "viewer_events": viewers.events,
        }

    return StatsSource("feeds", read, frozenset({"studio_open", "viewer_open"}))


def _presence(core: Core) -> Presence:
    heartbeat = core.settings.viewer_heartbeat_seconds
    if core.redis is not None:
        return RedisPresence(core.redis, heartbeat, prefix=core.settings.redis_prefix)
    return MemoryPresence(heartbeat)


async def start_studio(
    core: Core, live: Live, stack: AsyncExitStack, *, on_live: OnLive | None = None
) -> Studio:
    """Start the studio on ``live``'s sessions; ``on_live`` hears of each session going live."""
    settings = core.settings
    hooks = live.hooks
    ingest = IngestMetrics(settings.metrics_window_seconds)
    viewers = Viewers(_presence(core), heartbeat=settings.viewer_heartbeat_seconds)

    async def sample(rows: list[history.Sample]) -> None:
        await history.record(core.db, rows)

    publisher = Publisher(
        sessions=live.manager.sessions,
        ingest=ingest,
        viewers=viewers,
        bus=core.bus,
        thresholds=Thresholds.for_segments(settings.segment_seconds),
        every=settings.metrics_tick_seconds,
        history_every=settings.metrics_history_seconds,
        on_sample=sample,
        on_live=on_live,
        on_gone=viewers.presence.forget,
    )
    owners, watchers = FeedStats(), FeedStats()
    studio = Studio(
        ingest=ingest,
        viewers=viewers,
        publisher=publisher,
        studio_slots=Slots(
            settings.metrics_feed_channel_limit,
            settings.metrics_feed_process_limit,
            owners,
            per_holder=settings.metrics_feed_account_limit,
            holder_kind="account",
        ),
        viewer_slots=Slots(
            settings.viewer_feed_channel_limit,
            settings.viewer_feed_process_limit,
            watchers,
            per_holder=settings.viewer_feed_address_limit,
            holder_kind="address",
        ),
        studio_stats=owners,
        viewer_stats=watchers,
    )
    hooks.on_segment.append(ingest.on_segment)
    hooks.on_media.append(ingest.on_media)
    hooks.on_view.append(viewers.on_view)
    publisher.start()
    stack.push_async_callback(publisher.stop)
    return studio


class HasStudio(Protocol):
    """The part of the process's runtime the studio routes read."""

    studio: Studio


async def studio_of(connection: HTTPConnection) -> Studio:
    """FastAPI dependency: this process's studio components."""
    runtime: HasStudio = connection.app.state.runtime
    return runtime.studio


StudioDep = Annotated[Studio, Depends(studio_of)]
