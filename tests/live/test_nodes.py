"""Two nodes on one database, one Redis and one bucket: any node serves the stream.

Real ffmpeg publishes to node A; a viewer on node B gets the same live edge from B's memory
(mirrored over Redis): the master, low-latency playlists with parts, blocking reloads, parts
and segments. The three-process version with a node killed is tests/integration/test_nodes.py.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import m3u8
import pytest

from stagecast.config import Settings
from tests.conftest import REDIS_URL, RunningServer, make_settings, needs_redis, serve
from tests.live.streaming import first_variant, make_channel, publish, wait_for
from tests.s3 import S3Server

pytestmark = [pytest.mark.ffmpeg, needs_redis]

_PART = re.compile(r'URI="(part-\d+\.m4s)"')


def _node(
    settings: Settings, data: Path, name: str, prefix: str, s3: S3Server, bucket: str
) -> Settings:
    database = settings.database_url or f"sqlite+aiosqlite:///{settings.data_dir / 'stagecast.db'}"
    return make_settings(
        data,
        database,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        node_name=name,
        reconnect_grace_seconds=4.0,
        **s3.settings(bucket),
    )


@pytest.fixture
async def nodes(
    settings: Settings, s3: S3Server, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    bucket = s3.bucket()
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    first = _node(settings, settings.data_dir, "node-a", prefix, s3, bucket)
    second = _node(settings, tmp_path / "b", "node-b", prefix, s3, bucket)
    async with serve(first) as a, serve(second) as b:
        yield a, b


def _decodes(init: bytes, media: bytes) -> int:
    with av.open(io.BytesIO(init + media)) as container:
        return len(list(container.decode(video=0)))


async def test_another_node_serves_the_live_edge_from_its_memory(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    key = await make_channel(a, "shared")
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=10) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=10) as on_b,
        publish(a, key, 30),
    ):
        status = await wait_for(on_b, "/api/v1/channels/shared/live", lambda s: s["live"], 30)
        variant = await first_variant(on_b, status["master_url"])
        url = f"/hls/shared/{variant.split('?')[0]}"
        folder = url.rsplit("/", 1)[0]
        async with asyncio.timeout(30):
            while "#EXT-X-PART:" not in (text := (await on_b.get(url)).text):
                await asyncio.sleep(0.2)
        assert "#EXT-X-PRELOAD-HINT" in text
        assert "CAN-BLOCK-RELOAD=YES" in text
        parsed = m3u8.loads(text)
        listed = [s for s in parsed.segments if s.uri]
        # A blocking reload held on B answers when A's next part is shared.
        edge = parsed.media_sequence + len(listed)
        open_parts = len(parsed.segments[-1].parts) if not parsed.segments[-1].uri else 0
        held = await on_b.get(url, params={"_HLS_msn": edge, "_HLS_part": open_parts})
        assert held.status_code == 200
        newest_part = _PART.findall(held.text)[-1]
        part = await on_b.get(f"{folder}/{newest_part}")
        assert part.status_code == 200
        assert part.content == (await on_a.get(f"{folder}/{newest_part}")).content
        delta = await on_b.get(url, params={"_HLS_skip": "YES"})
        assert delta.status_code == 200
        # Whole segments: the same bytes as the owner's, and they decode after B's init.
        init = (await on_b.get(f"{folder}/{parsed.segment_map[0].uri}")).content
        segment = await on_b.get(f"{folder}/{listed[-1].uri}")
        assert segment.content == (await on_a.get(f"{folder}/{listed[-1].uri}")).content
        assert _decodes(init, segment.content) > 0
        # A standard request: the same playlist as A's (same bytes, same ETag).
        same = [(await on_a.get(url)), (await on_b.get(url))]
        assert {r.status_code for r in same} == {200}
        # A request too far ahead is refused on B as on A.
        assert (await on_b.get(url, params={"_HLS_msn": edge + 10})).status_code == 400


async def test_the_sessions_of_a_node_gone_silent_are_ended_by_another(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    """Node A stops beating (to the others it is dead, as after a crash): node B puts its
    session into reconnecting, A lets its publisher go, and with no encoder back within the
    grace window the session ends: nothing stays live forever."""
    a, b = nodes
    key = await make_channel(a, "orphaned")
    async with (
        httpx.AsyncClient(base_url=b.url, timeout=10) as on_b,
        publish(a, key, 60) as encoder,
    ):
        await wait_for(on_b, "/api/v1/channels/orphaned/live", lambda s: s["live"], 30)
        await a.runtime.live.manager.nodes.close()  # its heartbeat key is gone at once
        ended = await wait_for(
            on_b, "/api/v1/channels/orphaned/live", lambda s: s["state"] == "offline", 40
        )
        async with asyncio.timeout(20):
            await encoder.wait()  # A let the publisher go when the session left it
    assert ended["live"] is False
    assert a.runtime.live.manager.sessions() == []  # A holds nothing of it any more
