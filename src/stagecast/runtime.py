"""The runtime of one process: every long-lived component, as typed fields, built in order.

``open_runtime`` is the one place the components are made, in the order they depend on each
other; the app's lifespan calls it and closes everything in reverse order on shutdown. Each
domain reads its own field through a Protocol of its own (``live_of``, ``chat_of``, ...);
``_conforms`` below is where mypy checks that ``Runtime`` has every one of them.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from redis.asyncio import Redis

from stagecast.bus import Bus, MemoryBus, RedisBus
from stagecast.chat.runtime import Chat, HasChat, start_chat
from stagecast.config import Settings
from stagecast.core import Core, HasCore
from stagecast.db import open_database
from stagecast.db.migrate import upgrade
from stagecast.ingest.runtime import HasIngest, Ingest, start_ingest
from stagecast.live.objects import ObjectStorage
from stagecast.live.runtime import HasLive, Live, open_live, start_live
from stagecast.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from stagecast.restream.runner import Restreamer
from stagecast.restream.runtime import HasRestream, start_restream
from stagecast.stats import StatsSource
from stagecast.studio.runtime import HasStudio, Studio, start_studio
from stagecast.vod.runtime import HasVods, Vods, start_vods
from stagecast.vod.worker import VodWorker
from stagecast.web.prometheus import Exporter, HasExporter, IngestCollector, build_exporter
from stagecast.web.workers import Primary
from stagecast.webhooks.runtime import Webhooks, start_webhooks


@dataclass
class Runtime:
    """Every long-lived component of this process."""

    core: Core
    live: Live
    vod: Vods
    webhooks: Webhooks
    restream: Restreamer
    studio: Studio
    ingest: Ingest
    chat: Chat
    exporter: Exporter
    # A worker of ``stagecast serve --workers`` other than the primary: the way to it.
    primary: Primary | None = None


async def open_runtime(settings: Settings, stack: AsyncExitStack, *, migrate: bool) -> Runtime:
    """Open and start every component for ``settings``; their shutdown goes onto ``stack``."""
    core = await open_core(settings, stack)
    if migrate:
        await upgrade(core.db)
    live = open_live(core)
    # Session-end hooks before the manager starts: its first sweep may end sessions left over
    # from a crash, and each must still become a VOD and a stream.ended webhook.
    vod = await start_vods(core, live, stack)
    webhooks = await start_webhooks(core, live, stack)
    restream = await start_restream(core, live, stack)
    studio = await start_studio(core, live, stack, on_live=webhooks.dispatcher.stream_started)
    await start_live(live, stack)
    # Encoders only once their sessions can start; ingest stops first on shutdown.
    ingest = await start_ingest(core, live, stack)
    chat = await start_chat(core, stack)
    exporter = build_exporter(
        core,
        [
            *studio.sources(),
            *webhooks.sources(),
            restream.stats(),
            *_counters(live, vod.worker, chat),
        ],
        [IngestCollector(studio.ingest)],
    )
    primary = None
    if settings.worker_index and settings.primary_socket is not None:
        primary = Primary(settings.primary_socket)
        stack.push_async_callback(primary.close)
    return Runtime(core, live, vod, webhooks, restream, studio, ingest, chat, exporter, primary)


async def open_core(settings: Settings, stack: AsyncExitStack) -> Core:
    """Open the database, the bus and the limiter; register their closing on ``stack``."""
    db = open_database(settings)
    stack.push_async_callback(db.dispose)
    redis: Redis | None = None
    bus: Bus
    limiter: RateLimiter
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        stack.push_async_callback(redis.aclose)
        redis_bus = RedisBus(redis, prefix=settings.redis_prefix)
        redis_bus.start()
        stack.push_async_callback(redis_bus.close)
        bus, limiter = redis_bus, RedisRateLimiter(redis, prefix=settings.redis_prefix)
    else:
        memory_bus = MemoryBus()
        stack.push_async_callback(memory_bus.close)
        bus, limiter = memory_bus, MemoryRateLimiter()
    return Core(settings=settings, db=db, bus=bus, limiter=limiter, redis=redis)


def _counters(live: Live, vod: VodWorker, chat: Chat) -> list[StatsSource]:
    """The counters of the components that do not describe their own, for /metrics."""
    manager = live.manager
    spool = [live.storage.stats()] if isinstance(live.storage, ObjectStorage) else []
    return [
        *spool,
        StatsSource("chat", chat.hub.stats.snapshot, frozenset({"connected", "rooms"})),
        StatsSource("vod_jobs", vod.stats.snapshot, frozenset({"running"})),
        StatsSource(
            "live_archive",
            lambda: {
                "rows_waiting": manager.archive_rows_waiting,
                "rows_dropped": manager.archive_rows_dropped,
            },
            frozenset({"rows_waiting"}),
            {
                "rows_waiting": "Rows of live sessions waiting for the database",
                "rows_dropped": "Segment rows given up after too many waited for the database",
            },
        ),
    ]


def _conforms(
    runtime: Runtime,
) -> tuple[HasCore, HasLive, HasVods, HasIngest, HasStudio, HasChat, HasExporter, HasRestream]:
    """Type-check only: ``Runtime`` has the field each domain's dependency reads."""
    return runtime, runtime, runtime, runtime, runtime, runtime, runtime, runtime
