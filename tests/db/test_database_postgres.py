"""The retry layer against a real PostgreSQL: locks, timeouts, killed connections, deadlines."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db import Database, Kind, Limits, create_engine
from stagecast.db.errors import DatabaseTimeout, DeadlineExceeded, OutcomeUnknown
from stagecast.db.retry import Backoff
from tests.conftest import _asyncpg_dsn, make_settings, needs_postgres

pytestmark = needs_postgres


def _database(url: str, tmp_path: Path, **limits: object) -> Database:
    """A database with one pooled connection, so reuse after a failure is observable."""
    settings = make_settings(tmp_path, url, db_pool_size=1)
    return Database(create_engine(settings), Limits(**limits))  # type: ignore[arg-type]


def _logged(db: Database) -> list[str]:
    """Record every statement ``db`` sends through SQLAlchemy from now on (BEGIN/COMMIT aside)."""
    sent: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _log(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        sent.append(statement)

    return sent


@pytest.fixture
async def probe(pg_url: str) -> AsyncIterator[tuple[str, str]]:
    """A scratch table with one row, and the asyncpg DSN to poke it from outside."""
    table = f"probe_{uuid.uuid4().hex[:8]}"
    dsn = _asyncpg_dsn(pg_url)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
    await conn.execute(f"INSERT INTO {table} VALUES (1, 0)")
    yield table, dsn
    await conn.execute(f"DROP TABLE {table}")
    await conn.close()


async def _tagged(conn: AsyncConnection, tag: str) -> None:
    await conn.execute(text("SELECT set_config('application_name', :t, false)"), {"t": tag})


async def test_lock_timeout_is_retried_until_the_lock_is_released(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """A row lock held elsewhere hits lock_timeout, the write retries and succeeds once freed."""
    table, dsn = probe
    db = _database(
        pg_url,
        tmp_path,
        lock_timeout=0.2,
        attempt_timeout=1.0,
        deadline=8.0,
        max_attempts=20,
        backoff=Backoff(0.05, 0.2),
    )
    holder = await asyncpg.connect(dsn)
    locked = holder.transaction()
    await locked.start()
    await holder.execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE")

    async def bump(conn: AsyncConnection) -> int:
        result = await conn.execute(text(f"UPDATE {table} SET v = v + 1 WHERE id = 1 RETURNING v"))
        return int(result.scalar_one())

    task = asyncio.create_task(db.run(bump, kind=Kind.IDEMPOTENT_WRITE))
    async with asyncio.timeout(5):  # until attempts have hit lock_timeout and been retried
        while db.stats.retries[Kind.IDEMPOTENT_WRITE] < 2 and not task.done():
            await asyncio.sleep(0.01)
    assert not task.done()
    await locked.rollback()
    assert await task == 1
    await holder.close()
    await db.dispose()


async def test_statement_timeout_stops_the_query_on_the_server(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """pg_sleep past the timeout fails within timeout + margin, and the server stopped it."""
    _, dsn = probe
    tag = f"stagecast-{uuid.uuid4().hex[:8]}"
    db = _database(pg_url, tmp_path, attempt_timeout=0.3, deadline=5.0, max_attempts=1)

    async def sleepy(conn: AsyncConnection) -> None:
        await _tagged(conn, tag)
        await conn.execute(text("SELECT pg_sleep(5)"))

    started = time.monotonic()
    with pytest.raises(DatabaseTimeout):
        await db.run(sleepy, kind=Kind.READ)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + 0.4, elapsed
    assert db.stats.timeouts[Kind.READ] == 1

    observer = await asyncpg.connect(dsn)
    running = await observer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        tag,
    )
    await observer.close()
    assert running == 0

    async def ping(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT 41 + 1"))).scalar_one())

    assert await db.run(ping, kind=Kind.READ) == 42  # the single pooled connection still works
    await db.dispose()


async def _terminate_when_running(dsn: str, tag: str) -> None:
    observer = await asyncpg.connect(dsn)
    try:
        for _ in range(200):
            pid = await observer.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                "AND query LIKE '%pg_sleep%' AND state = 'active'",
                tag,
            )
            if pid:
                await observer.execute("SELECT pg_terminate_backend($1)", pid)
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the query never started")
    finally:
        await observer.close()


async def test_killed_connection_retries_a_read(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """pg_terminate_backend mid-read: the read runs again on a new connection and succeeds."""
    table, dsn = probe
    tag = f"stagecast-{uuid.uuid4().hex[:8]}"
    db = _database(pg_url, tmp_path, attempt_timeout=3.0, deadline=8.0, max_attempts=3)
    calls = 0

    async def read(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        await _tagged(conn, tag)
        if calls == 1:
            await conn.execute(text("SELECT pg_sleep(2)"))
        return int((await conn.execute(text(f"SELECT v FROM {table} WHERE id = 1"))).scalar_one())

    killer = asyncio.create_task(_terminate_when_running(dsn, tag))
    assert await db.run(read, kind=Kind.READ) == 0
    await killer
    assert calls == 2
    assert db.stats.retries[Kind.READ] == 1
    await db.dispose()


async def test_killed_connection_does_not_retry_a_write(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """pg_terminate_backend mid-write: OutcomeUnknown, one attempt, no duplicate row."""
    table, dsn = probe
    tag = f"stagecast-{uuid.uuid4().hex[:8]}"
    db = _database(pg_url, tmp_path, attempt_timeout=3.0, deadline=8.0, max_attempts=3)
    calls = 0

    async def write(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await _tagged(conn, tag)
        await conn.execute(text(f"INSERT INTO {table} VALUES (2, 0)"))
        await conn.execute(text("SELECT pg_sleep(2)"))

    killer = asyncio.create_task(_terminate_when_running(dsn, tag))
    with pytest.raises(OutcomeUnknown):
        await db.run(write, kind=Kind.WRITE)
    await killer
    assert calls == 1
    assert db.stats.outcome_unknown[Kind.WRITE] == 1
    observer = await asyncpg.connect(dsn)
    assert await observer.fetchval(f"SELECT count(*) FROM {table} WHERE id = 2") <= 1
    await observer.close()
    await db.dispose()


async def test_deadline_stops_retries_without_oversleeping(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """A lock that never frees: retries stop at the deadline, and no sleep runs past it."""
    table, dsn = probe
    db = _database(
        pg_url,
        tmp_path,
        lock_timeout=0.1,
        attempt_timeout=0.5,
        deadline=1.2,
        max_attempts=100,
        backoff=Backoff(0.1, 0.4),
    )
    holder = await asyncpg.connect(dsn)
    locked = holder.transaction()
    await locked.start()
    await holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    async def read(conn: AsyncConnection) -> None:
        await conn.execute(text(f"SELECT v FROM {table}"))

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await db.run(read, kind=Kind.READ)
    elapsed = time.monotonic() - started
    await locked.rollback()
    await holder.close()
    assert elapsed <= 1.2 + 0.15, elapsed
    assert db.stats.attempts[Kind.READ] >= 3
    assert db.stats.deadline_stops[Kind.READ] == 1
    await db.dispose()


async def test_a_write_after_the_server_dropped_every_pooled_connection_succeeds(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """After a restart-like drop of idle pooled connections, the next write runs once, safely.

    Nothing of the unit reaches a dead connection (its BEGIN fails first), so even a plain
    write is retried on a fresh connection and applied exactly once.
    """
    table, dsn = probe
    tag = f"stagecast-{uuid.uuid4().hex[:8]}"
    db = _database(pg_url, tmp_path, attempt_timeout=2.0, deadline=8.0, max_attempts=4)

    async def tagged(conn: AsyncConnection) -> None:
        await _tagged(conn, tag)

    await db.run(tagged, kind=Kind.READ)  # the pooled connection now carries our tag
    observer = await asyncpg.connect(dsn)
    killed = await observer.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        tag,
    )
    assert killed == 1

    async def insert(conn: AsyncConnection) -> None:
        await conn.execute(text(f"INSERT INTO {table} VALUES (3, 0)"))

    await db.run(insert, kind=Kind.WRITE)
    assert await observer.fetchval(f"SELECT count(*) FROM {table} WHERE id = 3") == 1
    await observer.close()
    await db.dispose()


async def _select_one(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def test_a_read_with_the_session_timeouts_sends_only_begin_query_commit(
    pg_url: str, tmp_path: Path
) -> None:
    """Sessions open with the default attempt's timeouts: a read sends no SET, only its query."""
    db = _database(pg_url, tmp_path)  # the Limits defaults are the Settings defaults
    assert await db.run(_select_one, kind=Kind.READ) == 1  # opens the pooled connection
    sent = _logged(db)
    for kind in (Kind.READ, Kind.IDEMPOTENT_WRITE):
        sent.clear()
        assert await db.run(_select_one, kind=kind) == 1
        assert sent == ["SELECT 1"], (kind, sent)
    await db.dispose()


