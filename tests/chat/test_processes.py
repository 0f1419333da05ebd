"""Three ``stagecast serve`` processes on PostgreSQL + Redis: every client gets every message
exactly once and in the same order, whichever process it is on; bans hold everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stagecast.auth.service import get_account
from stagecast.channels import service as channels
from stagecast.db import open_database
from tests.chat.conftest import (
    Frame,
    close_code,
    frame_where,
    hello,
    next_frame,
    of_type,
    open_socket,
    quick_user,
)
from tests.conftest import (
    REDIS_URL,
    make_settings,
    needs_postgres,
    needs_redis,
    truncate_all,
    unique,
)

pytestmark = [needs_postgres, needs_redis]
STAGECAST = str(Path(sys.executable).parent / "stagecast")
PROCESSES = 3
PER_PROCESS = 4


def free_port() -> int:
    """Return a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(base: str, proc: asyncio.subprocess.Process) -> None:
    """Poll /readyz until it answers 200 (30 s at most)."""
    async with httpx.AsyncClient(base_url=base, timeout=1) as client, asyncio.timeout(30):
        while True:
            assert proc.returncode is None, "stagecast serve exited"
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[list[str], dict[str, str]]]:
    """Three servers sharing the session's PostgreSQL database and Redis; yields their base
    URLs and the API tokens of an owner, a moderator and two viewers of channel ``room``."""
    db = open_database(make_settings(tmp_path, pg_url))
    await truncate_all(db)
    names = ("owner", "mod", "ann", "bob")
    tokens = {
        n: await quick_user(db, n, "broadcaster" if n == "owner" else "viewer") for n in names
    }
    owner = await get_account(db, "owner")
    room, _ = await channels.create_channel(db, owner, "room")
    await channels.set_moderator(db, room.id, "mod", channels.Grant(), owner.id)
    await db.dispose()
    prefix = unique("procs")
    procs, bases = [], []
    for i in range(PROCESSES):
        port = free_port()
        env = {
            **os.environ,
            "STAGECAST_DATABASE_URL": pg_url,
            "STAGECAST_REDIS_URL": str(REDIS_URL),
            "STAGECAST_REDIS_PREFIX": prefix,
            "STAGECAST_HOST": "127.0.0.1",
            "STAGECAST_PORT": str(port),
            "STAGECAST_RTMP_PORT": "0",
            "STAGECAST_RTMP_HOST": "127.0.0.1",
            "STAGECAST_DATA_DIR": str(tmp_path / f"node{i}"),
            "STAGECAST_SECRET_KEY": "test-secret-key",
            "STAGECAST_REGISTRATION": "open",
            "STAGECAST_ADMIN_PASSWORD": "admin-password-123",
            "STAGECAST_LOG_LEVEL": "warning",
        }
        procs.append(
            await asyncio.create_subprocess_exec(
                STAGECAST, "serve", env=env, stdout=asyncio.subprocess.DEVNULL
            )
        )
        bases.append(f"127.0.0.1:{port}")
    try:
        await asyncio.gather(
            *(wait_ready(f"http://{b}", p) for b, p in zip(bases, procs, strict=True))
        )
        yield bases, tokens
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def url(base: str, **query: object) -> str:
    """Return the chat socket URL of channel ``room`` on ``base``."""
    tail = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://{base}/api/v1/channels/room/chat/socket" + (f"?{tail}" if tail else "")


