"""Hostile sign-in traffic over a real socket: odd CSRF headers, targeted lockouts."""

from __future__ import annotations

import httpx

from stagecast.auth import service
from tests.conftest import RunningServer

PASSWORD = "password123"


async def _signed_in(client: httpx.AsyncClient, server: RunningServer, name: str) -> str:
    """Create ``name``, sign ``client`` in as them; return the CSRF token."""
    await service.create_account(server.core.db, name, PASSWORD, "broadcaster")
    response = await client.post(
        "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def test_a_non_ascii_csrf_header_is_a_403_not_a_500(live_server: RunningServer) -> None:
    """An X-CSRF-Token with bytes beyond ASCII is refused like any wrong token (403)."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as client:
        await _signed_in(client, live_server, "alice")
        for value in ("é".encode(), b"\xff\xfe", "токен".encode()):
            response = await client.post(
                "/api/v1/channels", json={"slug": "alice-live"}, headers={"X-CSRF-Token": value}
            )
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == "csrf_failed"
