"""Malformed and hostile peers: each is closed with one warning, and nobody else notices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from stagecast.ingest.rtmp import RtmpLimits, amf0, chunks
from stagecast.ingest.rtmp.chunks import Message
from stagecast.ingest.rtmp.replies import PUBLISH_START
from tests.ingest.rtmp.client import RawClient
from tests.ingest.rtmp.conftest import ServerFactory
from tests.ingest.rtmp.media import FPS, decode, finished, publishing
from tests.ingest.rtmp.recording import RecordingHandler

LIMITS = RtmpLimits(handshake_timeout=1.0, idle_timeout=3.0, publish_timeout=4.0)
Misbehaviour = Callable[[RawClient], Awaitable[None]]


async def garbage(client: RawClient) -> None:
    """An HTTP request on the RTMP port."""
    await client.send_raw(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")


async def bad_version(client: RawClient) -> None:
    """C0 announces version 6 (RTMPE)."""
    await client.send_raw(b"\x06" + os.urandom(1536))


async def stalled_handshake(client: RawClient) -> None:
    """C0 and half of C1, then nothing."""
    await client.send_raw(b"\x03" + bytes(700))


async def huge_chunk_size(client: RawClient) -> None:
    """Set Chunk Size of 1 MiB, over the 64 KiB limit."""
    await client.handshake()
    await client.send(2, chunks.set_chunk_size(1 << 20))


async def huge_message(client: RawClient) -> None:
    """A type-0 header announcing a 16 MiB message (over the 8 MiB limit)."""
    await client.handshake()
    header = bytes((0x03,)) + bytes(3) + (0xFFFFFF).to_bytes(3, "big") + b"\x09" + bytes(4)
    await client.send_raw(header + bytes(128))


async def too_many_chunk_streams(client: RawClient) -> None:
    """One small message on each of 65 chunk streams (the limit is 64)."""
    await client.handshake()
    for csid in range(3, 3 + 65):
        await client.send(csid, Message(chunks.ACKNOWLEDGEMENT, 0, 0, bytes(4)))


async def headerless_chunk_stream(client: RawClient) -> None:
    """A type-1 header on a chunk stream that never had a type-0 header."""
    await client.handshake()
    await client.send_raw(
        bytes((0x40 | 7,)) + bytes(3) + (4).to_bytes(3, "big") + b"\x14" + bytes(4)
    )


async def garbage_amf(client: RawClient) -> None:
    """A command whose body is not AMF0 (unknown marker after the name)."""
    await client.handshake()
    body = amf0.encode("connect") + b"\x42\x42\x42\x42"
    await client.send(3, Message(chunks.COMMAND_AMF0, 0, 0, body))


async def truncated_amf(client: RawClient) -> None:
    """A command whose string claims more bytes than the message has."""
    await client.handshake()
    await client.send(3, Message(chunks.COMMAND_AMF0, 0, 0, b"\x02\xff\xffconnect"))


async def idle(client: RawClient) -> None:
    """A completed handshake, then silence."""
    await client.handshake()


async def no_publish(client: RawClient) -> None:
    """Connected and pinging (never idle) but never publishing."""
    await client.connect()
    for _ in range(12):
        await client.send(2, Message(chunks.USER_CONTROL, 0, 0, b"\x00\x06" + bytes(4)))
        await asyncio.sleep(0.5)  # paced like a keepalive; the server's deadline is what ends it


# Each misbehaviour and the reason its one warning line must give.
MISBEHAVIOURS: list[tuple[Misbehaviour, str]] = [
    (garbage, "unsupported RTMP version byte 0x47"),
    (bad_version, "unsupported RTMP version byte 0x06"),
    (stalled_handshake, "handshake not completed in 1 s"),
    (huge_chunk_size, "chunk size 1048576 outside 1..65536"),
    (huge_message, "message of 16777215 bytes exceeds the limit (8192 before publish)"),
    (too_many_chunk_streams, "more than 64 chunk streams"),
    (headerless_chunk_stream, "chunk stream 7 starts with a type 1 header"),
    (garbage_amf, "unsupported AMF0 marker 0x42"),
    (truncated_amf, "truncated"),
    (idle, "nothing received for 3 s"),
    (no_publish, "no publish within 4 s"),
]


async def misbehave(port: int, action: Misbehaviour) -> str:
    """Run ``action`` on a fresh connection, assert the server closes it; return its address."""
    client = await RawClient.open(port)
    try:
        # The server may hang up before the client is done misbehaving.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await action(client)
        assert await client.closed_by_server(timeout=5), f"{action.__name__} left open"
        return client.address
    finally:
        await client.close()


@pytest.mark.ffmpeg
async def test_hostile_peers_are_closed_while_a_publish_carries_on(
    start_server: ServerFactory,
    handler: RecordingHandler,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Each bad peer is closed with exactly one WARNING naming it; ffmpeg's stream is whole."""
    caplog.set_level(logging.WARNING, logger="stagecast.ingest.rtmp")
    server = await start_server(LIMITS)
    url = f"rtmp://127.0.0.1:{server.port}/live/steady"
    async with publishing(url, seconds=4) as ffmpeg:
        await handler.recording("steady", timeout=10)
        addresses = await asyncio.gather(*(misbehave(server.port, m) for m, _ in MISBEHAVIOURS))
        code, stderr = await finished(ffmpeg, timeout=30)
    assert code == 0, stderr
    recording = await handler.recording("steady", timeout=1)
    assert recording.closes == ["unpublished (FCUnpublish)"]
    path = tmp_path / "steady.flv"
    await asyncio.to_thread(path.write_bytes, recording.flv())
    decoded = await decode(path)
    assert abs(decoded.video_frames - 4 * FPS) <= 3, decoded

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(MISBEHAVIOURS), warnings
    for address, (action, reason) in zip(addresses, MISBEHAVIOURS, strict=True):
        mine = [w for w in warnings if f" {address}:" in w]
        assert len(mine) == 1, (action.__name__, warnings)
        assert reason in mine[0], (action.__name__, mine[0])
    assert handler.attempts == [("live", "steady")]


async def test_connections_over_the_limit_are_closed_at_accept(
    start_server: ServerFactory, handler: RecordingHandler
) -> None:
    """With max_connections=2 held by two publishers a third socket is closed at once; the
    publishers carry on."""
    server = await start_server(RtmpLimits(max_connections=2))
    first, second = await RawClient.open(server.port), await RawClient.open(server.port)
    try:
        for client in (first, second):
            await client.connect()
            assert (await client.publish(f"key-{client.address}"))["code"] == PUBLISH_START
        third = await RawClient.open(server.port)
        try:
            assert await third.closed_by_server(timeout=2)
        finally:
            await third.close()
        assert server.connection_count == 2
        assert all(not recording.closes for recording in handler.recordings)
    finally:
        await first.close()
        await second.close()
