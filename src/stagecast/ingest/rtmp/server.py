"""The RTMP publish server: one port, many publishers, each connection in its own task.

OBS settings work as users type them: Server ``rtmp://HOST:PORT/live``, Stream Key = the
channel's key. The server owns the listening socket and the connection tasks; what happens to
the media is the ``PublishHandler``'s business (see ``handler``).
"""

from __future__ import annotations

import asyncio
import logging

from stagecast.ingest.rtmp.admission import Admission, address_key
from stagecast.ingest.rtmp.connection import RtmpConnection, format_peer
from stagecast.ingest.rtmp.handler import (
    Publisher,
    PublisherControl,
    PublishHandler,
    PublishRefused,
)
from stagecast.ingest.rtmp.limits import RtmpLimits

__all__ = [
    "PublishHandler",
    "PublishRefused",
    "Publisher",
    "PublisherControl",
    "RtmpLimits",
    "RtmpServer",
]

log = logging.getLogger(__name__)


class RtmpServer:
    """Accept RTMP publishers on ``host:port`` and hand each publish to ``handler``."""

    def __init__(
        self,
        handler: PublishHandler,
        *,
        host: str,
        port: int,
        limits: RtmpLimits = RtmpLimits(),  # noqa: B008 - frozen, so one shared default is safe
    ) -> None:
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], RtmpConnection] = {}
        self._admission = Admission(limits)
        self._closing = False

    async def start(self) -> None:
        """Bind and start accepting; raises ``OSError`` if the port cannot be bound."""
        if self._server is not None:
            raise RuntimeError("RtmpServer.start called twice")
        self._server = await asyncio.start_server(
            self._accept, self._host, self._requested_port, reuse_address=True
        )

    @property
    def port(self) -> int:
        """Return the bound port (the chosen one when constructed with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("RtmpServer is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connection_count(self) -> int:
        """Return how many connections are open now."""
        return len(self._connections)

    async def close(self) -> None:
        """Stop accepting, close every connection and wait for their tasks.

        Every open publisher gets ``on_close("server closing")``. Connections still busy after
        ``limits.close_timeout`` seconds (a handler that does not return) are cancelled, and
        waited for once more as long.
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.abort("server closing")
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._limits.close_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self._limits.close_timeout)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def limits(self) -> RtmpLimits:
        """Return the bounds this server applies."""
        return self._limits

    @property
    def pending_count(self) -> int:
        """Return how many open connections have not published yet."""
        return self._admission.strangers

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        if self._closing:
            writer.transport.abort()
            return
        connection = RtmpConnection(
            reader, writer, self._handler, self._limits, on_publish=self._admission.published
        )
        refusal = self._admission.admit(connection, address_key(peername))
        if refusal is not None:
            log.warning("rtmp %s: refused: %s", format_peer(peername), refusal)
            writer.transport.abort()
            return
        task = asyncio.create_task(connection.run(), name=f"rtmp {connection.peer}")
        self._connections[task] = connection
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        connection = self._connections.pop(task, None)
        if connection is not None:
            self._admission.release(connection)
