"""Server-sent event feeds: the studio's (metrics, state, viewers, VODs) and the viewer page's.

A feed subscribes to its channel's bus topics when its response starts and merges them into
one bounded queue; it writes an event per message and a heartbeat comment when nothing
happened for ``heartbeat`` seconds. While idle it sleeps on that queue: no polling, no busy
loop, also when Redis is down (the bus then hands out a ``Gap`` and reconnects by itself).
Connections are counted per channel and per process; past either limit a new one gets 429.

Studio feed events (``event: <name>`` then ``data: <JSON>``):

- ``state``: ``{"state": "live"|"idle"|"reconnecting"|"ended"|"offline", "session_id": 9}``
- ``snapshot``: the publisher's snapshot (see ``stagecast.metrics.publisher``), every second
- ``viewers``: ``{"session_id": 9, "current": 4, "peak": 6, "unique": 11}`` when they change
- ``vod``: what the VOD domain announced on ``vod.<channel_id>``, e.g. ``{"type": "vod.ready",
  "vod_id": 12, ...}``

Viewer page feed events: ``status``: ``{"state": ..., "live": true, "session_id": 9,
"viewers": 4}`` whenever one of those changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from stagecast.bus import Bus, Gap, Subscription
from stagecast.errors import TooManyRequests
from stagecast.metrics.dispatch import vod_topic
from stagecast.metrics.publisher import topic as studio_topic

HEARTBEAT = b": heartbeat\n\n"
_QUEUE = 64
LIVE_STATES = ("live", "reconnecting")


def live_topic(channel_id: int) -> str:
    """Return the topic on which the live manager announces a channel's state changes."""
    return f"live.{channel_id}"


def encode(name: str, data: Any) -> bytes:
    """Return one SSE event: ``event: name`` and ``data: <JSON on one line>``."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class FeedStats:
    """Counters of this process's feeds (``wakeups`` proves an idle feed sleeps)."""

    open: int = 0
    opened: int = 0
    refused: int = 0
    wakeups: int = 0
    events: int = 0
    heartbeats: int = 0


