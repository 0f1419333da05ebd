"""VOD library at scale: keyset page + counter total vs ``COUNT(*) OVER()`` + ``OFFSET``.

Loads 1,000,000 VODs (100,000 with ``--quick``) into a dedicated PostgreSQL database
(``stagecast_bench_vod``, created for the run and dropped after it; the server comes from
``STAGECAST_BENCH_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``): 2,000
owners, one of them with a fifth of all VODs, 4,000 channels, every status, some soft-deleted,
and the counters built from the rows. Then, for each filter, at page 1 and at a deep page, it
times in the same run:

- **keyset**: ``vod.library.library_page`` itself (cursor decode, the page query with its exact
  total from the counters, one ``Database.run`` READ transaction);
- **baseline**: the window-count design on the same data and filter, through the same
  ``Database.run``: ``SELECT vod.*, COUNT(*) OVER() ... ORDER BY created_at DESC LIMIT 20
  OFFSET n``.

It prints p50/p99 end to end per method, each query's own execution time on the server
(``EXPLAIN ANALYZE``), both ratios, and the fixed cost of an empty ``Database.run`` beside the
bare asyncpg figure for scale (``bench.db_call``).
Target: keyset ≤ 2 ms per page at any depth including the total, ≥ 100x faster than the
baseline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from bench import db_call
from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database
from stagecast.db.migrate import upgrade
from stagecast.vod import cursor, library
from stagecast.vod.cursor import Position
from stagecast.vod.library import Filter, Params
from stagecast.vod.models import vod

SERVER = os.environ.get("STAGECAST_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "stagecast_bench_vod"
SECRET = "bench-secret"
LIMIT = 20
OWNERS = 2_000
CHANNELS = 4_000
BIG_OWNER = 1  # owns channels 1-4, which get every fifth VOD

# The channel of VOD g: every fifth to the big owner's four channels, the rest spread out.
CHANNEL_OF = "CASE WHEN g % 5 = 0 THEN 1 + (g / 5) % 4 ELSE 5 + (g * 2654435761) % 3996 END"
OWNER_OF = "CASE WHEN ch <= 4 THEN 1 ELSE 2 + ch % 1999 END"

LOAD = [
    f"""INSERT INTO account (id, username, password_hash, role, created_at)
        SELECT g, 'user' || g, 'x', 'broadcaster', now() FROM generate_series(1, {OWNERS}) g""",
    f"""INSERT INTO channel (id, slug, owner_id, title, description, visibility, profile,
            dvr_window_seconds, key_lookup, key_hash, key_version, key_rotated_at, created_at,
            updated_at)
        SELECT c, 'ch' || c, CASE WHEN c <= 4 THEN 1 ELSE 2 + c % 1999 END, 'Channel ' || c, '',
            'public', 'passthrough', 0, 'k' || c, 'h', 1, now(), now(), now()
        FROM generate_series(1, {CHANNELS}) c""",
    f"""INSERT INTO live_session (id, channel_id, state, title, profile, key_version,
            owner_node, reconnects, created_at, started_at, ended_at, end_reason)
        SELECT g, {CHANNEL_OF}, 'ended', 'Session ' || g, 'passthrough', 1, 'bench', 0,
            now() - (:n - g) * interval '30 seconds', now() - (:n - g) * interval '30 seconds',
            now() - (:n - g) * interval '30 seconds', 'bench'
        FROM generate_series(1, :n) g""",
    f"""INSERT INTO vod (id, session_id, channel_id, owner_id, title, description, visibility,
            status, failure_reason, started_at, ended_at, duration, byte_size, thumbnail_path,
            created_at, updated_at, deleted_at)
        SELECT g, g, ch, {OWNER_OF}, 'Session ' || g, '',
            (ARRAY['inherit','inherit','inherit','inherit','inherit','inherit','inherit',
                   'public','unlisted','private'])[1 + (g::bigint * 69621) % 2147483647 % 10],
            CASE WHEN h < 85 THEN 'ready' WHEN h < 90 THEN 'processing' ELSE 'failed' END,
            CASE WHEN h >= 90 THEN 'missing file' END, t, t, 3600, 1500000000,
            ch || '/' || g || '/vod-thumb.jpg', t, t,
            CASE WHEN (g::bigint * 16807) % 2147483647 % 100 < 5 THEN t END
        FROM (SELECT g, {CHANNEL_OF} AS ch, (g::bigint * 48271) % 2147483647 % 100 AS h,
                     now() - (:n - g) * interval '30 seconds' AS t
              FROM generate_series(1, :n) g) s""",
    """INSERT INTO vod_counter (scope, scope_id, status, count)
        SELECT 'all', 0, status, count(*) FROM vod WHERE deleted_at IS NULL GROUP BY status
        UNION ALL
        SELECT 'owner', owner_id, status, count(*) FROM vod WHERE deleted_at IS NULL
            GROUP BY owner_id, status
        UNION ALL
        SELECT 'channel', channel_id, status, count(*) FROM vod WHERE deleted_at IS NULL
            GROUP BY channel_id, status""",
    "SELECT setval(pg_get_serial_sequence('account', 'id'), (SELECT max(id) FROM account))",
    "SELECT setval(pg_get_serial_sequence('channel', 'id'), (SELECT max(id) FROM channel))",
    "SELECT setval(pg_get_serial_sequence('live_session', 'id'), :n)",
    "SELECT setval(pg_get_serial_sequence('vod', 'id'), :n)",
]


def _url(name: str) -> str:
    base, _, _ = SERVER.rpartition("/")
    return f"{base}/{name}"


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(SERVER.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _load(db: Database, n: int) -> None:
    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL synchronous_commit = off"))
        await conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for statement in LOAD:
            await conn.execute(text(statement), {"n": n} if ":n" in statement else {})

    started = time.perf_counter()
    await db.run(unit, kind=Kind.WRITE, name="bench_load", deadline=3600, attempt_timeout=3500)
    raw = await asyncpg.connect(_url(DB_NAME))
    try:
        await raw.execute("VACUUM ANALYZE")  # visibility map and statistics, as autovacuum would
    finally:
        await raw.close()
    print(f"loaded {n:,} VODs in {time.perf_counter() - started:.1f} s", flush=True)


def _where(query: Select[Any], filt: Filter) -> Select[Any]:
    query = query.where(vod.c.deleted_at.is_(None))
    if filt.owner_id is not None:
        query = query.where(vod.c.owner_id == filt.owner_id)
    if filt.channel_id is not None:
        query = query.where(vod.c.channel_id == filt.channel_id)
    if filt.status is not None:
        query = query.where(vod.c.status == filt.status)
    return query


def baseline_query(filt: Filter, offset: int) -> Select[Any]:
    """The window-count design: every matching row is read to count and to skip."""
    query = select(vod, func.count().over().label("total"))
    ordered = _where(query, filt).order_by(vod.c.created_at.desc())
    return ordered.limit(LIMIT).offset(offset)


async def _deep_cursor(db: Database, filt: Filter, depth: int) -> str:
    """Return the cursor a client holds after paging ``depth`` rows into ``filt``."""

    async def unit(conn: AsyncConnection) -> Position:
        query = _where(select(vod.c.created_at, vod.c.id), filt)
        row = (
            await conn.execute(
                query.order_by(vod.c.created_at.desc(), vod.c.id.desc()).offset(depth - 1).limit(1)
            )
        ).one()
        return Position(row.created_at, row.id)

    position = await db.run(unit, kind=Kind.READ, deadline=120, attempt_timeout=100)
    return cursor.encode(SECRET, position, filt.scope)


async def _time(work: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    for _ in range(3):  # warm the caches and the statement cache
        await work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ExplainAnalyze(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, FORMAT JSON)`` of a statement, its parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(ExplainAnalyze)
def _explain_analyze(element: ExplainAnalyze, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiler.process(element.statement, **kw))


async def _server_ms(
    db: Database, query: Select[Any], samples: int, params: Params | None = None
) -> float:
    """Return PostgreSQL's own execution time of ``query`` (median of EXPLAIN ANALYZE), ms."""

    async def unit(conn: AsyncConnection) -> float:
        found = []
        for _ in range(samples):
            plan = (await conn.execute(ExplainAnalyze(query), params or {})).scalar_one()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            found.append(float(plan[0]["Execution Time"]))
        return statistics.median(found)

    return await db.run(unit, kind=Kind.READ, deadline=300, attempt_timeout=250)


