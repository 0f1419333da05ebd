"""One RTMP connection: the handshake, a publisher's commands, then its media until it ends.

The flow OBS and ffmpeg follow: ``connect`` (app "live") → ``releaseStream`` → ``FCPublish`` →
``createStream`` → ``publish`` (name = stream key) → ``@setDataFrame`` and media → ``FCUnpublish``
→ ``deleteStream``. Until ``publish`` succeeds the peer is a stranger, held to the
``setup_*`` budgets of ``RtmpLimits``. The handler's ``Publisher`` is awaited for every
message, in order, and nothing is read from the socket meanwhile, so a slow consumer pushes
back on the encoder through TCP. A connection that breaks the protocol or a limit is closed
with one WARNING line; everything here is per connection, so nothing it does reaches another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from typing import Final

from stagecast.ingest.rtmp import amf0, chunks, replies
from stagecast.ingest.rtmp.chunks import ChunkEncoder, ChunkReader, Message
from stagecast.ingest.rtmp.errors import (
    AmfError,
    ChunkError,
    CommandError,
    HandshakeError,
    RtmpError,
)
from stagecast.ingest.rtmp.handler import Publisher, PublishHandler, PublishRefused
from stagecast.ingest.rtmp.handshake import accept_handshake
from stagecast.ingest.rtmp.limits import RtmpLimits

log = logging.getLogger(__name__)

SERVER_CHUNK_SIZE: Final = 4096
WINDOW_SIZE: Final = 2_500_000
"""Window Acknowledgement Size and Peer Bandwidth announced to clients (bytes)."""
MAX_STREAMS: Final = 8
"""``createStream`` calls one connection may make (a publisher needs one)."""
_END_COMMANDS: Final = frozenset({"FCUnpublish", "deleteStream", "closeStream"})
_IGNORED_COMMANDS: Final = frozenset({"_result", "_error", "_checkbw", "onBWDone"})
_AGGREGATE_TAG = struct.Struct(">B3s3sB3s")


class RtmpConnection:
    """Serve one client socket; also the ``PublisherControl`` its publisher is given."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: PublishHandler,
        limits: RtmpLimits,
        on_publish: Callable[[RtmpConnection], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._limits = limits
        self._on_publish = on_publish
        self._chunks = ChunkReader(reader, limits, setup=True)
        self._encoder = ChunkEncoder()
        self._peer = format_peer(writer.get_extra_info("peername"))
        self._app: str | None = None
        self._next_stream_id = 1
        self._published = False
        self._publisher: Publisher | None = None
        self._closed_by: str | None = None
        self._ack_window = WINDOW_SIZE
        self._acked = 0
        self._warned_data = False

    @property
    def peer(self) -> str:
        """Return the client's address as ``host:port``."""
        return self._peer

    async def disconnect(self, reason: str) -> None:
        """Drop the connection; the connection's task calls ``on_close(reason)`` afterwards."""
        self.abort(reason)

    def abort(self, reason: str) -> None:
        """Close the socket now; no media is delivered after this returns."""
        if self._closed_by is None:
            self._closed_by = reason
        self._writer.transport.abort()

    async def run(self) -> None:
        """Serve the connection until it ends; never raises (cancellation aside).

        Whatever ends it, a publisher that was opened gets ``on_close`` exactly once.
        """
        reason, graceful = "connection closed", False
        try:
            await self._handshake()
            reason, graceful = await self._serve(), True
        except RtmpError as exc:
            reason = f"protocol error: {exc}"
            log.warning("rtmp %s: closing: %s", self._peer, exc)
        except asyncio.IncompleteReadError:
            reason = "connection closed by peer"
        except OSError as exc:
            reason = f"connection lost: {exc.strerror or type(exc).__name__}"
        except Exception:
            reason = "internal error"
            log.exception("rtmp %s: closing after an unexpected error", self._peer)
        finally:
            # A close we asked for (kick, shutdown) names the reason, whatever it broke on the way.
            closed_by = self._closed_by
            await self._finish(closed_by or reason, graceful=graceful and closed_by is None)

    async def _handshake(self) -> None:
        try:
            await accept_handshake(
                self._reader, self._writer, timeout=self._limits.handshake_timeout
            )
        except TimeoutError:
            raise HandshakeError(
                f"handshake not completed in {self._limits.handshake_timeout:g} s"
            ) from None

    async def _serve(self) -> str:
        loop = asyncio.get_running_loop()
        publish_deadline = loop.time() + self._limits.publish_timeout
        while True:
            if self._closed_by is not None:
                return self._closed_by
            if self._publisher is None:
                message = await self._read_before_publish(publish_deadline)
            else:
                message = await self._chunks.read_message()
            await self._acknowledge()
            ended = await self._dispatch(message)
            if ended is not None:
                return ended

    async def _read_before_publish(self, deadline: float) -> Message:
        # Only the reads are under the deadline: the handler's open_publish is never cancelled.
        try:
            async with asyncio.timeout_at(deadline):
                return await self._chunks.read_message()
        except TimeoutError:
            raise CommandError(
                f"no publish within {self._limits.publish_timeout:g} s of connecting"
            ) from None

    async def _finish(self, reason: str, *, graceful: bool) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            log.info("rtmp %s: publisher closed: %s", self._peer, reason)
            try:
                await publisher.on_close(reason)
            except Exception:
                log.exception("rtmp %s: on_close failed", self._peer)
        if graceful:
            await self._linger()
        await self._close_socket()

    async def _linger(self) -> None:
        # Half-close and let the peer read our last reply before it sees the socket go, so a
        # refusal is not lost to a reset caused by bytes it sent meanwhile.
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            if self._writer.can_write_eof():
                self._writer.write_eof()
            async with asyncio.timeout(self._limits.linger_timeout):
                while await self._reader.read(65536):
                    pass

    async def _close_socket(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(self._limits.write_timeout):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            self._writer.transport.abort()

    async def _send(self, *messages: tuple[int, Message]) -> None:
        for csid, message in messages:
            self._writer.write(self._encoder.encode(csid, message))
        try:
            async with asyncio.timeout(self._limits.write_timeout):
                await self._writer.drain()
        except TimeoutError:
            raise RtmpError(f"peer read nothing for {self._limits.write_timeout:g} s") from None

    async def _acknowledge(self) -> None:
        received = self._chunks.bytes_read
        if received - self._acked >= self._ack_window:
            self._acked = received
            await self._send((chunks.CONTROL_CHUNK_STREAM, chunks.acknowledgement(received)))

    async def _dispatch(self, message: Message) -> str | None:
        """Act on one message; return the reason when it ends the connection."""
        kind = message.type_id
        if kind in (chunks.AUDIO, chunks.VIDEO):
            await self._deliver(kind, message.timestamp, message.payload)
        elif kind in (chunks.COMMAND_AMF0, chunks.COMMAND_AMF3):
            return await self._command(message)
        elif kind in (chunks.DATA_AMF0, chunks.DATA_AMF3):
            await self._data(message)
        elif kind == chunks.USER_CONTROL:
            await self._user_control(message.payload)
        elif kind == chunks.WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self._ack_window = max(1, int.from_bytes(message.payload[:4], "big"))
        elif kind == chunks.AGGREGATE:
            await self._aggregate(message)
        # Acknowledgement, Set Peer Bandwidth and unknown types ask nothing of a server.
        return None

    async def _deliver(self, kind: int, timestamp: int, payload: bytes) -> None:
        publisher = self._publisher
        if publisher is None or self._closed_by is not None:
            return  # media before publish, or after a disconnect, goes nowhere
        if kind == chunks.VIDEO:
            await publisher.on_video(timestamp, payload)
        else:
            await publisher.on_audio(timestamp, payload)

    async def _command(self, message: Message) -> str | None:
        amf3 = message.type_id == chunks.COMMAND_AMF3
        values = amf0.decode_values(message.payload[1:] if amf3 else message.payload)
        if not values or not isinstance(values[0], str):
            raise CommandError("command without a name")
        name = values[0]
        transaction = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        args = values[2:]
        if name == "connect":
            await self._connect(transaction, args)
        elif name == "createStream":
            await self._create_stream(transaction)
        elif name == "publish":
            return await self._publish(message.stream_id, args)
        elif name in _END_COMMANDS:
            return f"unpublished ({name})"
        elif name in ("releaseStream", "FCPublish"):
            await self._prepare_publish(name, transaction)
        elif name == "play":
            return await self._refuse_play(message.stream_id)
        elif name not in _IGNORED_COMMANDS and transaction > 0:
            description = f"Unknown command {name[:64]!r}."
            await self._send(
                (replies.COMMAND_CHUNK_STREAM, replies.call_error(transaction, description))
            )
        return None

    async def _refuse_play(self, stream_id: int) -> str:
        # Players would otherwise wait for a stream until the publish deadline drops them.
        description = "This server only takes publishers."
        status = replies.status(stream_id, "error", replies.PLAY_FAILED, description)
        await self._send((replies.STATUS_CHUNK_STREAM, status))
        return "play refused"

    def _require_connect(self, name: str) -> str:
        if self._app is None:
            raise CommandError(f"{name} before connect")
        return self._app

    async def _connect(self, transaction: float, args: list[amf0.AmfValue]) -> None:
        if self._app is not None:
            raise CommandError("connect received twice")
        properties = args[0] if args and isinstance(args[0], dict) else None
        app = properties.get("app") if properties is not None else None
        if properties is None or not isinstance(app, str):
            raise CommandError("connect without an app")
        # OBS users type rtmp://host/live or rtmp://host/live/; tcUrl's host is ignored.
        self._app = app.split("?", 1)[0].strip("/")
        encoding = properties.get("objectEncoding")
        offered = properties.get("fourCcList")  # Enhanced RTMP: codecs the client can send
        four_cc = (
            [c for c in offered if isinstance(c, str)][:16] if isinstance(offered, list) else []
        )
        control = chunks.CONTROL_CHUNK_STREAM
        await self._send(
            (control, chunks.window_ack_size(WINDOW_SIZE)),
            (control, chunks.set_peer_bandwidth(WINDOW_SIZE)),
            (control, chunks.set_chunk_size(SERVER_CHUNK_SIZE)),
        )
        self._encoder.chunk_size = SERVER_CHUNK_SIZE
        result = replies.connect_result(
            transaction, encoding if isinstance(encoding, float) else 0.0, four_cc
        )
        await self._send((replies.COMMAND_CHUNK_STREAM, result))

    async def _create_stream(self, transaction: float) -> None:
        self._require_connect("createStream")
        if self._next_stream_id > MAX_STREAMS:
            raise CommandError(f"more than {MAX_STREAMS} createStream calls")
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        result = replies.command("_result", transaction, None, float(stream_id))
        await self._send((replies.COMMAND_CHUNK_STREAM, result))

    async def _prepare_publish(self, name: str, transaction: float) -> None:
        self._require_connect(name)
        out: list[tuple[int, Message]] = []
        if name == "FCPublish":
            out.append((replies.COMMAND_CHUNK_STREAM, replies.fc_publish()))
        if transaction > 0:
            result = replies.command("_result", transaction, None, amf0.UNDEFINED)
            out.append((replies.COMMAND_CHUNK_STREAM, result))
        if out:
            await self._send(*out)

    async def _publish(self, stream_id: int, args: list[amf0.AmfValue]) -> str | None:
        app = self._require_connect("publish")
        if self._published:
            raise CommandError("publish received twice")
        if len(args) < 2 or not isinstance(args[1], str):
            raise CommandError("publish without a stream name")
        self._published = True
        stream_key = args[1].split("?", 1)[0]
        try:
            publisher = await self._handler.open_publish(app, stream_key, self)
        except PublishRefused as refusal:
            log.info("rtmp %s: publish on %r refused: %s", self._peer, app, refusal.code)
            status = replies.status(stream_id, "error", refusal.code, refusal.description)
            await self._send((replies.STATUS_CHUNK_STREAM, status))
            return f"publish refused ({refusal.code})"
        self._publisher = publisher
        self._chunks.end_setup()  # no longer a stranger: the full limits apply
        if self._on_publish is not None:
            self._on_publish(self)
        log.info("rtmp %s: publishing on %r", self._peer, app)
        started = replies.status(stream_id, "status", replies.PUBLISH_START, "Publishing.")
        await self._send(
            (chunks.CONTROL_CHUNK_STREAM, chunks.stream_begin(stream_id)),
            (replies.STATUS_CHUNK_STREAM, started),
        )
        return None

    async def _data(self, message: Message) -> None:
        publisher = self._publisher
        if publisher is None or self._closed_by is not None:
            return
        amf3 = message.type_id == chunks.DATA_AMF3
        try:
            values = amf0.decode_values(message.payload[1:] if amf3 else message.payload)
        except AmfError as exc:
            # Metadata is advisory (some encoders put AMF3 values in it): dropping it beats
            # dropping the stream. Commands, which steer the connection, stay strict.
            if not self._warned_data:
                self._warned_data = True
                log.info("rtmp %s: ignoring undecodable data message: %s", self._peer, exc)
            return
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            metadata: dict[str, object] = dict(values[1])
            await publisher.on_metadata(metadata)

    async def _user_control(self, payload: bytes) -> None:
        if len(payload) >= 6 and int.from_bytes(payload[:2], "big") == chunks.PING_REQUEST:
            await self._send((chunks.CONTROL_CHUNK_STREAM, chunks.ping_response(payload[2:6])))

    async def _aggregate(self, message: Message) -> None:
        """Deliver the FLV-style sub-messages of an Aggregate message, rebased on its time."""
        data, position, base = message.payload, 0, None
        while position < len(data):
            if position + _AGGREGATE_TAG.size > len(data):
                raise ChunkError("truncated aggregate message")
            kind, size, low, high, _ = _AGGREGATE_TAG.unpack_from(data, position)
            start = position + _AGGREGATE_TAG.size
            end = start + int.from_bytes(size, "big")
            if end + 4 > len(data):
                raise ChunkError("truncated aggregate message")
            stamp = int.from_bytes(low, "big") | high << 24
            base = stamp if base is None else base
            if kind in (chunks.AUDIO, chunks.VIDEO):
                await self._deliver(kind, max(0, message.timestamp + stamp - base), data[start:end])
            position = end + 4  # skip the back pointer (previous tag size)


def format_peer(address: object) -> str:
    """Return a socket's ``peername`` as ``host:port`` (``[host]:port`` for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
