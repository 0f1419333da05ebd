"""The retry layer against a real SQLite file: a second writer's lock, interrupts, kinds."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind, Limits, create_engine
from stagecast.db.errors import DatabaseTimeout, DeadlineExceeded
from stagecast.db.retry import Backoff
from tests.conftest import make_settings


async def _sqlite(tmp_path: Path, busy: float = 0.05, **limits: object) -> Database:
    settings = make_settings(tmp_path, None, sqlite_busy_timeout=busy, db_pool_size=2)
    db = Database(create_engine(settings), Limits(**limits))  # type: ignore[arg-type]

    async def schema(conn: AsyncConnection) -> None:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, v INT)"))
        await conn.execute(text("INSERT OR IGNORE INTO probe VALUES (1, 0)"))

    await db.run(schema, kind=Kind.IDEMPOTENT_WRITE)
    return db


async def test_locked_database_from_a_second_writer_is_retried(tmp_path: Path) -> None:
    """ "database is locked" while another process writes: retried, succeeds once it commits."""
    db = await _sqlite(
        tmp_path, busy=0.05, deadline=5.0, max_attempts=50, backoff=Backoff(0.02, 0.1)
    )
    other = sqlite3.connect(tmp_path / "stagecast.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE probe SET v = 100 WHERE id = 1")

    async def bump(conn: AsyncConnection) -> int:
        return int(
            (
                await conn.execute(text("UPDATE probe SET v = v + 1 WHERE id = 1 RETURNING v"))
            ).scalar_one()
        )

    task = asyncio.create_task(db.run(bump, kind=Kind.WRITE))
    async with asyncio.timeout(5):  # until attempts were refused for the lock and retried
        while db.stats.retries[Kind.WRITE] < 2 and not task.done():
            await asyncio.sleep(0.01)
    assert not task.done()  # still retrying while the other writer holds the lock
    other.execute("COMMIT")
    other.close()
    assert await task == 101
    await db.dispose()


async def test_long_statement_is_interrupted_at_the_timeout(tmp_path: Path) -> None:
    """A runaway query is interrupted inside SQLite at the attempt timeout, not left running."""
    db = await _sqlite(tmp_path, attempt_timeout=0.3, deadline=5.0, max_attempts=1)

    async def runaway(conn: AsyncConnection) -> None:
        await conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1e12) "
                "SELECT count(*) FROM n"
            )
        )

    started = time.monotonic()
    with pytest.raises(DatabaseTimeout):
        await db.run(runaway, kind=Kind.READ)
    assert time.monotonic() - started < 0.3 + 0.4

    async def ping(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT v FROM probe"))).scalar_one())

    assert await db.run(ping, kind=Kind.READ) == 0
    await db.dispose()


async def test_deadline_bounds_retries_on_sqlite(tmp_path: Path) -> None:
    """A writer that never lets go: the deadline ends retries on time."""
    db = await _sqlite(
        tmp_path, busy=0.05, deadline=0.8, max_attempts=1000, backoff=Backoff(0.05, 0.2)
    )
    other = sqlite3.connect(tmp_path / "stagecast.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def bump(conn: AsyncConnection) -> None:
        await conn.execute(text("UPDATE probe SET v = v + 1"))

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await db.run(bump, kind=Kind.IDEMPOTENT_WRITE)
    elapsed = time.monotonic() - started
    other.execute("ROLLBACK")
    other.close()
    assert elapsed <= 0.8 + 0.15, elapsed
    assert db.stats.deadline_stops[Kind.IDEMPOTENT_WRITE] == 1
    await db.dispose()


async def test_permanent_errors_are_not_retried(tmp_path: Path) -> None:
    """A constraint violation surfaces on the first attempt, unchanged."""
    db = await _sqlite(tmp_path)

    async def duplicate(conn: AsyncConnection) -> None:
        await conn.execute(text("INSERT INTO probe VALUES (1, 5)"))

    with pytest.raises(IntegrityError):
        await db.run(duplicate, kind=Kind.IDEMPOTENT_WRITE)
    assert db.stats.attempts[Kind.IDEMPOTENT_WRITE] == 2  # the schema unit, then this one
    assert db.stats.retries[Kind.IDEMPOTENT_WRITE] == 0
    await db.dispose()


async def test_a_failed_unit_rolls_back_everything_it_did(tmp_path: Path) -> None:
    """A unit that fails halfway leaves nothing behind: the whole transaction is rolled back."""
    db = await _sqlite(tmp_path)

    async def half(conn: AsyncConnection) -> None:
        await conn.execute(text("UPDATE probe SET v = 7"))
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.run(half, kind=Kind.WRITE)

    async def read(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT v FROM probe"))).scalar_one())

    assert await db.run(read, kind=Kind.READ) == 0
    await db.dispose()
