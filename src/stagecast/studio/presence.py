"""Viewer presence per live session: current, peak and total unique viewers.

A viewer is a playback session id (``vs``): the viewer page sends it with a heartbeat every
``viewer_heartbeat_seconds`` and passes it on the master playlist URL, so the player's playlist
refreshes count for the same viewer; players outside the page are counted by their playlist
requests alone. A viewer is gone after two missed heartbeats (plus half an interval of slack).

Sightings are buffered without I/O (``Viewers.seen`` runs inside request handlers and playlist
observers) and written in one batch per tick. Two stores sit behind one protocol: in memory
(one process) and Redis (every process shares the counts: a sorted set of last-seen times, a
HyperLogLog of ids and a peak per session, updated by one atomic script per session).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagecast.backoff import Backoff
from stagecast.errors import ServiceUnavailable
from stagecast.live.hooks import ViewEvent
from stagecast.studio.hyperloglog import HyperLogLog

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = 2
_REDIS_TIMEOUT = 1.0
_KEY_TTL = 6 * 3600.0  # seconds Redis keeps a session's presence after its last update
_BATCH = 500  # sightings per script call
_BACKOFF_FIRST, _BACKOFF_CAP = 1.0, 30.0

Seen = Mapping[int, Mapping[str, float]]  # session id -> viewer id -> last seen (epoch seconds)


def gone_after(heartbeat: float) -> float:
    """Return the silence (seconds) after which a viewer is gone: 2 missed heartbeats + slack."""
    return heartbeat * (MISSED_HEARTBEATS + 0.5)


class ViewerCounts(NamedTuple):
    """Viewers of one session: watching now, most at once, distinct ever (estimated)."""

    current: int = 0
    peak: int = 0
    unique: int = 0


NONE = ViewerCounts()


class PresenceUnavailable(ServiceUnavailable):
    """The presence store (Redis) did not answer."""

    code = "presence_unavailable"


class Presence(Protocol):
    """Where sightings are kept and counted."""

    async def touch(self, seen: Seen, now: float) -> None:
        """Record sightings. Raises PresenceUnavailable."""

    async def counts(self, session_ids: Sequence[int], now: float) -> dict[int, ViewerCounts]:
        """Return the counts of each session. Raises PresenceUnavailable."""

    async def forget(self, session_ids: Iterable[int]) -> None:
        """Drop what is kept about sessions that ended."""


class _Room:
    __slots__ = ("counted", "last_seen", "peak", "unique", "valid_until")

    def __init__(self) -> None:
        self.last_seen: OrderedDict[str, float] = OrderedDict()  # oldest sighting first
        self.peak = 0
        self.unique = HyperLogLog()
        # The last counts, good until a sighting arrives or the oldest viewer's time runs out.
        self.counted: ViewerCounts | None = None
        self.valid_until = 0.0

    def expire(self, limit: float) -> None:
        last_seen = self.last_seen
        while last_seen:
            viewer, seen = next(iter(last_seen.items()))
            if seen > limit:
                break
            del last_seen[viewer]


class MemoryPresence:
    """Presence for a single process, bounded in sessions and in viewers per session."""

    def __init__(
        self, heartbeat: float, *, max_sessions: int = 10_000, max_viewers: int = 200_000
    ) -> None:
        self.gone_after = gone_after(heartbeat)
        self.max_sessions = max_sessions
        self.max_viewers = max_viewers
        self._rooms: dict[int, _Room] = {}

    def _room(self, session_id: int) -> _Room:
        room = self._rooms.get(session_id)
        if room is None:
            if len(self._rooms) >= self.max_sessions:
                del self._rooms[next(iter(self._rooms))]
            room = self._rooms[session_id] = _Room()
        return room

    async def touch(self, seen: Seen, now: float) -> None:
        """Record sightings (the newest time of a viewer wins)."""
        for session_id, viewers in seen.items():
            room = self._room(session_id)
            room.expire(now - self.gone_after)
            last_seen = room.last_seen
            for viewer, at in sorted(viewers.items(), key=lambda item: item[1]):
                if viewer in last_seen:
                    at = max(at, last_seen[viewer])
                    last_seen.move_to_end(viewer)
                elif len(last_seen) >= self.max_viewers:
                    continue
                last_seen[viewer] = at
                room.unique.add(viewer)
            room.peak = max(room.peak, len(last_seen))
            room.counted = None

    async def counts(self, session_ids: Sequence[int], now: float) -> dict[int, ViewerCounts]:
        """Return each session's counts, forgetting viewers gone by ``now``."""
        result: dict[int, ViewerCounts] = {}
        limit = now - self.gone_after
        for session_id in session_ids:
            room = self._rooms.get(session_id)
            if room is None:
                result[session_id] = NONE
                continue
            if room.counted is None or now >= room.valid_until:
                room.expire(limit)
                room.counted = ViewerCounts(len(room.last_seen), room.peak, room.unique.count())
                oldest = next(iter(room.last_seen.values()), None)
                room.valid_until = math.inf if oldest is None else oldest + self.gone_after
            result[session_id] = room.counted
        return result

    async def forget(self, session_ids: Iterable[int]) -> None:
        """Drop the sessions' rooms."""
        for session_id in session_ids:
            self._rooms.pop(session_id, None)


