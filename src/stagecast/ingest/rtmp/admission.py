"""Connection slots of the RTMP server: a cap per source address, a budget for strangers.

A connection is a *stranger* from accept until its ``publish`` succeeds, and a *publisher*
after. Strangers cost nothing to make, so they never take a publisher's slot: when a cap is
reached, a stranger is closed to make room (the oldest one of the address that holds the
most strangers, or of the newcomer's own address for the per-address cap), and a newcomer is
refused only when every slot it could take belongs to a publisher. An attacker reconnecting
in a loop thus mostly closes its own connections, while a real encoder needs its slot only
for the fraction of a second its setup takes.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Protocol

from stagecast.ingest.rtmp.limits import RtmpLimits

log = logging.getLogger(__name__)


class Slot(Protocol):
    """What admission needs of a connection: its address for the log, and a way to close it."""

    @property
    def peer(self) -> str:
        """Return the client's address as ``host:port``."""

    def abort(self, reason: str) -> None:
        """Close the connection now."""


def address_key(peername: object) -> str:
    """Return the source a connection counts against: its IPv4 address, or its IPv6 /64.

    One subscriber gets a whole IPv6 /64, so counting single addresses would not cap anyone;
    an IPv4-mapped IPv6 address counts as the IPv4 address it carries.
    """
    host = peername[0] if isinstance(peername, tuple) and peername else peername
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)  # not an IP socket (a Unix socket in a test): one source
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Admission:
    """Count connections per source and state; decide who gets a slot at accept."""

    def __init__(self, limits: RtmpLimits) -> None:
        self._limits = limits
        self._source: dict[Slot, str] = {}  # every admitted connection → its source
        self._per_source: dict[str, int] = {}
        self._strangers: dict[str, dict[Slot, None]] = {}  # source → strangers, oldest first
        self._stranger_count = 0

    @property
    def strangers(self) -> int:
        """Return how many admitted connections have not published yet."""
        return self._stranger_count

    def admit(self, slot: Slot, source: str) -> str | None:
        """Take ``slot`` in, closing strangers to make room; return why it is refused, or None."""
        limits = self._limits
        full = self._per_source.get(source, 0) >= limits.max_connections_per_address
        if full and not self._evict(source):
            return f"{limits.max_connections_per_address} connections from this address"
        while (
            self._stranger_count >= limits.max_pending_connections
            or len(self._source) >= limits.max_connections
        ):
            if not self._strangers:
                return f"{len(self._source)} connections open"
            self._evict(max(self._strangers, key=lambda s: len(self._strangers[s])))
        self._source[slot] = source
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._strangers.setdefault(source, {})[slot] = None
        self._stranger_count += 1
        return None

    def published(self, slot: Slot) -> None:
        """Record that ``slot`` published with a valid key: it is never closed to make room."""
        source = self._source.get(slot)
        if source is not None:
            self._forget_stranger(slot, source)

    def release(self, slot: Slot) -> None:
        """Free the slot of a connection that ended (nothing happens if it was not admitted)."""
        source = self._source.pop(slot, None)
        if source is None:
            return
        self._forget_stranger(slot, source)
        left = self._per_source[source] - 1
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]

    def _forget_stranger(self, slot: Slot, source: str) -> None:
        strangers = self._strangers.get(source)
        if strangers is None or slot not in strangers:
            return
        del strangers[slot]
        self._stranger_count -= 1
        if not strangers:
            del self._strangers[source]

    def _evict(self, source: str) -> bool:
        """Close the oldest stranger from ``source``; False if it has none."""
        strangers = self._strangers.get(source)
        if not strangers:
            return False
        victim = next(iter(strangers))
        self.release(victim)
        log.warning("rtmp %s: closed to make room: no publish yet and slots are full", victim.peer)
        victim.abort("closed to make room for a new connection")
        return True
