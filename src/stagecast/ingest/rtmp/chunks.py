"""The RTMP chunk stream: messages split into chunks and joined back, within limits.

A chunk is a basic header (1-3 bytes: format and chunk stream id), a message header whose size
the format picks (type 0: 11 bytes, absolute timestamp; type 1: 7 bytes, delta; type 2: 3
bytes, delta only; type 3: none), an extended timestamp when the 24-bit field reads 0xFFFFFF,
then at most ``chunk_size`` bytes of payload. Each chunk stream remembers its last header, so
the reader keeps that state per stream and never trusts a header it has no base for.

Timestamps come out as 64-bit milliseconds: deltas accumulate without wrapping and a type-0
absolute timestamp is unwrapped against the previous one, so a stream that runs past 2^32 ms
(49.7 days) stays monotonic.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Final

from stagecast.ingest.rtmp.errors import ChunkError
from stagecast.ingest.rtmp.limits import RtmpLimits

# Message type ids.
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACKNOWLEDGEMENT: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
COMMAND_AMF0: Final = 20
AGGREGATE: Final = 22

# User control events.
STREAM_BEGIN: Final = 0
PING_REQUEST: Final = 6
PING_RESPONSE: Final = 7

CONTROL_CHUNK_STREAM: Final = 2
"""Chunk stream of protocol control messages (always message stream 0)."""
DEFAULT_CHUNK_SIZE: Final = 128
PEER_BANDWIDTH_DYNAMIC: Final = 2

_EXTENDED: Final = 0xFFFFFF
_HEADER_SIZES: Final = (11, 7, 3, 0)
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Message:
    """One RTMP message: its type, message stream, timestamp (ms, 64-bit) and body."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


@dataclass(slots=True)
class _Inbound:
    """What a chunk stream's next header may leave out, and the message being assembled."""

    timestamp: int = 0
    delta: int = 0  # what a type-3 header starting a new message adds (spec 5.3.1.2.4)
    extended: bool = False  # the last header had an extended timestamp; type 3 repeats it
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    received: int = 0  # bytes of the current message so far; 0 between messages
    parts: list[bytes] = field(default_factory=list)


