"""A node whose media lives in an S3 bucket (a real S3-API server: moto, an emulator).

Real ffmpeg publishes over RTMP; viewers get live HLS from the node's memory while the bucket
fills behind it; the VOD is built from, and served from, the bucket.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import av
import httpx
import m3u8
import pytest

from stagecast.auth import service as accounts
from stagecast.config import Settings
from tests.auth.test_api import bearer
from tests.conftest import RunningServer, make_settings, serve
from tests.live.streaming import (
    first_variant,
    make_channel,
    parse_live,
    publish,
    vod_playlist,
    wait_for,
    wait_for_ready_vod,
    wait_for_segments,
)
from tests.s3 import S3Server

pytestmark = pytest.mark.ffmpeg


def _frames(init: bytes, media: bytes) -> int:
    with av.open(io.BytesIO(init + media)) as container:
        return len(list(container.decode(video=0)))


def _bucket_settings(data: Path, server: S3Server, bucket: str) -> Settings:
    """A node on the embedded database with its media in ``bucket`` (the storage does not
    depend on the database: one back end is enough here)."""
    return make_settings(
        data,
        reconnect_grace_seconds=2.0,
        live_window_segments=4,
        vod_poll_seconds=0.2,
        vod_retry_base_seconds=0.5,
        vod_retry_cap_seconds=2.0,
        vod_job_attempts=20,
        vod_purge_delay_seconds=0,
        **server.settings(bucket),
    )


async def _owner_token(server: RunningServer, username: str) -> str:
    owner = await accounts.get_account(server.core.db, username)
    return await accounts.create_api_token(server.core.db, owner.id, "t")


async def _vod_media(http: httpx.AsyncClient, vod_id: int) -> tuple[list[float], int]:
    """Fetch every segment of a VOD's first rendition; return durations and frames decoded."""
    playlist = await vod_playlist(http, vod_id)
    base = f"/hls/vods/{vod_id}/{(await _rendition(http, vod_id))}"
    init = (await http.get(f"{base}/{playlist.segment_map[0].uri}")).content
    frames = 0
    for seg in playlist.segments:
        got = await http.get(f"{base}/{seg.uri}")
        assert got.status_code == 200, got.text
        frames += _frames(init, got.content)
    return [s.duration for s in playlist.segments], frames


async def _rendition(http: httpx.AsyncClient, vod_id: int) -> str:
    master = parse_live((await http.get(f"/hls/vods/{vod_id}/master.m3u8")).text)
    return str(master.playlists[0].uri).split("/", 1)[0]


async def test_a_stream_goes_to_the_bucket_and_its_vod_plays_from_there(
    tmp_path: Path, s3: S3Server
) -> None:
    bucket = s3.bucket()
    settings = _bucket_settings(tmp_path / "data", s3, bucket)
    async with serve(settings) as server:
        key = await make_channel(server, "bucketed", owner="b-owner")
        token = await _owner_token(server, "b-owner")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            async with publish(server, key, 8) as encoder:
                live = await wait_for(
                    http, "/api/v1/channels/bucketed/live", lambda b: b["master_url"], 30
                )
                variant = f"/hls/bucketed/{await first_variant(http, live['master_url'])}"
                text = await wait_for_segments(http, variant, 2)
                newest = parse_live(text).segments[-1].uri
                assert (await http.get(variant.rsplit("/", 1)[0] + f"/{newest}")).status_code == 200
                await encoder.wait()
            vod_id = await wait_for_ready_vod(http, token)
            durations, frames = await _vod_media(http, vod_id)
            thumbnail = await http.get(f"/hls/vods/{vod_id}/thumbnail.jpg")
            assert sum(durations) == pytest.approx(8, abs=1.5)
            assert frames == pytest.approx(30 * sum(durations), abs=3)
            assert thumbnail.status_code == 200
            assert thumbnail.content[:2] == b"\xff\xd8"
            session = str(live["session_id"])
            keys = [k for k in s3.keys(bucket, "media/") if k.split("/")[2] == session]
            assert sum(k.endswith(".m4s") for k in keys) == len(durations)
            assert any(k.endswith("/vod-master.m3u8") for k in keys)
            # Nothing of it is kept on the node's disk.
            assert not (Path(settings.data_dir) / "media").exists()
            assert not any(p.is_file() for p in (Path(settings.data_dir) / "spool").rglob("*"))
            await _media_base_url(http, server, s3, bucket, vod_id, token)
            # Deleting the VOD purges its objects (after the purge delay, 0 here).
            deleted = await http.delete(f"/api/v1/studio/vods/{vod_id}", headers=bearer(token))
            assert deleted.status_code == 204
            async with asyncio.timeout(30):
                while any(k.split("/")[2] == session for k in s3.keys(bucket, "media/")):
                    await asyncio.sleep(0.2)


