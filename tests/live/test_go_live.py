"""Going live end to end: real ffmpeg publishes over RTMP (or pushes over HTTP), viewers get HLS.

The playlists are parsed with the m3u8 library and checked against RFC 8216's rules; segments
are decoded with PyAV.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import re
from collections.abc import AsyncIterator

import av
import httpx
import pytest

from stagecast.auth import service as accounts
from stagecast.channels import tokens
from stagecast.channels.service import get_channel
from stagecast.config import Settings
from tests.auth.test_api import bearer
from tests.conftest import RunningServer, serve
from tests.live.streaming import (
    make_channel,
    parse_live,
    pattern_args,
    publish,
    wait_for,
    wait_for_segments,
)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A running Stagecast with a short reconnect grace window."""
    settings.reconnect_grace_seconds = 4.0
    settings.live_window_segments = 4
    async with serve(settings) as running:
        yield running


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A viewer's HTTP client."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


_SEGMENT_NUMBER = re.compile(r"seg-(\d+)\.m4s")


def _segment_number(uri: str) -> int:
    """Return the sequence number in a live segment's file name."""
    found = _SEGMENT_NUMBER.fullmatch(uri)
    assert found is not None, uri
    return int(found[1])


def _decode(init: bytes, segment: bytes) -> tuple[int, int, int, list[float]]:
    """Return width, height, frame count and frame times of one segment."""
    container = av.open(io.BytesIO(init + segment))
    frames = list(container.decode(video=0))
    times = [float(f.time) for f in frames if f.time is not None]
    return frames[0].width, frames[0].height, len(frames), times


