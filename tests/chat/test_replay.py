"""Chat replay beside a VOD: ``GET /api/v1/vods/{id}/chat`` pages the broadcast's chat by
media time, with the VOD's visibility and without deleted or held messages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.service import create_account, get_account
from stagecast.channels import tokens
from stagecast.channels.service import create_channel
from stagecast.chat import messages, replay
from stagecast.chat.messages import Draft, Message, OnAirMark
from stagecast.core import Core
from stagecast.db import Database, Kind, open_database
from stagecast.db.schema import utcnow
from stagecast.errors import BadRequest
from stagecast.live.hooks import EndedSession
from stagecast.live.models import live_session, segment
from stagecast.vod import jobs
from tests.chat.conftest import Room, make_room
from tests.conftest import make_settings, needs_postgres, truncate_all

SECRET = "test-secret-key"
Line = tuple[str, float | None, str]  # author, media time (None: off air), body


@pytest.fixture
async def room(app: FastAPI) -> Room:
    """A public channel with an owner, a moderator and two viewers."""
    return await make_room(app.state.runtime.core)


def core_of(app: FastAPI) -> Core:
    """Return the app's core."""
    return app.state.runtime.core  # type: ignore[no-any-return]


async def go_live(core: Core, channel_id: int, *, started_ago: float = 60.0) -> int:
    """Put a session of ``channel_id`` on air (as if an encoder had sent its first segment
    ``started_ago`` seconds ago); return its id."""
    return await go_live_on(core.db, channel_id, started_ago=started_ago)


async def go_live_on(
    db: Database, channel_id: int, *, started_ago: float = 60.0, state: str = "live"
) -> int:
    """``go_live`` on a bare database (``state="ended"``: a past session)."""
    now = utcnow()

    async def unit(conn: AsyncConnection) -> int:
        session_id = (
            await conn.execute(
                insert(live_session)
                .values(
                    channel_id=channel_id,
                    state=state,
                    title="Show",
                    profile="passthrough",
                    key_version=1,
                    owner_node="test:1",
                    reconnects=0,
                    created_at=now,
                    started_at=now - timedelta(seconds=started_ago),
                )
                .returning(live_session.c.id)
            )
        ).scalar_one()
        await conn.execute(
            insert(segment).values(
                session_id=session_id,
                rendition="high",
                sequence=0,
                epoch=0,
                discontinuity=False,
                duration=2.0,
                byte_size=1,
                program_date_time=now,
                path=f"{channel_id}/{session_id}/high/seg-00000000.m4s",
                created_at=now,
            )
        )
        return int(session_id)

    return await db.run(unit, kind=Kind.WRITE)


async def end_show(core: Core, channel_id: int, session_id: int) -> int:
    """End the session the way the live side does and return the VOD made of it."""
    now = utcnow()

    async def unit(conn: AsyncConnection) -> int:
        await conn.execute(
            update(live_session)
            .where(live_session.c.id == session_id)
            .values(state="ended", ended_at=now)
        )
        ended = EndedSession(session_id, channel_id, "Show", now, now, "test")
        vod_id = await jobs.create_for_session(conn, ended)
        assert vod_id is not None
        return vod_id

    return await core.db.run(unit, kind=Kind.WRITE)


async def say(core: Core, channel_id: int, session_id: int, lines: list[Line]) -> None:
    """Store ``lines`` in order through the chat's own insert (each with its media time)."""
    drafts = []
    for name, media_time, body in lines:
        author = await get_account(core.db, name)
        onair = OnAirMark(session_id, media_time) if media_time is not None else None
        drafts.append(Draft(author.id, author.username, body, onair=onair))

    async def unit(conn: AsyncConnection) -> None:
        await messages.insert_messages(conn, channel_id, drafts)

    await core.db.run(unit, kind=Kind.WRITE)


async def recorded(app: FastAPI, room: Room, lines: list[Line]) -> int:
    """Broadcast on ``room`` with ``lines`` said during it; return the VOD's id."""
    core = core_of(app)
    session_id = await go_live(core, room.channel_id)
    await say(core, room.channel_id, session_id, lines)
    return await end_show(core, room.channel_id, session_id)


def replay_url(vod_id: int) -> str:
    """Return the chat replay URL of ``vod_id``."""
    return f"/api/v1/vods/{vod_id}/chat"


