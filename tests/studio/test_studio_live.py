"""A whole show seen from the studio: real ffmpeg over RTMP, the SSE feeds, viewers, webhooks.

Runs on PostgreSQL and Redis when the run has them (the production shape), else SQLite in
one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import m3u8
import pytest

from stagecast.channels import service as channels
from stagecast.webhooks.service import SIGNATURE_HEADER, verify
from tests.live.streaming import publish
from tests.studio.conftest import Message, fullest_settings, person, serve, sse
from tests.webhooks.receiver import receiving

VIDEO_KBPS, AUDIO_KBPS = 800, 96
VIEWER = "player-0000000001"

pytestmark = pytest.mark.ffmpeg


# The publisher's video held to VIDEO_KBPS, so the measured bit rate can be checked against it.
CBR = [
    *("-b:v", f"{VIDEO_KBPS}k"),
    *("-maxrate", f"{VIDEO_KBPS}k"),
    *("-bufsize", f"{VIDEO_KBPS}k"),
]


def is_state(state: str) -> Callable[[Message], bool]:
    """Return a predicate for a studio ``state`` event."""
    return lambda m: m.event == "state" and m.data["state"] == state


def settled(message: Message) -> bool:
    """A snapshot taken after several seconds of media, with a viewer counted."""
    return (
        message.event == "snapshot"
        and (message.data.get("uptime") or 0) >= 8
        and message.data["viewers"]["current"] == 1
    )


def good(message: Message) -> bool:
    """A snapshot with a good verdict."""
    return bool(message.data["health"]["verdict"] == "good")


async def watch(http: httpx.AsyncClient, slug: str) -> None:
    """Play like the viewer page: master with our ``vs``, the media playlist, a heartbeat."""
    master = await http.get(f"/hls/{slug}/master.m3u8", params={"vs": VIEWER})
    assert master.status_code == 200
    variant = m3u8.loads(master.text).playlists[0].uri
    assert parse_qs(urlsplit(variant).query)["vs"][0].startswith(VIEWER + ".")  # signed
    assert (await http.get(f"/hls/{slug}/{variant}")).status_code == 200
    beat = await http.post(f"/api/v1/channels/{slug}/heartbeat", json={"vs": VIEWER})
    assert beat.status_code == 200


async def test_a_live_show_from_the_studio(tmp_path: Path) -> None:
    """Live, good health, the encoder's bit rate, one viewer, ended, the VOD, every webhook."""
    settings = fullest_settings(tmp_path, reconnect_grace_seconds=4.0, vod_poll_seconds=0.2)
    async with (
        serve(settings) as server,
        receiving() as receiver,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        owner = await person(server.core.db)
        channel, key = await channels.create_channel(server.core.db, owner.account, "studio-e2e")
        hook = await http.post(
            f"/api/v1/channels/{channel.slug}/webhooks",
            json={"url": receiver.url, "events": ["stream.started", "stream.ended", "vod.ready"]},
            headers=owner.headers,
        )
        secret = hook.json()["secret"]
        studio_url = f"/api/v1/studio/channels/{channel.slug}/events"
        public_url = f"/api/v1/channels/{channel.slug}/events"
        async with sse(http, studio_url, owner.headers) as studio, sse(http, public_url) as public:
            await studio.until(is_state("offline"))
            async with publish(server, key, 60, encoder=CBR):
                await studio.until(is_state("live"), timeout=30)
                # Watch until the stream has run a while; a machine busy with other work may
                # make a tick see a late segment, so wait for a good one (bounded).
                snapshot = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(40):
                        while snapshot is None or not settled(snapshot) or not good(snapshot):
                            await watch(http, channel.slug)
                            snapshot = await studio.until(
                                lambda m: m.event == "snapshot", timeout=5
                            )
                assert snapshot is not None
                data = snapshot.data
                assert settled(snapshot), data
                assert data["health"] == {"verdict": "good", "reasons": []}, data
                measured = data["ingest"]["bitrate_kbps"]
                assert measured == pytest.approx(VIDEO_KBPS + AUDIO_KBPS, rel=0.35), data
                assert data["ingest"]["frame_rate"] == pytest.approx(30, abs=2)
                assert data["ingest"]["keyframe_interval_max"] == pytest.approx(2.0, abs=0.2)
                [rendition] = data["renditions"]
                assert rendition["bitrate_kbps"] == pytest.approx(measured, rel=0.25)
                assert any(m.event == "viewers" and m.data["current"] == 1 for m in studio.seen)
                status = await public.until(
                    lambda m: m.event == "status" and m.data["viewers"] == 1, timeout=10
                )
                assert status.data["live"] is True
                ended = await http.post(
                    f"/api/v1/channels/{channel.slug}/end", headers=owner.headers
                )
                assert ended.status_code == 204
                await studio.until(is_state("ended"), timeout=15)
                await public.until(lambda m: m.event == "status" and not m.data["live"])
            # The recording becomes a VOD: the studio hears of it, and so does the webhook.
            ready = await studio.until(lambda m: m.event == "vod", timeout=40)
            assert ready.data["type"] == "vod.ready"
        got = await receiver.wait_for(3, timeout=15)
        events = [json.loads(r.body)["event"] for r in got]
        assert sorted(events) == ["stream.ended", "stream.started", "vod.ready"]
        vod_body = json.loads(next(r.body for r in got if b'"vod.ready"' in r.body))
        assert vod_body["data"]["vod_id"] == ready.data["vod_id"]
        for request in got:
            assert verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])
        sessions = await http.get(
            f"/api/v1/studio/channels/{channel.slug}/sessions", headers=owner.headers
        )
        [session] = sessions.json()["items"]
        samples = await http.get(
            f"/api/v1/studio/channels/{channel.slug}/sessions/{session['id']}/samples",
            headers=owner.headers,
        )
        points = samples.json()["items"]
        assert points, "history was sampled while live"
        assert max(p["viewers"] for p in points) == 1
        assert any(p["bitrate_kbps"] for p in points)