async def test_every_message_reaches_every_client_once_in_order(
    cluster: tuple[list[str], dict[str, str]],
) -> None:
    """Posts on any process reach all clients on all processes, exactly once, same id order."""
    bases, tokens = cluster
    clients = []
    for base in bases:
        for who in ("ann", "bob", None):
            headers = {"Authorization": f"Bearer {tokens[who]}"} if who else None
            ws = await open_socket(url(base), headers)
            await hello(ws)
            clients.append(ws)
    posters = clients[::3]  # ann's socket on each process
    posts = [
        poster.send(json.dumps({"type": "post", "body": f"p{p}-{i}", "nonce": f"p{p}-{i}"}))
        for i in range(PER_PROCESS)
        for p, poster in enumerate(posters)
    ]
    await asyncio.gather(*posts)
    total = PROCESSES * PER_PROCESS
    seen = []
    for ws in clients:
        got = [await frame_where(ws, of_type("message"), timeout=10) for _ in range(total)]
        seen.append([(f["id"], f["body"]) for f in got])
        assert [f["id"] for f in got] == list(range(1, total + 1))
    assert all(s == seen[0] for s in seen)
    assert sorted(body for _, body in seen[0]) == sorted(
        f"p{p}-{i}" for p in range(PROCESSES) for i in range(PER_PROCESS)
    )
    for ws in clients:
        await ws.close()


async def test_a_ban_on_one_process_holds_on_every_process(
    cluster: tuple[list[str], dict[str, str]],
) -> None:
    """Banning on process 0 closes the user's socket on process 2 and refuses posts on process 1."""
    bases, tokens = cluster
    ann = {"Authorization": f"Bearer {tokens['ann']}"}
    victim = await open_socket(url(bases[2]), ann)
    await hello(victim)
    async with httpx.AsyncClient(timeout=5) as client:
        posted = await client.post(
            f"http://{bases[1]}/api/v1/channels/room/chat/messages",
            json={"body": "hi"},
            headers=ann,
        )
        assert posted.status_code == 201
        banned = await client.put(
            f"http://{bases[0]}/api/v1/channels/room/chat/bans/ann",
            json={"reason": "test"},
            headers={"Authorization": f"Bearer {tokens['mod']}"},
        )
        assert banned.status_code == 200
        assert await close_code(victim, timeout=10) == 4403
        # Process 1 cached "not banned" when ann posted; the announcement reaches it within ms.
        async with asyncio.timeout(5):
            while True:
                refused = await client.post(
                    f"http://{bases[1]}/api/v1/channels/room/chat/messages",
                    json={"body": "still here?"},
                    headers=ann,
                )
                if refused.status_code == 403:
                    break
                await asyncio.sleep(0.05)
        assert refused.json()["error"]["code"] == "banned"


async def join_as(base: str, token: str) -> tuple[Frame | None, int | None]:
    """Join on ``base``; return the hello (None if refused) and the close code if refused."""
    ws = await open_socket(url(base), {"Authorization": f"Bearer {token}"})
    first = await next_frame(ws)
    if first["type"] == "hello":
        await ws.close()
        return first, None
    return None, await close_code(ws)


async def test_a_ban_and_a_moderator_change_reach_the_cached_joins_of_other_processes(
    cluster: tuple[list[str], dict[str, str]],
) -> None:
    """Process 1 has bob's and the moderator's standing cached; a ban and a removal made on
    process 0 apply to its next joins within moments, not when its 30 s cache expires."""
    bases, tokens = cluster
    seen, _ = await join_as(bases[1], tokens["bob"])
    assert seen is not None
    seen, _ = await join_as(bases[1], tokens["mod"])
    assert seen is not None
    assert seen["moderator"] is not None
    owner = {"Authorization": f"Bearer {tokens['owner']}"}
    async with httpx.AsyncClient(base_url=f"http://{bases[0]}", timeout=5) as client:
        banned = await client.put("/api/v1/channels/room/chat/bans/bob", json={}, headers=owner)
        assert banned.status_code == 200
        removed = await client.delete("/api/v1/channels/room/moderators/mod", headers=owner)
        assert removed.status_code == 204
    async with asyncio.timeout(5):  # Redis delivers in milliseconds
        while (await join_as(bases[1], tokens["bob"]))[1] != 4403:
            pass
        while (seen := (await join_as(bases[1], tokens["mod"]))[0]) and seen["moderator"]:
            pass
