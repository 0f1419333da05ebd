"""The cost of one bounded database call: ``Database.run`` against the bare driver.

Times ``SELECT 1`` three ways in the same run, against the PostgreSQL server of
``STAGECAST_BENCH_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``):

- **Database.run**: a READ unit through the layer (pool checkout, per-attempt timeouts set on the
  server, the transaction, the query through SQLAlchemy, commit);
- **bare asyncpg, transaction**: the same round trips a read needs at least (``BEGIN``, the
  query, ``COMMIT``) on one asyncpg connection;
- **bare asyncpg, query**: ``fetchval("SELECT 1")`` alone, the floor of any driver.

The three are interleaved run by run, so a busy machine slows them alike.
Target (DESIGN.md §4): Database.run ≤ 0.5 ms p50, bare-driver figure beside it.
``python -m bench.db_call [--quick]`` runs it on its own; ``bench.vod`` prints it too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.config import Settings
from stagecast.db import Database, Kind, open_database

SERVER = os.environ.get("STAGECAST_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 0.5


@dataclass(frozen=True)
class Figures:
    """Per-call times in milliseconds, one list per way of calling."""

    layer: list[float]
    bare_transaction: list[float]
    bare_query: list[float]


def p(times: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``times`` (nearest rank)."""
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return (time.perf_counter() - started) * 1000


async def measure(db: Database, runs: int) -> Figures:
    """Time ``runs`` calls of each way, interleaved, after a warm-up of each."""

    async def unit(conn: AsyncConnection) -> object:
        return (await conn.execute(text("SELECT 1"))).scalar()

    # The bare connection goes to the very database the layer's engine uses.
    dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    bare = await asyncpg.connect(dsn)
    try:

        async def layer() -> object:
            return await db.run(unit, kind=Kind.READ)

        async def bare_transaction() -> object:
            async with bare.transaction(readonly=False):
                return await bare.fetchval("SELECT 1")

        async def bare_query() -> object:
            return await bare.fetchval("SELECT 1")

        ways = (layer, bare_transaction, bare_query)
        for _ in range(20):  # warm the pool, the statement caches and the server's plan cache
            for way in ways:
                await way()
        times: tuple[list[float], ...] = ([], [], [])
        for _ in range(runs):
            for way, into in zip(ways, times, strict=True):
                into.append(await _timed(way))
    finally:
        await bare.close()
    return Figures(*times)


def report(figures: Figures) -> str:
    """Return the one line that puts the layer's floor beside the bare driver's."""
    layer, tx, query = figures.layer, figures.bare_transaction, figures.bare_query
    verdict = "met" if p(layer, 0.5) <= TARGET_MS else "MISSED"
    return (
        f"Database.run floor (SELECT 1, READ): p50 {p(layer, 0.5):.3f} ms, "
        f"p99 {p(layer, 0.99):.3f} ms | bare asyncpg BEGIN/SELECT 1/COMMIT: p50 "
        f"{p(tx, 0.5):.3f} ms, p99 {p(tx, 0.99):.3f} ms | bare SELECT 1: p50 "
        f"{p(query, 0.5):.3f} ms, p99 {p(query, 0.99):.3f} ms | "
        f"layer / bare transaction {p(layer, 0.5) / p(tx, 0.5):.1f}x "
        f"(target p50 <= {TARGET_MS} ms: {verdict})"
    )


async def _main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(_env_file=None, data_dir=Path(scratch), database_url=SERVER)
        db = open_database(settings)
        try:
            print(report(await measure(db, runs)), flush=True)
        finally:
            await db.dispose()


def run(quick: bool) -> None:
    """Print the floor of ``Database.run`` beside the bare driver's."""
    logging.getLogger("stagecast.db.database").setLevel(logging.ERROR)
    asyncio.run(_main(1000 if quick else 5000))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.db_call", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    run(parser.parse_args().quick)
