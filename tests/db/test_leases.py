"""The job queue: claim once, leases that lapse to another claimer, attempts with a cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database
from stagecast.db.leases import Claimed, Claims, JobQueue
from stagecast.vod.models import vod_job
from tests.vod.conftest import add_vods, make_channel

QUEUE = JobQueue(
    vod_job, due=vod_job.c.due_at, touched=vod_job.c.updated_at, finished=vod_job.c.finished_at
)


@pytest.fixture
async def other(db: Database, settings: Settings) -> AsyncIterator[Database]:
    """A second claimer on the same database, with its own engine (another process)."""
    second = open_database(settings)
    yield second
    await second.dispose()


async def _jobs(db: Database, n: int) -> list[int]:
    """Make ``n`` pending jobs, due now; return their ids."""
    vod_ids = await add_vods(db, await make_channel(db), n)

    async def unit(conn: AsyncConnection) -> list[int]:
        rows = await conn.execute(select(vod_job.c.id).where(vod_job.c.vod_id.in_(vod_ids)))
        return sorted(r.id for r in rows)

    return await db.run(unit, kind=Kind.READ)


async def _claim(db: Database, *, limit: int = 1, lease: float = 60, cap: int = 5) -> Claims:
    async def unit(conn: AsyncConnection) -> Claims:
        return await QUEUE.claim(conn, limit=limit, lease=lease, max_attempts=cap)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE)


async def _holds(db: Database, held: Claimed) -> bool:
    async def unit(conn: AsyncConnection) -> bool:
        return await QUEUE.holds(conn, held.row.id, held.attempt)

    return await db.run(unit, kind=Kind.IDEMPOTENT_WRITE)


async def _state(db: Database, job_id: int) -> tuple[str, int]:
    async def unit(conn: AsyncConnection) -> tuple[str, int]:
        query = select(vod_job.c.state, vod_job.c.attempts).where(vod_job.c.id == job_id)
        row = (await conn.execute(query)).one()
        return row.state, row.attempts

    return await db.run(unit, kind=Kind.READ)


async def test_two_concurrent_claimers_never_take_the_same_job(
    db: Database, other: Database
) -> None:
    """Two claimers on their own connections race for 20 jobs: each job is taken exactly once."""
    made = await _jobs(db, 20)

    async def claimer(claimer_db: Database) -> list[int]:
        taken: list[int] = []
        while claims := (await _claim(claimer_db, limit=2)).held:
            taken += [c.row.id for c in claims]
        return taken

    results = await asyncio.gather(*(claimer(d) for d in (db, other, db, other)))
    assert sorted(i for result in results for i in result) == made
    assert {await _state(db, i) for i in made} == {("running", 1)}


async def test_a_lapsed_lease_hands_the_job_to_another_claimer_and_fences_the_first(
    db: Database, other: Database
) -> None:
    """Held for 0.5 s, the job is not taken before the lease runs out; then the other gets it."""
    [job_id] = await _jobs(db, 1)
    started = time.monotonic()
    [first] = (await _claim(db, lease=0.5)).held
    async with asyncio.timeout(10):
        while not (taken := (await _claim(other)).held):
            await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.45  # not before the lease ran out
    [second] = taken
    assert (first.row.id, first.attempt, second.row.id, second.attempt) == (job_id, 1, job_id, 2)
    assert not await _holds(db, first)  # the first holder's outcome would be refused
    assert await _holds(other, second)


async def test_attempts_are_capped_and_a_retry_waits_its_delay(db: Database) -> None:
    """Retried jobs wait their delay; once the cap is used up a claim hands the row back."""
    [job_id] = await _jobs(db, 1)
    [first] = (await _claim(db, cap=2)).held

    async def retry(conn: AsyncConnection, delay: float) -> None:
        await QUEUE.retry(conn, job_id, delay, last_error="try again")

    await db.run(lambda conn: retry(conn, 60.0), kind=Kind.IDEMPOTENT_WRITE)
    assert await _state(db, job_id) == ("pending", 1)
    assert (await _claim(db, cap=2)).held == []  # due in a minute, not now
    await db.run(lambda conn: retry(conn, 0.0), kind=Kind.IDEMPOTENT_WRITE)
    [second] = (await _claim(db, cap=2, lease=0.0)).held  # its holder dies at once
    assert (first.attempt, second.attempt) == (1, 2)
    exhausted = await _claim(db, cap=2)
    assert exhausted.held == []
    assert [(r.id, r.attempts) for r in exhausted.exhausted] == [(job_id, 2)]
    assert await _state(db, job_id) == ("running", 2)  # closing it is the caller's part

    async def close(conn: AsyncConnection) -> None:
        await QUEUE.close(conn, job_id, "failed", last_error="gave up")

    await db.run(close, kind=Kind.IDEMPOTENT_WRITE)
    assert await _claim(db, cap=2) == Claims([], [])
    assert await _state(db, job_id) == ("failed", 2)


async def test_a_released_job_is_due_at_once_with_its_attempt_given_back(db: Database) -> None:
    """Release undoes the claim: pending, due now, the attempt not counted, not held any more."""
    [job_id] = await _jobs(db, 1)
    [held] = (await _claim(db)).held

    async def release(conn: AsyncConnection) -> None:
        await QUEUE.release(conn, job_id, held.attempt)

    await db.run(release, kind=Kind.IDEMPOTENT_WRITE)
    assert await _state(db, job_id) == ("pending", 0)
    assert not await _holds(db, held)
    [again] = (await _claim(db)).held
    assert (again.row.id, again.attempt) == (job_id, 1)


def test_a_state_name_that_is_not_a_plain_word_is_refused() -> None:
    """States are written into the SQL as literals, so only plain words are accepted."""
    with pytest.raises(ValueError, match="plain word"):
        JobQueue(vod_job, due=vod_job.c.due_at, running="running') OR ('1'='1")
