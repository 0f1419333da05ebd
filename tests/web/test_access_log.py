"""Secrets in query strings never reach the log: ``stagecast serve``'s own access log, read."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
import websockets

from stagecast.logs import redact
from tests.web.serving import stagecast_serve

SECRETS = {
    "/api/v1/channels/show/events?token=S3CRET-one": "/api/v1/channels/show/events?token=***",
    "/c/show?x=1&key=S3CRET-two&y=2": "/c/show?x=1&key=***&y=2",
    "/api/v1/vods?api_key=S3CRET-three&Token=S3CRET-four": "/api/v1/vods?api_key=***&Token=***",
    "/healthz?%74oken=S3CRET-five": "/healthz?%74oken=***",
    "/healthz?stream_key=S3CRET-six&secret=S3CRET-seven": "/healthz?stream_key=***&secret=***",
    "/healthz?password=S3CRET-eight;sig=S3CRET-nine": "/healthz?password=***;sig=***",
}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_tokens_and_keys_are_redacted_in_every_log_line(tmp_path: Path, fmt: str) -> None:
    """HTTP and WebSocket requests with secrets in the query log the path with ``***`` values."""
    with stagecast_serve(tmp_path / "data", STAGECAST_LOG_FORMAT=fmt) as served:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            for path in SECRETS:
                client.get(path)

        async def socket() -> None:
            url = f"ws://{served.host}:{served.port}/api/v1/channels/show/chat/socket"
            with contextlib.suppress(websockets.InvalidStatus, websockets.ConnectionClosed):
                async with websockets.connect(f"{url}?token=S3CRET-ws", open_timeout=10) as ws:
                    await ws.recv()

        asyncio.run(socket())
        text = served.wait_for_log("WebSocket")
        served.wait_for_log("stream_key=***")
    assert "S3CRET" not in text, text
    for path, shown in SECRETS.items():
        assert shown.split("?")[0] in text, path
    assert "socket?token=***" in text


def test_redaction_keeps_what_is_not_secret() -> None:
    """Plain parameters, fragments and text around a URL are left as they were."""
    assert redact('1.2.3.4 - "GET /a?page=2&limit=5 HTTP/1.1" 200') == (
        '1.2.3.4 - "GET /a?page=2&limit=5 HTTP/1.1" 200'
    )
    assert redact("no query here: a=b") == "no query here: a=b"
    assert redact('"GET /a?invite=ABC#frag HTTP/1.1"') == '"GET /a?invite=***#frag HTTP/1.1"'
    assert redact("see http://h/x?token=abc and /y?key=def.") == (
        "see http://h/x?token=*** and /y?key=***"
    )
