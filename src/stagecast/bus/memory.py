"""The in-process bus: the embedded default, one process, no network."""

from __future__ import annotations

from collections.abc import Sequence

from stagecast.bus.base import Payload, Subscription, decode, encode


class MemoryBus:
    """Deliver to this process's subscribers only.

    Payloads pass through JSON, as they would through Redis, so code that works here works
    across processes too.
    """

    def __init__(self) -> None:
        self._topics: dict[str, set[Subscription]] = {}

    async def publish(self, topic: str, payload: Payload) -> None:
        """Deliver ``payload`` to every local subscriber of ``topic``."""
        subscribers = self._topics.get(topic)
        if not subscribers:
            return
        data = decode(encode(payload))
        for subscription in list(subscribers):
            subscription.deliver(data)

    async def publish_many(self, messages: Sequence[tuple[str, Payload]]) -> None:
        """Deliver each ``(topic, payload)`` in order."""
        for topic, payload in messages:
            await self.publish(topic, payload)

    async def subscribe(self, topic: str, *, maxsize: int = 1024) -> Subscription:
        """Return a subscription to ``topic``, active at once."""
        subscription = Subscription(topic, maxsize, self._remove)
        self._topics.setdefault(topic, set()).add(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._topics.get(subscription.topic)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._topics[subscription.topic]

    @property
    def healthy(self) -> bool:
        """Always true: nothing can disconnect."""
        return True

    async def close(self) -> None:
        """Drop every subscription."""
        self._topics.clear()