async def test_a_storage_outage_mid_stream_loses_nothing(tmp_path: Path, own_s3: S3Server) -> None:
    """The bucket stops answering for 20 s mid-stream: the live edge goes on from memory, the
    spool reports its backlog on /metrics, and the VOD holds every segment once it is back."""
    bucket = own_s3.bucket()
    settings = _bucket_settings(tmp_path / "data", own_s3, bucket)
    async with serve(settings) as server:
        key = await make_channel(server, "outage", owner="o-owner")
        token = await _owner_token(server, "o-owner")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            async with publish(server, key, 30) as encoder:
                live = await wait_for(
                    http, "/api/v1/channels/outage/live", lambda b: b["master_url"], 30
                )
                variant = f"/hls/outage/{await first_variant(http, live['master_url'])}"
                before = parse_live(await wait_for_segments(http, variant, 2))
                own_s3.pause()
                try:
                    # Segments keep coming and playing while the bucket is away (20 s).
                    during = await _until_sequence(http, variant, _next(before) + 10)
                    base = variant.rsplit("/", 1)[0]
                    init = (await http.get(f"{base}/{during.segment_map[0].uri}")).content
                    newest = await http.get(f"{base}/{during.segments[-1].uri}")
                    assert _frames(init, newest.content) > 0
                    metrics = (await http.get("/metrics")).text
                    assert _metric(metrics, "stagecast_storage_spool_files") >= 4
                    assert _metric(metrics, "stagecast_storage_spool_oldest_seconds") > 0
                finally:
                    own_s3.resume()
                await encoder.wait()
            vod_id = await wait_for_ready_vod(http, token)
            durations, frames = await _vod_media(http, vod_id)
    assert sum(durations) == pytest.approx(30, abs=2.5)
    assert frames == pytest.approx(30 * sum(durations), abs=3)


async def _media_base_url(
    http: httpx.AsyncClient,
    server: RunningServer,
    s3: S3Server,
    bucket: str,
    vod_id: int,
    token: str,
) -> None:
    """With STAGECAST_MEDIA_BASE_URL, a public VOD's media URIs name the objects under it, and a
    private VOD's are presigned URLs that open without any other credential."""
    base = f"{s3.url}/{bucket}"
    server.runtime.vod.lookups.media_base_url = base  # as the setting would have made it
    rendition = await _rendition(http, vod_id)
    url = f"/hls/vods/{vod_id}/{rendition}/vod.m3u8"
    public = m3u8.loads((await http.get(url)).text)
    for uri in (public.segment_map[0].uri, public.segments[0].uri):
        assert uri.startswith(f"{base}/media/")
        assert s3.get(bucket, uri.removeprefix(f"{base}/")) is not None  # that object exists
    changed = await http.patch(
        f"/api/v1/studio/vods/{vod_id}", json={"visibility": "private"}, headers=bearer(token)
    )
    assert changed.status_code == 200
    async with asyncio.timeout(10):  # the change reaches the lookups over the bus
        while (await http.get(url)).status_code != 404:
            await asyncio.sleep(0.1)
    private = await http.get(url, headers=bearer(token))
    assert private.status_code == 200
    signed = m3u8.loads(private.text)
    assert "X-Amz-Signature=" in signed.segments[0].uri
    assert "token=" not in private.text
    async with httpx.AsyncClient() as anyone:
        media = await anyone.get(signed.segments[0].uri)
    assert media.status_code == 200
    assert media.content == s3.get(bucket, public.segments[0].uri.removeprefix(f"{base}/"))


def _next(playlist: m3u8.M3U8) -> int:
    """Return the sequence number after the playlist's newest segment."""
    return int(playlist.media_sequence or 0) + len(playlist.segments)


async def _until_sequence(http: httpx.AsyncClient, url: str, target: int) -> m3u8.M3U8:
    """Poll a live playlist until it has listed segment ``target - 1``."""
    async with asyncio.timeout(60):
        while True:
            playlist = parse_live((await http.get(url)).text)
            if _next(playlist) >= target:
                return playlist
            await asyncio.sleep(0.3)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")
