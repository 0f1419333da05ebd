"""Chat fixtures: a live uvicorn on 127.0.0.1:0, socket clients, channels with their people.

Chat tests run on SQLite with the in-process bus always, and on PostgreSQL with the Redis bus
when both test URLs are set (PostgreSQL with the in-process bus, or SQLite with Redis, when
only one is).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from websockets.asyncio.client import ClientConnection, connect

from stagecast.auth.models import account
from stagecast.auth.service import create_api_token, get_account
from stagecast.channels import service as channels
from stagecast.chat.runtime import Chat
from stagecast.config import Settings
from stagecast.core import Core
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from tests.auth.test_api import bearer
from tests.conftest import PG_URL, REDIS_URL, make_settings, unique

VARIANTS = [("sqlite", "memory")]
if PG_URL:
    VARIANTS.append(("postgres", "redis" if REDIS_URL else "memory"))
elif REDIS_URL:
    VARIANTS.append(("sqlite", "redis"))

Frame = dict[str, Any]


@pytest.fixture(params=VARIANTS, ids=["-".join(v) for v in VARIANTS])
def variant(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each (database, bus) pair this run covers."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend(variant: tuple[str, str]) -> str:
    """The database of the current variant."""
    return variant[0]


@pytest.fixture
def chat_options() -> dict[str, Any]:
    """Chat settings a test module may override (e.g. a small send queue)."""
    return {}


@pytest.fixture
def settings(
    tmp_path: Path,
    variant: tuple[str, str],
    chat_options: dict[str, Any],
    request: pytest.FixtureRequest,
) -> Settings:
    """Settings of the current variant, with a Redis prefix of this test's own."""
    url = request.getfixturevalue("pg_url") if variant[0] == "postgres" else None
    extra: dict[str, Any] = {"chat_rate_limit": 1000, **chat_options}
    if variant[1] == "redis":
        extra.update(redis_url=REDIS_URL, redis_prefix=unique("test"))
    return make_settings(tmp_path / "data", url, **extra)


@dataclass
class Live:
    """A running server: its base URLs and the core behind it."""

    app: FastAPI
    http: str
    ws: str

    @property
    def core(self) -> Core:
        """Return the app's core."""
        return self.app.state.runtime.core  # type: ignore[no-any-return]

    @property
    def chat(self) -> Chat:
        """Return the chat component."""
        return self.app.state.runtime.chat  # type: ignore[no-any-return]

    def socket_url(self, slug: str, **query: object) -> str:
        """Return the chat socket URL of ``slug`` with ``query``."""
        url = f"{self.ws}/api/v1/channels/{slug}/chat/socket"
        pairs = [f"{k}={v}" for k, v in query.items() if v is not None]
        return url + ("?" + "&".join(pairs) if pairs else "")


@pytest.fixture
async def live(app: FastAPI) -> AsyncIterator[Live]:
    """The app served by a real uvicorn on 127.0.0.1 (port chosen by the OS)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        ws="websockets-sansio",
        log_level="warning",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Live(app, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")
    server.should_exit = True
    async with asyncio.timeout(15):
        await task


@pytest.fixture
async def http(live: Live) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the live server."""
    async with httpx.AsyncClient(base_url=live.http, timeout=10) as client:
        yield client


@dataclass
class Room:
    """A channel with an owner, a moderator and two viewers, and their API tokens."""

    slug: str
    channel_id: int
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        """Return the Authorization header of ``who``."""
        return bearer(self.tokens[who])


async def make_room(core: Core, *, visibility: str = "public", prefix: str = "") -> Room:
    """Create a channel owned by ``owner`` with moderator ``mod`` and viewers ``ann``, ``bob``."""
    names = {who: f"{prefix}{who}" for who in ("owner", "mod", "ann", "bob")}
    tokens = {
        "owner": await quick_user(core.db, names["owner"], "broadcaster"),
        "mod": await quick_user(core.db, names["mod"]),
        "ann": await quick_user(core.db, names["ann"]),
        "bob": await quick_user(core.db, names["bob"]),
    }
    owner = await get_account(core.db, names["owner"])
    slug = f"{prefix}room".replace("_", "-")
    created, _ = await channels.create_channel(core.db, owner, slug, visibility=visibility)
    await channels.set_moderator(
        core.db, created.id, names["mod"], channels.Grant(), granted_by=owner.id
    )
    return Room(slug, created.id, tokens)


async def quick_user(db: Database, name: str, role: str = "viewer") -> str:
    """Create an account that signs in by API token only (no password hashing); return it."""

    async def unit(conn: AsyncConnection) -> int:
        created = await conn.execute(
            insert(account)
            .values(username=name, password_hash="!", role=role, created_at=utcnow())
            .returning(account.c.id)
        )
        return int(created.scalar_one())

    account_id = await db.run(unit, kind=Kind.WRITE)
    return await create_api_token(db, account_id, "test")


@pytest.fixture
async def room(live: Live) -> Room:
    """A public channel with its people, on the live server."""
    return await make_room(live.core)


async def open_socket(
    url: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> ClientConnection:
    """Connect a chat socket (bounded in time)."""
    return await connect(url, additional_headers=headers, open_timeout=5, **kwargs)


async def next_frame(ws: ClientConnection, timeout: float = 5.0) -> Frame:
    """Return the next frame as a dict (fails the test after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        raw = await ws.recv()
    frame = json.loads(raw)
    assert isinstance(frame, dict)
    return frame


async def frame_where(
    ws: ClientConnection, match: Callable[[Frame], bool], timeout: float = 5.0
) -> Frame:
    """Return the first frame that ``match``es, skipping others (e.g. pings)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await next_frame(ws, timeout)
            if match(frame):
                return frame


async def hello(ws: ClientConnection) -> Frame:
    """Return the hello frame (the first one)."""
    frame = await next_frame(ws)
    assert frame["type"] == "hello", frame
    return frame


def of_type(kind: str) -> Callable[[Frame], bool]:
    """Match frames of type ``kind``."""
    return lambda frame: frame.get("type") == kind


async def close_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes the socket; return its close code."""
    async with asyncio.timeout(timeout):
        await ws.wait_closed()
    return ws.close_code
