"""Bounds on what one RTMP peer can make the server wait for, hold or allocate.

Until it has published with a valid stream key a peer is a stranger, and the ``setup_*``
budgets hold it to what ``connect``, ``createStream`` and ``publish`` need (a few hundred
bytes in a handful of chunks): its CPU and memory are bounded by a few kilobytes' worth of
work, whatever chunk size or message sizes it announces. A publisher gets the full limits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class RtmpLimits:
    """Every bound of the RTMP server: times in seconds, sizes in bytes.

    A peer that crosses one is disconnected with one WARNING line; other connections never
    notice. The defaults suit OBS and ffmpeg on a LAN or the internet.
    """

    handshake_timeout: float = 5.0
    """Time from accept to a completed handshake."""
    idle_timeout: float = 30.0
    """Longest silence from the peer (time spent waiting on a slow publisher does not count)."""
    publish_timeout: float = 10.0
    """Time from accept to a successful ``publish``; nobody may sit connected without one."""
    write_timeout: float = 10.0
    """Longest a write to the peer may wait for the socket to drain."""
    linger_timeout: float = 2.0
    """After a refusal or an unpublish, how long the peer gets to read the reply and hang up."""
    close_timeout: float = 5.0
    """How long ``RtmpServer.close`` waits for connections (and their ``on_close``) to finish."""
    max_chunk_size: int = 65536
    """Largest Set Chunk Size accepted from a peer."""
    max_message_size: int = 8 * 1024 * 1024
    """Largest message (a keyframe, say) a peer may announce."""
    max_chunk_streams: int = 64
    """Most chunk streams one peer may open."""
    max_buffered: int = 16 * 1024 * 1024
    """Most bytes held for partial messages across all of a peer's chunk streams."""
    max_connections: int = 500
    """Most simultaneous connections; past it a stranger is closed to make room, if any."""
    max_pending_connections: int = 64
    """Most connections that have not published yet; past it the oldest stranger of the
    address holding the most of them is closed to make room (publishers are never closed)."""
    max_connections_per_address: int = 16
    """Most connections from one address (an IPv6 /64 counts as one); past it that address's
    oldest stranger makes room, and if all of them publish the new one is closed at accept."""
    setup_max_message_size: int = 8 * 1024
    """Largest message a peer may announce before it has published."""
    setup_max_bytes: int = 16 * 1024
    """Most bytes a peer may send between the handshake and a successful publish."""
    setup_max_chunks: int = 256
    """Most chunks a peer may send before it has published (tiny chunks cost the most)."""

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"RtmpLimits.{field.name} must be positive")
        if not 128 <= self.max_chunk_size <= 0x7FFFFFFF:
            raise ValueError("RtmpLimits.max_chunk_size must be in 128..2^31-1")
        if self.max_message_size > 0xFFFFFF:
            raise ValueError("RtmpLimits.max_message_size cannot exceed 2^24-1 (a 24-bit field)")
        if self.max_buffered < self.max_message_size:
            raise ValueError("RtmpLimits.max_buffered must hold at least one whole message")
