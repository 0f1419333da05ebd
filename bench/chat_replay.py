"""Chat replay of a VOD with 1,000,000 messages on PostgreSQL, against the same page without
its index (``python -m bench chat``, or alone: ``python -m bench.chat_replay [--quick]``).

One four-hour broadcast gets ``rows`` messages (100,000 with ``--quick``) at 0.1 s media-time
resolution (so many share a media time and the id breaks the tie), one in 97 deleted by a
moderator; around it, another broadcast's messages (a tenth as many) and messages sent while
nothing was on air (a twentieth), all bulk-loaded with ``INSERT ... SELECT generate_series``.
At the start, the middle, the middle one page on (a cursor) and the last minute it times:

- **server**: PostgreSQL's own execution time of the page query (``EXPLAIN ANALYZE``, the
  statement ``chat.replay.page`` runs), median of 15; the target is ≤ 1 ms;
- **page**: ``chat.replay.page`` end to end (cursor, one ``Database.run`` READ), median of 15;
- **http**: ``GET /api/v1/vods/{id}/chat`` through the whole app in process (ASGI), median
  of 15;
- **baseline**: the same query with ``ix_chat_message_replay`` dropped inside a transaction
  that is rolled back (what every page cost before migration 0007).

It also times building the index over the loaded table (``CREATE INDEX`` in a rolled-back
transaction), which is what migration 0007 costs on an existing database of that size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.chat_setup import scratch_database
from stagecast.app import create_app
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.chat import replay
from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database
from stagecast.db.migrate import upgrade
from stagecast.db.schema import utcnow
from stagecast.live.hooks import EndedSession
from stagecast.live.models import live_session, segment
from stagecast.vod import jobs
from stagecast.vod.models import vod_job

SERVER = os.environ.get("STAGECAST_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_NAME = "stagecast_bench_replay"
SECRET = "bench-secret"
DURATION = 4 * 3600.0  # seconds of broadcast
LIMIT = 100  # what the VOD page asks for
REPEATS = 15
_INDEX = "ix_chat_message_replay"
_INDEX_SQL = (
    f"CREATE INDEX {_INDEX} ON chat_message (session_id, media_time, seq) "
    "WHERE deleted_at IS NULL AND session_id IS NOT NULL"
)
# Main broadcast: seq 1..n. Other broadcast: n+1..n+n/10. Off air: the n/20 after that.
_BULK = """
INSERT INTO chat_message (channel_id, seq, author_id, body, session_id, media_time, sent_at,
                          deleted_at)
SELECT CAST(:channel AS bigint), g, CAST(:author AS bigint) + (g % 5), 'message number ' || g,
       CASE WHEN g <= CAST(:n AS integer) THEN CAST(:main AS bigint)
            WHEN g <= CAST(:n AS integer) * 11 / 10 THEN CAST(:other AS bigint) END,
       CASE WHEN g <= CAST(:n AS integer)
            THEN CAST(round(g * CAST(:duration AS numeric) / CAST(:n AS integer), 1)
                      AS double precision)
            WHEN g <= CAST(:n AS integer) * 11 / 10 THEN CAST(g AS double precision) / 10 END,
       now(), CASE WHEN g % 97 = 0 THEN now() END
FROM generate_series(1, CAST(:n AS integer) * 23 / 20) AS g
"""


async def _session(conn: AsyncConnection, channel_id: int) -> int:
    now = utcnow()
    session_id = (
        await conn.execute(
            live_session.insert()
            .values(
                channel_id=channel_id, state="ended", title="Bench", profile="passthrough",
                key_version=1, owner_node="bench:1", reconnects=0, created_at=now,
                started_at=now, ended_at=now,
            )
            .returning(live_session.c.id)
        )
    ).scalar_one()  # fmt: skip
    await conn.execute(
        segment.insert().values(
            session_id=session_id, rendition="high", sequence=0, epoch=0, discontinuity=False,
            duration=2.0, byte_size=1, program_date_time=now,
            path=f"{channel_id}/{session_id}/high/seg-00000000.m4s", created_at=now,
        )
    )  # fmt: skip
    return int(session_id)


async def _load(db: Database, rows: int) -> tuple[int, int]:
    """Load the broadcasts; return the VOD id and the session id of the big one."""
    owner = await accounts.create_account(db, "replay-owner", "bench-password", "broadcaster")
    made, _ = await channels.create_channel(db, owner, "replay")
    first = None
    for i in range(5):
        author = await accounts.create_account(db, f"viewer{i}", "bench-password", "viewer")
        first = first if first is not None else author.id

    async def unit(conn: AsyncConnection) -> tuple[int, int]:
        await conn.execute(text("SET LOCAL synchronous_commit = off"))
        main, other = await _session(conn, made.id), await _session(conn, made.id)
        await conn.execute(
            text(_BULK),
            {"channel": made.id, "author": first, "main": main, "other": other, "n": rows,
             "duration": DURATION},
        )  # fmt: skip
        now = utcnow()
        vod_id = await jobs.create_for_session(
            conn, EndedSession(main, made.id, "Bench", now, now, "bench")
        )
        assert vod_id is not None
        await conn.execute(
            update(vod_job).where(vod_job.c.vod_id == vod_id).values(state="done", finished_at=now)
        )
        await jobs.set_status(conn, vod_id, "ready")
        return vod_id, main

    loaded = await db.run(unit, kind=Kind.WRITE, name="bulk", deadline=1800, attempt_timeout=1700)

    async def analyze(conn: AsyncConnection) -> None:
        await conn.execute(text("ANALYZE chat_message"))

    await db.run(analyze, kind=Kind.IDEMPOTENT_WRITE, deadline=600, attempt_timeout=500)
    return loaded


def _sql(session_id: int, start: float, after: tuple[float, int] | None) -> str:
    statement = replay.page_statement(after is not None)
    params = replay.page_params(session_id, start, LIMIT, after)
    compiled = statement.params(**params).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


async def _server_ms(conn: asyncpg.Connection, sql: str, *, without_index: bool = False) -> float:
    """Return PostgreSQL's execution time of ``sql`` (without the index: in a transaction
    that drops it and is rolled back)."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        if without_index:
            await conn.execute(f"DROP INDEX {_INDEX}")
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
    finally:
        await transaction.rollback()
    return float(json.loads(plan)[0]["Execution Time"])


