"""``INSERT ... ON CONFLICT``: the same construct on SQLite and PostgreSQL, by dialect.

Both databases implement the clause with the same meaning; SQLAlchemy exposes it per dialect,
so this picks the right one for a connection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def insert_for(conn: AsyncConnection, table: Table) -> Any:
    """Return an INSERT for ``table`` that supports ``on_conflict_do_*`` on ``conn``'s dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
