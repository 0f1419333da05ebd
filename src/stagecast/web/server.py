"""The HTTP server ``stagecast serve`` runs: uvicorn, with a deadline on request headers.

uvicorn closes an idle keep-alive connection, but a connection whose request headers never
end (half a request line, or headers a byte at a time) is kept open for ever: a few hundred
of those hold the server's sockets. ``HeaderDeadlineProtocol`` gives every request
``http_header_timeout`` seconds from its first byte (the first request: from the connection)
to the end of its headers, then closes the connection. Bodies are not bounded by it: an
HTTP push streams for as long as the broadcast.

On shutdown (Ctrl-C, SIGTERM) uvicorn lets every request in progress finish, for up to
``timeout_graceful_shutdown`` seconds, then cancels it with an ERROR. An event stream never
finishes by itself, so ``HeaderDeadlineProtocol.shutdown`` ends it at once instead: the
client gets the body's last chunk (a complete response; EventSource reconnects later), and
the app hears that its client left (Starlette then stops the stream, no traceback). Chat
sockets get their close frame (1012, service restart) from uvicorn itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stagecast.config import Settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers are late.

    One timer per connection, not per request: a request only notes when its first byte came
    (a timer armed and cancelled for every request cost a sixth of the playlist rate), and the
    connection's timer looks at that note every ``header_timeout`` seconds, or sooner when a
    request's deadline falls earlier.
    """

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._check: asyncio.TimerHandle | None = None
        self._begun: float | None = None  # loop time of the first byte of unfinished headers

    def _watch(self, delay: float) -> None:
        self._check = self.loop.call_later(delay, self._look)

    def _look(self) -> None:
        self._check = None
        if self.transport.is_closing():
            return
        begun = self._begun
        if begun is None:
            self._watch(self.header_timeout)
            return
        left = begun + self.header_timeout - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self._watch(left)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's deadline (from the connection)."""
        super().connection_made(transport)
        self._begun = self.loop.time()
        self._watch(self.header_timeout)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due within the timeout."""
        super().on_message_begin()
        if self._begun is None:
            self._begun = self.loop.time()

    def on_headers_complete(self) -> None:
        """The headers are in (also before a WebSocket upgrade): no deadline any more."""
        self._begun = None
        super().on_headers_complete()

    def shutdown(self) -> None:
        """Begin a graceful shutdown; end an endless response (an event stream) right away.

        A chunked response that has started is one of those in this app (every other
        response has a length); the requests still waiting for their response finish as
        uvicorn lets them.
        """
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            super().shutdown()
            return
        if not cycle.chunked_encoding:
            super().shutdown()
            return
        if not self.transport.is_closing():
            self.transport.write(b"0\r\n\r\n")  # the end of the body: the client is told
        cycle.response_complete = True  # what the app sends from now on is dropped
        cycle.keep_alive = False
        cycle.message_event.set()  # its receive() now says the client left
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        if self._check is not None:
            self._check.cancel()
            self._check = None
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
