"""``stagecast serve --workers 2``: one port, two processes, one live stream seen the same.

Runs the real command (PostgreSQL + Redis, which the workers need), the real ffmpeg over RTMP,
and many fresh connections, which the kernel hands to either worker: every answer must be
right whichever worker took it (the second serves the live edge the first shares over Redis).
Without PostgreSQL the command refuses, with one line.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import m3u8

from tests.conftest import REDIS_URL, needs_postgres, needs_redis
from tests.integration.test_crash_recovery import STAGECAST, _cli, _env, _free_port
from tests.live.streaming import pattern_args

_PART = re.compile(r'URI="(part-\d+\.m4s)"')


async def _ready(base: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=base) as client, asyncio.timeout(60):
        while True:
            assert process.returncode is None, "stagecast serve --workers exited"
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def _listening(port: int, process: asyncio.subprocess.Process) -> None:
    """Wait until the RTMP port takes connections."""
    async with asyncio.timeout(60):
        while True:
            assert process.returncode is None, "stagecast serve --workers exited"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def _fresh(base: str, url: str, **params: str | int) -> httpx.Response:
    """GET on a new connection (so either worker may take it)."""
    async with httpx.AsyncClient(base_url=base, timeout=15) as client:
        return await client.get(url, params=params or None)


@needs_postgres
@needs_redis
async def test_two_workers_serve_one_live_stream(tmp_path: Path, database: str) -> None:
    """Master, playlists, blocking reloads, parts, segments and the API answer right on every
    connection, and the pool stops cleanly on SIGTERM."""
    http_port, rtmp_port = _free_port(), _free_port()
    env = _env(tmp_path / "data", http_port, rtmp_port)
    assert REDIS_URL
    env.update(
        STAGECAST_DATABASE_URL=database,
        STAGECAST_REDIS_URL=REDIS_URL,
        STAGECAST_REDIS_PREFIX=f"workers-{uuid.uuid4().hex[:8]}",  # nothing of other runs
    )
    base = f"http://127.0.0.1:{http_port}"
    await _cli(env, "user", "create", "caster", "--password", "password123")
    key = (await _cli(env, "channel", "create", "pool", "--owner", "caster")).split(": ", 1)[1]
    server = await asyncio.create_subprocess_exec(
        STAGECAST, "serve", "--workers", "2", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    encoder = None
    try:
        await _ready(base, server)
        # /readyz may come from worker 1 before worker 0 listens for encoders.
        await _listening(rtmp_port, server)
        encoder = await asyncio.create_subprocess_exec(
            *pattern_args(40),
            "-f",
            "flv",
            f"rtmp://127.0.0.1:{rtmp_port}/live/{key}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(40):
            while True:
                status = (await _fresh(base, "/api/v1/channels/pool/live")).json()
                if status["live"]:
                    break
                await asyncio.sleep(0.2)
        variant = ""
        for _ in range(6):
            master = await _fresh(base, status["master_url"])
            assert master.status_code == 200
            variant = m3u8.loads(master.text).playlists[0].uri
        media_url = f"/hls/pool/{variant.split('?')[0]}"
        folder = media_url.rsplit("/", 1)[0]
        for _ in range(6):
            playlist = await _fresh(base, media_url)
            assert playlist.status_code == 200
            assert "#EXT-X-PART-INF" in playlist.text  # the primary's live playlist, with parts
            parsed = m3u8.loads(playlist.text)
            listed = [s for s in parsed.segments if s.uri]
            open_parts = len(parsed.segments[-1].parts) if not parsed.segments[-1].uri else 0
            edge = parsed.media_sequence + len(listed)
            held = await _fresh(base, media_url, _HLS_msn=edge, _HLS_part=open_parts)
            assert held.status_code == 200
            part = _PART.findall(held.text)[-1]
            got = await _fresh(base, f"{folder}/{part}")
            assert got.status_code == 200
            assert got.content[4:8] == b"moof"
            segment = await _fresh(base, f"{folder}/{listed[-1].uri}")
            assert segment.status_code == 200
            assert segment.content[4:8] in (b"moof", b"styp")
        assert (await _fresh(base, media_url, _HLS_part=1)).status_code == 400
    finally:
        if encoder is not None and encoder.returncode is None:
            encoder.kill()
            await encoder.wait()
        if server.returncode is None:
            server.terminate()
        async with asyncio.timeout(30):
            code = await server.wait()
    assert code == 0  # SIGTERM stops both workers and the parent cleanly


async def test_workers_need_postgresql(tmp_path: Path) -> None:
    """On the embedded SQLite, ``--workers 2`` refuses with one line and a non-zero exit."""
    env = _env(tmp_path / "data", _free_port(), _free_port())
    process = await asyncio.create_subprocess_exec(
        STAGECAST,
        "serve",
        "--workers",
        "2",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    assert "--workers needs PostgreSQL" in err.decode()