async def test_a_write_or_other_timeouts_set_the_timeouts_for_the_transaction(
    pg_url: str, tmp_path: Path
) -> None:
    """A write (its first statement proves the connection) and a shorter attempt send a SET."""
    db = _database(pg_url, tmp_path)
    sent = _logged(db)
    for kind, attempt_timeout in [(Kind.WRITE, None), (Kind.READ, 0.7)]:
        sent.clear()
        await db.run(_select_one, kind=kind, attempt_timeout=attempt_timeout)
        assert len(sent) == 2, sent
        assert "set_config('statement_timeout'" in sent[0]
        assert sent[1] == "SELECT 1"
    await db.dispose()


@pytest.mark.parametrize("attempt_timeout", [2.0, 0.7])
async def test_every_attempt_runs_under_its_own_timeouts_on_the_server(
    pg_url: str, tmp_path: Path, attempt_timeout: float
) -> None:
    """Inside the unit the server holds the attempt's timeouts, from the session or a SET."""
    db = _database(pg_url, tmp_path, lock_timeout=1.0)

    async def show(conn: AsyncConnection) -> tuple[str, str]:
        query = "SELECT setting FROM pg_settings WHERE name = :n"
        statement = (await conn.execute(text(query), {"n": "statement_timeout"})).scalar_one()
        lock = (await conn.execute(text(query), {"n": "lock_timeout"})).scalar_one()
        return str(statement), str(lock)

    lock_ms = int(min(1.0, attempt_timeout) * 1000)
    for kind in Kind:
        got = await db.run(show, kind=kind, attempt_timeout=attempt_timeout)
        assert got == (str(int(attempt_timeout * 1000)), str(lock_ms)), (kind, got)
    await db.dispose()


