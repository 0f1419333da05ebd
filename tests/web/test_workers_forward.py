"""The way a worker reaches the primary: kept-alive connections, recovered when closed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stagecast.web.workers import Primary


async def test_a_worker_reuses_and_recovers_its_connections_to_the_primary(
    tmp_path: Path,
) -> None:
    """GETs go over one kept-alive Unix-socket connection; when the primary closes it (its
    keep-alive timeout), the next GET opens another; the client address is passed on."""
    path = tmp_path / "primary.sock"
    connections = 0
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            for _ in range(2):  # two answers per connection, then close (a keep-alive timeout)
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head)
                writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 5\r\netag: "x"\r\n\r\nhello')
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the worker closed its kept-alive connection
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, path=str(path))
    primary = Primary(path)
    scope: dict[str, Any] = {
        "method": "GET",
        "path": "/hls/a/s1/source/index.m3u8",
        "query_string": b"_HLS_msn=3",
        "headers": [(b"host", b"example"), (b"if-none-match", b'"y"')],
        "client": ("203.0.113.7", 5000),
    }
    try:
        answers = [await primary._get(scope) for _ in range(5)]
    finally:
        await primary.close()
        server.close()
        await server.wait_closed()
    assert [a[0] for a in answers] == [200] * 5
    assert all(a[2] == b"hello" for a in answers)
    assert (b"etag", b'"x"') in answers[0][1]
    assert connections == 3  # 2 + 2 + 1: reused, and reopened after each close
    assert seen[0].startswith(b"GET /hls/a/s1/source/index.m3u8?_HLS_msn=3 HTTP/1.1\r\n")
    assert b"x-stagecast-client: 203.0.113.7" in seen[0]
    assert b'if-none-match: "y"' in seen[0]
    assert b"host: example" not in seen[0]