class Slots:
    """Bounded connection counts, per channel and for the whole process."""

    def __init__(self, per_channel: int, per_process: int, stats: FeedStats) -> None:
        self.per_channel = per_channel
        self.per_process = per_process
        self.stats = stats
        self._by_channel: dict[int, int] = {}
        self._total = 0

    def acquire(self, channel_id: int) -> Callable[[], None]:
        """Take a slot or raise TooManyRequests; return the (idempotent) release."""
        held = self._by_channel.get(channel_id, 0)
        if held >= self.per_channel or self._total >= self.per_process:
            self.stats.refused += 1
            scope = "this channel" if held >= self.per_channel else "this server"
            raise TooManyRequests(f"too many open feeds for {scope}", retry_after=5)
        self._by_channel[channel_id] = held + 1
        self._total += 1
        self.stats.open += 1
        self.stats.opened += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._total -= 1
            self.stats.open -= 1
            left = self._by_channel[channel_id] - 1
            if left:
                self._by_channel[channel_id] = left
            else:
                del self._by_channel[channel_id]

        return release

    def count(self, channel_id: int | None = None) -> int:
        """Return the open feeds of a channel (or of the process)."""
        return self._total if channel_id is None else self._by_channel.get(channel_id, 0)


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that gives its slot back however it ends."""

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncIterator[bytes], release: Callable[[], None], status_code: int = 200
    ) -> None:
        super().__init__(
            content,
            status_code=status_code,
            headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class Merged:
    """Several subscriptions read as one bounded queue, through one forwarding task each."""

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self._subscriptions = subscriptions
        self._queue: asyncio.Queue[tuple[str, dict[str, Any] | Gap]] = asyncio.Queue(_QUEUE)
        self._tasks = [asyncio.create_task(self._forward(s)) for s in subscriptions]

    async def _forward(self, subscription: Subscription) -> None:
        while True:
            item = await subscription.get()
            if item is not None:
                # Blocks while the feed is behind; the subscription then overflows into a Gap.
                await self._queue.put((subscription.topic, item))

    async def get(self, timeout: float) -> tuple[str, dict[str, Any] | Gap] | None:
        """Return the next (topic, message or Gap), or None after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop forwarding and unsubscribe, without awaiting.

        Feeds end by cancellation (the client left), and under an anyio cancel scope every
        further await would be cancelled too: cleanup must not need one.
        """
        for task in self._tasks:
            task.cancel()
        for subscription in self._subscriptions:
            subscription.close()


@dataclass
class FeedContext:
    """What a feed needs: the bus, a fresh state reader, timings and counters."""

    bus: Bus
    channel_id: int
    read_state: Callable[[], Awaitable[tuple[str, int | None]]]  # (state, session id)
    heartbeat: float
    stats: FeedStats


async def _subscribe(context: FeedContext, topics: list[str]) -> Merged:
    subscriptions: list[Subscription] = []
    try:
        for name in topics:
            subscriptions.append(await context.bus.subscribe(name, maxsize=_QUEUE))
    except BaseException:
        for subscription in subscriptions:
            subscription.close()
        raise
    return Merged(subscriptions)


async def studio_feed(
    context: FeedContext, snapshot: dict[str, Any] | None
) -> AsyncIterator[bytes]:
    """Yield the studio feed of one channel until the client goes away."""
    cid = context.channel_id
    merged = await _subscribe(context, [live_topic(cid), studio_topic(cid), vod_topic(cid)])
    try:
        yield b"retry: 3000\n\n"
        state, session_id = await context.read_state()
        yield encode("state", {"state": state, "session_id": session_id})
        viewers: dict[str, Any] | None = None
        if snapshot is not None:
            yield encode("snapshot", snapshot)
            viewers = _viewers(snapshot)
            yield encode("viewers", viewers)
        while True:
            item = await merged.get(context.heartbeat)
            context.stats.wakeups += 1
            if item is None:
                context.stats.heartbeats += 1
                yield HEARTBEAT
                continue
            name, message = item
            if isinstance(message, Gap):
                # Messages may have been lost: say the state again if it changed meanwhile.
                if name == live_topic(cid):
                    fresh = await context.read_state()
                    if fresh != (state, session_id):
                        state, session_id = fresh
                        yield encode("state", {"state": state, "session_id": session_id})
                continue
            if name == live_topic(cid) and message.get("type") == "state":
                state, session_id = str(message.get("state")), message.get("session_id")
            for chunk in _studio_events(cid, name, message, viewers):
                context.stats.events += 1
                yield chunk
            if name == studio_topic(cid) and message.get("type") == "snapshot":
                viewers = _viewers(message)
    finally:
        merged.close()


def _viewers(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": snapshot.get("session_id"), **snapshot.get("viewers", {})}


def _studio_events(
    channel_id: int, name: str, message: dict[str, Any], viewers: dict[str, Any] | None
) -> list[bytes]:
    if name == live_topic(channel_id) and message.get("type") == "state":
        return [
            encode(
                "state", {"state": message.get("state"), "session_id": message.get("session_id")}
            )
        ]
    if name == studio_topic(channel_id) and message.get("type") == "snapshot":
        events = [encode("snapshot", message)]
        current = _viewers(message)
        if current != viewers:
            events.append(encode("viewers", current))
        return events
    if name == vod_topic(channel_id):
        return [encode("vod", message)]
    return []


@dataclass
class _Status:
    state: str
    session_id: int | None
    viewers: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "live": self.state in LIVE_STATES,
            "session_id": self.session_id,
            "viewers": self.viewers,
        }


async def viewer_feed(context: FeedContext, viewers: int) -> AsyncIterator[bytes]:
    """Yield the viewer page's feed (state and viewer count) until the client goes away."""
    cid = context.channel_id
    merged = await _subscribe(context, [live_topic(cid), studio_topic(cid)])
    try:
        yield b"retry: 3000\n\n"
        state, session_id = await context.read_state()
        status = _Status(state, session_id, viewers if state in LIVE_STATES else 0)
        sent = status.as_json()
        yield encode("status", sent)
        while True:
            item = await merged.get(context.heartbeat)
            context.stats.wakeups += 1
            if item is None:
                context.stats.heartbeats += 1
                yield HEARTBEAT
                continue
            name, message = item
            if isinstance(message, Gap):
                if name == live_topic(cid):
                    status.state, status.session_id = await context.read_state()
            else:
                _follow(status, cid, name, message)
            current = status.as_json()
            if current != sent:
                sent = current
                context.stats.events += 1
                yield encode("status", current)
    finally:
        merged.close()


def _follow(status: _Status, channel_id: int, name: str, message: dict[str, Any]) -> None:
    kind = message.get("type")
    if name == live_topic(channel_id) and kind == "state":
        status.state = str(message.get("state"))
        status.session_id = message.get("session_id")
        if status.state not in LIVE_STATES:
            status.viewers = 0
    elif name == studio_topic(channel_id) and kind == "snapshot":
        status.state = str(message.get("state"))
        status.session_id = message.get("session_id")
        with contextlib.suppress(KeyError, TypeError, ValueError):
            status.viewers = (
                int(message["viewers"]["current"]) if status.state in LIVE_STATES else 0
            )