async def test_rtmp_publish_becomes_standard_hls(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """OBS-style publish → live session → RFC 8216 playlists → decodable, continuous segments."""
    key = await make_channel(server, "show")
    async with publish(server, key, 9):
        status = await wait_for(http, "/api/v1/channels/show/live", lambda b: b["state"] == "live")
        master_text = (await http.get(status["master_url"])).text
        master = parse_live(master_text)
        assert "vs=" in master.playlists[0].uri  # players are counted by playback session...
        preview = (await http.get(status["master_url"] + "?preview=1")).text
        assert "vs=" not in preview  # ...but the studio's own preview is not
        assert master.is_variant
        assert len(master.playlists) == 1
        info = master.playlists[0].stream_info
        assert info.codecs.startswith("avc1.")
        assert "mp4a.40.2" in info.codecs
        assert info.resolution == (640, 360)
        assert info.bandwidth > 100_000
        assert info.frame_rate == pytest.approx(30, abs=1)
        media_url = f"/hls/show/{master.playlists[0].uri}"
        text = await wait_for_segments(http, media_url, 3)
    response = await http.get(media_url)
    assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert "no-cache" in response.headers["cache-control"]
    playlist = parse_live(text)
    assert playlist.target_duration >= max(math.floor(s.duration + 0.5) for s in playlist.segments)
    assert all(s.program_date_time is not None for s in playlist.segments)
    pdts = [s.program_date_time for s in playlist.segments]
    assert pdts == sorted(pdts)
    base = media_url.rsplit("/", 1)[0]
    init_response = await http.get(f"{base}/{playlist.segment_map[0].uri}")
    init = init_response.content
    times: list[float] = []
    for seg in playlist.segments:
        got = await http.get(f"{base}/{seg.uri}")
        assert got.status_code == 200
        assert "immutable" in got.headers["cache-control"]
        width, height, frames, seg_times = _decode(init, got.content)
        assert (width, height) == (640, 360)
        assert abs(frames - seg.duration * 30) <= 2
        times.extend(seg_times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Continuous: a missing frame would leave a gap of two frame durations (0.067 s).
    assert max(gaps) < 0.06


async def test_abr_ladder_serves_every_rendition(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """With the ABR profile, the master lists source + smaller rungs, all playable."""
    key = await make_channel(server, "ladder", profile="abr")
    async with publish(server, key, 8, size="1280x720"):
        status = await wait_for(
            http, "/api/v1/channels/ladder/live", lambda b: b["state"] == "live"
        )
        async with asyncio.timeout(30):
            while True:
                master = parse_live((await http.get(status["master_url"])).text)
                if len(master.playlists) == 3:
                    break
                await asyncio.sleep(0.3)
        heights = sorted(p.stream_info.resolution[1] for p in master.playlists)
        assert heights == [360, 480, 720]
        for variant in master.playlists:
            await wait_for_segments(http, f"/hls/ladder/{variant.uri}", 1)


async def test_reconnect_within_grace_continues_the_session(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Drop and return within the grace: same session, a discontinuity, no reused sequence."""
    key = await make_channel(server, "flaky")
    async with publish(server, key, 5) as first:
        status = await wait_for(http, "/api/v1/channels/flaky/live", lambda b: b["state"] == "live")
        await first.wait()
    await wait_for(http, "/api/v1/channels/flaky/live", lambda b: b["state"] == "reconnecting")
    async with publish(server, key, 5) as second:
        again = await wait_for(http, "/api/v1/channels/flaky/live", lambda b: b["state"] == "live")
        assert again["session_id"] == status["session_id"]
        master = parse_live((await http.get(again["master_url"])).text)
        url = f"/hls/flaky/{master.playlists[0].uri}"
        # A segment tagged EXT-X-DISCONTINUITY (the header's DISCONTINUITY-SEQUENCE is no sign).
        async with asyncio.timeout(30):
            while True:
                playlist = parse_live((await http.get(url)).text)
                if any(s.discontinuity for s in playlist.segments):
                    break
                await asyncio.sleep(0.3)
        await second.wait()
    cut = next(i for i, s in enumerate(playlist.segments) if s.discontinuity)
    assert cut > 0  # the window shows segments from both sides of the drop
    # The file names carry the server's sequence numbers: the second encoder's segments
    # continue the count straight across the discontinuity, matching EXT-X-MEDIA-SEQUENCE.
    numbers = [_segment_number(s.uri) for s in playlist.segments]
    first = playlist.media_sequence
    assert numbers == list(range(first, first + len(numbers)))
    ended = await wait_for(
        http, "/api/v1/channels/flaky/live", lambda b: b["state"] == "offline", 20
    )
    assert ended["session_id"] is None


async def test_refusals_do_not_disturb_the_live_stream(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Wrong key, second publisher, garbage and an oversized chunk are refused; the stream flows."""
    key = await make_channel(server, "steady")
    port = server.runtime.ingest.rtmp.port
    async with publish(server, key, 12):
        status = await wait_for(
            http, "/api/v1/channels/steady/live", lambda b: b["state"] == "live"
        )
        media_url = (
            "/hls/steady/"
            + parse_live((await http.get(status["master_url"])).text).playlists[0].uri
        )
        before = parse_live((await http.get(media_url)).text)
        for bad_key in ("0000000000000000_wrong", key):  # wrong key, then a second publisher
            rc = await _publish_once(port, bad_key)
            assert rc != 0
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x03" + b"\xff" * 3000)  # a handshake full of garbage
        await writer.drain()
        writer.close()
        _reader2, writer2 = await asyncio.open_connection("127.0.0.1", port)
        writer2.write(b"GET / HTTP/1.1\r\n\r\n")
        await writer2.drain()
        writer2.close()
        async with asyncio.timeout(20):
            while True:
                after = parse_live((await http.get(media_url)).text)
                last_after = after.media_sequence + len(after.segments)
                if last_after > before.media_sequence + len(before.segments) + 1:
                    break
                await asyncio.sleep(0.3)
        current = (await http.get("/api/v1/channels/steady/live")).json()
        assert current["session_id"] == status["session_id"]
        assert current["state"] == "live"


async def _publish_once(port: int, key: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *pattern_args(3),
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{port}/live/{key}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(20):
        return await process.wait()


async def test_http_push_ingest_end_to_end(server: RunningServer, http: httpx.AsyncClient) -> None:
    """ffmpeg's HLS muxer with -method PUT feeds the same live pipeline."""
    key = await make_channel(server, "pushed")
    process = await asyncio.create_subprocess_exec(
        *pattern_args(8),
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_segment_type",
        "fmp4",
        "-hls_list_size",
        "4",
        "-method",
        "PUT",
        "-headers",
        f"Authorization: Bearer {key}\r\n",
        f"{server.url}/ingest/pushed/source/index.m3u8",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        status = await wait_for(
            http, "/api/v1/channels/pushed/live", lambda b: b["state"] == "live"
        )
        master = parse_live((await http.get(status["master_url"])).text)
        text = await wait_for_segments(http, f"/hls/pushed/{master.playlists[0].uri}", 2)
        assert parse_live(text).segments[0].duration == pytest.approx(2.0, abs=0.1)
    finally:
        async with asyncio.timeout(20):
            await process.wait()
    refused = await http.put(
        "/ingest/pushed/source/seg-1.m4s",
        content=b"\x00" * 10,
        headers={"Authorization": "Bearer nope"},
    )
    assert refused.status_code == 401


async def test_two_channels_live_at_once(server: RunningServer, http: httpx.AsyncClient) -> None:
    """Two encoders on one RTMP port: two sessions, each with its own playable stream."""
    keys = [await make_channel(server, slug) for slug in ("left", "right")]
    async with publish(server, keys[0], 8), publish(server, keys[1], 8):
        for slug in ("left", "right"):
            status = await wait_for(
                http, f"/api/v1/channels/{slug}/live", lambda b: b["state"] == "live"
            )
            master = parse_live((await http.get(status["master_url"])).text)
            await wait_for_segments(http, f"/hls/{slug}/{master.playlists[0].uri}", 2)
    manager = server.runtime.live.manager
    assert len({s.id for s in manager.sessions()}) <= 2


async def test_private_channels_need_a_token_bound_to_them(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Without a token (or with another channel's) a private stream is 404; with it, it plays."""
    key = await make_channel(server, "secret", visibility="private")
    await make_channel(server, "other", visibility="private")
    core = server.core
    found = await get_channel(core.db, "secret")
    other = await get_channel(core.db, "other")
    good = tokens.issue(core.secret_key, f"channel:{found.id}")
    wrong = tokens.issue(core.secret_key, f"channel:{other.id}")
    expired = tokens.issue(core.secret_key, f"channel:{found.id}", ttl=-1)
    async with publish(server, key, 8):
        await wait_for(
            http, f"/api/v1/channels/secret/live?token={good}", lambda b: b["state"] == "live"
        )
        assert (await http.get("/hls/secret/master.m3u8")).status_code == 404
        assert (await http.get(f"/hls/secret/master.m3u8?token={wrong}")).status_code == 404
        assert (await http.get(f"/hls/secret/master.m3u8?token={expired}")).status_code == 404
        assert (await http.get("/api/v1/channels/secret/live")).status_code == 404
        master = await http.get(f"/hls/secret/master.m3u8?token={good}")
        assert master.status_code == 200
        variant = parse_live(master.text).playlists[0].uri
        assert f"?token={good}" in variant
        text = await wait_for_segments(http, f"/hls/secret/{variant}", 1)
        assert f"?token={good}" in text.split("#EXTINF")[1]


async def test_key_rotation_disconnects_the_publisher(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Rotating the key while live cuts the encoder off; the old key is refused afterwards."""
    key = await make_channel(server, "rotating", owner="rot-owner")
    owner = await accounts.get_account(server.core.db, "rot-owner")
    token = await accounts.create_api_token(server.core.db, owner.id, "t")
    async with publish(server, key, 30) as encoder:
        await wait_for(http, "/api/v1/channels/rotating/live", lambda b: b["state"] == "live")
        rotated = await http.post("/api/v1/channels/rotating/key", headers=bearer(token))
        assert rotated.status_code == 200
        async with asyncio.timeout(15):
            await encoder.wait()
    await wait_for(http, "/api/v1/channels/rotating/live", lambda b: b["state"] == "reconnecting")
    assert await _publish_once(server.runtime.ingest.rtmp.port, key) != 0
