"""A real webhook receiver: uvicorn on 127.0.0.1, recording requests, answering from a script."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic seconds


class Receiver:
    """Answer each POST with the next status of ``statuses`` (then ``then``), and record it."""

    def __init__(self, statuses: list[int] | None = None, then: int = 200) -> None:
        self.statuses = list(statuses or [])
        self.then = then
        self.requests: list[Received] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Received(scope["path"], headers, body, time.monotonic()))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else self.then
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until ``count`` requests arrived; return them."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests


@contextlib.asynccontextmanager
async def receiving(statuses: list[int] | None = None, then: int = 200) -> AsyncIterator[Receiver]:
    """Run a ``Receiver`` on a free port of 127.0.0.1 for the duration of the block."""
    receiver = Receiver(statuses, then)
    config = uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
