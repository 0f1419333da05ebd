"""Insert-or-update and insert-or-ignore on a named constraint, on SQLite and PostgreSQL."""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.models import account
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.db.upsert import conflict_columns, insert_or_ignore, insert_or_update
from stagecast.vod.models import vod_counter


def _counter(count: int, status: str = "ready") -> dict[str, object]:
    return {"scope": "all", "scope_id": 0, "status": status, "count": count}


def _account(account_id: int, username: str) -> dict[str, object]:
    return {
        "id": account_id,
        "username": username,
        "password_hash": "x",
        "role": "viewer",
        "created_at": utcnow(),
    }


async def _counts(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(select(vod_counter.c.status, vod_counter.c.count.label("n")))
    return {r.status: r.n for r in rows}


async def test_insert_or_update_inserts_a_missing_row_then_updates_it(db: Database) -> None:
    """The first call inserts the candidate; the next ones apply ``set_`` to the stored row."""

    async def add(conn: AsyncConnection, *, delta: int) -> None:
        await conn.execute(
            insert_or_update(
                conn,
                vod_counter,
                _counter(delta),
                on="pk_vod_counter",
                set_={"count": vod_counter.c.count + delta},
            )
        )

    for delta in (2, 3, 5):
        await db.run(functools.partial(add, delta=delta), kind=Kind.WRITE)
    assert await db.run(_counts, kind=Kind.READ) == {"ready": 10}


async def test_insert_or_ignore_skips_conflicting_rows_and_counts_the_new_ones(
    db: Database,
) -> None:
    """Of many rows, those whose key exists are skipped; ``rowcount`` is the number inserted."""

    async def unit(conn: AsyncConnection) -> tuple[int, int]:
        first = await conn.execute(insert_or_ignore(conn, vod_counter, [_counter(1)]))
        rows = [_counter(7), _counter(4, "failed"), _counter(9, "processing")]
        again = await conn.execute(insert_or_ignore(conn, vod_counter, rows, on="pk_vod_counter"))
        return int(first.rowcount), int(again.rowcount)

    assert await db.run(unit, kind=Kind.WRITE) == (1, 2)
    assert await db.run(_counts, kind=Kind.READ) == {"ready": 1, "failed": 4, "processing": 9}


async def test_a_conflict_on_another_constraint_than_the_named_one_still_raises(
    db: Database,
) -> None:
    """Only the named constraint is the conflict target: a duplicate primary key is an error."""

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(insert_or_ignore(conn, account, _account(1, "ann")))
        skipped = await conn.execute(
            insert_or_ignore(conn, account, _account(2, "ann"), on="uq_account_username")
        )
        assert skipped.rowcount == 0
        await conn.execute(
            insert_or_ignore(conn, account, _account(1, "bob"), on="uq_account_username")
        )

    with pytest.raises(IntegrityError):
        await db.run(unit, kind=Kind.WRITE)


def test_an_unknown_constraint_name_is_refused() -> None:
    """A misspelt constraint raises instead of building a target that never matches."""
    assert [c.name for c in conflict_columns(vod_counter, "pk_vod_counter")] == [
        "scope",
        "scope_id",
        "status",
    ]
    with pytest.raises(ValueError, match="uq_vod_counter_scope"):
        conflict_columns(vod_counter, "uq_vod_counter_scope")
