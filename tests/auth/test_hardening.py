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


def _from(server: RunningServer, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any 127.x.y.z is this host)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=10)


async def _try(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"username": name, "password": password})


async def test_wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere(
    live_server: RunningServer,
) -> None:
    """Ten wrong passwords from one address block that address; the right one from another
    address still signs in."""
    await service.create_account(live_server.core.db, "target", PASSWORD, "broadcaster")
    async with (
        _from(live_server, "127.0.0.1") as attacker,
        _from(live_server, "127.0.0.2") as owner,
    ):
        for _ in range(10):
            assert (await _try(attacker, "target", "guess-guess")).status_code == 401
        blocked = await _try(attacker, "target", PASSWORD)
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) >= 1
        signed_in = await _try(owner, "target", PASSWORD)
        assert signed_in.status_code == 200, signed_in.text


async def test_failing_addresses_wait_longer_and_longer_for_one_user(
    live_server: RunningServer,
) -> None:
    """Past the allowed failures for a user, each further failure doubles the wait imposed on
    every address that failed for them; an address that never failed still gets its try."""
    await service.create_account(live_server.core.db, "target", PASSWORD, "broadcaster")
    clients = [_from(live_server, f"127.0.1.{i}") for i in range(1, 10)]
    try:
        for client in clients[:5]:  # ten failures, two from each of five addresses
            for _ in range(2):
                assert (await _try(client, "target", "guess-guess")).status_code == 401
        waits = []
        for fresh in clients[5:9]:
            assert (await _try(fresh, "target", "guess-guess")).status_code == 401
            again = await _try(fresh, "target", PASSWORD)  # even the right password waits
            assert again.status_code == 429, again.text
            waits.append(int(again.headers["Retry-After"]))
        assert waits == sorted(waits), waits
        assert waits[-1] >= 4 * waits[0], waits
        late = await _try(clients[0], "target", PASSWORD)
        assert late.status_code == 429
    finally:
        for client in clients:
            await client.aclose()
