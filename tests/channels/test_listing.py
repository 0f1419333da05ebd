"""The public listings: channels (live first) and VODs, anonymous and keyset-paged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.channels import service
from stagecast.db import Database, Kind
from stagecast.db.schema import utcnow
from stagecast.live.models import live_session
from stagecast.vod.models import vod
from tests.auth.test_api import bearer, make_user
from tests.vod.conftest import add_vods, set_status


@pytest.fixture
async def owner(app: FastAPI) -> str:
    """The API token of a broadcaster."""
    return await make_user(app.state.runtime.core, "owner")


async def _channel(client: httpx.AsyncClient, token: str, slug: str, visibility: str) -> None:
    made = await client.post(
        "/api/v1/channels", json={"slug": slug, "visibility": visibility}, headers=bearer(token)
    )
    assert made.status_code == 201, made.text


async def _go_on_air(db: Database, slug: str) -> None:
    """Give ``slug`` an open session on air, as the live manager records one."""
    found = await service.get_channel(db, slug)

    async def unit(conn: AsyncConnection) -> None:
        now = utcnow()
        await conn.execute(
            insert(live_session).values(
                channel_id=found.id,
                state="live",
                title=found.title,
                profile="passthrough",
                key_version=1,
                owner_node="test:1",
                reconnects=0,
                created_at=now,
                started_at=now,
            )
        )

    await db.run(unit, kind=Kind.WRITE)


async def _all_pages(client: httpx.AsyncClient, url: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await client.get(url, params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return items
        cursor = body["next_cursor"]
    raise AssertionError("the pages never ended")


async def test_anonymous_directory_lists_public_channels_live_first(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """Signed out: public channels only, those on air first, every one once across pages."""
    db = app.state.runtime.core.db
    for i in range(5):
        await _channel(client, owner, f"pub-{i}", "public")
    await _channel(client, owner, "hidden-priv", "private")
    await _channel(client, owner, "hidden-link", "unlisted")
    await _go_on_air(db, "pub-3")
    await _go_on_air(db, "hidden-priv")

    items = await _all_pages(client, "/api/v1/channels", limit=2)
    assert [c["slug"] for c in items] == ["pub-3", "pub-0", "pub-1", "pub-2", "pub-4"]
    first = items[0]
    assert first["live"] is True
    assert first["state"] == "live"
    assert first["thumbnail_url"] == "/api/v1/channels/pub-3/thumbnail.jpg"
    assert first["started_at"] is not None
    assert first["viewers"] == 0
    assert first["page_url"] == "/c/pub-3"
    assert first["owner"] == "owner"
    assert all(c["live"] is False and c["thumbnail_url"] is None for c in items[1:])
    live_only = await client.get("/api/v1/channels", params={"live": "true"})
    assert [c["slug"] for c in live_only.json()["items"]] == ["pub-3"]


async def test_signed_in_default_is_still_your_channels(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """With a token the list is the caller's own channels; scope=public shows the directory."""
    other = await make_user(app.state.runtime.core, "other")
    await _channel(client, owner, "owned-pub", "public")
    await _channel(client, other, "others-priv", "private")
    mine = await client.get("/api/v1/channels", headers=bearer(other))
    assert [c["slug"] for c in mine.json()["items"]] == ["others-priv"]
    assert "rtmp_url" in mine.json()["items"][0]
    public = await client.get("/api/v1/channels?scope=public", headers=bearer(other))
    assert [c["slug"] for c in public.json()["items"]] == ["owned-pub"]
    assert "rtmp_url" not in public.json()["items"][0]
    refused = await client.get("/api/v1/channels?scope=mine")
    assert refused.status_code == 401


async def test_directory_refuses_bad_cursors_and_limits(client: httpx.AsyncClient) -> None:
    """A forged cursor is a 400 and an out-of-range limit a 422, never a 500."""
    forged = await client.get("/api/v1/channels", params={"cursor": "abc.def"})
    assert forged.status_code == 400
    assert (await client.get("/api/v1/channels", params={"limit": 0})).status_code == 422
    assert (await client.get("/api/v1/channels", params={"limit": 101})).status_code == 422
    vods = await client.get("/api/v1/vods", params={"cursor": "abc.def"})
    assert vods.status_code == 400


async def test_next_info_is_set_with_patch_and_bounded(
    client: httpx.AsyncClient, owner: str
) -> None:
    """The owner sets what comes next; the directory shows it; 201 code points is a 422."""
    await _channel(client, owner, "weekly", "public")
    patched = await client.patch(
        "/api/v1/channels/weekly", json={"next_info": " Fridays 20:00 UTC "}, headers=bearer(owner)
    )
    assert patched.status_code == 200
    assert patched.json()["next_info"] == "Fridays 20:00 UTC"
    listed = await client.get("/api/v1/channels")
    assert listed.json()["items"][0]["next_info"] == "Fridays 20:00 UTC"
    too_long = await client.patch(
        "/api/v1/channels/weekly", json={"next_info": "x" * 201}, headers=bearer(owner)
    )
    assert too_long.status_code == 422


async def test_public_vods_anonymous_and_paged(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """Signed out: ready VODs of public channels, and explicitly public ones anywhere, newest
    first; processing, private-channel and private VODs stay hidden."""
    db = app.state.runtime.core.db
    await _channel(client, owner, "open-tv", "public")
    await _channel(client, owner, "closed-tv", "private")
    open_ids = await add_vods(db, await service.get_channel(db, "open-tv"), 5)
    closed_ids = await add_vods(db, await service.get_channel(db, "closed-tv"), 3)
    for vod_id in [*open_ids[:4], *closed_ids]:
        await set_status(db, vod_id, "ready")

    async def make_public(vod_id: int, visibility: str) -> None:
        async def unit(conn: AsyncConnection) -> None:
            await conn.execute(update(vod).where(vod.c.id == vod_id).values(visibility=visibility))

        await db.run(unit, kind=Kind.WRITE)

    await make_public(closed_ids[1], "public")  # explicitly public on a private channel
    await make_public(open_ids[0], "private")  # explicitly private on a public channel

    items = await _all_pages(client, "/api/v1/vods", limit=2)
    ids = [v["id"] for v in items]
    assert ids == sorted([*open_ids[1:4], closed_ids[1]], reverse=True)
    assert {v["channel"] for v in items} == {"open-tv", "closed-tv"}
    assert items[0]["page_url"] == f"/v/{ids[0]}"
