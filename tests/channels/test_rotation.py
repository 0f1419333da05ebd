"""Stream key rotation is a use case that either happened or did not, whatever the bus does.

The bus here is a real Redis client pointed at a port nothing listens on: every publish fails
the way it does when Redis is down.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from tests.auth.test_api import bearer
from tests.conftest import RunningServer, make_settings, serve
from tests.live.streaming import make_channel, publish, wait_for


def _closed_port() -> int:
    """Return a local TCP port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def bus_down(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running Stagecast whose Redis (bus, limits) is unreachable."""
    settings = make_settings(tmp_path / "data", redis_url=f"redis://127.0.0.1:{_closed_port()}/0")
    async with serve(settings) as running:
        yield running


@pytest.mark.ffmpeg
async def test_rotation_with_the_bus_down_returns_the_key_and_still_cuts_off_the_encoder(
    bus_down: RunningServer,
) -> None:
    """With Redis down the rotation answers 200 with a key that works, the old key stops
    working, and the encoder holding it is cut off by its node's key check."""
    server = bus_down
    key = await make_channel(server, "rot-down", owner="rd-owner")
    owner = await accounts.get_account(server.core.db, "rd-owner")
    token = await accounts.create_api_token(server.core.db, owner.id, "t")
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        publish(server, key, 60) as encoder,
    ):
        await wait_for(http, "/api/v1/channels/rot-down/live", lambda b: b["state"] == "live")
        rotated = await http.post("/api/v1/channels/rot-down/key", headers=bearer(token))
        assert rotated.status_code == 200, rotated.text
        new_key = rotated.json()["stream_key"]
        match = await channels.verify_stream_key(server.core.db, new_key)
        assert match is not None
        assert match.slug == "rot-down"
        assert await channels.verify_stream_key(server.core.db, key) is None
        async with asyncio.timeout(20):  # the key check runs with every sweep (5 s)
            await encoder.wait()


async def test_announcing_a_rotation_with_the_bus_down_says_so_and_does_not_raise(
    bus_down: RunningServer,
) -> None:
    """``announce_rotation`` reports a lost announcement as False instead of an error."""
    db = bus_down.core.db
    owner = await accounts.create_account(db, "ann", "password123", "broadcaster")
    await channels.create_channel(db, owner, "announce")
    rotated, _ = await channels.rotate_key(db, "announce")
    assert await channels.announce_rotation(bus_down.core.bus, rotated) is False