async def _index_build_s(conn: asyncpg.Connection) -> float:
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"DROP INDEX {_INDEX}")
        started = time.perf_counter()
        await conn.execute(_INDEX_SQL)
        return time.perf_counter() - started
    finally:
        await transaction.rollback()


async def _median_ms(call: Callable[[], Awaitable[object]], repeats: int = REPEATS) -> float:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls)


async def _positions(db: Database, ids: tuple[int, int]) -> list[tuple[str, float, str | None]]:
    """The offsets measured: (label, from, cursor)."""
    vod_id, session_id = ids
    middle = DURATION / 2
    first = await replay.page(
        db, SECRET, scope=vod_id, session_id=session_id, start=middle, limit=LIMIT
    )
    return [
        ("start", 0.0, None),
        ("middle", middle, None),
        ("middle+1 page", middle, first.next_cursor),
        ("last minute", DURATION - 60, None),
    ]


async def _measure(
    db: Database, raw: asyncpg.Connection, client: httpx.AsyncClient, ids: tuple[int, int]
) -> None:
    vod_id, session_id = ids
    url = f"/api/v1/vods/{vod_id}/chat"
    for label, start, cursor in await _positions(db, ids):
        after = replay.decode_cursor(SECRET, vod_id, cursor) if cursor else None
        sql = _sql(session_id, start, after)
        server = statistics.median([await _server_ms(raw, sql) for _ in range(REPEATS)])
        params: dict[str, Any] = {"from": str(start), "limit": str(LIMIT)}
        if cursor:
            params["cursor"] = cursor

        async def one_page(start: float = start, cursor: str | None = cursor) -> object:
            return await replay.page(
                db, SECRET, scope=vod_id, session_id=session_id, start=start, limit=LIMIT,
                cursor=cursor,
            )  # fmt: skip

        async def one_request(params: dict[str, Any] = params) -> object:
            return await client.get(url, params=params)

        page = await _median_ms(one_page)
        sample = await client.get(url, params=params)
        assert sample.status_code == 200, sample.text
        http = await _median_ms(one_request)
        baseline = statistics.median(
            [await _server_ms(raw, sql, without_index=True) for _ in range(3)]
        )
        print(
            f"  {label:>14}: {len(sample.json()['items']):3d} messages  server {server:6.3f} ms"
            f"  page {page:5.2f} ms  http {http:5.2f} ms   without the index {baseline:8.1f} ms"
            f"  ratio {baseline / server:7.0f}x",
            flush=True,
        )


async def replay_suite(admin_url: str, rows: int) -> None:
    """Load a VOD with ``rows`` chat messages and time its replay pages (target ≤ 1 ms)."""
    print(f"-- chat replay page, a VOD with {rows:,} messages, PostgreSQL", flush=True)
    logging.getLogger("stagecast").setLevel(logging.ERROR)
    try:
        url = await scratch_database(admin_url, DB_NAME)
    except OSError as exc:
        print(f"  skipped: PostgreSQL not reachable ({exc})", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="stagecast-bench-replay-") as tmp:
        settings = Settings(
            _env_file=None, data_dir=Path(tmp), database_url=url, secret_key=SECRET,
            host="127.0.0.1", port=0, rtmp_host="127.0.0.1", rtmp_port=0, log_level="error",
        )  # fmt: skip
        db = open_database(settings)
        raw = await asyncpg.connect(url)
        try:
            await upgrade(db)
            started = time.perf_counter()
            ids = await _load(db, rows)
            print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
            build = statistics.median([await _index_build_s(raw) for _ in range(3)])
            print(f"  building {_INDEX} over the table (migration 0007): {build:.2f} s")
            app = create_app(settings, migrate=False)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                    await _measure(db, raw, c, ids)
        finally:
            await raw.close()
            await db.dispose()
            conn = await asyncpg.connect(
                admin_url.replace("postgresql+asyncpg://", "postgresql://")
            )
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            finally:
                await conn.close()


def rows_for(quick: bool) -> int:
    """Return the number of messages of the measured VOD."""
    return 100_000 if quick else 1_000_000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.chat_replay")
    parser.add_argument("--quick", action="store_true", help="100,000 messages instead of 1M")
    asyncio.run(replay_suite(SERVER, rows_for(parser.parse_args().quick)))
