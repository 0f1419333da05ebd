"""Exact library totals, kept in ``vod_counter`` by the transactions that change VODs.

Every VOD counts once in three rows: overall, for its owner and for its channel, each split by
status. Inserts, status changes and soft deletes call ``move`` inside their own transaction, so
a total read from these rows is exact at any snapshot and costs at most three primary-key
lookups, however many VODs there are. Rows are changed one by one in key order, so two
transactions never wait on each other in opposite orders.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db.upsert import insert_or_update
from stagecast.vod.models import STATUSES, vod_counter

Key = tuple[str, int, str]


def _keys(owner_id: int, channel_id: int, status: str) -> list[Key]:
    return [("all", 0, status), ("owner", owner_id, status), ("channel", channel_id, status)]


async def move(
    conn: AsyncConnection,
    *,
    owner_id: int,
    channel_id: int,
    old: str | None,
    new: str | None,
) -> None:
    """Count one VOD out of status ``old`` and into status ``new`` (None: not counted).

    ``old=None`` is an insert, ``new=None`` a delete. Runs in the caller's transaction.
    """
    deltas: Counter[Key] = Counter()
    if old is not None:
        deltas.subtract(_keys(owner_id, channel_id, old))
    if new is not None:
        deltas.update(_keys(owner_id, channel_id, new))
    for (scope, scope_id, status), delta in sorted(deltas.items()):
        if delta > 0:
            await conn.execute(
                insert_or_update(
                    conn,
                    vod_counter,
                    {"scope": scope, "scope_id": scope_id, "status": status, "count": delta},
                    on="pk_vod_counter",
                    set_={"count": vod_counter.c.count + delta},
                )
            )
        elif delta < 0:
            # The row exists (the VOD was counted in); an upsert would check its negative
            # candidate row against the non-negative constraint before seeing the conflict.
            await conn.execute(
                update(vod_counter)
                .where(
                    vod_counter.c.scope == scope,
                    vod_counter.c.scope_id == scope_id,
                    vod_counter.c.status == status,
                )
                .values(count=vod_counter.c.count + delta)
            )


@functools.cache
def total_query() -> Select[Any]:
    """Return the query of the number of live VODs of one scope in some statuses.

    Parameters: ``scope``, ``scope_id`` and ``statuses`` (a list).
    """
    return select(func.coalesce(func.sum(vod_counter.c.count), 0)).where(
        vod_counter.c.scope == bindparam("scope"),
        vod_counter.c.scope_id == bindparam("scope_id"),
        vod_counter.c.status.in_(bindparam("statuses", expanding=True)),
    )


async def total(
    conn: AsyncConnection, scope: str, scope_id: int, statuses: Sequence[str] = STATUSES
) -> int:
    """Return the number of live (not deleted) VODs of ``scope`` in any of ``statuses``."""
    params = {"scope": scope, "scope_id": scope_id, "statuses": list(statuses)}
    return int((await conn.execute(total_query(), params)).scalar_one())
