"""Crash safety: SIGKILL the server mid-stream; after restart the recording becomes a VOD.

This runs the real ``stagecast`` command in a subprocess (so it can be killed without any
chance to clean up), the real ffmpeg as the encoder, and SQLite on disk as the embedded
default. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin

import av
import httpx
import m3u8
import pytest

from tests.live.streaming import pattern_args

STAGECAST = str(Path(sys.executable).with_name("stagecast"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data: Path, http_port: int, rtmp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECAST_")}
    env.update(
        STAGECAST_DATA_DIR=str(data),
        STAGECAST_PORT=str(http_port),
        STAGECAST_RTMP_PORT=str(rtmp_port),
        STAGECAST_RTMP_HOST="127.0.0.1",
        STAGECAST_SECRET_KEY="crash-test",
        STAGECAST_NODE_NAME="crash-node",
        STAGECAST_RECONNECT_GRACE_SECONDS="3",
        STAGECAST_VOD_POLL_SECONDS="0.5",
        STAGECAST_ADMIN_PASSWORD="password123",
        STAGECAST_LOG_LEVEL="warning",
    )
    return env


async def _cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        STAGECAST, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


async def _serve(env: dict[str, str], base: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        STAGECAST,
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with httpx.AsyncClient(base_url=base) as client, asyncio.timeout(60):
        while True:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, object]]:
    """Ports, environment and a place for processes to clean up."""
    http_port, rtmp_port = _free_port(), _free_port()
    env = _env(tmp_path / "data", http_port, rtmp_port)
    processes: list[asyncio.subprocess.Process] = []
    yield {
        "env": env,
        "base": f"http://127.0.0.1:{http_port}",
        "rtmp": rtmp_port,
        "procs": processes,
    }
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _archived_rows(data: Path) -> list[int]:
    with sqlite3.connect(data / "stagecast.db") as conn:
        return [r[0] for r in conn.execute("SELECT sequence FROM segment ORDER BY sequence")]


async def test_sigkill_mid_stream_leaves_a_vod_from_the_first_second(
    stack: dict[str, object], tmp_path: Path
) -> None:
    """Kill -9 while live; on restart the session is reconciled and becomes a whole VOD."""
    env: dict[str, str] = stack["env"]  # type: ignore[assignment]
    base: str = stack["base"]  # type: ignore[assignment]
    procs: list[asyncio.subprocess.Process] = stack["procs"]  # type: ignore[assignment]
    await _cli(env, "user", "create", "caster", "--password", "password123")
    key = (await _cli(env, "channel", "create", "crashy", "--owner", "caster")).split(": ", 1)[1]
    token = await _cli(env, "token", "create", "caster")
    server = await _serve(env, base)
    procs.append(server)
    encoder = await asyncio.create_subprocess_exec(
        *pattern_args(60),
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{stack['rtmp']}/live/{key}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    procs.append(encoder)
    data = tmp_path / "data"
    async with asyncio.timeout(40):
        while len(_archived_rows(data)) < 4:
            await asyncio.sleep(0.2)
    server.send_signal(signal.SIGKILL)
    await server.wait()
    archived = _archived_rows(data)
    files = sorted((data / "media").glob("*/*/source/seg-*.m4s"))
    assert archived == list(range(len(archived)))  # the archive starts at the first segment
    assert len(archived) >= len(files) - 1  # at most the segment in flight has no row
    async with asyncio.timeout(20):
        await encoder.wait()  # the encoder lost its server

    procs.append(await _serve(env, base))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        async with asyncio.timeout(60):
            while True:
                items = (await client.get("/api/v1/studio/vods")).json()["items"]
                if items and items[0]["status"] == "ready":
                    break
                await asyncio.sleep(0.3)
        vod_id = items[0]["id"]
        master = m3u8.loads((await client.get(f"/hls/vods/{vod_id}/master.m3u8")).text)
        playlist_url = urljoin(f"/hls/vods/{vod_id}/master.m3u8", master.playlists[0].uri)
        playlist = m3u8.loads((await client.get(playlist_url)).text)
        assert playlist.is_endlist
        assert playlist.playlist_type.lower() == "vod"
        assert len(playlist.segments) == len(archived)
        assert abs(playlist.segments[0].duration - 2.0) < 0.2  # from the first second on
        init = (await client.get(urljoin(playlist_url, playlist.segment_map[0].uri))).content
        for segment in (playlist.segments[0], playlist.segments[-1]):
            got = await client.get(urljoin(playlist_url, segment.uri))
            assert got.status_code == 200
            frames = list(av.open(io.BytesIO(init + got.content)).decode(video=0))
            assert abs(len(frames) - segment.duration * 30) <= 2