async def test_the_session_statement_timeout_stops_the_query_on_the_server(
    pg_url: str, tmp_path: Path, probe: tuple[str, str]
) -> None:
    """With no SET sent (the session's own timeout), pg_sleep is still stopped by the server."""
    _, dsn = probe
    tag = f"stagecast-{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path, pg_url, db_pool_size=1, db_attempt_timeout=0.3)
    db = Database(create_engine(settings), Limits(attempt_timeout=0.3, max_attempts=1))
    sent = _logged(db)

    async def sleepy(conn: AsyncConnection) -> None:
        await _tagged(conn, tag)
        await conn.execute(text("SELECT pg_sleep(5)"))

    started = time.monotonic()
    with pytest.raises(DatabaseTimeout):
        await db.run(sleepy, kind=Kind.READ)
    assert time.monotonic() - started < 0.3 + 0.4
    assert not any("set_config('statement_timeout'" in query for query in sent), sent
    observer = await asyncpg.connect(dsn)
    running = await observer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        tag,
    )
    await observer.close()
    assert running == 0
    await db.dispose()


@pytest.mark.parametrize("kind", [Kind.READ, Kind.IDEMPOTENT_WRITE])
async def test_a_lazy_begin_on_a_dropped_pooled_connection_is_retried(
    pg_url: str, tmp_path: Path, probe: tuple[str, str], kind: Kind
) -> None:
    """With no SET first, a dead pooled connection fails inside the unit: retried, applied once."""
    table, dsn = probe
    tag = f"stagecast-{uuid.uuid4().hex[:8]}"
    db = _database(pg_url, tmp_path, deadline=8.0, max_attempts=4)

    async def tagged(conn: AsyncConnection) -> None:
        await _tagged(conn, tag)

    await db.run(tagged, kind=Kind.READ)
    observer = await asyncpg.connect(dsn)
    killed = await observer.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        tag,
    )
    assert killed == 1

    async def upsert(conn: AsyncConnection) -> int:
        await conn.execute(text(f"INSERT INTO {table} VALUES (4, 0) ON CONFLICT DO NOTHING"))
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())

    assert await db.run(upsert, kind=kind) == 2
    assert db.stats.retries[kind] == 1
    assert await observer.fetchval(f"SELECT count(*) FROM {table} WHERE id = 4") == 1
    await observer.close()
    assert await db.run(_select_one, kind=Kind.READ) == 1  # the pool holds a live connection
    await db.dispose()


async def test_a_read_is_one_round_trip_per_statement_and_a_write_stays_one_transaction(
    pg_url: str, tmp_path: Path
) -> None:
    """A default read runs without BEGIN/COMMIT (each statement its own transaction); the same
    pooled connection then runs a write's statements in one transaction again."""
    db = _database(pg_url, tmp_path)  # one pooled connection

    async def two_ids(conn: AsyncConnection) -> tuple[int, int]:
        first = (await conn.execute(text("SELECT pg_current_xact_id()::text::bigint"))).scalar()
        second = (await conn.execute(text("SELECT pg_current_xact_id()::text::bigint"))).scalar()
        return int(first), int(second)

    for _ in range(2):  # the connection goes back to the pool and out again in between
        read_first, read_second = await db.run(two_ids, kind=Kind.READ)
        assert read_first != read_second
        write_first, write_second = await db.run(two_ids, kind=Kind.IDEMPOTENT_WRITE)
        assert write_first == write_second
    await db.dispose()
