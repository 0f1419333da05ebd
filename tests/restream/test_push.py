"""Restreaming end to end: real ffmpeg publishes to channel A, whose destinations are channel B
of the same Stagecast (its RTMP port) and an address that refuses connections."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from stagecast.auth import service as accounts
from tests.auth.test_api import bearer
from tests.conftest import RunningServer, make_settings, serve
from tests.live.streaming import first_variant, make_channel, parse_live, publish, wait_for

pytestmark = pytest.mark.ffmpeg


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """One server on the embedded database (restreaming does not depend on it)."""
    async with serve(make_settings(tmp_path / "data", reconnect_grace_seconds=2.0)) as running:
        yield running


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once it is closed


async def _pushes(http: httpx.AsyncClient, slug: str, token: str) -> dict[str, Any]:
    items = (await http.get(f"/api/v1/channels/{slug}/destinations", headers=bearer(token))).json()
    return {d["name"]: d["push"] for d in items["items"]}


async def test_a_live_channel_is_pushed_to_its_destinations(server: RunningServer) -> None:
    source_key = await make_channel(server, "main", owner="caster")
    mirror_key = await make_channel(server, "mirror", owner="other")
    owner = await accounts.get_account(server.core.db, "caster")
    token = await accounts.create_api_token(server.core.db, owner.id, "t")
    rtmp = f"rtmp://127.0.0.1:{server.runtime.ingest.rtmp.port}/live"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        base = "/api/v1/channels/main/destinations"
        for name, url, key in (
            ("mirror", rtmp, mirror_key),
            ("refusing", f"rtmp://127.0.0.1:{_closed_port()}/live", "nothing-here"),
        ):
            body = {"name": name, "url": url, "stream_key": key}
            assert (await http.post(base, json=body, headers=bearer(token))).status_code == 201
        async with publish(server, source_key, 30):
            await wait_for(http, "/api/v1/channels/main/live", lambda s: s["live"], 30)
            # Channel B receives the copy, as any encoder's stream: it goes live and plays.
            mirror = await wait_for(http, "/api/v1/channels/mirror/live", lambda s: s["live"], 40)
            variant = f"/hls/mirror/{await first_variant(http, mirror['master_url'])}"
            async with asyncio.timeout(30):
                while not parse_live((await http.get(variant)).text).segments:
                    await asyncio.sleep(0.3)
            playlist = parse_live((await http.get(variant)).text)
            folder = variant.rsplit("/", 1)[0]
            init = (await http.get(f"{folder}/{playlist.segment_map[0].uri}")).content
            media = (await http.get(f"{folder}/{playlist.segments[0].uri}")).content
            with av.open(io.BytesIO(init + media)) as container:
                assert len(list(container.decode(video=0))) > 0
            # The refusing one is retried and reported; the other is live; A plays on.
            async with asyncio.timeout(30):
                while True:
                    pushes = await _pushes(http, "main", token)
                    refusing, live = pushes["refusing"], pushes["mirror"]
                    if refusing and refusing["attempts"] >= 2 and live and live["bytes_sent"]:
                        break
                    await asyncio.sleep(0.3)
            assert live["state"] == "live"
            assert refusing["state"] in ("retrying", "connecting")
            assert refusing["last_error"]
            main = await wait_for(http, "/api/v1/channels/main/live", lambda s: s["live"], 5)
            assert main["state"] == "live"
            metrics = (await http.get("/metrics")).text
            assert "stagecast_restream_pushing 1.0" in metrics
        # The source ends: every push stops, and channel B's session ends after its grace.
        await wait_for(http, "/api/v1/channels/main/live", lambda s: not s["live"], 30)
        async with asyncio.timeout(20):
            while {p["state"] for p in (await _pushes(http, "main", token)).values()} != {
                "stopped"
            }:
                await asyncio.sleep(0.3)
        await wait_for(http, "/api/v1/channels/mirror/live", lambda s: not s["live"], 30)
