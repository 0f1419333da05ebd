"""The live edge shared across nodes: the owner puts it in Redis, every other node mirrors it.

A viewer may reach any node; only one (the owner) holds the encoder and the live session.
The owner shares what its viewers are served from memory:

- each new init segment, segment and LL-HLS part, as a Redis string with a time to live
  (``<prefix>:edge:<session>:<rendition>/<file>``), written **before** anything names it;
- then, per rendition, the playlist as served (``EdgeState``: the text, the delta update,
  the ``Position`` blocking reloads wait on, the master) in the hash ``<prefix>:edge:<session>``
  and on the typed bus topic ``live.edge.<session>``.

Another node that is asked for a session it does not hold subscribes to that topic and reads
the hash once (``EdgeMirror``); from then on it answers playlists (blocking reloads and delta
updates included) from its own memory, exactly as the owner does, and fetches each piece of
media from Redis once into its own bounded memory. Finished objects older than the Redis copies
come from the storage (the bucket). Why Redis and not the bucket or a fetch from the owner: the
bucket lists a segment only after its upload (and never parts), and a fetch from the owner
puts every other node's viewers on the owner's CPU; Redis pub/sub reaches every node within
milliseconds and the owner writes each piece once, whatever the number of nodes.

The owner never waits on Redis: ``EdgeShare`` queues (bounded in bytes, the oldest media
dropped first) and one task writes behind the live edge; a Redis outage only makes other
nodes fall back to storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagecast.bus import Bus, Gap, Subscription
from stagecast.bus.topics import Topic
from stagecast.cache import TtlCache
from stagecast.errors import StagecastError
from stagecast.live.lowlatency import Position
from stagecast.live.playlists import Rendered

log = logging.getLogger(__name__)

_QUEUE_BYTES = 64 * 1024 * 1024  # media waiting for Redis, per process
_STATE_SECONDS = 60.0  # the shared playlists outlive their last change by this
_IDLE_SECONDS = 30.0  # a mirror nobody asked for this long is dropped
_ABSENT_SECONDS = 0.5  # "not shared" is remembered this long (no Redis read per request)
_FETCH_TIMEOUT = 2.0


@dataclass(frozen=True)
class EdgeState:
    """One rendition's live playlist as its owner serves it."""

    session_id: int
    rendition: str
    position: Position
    text: str  # the playlist (with parts on a low-latency stream)
    delta: str | None  # the delta update (EXT-X-SKIP), low-latency streams only
    master: str | None  # the session's master playlist


EDGE_TOPIC = Topic("live.edge.{}", EdgeState)


class _NotShared(Exception):
    """The piece of media is not in Redis (not yet, no longer, or Redis is away)."""


def _state_key(prefix: str, session_id: int) -> str:
    return f"{prefix}:edge:{session_id}"


def _media_key(prefix: str, session_id: int, rendition: str, filename: str) -> str:
    return f"{prefix}:edge:{session_id}:{rendition}/{filename}"


# -- the owner's side ---------------------------------------------------------------------------


@dataclass
class _Media:
    key: str
    data: bytes
    ttl: float


