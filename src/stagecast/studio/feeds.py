"""Server-sent event feeds: the studio's (metrics, state, viewers, VODs) and the viewer page's.

A feed subscribes to its channel's bus topics when its response starts and merges them into
one bounded queue; it writes an event per message and a heartbeat comment when nothing
happened for ``heartbeat`` seconds. While idle it sleeps on that queue: no polling, no busy
loop, also when Redis is down (the bus then hands out a ``Gap`` and reconnects by itself).
Connections are counted per channel, per holder (the account of a studio feed, the client
address of a viewer feed) and per process, all in this process; past any limit a new one gets
429, so one tenant cannot take the slots every other channel shares.

Studio feed events (``event: <name>`` then ``data: <JSON>``):

- ``state``: ``{"state": "live"|"idle"|"reconnecting"|"ended"|"offline", "session_id": 9}``
- ``history``: once, right after the first ``state`` while on air: the session's last five
  minutes, ``{"session_id": 9, "items": [{"sampled_at": "...", "viewers": 3,
  "bitrate_kbps": 2500.1, "verdict": "good"}]}`` (a sample every ``metrics_history_seconds``),
  so that a reloaded dashboard's charts keep the minutes before the reload
- ``snapshot``: the publisher's snapshot (``stagecast.studio.snapshots``), every second
- ``viewers``: ``{"session_id": 9, "current": 4, "peak": 6, "unique": 11}`` when they change
- ``vod``: what the VOD domain announced on ``vod.<channel_id>``, e.g. ``{"type": "vod.ready",
  "vod_id": 12, ...}``; also once as the feed opens when the session has ended (the state
  says so, or the final snapshot does) and its VOD is ready already

Viewer page feed events: ``status``: ``{"state": ..., "live": true, "session_id": 9,
"viewers": 4}`` whenever one of those changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from stagecast.bus import Bus, Gap, Subscription
from stagecast.errors import StagecastError, TooManyRequests
from stagecast.live.states import ON_AIR, STATE_TOPIC
from stagecast.studio.history import Sample
from stagecast.studio.snapshots import SNAPSHOT_TOPIC, Snapshot
from stagecast.vod.events import VOD_TOPIC, VodReady

HEARTBEAT = b": heartbeat\n\n"
K = TypeVar("K", int, str)
_QUEUE = 64


def encode(name: str, data: Any) -> bytes:
    """Return one SSE event: ``event: name`` and ``data: <JSON on one line>``.

    ``data`` may hold dataclasses, enums and datetimes (orjson writes them as the bus does).
    """
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))


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
    """Bounded connection counts: per channel, per holder and for the whole process."""

    def __init__(
        self,
        per_channel: int,
        per_process: int,
        stats: FeedStats,
        *,
        per_holder: int | None = None,
        holder_kind: str = "account",
    ) -> None:
        self.per_channel = per_channel
        self.per_process = per_process
        self.per_holder = per_holder
        self.holder_kind = holder_kind  # named in the refusal: "account", "address"
        self.stats = stats
        self._by_channel: dict[int, int] = {}
        self._by_holder: dict[str, int] = {}
        self._total = 0

    def _refusal(self, channel_id: int, holder: str | None) -> str | None:
        if self._by_channel.get(channel_id, 0) >= self.per_channel:
            return "this channel"
        if (
            holder is not None
            and self.per_holder is not None
            and self._by_holder.get(holder, 0) >= self.per_holder
        ):
            return f"this {self.holder_kind}"
        if self._total >= self.per_process:
            return "this server"
        return None

    def acquire(self, channel_id: int, holder: str | None = None) -> Callable[[], None]:
        """Take a slot for ``holder`` or raise TooManyRequests; return the (idempotent) release."""
        scope = self._refusal(channel_id, holder)
        if scope is not None:
            self.stats.refused += 1
            raise TooManyRequests(f"too many open feeds for {scope}", retry_after=5)
        _bump(self._by_channel, channel_id, 1)
        if holder is not None:
            _bump(self._by_holder, holder, 1)
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
            _bump(self._by_channel, channel_id, -1)
            if holder is not None:
                _bump(self._by_holder, holder, -1)

        return release

    def count(self, channel_id: int | None = None) -> int:
        """Return the open feeds of a channel (or of the process)."""
        return self._total if channel_id is None else self._by_channel.get(channel_id, 0)

    def held_by(self, holder: str) -> int:
        """Return the open feeds of ``holder``."""
        return self._by_holder.get(holder, 0)


def _bump(counts: dict[K, int], key: K, by: int) -> None:
    """Add ``by`` to ``counts[key]``, dropping keys that reach zero (the map stays small)."""
    left = counts.get(key, 0) + by
    if left:
        counts[key] = left
    else:
        counts.pop(key, None)


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
    # The studio feed's catch-up as it opens: a session's recent samples, its ready VOD.
    read_history: Callable[[int], Awaitable[list[Sample]]] | None = None
    read_vod: Callable[[int], Awaitable[VodReady | None]] | None = None


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


# What a feed hears: a message of the named kind, a Gap on it, or nothing for a heartbeat.
Heard = tuple[str, dict[str, Any] | Gap] | None


async def _hear(merged: Merged, kinds: dict[str, str], context: FeedContext) -> Heard:
    """Return the next ``(kind, message or Gap)`` (``kinds`` maps topic → kind), or None when
    ``heartbeat`` seconds passed without one (the feed then sends a heartbeat)."""
    item = await merged.get(context.heartbeat)
    context.stats.wakeups += 1
    if item is None:
        context.stats.heartbeats += 1
        return None
    return kinds[item[0]], item[1]


def _state(message: dict[str, Any]) -> tuple[str, int | None] | None:
    """Return (state, session id) of a live state announcement (None if malformed)."""
    try:
        changed = STATE_TOPIC.decode(message)
    except ValueError:
        return None
    return str(changed.state), changed.session_id


async def studio_feed(context: FeedContext, snapshot: Snapshot | None) -> AsyncIterator[bytes]:
    """Yield the studio feed of one channel until the client goes away."""
    cid = context.channel_id
    kinds = {STATE_TOPIC.name(cid): "state", SNAPSHOT_TOPIC.name(cid): "snapshot",
             VOD_TOPIC.name(cid): "vod"}  # fmt: skip
    merged = await _subscribe(context, list(kinds))
    try:
        yield b"retry: 3000\n\n"
        state = await context.read_state()
        yield _state_event(state)
        for chunk in await _history(context, state):  # before the snapshot: charts go forward
            yield chunk
        viewers: dict[str, Any] | None = None
        if snapshot is not None:
            yield encode("snapshot", SNAPSHOT_TOPIC.encode(snapshot))
            viewers = _viewers(snapshot)
            yield encode("viewers", viewers)
        for chunk in await _ready_vod(context, state, snapshot):
            yield chunk
        while True:
            item = await _hear(merged, kinds, context)
            if item is None:
                yield HEARTBEAT
                continue
            kind, message = item
            if isinstance(message, Gap):
                # Messages may have been lost: say the state again if it changed meanwhile.
                if kind == "state" and (fresh := await context.read_state()) != state:
                    state = fresh
                    yield _state_event(state)
                continue
            events, viewers, state = _studio_events(kind, message, viewers, state)
            for chunk in events:
                context.stats.events += 1
                yield chunk
    finally:
        merged.close()


async def _history(context: FeedContext, state: tuple[str, int | None]) -> list[bytes]:
    """Return the ``history`` event of a feed opened while on air (none off the air).

    Best effort, as the catch-up after it: when the database does not answer, the feed goes
    on without it.
    """
    name, session_id = state
    if session_id is None or name not in ON_AIR or context.read_history is None:
        return []
    try:
        found = await context.read_history(session_id)
    except StagecastError:
        return []
    items = [
        {"sampled_at": s.sampled_at, "viewers": s.viewers, "bitrate_kbps": s.bitrate_kbps,
         "verdict": s.verdict}
        for s in found
    ]  # fmt: skip
    return [encode("history", {"session_id": session_id, "items": items})]


async def _ready_vod(
    context: FeedContext, state: tuple[str, int | None], snapshot: Snapshot | None
) -> list[bytes]:
    """Return the ``vod`` event of a session that ended, if its VOD is ready already.

    The session is the one the state names as ended, else the one of the final snapshot kept
    for late feeds (after the end the channel reads as offline, without a session).
    """
    session_id = state[1] if state[0] == "ended" else None
    if session_id is None and snapshot is not None and snapshot.state == "ended":
        session_id = snapshot.session_id
    if session_id is None or context.read_vod is None:
        return []
    try:
        ready = await context.read_vod(session_id)
    except StagecastError:
        return []
    return [] if ready is None else [encode("vod", VOD_TOPIC.encode(ready))]


def _state_event(state: tuple[str, int | None]) -> bytes:
    return encode("state", {"state": state[0], "session_id": state[1]})


def _viewers(snapshot: Snapshot) -> dict[str, Any]:
    """Return the ``viewers`` event of ``snapshot``."""
    viewers = snapshot.viewers
    return {
        "session_id": snapshot.session_id,
        "current": viewers.current,
        "peak": viewers.peak,
        "unique": viewers.unique,
    }


def _snapshot(message: dict[str, Any]) -> Snapshot | None:
    """Return the snapshot a message holds (None if malformed)."""
    try:
        return SNAPSHOT_TOPIC.decode(message)
    except ValueError:
        return None


def _studio_events(
    kind: str,
    message: dict[str, Any],
    viewers: dict[str, Any] | None,
    state: tuple[str, int | None],
) -> tuple[list[bytes], dict[str, Any] | None, tuple[str, int | None]]:
    """Return the events a message makes, and the viewers and state known after it."""
    if kind == "state":
        changed = _state(message)
        return (
            ([], viewers, state) if changed is None else ([_state_event(changed)], viewers, changed)
        )
    if kind == "snapshot":
        snapshot = _snapshot(message)
        if snapshot is None:
            return [], viewers, state
        events = [encode("snapshot", SNAPSHOT_TOPIC.encode(snapshot))]
        current = _viewers(snapshot)
        if current != viewers:
            events.append(encode("viewers", current))
        return events, current, state
    if kind == "vod":
        try:
            ready = VOD_TOPIC.decode(message)
        except ValueError:
            return [], viewers, state
        return [encode("vod", VOD_TOPIC.encode(ready))], viewers, state
    return [], viewers, state


@dataclass
class _Status:
    state: str
    session_id: int | None
    viewers: int = 0

    @property
    def live(self) -> bool:
        return self.state in ON_AIR

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "live": self.live,
            "session_id": self.session_id,
            "viewers": self.viewers,
        }


async def viewer_feed(context: FeedContext, viewers: int) -> AsyncIterator[bytes]:
    """Yield the viewer page's feed (state and viewer count) until the client goes away."""
    cid = context.channel_id
    kinds = {STATE_TOPIC.name(cid): "state", SNAPSHOT_TOPIC.name(cid): "snapshot"}
    merged = await _subscribe(context, list(kinds))
    try:
        yield b"retry: 3000\n\n"
        status = _Status(*await context.read_state())
        status.viewers = viewers if status.live else 0
        sent = status.as_json()
        yield encode("status", sent)
        while True:
            item = await _hear(merged, kinds, context)
            if item is None:
                yield HEARTBEAT
                continue
            kind, message = item
            if isinstance(message, Gap):
                if kind == "state":
                    status.state, status.session_id = await context.read_state()
            else:
                _follow(status, kind, message)
            current = status.as_json()
            if current != sent:
                sent = current
                context.stats.events += 1
                yield encode("status", current)
    finally:
        merged.close()


def _follow(status: _Status, kind: str, message: dict[str, Any]) -> None:
    if kind == "state" and (changed := _state(message)) is not None:
        status.state, status.session_id = changed
        if not status.live:
            status.viewers = 0
    elif kind == "snapshot" and (snapshot := _snapshot(message)) is not None:
        status.state = str(snapshot.state)
        status.session_id = snapshot.session_id
        status.viewers = snapshot.viewers.current if status.live else 0
