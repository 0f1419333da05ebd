"""The HTTP server ``stagecast serve`` runs: uvicorn, with a deadline on request headers.

uvicorn closes an idle keep-alive connection, but a connection whose request headers never
end (half a request line, or headers a byte at a time) is kept open for ever: a few hundred
of those hold the server's sockets. ``HeaderDeadlineProtocol`` gives every request
``http_header_timeout`` seconds from its first byte (the first request: from the connection)
to the end of its headers, then closes the connection. Bodies are not bounded by it: an
HTTP push streams for as long as the broadcast.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stagecast.config import Settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers are late."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._late)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's deadline."""
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due within the timeout."""
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        """The headers are in (also before a WebSocket upgrade): no deadline any more."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)


def server_options(settings: Settings) -> dict[str, Any]:
    """Return the ``uvicorn.run`` options ``stagecast serve`` runs the app with."""
    protocol = type(
        "StagecastHttpProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout": settings.http_header_timeout},
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "http": protocol,
        "log_level": settings.log_level,
        "timeout_keep_alive": settings.http_keepalive_timeout,
        "timeout_graceful_shutdown": 5,
        "log_config": None,
        # Chat frames are small: refuse big ones before they are buffered. Per-socket
        # compression would compress every broadcast message once per viewer.
        "ws_max_size": 64 * 1024,
        "ws_per_message_deflate": False,
    }
