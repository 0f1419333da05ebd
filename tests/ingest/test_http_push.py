"""HTTP segment push: every kind of bad request gets its own 4xx, and nothing is stored."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.db import Kind
from stagecast.ingest.http import MAX_INIT_BYTES
from stagecast.live.models import live_init, live_session, segment


async def _key(app: FastAPI, slug: str = "pushy") -> str:
    db = app.state.runtime.core.db
    owner = await accounts.create_account(db, f"o-{slug}", "password123", "broadcaster")
    _, key = await channels.create_channel(db, owner, slug)
    return key


async def test_refusals(client: httpx.AsyncClient, app: FastAPI) -> None:
    """Missing/wrong keys, foreign channels, bad names, sizes and bytes are refused plainly."""
    key = await _key(app)
    other_key = await _key(app, "elsewhere")
    auth = {"Authorization": f"Bearer {key}"}
    cases = [
        ({}, "/ingest/pushy/source/init.mp4", b"x", 401),  # no key
        ({"Authorization": "Bearer nope"}, "/ingest/pushy/source/init.mp4", b"x", 401),
        ({"Authorization": f"Bearer {other_key}"}, "/ingest/pushy/source/init.mp4", b"x", 404),
        (auth, "/ingest/pushy/Bad Name/init.mp4", b"x", 404),  # rendition not allowed
        (auth, "/ingest/pushy/source/..%2Fescape.m4s", b"x", 404),  # path tricks
        (auth, "/ingest/pushy/source/init.mp4", b"\x00" * (MAX_INIT_BYTES + 1), 413),
        (auth, "/ingest/pushy/source/init.mp4", b"not an mp4 at all", 415),  # magic bytes
        (auth, "/ingest/pushy/source/seg-1.m4s", b"\x00\x00\x00\x10moof" + b"\x00" * 8, 415),
    ]
    for headers, path, body, status in cases:
        response = await client.put(path, content=body, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["message"]
    live = (await client.get("/api/v1/channels/pushy/live")).json()
    # The right key with bad bytes opens no session: nothing went live, nothing is in history.
    assert (live["live"], live["started_at"]) == (False, None)
    media = app.state.runtime.core.settings.data_dir / "media"
    assert [p for p in media.rglob("*") if p.is_file()] == []
    assert await _rows(app, segment) == await _rows(app, live_init) == 0
    assert await _rows(app, live_session) == 0


async def _rows(app: FastAPI, table: Table) -> int:
    """Return how many rows ``table`` has."""

    async def unit(conn: AsyncConnection) -> int:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())

    return int(await app.state.runtime.core.db.run(unit, kind=Kind.READ))


async def test_playlists_and_deletes_are_acknowledged(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """An encoder's own playlist and its deletes of old segments get 204 and change nothing."""
    key = await _key(app)
    auth = {"Authorization": f"Bearer {key}"}
    put = await client.put("/ingest/pushy/source/index.m3u8", content=b"#EXTM3U\n", headers=auth)
    assert put.status_code == 204
    gone = await client.delete("/ingest/pushy/source/index0.m4s", headers=auth)
    assert gone.status_code == 204
    assert (await client.delete("/ingest/pushy/source/index0.m4s")).status_code == 401
