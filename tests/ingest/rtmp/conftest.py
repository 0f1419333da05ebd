"""Fixtures: a running RTMP server on 127.0.0.1 with a recording handler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from stagecast.ingest.rtmp import BAD_CONNECTION, BAD_NAME, RtmpLimits, RtmpServer
from tests.ingest.rtmp.recording import RecordingHandler

REFUSED = {
    "wrong-key": (BAD_NAME, "invalid stream key"),
    "already-live": (BAD_CONNECTION, "the channel is already live"),
}

ServerFactory = Callable[..., Awaitable[RtmpServer]]


@pytest.fixture
def handler() -> RecordingHandler:
    """A handler that refuses the keys in REFUSED and records every other publish."""
    return RecordingHandler(REFUSED)


@pytest.fixture
async def start_server(handler: RecordingHandler) -> AsyncIterator[ServerFactory]:
    """Start servers with ``handler`` and the given limits; every one is closed afterwards."""
    servers: list[RtmpServer] = []

    async def start(limits: RtmpLimits | None = None) -> RtmpServer:
        server = RtmpServer(handler, host="127.0.0.1", port=0, limits=limits or RtmpLimits())
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def server(start_server: ServerFactory) -> RtmpServer:
    """A server with the default limits."""
    return await start_server()