@dataclass(frozen=True)
class Result:
    """The figures of one filter at one depth (milliseconds)."""

    keyset_p50: float
    keyset_p99: float
    keyset_server: float
    baseline_p50: float
    baseline_p99: float
    baseline_server: float

    @property
    def ratio(self) -> float:
        """Return how many times faster the keyset page is, end to end (p50)."""
        return self.baseline_p50 / self.keyset_p50

    @property
    def server_ratio(self) -> float:
        """Return how many times less server time the keyset page takes."""
        return self.baseline_server / self.keyset_server


async def _case(db: Database, filt: Filter, depth: int, matching: int, runs: int) -> Result:
    token = await _deep_cursor(db, filt, depth) if depth else None

    async def keyset() -> object:
        return await library.library_page(db, SECRET, filt, limit=LIMIT, token=token)

    async def window() -> object:
        query = baseline_query(filt, depth)

        async def unit(conn: AsyncConnection) -> object:
            return (await conn.execute(query)).all()

        return await db.run(unit, kind=Kind.READ, deadline=120, attempt_timeout=100)

    page = await library.library_page(db, SECRET, filt, limit=LIMIT, token=token)
    assert page.total == matching, (filt, page.total, matching)
    assert len(page.items) == min(LIMIT, matching - depth), (filt, len(page.items))
    fast = await _time(keyset, runs)
    slow = await _time(window, max(5, runs // 40))
    after = cursor.decode(SECRET, token, filt.scope) if token else None
    return Result(
        _p(fast, 0.5),
        _p(fast, 0.99),
        await _server_ms(db, *_keyset_query(filt, after)),
        _p(slow, 0.5),
        _p(slow, 0.99),
        await _server_ms(db, baseline_query(filt, depth), 3),
    )


def _keyset_query(filt: Filter, after: Position | None) -> tuple[Select[Any], int, Params]:
    statement, params = library.library_query(filt, after, LIMIT)
    return statement, 21, params


async def _matching(db: Database, filt: Filter) -> int:
    query = _where(select(func.count()).select_from(vod), filt)

    async def unit(conn: AsyncConnection) -> int:
        return int((await conn.execute(query)).scalar_one())

    return await db.run(unit, kind=Kind.READ, deadline=120, attempt_timeout=100)


async def _main(quick: bool) -> None:
    n = 100_000 if quick else 1_000_000
    runs = 100 if quick else 400
    drop = f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'
    await _admin(drop, f'CREATE DATABASE "{DB_NAME}"')
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(_env_file=None, data_dir=Path(scratch), database_url=_url(DB_NAME))
        db = open_database(settings)
        try:
            await upgrade(db)
            await _load(db, n)
            await _report(db, n, runs)
        finally:
            await db.dispose()
            await _admin(drop)  # a million rows of disk, not worth keeping


CASES = (
    ("owner, big", Filter(owner_id=BIG_OWNER)),
    ("owner, big + ready", Filter(owner_id=BIG_OWNER, status="ready")),
    ("owner, typical", Filter(owner_id=500)),
    ("channel", Filter(channel_id=1)),
    ("channel + failed", Filter(channel_id=1, status="failed")),
    ("all (admin)", Filter()),
    ("all (admin) + processing", Filter(status="processing")),
)


async def _report(db: Database, n: int, runs: int) -> None:
    # The fixed cost of one Database.run, beside the bare driver's, for scale.
    print(db_call.report(await db_call.measure(db, runs * 5)), flush=True)
    print(
        f"{'filter':<25}{'depth':>10}{'matching':>10} | {'keyset p50':>10}{'p99':>7}"
        f"{'server':>8} | {'baseline p50':>12}{'p99':>8}{'server':>8} | "
        f"{'ratio':>6}{'server':>8}",
        flush=True,
    )
    results: list[tuple[int, Result]] = []
    for name, filt in CASES:
        matching = await _matching(db, filt)
        for depth in sorted({0, matching // 2}):
            r = await _case(db, filt, depth, matching, runs)
            results.append((matching, r))
            print(
                f"{name:<25}{depth:>10,}{matching:>10,} | {r.keyset_p50:>10.2f}"
                f"{r.keyset_p99:>7.2f}{r.keyset_server:>8.3f} | {r.baseline_p50:>12.1f}"
                f"{r.baseline_p99:>8.1f}{r.baseline_server:>8.1f} | "
                f"{r.ratio:>5.0f}x{r.server_ratio:>7.0f}x",
                flush=True,
            )
    _verdict(n, results)


def _verdict(n: int, results: list[tuple[int, Result]]) -> None:
    large = [r for matching, r in results if matching >= n // 10]
    every = [r for _, r in results]
    print(
        f"keyset page incl. total, any depth: server time <= "
        f"{max(r.keyset_server for r in every):.3f} ms (target <= 2 ms); end to end p50 <= "
        f"{max(r.keyset_p50 for r in every):.2f} ms, p99 <= "
        f"{max(r.keyset_p99 for r in every):.2f} ms",
        flush=True,
    )
    print(
        f"vs COUNT(*) OVER() + OFFSET on filters matching >= {n // 10:,} rows: server time >= "
        f"{min(r.server_ratio for r in large):.0f}x, end to end p50 >= "
        f"{min(r.ratio for r in large):.0f}x faster (target >= 100x)",
        flush=True,
    )


def run(quick: bool) -> None:
    """Load the VODs into a fresh database and print the comparison."""
    # The baseline and the load are slow on purpose: no slow-query warnings between the rows.
    logging.getLogger("stagecast.db.database").setLevel(logging.ERROR)
    asyncio.run(_main(quick))
