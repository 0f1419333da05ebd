"""Fixtures of the VOD tests: real media, a channel, the end hook, a worker you drive by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.channels.service import Channel
from stagecast.config import Settings
from stagecast.core import Core
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.hooks import EndedSession, SessionHooks
from stagecast.live.models import live_session, segment
from stagecast.live.storage import LocalStorage
from stagecast.vod import jobs
from stagecast.vod.jobs import Policy
from stagecast.vod.worker import VodWorker, WorkerConfig
from tests.auth.test_api import bearer, make_user
from tests.conftest import make_settings
from tests.vod.media import Media, end_session, make_media, record_session

POLICY = Policy(attempts=3, retry_base=0.01, retry_cap=0.05, lease=60.0)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Two renditions by two epochs of real fMP4, encoded once per test session."""
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings on a fresh database, with a fast-polling, fast-retrying VOD worker."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    return make_settings(
        tmp_path / "data",
        url,
        vod_poll_seconds=0.05,
        vod_retry_base_seconds=0.01,
        vod_retry_cap_seconds=0.05,
        vod_job_attempts=POLICY.attempts,
        vod_purge_delay_seconds=0,
    )


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    """The media storage the app uses for ``settings``."""
    return LocalStorage(settings.data_dir / "media")


@pytest.fixture
def hooks() -> SessionHooks:
    """Session hooks with the VOD end hook registered, as the VOD starter does."""
    return SessionHooks(on_ended=[jobs.on_session_ended])


def make_worker(db: Database, storage: LocalStorage) -> VodWorker:
    """Return a worker on ``db`` that a test drives with ``run_once``."""
    config = WorkerConfig(policy=POLICY, ffmpeg=imageio_ffmpeg.get_ffmpeg_exe())
    return VodWorker(db, storage, config)


@pytest.fixture
def worker(db: Database, storage: LocalStorage) -> VodWorker:
    """A worker the test drives by hand (no background loops)."""
    return make_worker(db, storage)


async def drain(worker: VodWorker) -> int:
    """Run due jobs until none is left; return how many ran."""
    ran = 0
    while await worker.run_once():
        ran += 1
    return ran


async def make_channel(
    db: Database, owner: str = "alice", slug: str | None = None, role: str = "broadcaster"
) -> Channel:
    """Create the account ``owner`` and a public channel of theirs."""
    account = await accounts.create_account(db, owner, "password123", role)
    created, _ = await channels.create_channel(db, account, slug or f"{owner}-tv")
    return created


@pytest.fixture
async def channel(db: Database) -> Channel:
    """A public channel owned by alice."""
    return await make_channel(db)


async def scalar(db: Database, query: object) -> object:
    """Run one scalar query."""

    async def unit(conn: AsyncConnection) -> object:
        return (await conn.execute(query)).scalar()  # type: ignore[call-overload]

    return await db.run(unit, kind=Kind.READ)


async def count(db: Database, table: object, *where: object) -> int:
    """Count the rows of ``table`` matching ``where``."""
    query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
    return int(str(await scalar(db, query)))


Poll = Callable[[], Awaitable[bool]]


async def add_vods(db: Database, target: Channel, n: int, *, title: str = "Show") -> list[int]:
    """Add ``n`` ended sessions of ``target`` (one archived segment row each, no files) and
    their VODs, the way the end hook makes them; return the VOD ids, oldest first."""

    async def unit(conn: AsyncConnection) -> list[int]:
        made = []
        for i in range(n):
            now = utcnow()
            session_id = (
                await conn.execute(
                    insert(live_session)
                    .values(
                        channel_id=target.id,
                        state="ended",
                        title=f"{title} {i}",
                        profile="passthrough",
                        key_version=1,
                        owner_node="test:1",
                        reconnects=0,
                        created_at=now,
                        started_at=now,
                        ended_at=now,
                    )
                    .returning(live_session.c.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(segment).values(
                    session_id=session_id,
                    rendition="high",
                    sequence=0,
                    epoch=0,
                    discontinuity=False,
                    duration=1.0,
                    byte_size=1,
                    program_date_time=now,
                    path=f"{target.id}/{session_id}/high/seg-00000000.m4s",
                    created_at=now,
                )
            )
            ended = EndedSession(session_id, target.id, f"{title} {i}", now, now, "test")
            vod_id = await jobs.create_for_session(conn, ended)
            assert vod_id is not None
            made.append(vod_id)
        return made

    return await db.run(unit, kind=Kind.WRITE, deadline=30, attempt_timeout=25)


async def set_status(db: Database, vod_id: int, status: str) -> None:
    """Move a VOD to ``status`` the way the worker does (counters included)."""

    async def unit(conn: AsyncConnection) -> None:
        await jobs.set_status(conn, vod_id, status)

    await db.run(unit, kind=Kind.WRITE)


@dataclass
class Watched:
    """A VOD made by the app's own end hook from a real recording (and built by its worker)."""

    core: Core
    client: httpx.AsyncClient
    vod_id: int
    owner: dict[str, str]

    @property
    def master(self) -> str:
        """The master playlist URL."""
        return f"/hls/vods/{self.vod_id}/master.m3u8"


async def record_vod(
    app: FastAPI, client: httpx.AsyncClient, media: Media, *, ready: bool = True
) -> Watched:
    """alice streams to alice-tv and the session ends; with ``ready``, wait for the build."""
    core: Core = app.state.runtime.core
    owner = bearer(await make_user(core, "alice"))
    assert (
        await client.post("/api/v1/channels", json={"slug": "alice-tv"}, headers=owner)
    ).is_success
    channel = await channels.get_channel(core.db, "alice-tv")
    storage = LocalStorage(core.settings.data_dir / "media")
    recorded = await record_session(core.db, storage, media, channel.id, title="Demo")
    await end_session(core.db, recorded.session_id, app.state.runtime.live.hooks)
    async with asyncio.timeout(30):
        while True:
            listed = (await client.get("/api/v1/studio/vods", headers=owner)).json()["items"]
            if listed and (not ready or listed[0]["status"] != "processing"):
                break
            await asyncio.sleep(0.05)
    if ready:
        assert listed[0]["status"] == "ready", listed[0]["failure_reason"]
    return Watched(core, client, listed[0]["id"], owner)


@pytest.fixture
async def watched(app: FastAPI, client: httpx.AsyncClient, media: Media) -> Watched:
    """alice streams to alice-tv, the session ends, and the app's worker builds the VOD."""
    return await record_vod(app, client, media)
