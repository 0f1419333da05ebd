"""The publisher command flow and control messages, as a raw client sees them on the wire."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator

import pytest

from stagecast.ingest.rtmp import BAD_CONNECTION, BAD_NAME, RtmpServer, amf0, chunks
from stagecast.ingest.rtmp.chunks import Message
from stagecast.live.flv import tag as flv_tag
from tests.ingest.rtmp.client import RawClient
from tests.ingest.rtmp.recording import RecordingHandler


@pytest.fixture
async def raw(server: RtmpServer) -> AsyncIterator[RawClient]:
    """A raw client connected to the server's port (not yet handshaken)."""
    client = await RawClient.open(server.port)
    yield client
    await client.close()


async def test_connect_announces_window_bandwidth_and_chunk_size(raw: RawClient) -> None:
    """connect gets Window Ack Size, Set Peer Bandwidth, Set Chunk Size and Connect.Success."""
    await raw.handshake()
    await raw.call(
        "connect", 1.0, {"app": "live", "objectEncoding": 0.0, "fourCcList": ["hvc1", "av01"]}
    )
    window = await raw.receive(lambda m: m.type_id == chunks.WINDOW_ACK_SIZE)
    assert struct.unpack(">I", window.payload) == (2_500_000,)
    bandwidth = await raw.receive(lambda m: m.type_id == chunks.SET_PEER_BANDWIDTH)
    assert bandwidth.payload == struct.pack(">IB", 2_500_000, 2)
    result = await raw.reply("_result")
    assert result[1] == 1.0
    properties, information = result[2], result[3]
    assert isinstance(properties, dict)
    assert isinstance(information, dict)
    assert information["code"] == "NetConnection.Connect.Success"
    assert information["level"] == "status"
    assert properties["fourCcList"] == ["hvc1", "av01"]  # enhanced codecs pass through
    assert raw.chunks.chunk_size == 4096  # Set Chunk Size arrived before the result


async def test_obs_style_app_and_key_reach_the_handler_cleaned(
    raw: RawClient, handler: RecordingHandler
) -> None:
    """App "live/" and key "KEY?token=1" reach open_publish as "live" and "KEY"."""
    await raw.connect("live/")
    await raw.call("releaseStream", 2.0, None, "KEY?token=1")
    assert (await raw.reply("_result"))[1] == 2.0
    await raw.call("FCPublish", 3.0, None, "KEY?token=1")
    assert (await raw.reply("onFCPublish"))[3] == {
        "code": "NetStream.Publish.Start",
        "description": "FCPublish received.",
    }
    status = await raw.publish("KEY?token=1")
    assert (status["level"], status["code"]) == ("status", "NetStream.Publish.Start")
    assert handler.attempts == [("live", "KEY")]


@pytest.mark.parametrize(
    ("key", "code"), [("wrong-key", BAD_NAME), ("already-live", BAD_CONNECTION)]
)
async def test_refused_publish_sends_the_error_status_then_closes(
    raw: RawClient, handler: RecordingHandler, key: str, code: str
) -> None:
    """A PublishRefused becomes onStatus level "error" with its code, then the socket closes."""
    await raw.connect()
    status = await raw.publish(key)
    assert status["level"] == "error"
    assert status["code"] == code
    assert status["description"] == handler.refuse[key][1]
    assert await raw.closed_by_server(timeout=5)
    assert handler.recordings == []


async def test_ping_requests_get_responses(raw: RawClient) -> None:
    """A User Control PingRequest is answered with a PingResponse echoing its timestamp."""
    await raw.connect()
    await raw.send(2, Message(chunks.USER_CONTROL, 0, 0, b"\x00\x06\x12\x34\x56\x78"))
    pong = await raw.receive(lambda m: m.type_id == chunks.USER_CONTROL)
    assert pong.payload == b"\x00\x07\x12\x34\x56\x78"


async def test_acknowledgements_follow_the_window(raw: RawClient) -> None:
    """After the raw's Window Ack Size in bytes, the server sends an Acknowledgement."""
    await raw.connect()
    await raw.send(2, chunks.window_ack_size(1000))
    for _ in range(3):
        await raw.send(8, Message(chunks.AUDIO, 1, 0, bytes(500)))
    ack = await raw.receive(lambda m: m.type_id == chunks.ACKNOWLEDGEMENT)
    assert struct.unpack(">I", ack.payload)[0] >= 1000