async def walk(
    client: httpx.AsyncClient, vod_id: int, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Follow ``next_cursor`` to the end; return every item and the number of pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(replay_url(vod_id), params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
        assert body["has_more"] is (body["next_cursor"] is not None)
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(body["items"]) == int(params.get("limit", 100))


async def test_pages_cover_the_broadcast_once_in_media_time_order(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """Paging walks every message of the broadcast once, by (media_time, id), ties included;
    messages of other broadcasts and ones sent off air are not part of it."""
    lines: list[Line] = [
        ("ann" if i % 2 else "bob", round((i * 37) % 101 * 0.5, 3), f"m{i}") for i in range(230)
    ]
    vod_id = await recorded(app, room, lines)
    core = core_of(app)
    other = await go_live(core, room.channel_id)
    await say(core, room.channel_id, other, [("ann", 3.0, "another show")])
    await end_show(core, room.channel_id, other)
    await say(core, room.channel_id, other, [("bob", None, "off air")])

    items, pages = await walk(client, vod_id, limit=50)
    assert pages == 5
    assert len(items) == 230
    keys = [(m["media_time"], m["id"]) for m in items]
    assert keys == sorted(keys)
    assert len(set(keys)) == 230
    expected = sorted((t, body) for _, t, body in lines if t is not None)
    assert [(m["media_time"], m["body"]) for m in items] == sorted(
        expected, key=lambda tb: (tb[0], int(tb[1][1:]))
    )
    assert {m["author"] for m in items} == {"ann", "bob"}
    assert set(items[0]) == {"id", "author", "body", "sent_at", "media_time"}


async def test_from_starts_the_replay_at_a_position(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """``from`` starts at the first message at or after that second; the cursor keeps it."""
    lines: list[Line] = [("ann", float(t), f"at {t}") for t in range(0, 600, 5)]
    vod_id = await recorded(app, room, lines)
    page = (await client.get(replay_url(vod_id), params={"from": "300", "limit": 3})).json()
    assert [m["body"] for m in page["items"]] == ["at 300", "at 305", "at 310"]
    items, _ = await walk(client, vod_id, **{"from": "297.5", "limit": 7})
    assert [m["media_time"] for m in items] == [float(t) for t in range(300, 600, 5)]
    tail = (await client.get(replay_url(vod_id), params={"from": "595.001"})).json()
    assert tail == {"items": [], "has_more": False, "next_cursor": None}
    assert len((await client.get(replay_url(vod_id))).json()["items"]) == 100


async def test_deleted_and_held_messages_are_never_served(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """What a moderator deleted and what a filter holds stay out of the replay; a held
    message that is approved appears at the moment it was sent."""
    core = core_of(app)
    base = f"/api/v1/channels/{room.slug}/chat"
    hold = await client.post(
        f"{base}/filters",
        json={"kind": "phrase", "pattern": "buy now", "action": "hold"},
        headers=room.auth("owner"),
    )
    assert hold.status_code == 201
    session_id = await go_live(core, room.channel_id, started_ago=120.0)
    posted = []
    for who, body in [("ann", "hello"), ("bob", "rude words"), ("ann", "buy now!"), ("bob", "bye")]:
        response = await client.post(
            f"{base}/messages", json={"body": body}, headers=room.auth(who)
        )
        assert response.status_code in (201, 202), response.text
        posted.append(response.json())
    rude = posted[1]["message"]["id"]
    deleted = await client.delete(f"{base}/messages/{rude}", headers=room.auth("mod"))
    assert deleted.status_code == 204
    vod_id = await end_show(core, room.channel_id, session_id)

    items = (await client.get(replay_url(vod_id))).json()["items"]
    assert [m["body"] for m in items] == ["hello", "bye"]
    assert all(119.0 <= m["media_time"] <= 130.0 for m in items)

    held_id = posted[2]["held_id"]
    approved = await client.post(f"{base}/held/{held_id}/approve", headers=room.auth("mod"))
    assert approved.status_code == 200
    items = (await client.get(replay_url(vod_id))).json()["items"]
    assert [m["body"] for m in items] == ["hello", "buy now!", "bye"]


async def test_a_private_vod_s_chat_is_for_its_people_and_token_holders(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The replay follows the VOD's visibility: a private VOD is a 404 to anonymous callers
    and outsiders, and readable by its owner, moderators and a playback token for it."""
    private = await make_room(core_of(app), visibility="private", prefix="p")
    vod_id = await recorded(app, private, [("pann", 1.0, "secret")])
    assert (await client.get(replay_url(vod_id))).status_code == 404
    outsider = await client.get(replay_url(vod_id), headers=private.auth("ann"))
    assert outsider.status_code == 404
    for who in ("owner", "mod"):
        allowed = await client.get(replay_url(vod_id), headers=private.auth(who))
        assert allowed.status_code == 200
        assert [m["body"] for m in allowed.json()["items"]] == ["secret"]
    token = tokens.issue(SECRET, tokens.vod_target(vod_id))
    assert (await client.get(replay_url(vod_id), params={"token": token})).status_code == 200
    other = tokens.issue(SECRET, tokens.vod_target(vod_id + 1))
    assert (await client.get(replay_url(vod_id), params={"token": other})).status_code == 404


async def test_an_unlisted_vod_s_chat_needs_its_link(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """An unlisted VOD's replay opens with the VOD's link key, like its watch page."""
    vod_id = await recorded(app, room, [("ann", 1.0, "hi")])
    changed = await client.patch(
        f"/api/v1/studio/vods/{vod_id}", json={"visibility": "unlisted"}, headers=room.auth("owner")
    )
    assert changed.status_code == 200
    assert (await client.get(replay_url(vod_id))).status_code == 404
    key = tokens.link_key(SECRET, tokens.vod_target(vod_id))
    assert (await client.get(replay_url(vod_id), params={"token": key})).status_code == 200


async def test_unknown_and_deleted_vods_are_404(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """No replay for a VOD that does not exist or was deleted."""
    vod_id = await recorded(app, room, [("ann", 1.0, "hi")])
    assert (await client.get(replay_url(vod_id))).status_code == 200
    assert (await client.get(replay_url(vod_id + 100))).status_code == 404
    gone = await client.delete(f"/api/v1/studio/vods/{vod_id}", headers=room.auth("owner"))
    assert gone.status_code == 204
    response = await client.get(replay_url(vod_id))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_chat_closed_to_anonymous_readers_keeps_its_replay_closed(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """With anonymous reading off, the replay of a public VOD asks to sign in (401)."""
    vod_id = await recorded(app, room, [("ann", 1.0, "hi")])
    changed = await client.patch(
        f"/api/v1/channels/{room.slug}/chat/settings",
        json={"anonymous_read": False},
        headers=room.auth("owner"),
    )
    assert changed.status_code == 200
    refused = await client.get(replay_url(vod_id))
    assert refused.status_code == 401
    assert "sign in" in refused.json()["error"]["message"]
    assert (await client.get(replay_url(vod_id), headers=room.auth("bob"))).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"from": "-1"},
        {"from": "abc"},
        {"from": ""},
        {"from": "1e3"},
        {"from": "inf"},
        {"from": "nan"},
        {"from": "+5"},
        {"from": "1" * 40},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "-3"},
        {"limit": "ten"},
        {"limit": "2.5"},
        {"cursor": "garbage"},
        {"cursor": "é"},
        {"cursor": "x" * 2000},
    ],
)
async def test_bad_input_is_400_with_a_message(
    client: httpx.AsyncClient, app: FastAPI, room: Room, query: dict[str, str]
) -> None:
    """A malformed ``from``, ``limit`` or ``cursor`` is a 400 that says what is wrong."""
    vod_id = await recorded(app, room, [("ann", 1.0, "hi")])
    response = await client.get(replay_url(vod_id), params=query)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"]
    name = next(iter(query))
    assert name in error["message"] or "cursor" in error["message"] or "token" in error["code"]


async def test_a_cursor_of_another_vod_or_list_is_400(
    client: httpx.AsyncClient, app: FastAPI, room: Room
) -> None:
    """A cursor is bound to its VOD's replay: another VOD's, or chat history's, is refused."""
    first = await recorded(app, room, [("ann", float(t), "x") for t in range(3)])
    second = await recorded(app, room, [("ann", 1.0, "y")])
    cursor = (await client.get(replay_url(first), params={"limit": 1})).json()["next_cursor"]
    assert cursor
    moved = await client.get(replay_url(second), params={"cursor": cursor})
    assert moved.status_code == 400
    assert "cursor" in moved.json()["error"]["message"]
    history = (
        await client.get(f"/api/v1/channels/{room.slug}/chat/messages", params={"limit": 1})
    ).json()["next_before"]
    assert (await client.get(replay_url(first), params={"cursor": history})).status_code == 400


def _plan_sql(dialect: Any, after: bool) -> str:
    statement = replay.page_statement(after)
    params = replay.page_params(1, 30.0, 50, (40.0, 7) if after else None)
    compiled = statement.params(**params).compile(
        dialect=dialect, compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


@pytest.mark.parametrize("after", [False, True])
async def test_sqlite_reads_a_page_off_the_replay_index(db: Database, after: bool) -> None:
    """On SQLite a page is a search of ix_chat_message_replay, with no sort step."""
    if not db.is_sqlite:
        pytest.skip("the PostgreSQL plan is checked at scale in test_postgres_plan")

    async def explain(conn: AsyncConnection) -> list[str]:
        sql = _plan_sql(sqlite.dialect(), after)
        return [str(row[-1]) for row in await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]

    plan = await db.run(explain, kind=Kind.READ)
    assert any("USING INDEX ix_chat_message_replay" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


PLAN_ROWS = 60_000


@pytest.fixture
async def loaded(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Database, int]]:
    """Three sessions' chat (one in 50 deleted, one in 7 off air), analysed; yields the
    session in the middle."""
    database = open_database(make_settings(tmp_path, pg_url))
    await truncate_all(database)
    owner = await create_account(database, "owner", "password123", "broadcaster")
    made, _ = await create_channel(database, owner, "main")
    sessions = [await go_live_on(database, made.id, state="ended") for _ in range(3)]

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            text(
                "INSERT INTO chat_message (channel_id, seq, author_id, body, session_id, "
                "media_time, sent_at, deleted_at) "
                "SELECT CAST(:channel AS bigint), g, CAST(:owner AS bigint), 'm' || g, "
                "CASE WHEN g % 7 = 0 THEN NULL "
                "ELSE (ARRAY[CAST(:a AS bigint), CAST(:b AS bigint), CAST(:c AS bigint)])"
                "[1 + g % 3] END, "
                "CASE WHEN g % 7 = 0 THEN NULL ELSE g * 0.25 END, now(), "
                "CASE WHEN g % 50 = 0 THEN now() END "
                "FROM generate_series(1, CAST(:n AS integer)) AS g"
            ),
            {
                "channel": made.id,
                "owner": owner.id,
                "a": sessions[0],
                "b": sessions[1],
                "c": sessions[2],
                "n": PLAN_ROWS,
            },
        )
        await conn.execute(text("ANALYZE chat_message"))

    await database.run(unit, kind=Kind.WRITE, deadline=60, attempt_timeout=50)
    yield database, sessions[1]
    await truncate_all(database)
    await database.dispose()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@needs_postgres
@pytest.mark.parametrize(("start", "after"), [(0.0, False), (7_000.0, False), (7_000.0, True)])
async def test_postgres_plan(loaded: tuple[Database, int], start: float, after: bool) -> None:
    """On PostgreSQL a page at the start, the middle or past a cursor is a range read of
    ix_chat_message_replay in index order: no sequential scan, no sort."""
    database, session_id = loaded
    params = replay.page_params(session_id, start, 50, (start + 10, 1) if after else None)
    sql = str(
        replay.page_statement(after)
        .params(**params)
        .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )

    async def explain(conn: AsyncConnection) -> dict[str, Any]:
        plan = (await conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar_one()
        return plan[0]["Plan"]  # type: ignore[no-any-return]

    found = list(_nodes(await database.run(explain, kind=Kind.READ)))
    assert not any(n["Node Type"] in ("Seq Scan", "Sort") for n in found), found
    assert any(n.get("Index Name") == "ix_chat_message_replay" for n in found), found
    page = await replay.page(
        database, SECRET, scope=1, session_id=session_id, start=start, limit=50
    )
    assert len(page.items) == 50
    assert page.items[0].media_time is not None
    assert page.items[0].media_time >= start


@given(
    media_time=st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
    seq=st.integers(min_value=1, max_value=2**62),
    vod_id=st.integers(min_value=1, max_value=2**40),
)
def test_a_replay_cursor_gives_back_its_position_exactly(
    media_time: float, seq: int, vod_id: int
) -> None:
    """The cursor carries the media time bit for bit, so the next page starts right after it."""
    last = Message(seq, "ann", "hi", utcnow(), media_time=media_time)
    token = replay.encode_cursor(SECRET, vod_id, last)
    assert replay.decode_cursor(SECRET, vod_id, token) == (media_time, seq)
    with pytest.raises(BadRequest):
        replay.decode_cursor(SECRET, vod_id + 1, token)


PLAIN_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{0,9})?|\.[0-9]{1,9}")


@given(
    raw=st.one_of(
        st.text(max_size=20), st.from_regex(r"-?[0-9]{0,14}(\.[0-9]{0,11})?", fullmatch=True)
    )
)
def test_from_is_a_plain_non_negative_decimal_or_a_400(raw: str) -> None:
    """``from`` is a decimal of up to 12 digits and 9 decimals, parsed to the number it spells,
    or a 400; never negative, inf, nan or an exponent."""
    if not PLAIN_SECONDS.fullmatch(raw):
        with pytest.raises(BadRequest):
            replay.parse_start(raw)
        return
    value = replay.parse_start(raw)
    assert value == float(raw)
    assert 0 <= value < 1e12
