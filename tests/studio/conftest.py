"""Fixtures of the studio tests: servers with fast timings, people with API tokens, SSE reading."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.auth.service import Account
from stagecast.channels import service as channels
from stagecast.channels.service import Channel
from stagecast.config import Settings
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.models import live_session
from tests.conftest import (
    PG_URL,
    REDIS_URL,
    RunningServer,
    make_settings,
    serve,
    unique,
)

BUSES = ["memory", *(["redis"] if REDIS_URL else [])]


def studio_settings(data_dir: Path, database_url: str | None = None, **extra: Any) -> Settings:
    """Settings with the studio's timings shortened for tests."""
    values: dict[str, Any] = {
        "metrics_feed_heartbeat_seconds": 1.0,
        "metrics_history_seconds": 1.0,
        "webhook_poll_seconds": 0.1,
        "webhook_retry_base_seconds": 0.2,
        "webhook_retry_cap_seconds": 1.0,
        "webhook_timeout_seconds": 2.0,
        "webhook_allow_private": True,
        "redis_prefix": unique("sc"),
    }
    values.update(extra)
    return make_settings(data_dir, database_url, **values)


def fullest_settings(tmp_path: Path, **extra: Any) -> Settings:
    """Settings on PostgreSQL and Redis when the run has them, else SQLite in-process."""
    return studio_settings(tmp_path / "data", PG_URL, redis_url=REDIS_URL, **extra)


@pytest.fixture(params=BUSES)
def bus_kind(request: pytest.FixtureRequest) -> str:
    """Each bus this run covers (Redis when STAGECAST_TEST_REDIS_URL is set)."""
    return str(request.param)


@pytest.fixture
async def server(tmp_path: Path, bus_kind: str) -> AsyncIterator[RunningServer]:
    """A running app on SQLite with the bus of ``bus_kind``."""
    redis_url = REDIS_URL if bus_kind == "redis" else None
    async with serve(studio_settings(tmp_path / "data", redis_url=redis_url)) as running:
        yield running


@pytest.fixture
async def db_server(tmp_path: Path, settings: Settings) -> AsyncIterator[RunningServer]:
    """A running app on each database back end this run covers (in-process bus)."""
    url = settings.database_url
    async with serve(studio_settings(tmp_path / "data", url)) as running:
        yield running


@dataclass(frozen=True)
class Person:
    """An account with an API token."""

    account: Account
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Return the Authorization header of this person."""
        return {"Authorization": f"Bearer {self.token}"}


async def person(db: Database, name: str | None = None, role: str = "broadcaster") -> Person:
    """Create an account with an API token."""
    account = await accounts.create_account(db, name or unique("u"), "password123", role)
    return Person(account, await accounts.create_api_token(db, account.id, "tests"))


async def owned_channel(
    db: Database, slug: str | None = None, *, visibility: str = "public"
) -> tuple[Person, Channel]:
    """Create an owner and a channel of theirs."""
    owner = await person(db)
    created, _ = await channels.create_channel(
        db, owner.account, slug or unique("c"), visibility=visibility
    )
    return owner, created


async def fake_session(db: Database, channel_id: int, state: str = "live") -> int:
    """Insert an active session row (no publisher behind it); return its id."""

    async def unit(conn: AsyncConnection) -> int:
        now = utcnow()
        result = await conn.execute(
            insert(live_session)
            .values(
                channel_id=channel_id,
                state=state,
                title="Show",
                profile="passthrough",
                key_version=1,
                owner_node="elsewhere:1",
                reconnects=0,
                created_at=now,
                started_at=now,
                last_media_at=now,
            )
            .returning(live_session.c.id)
        )
        return int(result.scalar_one())

    return await db.run(unit, kind=Kind.WRITE)


@dataclass
class Message:
    """One SSE item: an event with JSON data, or a comment."""

    event: str
    data: Any = None


class SseReader:
    """Read server-sent events from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_text()
        self._buffer = ""
        self.seen: list[Message] = []

    async def next(self, timeout: float = 10.0) -> Message:
        """Return the next event or comment (``event == "comment"``)."""
        async with asyncio.timeout(timeout):
            while "\n\n" not in self._buffer:
                self._buffer += await anext(self._chunks)
        block, self._buffer = self._buffer.split("\n\n", 1)
        message = _parse(block)
        self.seen.append(message)
        return message

    async def until(self, predicate: Callable[[Message], bool], timeout: float = 20.0) -> Message:
        """Read until ``predicate`` holds for a message; return it."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next(timeout)
                if predicate(message):
                    return message


def _parse(block: str) -> Message:
    event, data = "message", []
    for line in block.split("\n"):
        if line.startswith(":"):
            return Message("comment", line[1:].strip())
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "retry":
            return Message("retry", int(value))
    return Message(event, json.loads("\n".join(data)) if data else None)


@contextlib.asynccontextmanager
async def sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseReader]:
    """Open an event stream (asserting 200) and read it."""
    async with client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)
