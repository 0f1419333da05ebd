"""The chat history page at millions of messages on PostgreSQL, against COUNT(*) OVER() + OFFSET.

Messages are bulk-loaded with ``INSERT ... SELECT generate_series`` (one in 97 soft-deleted,
and a second channel's messages interleaved, so the partial index and the channel filter both
matter). Each depth is timed as PostgreSQL's own execution time of the page query
(``EXPLAIN ANALYZE``) and as wall time through ``messages.page`` (the retry layer, one round
trip), median of several runs; the baseline is the offset query at the same depth.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.chat_setup import scratch_database
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.chat import messages
from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database
from stagecast.db.migrate import upgrade

PAGE = 50
_BULK = """
INSERT INTO chat_message (channel_id, seq, author_id, body, sent_at, deleted_at)
SELECT CASE WHEN g % 10 = 0 THEN CAST(:other AS bigint) ELSE CAST(:channel AS bigint) END,
       g, CAST(:author AS bigint) + (g % 5), 'message number ' || g,
       now() - make_interval(secs => (CAST(:n AS integer) - g)),
       CASE WHEN g % 97 = 0 THEN now() END
FROM generate_series(1, CAST(:n AS integer)) AS g
"""
_OFFSET = """
SELECT m.seq, a.username, m.body, m.sent_at, COUNT(*) OVER () AS total
FROM chat_message m JOIN account a ON a.id = m.author_id
WHERE m.channel_id = CAST(:channel AS bigint) AND m.deleted_at IS NULL
ORDER BY m.seq DESC OFFSET CAST(:offset AS bigint) LIMIT CAST(:limit AS bigint)
"""


async def _load(db: Database, rows: int) -> tuple[int, int]:
    owner = await accounts.create_account(db, "history-owner", "bench-password", "broadcaster")
    main, _ = await channels.create_channel(db, owner, "history")
    other, _ = await channels.create_channel(db, owner, "noise")
    first = None
    for i in range(5):
        made = await accounts.create_account(db, f"author{i}", "bench-password", "viewer")
        first = first if first is not None else made.id

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL synchronous_commit = off"))
        await conn.execute(
            text(_BULK), {"channel": main.id, "other": other.id, "author": first, "n": rows}
        )

    await db.run(unit, kind=Kind.WRITE, name="bulk", deadline=1800, attempt_timeout=1700)

    async def analyze(conn: AsyncConnection) -> None:
        await conn.execute(text("ANALYZE chat_message"))

    await db.run(
        analyze, kind=Kind.IDEMPOTENT_WRITE, name="analyze", deadline=600, attempt_timeout=500
    )
    return main.id, rows


async def _explain_ms(db: Database, sql: str, params: dict[str, Any]) -> float:
    async def unit(conn: AsyncConnection) -> float:
        plan = (
            await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params)
        ).scalar_one()
        return float(plan[0]["Execution Time"])

    return await db.run(unit, kind=Kind.READ, name="explain", deadline=600, attempt_timeout=500)


def _page_sql(channel_id: int, before: int | None) -> str:
    statement = messages.page_statement(channel_id, before, PAGE)
    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


async def _measure(
    db: Database, channel_id: int, rows: int, depth: int
) -> tuple[float, float, float]:
    before = rows - depth if depth else None
    server = statistics.median(
        [await _explain_ms(db, _page_sql(channel_id, before), {}) for _ in range(15)]
    )
    walls = []
    for _ in range(15):
        started = time.perf_counter()
        await messages.page(db, channel_id, before=before, limit=PAGE)
        walls.append((time.perf_counter() - started) * 1000)
    # Keyset depth d corresponds to roughly 0.89 * d visible rows of this channel.
    offset = int(depth * 0.9 * 96 / 97)
    repeats = 3 if depth > 100_000 else 7
    params = {"channel": channel_id, "offset": offset, "limit": PAGE + 1}
    baseline = statistics.median([await _explain_ms(db, _OFFSET, params) for _ in range(repeats)])
    return server, statistics.median(walls), baseline


async def history_suite(admin_url: str, rows: int, depths: list[int]) -> None:
    """Bulk-load ``rows`` messages and time the history page at each depth."""
    print(f"-- history page, {rows:,} messages, PostgreSQL", flush=True)
    logging.getLogger("stagecast").setLevel(logging.ERROR)  # the bulk load is meant to be slow
    name = "stagecast_bench_history"
    try:
        url = await scratch_database(admin_url, name)
    except OSError as exc:
        print(f"  skipped: PostgreSQL not reachable ({exc})", flush=True)
        return
    settings = Settings(_env_file=None, database_url=url, secret_key="bench")  # type: ignore[call-arg]
    db = open_database(settings)
    try:
        await upgrade(db)
        started = time.perf_counter()
        channel_id, _ = await _load(db, rows)
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        for depth in depths:
            server, wall, baseline = await _measure(db, channel_id, rows, depth)
            print(
                f"  depth {depth:>9,}: keyset {server:6.3f} ms server, {wall:6.2f} ms wall   "
                f"COUNT(*) OVER()+OFFSET {baseline:9.1f} ms   ratio {baseline / server:8.0f}x",
                flush=True,
            )
    finally:
        await db.dispose()
        conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
