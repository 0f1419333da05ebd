"""Apply the Alembic migrations, through the retry layer like every other database call."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.db.database import Database
from stagecast.db.retry import Kind

_MIGRATIONS = Path(__file__).parent / "migrations"
# Several processes may start at once against one PostgreSQL: one migrates, the rest wait.
_ADVISORY_LOCK = 0x5374_6167  # "Stag"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(db: Database, revision: str = "heads") -> None:
    """Bring the schema up to ``revision``. Idempotent; safe to run from several processes."""

    async def unit(conn: AsyncConnection) -> None:
        if not db.is_sqlite:
            # Waiting for another process's migration is expected here, not a lock problem.
            await conn.execute(text("SET LOCAL lock_timeout = '230s'"))
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))

    await db.run(
        unit, kind=Kind.IDEMPOTENT_WRITE, name="migrate", deadline=300, attempt_timeout=240
    )


async def current_revision(db: Database) -> tuple[str, ...]:
    """Return the schema revisions (one per branch head) the database is at; () before any."""

    async def unit(conn: AsyncConnection) -> tuple[str, ...]:
        def read(sync: Connection) -> tuple[str, ...]:
            from alembic.runtime.migration import MigrationContext

            return tuple(sorted(MigrationContext.configure(sync).get_current_heads()))

        return await conn.run_sync(read)

    return await db.run(unit, kind=Kind.READ, name="current_revision")