class EdgeShare:
    """What this node's sessions share, written to Redis behind the live edge."""

    def __init__(self, redis: Redis, bus: Bus, *, prefix: str = "stagecast") -> None:
        self._redis = redis
        self._bus = bus
        self._prefix = prefix
        self._media: deque[_Media] = deque()
        self._bytes = 0
        self._states: dict[tuple[int, str], Callable[[], EdgeState | None]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.dropped = 0
        self.written = 0

    def media(
        self, session_id: int, rendition: str, filename: str, data: bytes, ttl: float
    ) -> None:
        """Share one init segment, segment or part (before anything that names it)."""
        self._media.append(
            _Media(_media_key(self._prefix, session_id, rendition, filename), data, ttl)
        )
        self._bytes += len(data)
        while self._bytes > _QUEUE_BYTES and self._media:
            dropped = self._media.popleft()
            self._bytes -= len(dropped.data)
            self.dropped += 1
        self._kick()

    def state(
        self, session_id: int, rendition: str, render: Callable[[], EdgeState | None]
    ) -> None:
        """Share the rendition's playlist as ``render()`` gives it when written (latest wins)."""
        self._states[(session_id, rendition)] = render
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="edge-share")

    async def close(self) -> None:
        """Write what is queued (bounded), then stop."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._idle.wait()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not (self._media or self._states):
                self._idle.set()
            await self._wake.wait()
            self._wake.clear()
            media, self._media, self._bytes = self._media, deque(), 0
            states, self._states = self._states, {}
            rendered = [s for s in (render() for render in states.values()) if s is not None]
            try:
                await self._write(list(media), rendered)
            except (RedisError, OSError, StagecastError) as exc:
                self.dropped += len(media)
                if not self._failing:
                    log.warning("live edge not shared with other nodes: %s", exc)
                self._failing = True
                continue
            if self._failing:
                log.info("live edge shared with other nodes again")
            self._failing = False
            self.written += len(media) + len(rendered)

    async def _write(self, media: list[_Media], states: list[EdgeState]) -> None:
        async with asyncio.timeout(_FETCH_TIMEOUT):
            pipe = self._redis.pipeline(transaction=False)
            for item in media:
                pipe.set(item.key, item.data, px=int(item.ttl * 1000))
            for state in states:
                key = _state_key(self._prefix, state.session_id)
                pipe.hset(key, state.rendition, orjson.dumps(EDGE_TOPIC.encode(state)))
                pipe.pexpire(key, int(_STATE_SECONDS * 1000))
            await pipe.execute()  # the media first: a playlist never names what is not there
        if states:
            await self._bus.publish_many(
                [(EDGE_TOPIC.name(s.session_id), EDGE_TOPIC.encode(s)) for s in states]
            )


# -- every other node's side --------------------------------------------------------------------


class Mirrored:
    """One rendition of a session held elsewhere, as this node serves it (updated in place)."""

    def __init__(self, state: EdgeState) -> None:
        self.changed = asyncio.Event()
        self.gone = False  # no longer mirrored: waiters give up
        self._set(state)

    def _set(self, state: EdgeState) -> None:
        self.state = state
        self.rendered = Rendered.of(state.text)
        self.delta = Rendered.of(state.delta) if state.delta is not None else None

    def update(self, state: EdgeState) -> None:
        """Take the owner's newer playlist; wake every request waiting for a change."""
        self._set(state)
        self.notify()

    def notify(self) -> None:
        """Wake every waiting request (they look again)."""
        self.changed.set()
        self.changed = asyncio.Event()

    def position(self) -> Position:
        """Return where the owner's playlist is."""
        return self.state.position

    def playlist_of(self, skip: bool) -> Rendered:
        """Return the playlist (its delta update with ``skip`` on a low-latency stream)."""
        return self.delta if skip and self.delta is not None else self.rendered

    async def wait_for(self, ready: Callable[[Position], bool]) -> bool:
        """Wait until ``ready(position)`` holds or the stream ends; False if it stopped being
        mirrored first. The caller bounds the wait."""
        while not self.gone:
            position = self.state.position
            if position.ended or ready(position):
                return True
            await self.changed.wait()
        return False


@dataclass
class _Session:
    renditions: dict[str, Mirrored]
    master: Rendered | None
    subscription: Subscription
    task: asyncio.Task[None] | None = None
    used: float = field(default_factory=time.monotonic)


