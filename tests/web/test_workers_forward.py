"""The way a worker reaches the primary: HTTP push uploads, streamed over the Unix socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stagecast.web.workers import Primary


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += chunk[:-2]


async def test_an_upload_reaches_the_primary_with_the_clients_address(tmp_path: Path) -> None:
    """The body is streamed through (chunk by chunk, never whole in the worker), the client's
    address travels in a header of our own, hop-by-hop headers do not, and the primary's
    answer comes back as it was."""
    path = tmp_path / "primary.sock"
    seen: dict[str, bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["head"] = await reader.readuntil(b"\r\n\r\n")
        seen["body"] = await _read_chunked(reader)
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 7\r\nx-answer: yes\r\n\r\nstored!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    primary = Primary(path)
    pieces = [b"moof" * 1000, b"mdat" * 1000, b""]

    async def receive() -> dict[str, Any]:
        chunk = pieces.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "method": "PUT",
        "path": "/ingest/abc/source/seg-1.m4s",
        "query_string": b"",
        "headers": [(b"host", b"example"), (b"connection", b"keep-alive")],
        "client": ("203.0.113.7", 5000),
    }
    try:
        await primary.forward(scope, receive, send)
    finally:
        await primary.close()
        server.close()
        await server.wait_closed()
    assert seen["head"].startswith(b"PUT /ingest/abc/source/seg-1.m4s HTTP/1.1\r\n")
    assert b"x-stagecast-client: 203.0.113.7" in seen["head"]
    assert b"host: example" not in seen["head"]
    assert seen["body"] == b"moof" * 1000 + b"mdat" * 1000
    assert sent[0]["status"] == 201
    assert (b"x-answer", b"yes") in sent[0]["headers"]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"stored!"
