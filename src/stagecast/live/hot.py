"""The media segments one process serves from memory, bounded in bytes.

Sessions put a segment here when they list it and drop it when it leaves their playlist window;
viewers' requests for the live window are answered from here without touching the disk.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

DEFAULT_HOT_MEDIA_BYTES = 256 * 1024 * 1024

MediaKey = tuple[int, str, str]  # (session id, rendition, file name)
K = TypeVar("K", bound=Hashable)


class HotMedia(Generic[K]):
    """The media segments this process serves from memory, at most ``max_bytes`` in all.

    Sessions put a segment here when they list it and drop it when it leaves their playlist
    window; past the bound the oldest segments go first (a later request for them is served
    from storage). A segment larger than the whole bound is not held. ``max_bytes`` 0 holds
    nothing. Keyed by ``MediaKey``: the live sessions held here and the ones mirrored.
    """

    def __init__(self, max_bytes: int = DEFAULT_HOT_MEDIA_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._held: OrderedDict[K, bytes] = OrderedDict()  # oldest first
        self._bytes = 0

    def put(self, key: K, data: bytes) -> None:
        """Hold ``data`` under ``key`` (replacing it), evicting the oldest past the bound."""
        self.drop(key)
        if len(data) > self.max_bytes:
            return
        while self._held and self._bytes + len(data) > self.max_bytes:
            _, evicted = self._held.popitem(last=False)
            self._bytes -= len(evicted)
        self._held[key] = data
        self._bytes += len(data)

    def get(self, key: K) -> bytes | None:
        """Return the bytes held under ``key``, or None (evicted, dropped or never held)."""
        return self._held.get(key)

    def drop(self, key: K) -> None:
        """Stop holding ``key`` (nothing happens if it is not held)."""
        data = self._held.pop(key, None)
        if data is not None:
            self._bytes -= len(data)

    @property
    def bytes_held(self) -> int:
        """Return the bytes held now (never more than ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._held)
