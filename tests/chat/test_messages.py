"""Messages in the database: validation, per-channel ids, nonces, pages, batches, media time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.chat import messages
from stagecast.chat.messages import Draft
from stagecast.chat.runtime import Chat
from stagecast.db import Kind
from stagecast.db.schema import utcnow
from stagecast.errors import Unprocessable
from stagecast.live.models import live_session
from tests.chat.conftest import Room, make_room


@pytest.fixture
async def chat(app: FastAPI) -> Chat:
    """The chat component of a running app."""
    return app.state.runtime.chat  # type: ignore[no-any-return]


@pytest.fixture
async def room(app: FastAPI) -> Room:
    """A channel with its people (no live server needed)."""
    return await make_room(app.state.runtime.core)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  hello  ", "hello"),
        ("é" * 500, "é" * 500),
        ("😀" * 500, "😀" * 500),
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ],
)
def test_bodies_are_trimmed_and_kept_raw(body: str, expected: str) -> None:
    """Up to 500 code points after trimming are accepted and stored exactly as written."""
    assert messages.clean_body(body, 500) == expected


@pytest.mark.parametrize(
    "body",
    ["", "   ", "a" * 501, "😀" * 501, "bell\x07", "line\nbreak", "\u202eevil", "\ud800", 42, None],
)
def test_empty_long_control_or_non_text_bodies_are_refused(body: object) -> None:
    """Empty, over 500 code points, control characters, bidi overrides, surrogates, non-strings."""
    with pytest.raises(Unprocessable):
        messages.clean_body(body, 500)


@pytest.mark.parametrize("nonce", ["", "x" * 65, "has space", "é", 5])
def test_bad_nonces_are_refused(nonce: object) -> None:
    """A nonce is 1-64 characters of a small safe alphabet."""
    with pytest.raises(Unprocessable):
        messages.clean_nonce(nonce)


async def test_ids_count_up_per_channel(chat: Chat, room: Room, app: FastAPI) -> None:
    """Each channel numbers its own messages 1, 2, 3, ... whatever other channels do."""
    other = await make_room(app.state.runtime.core, prefix="b")
    author = Draft(1, "owner", "x")
    firsts = [await chat.writer.store(room.channel_id, author) for _ in range(3)]
    second = await chat.writer.store(other.channel_id, author)
    assert [m.id for m, _ in firsts] == [1, 2, 3]
    assert second[0].id == 1
    assert await messages.last_id(chat.db, room.channel_id) == 3


async def test_a_replayed_nonce_returns_the_first_message(chat: Chat, room: Room) -> None:
    """Posting twice with one nonce stores once and answers with the same id both times."""
    draft = Draft(1, "owner", "once", nonce="n-1")
    first, created = await chat.writer.store(room.channel_id, draft)
    again, created_again = await chat.writer.store(room.channel_id, draft)
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert await messages.last_id(chat.db, room.channel_id) == 1


async def test_concurrent_posts_are_batched_with_consecutive_ids(chat: Chat, room: Room) -> None:
    """Many posts at once all land, in fewer transactions, with ids 1..n and no gap."""
    before = chat.writer.batches
    drafts = [Draft(1, "owner", f"m{i}", nonce=f"c{i}" if i % 2 else None) for i in range(60)]
    stored = await asyncio.gather(*(chat.writer.store(room.channel_id, d) for d in drafts))
    assert sorted(m.id for m, _ in stored) == list(range(1, 61))
    assert chat.writer.batches - before < 60


async def test_a_batch_with_a_replayed_nonce_still_answers_everyone(chat: Chat, room: Room) -> None:
    """One replayed nonce in a batch does not fail the other posts of that batch."""
    await chat.writer.store(room.channel_id, Draft(1, "owner", "first", nonce="dup"))
    results = await asyncio.gather(
        chat.writer.store(room.channel_id, Draft(1, "owner", "a")),
        chat.writer.store(room.channel_id, Draft(1, "owner", "first", nonce="dup")),
        chat.writer.store(room.channel_id, Draft(1, "owner", "b")),
    )
    assert [created for _, created in results] == [True, False, True]
    assert results[1][0].id == 1


async def test_pages_are_newest_first_without_deleted_and_cover_everything_once(
    chat: Chat, room: Room
) -> None:
    """Following next cursors visits every visible message exactly once, newest first."""
    for i in range(25):
        await chat.writer.store(room.channel_id, Draft(1, "owner", f"m{i}"))

    async def drop(conn: AsyncConnection) -> None:
        for seq in (5, 6, 20):
            await messages.soft_delete(conn, room.channel_id, seq, 1)

    await chat.db.run(drop, kind=Kind.WRITE)
    seen: list[int] = []
    before = None
    while True:
        found, more = await messages.page(chat.db, room.channel_id, before=before, limit=7)
        seen.extend(m.id for m in found)
        if not more:
            break
        before = found[-1].id
    expected = [i for i in range(25, 0, -1) if i not in (5, 6, 20)]
    assert seen == expected
    assert all(m.author == "owner" for m in found)


async def test_messages_record_the_live_session_and_media_time(chat: Chat, room: Room) -> None:
    """While the channel is live, a message keeps the session id and seconds since it started."""
    started = utcnow() - timedelta(seconds=90)

    async def go_live(conn: AsyncConnection) -> int:
        created = await conn.execute(
            insert(live_session)
            .values(
                channel_id=room.channel_id,
                state="live",
                title="t",
                profile="passthrough",
                key_version=1,
                owner_node="test",
                reconnects=0,
                created_at=started,
                started_at=started,
            )
            .returning(live_session.c.id)
        )
        return int(created.scalar_one())

    session_id = await chat.db.run(go_live, kind=Kind.WRITE)
    mark = await chat.onair.mark(room.channel_id)
    assert mark is not None
    message, _ = await chat.writer.store(room.channel_id, Draft(1, "owner", "hi", onair=mark))
    found, _ = await messages.page(chat.db, room.channel_id, before=None, limit=1)
    assert found[0].session_id == session_id == message.session_id
    assert found[0].media_time is not None
    assert 89 <= found[0].media_time <= 100
