"""Every library page query walks the index made for its filter: no table scan, no sort."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from stagecast.auth.models import account
from stagecast.channels.models import channel
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.models import live_session
from stagecast.vod.cursor import Position
from stagecast.vod.library import Filter, library_query, public_query
from stagecast.vod.models import STATUSES, vod

ROWS = 20_000
OWNERS = 100
CHANNELS = 200


class Explain(Executable, ClauseElement):
    """``EXPLAIN`` of a statement, with its parameters bound as the service binds them."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain_postgresql(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + str(compiler.process(element.statement, **kw))


@compiles(Explain, "sqlite")
def _explain_sqlite(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN QUERY PLAN " + str(compiler.process(element.statement, **kw))


async def _load(conn: AsyncConnection) -> None:
    """Many VODs over many owners and channels, every status and visibility, some deleted."""
    rng = random.Random(7)
    now = utcnow()
    await conn.execute(
        insert(account),
        [
            {
                "id": i,
                "username": f"u{i}",
                "password_hash": "x",
                "role": "broadcaster",
                "created_at": now,
            }
            for i in range(1, OWNERS + 1)
        ],
    )
    await conn.execute(
        insert(channel),
        [
            {
                "id": c,
                "slug": f"c{c}",
                "owner_id": 1 + c % OWNERS,
                "title": "t",
                "description": "",
                "visibility": "public",
                "profile": "passthrough",
                "dvr_window_seconds": 0,
                "key_lookup": f"k{c}",
                "key_hash": "h",
                "key_version": 1,
                "key_rotated_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for c in range(1, CHANNELS + 1)
        ],
    )
    sessions, vods = [], []
    for i in range(1, ROWS + 1):
        channel_id = 1 + i % CHANNELS
        at = now - timedelta(minutes=ROWS - i)
        sessions.append(
            {
                "id": i,
                "channel_id": channel_id,
                "state": "ended",
                "title": "s",
                "profile": "passthrough",
                "key_version": 1,
                "owner_node": "n",
                "reconnects": 0,
                "created_at": at,
                "ended_at": at,
            }
        )
        vods.append(
            {
                "id": i,
                "session_id": i,
                "channel_id": channel_id,
                "owner_id": 1 + channel_id % OWNERS,
                "title": f"Show {i}",
                "description": "",
                "visibility": rng.choice(["inherit", "inherit", "public", "private", "unlisted"]),
                "status": rng.choices(STATUSES, weights=(2, 90, 8))[0],
                "ended_at": at,
                "created_at": at,
                "updated_at": at,
                "deleted_at": at if rng.random() < 0.1 else None,
            }
        )
    await conn.execute(insert(live_session), sessions)
    await conn.execute(insert(vod), vods)
    await conn.execute(text("ANALYZE"))


def _cases() -> list[tuple[str, Any, str]]:
    deep = Position(utcnow() - timedelta(minutes=ROWS // 2), ROWS // 2)
    cases = []
    for after, where in ((None, "page 1"), (deep, "deep")):
        for filt, index in (
            (Filter(owner_id=3), "ix_vod_owner_created"),
            (Filter(owner_id=3, status="ready"), "ix_vod_owner_status_created"),
            (Filter(owner_id=3, search="show 1"), "ix_vod_owner_created"),
            (Filter(channel_id=7), "ix_vod_channel_created"),
            (Filter(channel_id=7, status="failed"), "ix_vod_channel_status_created"),
            (Filter(), "ix_vod_created"),
            (Filter(status="processing"), "ix_vod_status_created"),
        ):
            cases.append((f"{filt} {where}", library_query(filt, after, 20), index))
        cases.append(
            (f"public {where}", public_query(7, True, after, 20), "ix_vod_listed_channel_created")
        )
        cases.append(
            (
                f"explicit {where}",
                public_query(7, False, after, 20),
                "ix_vod_public_channel_created",
            )
        )
    return cases


ORDERED = (
    "Filter(owner_id=3, channel_id=None, status=None, search=None)",
    "Filter(owner_id=3, channel_id=None, status='ready', search=None)",
    "Filter(owner_id=None, channel_id=7, status=None, search=None)",
    "Filter(owner_id=None, channel_id=None, status=None, search=None)",
    "public page 1",
)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def test_each_page_query_uses_its_index_and_never_scans_the_table(db: Database) -> None:
    """EXPLAIN on the real planner: the filter's index, in order, with no Seq Scan or sort."""

    async def unit(conn: AsyncConnection) -> None:
        await _load(conn)

    await db.run(unit, kind=Kind.WRITE, deadline=120, attempt_timeout=110)

    async def plans(conn: AsyncConnection) -> list[tuple[str, str, Any]]:
        found = []
        for name, (query, params), index in _cases():
            rows = (await conn.execute(Explain(query), params)).all()
            found.append((name, index, rows))
        return found

    for name, index, rows in await db.run(plans, kind=Kind.READ, deadline=30, attempt_timeout=25):
        if db.is_sqlite:
            _check_sqlite(name, index, [str(r[-1]) for r in rows])
        else:
            plan = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
            _check_postgres(name, index, _nodes(plan[0]["Plan"]))


def _check_sqlite(name: str, index: str, details: list[str]) -> None:
    on_vod = [d for d in details if d.startswith(("SCAN vod ", "SEARCH vod "))]
    assert on_vod, (name, details)
    assert all(index in d for d in on_vod), (name, details)
    assert not any("TEMP B-TREE" in d for d in details), (name, details)


def _check_postgres(name: str, index: str, nodes: list[dict[str, Any]]) -> None:
    on_vod = [n for n in nodes if n.get("Relation Name") == "vod"]
    assert not any(n["Node Type"] == "Seq Scan" for n in on_vod), (name, nodes)
    used = {n["Index Name"] for n in nodes if str(n.get("Index Name", "")).startswith("ix_vod")}
    assert used == {index}, (name, nodes)
    if name.startswith(ORDERED):
        # Where many rows match, the index is read in order, stopping after limit + 1 (with
        # few matches the planner may rather fetch them all from the index and sort them).
        assert not any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes), name


@pytest.mark.parametrize("status", [None, "ready"])
def test_the_total_comes_from_the_counter_in_the_same_statement(status: str | None) -> None:
    """The page query carries the total as a counter lookup, never a count of vod rows."""
    sql = str(library_query(Filter(owner_id=1, status=status), None, 20)[0])
    assert "vod_counter" in sql
    assert "count(" not in sql.lower().replace("vod_counter.count", "")
    assert "OFFSET" not in sql.upper()
