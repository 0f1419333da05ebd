"""Start the studio side of a process: ingest observers, viewers, publisher, feeds, webhooks.

``starter(...)`` returns the app starter; it runs after the live manager's (it reads the
sessions the manager holds). ``sources`` lets the app export the counters of domains this
package may not import (chat), as ``StatsSource`` factories.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from stagecast.cache import TtlCache
from stagecast.core import Core
from stagecast.live.hooks import SessionHooks
from stagecast.live.lookups import Lookups
from stagecast.live.manager import LiveManager
from stagecast.live.service import ChannelLive
from stagecast.metrics import history
from stagecast.metrics.delivery import Policy
from stagecast.metrics.dispatch import WebhookDispatcher
from stagecast.metrics.feed import FeedStats, Slots
from stagecast.metrics.health import Thresholds
from stagecast.metrics.ingest import IngestMetrics
from stagecast.metrics.prometheus import (
    DbCollector,
    Exporter,
    IngestCollector,
    StatsSource,
)
from stagecast.metrics.publisher import Publisher
from stagecast.metrics.snapshots import LIVE_STATES
from stagecast.metrics.viewers import MemoryPresence, Presence, RedisPresence, Viewers
from stagecast.metrics.webhooks import on_session_ended

Starter = Callable[[Core, AsyncExitStack], Awaitable[None]]
SourceFactory = Callable[[Core], StatsSource]


@dataclass
class Metrics:
    """The studio components of one process; handlers reach them with ``core.get(Metrics)``."""

    core: Core
    ingest: IngestMetrics
    viewers: Viewers
    publisher: Publisher
    dispatcher: WebhookDispatcher
    exporter: Exporter
    studio_slots: Slots
    viewer_slots: Slots
    studio_stats: FeedStats
    viewer_stats: FeedStats
    lookups: TtlCache[str, ChannelLive | None]  # the live HLS router's, shared

    async def channel(self, slug: str, *, fresh: bool = False) -> ChannelLive | None:
        """Return the channel ``slug`` and its active session (``live.lookups.Lookups``)."""
        return await self.core.get(Lookups).channel(slug, fresh=fresh)


def _presence(core: Core) -> Presence:
    heartbeat = core.settings.viewer_heartbeat_seconds
    if core.redis is not None:
        return RedisPresence(core.redis, heartbeat, prefix=core.settings.redis_prefix)
    return MemoryPresence(heartbeat)


def _own_sources(metrics: Metrics) -> list[StatsSource]:
    publisher, viewers, dispatcher = metrics.publisher, metrics.viewers, metrics.dispatcher

    def live() -> dict[str, float]:
        latest = publisher.latest.values()
        return {
            "sessions": len(publisher.latest),
            "publishers": sum(1 for s in latest if s["state"] in ("idle", "live")),
            "viewers": sum(s["viewers"]["current"] for s in latest if s["state"] in LIVE_STATES),
            "ticks": publisher.ticks,
            "tick_seconds": publisher.tick_seconds,
            "segments_dropped": publisher.segments_dropped,
            "bus_publish_failures": publisher.publish_failures,
            "history_samples_skipped": publisher.samples_skipped,
            "viewer_presence_failures": viewers.failures,
            "viewer_sightings_dropped": viewers.dropped,
        }

    def feeds() -> dict[str, float]:
        studio, viewer = metrics.studio_stats, metrics.viewer_stats
        return {
            "studio_open": studio.open,
            "studio_refused": studio.refused,
            "studio_events": studio.events,
            "viewer_open": viewer.open,
            "viewer_refused": viewer.refused,
            "viewer_events": viewer.events,
        }

    def webhooks() -> dict[str, float]:
        return {
            "attempts": dispatcher.attempts,
            "delivered": dispatcher.delivered,
            "failed": dispatcher.failed,
        }

    return [
        StatsSource(
            "live",
            live,
            frozenset({"sessions", "publishers", "viewers", "tick_seconds"}),
            {
                "sessions": "Live sessions held by this process",
                "publishers": "Encoders connected to this process",
                "viewers": "Viewers of the sessions held by this process",
                "tick_seconds": "Duration of the last metrics tick",
            },
        ),
        StatsSource("feeds", feeds, frozenset({"studio_open", "viewer_open"})),
        StatsSource("webhooks", webhooks),
    ]


async def _start(core: Core, stack: AsyncExitStack, sources: Sequence[SourceFactory]) -> None:
    settings = core.settings
    hooks = core.get(SessionHooks)
    manager = core.get(LiveManager)
    ingest = IngestMetrics(settings.metrics_window_seconds)
    viewers = Viewers(_presence(core), heartbeat=settings.viewer_heartbeat_seconds)
    dispatcher = WebhookDispatcher(
        core.db,
        core.bus,
        Policy(
            attempts=settings.webhook_max_attempts,
            retry_base=settings.webhook_retry_base_seconds,
            retry_cap=settings.webhook_retry_cap_seconds,
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        ),
        poll=settings.webhook_poll_seconds,
    )

    async def sample(rows: list[history.Sample]) -> None:
        await history.record(core.db, rows)

    publisher = Publisher(
        sessions=manager.sessions,
        ingest=ingest,
        viewers=viewers,
        bus=core.bus,
        thresholds=Thresholds.for_segments(settings.segment_seconds),
        every=settings.metrics_tick_seconds,
        history_every=settings.metrics_history_seconds,
        on_sample=sample,
        on_live=dispatcher.stream_started,
        on_gone=viewers.presence.forget,
    )
    studio_stats, viewer_stats = FeedStats(), FeedStats()
    exporter = Exporter(settings.metrics_token)
    metrics = Metrics(
        core=core,
        ingest=ingest,
        viewers=viewers,
        publisher=publisher,
        dispatcher=dispatcher,
        exporter=exporter,
        studio_slots=Slots(
            settings.metrics_feed_channel_limit, settings.metrics_feed_process_limit, studio_stats
        ),
        viewer_slots=Slots(
            settings.viewer_feed_channel_limit, settings.viewer_feed_process_limit, viewer_stats
        ),
        studio_stats=studio_stats,
        viewer_stats=viewer_stats,
        lookups=core.get(Lookups).cache,
    )
    exporter.add(DbCollector(core.db.stats))
    exporter.add(IngestCollector(ingest))
    for source in _own_sources(metrics):
        exporter.offer(source)
    for factory in sources:
        exporter.offer(factory(core))
    hooks.on_segment.append(ingest.on_segment)
    hooks.on_media.append(ingest.on_media)
    hooks.on_view.append(viewers.on_view)
    hooks.on_ended.append(on_session_ended)
    core.register(metrics)
    core.register(exporter)
    await dispatcher.start()
    stack.push_async_callback(dispatcher.stop)
    publisher.start()
    stack.push_async_callback(publisher.stop)


def starter(*, sources: Sequence[SourceFactory] = ()) -> Starter:
    """Return the app starter; ``sources`` export other domains' counters on ``/metrics``."""

    async def start(core: Core, stack: AsyncExitStack) -> None:
        await _start(core, stack, sources)

    return start
