"""A raw RTMP client for tests, built on the server's own chunk and AMF0 modules.

It says exactly what a client would see on the wire (status codes, acknowledgements) and can
misbehave on purpose, which ffmpeg cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from stagecast.ingest.rtmp import amf0, chunks
from stagecast.ingest.rtmp.chunks import ChunkEncoder, ChunkReader, Message
from stagecast.ingest.rtmp.handshake import HANDSHAKE_SIZE
from stagecast.ingest.rtmp.limits import RtmpLimits


class RawClient:
    """One TCP connection to the server, spoken to byte by byte or message by message."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = ChunkEncoder()
        self.chunks = ChunkReader(reader, RtmpLimits(idle_timeout=10))
        host, port = writer.get_extra_info("sockname")[:2]
        self.address = f"{host}:{port}"

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> RawClient:
        """Connect to the server on 127.0.0.1:``port`` from the local address ``source``.

        Any address of 127.0.0.0/8 works as ``source`` on Linux: a distinct peer per test.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def close(self) -> None:
        """Close the socket (whatever state the server left it in)."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is."""
        self.writer.write(data)
        await self.writer.drain()

    async def handshake(self) -> None:
        """Do the plain client handshake: C0 C1, read S0 S1 S2, send S1 back as C2."""
        await self.send_raw(b"\x03" + bytes(8) + os.urandom(HANDSHAKE_SIZE - 8))
        s0s1 = await self.reader.readexactly(1 + HANDSHAKE_SIZE)
        await self.reader.readexactly(HANDSHAKE_SIZE)
        assert s0s1[0] == 3
        await self.send_raw(s0s1[1:])

    async def send(self, csid: int, message: Message) -> None:
        """Send ``message`` on chunk stream ``csid``."""
        await self.send_raw(self.encoder.encode(csid, message))

    async def set_chunk_size(self, size: int) -> None:
        """Tell the server, then send chunks of ``size`` bytes from now on."""
        await self.send(2, chunks.set_chunk_size(size))
        self.encoder.chunk_size = size

    async def call(self, name: str, transaction: float, *args: object, stream_id: int = 0) -> None:
        """Send an AMF0 command on chunk stream 3."""
        body = amf0.encode_values(name, transaction, *args)
        await self.send(3, Message(chunks.COMMAND_AMF0, stream_id, 0, body))

    async def receive(self, wanted: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """Return the first message from the server for which ``wanted`` is true."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.chunks.read_message()
                if wanted(message):
                    return message

    async def reply(
        self, name: str, transaction: float | None = None, timeout: float = 5.0
    ) -> list[amf0.AmfValue]:
        """Return the next command named ``name`` (answering ``transaction``, if given)."""

        def named(message: Message) -> bool:
            if message.type_id != chunks.COMMAND_AMF0:
                return False
            values = amf0.decode_values(message.payload)
            return values[0] == name and transaction in (None, values[1])

        message = await self.receive(named, timeout)
        return amf0.decode_values(message.payload)

    async def connect(self, app: str = "live") -> list[amf0.AmfValue]:
        """Handshake, send ``connect`` for ``app`` and return the ``_result``."""
        await self.handshake()
        await self.call("connect", 1.0, {"app": app, "type": "nonprivate", "tcUrl": "rtmp://x/"})
        return await self.reply("_result")

    async def publish(self, key: str) -> dict[str, amf0.AmfValue]:
        """Create a stream, publish ``key`` on it and return the ``onStatus`` information."""
        await self.call("createStream", 4.0, None)
        stream_id = await self.reply("_result", 4.0)
        assert isinstance(stream_id[3], float)
        await self.call("publish", 0.0, None, key, "live", stream_id=int(stream_id[3]))
        status = await self.reply("onStatus")
        assert isinstance(status[3], dict)
        return status[3]

    async def closed_by_server(self, timeout: float) -> bool:
        """Read until the server closes the socket; False if it is still open after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass  # a reset is a close too
        return True
