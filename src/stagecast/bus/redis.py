"""The Redis bus: one pub/sub connection per process, one Redis channel per topic in use.

A single listener task owns the reads. When the connection drops, every subscriber gets a
``Gap``, the task reconnects with capped backoff and full jitter (``stagecast.backoff``: up to
0.1 s, doubling to 5 s; no busy loop) and resubscribes every topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from stagecast.backoff import Backoff
from stagecast.bus.base import BusUnavailable, Payload, Subscription, decode, encode

log = logging.getLogger(__name__)

_SUBSCRIBE_TIMEOUT = 2.0
_PUBLISH_TIMEOUT = 2.0
_BACKOFF_FIRST, _BACKOFF_CAP = 0.1, 5.0


class RedisBus:
    """Deliver to subscribers in every process connected to the same Redis and prefix."""

    def __init__(self, client: Redis, *, prefix: str = "stagecast") -> None:
        self._client = client
        self._prefix = f"{prefix}:bus:"
        self._topics: dict[str, set[Subscription]] = {}
        self._active: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._pubsub: PubSub = client.pubsub()
        self._wake = asyncio.Event()
        self._resubscribe = False
        self._healthy = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the listener task."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="redis-bus")

    @property
    def healthy(self) -> bool:
        """Tell whether the pub/sub connection is up."""
        return self._healthy

    async def publish(self, topic: str, payload: Payload) -> None:
        """Publish ``payload`` on ``topic``. Raises BusUnavailable if Redis does not take it."""
        data = encode(payload)
        try:
            async with asyncio.timeout(_PUBLISH_TIMEOUT):
                await self._client.publish(self._prefix + topic, data)
        except (RedisError, OSError, TimeoutError) as exc:
            raise BusUnavailable("message bus unavailable") from exc

    async def publish_many(self, messages: Sequence[tuple[str, Payload]]) -> None:
        """Publish each ``(topic, payload)`` in order, pipelined: one round trip for all.

        Raises BusUnavailable if Redis does not take them (some may have been published).
        """
        if not messages:
            return
        pipe = self._client.pipeline(transaction=False)
        for topic, payload in messages:
            pipe.publish(self._prefix + topic, encode(payload))
        try:
            async with asyncio.timeout(_PUBLISH_TIMEOUT):
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise BusUnavailable("message bus unavailable") from exc

    async def subscribe(self, topic: str, *, maxsize: int = 1024) -> Subscription:
        """Subscribe to ``topic``; wait until Redis confirms, or queue a Gap if it cannot."""
        subscription = Subscription(topic, maxsize, self._remove)
        self._topics.setdefault(topic, set()).add(subscription)
        try:
            async with asyncio.timeout(_SUBSCRIBE_TIMEOUT):
                await self._ensure_subscribed(topic)
        except (RedisError, OSError, TimeoutError):
            subscription.gap("message bus unavailable")
        return subscription

    async def _ensure_subscribed(self, topic: str) -> None:
        if topic in self._active:
            return
        future = self._pending.get(topic)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[topic] = future
            if not self._resubscribe:  # while reconnecting, the listener subscribes every topic
                await self._pubsub.subscribe(self._prefix + topic)
            self._wake.set()
        await asyncio.shield(future)

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._topics.get(subscription.topic)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._topics[subscription.topic]
            self._active.discard(subscription.topic)
            if self._healthy and not self._resubscribe:
                task = asyncio.get_running_loop().create_task(self._unsubscribe(subscription.topic))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _unsubscribe(self, topic: str) -> None:
        if topic in self._topics:
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(_SUBSCRIBE_TIMEOUT):
                await self._pubsub.unsubscribe(self._prefix + topic)

    async def _listen(self) -> None:
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP)
        while True:
            if not self._topics or not (self._resubscribe or self._pubsub.subscribed):
                # Nothing to read yet: subscribe() wakes us once its SUBSCRIBE is on the wire.
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if self._resubscribe:
                    await self._pubsub.subscribe(*(self._prefix + t for t in self._topics))
                    self._resubscribe = False
                message = await self._pubsub.get_message(timeout=1.0)
                if not self._healthy:
                    log.info("redis bus reconnected")
                self._healthy = True
                backoff.reset()
                if message is not None:
                    self._dispatch(message)
            except (RedisError, OSError, RuntimeError) as exc:
                await self._lost(exc, backoff.next_delay())

    async def _lost(self, exc: BaseException, delay: float) -> None:
        if self._healthy:
            log.warning("redis bus connection lost: %s: %s", type(exc).__name__, exc)
        self._healthy = False
        self._active.clear()
        for subscribers in self._topics.values():
            for subscription in subscribers:
                subscription.gap("message bus reconnecting")
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        self._pubsub = self._client.pubsub()
        self._resubscribe = True
        await asyncio.sleep(delay)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if not isinstance(channel, str) or not channel.startswith(self._prefix):
            return
        topic = channel[len(self._prefix) :]
        kind = message.get("type")
        if kind == "subscribe":
            self._active.add(topic)
            future = self._pending.pop(topic, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        if kind != "message":
            return
        try:
            payload = decode(message["data"])
        except (ValueError, TypeError):
            log.warning("redis bus dropped a malformed message on %s", topic)
            return
        for subscription in list(self._topics.get(topic, ())):
            subscription.deliver(payload)

    async def close(self) -> None:
        """Stop the listener and close the pub/sub connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        self._topics.clear()
