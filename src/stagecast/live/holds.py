"""Bounds on held requests (LL-HLS blocking reloads and preload-hinted parts).

A held request costs a task and a socket for up to three target durations. One player holds
one or two at a time (its playlist reload and the next part); past ``per_client`` from one
address, or ``total`` in the process, a new one is refused with 429 at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from stagecast.errors import TooManyRequests

HELD_PER_CLIENT = 32  # a household behind one address runs a few players, each holding two
HELD_TOTAL = 20_000


class Holds:
    """Count the requests held now, per client address and in all."""

    def __init__(self, *, per_client: int = HELD_PER_CLIENT, total: int = HELD_TOTAL) -> None:
        self.per_client = per_client
        self.total = total
        self._by_client: dict[str | None, int] = {}
        self._held = 0

    @contextmanager
    def hold(self, client: str | None) -> Iterator[None]:
        """Count one held request of ``client`` while the block runs. Raises TooManyRequests."""
        if self._held >= self.total:
            raise TooManyRequests("too many requests are waiting on this server", retry_after=1.0)
        if self._by_client.get(client, 0) >= self.per_client:
            raise TooManyRequests("too many waiting requests from this address", retry_after=1.0)
        self._held += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        try:
            yield
        finally:
            self._held -= 1
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]

    @property
    def held(self) -> int:
        """Return how many requests are held now."""
        return self._held
