"""The history page reads the partial index on PostgreSQL: no sequential scan, at any depth."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.models import account
from stagecast.channels.models import channel
from stagecast.chat import messages
from stagecast.db import Database, Kind, open_database
from stagecast.db.schema import utcnow
from tests.conftest import make_settings, needs_postgres, truncate_all

pytestmark = needs_postgres
ROWS = 60_000


@pytest.fixture
async def loaded(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Database, int]]:
    """Two channels' worth of messages (one in 50 deleted), analysed; yields the first channel."""
    db = open_database(make_settings(tmp_path, pg_url))
    await truncate_all(db)

    async def unit(conn: AsyncConnection) -> int:
        now = utcnow()
        owner = (
            await conn.execute(
                insert(account)
                .values(username="owner", password_hash="!", role="broadcaster", created_at=now)
                .returning(account.c.id)
            )
        ).scalar_one()
        ids = []
        for slug in ("main", "noise"):
            ids.append(
                (
                    await conn.execute(
                        insert(channel)
                        .values(
                            slug=slug,
                            owner_id=owner,
                            title=slug,
                            description="",
                            visibility="public",
                            profile="passthrough",
                            dvr_window_seconds=0,
                            key_lookup=slug,
                            key_hash="x",
                            key_version=1,
                            key_rotated_at=now,
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(channel.c.id)
                    )
                ).scalar_one()
            )
        await conn.execute(
            text(
                "INSERT INTO chat_message (channel_id, seq, author_id, body, sent_at, deleted_at) "
                "SELECT CASE WHEN g % 4 = 0 THEN CAST(:noise AS bigint) "
                "ELSE CAST(:main AS bigint) END, g, CAST(:owner AS bigint), 'm' || g, now(), "
                "CASE WHEN g % 50 = 0 THEN now() END "
                "FROM generate_series(1, CAST(:n AS integer)) AS g"
            ),
            {"main": ids[0], "noise": ids[1], "owner": owner, "n": ROWS},
        )
        return int(ids[0])

    channel_id = await db.run(unit, kind=Kind.WRITE, deadline=60, attempt_timeout=50)

    async def analyze(conn: AsyncConnection) -> None:
        await conn.execute(text("ANALYZE chat_message"))

    await db.run(analyze, kind=Kind.IDEMPOTENT_WRITE, deadline=60, attempt_timeout=50)
    yield db, channel_id
    await truncate_all(db)
    await db.dispose()


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every node of an EXPLAIN (FORMAT JSON) plan."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.mark.parametrize("before", [None, ROWS // 2, 200])
async def test_history_pages_use_the_partial_index(
    loaded: tuple[Database, int], before: int | None
) -> None:
    """Newest page, middle and deep pages: an index scan of ix_chat_message_visible, no Seq Scan."""
    db, channel_id = loaded
    statement = messages.page_statement(channel_id, before, 50)
    sql = str(
        statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )

    async def explain(conn: AsyncConnection) -> dict[str, Any]:
        plan = (await conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar_one()
        return plan[0]["Plan"]  # type: ignore[no-any-return]

    plan = await db.run(explain, kind=Kind.READ)
    found = list(nodes(plan))
    on_messages = [n for n in found if n.get("Relation Name") == "chat_message"]
    assert on_messages, found
    assert all(n["Node Type"] != "Seq Scan" for n in on_messages), found
    assert any(n.get("Index Name") == "ix_chat_message_visible" for n in on_messages), found
    page, more = await messages.page(db, channel_id, before=before, limit=50)
    assert more
    assert len(page) == 50
