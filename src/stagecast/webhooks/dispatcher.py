"""Where webhook events come from, and the loop that sends them.

- ``stream.started``: the publisher calls ``stream_started`` the first tick a session it holds
  is live; the event is queued here (no I/O in the tick) and written by the loop.
- ``stream.ended``: ``webhooks.on_session_ended`` runs inside the transaction that ends the
  session, so the delivery commits with the end or not at all.
- ``vod.ready``: the VOD domain announces ready VODs on the bus topic ``vod.<channel_id>``
  (``{"type": "vod.ready", "vod_id": ..., ...}``). ``VodWatch`` subscribes to that topic for
  each channel with a webhook that wants it; the set is reloaded when webhooks change
  (``webhook.changed``), after a bus gap and every minute. Every process hears the
  announcement; the delivery's unique key makes it one delivery.

Each process runs one ``WebhookDispatcher`` loop: write queued events, claim due deliveries,
send them concurrently, record the outcomes; sleep ``poll`` seconds when there is nothing to do
(or until an event of this process wakes it). Nothing spins while the database or Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx

from stagecast.bus import Bus, Gap, Subscription
from stagecast.bus.topics import Topic
from stagecast.db import Database
from stagecast.errors import StagecastError
from stagecast.vod.events import VOD_TOPIC, VodReady
from stagecast.webhooks import deliveries as delivery
from stagecast.webhooks.deliveries import Policy
from stagecast.webhooks.service import Event, channels_with, enqueue

log = logging.getLogger(__name__)

_MAX_QUEUED = 10_000
_BATCH = 10
_WATCH_REFRESH = 60.0
_WATCH_MIN_GAP = 5.0


@dataclass(frozen=True)
class WebhooksChanged:
    """A channel's webhooks were added, changed or removed: processes reload what they follow."""

    channel_id: int


CHANGED_TOPIC: Topic[WebhooksChanged] = Topic("webhook.changed", WebhooksChanged)


class LiveStream(Protocol):
    """What a ``stream.started`` event says of the session (``live.session.LiveSession``)."""

    @property
    def id(self) -> int:
        """Return the session id."""

    @property
    def channel_id(self) -> int:
        """Return the channel id."""

    @property
    def slug(self) -> str:
        """Return the channel's slug."""

    @property
    def started_at(self) -> datetime | None:
        """Return when the session went live."""


