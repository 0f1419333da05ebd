"""Shared fixtures: settings per back end, a migrated database, a running app.

PostgreSQL and Redis variants run whenever STAGECAST_TEST_DATABASE_URL /
STAGECAST_TEST_REDIS_URL are set (CI sets both), and fail loudly if they cannot connect.
Without them the SQLite / in-process variants run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.app import create_app
from stagecast.config import Settings, normalise_database_url
from stagecast.core import Core
from stagecast.db import Database, Kind, open_database
from stagecast.db.migrate import upgrade
from stagecast.runtime import Runtime
from tests.live.conftest import FFMPEG
from tests.s3 import S3Server, s3_server

PG_URL = os.environ.get("STAGECAST_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("STAGECAST_TEST_REDIS_URL")
BACKENDS = ["sqlite", *(["postgres"] if PG_URL else [])]
BUSES = ["memory", *(["redis"] if REDIS_URL else [])]

needs_postgres = pytest.mark.skipif(not PG_URL, reason="set STAGECAST_TEST_DATABASE_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="set STAGECAST_TEST_REDIS_URL")


def _asyncpg_dsn(url: str) -> str:
    return normalise_database_url(url).replace("postgresql+asyncpg://", "postgresql://")


def _worker_database_name() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"stagecast_test_{worker}_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (dropped afterwards)."""
    assert PG_URL, "STAGECAST_TEST_DATABASE_URL is not set"
    admin_dsn = _asyncpg_dsn(PG_URL)
    name = _worker_database_name()
    base, _, _ = admin_dsn.rpartition("/")
    url = f"{base}/{name}"

    async def create() -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        db = open_database(make_settings(Path("/tmp"), url))
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    async def drop() -> None:
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield url
    asyncio.run(drop())


def make_settings(data_dir: Path, database_url: str | None = None, **extra: Any) -> Settings:
    """Settings for a test: nothing read from the environment that could leak in."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_key": "test-secret-key",
        "redis_url": None,
        "host": "127.0.0.1",
        "port": 0,
        "rtmp_host": "127.0.0.1",
        "rtmp_port": 0,
        "registration": "open",
        "log_level": "warning",
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each database back end this run covers."""
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh database of the current back end."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    return make_settings(tmp_path / "data", url)


async def truncate_all(db: Database) -> None:
    """Empty every table of the PostgreSQL test database, resetting identities."""

    async def unit(conn: AsyncConnection) -> None:
        rows = await conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
        names = ", ".join(f'"{r[0]}"' for r in rows)
        if names:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))

    await db.run(unit, kind=Kind.IDEMPOTENT_WRITE, name="truncate", deadline=30, attempt_timeout=25)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """A migrated, empty database."""
    database = open_database(settings)
    if database.is_sqlite:
        await upgrade(database)
    else:
        await truncate_all(database)
    yield database
    await database.dispose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running."""
    application = create_app(settings)
    if not settings.is_sqlite:
        database = open_database(settings)
        await truncate_all(database)
        await database.dispose()
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def unique(prefix: str = "t") -> str:
    """Return a short unique name."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class RunningServer:
    """A real uvicorn serve the app on 127.0.0.1, for sockets, streams and ingest."""

    def __init__(self, app: FastAPI, server: Any) -> None:
        self.app = app
        self.server = server
        sockets = server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Runtime:
        """Return the running app's runtime (every component, typed)."""
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def core(self) -> Core:
        """Return the running app's Core."""
        return self.runtime.core


async def start_server(settings: Settings) -> tuple[RunningServer, asyncio.Task[None]]:
    """Start uvicorn with the app for ``settings`` and wait until it accepts connections."""
    import uvicorn

    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.02)
    return RunningServer(application, server), task


async def stop_server(running: RunningServer, task: asyncio.Task[None]) -> None:
    """Ask uvicorn to stop and wait for it (bounded)."""
    running.server.should_exit = True
    async with asyncio.timeout(30):
        await task


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningServer]:
    """Run the app for ``settings`` on real sockets (a PostgreSQL database is emptied first)."""
    if not settings.is_sqlite:
        database = open_database(settings)
        await truncate_all(database)
        await database.dispose()
    running, task = await start_server(settings)
    try:
        yield running
    finally:
        await stop_server(running, task)


@pytest.fixture
async def live_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """The app on a real socket (HTTP on a free port, RTMP on a free port)."""
    async with serve(settings) as running:
        yield running


@pytest.fixture(scope="session")
def cmaf(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes]]:
    """An init segment and five 2 s media segments made by ffmpeg."""
    out = tmp_path_factory.mktemp("cmaf")
    subprocess.run(
        [
            FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
            "-i", "testsrc2=size=320x180:rate=30", "-t", "10", "-c:v", "libx264",
            "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p", "-f", "hls",
            "-hls_time", "2", "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod",
            str(out / "index.m3u8"),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return (out / "init.mp4").read_bytes(), [(out / f"index{i}.m4s").read_bytes() for i in range(5)]


@pytest.fixture
def tracing() -> Iterator[None]:
    """Trace allocations (five frames deep) for the test, then stop."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start(5)
    yield
    if not was_tracing:
        tracemalloc.stop()


@contextlib.asynccontextmanager
async def stalled(settings: Settings, *tables: str) -> AsyncIterator[None]:
    """Hold the database locked by another session: SQLite's write lock (WAL still lets readers
    through), or PostgreSQL's ``tables`` against reads and writes."""
    if settings.is_sqlite:
        blocker = sqlite3.connect(settings.data_dir / "stagecast.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    assert settings.database_url is not None
    conn = await asyncpg.connect(_asyncpg_dsn(settings.database_url), timeout=10)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3-API server (moto's, an emulator) shared by this worker's tests."""
    with s3_server() as server:
        yield server


@pytest.fixture
def own_s3() -> Iterator[S3Server]:
    """An S3-API server of this test's own (for tests that stop it)."""
    with s3_server() as server:
        yield server
