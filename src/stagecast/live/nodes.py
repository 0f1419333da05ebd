"""Which nodes are alive, and which sessions' files still wait in a node's spool.

Every node (``stagecast serve`` process) sharing a Redis beats every ``BEAT_SECONDS``: it
sets ``<prefix>:node:<name>`` to what its spool still owes the storage (session ids), expiring
after ``ALIVE_SECONDS``. A node whose key is gone is dead: its sessions may be taken over by
the node its encoder reconnects to, or are put into ``reconnecting`` (and so, after the grace
window, ended) by the sweep of any other node. A VOD job waits while any live node still
spools its session's files.

Without Redis there is one node and nothing to share: every node is "alive" (a session is
never taken from its owner), and the spool asked is this node's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
ALIVE_SECONDS = 6.0


class Nodes:
    """This node's heartbeat and what it knows of the others."""

    def __init__(
        self,
        name: str,
        redis: Redis | None,
        *,
        prefix: str = "stagecast",
        spooling: Callable[[], Iterable[int]] = tuple,
    ) -> None:
        self.name = name
        self._redis = redis
        self._prefix = prefix
        self._spooling = spooling
        self._task: asyncio.Task[None] | None = None

    def _key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}"

    @property
    def shared(self) -> bool:
        """Tell whether other nodes may exist (a Redis is configured)."""
        return self._redis is not None

    async def start(self) -> None:
        """Beat once now (so this node is known before it takes a publisher), then in the
        background."""
        if self._redis is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await self.beat()
        self._task = asyncio.create_task(self._beat_forever(), name="node-beat")

    async def close(self) -> None:
        """Stop beating and say so (the others see this node gone at once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(self._key(self.name))

    async def beat(self) -> None:
        """Say this node is alive, with the sessions its spool still owes the storage."""
        assert self._redis is not None
        value = orjson.dumps({"spooling": sorted(set(self._spooling()))})
        await self._redis.set(self._key(self.name), value, px=int(ALIVE_SECONDS * 1000))

    async def _beat_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("node heartbeat failed (%s); retrying", exc)
                failing = True
                continue
            failing = False

    async def alive(self, names: Iterable[str]) -> set[str]:
        """Return which of ``names`` are alive; every one of them without Redis or when Redis
        cannot be asked (a session is never taken from an owner that may be alive)."""
        wanted = sorted(set(names))
        if self._redis is None or not wanted:
            return set(wanted)
        try:
            found = await self._redis.mget([self._key(n) for n in wanted])
        except (RedisError, OSError):
            return set(wanted)
        return {
            n for n, value in zip(wanted, found, strict=True) if value is not None or n == self.name
        }

    async def spooling(self, session_id: int) -> bool:
        """Tell whether any live node (this one included) still spools the session's files.

        True when it cannot be known (Redis unreachable): the VOD waits rather than lose them.
        """
        if session_id in set(self._spooling()):
            return True
        if self._redis is None:
            return False
        try:
            keys = [key async for key in self._redis.scan_iter(match=self._key("*"), count=500)]
            values = await self._redis.mget(keys) if keys else []
        except (RedisError, OSError):
            return True
        for value in values:
            if value is None:
                continue
            try:
                if session_id in orjson.loads(value).get("spooling", ()):
                    return True
            except (orjson.JSONDecodeError, AttributeError):
                continue
        return False
