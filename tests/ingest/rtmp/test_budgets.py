"""Before publish a peer is a stranger: its CPU and memory are bounded by small budgets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import tracemalloc

import pytest

from stagecast.ingest.rtmp import RtmpLimits, chunks
from stagecast.ingest.rtmp.chunks import Message
from stagecast.ingest.rtmp.replies import PUBLISH_START
from tests.ingest.rtmp.client import RawClient
from tests.ingest.rtmp.conftest import ServerFactory
from tests.ingest.rtmp.recording import RecordingHandler

MiB = 1024 * 1024


async def send_until_closed(client: RawClient, data: bytes, piece: int = 64 * 1024) -> None:
    """Write ``data`` in ``piece``-byte writes, each drained; stop when the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for start in range(0, len(data), piece):
            await client.send_raw(data[start : start + piece])


def server_held() -> int:
    """Return the bytes now allocated by Stagecast's own code (the clients' are left out)."""
    mine = tracemalloc.Filter(True, "*/stagecast/*", all_frames=True)
    snapshot = tracemalloc.take_snapshot().filter_traces([mine])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def warnings_of(caplog: pytest.LogCaptureFixture, client: RawClient) -> list[str]:
    """Return the WARNING lines that name ``client``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and f" {client.address}:" in r.getMessage()
    ]


async def test_one_byte_chunks_before_publish_are_cut_off_within_the_budget(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 kB data message in 1-byte chunks (1 MB on the wire) costs the server a few
    hundred chunks' work, not 500,000: it is closed, and the CPU spent stays small."""
    caplog.set_level(logging.WARNING, logger="stagecast.ingest.rtmp")
    server = await start_server()
    client = await RawClient.open(server.port)
    try:
        await client.handshake()
        await client.set_chunk_size(1)
        attack = client.encoder.encode(4, Message(chunks.DATA_AMF0, 0, 0, b"\x05" * 500_000))
        started = time.process_time()
        await send_until_closed(client, attack)
        assert await client.closed_by_server(timeout=5)
        spent = time.process_time() - started
    finally:
        await client.close()
    assert spent < 0.5, f"{spent:.2f} s of CPU for one stranger"  # 2.5 s before the budget
    (line,) = warnings_of(caplog, client)
    assert "message of 500000 bytes exceeds the limit (8192 before publish)" in line


async def test_a_flood_of_empty_messages_before_publish_ends_at_the_chunk_budget(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """200,000 one-byte type-3 headers, each a whole empty message, are cut off after 256
    chunks: the cost of a stranger's bytes does not depend on how it slices them."""
    caplog.set_level(logging.WARNING, logger="stagecast.ingest.rtmp")
    server = await start_server()
    client = await RawClient.open(server.port)
    try:
        await client.handshake()
        empty = client.encoder.encode(4, Message(chunks.DATA_AMF0, 0, 0, b""))
        started = time.process_time()
        await send_until_closed(client, empty + bytes((0xC4,)) * 200_000)
        assert await client.closed_by_server(timeout=5)
        spent = time.process_time() - started
    finally:
        await client.close()
    assert spent < 0.5, f"{spent:.2f} s of CPU for one stranger"
    (line,) = warnings_of(caplog, client)
    assert "more than 256 chunks before publish" in line


async def test_half_sent_big_messages_before_publish_hold_no_memory(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture, tracing: None
) -> None:
    """30 peers each announcing two 8 MiB messages and sending half of each are closed at
    the header: the server's code holds well under 1 MiB for all of them (240 MiB before)."""
    caplog.set_level(logging.WARNING, logger="stagecast.ingest.rtmp")
    server = await start_server()
    piece = bytes(64 * 1024)
    header = chunks.ChunkEncoder(65536).encode(4, Message(chunks.VIDEO, 0, 0, b""))[:12]

    async def attack(number: int) -> RawClient:
        client = await RawClient.open(server.port, f"127.0.3.{number + 1}")
        await client.handshake()
        await client.set_chunk_size(65536)
        with contextlib.suppress(ConnectionError):
            for csid in (4, 5):
                # A type-0 header announcing 8 MiB of video, then 4 MiB of it in 64 KiB chunks.
                announce = bytes((csid,)) + header[1:4] + (8 * MiB).to_bytes(3, "big")
                await client.send_raw(announce + header[7:])
                for number in range(64):
                    await client.send_raw((b"" if number == 0 else bytes((0xC0 | csid,))) + piece)
        return client

    before = server_held()
    clients = await asyncio.gather(*(attack(n) for n in range(30)))
    try:
        closed = await asyncio.gather(*(c.closed_by_server(timeout=5) for c in clients))
        held = server_held() - before
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert all(closed)
    assert held < 1 * MiB, f"{held / MiB:.1f} MiB held for 30 strangers"
    for client in clients:
        (line,) = warnings_of(caplog, client)
        assert "message of 8388608 bytes exceeds the limit (8192 before publish)" in line


async def test_setup_bytes_are_budgeted_even_in_small_valid_messages(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown commands of 1 KiB each, valid and answered, still end at 16 KiB before publish."""
    caplog.set_level(logging.WARNING, logger="stagecast.ingest.rtmp")
    server = await start_server()
    client = await RawClient.open(server.port)
    try:
        await client.connect()
        with contextlib.suppress(ConnectionError):
            for number in range(40):
                await client.call("chatter", float(number + 2), "x" * 1000)
        assert await client.closed_by_server(timeout=5)
    finally:
        await client.close()
    assert any("more than 16384 bytes before publish" in w for w in warnings_of(caplog, client))


async def test_after_publish_a_big_keyframe_arrives_whole(
    start_server: ServerFactory, handler: RecordingHandler
) -> None:
    """The setup budgets end with a successful publish: a 4 MiB video message in 128-byte
    chunks, after 64 KiB of setup-sized traffic, is delivered whole."""
    server = await start_server(RtmpLimits(publish_timeout=30))
    client = await RawClient.open(server.port)
    try:
        await client.connect()
        assert (await client.publish("big"))["code"] == PUBLISH_START
        recording = await handler.recording("big", timeout=5)
        for stamp in range(64):  # 64 small audio messages: past every setup budget
            await client.send(6, Message(chunks.AUDIO, 1, stamp, b"\xaf\x01" + bytes(1022)))
        await client.send(7, Message(chunks.VIDEO, 1, 64, b"\x17\x01" + bytes(4 * MiB)))
        await recording.wait_for_video(1, timeout=10)
    finally:
        await client.close()
    assert len(recording.media) == 65
    assert len(recording.media[-1][2]) == 4 * MiB + 2
