"""Clean shutdown: Ctrl-C on ``stagecast serve`` with a dashboard, a chat socket and an encoder.

The real ``stagecast`` command in a subprocess, the real ffmpeg publishing over RTMP, SQLite on
disk. SIGINT must end the studio's event stream with a complete response, close the chat socket
with its close frame, disconnect the encoder, and exit 0 within two seconds, logging no error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.typing import Origin

from tests.live.streaming import pattern_args

pytestmark = pytest.mark.ffmpeg

STAGECAST = str(Path(sys.executable).with_name("stagecast"))
PASSWORD = "password123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        STAGECAST, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30.0) -> None:
    """Poll the async ``check`` until it is true, or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _close_frame(chat: websockets.ClientConnection) -> int | None:
    """Read the socket until it closes; return the code of the close frame it got."""
    try:
        while True:
            await chat.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Subprocesses killed after the test if they are still running."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_ctrl_c_closes_feeds_sockets_and_the_encoder_promptly(
    tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    """SIGINT with an open studio feed, a chat socket and an encoder: exit 0 within 2 s, clean."""
    http_port, rtmp_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECAST_")}
    env.update(
        STAGECAST_DATA_DIR=str(tmp_path / "data"),
        STAGECAST_PORT=str(http_port),
        STAGECAST_RTMP_PORT=str(rtmp_port),
        STAGECAST_RTMP_HOST="127.0.0.1",
        STAGECAST_SECRET_KEY="shutdown-test",
        STAGECAST_ADMIN_PASSWORD=PASSWORD,
        STAGECAST_LOG_LEVEL="info",
    )
    await _cli(env, "user", "create", "caster", "--password", PASSWORD)
    key = (await _cli(env, "channel", "create", "show", "--owner", "caster")).split(": ", 1)[1]
    token = await _cli(env, "token", "create", "caster")
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        server = await asyncio.create_subprocess_exec(
            STAGECAST, "serve", env=env, stdout=log_file, stderr=asyncio.subprocess.STDOUT
        )
    processes.append(server)
    base = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await _until(ready, "the server")
        encoder = await asyncio.create_subprocess_exec(
            *pattern_args(120),
            "-f",
            "flv",
            f"rtmp://127.0.0.1:{rtmp_port}/live/{key}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        processes.append(encoder)

        async def live() -> bool:
            state = (await client.get("/api/v1/channels/show/live")).json().get("state")
            return bool(state == "live")

        await _until(live, "the stream to go live")
        chat = await websockets.connect(
            f"ws://127.0.0.1:{http_port}/api/v1/channels/show/chat/socket", origin=Origin(base)
        )
        assert '"hello"' in str(await asyncio.wait_for(chat.recv(), 10))
        async with client.stream("GET", "/api/v1/studio/channels/show/events") as feed:
            chunks = feed.aiter_text()
            assert "retry" in await anext(chunks)
            started = time.monotonic()
            server.send_signal(signal.SIGINT)
            async with asyncio.timeout(3):
                rest = [chunk async for chunk in chunks]  # ends without a read error
            feed_ended = time.monotonic() - started
        async with asyncio.timeout(3):
            close = await _close_frame(chat)
        async with asyncio.timeout(5):
            code = await server.wait()
        exited = time.monotonic() - started
        async with asyncio.timeout(5):
            await encoder.wait()
    output = log_path.read_text()
    assert code == 0, output
    assert exited < 2.0, f"took {exited:.2f} s\n{output}"
    assert feed_ended < 1.0
    assert all("Traceback" not in chunk for chunk in rest)
    assert close == 1012  # service restart: the page's chat reconnects later
    assert "ERROR" not in output, output
    assert "Traceback" not in output, output
    assert "publisher closed: server closing" in output
