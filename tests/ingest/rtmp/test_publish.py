"""Publishing with the real ffmpeg: complete streams, refusals, kicks and shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stagecast.ingest.rtmp import RtmpServer
from stagecast.live.flv import AUDIO as TAG_AUDIO
from stagecast.live.flv import VIDEO as TAG_VIDEO
from tests.ingest.rtmp.media import FPS, HEVC, decode, finished, publishing
from tests.ingest.rtmp.recording import Recording, RecordingHandler

pytestmark = pytest.mark.ffmpeg

SECONDS = 4


async def until_idle(server: RtmpServer, timeout: float = 5.0) -> None:
    """Wait until the server has no open connection (its tasks have finished)."""
    async with asyncio.timeout(timeout):
        while server.connection_count:
            await asyncio.sleep(0.01)


async def assert_complete(recording: Recording, path: Path, size: tuple[int, int]) -> None:
    """Check that ``recording`` holds the whole test pattern, decodable at ``size``."""
    await asyncio.to_thread(path.write_bytes, recording.flv())
    decoded = await decode(path)
    assert (decoded.codec, decoded.width, decoded.height) == ("h264", *size)
    assert abs(decoded.video_frames - SECONDS * FPS) <= 3, decoded
    assert abs(decoded.audio_seconds - SECONDS) < 0.2, decoded
    for kind in (TAG_AUDIO, TAG_VIDEO):
        stamps = [stamp for tag, stamp, _ in recording.media if tag == kind]
        assert stamps == sorted(stamps), f"tag type {kind} arrived out of order"
    last_video = max(stamp for kind, stamp, _ in recording.media if kind == TAG_VIDEO)
    assert abs(last_video - (SECONDS * 1000 - 1000 // FPS)) < 100
    assert recording.metadata
    assert recording.metadata[0]["width"] == size[0]


async def test_ffmpeg_publish_delivers_a_decodable_stream(
    server: RtmpServer, handler: RecordingHandler, tmp_path: Path
) -> None:
    """A 4 s ffmpeg publish arrives whole: app, exact key, metadata, every frame, one close."""
    url = f"rtmp://127.0.0.1:{server.port}/live/THEKEY"
    async with publishing(url, seconds=SECONDS) as ffmpeg:
        code, stderr = await finished(ffmpeg, timeout=30)
    assert code == 0, stderr
    recording = await handler.recording("THEKEY", timeout=1)
    async with asyncio.timeout(5):
        await recording.closed.wait()
    await until_idle(server)
    assert (recording.app, recording.key) == ("live", "THEKEY")
    assert recording.closes == ["unpublished (FCUnpublish)"]
    await assert_complete(recording, tmp_path / "out.flv", (640, 360))


async def test_enhanced_rtmp_hevc_passes_through(
    server: RtmpServer, handler: RecordingHandler, tmp_path: Path
) -> None:
    """HEVC in Enhanced RTMP (FourCC video headers) reaches the FLV unchanged and decodes."""
    url = f"rtmp://127.0.0.1:{server.port}/live/hevc"
    async with publishing(url, seconds=2, size="320x240", video=HEVC, audio=False) as ffmpeg:
        code, stderr = await finished(ffmpeg, timeout=30)
    assert code == 0, stderr
    recording = await handler.recording("hevc", timeout=1)
    async with asyncio.timeout(5):
        await recording.closed.wait()
    assert recording.media[0][2][:5] == b"\x90hvc1"  # IsExHeader, keyframe, SequenceStart; FourCC
    path = tmp_path / "hevc.flv"
    await asyncio.to_thread(path.write_bytes, recording.flv())
    decoded = await decode(path, audio=False)
    assert (decoded.codec, decoded.width, decoded.height) == ("hevc", 320, 240)
    assert abs(decoded.video_frames - 2 * FPS) <= 3, decoded


async def test_refused_key_stops_ffmpeg_and_delivers_nothing(
    server: RtmpServer, handler: RecordingHandler
) -> None:
    """ffmpeg publishing a refused key gets the error status, exits non-zero at once."""
    started = time.monotonic()
    url = f"rtmp://127.0.0.1:{server.port}/live/wrong-key"
    async with publishing(url, seconds=SECONDS) as ffmpeg:
        code, stderr = await finished(ffmpeg, timeout=10)
    assert code != 0
    assert "invalid stream key" in stderr  # ffmpeg prints the status description it received
    assert time.monotonic() - started < SECONDS
    assert handler.attempts == [("live", "wrong-key")]
    assert handler.recordings == []
    await until_idle(server)


async def test_two_publishers_at_once_both_deliver_whole_streams(
    server: RtmpServer, handler: RecordingHandler, tmp_path: Path
) -> None:
    """Two keys published at the same time each arrive complete, at their own size."""
    sizes = {"first": (320, 240), "second": (352, 288)}

    async def run(key: str) -> int:
        width, height = sizes[key]
        url = f"rtmp://127.0.0.1:{server.port}/live/{key}"
        async with publishing(url, seconds=SECONDS, size=f"{width}x{height}") as ffmpeg:
            code, stderr = await finished(ffmpeg, timeout=30)
        assert code == 0, stderr
        return code

    await asyncio.gather(run("first"), run("second"))
    for key, size in sizes.items():
        recording = await handler.recording(key, timeout=1)
        async with asyncio.timeout(5):
            await recording.closed.wait()
        assert len(recording.closes) == 1
        await assert_complete(recording, tmp_path / f"{key}.flv", size)


async def test_disconnect_from_the_handler_stops_that_publisher(
    server: RtmpServer, handler: RecordingHandler
) -> None:
    """PublisherControl.disconnect mid-stream ends ffmpeg and calls on_close once, last."""
    url = f"rtmp://127.0.0.1:{server.port}/live/kicked"
    async with publishing(url, seconds=30) as ffmpeg:
        recording = await handler.recording("kicked", timeout=10)
        await recording.wait_for_video(15, timeout=10)
        assert recording.control.peer.startswith("127.0.0.1:")
        await recording.control.disconnect("kicked by test")
        delivered = len(recording.media)
        code, _ = await finished(ffmpeg, timeout=10)
    assert code != 0
    async with asyncio.timeout(5):
        await recording.closed.wait()
    await until_idle(server)
    assert recording.closes == ["kicked by test"]
    assert len(recording.media) == delivered, "media delivered after disconnect returned"


async def test_close_with_a_live_publisher_returns_promptly(
    server: RtmpServer, handler: RecordingHandler
) -> None:
    """server.close() during a publish calls on_close once and returns within a second."""
    url = f"rtmp://127.0.0.1:{server.port}/live/live-at-close"
    async with publishing(url, seconds=30) as ffmpeg:
        recording = await handler.recording("live-at-close", timeout=10)
        await recording.wait_for_video(5, timeout=10)
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 1.0
        assert recording.closes == ["server closing"]
        assert server.connection_count == 0
        code, _ = await finished(ffmpeg, timeout=10)
    assert code != 0
    assert any(kind == TAG_AUDIO for kind, _, _ in recording.media)
