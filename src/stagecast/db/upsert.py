"""``INSERT ... ON CONFLICT`` on a named unique constraint, the same on SQLite and PostgreSQL.

Both databases give the clause the same meaning, but SQLAlchemy builds it per dialect, and
SQLite names the conflict target by its columns only. So callers name the constraint (as the
naming convention spells it, e.g. ``uq_vod_session_id`` or ``pk_chat_channel``) and this module
picks the dialect's INSERT and the constraint's columns.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, PrimaryKeyConstraint, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

Values = Mapping[str, Any] | Sequence[Mapping[str, Any]]


@functools.cache
def conflict_columns(table: Table, constraint: str) -> tuple[Column[Any], ...]:
    """Return the columns of ``table``'s unique or primary-key constraint named ``constraint``.

    Raises ValueError if the table has no such constraint (a typo must not become a conflict
    target that never matches).
    """
    keys = [c for c in table.constraints if isinstance(c, UniqueConstraint | PrimaryKeyConstraint)]
    for key in keys:
        if key.name == constraint:
            return tuple(key.columns)
    raise ValueError(f"{table.name} has no unique constraint named {constraint!r}")


def _insert(conn: AsyncConnection, table: Table, values: Values) -> Any:
    """Return the dialect's INSERT of ``values`` (one row or many) into ``table``."""
    maker = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = maker(table)
    if isinstance(values, Mapping):
        return statement.values(**values)
    return statement.values(list(values))


def insert_or_update(
    conn: AsyncConnection,
    table: Table,
    values: Values,
    *,
    on: str,
    set_: Mapping[str, Any],
) -> Insert:
    """Build an INSERT of ``values`` that, where constraint ``on`` conflicts, sets ``set_``.

    ``set_`` may refer to the existing row through ``table.c`` (e.g. ``table.c.count + 1``).
    Raises ValueError for an unknown constraint name.
    """
    statement = _insert(conn, table, values)
    update: Insert = statement.on_conflict_do_update(
        index_elements=list(conflict_columns(table, on)), set_=dict(set_)
    )
    return update


def insert_or_ignore(
    conn: AsyncConnection, table: Table, values: Values, *, on: str | None = None
) -> Insert:
    """Build an INSERT of ``values`` that skips the rows conflicting on constraint ``on``.

    Without ``on`` a conflict on any unique constraint skips the row. The statement's
    ``rowcount`` is the number of rows inserted.
    """
    statement = _insert(conn, table, values)
    if on is None:
        ignore: Insert = statement.on_conflict_do_nothing()
    else:
        ignore = statement.on_conflict_do_nothing(index_elements=list(conflict_columns(table, on)))
    return ignore
