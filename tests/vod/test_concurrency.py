"""Several processes on one PostgreSQL: each job claimed once, one VOD per session."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind, open_database
from stagecast.live.hooks import SessionHooks
from stagecast.live.storage import LocalStorage
from stagecast.vod import jobs
from stagecast.vod.models import vod, vod_job
from tests.conftest import make_settings, needs_postgres, truncate_all
from tests.vod.conftest import POLICY, add_vods, count, drain, make_channel, make_worker
from tests.vod.media import Media, end_session, record_session

PROCESSES = 3


async def _databases(pg_url: str, tmp_path: Path) -> list[Database]:
    settings = make_settings(tmp_path / "data", pg_url)
    dbs = [open_database(settings) for _ in range(PROCESSES)]
    await truncate_all(dbs[0])
    return dbs


@needs_postgres
async def test_skip_locked_claims_never_overlap(pg_url: str, tmp_path: Path) -> None:
    """Claimers racing on PostgreSQL each get different jobs, and every job is claimed."""
    dbs = await _databases(pg_url, tmp_path)
    try:
        channel = await make_channel(dbs[0])
        made = await add_vods(dbs[0], channel, 30)

        async def claimer(db: Database) -> list[int]:
            taken: list[int] = []
            while claims := await jobs.claim(db, POLICY, limit=2):
                taken += [c.vod_id for c in claims]
            return taken

        results = await asyncio.gather(*(claimer(db) for db in dbs for _ in range(2)))
        taken = [vod_id for result in results for vod_id in result]
        assert sorted(taken) == sorted(made)  # each exactly once
        assert sum(1 for result in results if result) > 1  # the work was shared
    finally:
        for db in dbs:
            await db.dispose()


@needs_postgres
async def test_racing_sweeps_and_workers_make_exactly_one_vod_per_session(
    pg_url: str, tmp_path: Path, media: Media
) -> None:
    """Three processes sweeping and building at once: one VOD and one build per session."""
    dbs = await _databases(pg_url, tmp_path)
    storage = LocalStorage(tmp_path / "data" / "media")
    hooks = SessionHooks(on_ended=[jobs.on_session_ended])
    try:
        sessions = []
        for i in range(4):
            channel = await make_channel(dbs[0], f"user{i}")
            recorded = await record_session(dbs[0], storage, media, channel.id, epochs=1)
            # Half end with the hook, half without (the sweep's job to notice).
            await end_session(dbs[0], recorded.session_id, hooks if i % 2 else None)
            sessions.append(recorded.session_id)
        workers = [make_worker(db, storage) for db in dbs for _ in range(2)]
        created = await asyncio.gather(*(w.sweep() for w in workers))
        assert sum(created) == 2
        await asyncio.gather(*(drain(w) for w in workers))

        async def rows(conn: AsyncConnection) -> list[tuple[int, str, str, int]]:
            found = await conn.execute(
                select(vod.c.session_id, vod.c.status, vod_job.c.state, vod_job.c.attempts)
                .join(vod_job, vod_job.c.vod_id == vod.c.id)
                .order_by(vod.c.session_id)
            )
            return [(r[0], r[1], r[2], r[3]) for r in found]

        result = await dbs[0].run(rows, kind=Kind.READ)
        assert result == [(s, "ready", "done", 1) for s in sessions]
        assert await count(dbs[0], vod) == len(sessions)
    finally:
        for db in dbs:
            await db.dispose()