class VodWatch:
    """Follow ``vod.<channel>`` for every channel with a webhook that wants ``vod.ready``."""

    def __init__(self, db: Database, bus: Bus, on_ready: Callable[[VodReady], None]) -> None:
        self.db = db
        self.bus = bus
        self.on_ready = on_ready
        self._readers: dict[int, tuple[Subscription, asyncio.Task[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0

    @property
    def channels(self) -> set[int]:
        """Return the channels followed now."""
        return set(self._readers)

    async def start(self) -> None:
        """Subscribe to webhook changes and start following."""
        changes = await CHANGED_TOPIC.subscribe(self.bus, maxsize=64)
        self._task = asyncio.create_task(self._run(changes), name="webhook-vod-watch")

    async def stop(self) -> None:
        """Stop following every channel."""
        tasks = [t for _, t in self._readers.values()]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for subscription, _ in self._readers.values():
            subscription.close()
        self._readers.clear()
        self._task = None

    async def _run(self, changes: Subscription) -> None:
        async with changes:
            while True:
                started = time.monotonic()
                try:
                    await self.refresh()
                except StagecastError as exc:
                    log.warning("webhook vod watch not refreshed: %s", exc.code)
                item = await changes.get(timeout=_WATCH_REFRESH)  # a change, a gap, a minute
                if isinstance(item, Gap):
                    # Gaps come in bursts while Redis is away: then refresh at most this often.
                    await asyncio.sleep(max(0.0, _WATCH_MIN_GAP - (time.monotonic() - started)))

    async def refresh(self) -> None:
        """Follow exactly the channels whose webhooks want ``vod.ready``."""
        wanted = await channels_with(self.db, "vod.ready")
        for channel_id in set(self._readers) - wanted:
            subscription, task = self._readers.pop(channel_id)
            task.cancel()
            subscription.close()
        for channel_id in wanted - set(self._readers):
            subscription = await VOD_TOPIC.subscribe(self.bus, channel_id, maxsize=64)
            task = asyncio.create_task(self._read(channel_id, subscription))
            self._readers[channel_id] = (subscription, task)
        self.refreshes += 1

    async def _read(self, channel_id: int, subscription: Subscription) -> None:
        while True:
            item = await subscription.get()
            if item is None or isinstance(item, Gap):
                continue
            try:
                ready = VOD_TOPIC.decode(item)
            except ValueError:
                log.warning("webhooks: ignored a malformed vod.%d announcement", channel_id)
                continue
            if ready.channel_id == channel_id:
                self.on_ready(ready)


def vod_ready(ready: VodReady) -> Event:
    """Return the ``vod.ready`` event of an announcement."""
    data = {"vod_id": ready.vod_id, "session_id": ready.session_id, "duration": ready.duration}
    return Event("vod.ready", f"vod.ready:{ready.vod_id}", ready.channel_id, data)


def stream_started(session: LiveStream) -> Event:
    """Return the ``stream.started`` event of a session that went live."""
    return Event(
        "stream.started",
        f"stream.started:{session.id}",
        session.channel_id,
        {
            "session_id": session.id,
            "slug": session.slug,
            "started_at": session.started_at.isoformat() if session.started_at else None,
        },
    )


class WebhookDispatcher:
    """Queue events without I/O, write them, and deliver what is due."""

    def __init__(self, db: Database, bus: Bus, policy: Policy, *, poll: float = 2.0) -> None:
        self.db = db
        self.bus = bus
        self.policy = policy
        self.poll = poll
        self.watch = VodWatch(db, bus, self._vod_ready)
        self._queued: deque[Event] = deque(maxlen=_MAX_QUEUED)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.attempts = 0
        self.delivered = 0
        self.failed = 0  # deliveries given up on
        self.loops = 0

    # -- events in (no I/O) -----------------------------------------------------------------

    def add(self, event: Event) -> None:
        """Queue ``event`` for writing (the oldest is dropped past 10,000 queued)."""
        self._queued.append(event)
        self._wake.set()

    def stream_started(self, session: LiveStream) -> None:
        """Publisher callback: the session went live."""
        self.add(stream_started(session))

    def _vod_ready(self, ready: VodReady) -> None:
        self.add(vod_ready(ready))

    def wake(self) -> None:
        """Look for due deliveries now (after this process made some)."""
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the VOD watch and the delivery loop."""
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self.policy.timeout),
            # No pooled connections: each attempt connects to the address it has just
            # checked, and a TLS connection is not reused for another name on the same IP.
            limits=httpx.Limits(max_connections=_BATCH, max_keepalive_connections=0),
        )
        await self.watch.start()
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop sending (claims in flight lapse and are retried) and close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.watch.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            self.loops += 1
            self._wake.clear()
            busy = False
            try:
                await self.write_queued()
                busy = await self.run_once() > 0
            except StagecastError as exc:
                log.warning("webhook dispatcher paused: %s", exc.code)
            except Exception:  # never die: the next loop may succeed
                log.exception("webhook dispatcher failed")
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll):
                        await self._wake.wait()

    async def write_queued(self) -> None:
        """Write the queued events (those not written stay queued). Raises StagecastError."""
        while self._queued:
            event = self._queued[0]
            await enqueue(self.db, event)
            self._queued.popleft()

    async def run_once(self) -> int:
        """Claim due deliveries, send them concurrently, record them; return how many."""
        assert self._client is not None, "start() first"
        claims = await delivery.claim(self.db, self.policy, limit=_BATCH)
        if not claims:
            return 0
        client = self._client
        outcomes = await asyncio.gather(*(delivery.send(client, c, self.policy) for c in claims))
        for held, outcome in zip(claims, outcomes, strict=True):
            self.attempts += 1
            state = await delivery.record(self.db, held, outcome, self.policy)
            self.delivered += state == "delivered"
            self.failed += state == "failed"
            if state != "delivered":
                log.info(
                    "webhook delivery %d attempt %d: %s (%s)",
                    held.id,
                    held.attempt,
                    outcome.status or outcome.error,
                    state,
                )
        return len(claims)