class EdgeMirror:
    """The live edges of sessions held by other nodes, mirrored on demand."""

    def __init__(
        self, redis: Redis, bus: Bus, *, prefix: str = "stagecast", max_files: int = 512
    ) -> None:
        self._redis = redis
        self._bus = bus
        self._prefix = prefix
        self._sessions: dict[int, _Session] = {}
        self._opening: dict[int, asyncio.Future[_Session | None]] = {}
        self._absent: dict[int, float] = {}
        # Parts and segments fetched from Redis, for this node's viewers (they never change).
        self._media: TtlCache[str, bytes] = TtlCache(max_entries=max_files, ttl=120.0)
        self._sweeper: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop mirroring."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session_id in list(self._sessions):
            await self._drop(session_id)

    async def rendition(self, session_id: int, rendition: str) -> Mirrored | None:
        """Return the mirrored rendition, or None if its owner shares nothing (yet)."""
        session = await self._session(session_id)
        return session.renditions.get(rendition) if session is not None else None

    async def master(self, session_id: int) -> Rendered | None:
        """Return the session's master playlist as its owner shares it, or None."""
        session = await self._session(session_id)
        return session.master if session is not None else None

    async def media(self, session_id: int, rendition: str, filename: str) -> bytes | None:
        """Return a shared init segment, segment or part (fetched from Redis once), or None."""
        key = _media_key(self._prefix, session_id, rendition, filename)
        try:
            return await self._media.get(key, partial(self._fetch, key))
        except _NotShared:
            return None

    async def _fetch(self, key: str) -> bytes:
        try:
            async with asyncio.timeout(_FETCH_TIMEOUT):
                found = await self._redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _NotShared from exc
        if not isinstance(found, bytes):
            raise _NotShared  # not (or no longer) shared: nothing is remembered of it
        return found

    async def _session(self, session_id: int) -> _Session | None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.used = time.monotonic()
            return session
        absent = self._absent.get(session_id)
        if absent is not None and time.monotonic() - absent < _ABSENT_SECONDS:
            return None
        opening = self._opening.get(session_id)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[_Session | None] = asyncio.get_running_loop().create_future()
        self._opening[session_id] = future
        try:
            session = await self._open(session_id)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            del self._opening[session_id]
        future.set_result(session)
        return session

    async def _open(self, session_id: int) -> _Session | None:
        try:
            subscription = await EDGE_TOPIC.subscribe(self._bus, session_id, maxsize=256)
        except StagecastError:
            return None
        try:
            states = await self._read(session_id)
        except (RedisError, OSError, TimeoutError):
            states = []
        if not states:
            subscription.close()
            self._absent[session_id] = time.monotonic()
            return None
        self._absent.pop(session_id, None)
        session = _Session({}, None, subscription)
        for state in states:
            self._apply(session, state)
        session.task = asyncio.get_running_loop().create_task(
            self._follow(session_id, session), name=f"edge-mirror-{session_id}"
        )
        self._sessions[session_id] = session
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="edge-sweep")
        return session

    async def _read(self, session_id: int) -> list[EdgeState]:
        async with asyncio.timeout(_FETCH_TIMEOUT):
            found = await self._redis.hgetall(_state_key(self._prefix, session_id))
        states = []
        for raw in found.values():
            with contextlib.suppress(ValueError):
                states.append(EDGE_TOPIC.decode(orjson.loads(raw)))
        return states

    def _apply(self, session: _Session, state: EdgeState) -> None:
        current = session.renditions.get(state.rendition)
        if current is None:
            session.renditions[state.rendition] = Mirrored(state)
        elif not _older(state.position, current.state.position):
            current.update(state)
        if state.master is not None and (
            session.master is None or session.master.text != state.master
        ):
            session.master = Rendered.of(state.master)

    async def _follow(self, session_id: int, session: _Session) -> None:
        async with session.subscription:
            while True:
                item = await session.subscription.get()
                if item is None:
                    continue
                if isinstance(item, Gap):
                    with contextlib.suppress(RedisError, OSError, TimeoutError):
                        for state in await self._read(session_id):
                            self._apply(session, state)
                    continue
                try:
                    state = EDGE_TOPIC.decode(item)
                except ValueError:
                    log.warning("ignoring a malformed live edge message for %s", session_id)
                    continue
                self._apply(session, state)

    async def _sweep(self) -> None:
        while self._sessions:
            await asyncio.sleep(_IDLE_SECONDS / 3)
            now = time.monotonic()
            for session_id, session in list(self._sessions.items()):
                if now - session.used > _IDLE_SECONDS:
                    await self._drop(session_id)
            for session_id, since in list(self._absent.items()):
                if now - since > _ABSENT_SECONDS:
                    del self._absent[session_id]

    async def _drop(self, session_id: int) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        if session.task is not None:
            session.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.task
        for mirrored in session.renditions.values():
            mirrored.gone = True
            mirrored.notify()


def _older(new: Position, current: Position) -> bool:
    """Tell whether ``new`` is behind ``current`` (a late copy of an earlier change)."""
    if current.ended and not new.ended:
        return True
    return (new.last_sequence, new.next_part) < (current.last_sequence, current.next_part)
