"""The request and reply of the media fast path: viewer GETs answered without the framework.

Every viewer-facing media request (playlists, init and media segments, parts, thumbnails) is
answered by a handler that takes a ``MediaRequest`` (the path, the first value of each query
parameter and the few headers media needs, parsed once from the ASGI scope) and returns a
``Reply``: bytes held in memory, or a file read in one go. The web layer's ``MediaEdge`` sends
it; nothing on this path builds a framework request, resolves dependencies or walks routes.
Errors are the project's ``StagecastError`` tree, rendered by the web layer as everywhere else.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from stagecast.errors import BadRequest, NotFound

# The largest file sent from one read; a bigger one goes out in reads of this size.
ONE_READ_BYTES = 16 * 1024 * 1024
_MAX_QUERY = 4096  # bytes of query string: tokens are at most 1 KiB, the LL-HLS fields short

Headers = tuple[tuple[bytes, bytes], ...]
# The client address a worker of ``stagecast serve --workers`` passes on with what it forwards
# to the primary (per-address limits need it). Believed only where the connection has no peer
# address: the primary's Unix socket, which only the workers reach (mode 0600).
CLIENT_HEADER = b"x-stagecast-client"


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """One viewer GET or HEAD, parsed once from its ASGI scope.

    ``query`` holds the first value of each parameter; ``scope`` is kept for what only a few
    requests need (the session cookie of a staff viewer of a private channel).
    """

    path: str
    query: Mapping[str, str]
    if_none_match: str | None
    client: str | None
    head: bool
    scope: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, scope: Mapping[str, Any]) -> MediaRequest:
        """Parse ``scope``. Raises BadRequest for a query string that is too long."""
        raw: bytes = scope.get("query_string", b"")
        if len(raw) > _MAX_QUERY:
            raise BadRequest("the query string is too long")
        query: dict[str, str] = {}
        if raw:
            for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
                query.setdefault(key, value)
        if_none_match = None
        client = scope.get("client")
        address = str(client[0]) if client else None
        for name, value in scope.get("headers", ()):
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == CLIENT_HEADER and address is None:
                address = value.decode("latin-1")
        return cls(
            path=scope["path"],
            query=query,
            if_none_match=if_none_match,
            client=address,
            head=scope.get("method") == "HEAD",
            scope=scope,
        )

    def text(self, name: str, *, max_length: int) -> str | None:
        """Return query parameter ``name``, or None. Raises BadRequest past ``max_length``."""
        value = self.query.get(name)
        if value is not None and len(value) > max_length:
            raise BadRequest(f"{name}: at most {max_length} characters")
        return value or None

    def number(self, name: str, *, maximum: int) -> int | None:
        """Return query parameter ``name`` as an integer in 0..``maximum``, or None.

        Raises BadRequest for anything that is not such a number.
        """
        value = self.query.get(name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 19 or int(value) > maximum:
            raise BadRequest(f"{name} must be a whole number from 0 to {maximum}")
        return int(value)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a media handler answers: a status, headers and bytes, or a file to send."""

    status: int
    headers: Headers
    body: bytes = b""
    file: Path | None = None

    @classmethod
    def of(cls, body: bytes, media_type: str, headers: Mapping[str, str]) -> Reply:
        """Return a 200 with ``body``."""
        return cls(200, _headers(media_type, headers), body)

    @classmethod
    def not_modified(cls, headers: Mapping[str, str]) -> Reply:
        """Return a 304 (RFC 9110 15.4.5: the validators and caching headers, no body)."""
        return cls(304, _headers(None, headers))

    @classmethod
    def from_file(cls, path: Path, media_type: str, headers: Mapping[str, str]) -> Reply:
        """Return a 200 with the contents of ``path``. Raises NotFound if it is not a file."""
        if not path.is_file():
            raise NotFound("not found")
        return cls(200, _headers(media_type, headers), file=path)


def _headers(media_type: str | None, headers: Mapping[str, str]) -> Headers:
    pairs = [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()]
    if media_type is not None:
        pairs.append((b"content-type", media_type.encode()))
    return tuple(pairs)


def matches(if_none_match: str | None, etag: str) -> bool:
    """Tell whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2: weak compare)."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def send_reply(reply: Reply, send: Send, *, head: bool) -> None:
    """Send ``reply``: bytes in one message, a file from one read (or reads of 16 MiB).

    A file that vanished between the check and the read answers 404, before any byte is sent.
    """
    if reply.file is None:
        await _start(send, reply, len(reply.body))
        await send({"type": "http.response.body", "body": b"" if head else reply.body})
        return
    path = reply.file
    try:
        size = os.stat(path).st_size
        if head:
            await _start(send, reply, size)
            await send({"type": "http.response.body", "body": b""})
            return
        if size <= ONE_READ_BYTES:
            data = await asyncio.to_thread(path.read_bytes)
            await _start(send, reply, len(data))
            await send({"type": "http.response.body", "body": data})
            return
        handle = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError as exc:
        raise NotFound("not found") from exc
    try:
        await _start(send, reply, size)
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(ONE_READ_BYTES, left))
            if not chunk:
                break  # truncated under us: the client sees a short body
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        if left > 0:
            await send({"type": "http.response.body", "body": b""})
    finally:
        await asyncio.to_thread(handle.close)


async def _start(send: Send, reply: Reply, length: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [*reply.headers, (b"content-length", str(length).encode())]
            if reply.status != 304
            else list(reply.headers),
        }
    )
