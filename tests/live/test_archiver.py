"""The live edge does not wait for the database: rows follow behind, none lost."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.bus import MemoryBus
from stagecast.channels import service as channels
from stagecast.db import Database, Kind, Limits, create_engine
from stagecast.db.migrate import upgrade
from stagecast.db.retry import Backoff
from stagecast.live import service
from stagecast.live.hooks import SessionHooks
from stagecast.live.models import segment
from stagecast.live.session import LiveDeps, LiveSession
from stagecast.live.storage import LocalStorage
from tests.conftest import make_settings


async def test_a_locked_database_delays_the_rows_not_the_playlist(
    tmp_path: Path, cmaf: tuple[bytes, list[bytes]]
) -> None:
    """While another writer holds SQLite, segments still reach the playlist; rows follow after."""
    settings = make_settings(tmp_path / "data", sqlite_busy_timeout=0.05)
    db = Database(
        create_engine(settings),
        Limits(attempt_timeout=0.3, deadline=0.6, max_attempts=3, backoff=Backoff(0.02, 0.05)),
    )
    await upgrade(db)
    owner = await accounts.create_account(db, "caster", "password123", "broadcaster")
    created, _ = await channels.create_channel(db, owner, "edge")
    row = await service.open_session(
        db, channel_id=created.id, title="t", profile="passthrough", key_version=1,
        node="n",
    )  # fmt: skip
    deps = LiveDeps(db, LocalStorage(tmp_path / "media"), SessionHooks(), MemoryBus(), 6, 2.0)
    session = LiveSession(deps, row, slug="edge", dvr_seconds=0, epoch=0, next_sequences={})
    init, segments = cmaf
    await session.add_init("source", init)
    assert await session.flush(5)

    blocker = sqlite3.connect(settings.data_dir / "stagecast.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    for data in segments:
        assert await session.add_segment("source", data)
    assert time.monotonic() - started < 1.0  # the live edge did not wait for the database
    assert session.playlist_text("source").count("#EXTINF") == 5  # type: ignore[union-attr]
    assert session.unarchived > 0
    blocker.execute("ROLLBACK")
    blocker.close()

    assert await session.flush(20)
    assert session.unarchived == 0

    async def sequences(conn: AsyncConnection) -> list[int]:
        rows = await conn.execute(
            select(segment.c.sequence).where(segment.c.session_id == row.id).order_by("sequence")
        )
        return [r[0] for r in rows]

    assert await db.run(sequences, kind=Kind.READ) == [0, 1, 2, 3, 4]
    await session.close_playlists()
    await db.dispose()