# KEYS: last-seen sorted set, unique HyperLogLog, peak. ARGV: now ms, gone-after ms, key TTL
# ms, then (score, viewer) pairs. Returns {current, peak, unique}.
_PRESENCE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if #ARGV > 3 then
  local pairs, ids = {}, {}
  for i = 4, #ARGV, 2 do
    pairs[#pairs + 1] = ARGV[i]
    pairs[#pairs + 1] = ARGV[i + 1]
    ids[#ids + 1] = ARGV[i + 1]
  end
  redis.call('ZADD', KEYS[1], 'GT', unpack(pairs))
  redis.call('PFADD', KEYS[2], unpack(ids))
end
local current = redis.call('ZCARD', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[3]) or '0')
if current > peak then
  peak = current
end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[3], peak, 'PX', ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {current, peak, redis.call('PFCOUNT', KEYS[2])}
"""


class RedisPresence:
    """Presence shared by every process on the same Redis and prefix."""

    def __init__(self, client: Redis, heartbeat: float, *, prefix: str = "stagecast") -> None:
        self._client = client
        self._prefix = f"{prefix}:viewers:"
        self._script = client.register_script(_PRESENCE)
        self.gone_after = gone_after(heartbeat)

    def _keys(self, session_id: int) -> list[str]:
        base = f"{self._prefix}{{{session_id}}}"  # one hash slot per session (Redis Cluster)
        return [f"{base}:seen", f"{base}:unique", f"{base}:peak"]

    def _args(self, now: float, pairs: Sequence[Any] = ()) -> list[Any]:
        return [int(now * 1000), int(self.gone_after * 1000), int(_KEY_TTL * 1000), *pairs]

    async def _run(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        await self._script(keys=keys, args=args, client=pipe)
                    return list(await pipe.execute())
        except (RedisError, OSError, TimeoutError) as exc:
            raise PresenceUnavailable("viewer presence unavailable") from exc

    async def touch(self, seen: Seen, now: float) -> None:
        """Record sightings, one script call per session and batch."""
        calls: list[tuple[list[str], list[Any]]] = []
        for session_id, viewers in seen.items():
            items = list(viewers.items())
            for start in range(0, len(items), _BATCH):
                pairs: list[Any] = []
                for viewer, at in items[start : start + _BATCH]:
                    pairs += [int(at * 1000), viewer]
                calls.append((self._keys(session_id), self._args(now, pairs)))
        if calls:
            await self._run(calls)

    async def counts(self, session_ids: Sequence[int], now: float) -> dict[int, ViewerCounts]:
        """Return each session's counts in one pipelined round trip."""
        if not session_ids:
            return {}
        results = await self._run([(self._keys(s), self._args(now)) for s in session_ids])
        return {
            s: ViewerCounts(int(r[0]), int(r[1]), int(r[2]))
            for s, r in zip(session_ids, results, strict=True)
        }

    async def forget(self, session_ids: Iterable[int]) -> None:
        """Keys expire on their own (``_KEY_TTL`` after the last update): nothing to do."""


class Viewers:
    """Buffer sightings without I/O; write and count them once per tick.

    While the store is unavailable, ``counts`` returns the last known counts and the store is
    not asked again before a backoff has passed (``stagecast.backoff``: 1 s, then jittered
    between 1 s and a ceiling doubling to 30 s): no busy loop. The 1 s floor is one tick: a
    failed store call costs its tick the timeout, and the next tick should not pay it again.
    """

    def __init__(
        self,
        presence: Presence,
        *,
        heartbeat: float,
        clock: Callable[[], float] = time.time,
        max_pending: int = 100_000,
    ) -> None:
        self.presence = presence
        self.heartbeat = heartbeat
        self.clock = clock
        self.max_pending = max_pending
        self._pending: dict[tuple[int, str], float] = {}
        self.last: dict[int, ViewerCounts] = {}
        self.dropped = 0  # sightings refused because the buffer was full
        self.failures = 0  # store calls that failed
        self._backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP, floor=_BACKOFF_FIRST)

    def seen(self, session_id: int, viewer_id: str) -> None:
        """Note that ``viewer_id`` watches ``session_id`` now (no I/O)."""
        key = (session_id, viewer_id)
        if len(self._pending) >= self.max_pending and key not in self._pending:
            self.dropped += 1
            return
        self._pending[key] = self.clock()

    def on_view(self, event: ViewEvent) -> None:
        """Observer of ``SessionHooks.on_view``: a player fetched a media playlist."""
        self.seen(event.session_id, event.viewer_id)

    def _available(self) -> bool:
        return self._backoff.ready()

    def _failed(self, exc: PresenceUnavailable) -> None:
        self.failures += 1
        if not self._backoff.failing:
            log.warning("viewer presence unavailable: %s", exc.__cause__ or exc)
        self._backoff.fail()

    def _recovered(self) -> None:
        if self._backoff.reset():
            log.info("viewer presence available again")

    async def flush(self) -> None:
        """Write the buffered sightings (dropped if the store is down: viewers send again)."""
        if not self._pending or not self._available():
            if len(self._pending) >= self.max_pending:
                self._pending.clear()
            return
        batch, self._pending = self._pending, {}
        grouped: defaultdict[int, dict[str, float]] = defaultdict(dict)
        for (session_id, viewer_id), at in batch.items():
            grouped[session_id][viewer_id] = at
        try:
            await self.presence.touch(grouped, self.clock())
        except PresenceUnavailable as exc:
            self._failed(exc)
        else:
            self._recovered()

    async def counts(self, session_ids: Sequence[int]) -> dict[int, ViewerCounts]:
        """Flush, then return the counts of ``session_ids`` (last known ones on failure)."""
        await self.flush()
        if session_ids and self._available():
            try:
                self.last = await self.presence.counts(session_ids, self.clock())
            except PresenceUnavailable as exc:
                self._failed(exc)
            else:
                self._recovered()
        return {s: self.last.get(s, NONE) for s in session_ids}
