"""A client that never reads is dropped without holding the channel back, and can resume."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

import pytest

from stagecast.chat import frames
from stagecast.chat.messages import Draft
from tests.chat.conftest import Live, Room, frame_where, hello, of_type, open_socket


@pytest.fixture
def chat_options() -> dict[str, Any]:
    """A small send queue, so a stuck client overflows quickly."""
    return {"chat_send_queue": 8}


async def stuck_client(live: Live, room: Room) -> socket.socket:
    """Open a socket, complete the handshake, and never read again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = live.http.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /api/v1/channels/{room.slug}/chat/socket HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {room.tokens['bob']}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    return sock


def next_frame(data: bytes | bytearray, start: int) -> tuple[int, bytes, int] | None:
    """Return (opcode, payload, end) of the whole frame at ``data[start:]``, if there is one."""
    if len(data) - start < 2:
        return None
    opcode, length = data[start] & 0x0F, data[start + 1] & 0x7F
    header = {126: 4, 127: 10}.get(length, 2)
    if len(data) - start < header:
        return None
    if length == 126:
        length = struct.unpack("!H", data[start + 2 : start + 4])[0]
    elif length == 127:
        length = struct.unpack("!Q", data[start + 2 : start + 10])[0]
    end = start + header + length
    if len(data) < end:
        return None
    return opcode, bytes(data[start + header : end]), end


async def read_close_code(sock: socket.socket) -> int | None:
    """Read what the server sends until its close frame (or EOF); return the close code.

    Frames are parsed as they complete, once each: the backlog of a dropped client runs to
    megabytes, and the server gives them 5 s to get out.
    """
    loop = asyncio.get_running_loop()
    buffer = bytearray()
    position: int | None = None  # where the next frame starts, once the handshake is read
    async with asyncio.timeout(10):
        while chunk := await loop.sock_recv(sock, 1 << 20):
            buffer += chunk
            if position is None:
                ends = buffer.find(b"\r\n\r\n")
                if ends < 0:
                    continue
                position = ends + 4
            while (found := next_frame(buffer, position)) is not None:
                opcode, payload, position = found
                if opcode == 8:
                    return int(struct.unpack("!H", payload[:2])[0])
    return None


async def test_a_client_that_never_reads_is_dropped_and_others_keep_up(
    live: Live, room: Room
) -> None:
    """The stuck socket overflows its queue and is dropped (4408); the others get every message
    promptly; the stuck client later resumes from its last id without a gap."""
    reader = await open_socket(live.socket_url(room.slug), room.auth("ann"))
    await hello(reader)
    stuck = await stuck_client(live, room)
    hub = live.chat.hub
    async with asyncio.timeout(5):
        while hub.stats.connected < 2:
            await asyncio.sleep(0.01)
    body = "x" * 500
    sent = 0

    async def once_dropped() -> int | None:
        """Start reading the stuck socket as soon as it is dropped: the server gives its last
        frames 5 s to get out, and finishing the batch under way may take that long."""
        async with asyncio.timeout(30):
            while hub.stats.dropped == 0:
                await asyncio.sleep(0.01)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # read it all, quickly
        return await read_close_code(stuck)

    closing = asyncio.create_task(once_dropped())
    async with asyncio.timeout(30):
        while hub.stats.dropped == 0:
            batch = [
                live.chat.writer.store(room.channel_id, Draft(3, "ann", body)) for _ in range(20)
            ]
            for message, _ in await asyncio.gather(*batch):
                await live.chat.publish(room.channel_id, frames.Message.of(message))
            sent += 20
            last = await frame_where(reader, lambda f, n=sent: f.get("id") == n, timeout=5)
            assert last["type"] == "message"
    assert hub.stats.connected >= 1
    assert await closing == 4408
    stuck.close()
    back = await open_socket(live.socket_url(room.slug, last_id=sent - 5), room.auth("bob"))
    await hello(back)
    resumed = [await frame_where(back, of_type("message")) for _ in range(5)]
    assert [f["id"] for f in resumed] == list(range(sent - 4, sent + 1))
    await back.close()
    await reader.close()
