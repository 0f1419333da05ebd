"""A durable job queue on one table: claims that lease, attempts with a cap, fenced outcomes.

A job row has a state (``pending`` or, while held, ``running`` under the table's own name), an
attempt counter and one due time: while pending, when it may run next; while running, when the
lease runs out and another claimer may take it over (the holder crashed or hung).

``claim`` takes due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
claimers split them; SQLite serializes writers (``BEGIN IMMEDIATE``), so the same statement is
safe there. Each claim counts one attempt. A row whose attempts are used up by holders that
never reported back is handed to the caller as exhausted instead, for it to close with its own
side effects. Every outcome the holder writes back is fenced by its attempt number (``holds``),
so a holder that lost its lease cannot overwrite the new holder's result.

The functions run in the caller's transaction (a ``Database.run`` unit); times are UTC, delays
and leases in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, FromClause, Table, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db.schema import Record, utcnow


@dataclass(frozen=True)
class Claimed:
    """A row a claimer holds for one attempt; ``attempt`` (1-based) fences what it writes."""

    row: Record
    attempt: int


@dataclass(frozen=True)
class Claims:
    """What one ``claim`` took: rows now held, and rows whose attempts were already used up."""

    held: list[Claimed]
    exhausted: list[Record]


@dataclass(frozen=True)
class JobQueue:
    """The job columns of one table and the names of its two active states.

    The table has an ``id`` key, a ``state`` and an ``attempts`` column, and ``due``.
    ``touched``, when the table has one, is stamped with the time of every change the queue
    makes; ``finished`` is stamped when a job is closed.
    """

    table: Table
    due: Column[Any]
    running: str = "running"
    pending: str = "pending"
    touched: Column[Any] | None = None
    finished: Column[Any] | None = None

    def __post_init__(self) -> None:
        for name in (self.pending, self.running):
            if not name.isidentifier():
                raise ValueError(f"a job state must be a plain word, got {name!r}")

    @property
    def active(self) -> list[Any]:
        """Return the states a job can be claimed in (a running one once its lease lapses)."""
        # Literals, not parameters, so the planner matches a partial index on these states.
        return [literal_column(f"'{name}'") for name in (self.pending, self.running)]

    def _stamp(self, values: dict[str, Any], now: datetime) -> dict[str, Any]:
        if self.touched is not None:
            values[self.touched.name] = now
        return values

    async def claim(
        self,
        conn: AsyncConnection,
        *,
        limit: int,
        lease: float,
        max_attempts: int,
        columns: Sequence[Any] = (),
        source: FromClause | None = None,
    ) -> Claims:
        """Take up to ``limit`` due jobs for ``lease`` seconds, oldest due first.

        Returned rows carry ``id``, ``attempts`` (before this claim) and ``columns``, which may
        come from tables joined in ``source`` (rows without a match are not taken). A row whose
        ``max_attempts`` are used up is not taken but returned in ``exhausted``, still locked
        by this transaction for the caller to close.
        """
        t = self.table
        now = utcnow()
        query = select(t.c.id, t.c.attempts, *columns)
        if source is not None:
            query = query.select_from(source)
        rows = (
            await conn.execute(
                query.where(t.c.state.in_(self.active), self.due <= now)
                .order_by(self.due)
                .limit(limit)
                .with_for_update(skip_locked=True, of=t)
            )
        ).all()
        held = [Claimed(r, r.attempts + 1) for r in rows if r.attempts < max_attempts]
        if held:
            values: dict[str, Any] = {"state": self.running, "attempts": t.c.attempts + 1}
            values[self.due.name] = now + timedelta(seconds=lease)
            await conn.execute(
                update(t)
                .where(t.c.id.in_([c.row.id for c in held]))
                .values(self._stamp(values, now))
            )
        return Claims(held, [r for r in rows if r.attempts >= max_attempts])

    async def holds(self, conn: AsyncConnection, job_id: int, attempt: int) -> bool:
        """Lock job ``job_id`` if its ``attempt`` is still running (the claim was not lost)."""
        t = self.table
        row = await conn.execute(
            select(t.c.id)
            .where(t.c.id == job_id, t.c.state == self.running, t.c.attempts == attempt)
            .with_for_update()
        )
        return row.first() is not None

    async def retry(self, conn: AsyncConnection, job_id: int, delay: float, **values: Any) -> None:
        """Make a held job pending again, due in ``delay`` seconds, setting ``values`` too."""
        now = utcnow()
        values |= {"state": self.pending, self.due.name: now + timedelta(seconds=delay)}
        await conn.execute(
            update(self.table).where(self.table.c.id == job_id).values(self._stamp(values, now))
        )

    async def release(self, conn: AsyncConnection, job_id: int, attempt: int) -> None:
        """Give a held job back untried: pending, due now, its attempt not counted."""
        if await self.holds(conn, job_id, attempt):
            await self.retry(conn, job_id, 0.0, attempts=attempt - 1)

    async def close(self, conn: AsyncConnection, job_id: int, state: str, **values: Any) -> None:
        """Close a job as ``state`` (a terminal one of the table), setting ``values`` too."""
        now = utcnow()
        values["state"] = state
        if self.finished is not None:
            values[self.finished.name] = now
        await conn.execute(
            update(self.table).where(self.table.c.id == job_id).values(self._stamp(values, now))
        )
