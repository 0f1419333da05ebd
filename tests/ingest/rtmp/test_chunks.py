"""The chunk stream: header types 0-3, extended timestamps, interleaving, control and limits."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecast.ingest.rtmp import chunks
from stagecast.ingest.rtmp.chunks import ChunkEncoder, ChunkReader, Message
from stagecast.ingest.rtmp.errors import ChunkError
from stagecast.ingest.rtmp.limits import RtmpLimits

VIDEO, AUDIO = chunks.VIDEO, chunks.AUDIO


def basic(fmt: int, csid: int) -> bytes:
    """Return a 1-byte basic header (csid 2..63)."""
    assert 2 <= csid <= 63
    return bytes((fmt << 6 | csid,))


def type0(csid: int, stamp: int, length: int, kind: int, stream: int = 1) -> bytes:
    """Return a type-0 chunk header (extended timestamp appended when ``stamp`` needs it)."""
    field = min(stamp, 0xFFFFFF)
    header = field.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes((kind,))
    ext = stamp.to_bytes(4, "big") if stamp >= 0xFFFFFF else b""
    return basic(0, csid) + header + stream.to_bytes(4, "little") + ext


def type1(csid: int, delta: int, length: int, kind: int) -> bytes:
    """Return a type-1 chunk header."""
    field = min(delta, 0xFFFFFF)
    ext = delta.to_bytes(4, "big") if delta >= 0xFFFFFF else b""
    body = field.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes((kind,))
    return basic(1, csid) + body + ext


def type2(csid: int, delta: int) -> bytes:
    """Return a type-2 chunk header."""
    return basic(2, csid) + delta.to_bytes(3, "big")


def reader_of(data: bytes, limits: RtmpLimits | None = None) -> ChunkReader:
    """Return a ChunkReader over ``data`` followed by EOF."""
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    return ChunkReader(stream, limits or RtmpLimits())


async def read_all(reader: ChunkReader) -> list[Message]:
    """Read messages until the input ends cleanly."""
    out: list[Message] = []
    while True:
        try:
            out.append(await reader.read_message())
        except asyncio.IncompleteReadError as exc:
            assert exc.partial == b"", "input ended inside a chunk"
            return out


async def test_header_types_0_to_3_accumulate_timestamps() -> None:
    """Type 0 sets the time, 1 and 2 add deltas, a new message on type 3 repeats the delta."""
    data = (
        type0(4, 1000, 3, AUDIO) + b"abc"
        + type1(4, 20, 2, VIDEO) + b"de"
        + type2(4, 33) + b"fg"
        + basic(3, 4) + b"hi"  # new message: same length, type and delta (33)
    )  # fmt: skip
    got = await read_all(reader_of(data))
    assert [(m.type_id, m.timestamp, m.payload, m.stream_id) for m in got] == [
        (AUDIO, 1000, b"abc", 1),
        (VIDEO, 1020, b"de", 1),
        (VIDEO, 1053, b"fg", 1),
        (VIDEO, 1086, b"hi", 1),
    ]


async def test_type_3_after_type_0_adds_the_type_0_timestamp() -> None:
    """Per the spec (and ffmpeg), a type-3 message after a type-0 one uses its field as delta."""
    data = type0(4, 40, 1, AUDIO) + b"a" + basic(3, 4) + b"b"
    assert [m.timestamp for m in await read_all(reader_of(data))] == [40, 80]


async def test_messages_longer_than_a_chunk_continue_on_type_3() -> None:
    """A 300-byte message arrives as 128 + 128 + 44 bytes and is joined back."""
    payload = bytes(range(256)) + bytes(44)
    data = type0(6, 0, 300, VIDEO) + payload[:128]
    data += basic(3, 6) + payload[128:256] + basic(3, 6) + payload[256:]
    (message,) = await read_all(reader_of(data))
    assert message.payload == payload


async def test_interleaved_chunk_streams_are_assembled_separately() -> None:
    """Chunks of two messages on two chunk streams interleave without mixing."""
    video, audio = b"v" * 200, b"a" * 150
    data = (
        type0(6, 10, 200, VIDEO) + video[:128]
        + type0(4, 11, 150, AUDIO) + audio[:128]
        + basic(3, 6) + video[128:]
        + basic(3, 4) + audio[128:]
    )  # fmt: skip
    got = await read_all(reader_of(data))
    assert [(m.type_id, m.timestamp, m.payload) for m in got] == [
        (VIDEO, 10, video),
        (AUDIO, 11, audio),
    ]


async def test_extended_timestamps_on_every_chunk_of_the_message() -> None:
    """A timestamp >= 0xFFFFFF rides in the extended field, repeated on continuation chunks."""
    stamp = 0x01234567
    payload = b"x" * 200
    ext = stamp.to_bytes(4, "big")
    data = type0(5, stamp, 200, VIDEO) + payload[:128] + basic(3, 5) + ext + payload[128:]
    (message,) = await read_all(reader_of(data))
    assert (message.timestamp, message.payload) == (stamp, payload)


async def test_extended_delta_is_repeated_by_a_type_3_message() -> None:
    """An extended delta on type 1 applies again to a new message that starts with type 3."""
    delta = 0x1000000
    data = type0(5, 0, 1, VIDEO) + b"a" + type1(5, delta, 1, VIDEO) + b"b"
    data += basic(3, 5) + delta.to_bytes(4, "big") + b"c"
    assert [m.timestamp for m in await read_all(reader_of(data))] == [0, delta, 2 * delta]


async def test_timestamps_do_not_wrap_at_32_bits() -> None:
    """Deltas past 2^32 keep counting, and a later type-0 time is unwrapped to 64 bits."""
    start = 0xFFFFFF00
    data = type0(4, start, 1, AUDIO) + b"a" + type2(4, 0x200) + b"b"
    data += type0(4, 0x300, 1, AUDIO) + b"c"
    got = [m.timestamp for m in await read_all(reader_of(data))]
    assert got == [start, start + 0x200, (1 << 32) + 0x300]


async def test_multi_byte_basic_headers() -> None:
    """Chunk stream ids 64-319 use a 2-byte basic header, larger ones 3 bytes."""
    encoder = ChunkEncoder()
    sent = [Message(AUDIO, 1, 5, b"two"), Message(VIDEO, 1, 6, b"three")]
    data = encoder.encode(100, sent[0]) + encoder.encode(1000, sent[1])
    assert data[0] & 0x3F == 0
    assert await read_all(reader_of(data)) == sent


async def test_set_chunk_size_and_abort_are_applied_not_returned() -> None:
    """Set Chunk Size changes how the next chunks split; Abort drops a half-read message."""
    data = type0(2, 0, 4, chunks.SET_CHUNK_SIZE, 0) + (4096).to_bytes(4, "big")
    data += type0(6, 0, 1000, VIDEO) + b"z" * 1000  # one chunk at 4096
    data += type0(4, 0, 5000, AUDIO) + b"p" * 4096  # half a message...
    data += type0(2, 0, 4, chunks.ABORT, 0) + (4).to_bytes(4, "big")  # ...aborted
    data += type0(4, 7, 2, AUDIO) + b"ok"
    reader = reader_of(data)
    got = await read_all(reader)
    assert [(m.type_id, m.timestamp, len(m.payload)) for m in got] == [
        (VIDEO, 0, 1000),
        (AUDIO, 7, 2),
    ]
    assert reader.chunk_size == 4096


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (type1(4, 0, 1, AUDIO) + b"a", "starts with a type 1 header"),
        (type2(4, 0) + b"a", "starts with a type 2 header"),
        (basic(3, 4) + b"a", "starts with a type 3 header"),
        (type0(2, 0, 4, chunks.SET_CHUNK_SIZE, 0) + (70000).to_bytes(4, "big"), "chunk size"),
        (type0(2, 0, 4, chunks.SET_CHUNK_SIZE, 0) + bytes(4), "chunk size 0"),
        (type0(2, 0, 2, chunks.SET_CHUNK_SIZE, 0) + bytes(2), "short Set Chunk Size"),
        (type0(4, 0, 9_000_000, VIDEO), "exceeds the limit"),
        (type0(4, 0, 300, VIDEO) + bytes(128) + type1(4, 0, 1, VIDEO), "inside a message"),
        (
            b"".join(ChunkEncoder().encode(c, Message(AUDIO, 1, 0, b"a")) for c in range(3, 68)),
            "more than 64",
        ),
    ],
)
async def test_protocol_violations_raise_chunk_error(data: bytes, error: str) -> None:
    """Headers without a base, bad chunk sizes, oversized messages and too many streams."""
    with pytest.raises(ChunkError, match=error):
        await read_all(reader_of(data))


async def test_partial_messages_are_bounded_across_chunk_streams() -> None:
    """Bytes held for unfinished messages on all chunk streams together are capped."""
    limits = RtmpLimits(max_message_size=1000, max_buffered=1500)
    data = b"".join(type0(c, 0, 1000, VIDEO) + bytes(128) for c in range(3, 20))
    with pytest.raises(ChunkError, match="partial messages"):
        await read_all(reader_of(data, limits))


async def test_silence_is_an_idle_error() -> None:
    """No chunk for idle_timeout seconds raises ChunkError rather than waiting forever."""
    reader = ChunkReader(asyncio.StreamReader(), RtmpLimits(idle_timeout=0.05))
    async with asyncio.timeout(2):
        with pytest.raises(ChunkError, match="nothing received"):
            await reader.read_message()


async def test_bytes_read_counts_every_byte() -> None:
    """bytes_read counts headers and payload, for acknowledgements."""
    data = type0(4, 0, 3, AUDIO) + b"abc"
    reader = reader_of(data)
    await read_all(reader)
    assert reader.bytes_read == len(data)


messages = st.lists(
    st.tuples(
        st.sampled_from([3, 4, 6, 70, 400]),
        st.sampled_from([AUDIO, VIDEO, chunks.DATA_AMF0]),
        st.integers(0, 0x2000000),  # deltas up to ~9 hours, past the 24-bit field
        st.binary(max_size=600),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(messages, st.sampled_from([1, 128, 4096]))
def test_encoder_and_reader_round_trip(
    sequence: list[tuple[int, int, int, bytes]], chunk_size: int
) -> None:
    """Whatever headers the compressing encoder picks, the reader returns the same messages."""
    encoder = ChunkEncoder(chunk_size, compress=True)
    clock: dict[int, int] = {}
    sent: list[Message] = []
    data = chunks.set_chunk_size(chunk_size)
    wire = ChunkEncoder().encode(2, data)
    for csid, kind, delta, payload in sequence:
        clock[csid] = clock.get(csid, 0) + delta
        message = Message(kind, 1, clock[csid], payload)
        sent.append(message)
        wire += encoder.encode(csid, message)

    async def run() -> list[Message]:
        return await read_all(reader_of(wire))

    assert asyncio.run(run()) == sent
