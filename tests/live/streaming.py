"""Drive a running Stagecast like a broadcaster and a viewer would: ffmpeg in, HTTP out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urljoin

import httpx
import m3u8

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from tests.auth.test_api import bearer
from tests.conftest import RunningServer
from tests.live.conftest import AAC, FFMPEG, H264_2S_GOP


async def make_channel(
    server: RunningServer,
    slug: str,
    *,
    profile: str = "passthrough",
    visibility: str = "public",
    owner: str | None = None,
    latency: str = "low",
) -> str:
    """Create an owner and a channel on the running server; return the stream key."""
    db = server.core.db
    account = await accounts.create_account(db, owner or f"o-{slug}", "password123", "broadcaster")
    _, key = await channels.create_channel(
        db, account, slug, profile=profile, visibility=visibility, latency=latency
    )
    return key


def pattern_args(seconds: float, size: str = "640x360") -> list[str]:
    """ffmpeg input and encoder arguments for a real-time test pattern with a 2 s GOP."""
    return [
        FFMPEG,
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        f"{seconds:g}",
        *H264_2S_GOP,
        "-tune",
        "zerolatency",
        *AAC,
    ]


@contextlib.asynccontextmanager
async def publish(
    server: RunningServer,
    key: str,
    seconds: float,
    *,
    size: str = "640x360",
    encoder: Sequence[str] = (),
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Publish a test pattern over RTMP for ``seconds`` (``encoder``: more output arguments);
    kill ffmpeg on the way out."""
    port = server.runtime.ingest.rtmp.port
    process = await asyncio.create_subprocess_exec(
        *pattern_args(seconds, size),
        *encoder,
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{port}/live/{key}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await process.wait()


async def wait_for(client: httpx.AsyncClient, url: str, predicate: Any, timeout: float = 30) -> Any:
    """Poll ``url`` (JSON) until ``predicate(body)`` holds; return the body."""
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(url)
            if response.status_code == 200 and predicate(response.json()):
                return response.json()
            await asyncio.sleep(0.2)


async def wait_for_segments(
    client: httpx.AsyncClient, playlist_url: str, count: int, timeout: float = 30
) -> str:
    """Poll a media playlist until it lists at least ``count`` segments; return its text."""
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(playlist_url)
            if response.status_code == 200 and response.text.count("#EXTINF") >= count:
                return response.text
            await asyncio.sleep(0.2)


def parse_live(text: str) -> m3u8.M3U8:
    """Parse a live playlist; the parts of the segment being made (LL-HLS) are left out.

    The m3u8 library lists them as a last segment without a URI or duration; the tests here
    look at whole segments (the parts are checked in tests/live/test_lowlatency.py).
    """
    playlist = m3u8.loads(text)
    whole = [segment for segment in playlist.segments if segment.uri]
    playlist.segments = m3u8.SegmentList(whole)
    return playlist


async def first_variant(http: httpx.AsyncClient, master_url: str) -> str:
    """Poll the master playlist until it lists a variant; return that variant's URI."""
    async with asyncio.timeout(30):
        while True:
            response = await http.get(master_url)
            if response.status_code == 200 and (found := parse_live(response.text).playlists):
                return str(found[0].uri)
            await asyncio.sleep(0.2)


async def wait_for_ready_vod(http: httpx.AsyncClient, token: str) -> int:
    """Poll the studio library (as the owner of ``token``) until its newest VOD is ready."""
    async with asyncio.timeout(60):
        while True:
            items = (await http.get("/api/v1/studio/vods", headers=bearer(token))).json()["items"]
            if items and items[0]["status"] == "ready":
                return int(items[0]["id"])
            await asyncio.sleep(0.3)


async def vod_playlist(http: httpx.AsyncClient, vod_id: int) -> m3u8.M3U8:
    """Return the first rendition's playlist of a ready VOD."""
    master_url = f"/hls/vods/{vod_id}/master.m3u8"
    master = parse_live((await http.get(master_url)).text)
    return parse_live((await http.get(urljoin(master_url, master.playlists[0].uri))).text)
