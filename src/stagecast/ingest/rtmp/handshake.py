"""The plain RTMP handshake, server side: C0 C1 in, S0 S1 S2 out, C2 in.

C0 must be version 3. S1 is our time, four zero bytes (no digest: the unsigned handshake)
and random filler; S2 echoes C1, which ffmpeg, OBS (librtmp) and every encoder we know accept.
C2 is read and not checked: clients fill it differently and nothing rides on it.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import Final

from stagecast.ingest.rtmp.errors import HandshakeError

RTMP_VERSION: Final = 3
HANDSHAKE_SIZE: Final = 1536


async def accept_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float
) -> None:
    """Complete the server side of the handshake within ``timeout`` seconds.

    Raises ``HandshakeError`` when C0 is not version 3, ``TimeoutError`` when the peer is too
    slow, ``asyncio.IncompleteReadError`` or ``ConnectionError`` when it goes away.
    """
    async with asyncio.timeout(timeout):
        version = (await reader.readexactly(1))[0]
        if version != RTMP_VERSION:
            raise HandshakeError(f"unsupported RTMP version byte 0x{version:02x}")
        c1 = await reader.readexactly(HANDSHAKE_SIZE)
        writer.write(bytes((RTMP_VERSION,)) + server_s1() + c1)
        await writer.drain()
        await reader.readexactly(HANDSHAKE_SIZE)


def server_s1() -> bytes:
    """Return an S1 (or a C1): 4-byte time in ms, 4 zero bytes, 1528 random bytes."""
    uptime = int(time.monotonic() * 1000) & 0xFFFFFFFF
    return struct.pack(">II", uptime, 0) + os.urandom(HANDSHAKE_SIZE - 8)
