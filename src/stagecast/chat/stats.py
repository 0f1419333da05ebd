"""Counters of this process's chat, kept by the hub for /metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class HubStats:
    """Counters of this process's chat, for /metrics."""

    posted: int = 0  # messages stored by this process
    delivered: int = 0  # frames written to sockets
    dropped: int = 0  # sockets dropped for not reading
    connected: int = 0  # sockets open now
    rooms: int = 0  # channels with at least one socket here
    gap_fills: int = 0  # missing ids read back from the database
    resyncs: int = 0  # full resynchronisations after a bus Gap
    resets: int = 0  # rooms told to reload history (too far behind)

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return asdict(self)
