"""What a peer can do wrong: one tree, so the connection catches it in one place.

Every class here means "this peer broke the protocol or a limit"; the connection that raised
it is closed with one WARNING line and no other connection is touched. None of these reach an
HTTP client, so they sit outside ``stagecast.errors``.
"""

from __future__ import annotations


class RtmpError(Exception):
    """The peer broke the RTMP protocol or exceeded a limit."""


class HandshakeError(RtmpError):
    """The handshake was malformed (wrong version byte)."""


class ChunkError(RtmpError):
    """The chunk stream was malformed or exceeded a limit."""


class AmfError(RtmpError):
    """An AMF0 value was malformed, truncated, too deep or of an unsupported type."""


class CommandError(RtmpError):
    """A command arrived out of order or with arguments of the wrong shape."""
