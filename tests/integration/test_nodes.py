"""Three nodes, no shared disk: a node killed mid-stream, the encoder goes on on another, one VOD.

Three real ``stagecast serve`` processes, each with its own data directory, share only
PostgreSQL, Redis and a bucket on a real S3-API server (moto's: an emulator of the S3 API; the
nodes speak plain S3 to it). The real ffmpeg publishes over RTMP to node 1; players on nodes 2
and 3 get decodable media; node 1 is killed with SIGKILL; the encoder reconnects to node 2
within the grace window and the same session goes on; at the end exactly one VOD exists, with
every segment from before the kill (but the one in flight) and after it, and it plays from
node 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import m3u8
import pytest

from tests.conftest import REDIS_URL, needs_postgres, needs_redis
from tests.integration.test_crash_recovery import _cli, _env, _free_port, _serve
from tests.live.streaming import pattern_args
from tests.s3 import S3Server

pytestmark = [needs_postgres, needs_redis, pytest.mark.ffmpeg]

_SEGMENT = re.compile(r"seg-(\d+)\.m4s")
_PART = re.compile(r"part-(\d+)\.m4s")


@dataclass
class Node:
    name: str
    env: dict[str, str]
    base: str
    rtmp: int
    process: asyncio.subprocess.Process | None = None


@pytest.fixture
async def cluster(
    tmp_path: Path, database: str, own_s3: S3Server
) -> AsyncIterator[tuple[list[Node], str]]:
    """Three nodes (not started) and a channel's stream key."""
    bucket = own_s3.bucket()
    prefix = f"nodes-{uuid.uuid4().hex[:8]}"
    assert REDIS_URL
    nodes = []
    for n in (1, 2, 3):
        http_port, rtmp_port = _free_port(), _free_port()
        env = _env(tmp_path / f"node{n}", http_port, rtmp_port)
        env.update(
            STAGECAST_DATABASE_URL=database,
            STAGECAST_REDIS_URL=REDIS_URL,
            STAGECAST_REDIS_PREFIX=prefix,
            STAGECAST_NODE_NAME=f"node{n}",
            STAGECAST_RECONNECT_GRACE_SECONDS="15",
            STAGECAST_VOD_RETRY_BASE_SECONDS="1",
            STAGECAST_VOD_RETRY_CAP_SECONDS="3",
            STAGECAST_VOD_JOB_ATTEMPTS="10",
            **{f"STAGECAST_{k.upper()}": str(v) for k, v in own_s3.settings(bucket).items()},
        )
        nodes.append(Node(f"node{n}", env, f"http://127.0.0.1:{http_port}", rtmp_port))
    await _cli(nodes[0].env, "user", "create", "caster", "--password", "password123")
    created = await _cli(nodes[0].env, "channel", "create", "relay", "--owner", "caster")
    try:
        yield nodes, created.split(": ", 1)[1]
    finally:
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                node.process.kill()
                await node.process.wait()


