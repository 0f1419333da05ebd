"""The HTTP edge: database failures become 503/504 with a JSON body, never a 500 or a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stagecast.app import create_app
from tests.conftest import make_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def unreachable(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose PostgreSQL does not answer (nothing listens on its port)."""
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing"
    settings = make_settings(tmp_path, url, db_deadline=1.0, db_attempt_timeout=0.3)
    app = create_app(settings, migrate=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_database_down_is_503_with_retry_after(unreachable: httpx.AsyncClient) -> None:
    """A dead database: 503 with Retry-After and a JSON error, within the deadline."""
    started = time.monotonic()
    response = await unreachable.get(
        "/api/v1/channels", headers={"Authorization": "Bearer sct_0123456789abcdef_x"}
    )
    assert time.monotonic() - started < 2.0
    assert response.status_code in (503, 504)
    assert response.json()["error"]["code"] in ("db_unavailable", "db_deadline")
    if response.status_code == 503:
        assert int(response.headers["Retry-After"]) >= 1


async def test_readyz_reports_the_database(unreachable: httpx.AsyncClient) -> None:
    """/readyz is 503 when the database cannot be reached; /healthz stays 200."""
    ready = await unreachable.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] != "ok"
    assert (await unreachable.get("/healthz")).status_code == 200


async def test_readyz_ok_when_the_database_answers(client: httpx.AsyncClient) -> None:
    """/readyz is 200 with every check ok on a working back end."""
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "bus": "ok"}


async def test_unknown_routes_are_json_404(client: httpx.AsyncClient) -> None:
    """Even the router's own 404 uses the error format."""
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/channels/a%00b/live", None),
        ("GET", "/hls/x%00y/master.m3u8", None),
        ("POST", "/api/v1/auth/login", {"username": "ab\x00cd", "password": "password123"}),
        ("GET", "/hls/show/master.m3u8?token=t%C3%A9st.abc", None),
    ],
)
async def test_nul_bytes_and_odd_characters_are_4xx(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    """Input the database cannot store (NUL bytes) or tokens with non-ASCII are 4xx, never 500."""
    response = await client.request(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]