class ChunkReader:
    """Read whole messages from a peer's chunk stream.

    Set Chunk Size and Abort are applied here and not returned; every other message is.
    ``read_message`` raises ``ChunkError`` when the peer breaks the protocol or a limit,
    after ``idle_timeout`` seconds without a chunk too, and raises
    ``asyncio.IncompleteReadError`` when the peer closes.

    With ``setup`` the peer is still a stranger: the ``setup_*`` budgets of ``limits`` apply
    (message size, bytes, chunks) until ``end_setup`` lifts them.
    """

    def __init__(
        self, reader: asyncio.StreamReader, limits: RtmpLimits, *, setup: bool = False
    ) -> None:
        self._reader = reader
        self._limits = limits
        self._streams: dict[int, _Inbound] = {}
        self._buffered = 0
        self._setup = setup
        self._max_message = limits.max_message_size
        if setup:
            self._max_message = min(limits.setup_max_message_size, limits.max_message_size)
        self._chunks = 0
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.bytes_read = 0

    def end_setup(self) -> None:
        """Lift the setup budgets: the peer has published with a valid key."""
        self._setup = False
        self._max_message = self._limits.max_message_size

    async def read_message(self) -> Message:
        """Return the next complete message (control messages for the chunk layer excluded)."""
        loop = asyncio.get_running_loop()
        idle = self._limits.idle_timeout
        try:
            async with asyncio.timeout(idle) as deadline:
                while True:
                    message = await self._read_chunk()
                    deadline.reschedule(loop.time() + idle)
                    if message is None:
                        continue
                    if message.type_id == SET_CHUNK_SIZE:
                        self._set_chunk_size(message.payload)
                    elif message.type_id == ABORT:
                        self._abort(message.payload)
                    else:
                        return message
        except TimeoutError:
            # Only this block's own deadline lands here; an outer one surfaces as the caller's.
            raise ChunkError(f"nothing received for {idle:g} s") from None

    async def _read(self, size: int) -> bytes:
        if self._setup and self.bytes_read + size > self._limits.setup_max_bytes:
            raise ChunkError(f"more than {self._limits.setup_max_bytes} bytes before publish")
        data = await self._reader.readexactly(size)
        self.bytes_read += size
        return data

    async def _read_chunk(self) -> Message | None:
        if self._setup:
            # Each chunk costs a Python step whatever its size: a stranger gets few of them.
            self._chunks += 1
            if self._chunks > self._limits.setup_max_chunks:
                raise ChunkError(f"more than {self._limits.setup_max_chunks} chunks before publish")
        first = (await self._read(1))[0]
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            csid = 64 + (await self._read(1))[0]
        elif csid == 1:
            extra = await self._read(2)
            csid = 64 + extra[0] + extra[1] * 256
        state = self._streams.get(csid)
        if state is None:
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} starts with a type {fmt} header")
            if len(self._streams) >= self._limits.max_chunk_streams:
                raise ChunkError(f"more than {self._limits.max_chunk_streams} chunk streams")
            state = self._streams[csid] = _Inbound()
        if fmt == 3:
            await self._continue_header(state)
        else:
            await self._read_header(state, fmt, csid)
        return await self._read_payload(state)

    async def _read_header(self, state: _Inbound, fmt: int, csid: int) -> None:
        if state.received:
            raise ChunkError(f"type {fmt} header inside a message on chunk stream {csid}")
        header = await self._read(_HEADER_SIZES[fmt])
        value = int.from_bytes(header[0:3], "big")
        if fmt <= 1:
            length = int.from_bytes(header[3:6], "big")
            if length > self._max_message:
                setup = f" ({self._max_message} before publish)" if self._setup else ""
                raise ChunkError(f"message of {length} bytes exceeds the limit{setup}")
            state.length, state.type_id = length, header[6]
        if fmt == 0:
            state.stream_id = int.from_bytes(header[7:11], "little")
        state.extended = value == _EXTENDED
        if state.extended:
            value = _U32.unpack(await self._read(4))[0]
        if fmt == 0:
            state.timestamp = _unwrap(state.timestamp, value)
        else:
            state.timestamp += value
        state.delta = value

    async def _continue_header(self, state: _Inbound) -> None:
        extended = _U32.unpack(await self._read(4))[0] if state.extended else None
        if state.received:
            return  # a continuation chunk: the message's header is already known
        if extended is not None:
            state.delta = extended
        state.timestamp += state.delta

    async def _read_payload(self, state: _Inbound) -> Message | None:
        size = min(self.chunk_size, state.length - state.received)
        if size:
            self._buffered += size
            if self._buffered > self._limits.max_buffered:
                raise ChunkError(f"more than {self._limits.max_buffered} bytes in partial messages")
            state.parts.append(await self._read(size))
            state.received += size
        if state.received < state.length:
            return None
        payload = state.parts[0] if len(state.parts) == 1 else b"".join(state.parts)
        self._buffered -= state.received
        state.parts.clear()
        state.received = 0
        return Message(state.type_id, state.stream_id, state.timestamp, payload)

    def _set_chunk_size(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ChunkError("short Set Chunk Size message")
        size = _U32.unpack(payload[:4])[0] & 0x7FFFFFFF
        if not 1 <= size <= self._limits.max_chunk_size:
            raise ChunkError(f"chunk size {size} outside 1..{self._limits.max_chunk_size}")
        self.chunk_size = size

    def _abort(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ChunkError("short Abort message")
        state = self._streams.get(_U32.unpack(payload[:4])[0])
        if state is not None and state.received:
            self._buffered -= state.received
            state.parts.clear()
            state.received = 0


def _unwrap(previous: int, value: int) -> int:
    """Return the 64-bit timestamp nearest ``previous`` whose low 32 bits are ``value``."""
    candidate = (previous & ~0xFFFFFFFF) | value
    if candidate < previous - 0x80000000:
        candidate += 1 << 32
    elif candidate > previous + 0x80000000 and candidate >= 1 << 32:
        candidate -= 1 << 32
    return candidate


@dataclass(slots=True)
class _Outbound:
    timestamp: int
    delta: int
    length: int
    type_id: int
    stream_id: int


class ChunkEncoder:
    """Split messages into chunks of ``chunk_size`` bytes.

    With ``compress`` off every message starts with a type-0 header, which every client reads
    the same way; with it on, headers shrink to types 1-3 where the previous message on the
    chunk stream allows (as encoders do). Change ``chunk_size`` only after sending Set Chunk Size.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, compress: bool = False) -> None:
        self.chunk_size = chunk_size
        self._compress = compress
        self._last: dict[int, _Outbound] = {}

    def encode(self, csid: int, message: Message) -> bytes:
        """Return the chunks of ``message`` on chunk stream ``csid`` (2..65599)."""
        if not 2 <= csid <= 65599:
            raise ValueError(f"chunk stream id {csid} outside 2..65599")
        if len(message.payload) > 0xFFFFFF:
            raise ValueError("message longer than 2^24-1 bytes")
        fmt, value = self._choose_header(csid, message)
        extended = value >= _EXTENDED
        out = bytearray(_basic_header(fmt, csid))
        field24 = (_EXTENDED if extended else value).to_bytes(3, "big")
        length = len(message.payload).to_bytes(3, "big")
        if fmt == 0:
            out += field24 + length + bytes((message.type_id,))
            out += message.stream_id.to_bytes(4, "little")
        elif fmt == 1:
            out += field24 + length + bytes((message.type_id,))
        elif fmt == 2:
            out += field24
        ext = _U32.pack(value) if extended else b""
        out += ext
        payload = message.payload
        out += payload[: self.chunk_size]
        continuation = _basic_header(3, csid) + ext
        for start in range(self.chunk_size, len(payload), self.chunk_size):
            out += continuation
            out += payload[start : start + self.chunk_size]
        return bytes(out)

    def _choose_header(self, csid: int, message: Message) -> tuple[int, int]:
        last = self._last.get(csid)
        delta = message.timestamp - last.timestamp if last is not None else -1
        length, type_id = len(message.payload), message.type_id
        if (
            not self._compress
            or last is None
            or last.stream_id != message.stream_id
            or not 0 <= delta <= 0xFFFFFFFF
        ):
            value = message.timestamp & 0xFFFFFFFF
            self._last[csid] = _Outbound(
                message.timestamp, value, length, type_id, message.stream_id
            )
            return 0, value
        fmt = 1 if (last.length, last.type_id) != (length, type_id) else 2
        if fmt == 2 and delta == last.delta:
            fmt = 3
        self._last[csid] = _Outbound(message.timestamp, delta, length, type_id, message.stream_id)
        return fmt, delta


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


def set_chunk_size(size: int) -> Message:
    """Build Set Chunk Size: the sender's chunks carry at most ``size`` bytes from now on."""
    return Message(SET_CHUNK_SIZE, 0, 0, _U32.pack(size))


def window_ack_size(size: int) -> Message:
    """Build Window Acknowledgement Size: acknowledge every ``size`` bytes you receive."""
    return Message(WINDOW_ACK_SIZE, 0, 0, _U32.pack(size))


def acknowledgement(sequence: int) -> Message:
    """Build Acknowledgement of ``sequence`` bytes received so far (modulo 2^32)."""
    return Message(ACKNOWLEDGEMENT, 0, 0, _U32.pack(sequence & 0xFFFFFFFF))


def set_peer_bandwidth(size: int, limit_type: int = PEER_BANDWIDTH_DYNAMIC) -> Message:
    """Build Set Peer Bandwidth: send at most ``size`` unacknowledged bytes."""
    return Message(SET_PEER_BANDWIDTH, 0, 0, _U32.pack(size) + bytes((limit_type,)))


def stream_begin(stream_id: int) -> Message:
    """Build the User Control event StreamBegin for message stream ``stream_id``."""
    return Message(USER_CONTROL, 0, 0, struct.pack(">HI", STREAM_BEGIN, stream_id))


def ping_response(echo: bytes) -> Message:
    """Build the User Control event PingResponse carrying the request's 4-byte timestamp."""
    return Message(USER_CONTROL, 0, 0, struct.pack(">H", PING_RESPONSE) + echo[:4])