async def _encoder(node: Node, key: str, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *pattern_args(seconds),
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{node.rtmp}/live/{key}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _publish_until_taken(node: Node, key: str, seconds: float) -> asyncio.subprocess.Process:
    """Start the encoder until the node takes it (refused while the dead owner looks alive)."""
    async with asyncio.timeout(30):
        while True:
            encoder = await _encoder(node, key, seconds)
            try:
                async with asyncio.timeout(3):
                    await encoder.wait()  # refused: ffmpeg gives up at once
            except TimeoutError:
                return encoder  # still publishing
            await asyncio.sleep(0.5)


async def _json(client: httpx.AsyncClient, url: str, **headers: str) -> dict[str, object]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def _variant(client: httpx.AsyncClient) -> str:
    """Return the media playlist URL of the channel's current session (polling until live)."""
    async with asyncio.timeout(40):
        while True:
            status = await _json(client, "/api/v1/channels/relay/live")
            if status["live"]:
                master = await client.get(str(status["master_url"]))
                if master.status_code == 200 and (found := m3u8.loads(master.text).playlists):
                    return f"/hls/relay/{str(found[0].uri).split('?')[0]}"
            await asyncio.sleep(0.2)


def _parts(text: str) -> list[int]:
    return [int(n) for n in _PART.findall(text)]


def _sequences(text: str) -> list[int]:
    return [int(n) for n in _SEGMENT.findall(text)]


async def _until_sequence(client: httpx.AsyncClient, url: str, past: int) -> str:
    """Poll a live playlist until it lists a segment numbered above ``past``."""
    async with asyncio.timeout(40):
        while True:
            response = await client.get(url)
            if response.status_code == 200 and max(_sequences(response.text), default=-1) > past:
                return response.text
            await asyncio.sleep(0.2)


def _decodes(init: bytes, media: bytes) -> int:
    with av.open(io.BytesIO(init + media)) as container:
        return len(list(container.decode(video=0)))


async def _plays(client: httpx.AsyncClient, url: str, text: str) -> None:
    """Fetch the playlist's newest segment and its init from ``client``'s node; both decode."""
    playlist = m3u8.loads(text)
    folder = url.rsplit("/", 1)[0]
    listed = [s for s in playlist.segments if s.uri]
    init = await client.get(f"{folder}/{listed[-1].init_section.uri}")
    media = await client.get(f"{folder}/{listed[-1].uri}")
    assert init.status_code == media.status_code == 200
    assert _decodes(init.content, media.content) > 0


async def test_a_node_killed_mid_stream(cluster: tuple[list[Node], str]) -> None:
    nodes, key = cluster
    started = await asyncio.gather(*(_serve(n.env, n.base) for n in nodes))
    for node, process in zip(nodes, started, strict=True):
        node.process = process
    first, second, third = nodes
    encoder = await _encoder(first, key, 120)
    clients = [httpx.AsyncClient(base_url=n.base, timeout=15) for n in nodes]
    on_first, on_second, on_third = clients
    try:
        url = await _variant(on_second)
        assert url == await _variant(on_third)  # one session, wherever it is asked
        before_text = await _until_sequence(on_first, url, 3)
        for client in (on_second, on_third):
            text = await _until_sequence(client, url, 3)
            assert "#EXT-X-PART:" in text  # the owner's low-latency edge, mirrored
            await _plays(client, url, text)
        before = set(_sequences(before_text))
        last_before = max(before)

        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
        encoder.kill()
        await encoder.wait()

        encoder = await _publish_until_taken(second, key, 10)
        after_text = await _until_sequence(on_third, url, last_before + 3)
        assert "#EXT-X-DISCONTINUITY" in after_text
        # Parts made on node 2 have names node 1 never used (part files are immutable).
        assert min(_parts(after_text)) > max(_parts(before_text))
        assert len(set(_sequences(after_text))) == len(_sequences(after_text))
        await _plays(on_third, url, after_text)
        async with asyncio.timeout(30):
            await encoder.wait()  # its 10 s are over: the session ends after the grace window

        token = await _cli(third.env, "token", "create", "caster")
        async with asyncio.timeout(90):
            while True:
                library = await _json(
                    on_third, "/api/v1/studio/vods", Authorization=f"Bearer {token}"
                )
                items = library["items"]
                assert isinstance(items, list)
                if items and items[0]["status"] in ("ready", "failed"):
                    break
                await asyncio.sleep(0.5)
        assert len(items) == 1  # one session, one VOD
        assert items[0]["status"] == "ready", items[0]
        vod_id = items[0]["id"]
        master = m3u8.loads((await on_third.get(f"/hls/vods/{vod_id}/master.m3u8")).text)
        vod_url = f"/hls/vods/{vod_id}/{master.playlists[0].uri}"
        vod_text = (await on_third.get(vod_url)).text
        recorded = _sequences(vod_text)
        assert recorded == sorted(set(recorded))  # in order, no sequence used twice
        assert len(before - set(recorded)) <= 1  # all but the one in flight at the kill
        assert max(recorded) > last_before + 3  # and what came after, on node 2
        assert "#EXT-X-DISCONTINUITY" in vod_text
        vod = m3u8.loads(vod_text)
        folder = vod_url.rsplit("/", 1)[0]
        for segment in (vod.segments[0], vod.segments[-1]):
            init = await on_third.get(f"{folder}/{segment.init_section.uri}")
            media = await on_third.get(f"{folder}/{segment.uri}")
            assert _decodes(init.content, media.content) > 0
    finally:
        if encoder.returncode is None:
            encoder.kill()
            await encoder.wait()
        for client in clients:
            await client.aclose()
        for node in nodes:
            if node.process is not None and node.process.returncode is None:
                node.process.send_signal(signal.SIGTERM)
        for node in nodes:
            if node.process is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(20):
                        await node.process.wait()
