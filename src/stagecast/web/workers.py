"""``stagecast serve --workers N``: one HTTP port served by N processes on one machine.

The parent binds the port once and starts N worker processes that accept on that same
socket, so the kernel spreads connections over them. Worker 0, the primary, is a whole
Stagecast: it runs the RTMP server and HTTP push, holds every live session (their playlists,
parts and hot media) and also listens on a Unix socket in the data directory. The other
workers are nodes like any other (see ``stagecast.live.sharing``): they serve the API, pages,
chat sockets and feeds over the shared bus, VODs, and the live edge itself (playlists,
blocking reloads, parts and segments) from the copy the primary shares over Redis, and pass
only HTTP push uploads to the primary over its Unix socket.

The workers share PostgreSQL (SQLite is one process's database) and Redis (every worker must
see the live events, chat and presence of the others). The parent stops every worker on
SIGINT/SIGTERM, and stops the rest (and exits non-zero) if one dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

from stagecast.config import Settings
from stagecast.fastpath import CLIENT_HEADER

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"host",
        CLIENT_HEADER,
    }
)
_FORWARD_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def primary_socket(settings: Settings) -> Path:
    """Return the path of the primary worker's Unix socket."""
    return settings.data_dir / "run" / "primary.sock"


def refuse_reason(settings: Settings, workers: int) -> str | None:
    """Say why ``workers`` processes cannot run on ``settings`` (None if they can)."""
    if workers < 2:
        return None
    if settings.is_sqlite:
        return "--workers needs PostgreSQL (STAGECAST_DATABASE_URL): SQLite is one process's"
    if not settings.redis_url:
        return "--workers needs Redis (STAGECAST_REDIS_URL): the workers share events over it"
    return None


def run_workers(settings: Settings, workers: int) -> int:
    """Bind the port, start ``workers`` worker processes, supervise them; return an exit code."""
    listener = socket.create_server((settings.host, settings.port), backlog=2048)
    listener.set_inheritable(True)
    path = primary_socket(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = listener.fileno()
    children = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [
                sys.executable,
                "-m",
                "stagecast",
                "serve",
                "--worker-index",
                str(index),
                "--worker-fd",
                str(fd),
            ],
            pass_fds=(fd,),
        )
        for index in range(workers)
    ]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        while not stopping:
            if any(child.poll() is not None for child in children):
                code = 1
                break
            time.sleep(0.2)  # the parent only supervises; nothing waits on it
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        listener.close()
    return code


def worker_sockets(settings: Settings, fd: int) -> list[socket.socket]:
    """Return the sockets worker ``settings.worker_index`` accepts on.

    Every worker accepts on the shared port; the primary also on its Unix socket.
    """
    shared = socket.socket(fileno=fd)
    if settings.worker_index != 0:
        return [shared]
    path = primary_socket(settings)
    path.unlink(missing_ok=True)
    local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    local.bind(str(path))
    os.chmod(path, 0o600)
    local.listen(2048)
    return [shared, local]


class Primary:
    """A worker's way to the primary: HTTP push uploads, streamed both ways over the Unix
    socket (with the client's address, so per-address limits still count per encoder)."""

    def __init__(self, path: Path) -> None:
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(path)),
            base_url="http://primary",
            timeout=_FORWARD_TIMEOUT,
        )

    async def close(self) -> None:
        """Close the connections to the primary."""
        await self._client.aclose()

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the request to the primary and its answer back.

        Raises OSError or httpx.HTTPError when the primary cannot be reached (before any byte
        is sent).
        """
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        client = scope.get("client")
        if client:
            headers.append((CLIENT_HEADER, str(client[0]).encode()))
        request = self._client.build_request(
            scope["method"],
            scope["path"],
            params=scope.get("query_string", b"").decode("latin-1") or None,
            headers=headers,
            content=_body(receive) if scope["method"] not in ("GET", "HEAD") else None,
        )
        response = await self._client.send(request, stream=True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower(), v)
                        for k, v in response.headers.raw
                        if k.lower() not in _HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
