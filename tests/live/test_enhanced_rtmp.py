"""Enhanced RTMP: OBS 30+ sends HEVC or AV1 with a FourCC in the video tag (ffmpeg does too).

A passthrough channel packages them as CMAF with their own CODECS; the ABR ladder refuses them
with a reason the studio shows.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import m3u8
import pytest

from tests.conftest import RunningServer, make_settings, serve
from tests.live.streaming import (
    first_variant,
    make_channel,
    parse_live,
    publish,
    wait_for,
    wait_for_segments,
)

pytestmark = pytest.mark.ffmpeg

_HEVC = ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=60")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """One server on the embedded database (the codec path does not depend on it)."""
    async with serve(make_settings(tmp_path / "data")) as running:
        yield running


async def test_hevc_over_enhanced_rtmp_plays_as_hls(server: RunningServer) -> None:
    key = await make_channel(server, "hevc")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with publish(server, key, 8, encoder=_HEVC):
            live = await wait_for(http, "/api/v1/channels/hevc/live", lambda s: s["live"], 30)
            master = parse_live((await http.get(live["master_url"])).text)
            variant = f"/hls/hevc/{await first_variant(http, live['master_url'])}"
            text = await wait_for_segments(http, variant, 1)
        codecs = master.playlists[0].stream_info.codecs
        assert codecs.startswith(("hvc1.", "hev1.")), codecs
        playlist = parse_live(text)
        folder = variant.rsplit("/", 1)[0]
        init = (await http.get(f"{folder}/{playlist.segment_map[0].uri}")).content
        media = (await http.get(f"{folder}/{playlist.segments[0].uri}")).content
    assert _decoded(init, media) == ("hevc", 60)


async def _master(http: httpx.AsyncClient, url: str) -> m3u8.M3U8:
    return parse_live((await http.get(url)).text)


def _decoded(init: bytes, media: bytes) -> tuple[str, int]:
    """Return the video codec and the number of frames PyAV decodes from one segment."""
    with av.open(io.BytesIO(init + media)) as container:
        name = container.streams.video[0].codec_context.name
        return name, len(list(container.decode(video=0)))


_AV1 = ("-c:v", "libsvtav1", "-preset", "12", "-g", "60", "-svtav1-params", "scd=0")


@pytest.mark.parametrize(("encoder", "fourcc", "decoder"), [(_AV1, "av01.", "libdav1d")])
async def test_av1_over_enhanced_rtmp_plays_as_hls(
    server: RunningServer, encoder: tuple[str, ...], fourcc: str, decoder: str
) -> None:
    key = await make_channel(server, "av1")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with publish(server, key, 8, encoder=encoder):
            live = await wait_for(http, "/api/v1/channels/av1/live", lambda s: s["live"], 30)
            master = parse_live((await http.get(live["master_url"])).text)
            variant = f"/hls/av1/{await first_variant(http, live['master_url'])}"
            text = await wait_for_segments(http, variant, 1)
        assert master.playlists[0].stream_info.codecs.startswith(fourcc)
        playlist = parse_live(text)
        folder = variant.rsplit("/", 1)[0]
        init = (await http.get(f"{folder}/{playlist.segment_map[0].uri}")).content
        media = (await http.get(f"{folder}/{playlist.segments[0].uri}")).content
    name, frames = _decoded(init, media)
    assert frames > 0
    assert "av1" in name or name == decoder


async def test_an_abr_channel_keeps_the_hevc_source_and_adds_h264_rungs(
    server: RunningServer,
) -> None:
    """The ladder copies the source as it came and encodes its smaller rungs with x264, so a
    browser without HEVC plays the rungs (players pick the variants whose CODECS they take)."""
    key = await make_channel(server, "hevc-abr", profile="abr")
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        publish(server, key, 10, size="1280x720", encoder=_HEVC),
    ):
        live = await wait_for(http, "/api/v1/channels/hevc-abr/live", lambda s: s["live"], 40)
        variant = f"/hls/hevc-abr/{await first_variant(http, live['master_url'])}"
        await wait_for_segments(http, variant, 1, 40)
        async with asyncio.timeout(30):  # each rung is listed once it has a segment
            while len((master := await _master(http, live["master_url"])).playlists) < 3:
                await asyncio.sleep(0.3)
    codecs = {p.stream_info.resolution[1]: p.stream_info.codecs for p in master.playlists}
    assert codecs[720].startswith(("hvc1.", "hev1."))
    assert sorted(codecs) == [360, 480, 720]
    assert codecs[360].startswith("avc1.")
    assert codecs[480].startswith("avc1.")
