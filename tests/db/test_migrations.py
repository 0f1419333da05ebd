"""Migrations and table definitions agree, and migrating is idempotent."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

import stagecast
from stagecast.db import Database, Kind
from stagecast.db.migrate import current_revision, upgrade
from stagecast.db.schema import metadata


def _import_all_models() -> None:
    for module in pkgutil.walk_packages(stagecast.__path__, "stagecast."):
        if module.name.endswith(".models"):
            importlib.import_module(module.name)


async def test_migrations_match_the_table_definitions(db: Database) -> None:
    """After migrating, the schema has exactly the tables, columns and indexes the code declares."""
    _import_all_models()

    def diff(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    async def unit(conn: AsyncConnection) -> list[Any]:
        return await conn.run_sync(diff)

    assert await db.run(unit, kind=Kind.READ, deadline=30, attempt_timeout=25) == []


async def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    """Running the migrations again changes nothing and leaves the revision at head."""
    before = await current_revision(db)
    await upgrade(db)
    assert await current_revision(db) == before
    assert before