async def test_unknown_calls_get_an_error_and_the_session_goes_on(raw: RawClient) -> None:
    """A call the server lacks is answered with _error; publishing still works after it."""
    await raw.connect()
    await raw.call("getStreamLength", 7.0, None, "x")
    error = await raw.reply("_error")
    assert error[1] == 7.0
    assert isinstance(error[3], dict)
    assert error[3]["code"] == "NetConnection.Call.Failed"
    assert (await raw.publish("after-error"))["code"] == "NetStream.Publish.Start"


async def test_media_metadata_and_end_of_publish(raw: RawClient, handler: RecordingHandler) -> None:
    """Media (enhanced too), metadata, aggregates arrive; bad metadata is skipped; one close."""
    await raw.connect()
    await raw.publish("media")
    recording = await handler.recording("media", timeout=1)
    enhanced = b"\x90hvc1" + b"\x01" * 20  # Enhanced RTMP: IsExHeader, PacketType 0, FourCC
    await raw.send(4, Message(chunks.VIDEO, 1, 0, enhanced))
    await raw.send(4, Message(chunks.AUDIO, 1, 0x1234567, b"\xaf\x01audio"))
    await raw.send(5, Message(chunks.DATA_AMF0, 1, 0, b"\x02\x00\x0aonMetaData\x11\x0a"))
    data = amf0.encode_values("onMetaData", amf0.EcmaArray(width=1280.0))
    await raw.send(5, Message(chunks.DATA_AMF0, 1, 0, data))
    aggregate = flv_tag(8, 500, b"\xaf\x01a1") + flv_tag(9, 533, b"\x27\x01v1")
    await raw.send(4, Message(chunks.AGGREGATE, 1, 0x1234600, aggregate))
    amf3_command = b"\x00" + amf0.encode_values("deleteStream", 0.0, None, 1.0)
    await raw.send(3, Message(chunks.COMMAND_AMF3, 0, 0, amf3_command))
    assert await raw.closed_by_server(timeout=5)
    assert recording.media == [
        (9, 0, enhanced),
        (8, 0x1234567, b"\xaf\x01audio"),
        (8, 0x1234600, b"\xaf\x01a1"),
        (9, 0x1234600 + 33, b"\x27\x01v1"),
    ]
    assert recording.metadata == [{"width": 1280.0}]
    assert recording.closes == ["unpublished (deleteStream)"]


async def test_a_slow_publisher_stops_reading_from_its_socket(
    raw: RawClient, handler: RecordingHandler
) -> None:
    """While on_video blocks, the server reads nothing more (the sender stalls), then resumes."""
    handler.gate = asyncio.Event()
    await raw.connect()
    await raw.publish("slow")
    recording = await handler.recording("slow", timeout=1)
    await raw.set_chunk_size(65536)
    count, size = 640, 64 * 1024  # 40 MiB: far more than socket buffers and the reader hold

    async def send_all() -> None:
        for n in range(count):
            await raw.send(6, Message(chunks.VIDEO, 1, n, bytes(size)))

    sender = asyncio.create_task(send_all())
    done, _ = await asyncio.wait([sender], timeout=1.0)
    assert not done, "40 MiB went into a server whose consumer is blocked"
    handler.gate.set()
    async with asyncio.timeout(20):
        await sender
    await recording.wait_for_video(count, timeout=20)
    assert [stamp for _, stamp, _ in recording.media] == list(range(count))


async def test_play_is_refused(raw: RawClient) -> None:
    """A player is told NetStream.Play.Failed and disconnected: this server only ingests."""
    await raw.connect()
    await raw.call("play", 0.0, None, "stream", stream_id=1)
    status = await raw.reply("onStatus")
    assert isinstance(status[3], dict)
    assert status[3]["code"] == "NetStream.Play.Failed"
    assert await raw.closed_by_server(timeout=5)


async def test_commands_out_of_order_close_the_connection(
    raw: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    """publish before connect is a protocol error: one warning, connection closed."""
    caplog.set_level(logging.WARNING, logger="stagecast.ingest.rtmp")
    await raw.handshake()
    await raw.call("publish", 0.0, None, "key", "live", stream_id=1)
    assert await raw.closed_by_server(timeout=5)
    assert [r.getMessage() for r in caplog.records] == [
        f"rtmp {raw.address}: closing: publish before connect"
    ]
